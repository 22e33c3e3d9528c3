DROP TABLE private_storage;
