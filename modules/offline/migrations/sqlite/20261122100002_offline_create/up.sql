CREATE TABLE offline_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    host TEXT NOT NULL,
    username TEXT NOT NULL,
    stored_at BIGINT NOT NULL,
    stanza TEXT NOT NULL
);
CREATE INDEX offline_messages_by_user ON offline_messages (host, username, id);
