-- SQLite only (its FTS5 index gains the owner); PostgreSQL combines the owner index with the GIN index itself.
SELECT 1;
