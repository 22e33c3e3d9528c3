CREATE TABLE blocking_items (
    host TEXT NOT NULL,
    username TEXT NOT NULL,
    jid TEXT NOT NULL,
    PRIMARY KEY (host, username, jid)
);
