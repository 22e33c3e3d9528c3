-- XEP-0486: the room's vCard (vcard-temp XML), set by its owners.
ALTER TABLE muc_rooms ADD COLUMN vcard TEXT;
