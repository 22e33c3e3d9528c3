-- XEP-0317: the hats a user wears in a persistent room, by bare JID and hat URI.
CREATE TABLE muc_hats (
    room TEXT NOT NULL REFERENCES muc_rooms(jid) ON DELETE CASCADE,
    jid TEXT NOT NULL,
    uri TEXT NOT NULL,
    title TEXT NOT NULL,
    PRIMARY KEY (room, jid, uri)
);
CREATE INDEX muc_hats_jid ON muc_hats(jid);
