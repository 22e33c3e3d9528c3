-- See the SQLite down migration: ids made from row ids become 'r' || id.
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
INSERT INTO mam_messages (owner, stanza_id, created_us, with_bare, with_resource, search_text, stanza)
    SELECT owner, COALESCE(legacy_id, 'r' || id), id / 256, with_bare, with_resource, '', stanza
    FROM mam_archive ORDER BY id;
DROP TABLE mam_fulltext;
DROP TABLE mam_fts_progress;
DROP TABLE mam_archive;
CREATE UNIQUE INDEX mam_messages_by_stanza_id ON mam_messages (owner, stanza_id);
CREATE INDEX mam_messages_by_owner ON mam_messages (owner, id);
CREATE INDEX mam_messages_by_with ON mam_messages (owner, with_bare, id);
CREATE INDEX mam_messages_by_owner_time ON mam_messages (owner, created_us);
CREATE INDEX mam_messages_by_time ON mam_messages (created_us);
CREATE INDEX mam_messages_fts ON mam_messages USING GIN (to_tsvector('simple', search_text));
