-- Archiving at the speed of routing (see the SQLite migration for the id scheme).
-- Full-text terms move to their own table, filled by the writer when it is idle; the
-- archive owner is a term of its own ('o' + hex of the bare JID), so a search
-- intersects the owner's posting list with the words' in one GIN index.
CREATE TEMP TABLE mam_rekey AS
    SELECT id AS old_id,
           created_us * 256 + ROW_NUMBER() OVER (PARTITION BY created_us ORDER BY id) - 1 AS new_id
    FROM mam_messages;

CREATE TABLE mam_archive (
    id BIGINT PRIMARY KEY,
    owner TEXT NOT NULL,
    with_bare TEXT NOT NULL,
    with_resource TEXT NOT NULL,
    legacy_id TEXT,
    stanza TEXT NOT NULL
);
INSERT INTO mam_archive (id, owner, with_bare, with_resource, legacy_id, stanza)
    SELECT r.new_id, m.owner, m.with_bare, m.with_resource, m.stanza_id, m.stanza
    FROM mam_messages m JOIN mam_rekey r ON r.old_id = m.id;

CREATE TABLE mam_fulltext (
    id BIGINT PRIMARY KEY REFERENCES mam_archive (id) ON DELETE CASCADE,
    terms TSVECTOR NOT NULL
);
INSERT INTO mam_fulltext (id, terms)
    SELECT r.new_id, to_tsvector('simple', 'o' || encode(convert_to(m.owner, 'UTF8'), 'hex') || ' ' || m.search_text)
    FROM mam_messages m JOIN mam_rekey r ON r.old_id = m.id;
CREATE TABLE mam_fts_progress (
    id BIGINT PRIMARY KEY,
    indexed_to BIGINT NOT NULL
);
INSERT INTO mam_fts_progress (id, indexed_to) SELECT 1, COALESCE(MAX(id), 0) FROM mam_archive;

DROP TABLE mam_messages;
DROP TABLE mam_rekey;

CREATE INDEX mam_archive_by_owner ON mam_archive (owner, id);
CREATE INDEX mam_archive_by_with ON mam_archive (owner, with_bare, id);
CREATE UNIQUE INDEX mam_archive_by_legacy_id ON mam_archive (owner, legacy_id) WHERE legacy_id IS NOT NULL;
CREATE INDEX mam_fulltext_terms ON mam_fulltext USING GIN (terms);
