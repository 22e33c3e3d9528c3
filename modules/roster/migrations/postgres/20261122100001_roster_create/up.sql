CREATE TABLE roster_items (
    host TEXT NOT NULL,
    username TEXT NOT NULL,
    contact TEXT NOT NULL,
    name TEXT,
    subscription TEXT NOT NULL,
    ask SMALLINT NOT NULL DEFAULT 0,
    pending_in SMALLINT NOT NULL DEFAULT 0,
    approved SMALLINT NOT NULL DEFAULT 0,
    in_roster SMALLINT NOT NULL DEFAULT 1,
    PRIMARY KEY (host, username, contact)
);

CREATE TABLE roster_groups (
    host TEXT NOT NULL,
    username TEXT NOT NULL,
    contact TEXT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (host, username, contact, name)
);

CREATE TABLE roster_versions (
    host TEXT NOT NULL,
    username TEXT NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (host, username)
);
