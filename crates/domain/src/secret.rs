//! Secrets in clear text and password hashes.
//!
//! Both types print as `[redacted]` in `Debug` and have no `Display`, so a
//! secret cannot reach a log line by accident (SPEC rule 1: secrets never
//! enter a log). Clear-text secrets are zeroed when dropped.

use zeroize::Zeroizing;

/// A clear-text secret (a password as typed). Zeroed on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(Zeroizing::new(s.into()))
    }

    /// The clear text. Call only where the secret is used (hashing,
    /// encryption, SIP authentication), never to print it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// A salted slow hash of a password in PHC string form
/// (`$argon2id$v=19$m=...`). Never shown by any API.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Wraps a PHC string. The caller guarantees it is a hash, not a password.
    pub fn from_phc(phc: String) -> Self {
        PasswordHash(phc)
    }

    pub fn as_phc(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordHash([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let s = Secret::new("hunter2-clear");
        let h = PasswordHash::from_phc("$argon2id$v=19$abc".into());
        let shown = format!("{s:?} {h:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("argon2id"), "{shown}");
        assert_eq!(s.expose(), "hunter2-clear");
    }
}
