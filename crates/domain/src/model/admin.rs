//! Administrator accounts (SPEC §2: username, password).

use crate::validate::{self, ValidationError};
use crate::{AdminId, Timestamp};

/// Minimum length of an administrator password.
pub const ADMIN_PASSWORD_MIN: usize = 12;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admin {
    pub id: AdminId,
    pub username: String,
    /// A disabled administrator cannot log in; their sessions end.
    pub enabled: bool,
    /// Set for the first admin's one-time password and after a reset: every
    /// request except the password change is refused until it is changed.
    pub must_change_password: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// An administrator username: 1–64 characters of letters, digits, `.`, `-`,
/// `_` and `@`.
pub fn admin_username(value: &str) -> Result<String, ValidationError> {
    let v = validate::text("username", value, 64)?;
    if !v.chars().all(|c| c.is_alphanumeric() || ".-_@".contains(c)) {
        return Err(ValidationError::new(
            "username",
            "may contain only letters, digits and . - _ @",
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_checked() {
        assert_eq!(admin_username(" ops.admin ").unwrap(), "ops.admin");
        assert_eq!(admin_username("a b").unwrap_err().field, "username");
    }
}
