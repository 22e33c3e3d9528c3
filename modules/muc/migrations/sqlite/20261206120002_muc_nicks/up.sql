-- XEP-0045 §7.10: the nickname a member registered with the room, reserved for them.
ALTER TABLE muc_affiliations ADD COLUMN nick TEXT;
