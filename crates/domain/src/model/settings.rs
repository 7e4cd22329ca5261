//! System settings (SPEC rules 4, 7, 11): every switch off by default.

use crate::Timestamp;
use crate::secret::PasswordHash;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Rule 4: client users may modify (never delete) global contacts.
    pub global_contacts_changeable: bool,
    /// Rule 7: an admin may log into any profile with the master password.
    pub master_password_enabled: bool,
    /// Rule 11: the CTI interface.
    pub cti_enabled: bool,
    /// Rule 11: the API interface.
    pub api_enabled: bool,
    /// Rule 11: forwarding calls to a voice recorder.
    pub recorder_forwarding_enabled: bool,
    /// Call-memory entries older than this many days are deleted; `None`
    /// keeps them (within the 100-entry FIFO).
    pub retention_call_memory_days: Option<u32>,
    /// Call data records older than this many days are deleted.
    pub retention_cdr_days: Option<u32>,
    /// Audit entries older than this many days are purged (None keeps them).
    pub retention_audit_days: Option<u32>,
    /// Numbers in what external applications receive.
    pub pseudonymisation: Pseudonymisation,
    pub updated_at: Timestamp,
}

/// A change to the settings; `None` leaves a switch as it is.
///
/// The master password is enabled by giving its hash and disabled by
/// `master_password: Some(None)`, which also clears the hash.
#[derive(Clone, Debug, Default)]
pub struct SettingsChanges {
    pub global_contacts_changeable: Option<bool>,
    pub master_password: Option<Option<PasswordHash>>,
    pub cti_enabled: Option<bool>,
    pub api_enabled: Option<bool>,
    pub recorder_forwarding_enabled: Option<bool>,
    /// `Some(None)` keeps entries forever.
    pub retention_call_memory_days: Option<Option<u32>>,
    pub retention_cdr_days: Option<Option<u32>>,
    pub retention_audit_days: Option<Option<u32>>,
    pub pseudonymisation: Option<Pseudonymisation>,
}

/// How numbers appear in what external applications receive (SPEC §4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Pseudonymisation {
    #[default]
    Off,
    /// A keyed hash (HMAC), under a key an administrator can rotate.
    KeyedHash,
    /// The last three digits hidden.
    Truncate,
}

impl Pseudonymisation {
    pub fn as_str(self) -> &'static str {
        match self {
            Pseudonymisation::Off => "off",
            Pseudonymisation::KeyedHash => "keyed_hash",
            Pseudonymisation::Truncate => "truncate",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "off" => Some(Pseudonymisation::Off),
            "keyed_hash" => Some(Pseudonymisation::KeyedHash),
            "truncate" => Some(Pseudonymisation::Truncate),
            _ => None,
        }
    }
}

impl SettingsChanges {
    pub fn changed_fields(&self, current: &Settings) -> Vec<&'static str> {
        let mut c = Vec::new();
        super::note_change(
            &mut c,
            "global_contacts_changeable",
            &self.global_contacts_changeable,
            &current.global_contacts_changeable,
        );
        match &self.master_password {
            Some(Some(_)) => c.push("master_password"),
            Some(None) if current.master_password_enabled => c.push("master_password"),
            _ => {}
        }
        super::note_change(
            &mut c,
            "cti_enabled",
            &self.cti_enabled,
            &current.cti_enabled,
        );
        super::note_change(
            &mut c,
            "api_enabled",
            &self.api_enabled,
            &current.api_enabled,
        );
        super::note_change(
            &mut c,
            "recorder_forwarding_enabled",
            &self.recorder_forwarding_enabled,
            &current.recorder_forwarding_enabled,
        );
        super::note_change(
            &mut c,
            "retention_call_memory_days",
            &self.retention_call_memory_days,
            &current.retention_call_memory_days,
        );
        super::note_change(
            &mut c,
            "retention_cdr_days",
            &self.retention_cdr_days,
            &current.retention_cdr_days,
        );
        super::note_change(
            &mut c,
            "retention_audit_days",
            &self.retention_audit_days,
            &current.retention_audit_days,
        );
        super::note_change(
            &mut c,
            "pseudonymisation",
            &self.pseudonymisation,
            &current.pseudonymisation,
        );
        c
    }
}
