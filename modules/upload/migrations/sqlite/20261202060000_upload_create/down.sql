DROP TABLE upload_slots;
