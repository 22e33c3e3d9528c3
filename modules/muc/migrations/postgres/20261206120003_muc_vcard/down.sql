ALTER TABLE muc_rooms DROP COLUMN vcard;
