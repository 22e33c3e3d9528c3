-- Archiving at the speed of routing. A row's id is set by the server: its archive
-- time in µs, shifted left by 8 bits (the low byte breaks ties here and is free for a
-- node number when several servers share one database). Ids so give time order, the
-- start/end filters and the retention sweep use the primary key, and the XEP-0359
-- stanza id is made from the row id (stanza_id.rs), so it needs no index of its own.
-- Ids handed out before this migration stay valid: they move to `legacy_id`.
-- Full-text indexing leaves the write path: the writer indexes stored rows when it is
-- idle (and before a search), recording how far it got in `mam_fts_progress`.
CREATE TEMP TABLE mam_rekey AS
    SELECT id AS old_id,
           created_us * 256 + ROW_NUMBER() OVER (PARTITION BY created_us ORDER BY id) - 1 AS new_id
    FROM mam_messages;

CREATE TABLE mam_archive (
    id INTEGER PRIMARY KEY NOT NULL,
    owner TEXT NOT NULL,
    with_bare TEXT NOT NULL,
    with_resource TEXT NOT NULL,
    legacy_id TEXT,
    stanza TEXT NOT NULL
);
INSERT INTO mam_archive (id, owner, with_bare, with_resource, legacy_id, stanza)
    SELECT r.new_id, m.owner, m.with_bare, m.with_resource, m.stanza_id, m.stanza
    FROM mam_messages m JOIN mam_rekey r ON r.old_id = m.id;

DROP TRIGGER mam_fts_insert;
DROP TRIGGER mam_fts_delete;
DROP TABLE mam_fts;
CREATE VIRTUAL TABLE mam_fts USING fts5(owner_key, search_text, content='', contentless_delete=1);
INSERT INTO mam_fts (rowid, owner_key, search_text)
    SELECT r.new_id, lower(hex(m.owner)), m.search_text
    FROM mam_messages m JOIN mam_rekey r ON r.old_id = m.id;
CREATE TABLE mam_fts_progress (
    id INTEGER PRIMARY KEY NOT NULL,
    indexed_to BIGINT NOT NULL
);
INSERT INTO mam_fts_progress (id, indexed_to) SELECT 1, COALESCE(MAX(id), 0) FROM mam_archive;

DROP TABLE mam_messages;
DROP TABLE mam_rekey;

CREATE INDEX mam_archive_by_owner ON mam_archive (owner, id);
CREATE INDEX mam_archive_by_with ON mam_archive (owner, with_bare, id);
CREATE UNIQUE INDEX mam_archive_by_legacy_id ON mam_archive (owner, legacy_id) WHERE legacy_id IS NOT NULL;
CREATE TRIGGER mam_archive_unindex AFTER DELETE ON mam_archive BEGIN
    DELETE FROM mam_fts WHERE rowid = old.id;
END;
