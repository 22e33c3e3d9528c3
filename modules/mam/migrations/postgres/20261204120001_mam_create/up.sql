CREATE TABLE mam_messages (
    id BIGSERIAL PRIMARY KEY,
    owner TEXT NOT NULL,
    stanza_id TEXT NOT NULL,
    created_us BIGINT NOT NULL,
    with_bare TEXT NOT NULL,
    with_resource TEXT NOT NULL,
    search_text TEXT NOT NULL,
    stanza TEXT NOT NULL
);
CREATE UNIQUE INDEX mam_messages_by_stanza_id ON mam_messages (owner, stanza_id);
CREATE INDEX mam_messages_by_owner ON mam_messages (owner, id);
CREATE INDEX mam_messages_by_with ON mam_messages (owner, with_bare, id);
CREATE INDEX mam_messages_by_owner_time ON mam_messages (owner, created_us);
CREATE INDEX mam_messages_by_time ON mam_messages (created_us);

-- XEP-0431: search_text holds ASCII tokens made by the module (tokens.rs), so the
-- 'simple' configuration indexes them the same way under any locale.
CREATE INDEX mam_messages_fts ON mam_messages USING GIN (to_tsvector('simple', search_text));

CREATE TABLE mam_prefs (
    owner TEXT PRIMARY KEY NOT NULL,
    default_mode TEXT NOT NULL,
    always_jids TEXT NOT NULL,
    never_jids TEXT NOT NULL
);

CREATE TABLE mam_secret (
    id BIGINT PRIMARY KEY NOT NULL,
    secret TEXT NOT NULL
);
