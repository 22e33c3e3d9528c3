CREATE TABLE private_storage (
    host TEXT NOT NULL,
    username TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (host, username, namespace, name)
);
