DROP TABLE mam_secret;
DROP TABLE mam_prefs;
DROP TRIGGER mam_fts_delete;
DROP TRIGGER mam_fts_insert;
DROP TABLE mam_fts;
DROP TABLE mam_messages;
