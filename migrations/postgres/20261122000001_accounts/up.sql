CREATE TABLE accounts (
    host TEXT NOT NULL,
    username TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    disabled SMALLINT NOT NULL DEFAULT 0,
    PRIMARY KEY (host, username)
);

CREATE TABLE account_credentials (
    host TEXT NOT NULL,
    username TEXT NOT NULL,
    mechanism TEXT NOT NULL,
    salt TEXT NOT NULL,
    iterations INTEGER NOT NULL,
    stored_key TEXT NOT NULL,
    server_key TEXT NOT NULL,
    PRIMARY KEY (host, username, mechanism),
    FOREIGN KEY (host, username) REFERENCES accounts (host, username) ON DELETE CASCADE
);
