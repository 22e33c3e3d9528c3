DROP TABLE vcard_store;
