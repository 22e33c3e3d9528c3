CREATE TABLE vcard_store (
    host TEXT NOT NULL,
    username TEXT NOT NULL,
    vcard TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (host, username)
);
