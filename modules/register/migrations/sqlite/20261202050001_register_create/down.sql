DROP TABLE register_tokens;
