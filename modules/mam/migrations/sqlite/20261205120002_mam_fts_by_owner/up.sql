-- XEP-0431 searches look in one archive. With the owner in the index (as the hex of
-- its bare JID, one token), FTS5 intersects the owner's posting list with the words'
-- instead of collecting a common word's matches from every archive on the server.
-- Contentless: queries only ever read rowids.
DROP TRIGGER mam_fts_insert;
DROP TRIGGER mam_fts_delete;
DROP TABLE mam_fts;
CREATE VIRTUAL TABLE mam_fts USING fts5(owner_key, search_text, content='');
INSERT INTO mam_fts (rowid, owner_key, search_text)
    SELECT id, lower(hex(owner)), search_text FROM mam_messages;
CREATE TRIGGER mam_fts_insert AFTER INSERT ON mam_messages BEGIN
    INSERT INTO mam_fts (rowid, owner_key, search_text) VALUES (new.id, lower(hex(new.owner)), new.search_text);
END;
CREATE TRIGGER mam_fts_delete AFTER DELETE ON mam_messages BEGIN
    INSERT INTO mam_fts (mam_fts, rowid, owner_key, search_text)
        VALUES ('delete', old.id, lower(hex(old.owner)), old.search_text);
END;
