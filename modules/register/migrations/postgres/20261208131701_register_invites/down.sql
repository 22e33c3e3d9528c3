ALTER TABLE register_tokens DROP COLUMN hashed;
ALTER TABLE register_tokens DROP COLUMN kind;
ALTER TABLE register_tokens DROP COLUMN creator;
