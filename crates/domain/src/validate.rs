//! Validation: one error type that names the field and the reason, and the
//! small checks every model uses.

/// A rejected input value: which field, and why. Never carries the value
/// itself, so it is safe to return to a client and to log.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ValidationError {
    pub field: String,
    pub reason: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ValidationError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// A required free-text field: trimmed, not empty, at most `max` characters,
/// no control characters.
pub fn text(field: &str, value: &str, max: usize) -> Result<String, ValidationError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    optional_text(field, v, max)
}

/// An optional free-text field: may be empty; at most `max` characters, no
/// control characters.
pub fn optional_text(field: &str, value: &str, max: usize) -> Result<String, ValidationError> {
    let v = value.trim();
    if v.chars().count() > max {
        return Err(ValidationError::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(ValidationError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(v.to_string())
}

/// A phone number as entered: digits with optional `+`, spaces, dashes,
/// dots, parentheses, `*` and `#`; at least one digit.
pub fn phone_number(field: &str, value: &str) -> Result<String, ValidationError> {
    let v = text(field, value, 64)?;
    if !v
        .chars()
        .all(|c| c.is_ascii_digit() || " +-.()*#/".contains(c))
    {
        return Err(ValidationError::new(
            field,
            "may contain only digits, spaces and + - . ( ) * # /",
        ));
    }
    if !v.chars().any(|c| c.is_ascii_digit()) {
        return Err(ValidationError::new(field, "must contain a digit"));
    }
    Ok(v)
}

/// A password chosen by an administrator or user.
pub fn new_password(field: &str, value: &str, min: usize) -> Result<(), ValidationError> {
    let n = value.chars().count();
    if n < min {
        return Err(ValidationError::new(
            field,
            format!("must be at least {min} characters"),
        ));
    }
    if n > 256 {
        return Err(ValidationError::new(
            field,
            "must be at most 256 characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_trims_and_rejects_empty_and_controls() {
        assert_eq!(text("name", "  Ann  ", 10).unwrap(), "Ann");
        assert_eq!(text("name", "   ", 10).unwrap_err().field, "name");
        assert!(text("name", "a\u{7}b", 10).is_err());
        assert!(text("name", "abcdefghijk", 10).is_err());
    }

    #[test]
    fn phone_numbers_need_digits_and_allowed_characters() {
        assert!(phone_number("number", "+49 (69) 123-45").is_ok());
        assert!(phone_number("number", "call me").is_err());
        assert!(phone_number("number", "+--").is_err());
    }
}
