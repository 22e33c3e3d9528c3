DROP TABLE muc_push;
