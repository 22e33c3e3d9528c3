-- Persistent rooms (XEP-0045 §10.1.3 muc#roomconfig_persistentroom). `config` is the
-- room configuration as TOML; `salt` keys the room's occupant ids (XEP-0421).
CREATE TABLE muc_rooms (
    jid TEXT PRIMARY KEY NOT NULL,
    config TEXT NOT NULL,
    subject TEXT,
    subject_nick TEXT,
    salt TEXT NOT NULL,
    created_us BIGINT NOT NULL
);

-- Affiliations of persistent rooms (owner, admin, member, outcast), by bare JID.
CREATE TABLE muc_affiliations (
    room TEXT NOT NULL REFERENCES muc_rooms(jid) ON DELETE CASCADE,
    jid TEXT NOT NULL,
    affiliation TEXT NOT NULL,
    reason TEXT,
    PRIMARY KEY (room, jid)
);
CREATE INDEX muc_affiliations_jid ON muc_affiliations(jid);
