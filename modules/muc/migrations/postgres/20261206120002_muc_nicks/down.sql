ALTER TABLE muc_affiliations DROP COLUMN nick;
