DROP TABLE muc_hats;
