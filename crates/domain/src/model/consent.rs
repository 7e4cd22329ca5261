//! Consent records (SPEC §2): who consented to what, how and when, and who
//! recorded it. Withdrawal equals deletion of the profile (rule 8).

use crate::validate::{self, ValidationError};
use crate::{ConsentId, ProfileId, Timestamp};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsentChannel {
    Paper,
    Email,
    Electronic,
}

impl ConsentChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentChannel::Paper => "paper",
            ConsentChannel::Email => "email",
            ConsentChannel::Electronic => "electronic",
        }
    }

    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "paper" => Ok(ConsentChannel::Paper),
            "email" | "e-mail" => Ok(ConsentChannel::Email),
            "electronic" => Ok(ConsentChannel::Electronic),
            _ => Err(ValidationError::new(
                "channel",
                "must be paper, email or electronic",
            )),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consent {
    pub id: ConsentId,
    pub profile_id: ProfileId,
    pub purpose: String,
    pub channel: ConsentChannel,
    pub given_at: Timestamp,
    /// The administrator who recorded it.
    pub recorded_by: String,
    pub created_at: Timestamp,
}

#[derive(Clone, Debug)]
pub struct NewConsent {
    pub profile_id: ProfileId,
    pub purpose: String,
    pub channel: ConsentChannel,
    pub given_at: Timestamp,
    pub recorded_by: String,
}

pub fn consent_purpose(value: &str) -> Result<String, ValidationError> {
    validate::text("purpose", value, 500)
}
