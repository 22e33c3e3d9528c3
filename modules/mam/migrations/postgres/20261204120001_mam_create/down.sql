DROP TABLE mam_secret;
DROP TABLE mam_prefs;
DROP TABLE mam_messages;
