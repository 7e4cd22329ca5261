//! Searching names by the beginning of any of their words.
//!
//! A name's search key is its lower-cased form ([`name_key`]). A word
//! begins at a letter or digit that follows anything else (a space, a
//! hyphen, an apostrophe, a comma), so "North Alpha Capital" has the words
//! "north", "alpha" and "capital", and "O'Brien-Smith, Jo" the words "o",
//! "brien", "smith" and "jo". A query matches a name when it is the
//! beginning of the key from one of those words on: "alpha" and
//! "alpha cap" both match "North Alpha Capital", "pha" does not.
//!
//! A store indexes the key itself and, for each word after the first, the
//! key from that word on ([`word_keys`]); a search is then an ordered
//! range scan over both. A name can match at more than one word ("Anna
//! Andersen" for "an"); it is listed once, under its smallest matching key
//! ([`match_key`]), which is also where a page after it continues.

/// The lower-cased name every search compares against.
pub fn name_key(name: &str) -> String {
    name.to_lowercase()
}

/// A search term as the keys are compared with it: lower-cased, without
/// surrounding space.
pub fn query_key(term: &str) -> String {
    term.trim().to_lowercase()
}

/// The key from each word after the first on (`key` is a [`name_key`]).
pub fn word_keys(key: &str) -> impl Iterator<Item = &str> {
    let mut prev_alnum = true;
    key.char_indices().filter_map(move |(i, c)| {
        let starts = c.is_alphanumeric() && !prev_alnum;
        prev_alnum = c.is_alphanumeric();
        (starts && i > 0).then(|| &key[i..])
    })
}

/// The smallest key of `key` (a [`name_key`]) that begins with `query`
/// (a [`query_key`]): the name's place in a search's order, or `None` when
/// the name does not match.
pub fn match_key<'a>(key: &'a str, query: &str) -> Option<&'a str> {
    std::iter::once(key)
        .chain(word_keys(key))
        .filter(|k| k.starts_with(query))
        .min()
}

/// Whether `name` matches the search term `term` (see the module).
pub fn name_matches(name: &str, term: &str) -> bool {
    match_key(&name_key(name), &query_key(term)).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_begin_after_anything_that_is_not_a_letter_or_digit() {
        let k = name_key("O'Brien-Smith, Jo  (Rates)");
        let words: Vec<&str> = word_keys(&k).collect();
        assert_eq!(
            words,
            [
                "brien-smith, jo  (rates)",
                "smith, jo  (rates)",
                "jo  (rates)",
                "rates)"
            ]
        );
        assert_eq!(word_keys("anna").count(), 0);
        assert_eq!(word_keys("").count(), 0);
        // Letters beyond ASCII are letters: no word starts inside "müller".
        assert_eq!(word_keys("jörg müller").collect::<Vec<_>>(), ["müller"]);
        // A leading separator does not make the whole key a second word.
        assert_eq!(
            word_keys("(desk) fx").collect::<Vec<_>>(),
            ["desk) fx", "fx"]
        );
    }

    #[test]
    fn any_words_beginning_matches_and_nothing_else() {
        assert!(name_matches("North Alpha Capital", "Alpha"));
        assert!(name_matches("North Alpha Capital", "alpha cap"));
        assert!(name_matches("North Alpha Capital", " NORTH "));
        assert!(name_matches("John Smith", "smi"));
        assert!(!name_matches("John Smith", "mith"));
        assert!(!name_matches("North Alpha Capital", "capital north"));
        assert!(name_matches("Jörg Müller", "mü"));
    }

    #[test]
    fn a_name_matching_at_several_words_has_one_place() {
        assert_eq!(match_key("anna andersen", "an"), Some("andersen"));
        assert_eq!(match_key("anna andersen", "ann"), Some("anna andersen"));
        assert_eq!(match_key("anna andersen", "x"), None);
    }
}
