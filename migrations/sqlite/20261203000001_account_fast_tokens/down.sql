DROP TABLE account_fast_tokens;
