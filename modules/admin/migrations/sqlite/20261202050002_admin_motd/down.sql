DROP TABLE admin_motd;
