//! API keys of external applications (SPEC §1, rule 11; issue 7): each
//! with a name, a scope and an expiry. The key itself is shown once and
//! stored only as its SHA-256 (it is 256 random bits, so a fast hash is
//! enough: there is nothing to guess).

use crate::validate::{self, ValidationError};
use crate::{ApiKeyId, LineId, Timestamp};

/// What the events of a key may be about.
pub const EVENT_KINDS: &[&str] = &["calls", "lines", "phones", "recording", "errors"];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeyScope {
    /// The lines whose calls and states the key sees; `None`: every line.
    pub lines: Option<Vec<LineId>>,
    /// Event kinds, from [`EVENT_KINDS`].
    pub events: Vec<String>,
    /// Whether the key may read call data records.
    pub cdrs: bool,
}

impl ApiKeyScope {
    pub fn new(
        lines: Option<Vec<LineId>>,
        events: Vec<String>,
        cdrs: bool,
    ) -> Result<Self, ValidationError> {
        for e in &events {
            if !EVENT_KINDS.contains(&e.as_str()) {
                return Err(ValidationError::new(
                    "events",
                    format!("{e:?} is not one of {}", EVENT_KINDS.join(", ")),
                ));
            }
        }
        if events.is_empty() && !cdrs {
            return Err(ValidationError::new(
                "events",
                "a key needs at least one event kind or CDR access",
            ));
        }
        let mut events = events;
        events.sort();
        events.dedup();
        Ok(ApiKeyScope {
            lines,
            events,
            cdrs,
        })
    }

    pub fn allows_line(&self, line: LineId) -> bool {
        self.lines.as_ref().is_none_or(|l| l.contains(&line))
    }

    pub fn allows_event(&self, kind: &str) -> bool {
        self.events.iter().any(|e| e == kind)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub name: String,
    pub scope: ApiKeyScope,
    pub expires_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
}

impl ApiKey {
    /// Usable now: neither revoked nor expired.
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| e.0 > now.0)
    }
}

pub fn api_key_name(name: &str) -> Result<String, ValidationError> {
    validate::text("name", name, 100)
}
