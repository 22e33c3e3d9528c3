DROP TABLE avatar_hashes;
