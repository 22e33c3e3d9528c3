CREATE TABLE last_activity (
    host TEXT NOT NULL,
    username TEXT NOT NULL,
    logout_at BIGINT NOT NULL,
    status TEXT NOT NULL,
    PRIMARY KEY (host, username)
);
