CREATE TABLE upload_slots (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    username TEXT NOT NULL,
    filename TEXT NOT NULL,
    size BIGINT NOT NULL,
    content_type TEXT NOT NULL,
    state INTEGER NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX upload_slots_owner ON upload_slots (host, username);
CREATE INDEX upload_slots_expiry ON upload_slots (expires_at);
