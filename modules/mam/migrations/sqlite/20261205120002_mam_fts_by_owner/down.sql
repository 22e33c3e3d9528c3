DROP TRIGGER mam_fts_insert;
DROP TRIGGER mam_fts_delete;
DROP TABLE mam_fts;
CREATE VIRTUAL TABLE mam_fts USING fts5(search_text, content='mam_messages', content_rowid='id');
INSERT INTO mam_fts (mam_fts) VALUES ('rebuild');
CREATE TRIGGER mam_fts_insert AFTER INSERT ON mam_messages BEGIN
    INSERT INTO mam_fts (rowid, search_text) VALUES (new.id, new.search_text);
END;
CREATE TRIGGER mam_fts_delete AFTER DELETE ON mam_messages BEGIN
    INSERT INTO mam_fts (mam_fts, rowid, search_text) VALUES ('delete', old.id, old.search_text);
END;
