-- Accounts registered in-band without an invite, while the host restricts new
-- accounts to messaging their contacts (new_accounts_contacts_only_hours).
CREATE TABLE register_new_accounts (
    host TEXT NOT NULL,
    username TEXT NOT NULL,
    registered_at BIGINT NOT NULL,
    PRIMARY KEY (host, username)
);
