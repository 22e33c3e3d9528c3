-- Devices registered with the built-in app server (XEP-0357): the node the user's
-- server publishes to, the platform's device token, and a hash of the secret the
-- publish requests must carry.
CREATE TABLE push_gateway_devices (
    node TEXT NOT NULL PRIMARY KEY,
    owner TEXT NOT NULL,
    platform TEXT NOT NULL,
    token TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
