-- Phonebook search by the beginning of any word of a name (issue 14): for
-- each word of a global contact's name after the first, the lower-cased
-- name from that word on (openturret_domain::words). The first word is
-- served by global_contacts_name. The store splits names into words; a
-- contact's rows go with it.
CREATE TABLE global_contact_words (
    contact_id INTEGER NOT NULL,
    key        TEXT    NOT NULL,
    PRIMARY KEY (contact_id, key)
) WITHOUT ROWID;
CREATE INDEX global_contact_words_key ON global_contact_words(key, contact_id);
CREATE TRIGGER global_contact_words_go_with_contact AFTER DELETE ON global_contacts
BEGIN
    DELETE FROM global_contact_words WHERE contact_id = old.id;
END;

-- Work the store does in Rust at its next start, once: here, splitting the
-- names of the contacts already stored.
CREATE TABLE store_backfills (name TEXT PRIMARY KEY) WITHOUT ROWID;
INSERT INTO store_backfills (name) VALUES ('global_contact_words');
