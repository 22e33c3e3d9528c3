CREATE TABLE push_registrations (
    host TEXT NOT NULL,
    username TEXT NOT NULL,
    service TEXT NOT NULL,
    node TEXT NOT NULL,
    resource TEXT NOT NULL,
    publish_options TEXT,
    PRIMARY KEY (host, username, service, node)
);
