-- Back to one row per id with its own stanza_id column. Ids made from row ids cannot
-- be recomputed in SQL (they are signed), so such rows get 'r' || id: clients that
-- kept one of them page from the start again.
DROP TRIGGER mam_archive_unindex;
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
INSERT INTO mam_messages (owner, stanza_id, created_us, with_bare, with_resource, search_text, stanza)
    SELECT owner, COALESCE(legacy_id, 'r' || id), id / 256, with_bare, with_resource, '', stanza
    FROM mam_archive ORDER BY id;
DROP TABLE mam_archive;
DROP TABLE mam_fts_progress;
DROP TABLE mam_fts;
CREATE UNIQUE INDEX mam_messages_by_stanza_id ON mam_messages (owner, stanza_id);
CREATE INDEX mam_messages_by_owner ON mam_messages (owner, id);
CREATE INDEX mam_messages_by_with ON mam_messages (owner, with_bare, id);
CREATE INDEX mam_messages_by_owner_time ON mam_messages (owner, created_us);
CREATE INDEX mam_messages_by_time ON mam_messages (created_us);
CREATE VIRTUAL TABLE mam_fts USING fts5(owner_key, search_text, content='');
CREATE TRIGGER mam_fts_insert AFTER INSERT ON mam_messages BEGIN
    INSERT INTO mam_fts (rowid, owner_key, search_text) VALUES (new.id, lower(hex(new.owner)), new.search_text);
END;
CREATE TRIGGER mam_fts_delete AFTER DELETE ON mam_messages BEGIN
    INSERT INTO mam_fts (mam_fts, rowid, owner_key, search_text)
        VALUES ('delete', old.id, lower(hex(old.owner)), old.search_text);
END;
