CREATE TABLE mam_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
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

-- XEP-0431: the index over search_text (tokens made by the module, see tokens.rs),
-- kept in step with mam_messages by triggers.
CREATE VIRTUAL TABLE mam_fts USING fts5(search_text, content='mam_messages', content_rowid='id');
CREATE TRIGGER mam_fts_insert AFTER INSERT ON mam_messages BEGIN
    INSERT INTO mam_fts (rowid, search_text) VALUES (new.id, new.search_text);
END;
CREATE TRIGGER mam_fts_delete AFTER DELETE ON mam_messages BEGIN
    INSERT INTO mam_fts (mam_fts, rowid, search_text) VALUES ('delete', old.id, old.search_text);
END;

CREATE TABLE mam_prefs (
    owner TEXT PRIMARY KEY NOT NULL,
    default_mode TEXT NOT NULL,
    always_jids TEXT NOT NULL,
    never_jids TEXT NOT NULL
);

CREATE TABLE mam_secret (
    id INTEGER PRIMARY KEY NOT NULL,
    secret TEXT NOT NULL
);
