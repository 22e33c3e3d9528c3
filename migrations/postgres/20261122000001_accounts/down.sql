DROP TABLE account_credentials;
DROP TABLE accounts;
