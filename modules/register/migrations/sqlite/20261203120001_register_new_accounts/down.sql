DROP TABLE register_new_accounts;
