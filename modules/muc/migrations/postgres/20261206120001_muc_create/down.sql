DROP TABLE muc_affiliations;
DROP TABLE muc_rooms;
