-- Push registrations on persistent rooms (XEP-0357 with a room as the user's server).
CREATE TABLE muc_push (
    room TEXT NOT NULL,
    jid TEXT NOT NULL,
    service TEXT NOT NULL,
    node TEXT NOT NULL,
    publish_options TEXT,
    PRIMARY KEY (room, jid, service, node)
);
