-- Local contacts are looked up by number (caller identification, search).
CREATE INDEX local_contacts_number ON local_contacts(profile_id, number_key);
