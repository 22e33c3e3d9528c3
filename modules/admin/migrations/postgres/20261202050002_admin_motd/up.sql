CREATE TABLE admin_motd (
    host TEXT NOT NULL PRIMARY KEY,
    text TEXT NOT NULL
);
