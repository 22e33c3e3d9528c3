-- The SHA-1 of each account's current avatar, kept by the XEP-0398 conversion.
CREATE TABLE avatar_hashes (
    host TEXT NOT NULL,
    username TEXT NOT NULL,
    sha1 TEXT NOT NULL,
    PRIMARY KEY (host, username)
);
