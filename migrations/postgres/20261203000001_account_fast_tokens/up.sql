-- FAST tokens (XEP-0484): at most two per client installation, the one in use
-- (slot 0) and a newer one issued but not yet used (slot 1). The token itself is
-- never stored: it is derived from token_id with the server's FAST key.
CREATE TABLE account_fast_tokens (
    host TEXT NOT NULL,
    username TEXT NOT NULL,
    client_id TEXT NOT NULL,
    slot SMALLINT NOT NULL,
    mechanism TEXT NOT NULL,
    token_id TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    last_count BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (host, username, client_id, slot),
    FOREIGN KEY (host, username) REFERENCES accounts (host, username) ON DELETE CASCADE
);
