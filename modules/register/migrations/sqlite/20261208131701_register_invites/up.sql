-- Invites (XEP-0401/0379): who created the token and what it is for. `hashed` tells
-- tokens stored as SHA-256 digests (all new ones) from the plaintext ones issued
-- before this migration.
ALTER TABLE register_tokens ADD COLUMN creator TEXT;
ALTER TABLE register_tokens ADD COLUMN kind TEXT NOT NULL DEFAULT 'register';
ALTER TABLE register_tokens ADD COLUMN hashed INTEGER NOT NULL DEFAULT 0;
