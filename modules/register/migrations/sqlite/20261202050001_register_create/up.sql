CREATE TABLE register_tokens (
    token TEXT NOT NULL PRIMARY KEY,
    host TEXT NOT NULL,
    uses_left INTEGER NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
