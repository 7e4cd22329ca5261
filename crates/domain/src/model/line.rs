//! Lines: SIP accounts on the PBX, shown as line keys on profiles (SPEC §2,
//! §5). A line's password is not part of these types: it is write-only and
//! travels only as a [`crate::secret::Secret`] into storage, where it is
//! encrypted.

use super::note_change;
use crate::validate::{self, ValidationError};
use crate::{LineId, ProfileId, Timestamp};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineFields {
    /// Administrative name, unique.
    pub name: String,
    /// The SIP address of record, `sip:user@host` or `sips:user@host`.
    pub uri: String,
    /// Digest authentication username.
    pub username: String,
    /// What clients show on the line key.
    pub display_name: String,
    /// Second text clients may show on the line key.
    pub alternate_text: String,
    /// The number presented on outgoing calls.
    pub preferred_identity: String,
    /// Whether a turret answers the line's calls or they are answered at
    /// once on a speaker (intercom).
    pub answer_mode: AnswerMode,
}

/// How a line's incoming calls are answered (issue 6).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AnswerMode {
    /// A turret answers (the default).
    #[default]
    Manual,
    /// Answered at once on a speaker, as intercom lines are.
    Automatic,
}

impl AnswerMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AnswerMode::Manual => "manual",
            AnswerMode::Automatic => "automatic",
        }
    }

    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        match s.trim() {
            "" | "manual" => Ok(AnswerMode::Manual),
            "automatic" => Ok(AnswerMode::Automatic),
            _ => Err(ValidationError::new(
                "answer_mode",
                "must be manual or automatic",
            )),
        }
    }

    pub fn is_automatic(self) -> bool {
        self == AnswerMode::Automatic
    }
}

impl LineFields {
    pub fn new(
        name: &str,
        uri: &str,
        username: &str,
        display_name: &str,
        alternate_text: &str,
        preferred_identity: &str,
    ) -> Result<Self, ValidationError> {
        let uri_v = validate::text("uri", uri, 256)?;
        let rest = uri_v
            .strip_prefix("sip:")
            .or_else(|| uri_v.strip_prefix("sips:"))
            .ok_or_else(|| ValidationError::new("uri", "must start with sip: or sips:"))?;
        if rest.is_empty() || rest.contains(char::is_whitespace) {
            return Err(ValidationError::new(
                "uri",
                "must be a SIP address such as sip:1001@pbx.example.com",
            ));
        }
        let preferred_identity = if preferred_identity.trim().is_empty() {
            String::new()
        } else {
            validate::phone_number("preferred_identity", preferred_identity)?
        };
        Ok(LineFields {
            name: validate::text("name", name, 100)?,
            uri: uri_v,
            username: validate::optional_text("username", username, 128)?,
            display_name: validate::optional_text("display_name", display_name, 100)?,
            alternate_text: validate::optional_text("alternate_text", alternate_text, 100)?,
            preferred_identity,
            answer_mode: AnswerMode::Manual,
        })
    }

    pub fn with_answer_mode(mut self, mode: AnswerMode) -> Self {
        self.answer_mode = mode;
        self
    }

    pub fn changed_fields(&self, current: &LineFields) -> Vec<&'static str> {
        let mut c = Vec::new();
        note_change(&mut c, "name", &Some(&self.name), &&current.name);
        note_change(&mut c, "uri", &Some(&self.uri), &&current.uri);
        note_change(
            &mut c,
            "username",
            &Some(&self.username),
            &&current.username,
        );
        note_change(
            &mut c,
            "display_name",
            &Some(&self.display_name),
            &&current.display_name,
        );
        note_change(
            &mut c,
            "alternate_text",
            &Some(&self.alternate_text),
            &&current.alternate_text,
        );
        note_change(
            &mut c,
            "preferred_identity",
            &Some(&self.preferred_identity),
            &&current.preferred_identity,
        );
        if self.answer_mode != current.answer_mode {
            c.push("answer_mode");
        }
        c
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub id: LineId,
    pub fields: LineFields,
    /// Whether a password is stored; the password itself never leaves storage
    /// except decrypted for the Multi-Line Controller.
    pub has_password: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A line shown as a line key on a profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineAssignment {
    pub profile_id: ProfileId,
    pub line_id: LineId,
    /// Line key position, from 1; unique per profile.
    pub position: u32,
}

/// Highest line key position.
pub const LINE_KEY_MAX_POSITION: u32 = 999;

pub fn line_key_position(position: i64) -> Result<u32, ValidationError> {
    if !(1..=LINE_KEY_MAX_POSITION as i64).contains(&position) {
        return Err(ValidationError::new(
            "position",
            format!("must be between 1 and {LINE_KEY_MAX_POSITION}"),
        ));
    }
    Ok(position as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_uri_must_be_sip() {
        assert_eq!(
            LineFields::new("L1", "http://x", "", "", "", "")
                .unwrap_err()
                .field,
            "uri"
        );
        assert!(LineFields::new("L1", "sip:1001@pbx", "1001", "Desk", "", "+44 20 1").is_ok());
        assert_eq!(
            LineFields::new("L1", "sip:1@p", "", "", "", "x")
                .unwrap_err()
                .field,
            "preferred_identity"
        );
    }
}
