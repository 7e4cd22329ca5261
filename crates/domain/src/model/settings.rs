//! System settings (SPEC rules 4, 7, 11): every switch off by default.

use crate::Timestamp;
use crate::model::CdrFields;
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
    /// With forwarding on: every line's calls are recorded (else only the
    /// lines marked `recorded`).
    pub recording_all_lines: bool,
    /// Call-memory entries older than this many days are deleted; `None`
    /// keeps them (within the 100-entry FIFO).
    pub retention_call_memory_days: Option<u32>,
    /// Call data records older than this many days are deleted.
    pub retention_cdr_days: Option<u32>,
    /// Audit entries older than this many days are purged (None keeps them).
    pub retention_audit_days: Option<u32>,
    /// Numbers in what external applications receive.
    pub pseudonymisation: Pseudonymisation,
    /// Rule 11: call data records are produced at all (SPEC §5: "if
    /// enabled, a CDR").
    pub cdr_enabled: bool,
    /// CDRs are kept in the database (readable through the API, within
    /// their retention); off, they only go to the stream and the files.
    pub cdr_store: bool,
    /// The fields a CDR holds (SPEC §2: every field optional).
    pub cdr_fields: CdrFields,
    /// Rolling CDR files for offline pick-up.
    pub cdr_files: CdrFiles,
    pub updated_at: Timestamp,
}

impl Settings {
    /// Whether calls on a line marked `recorded` (or not) go to the
    /// recorders.
    pub fn records(&self, line_recorded: bool) -> bool {
        self.recorder_forwarding_enabled && (self.recording_all_lines || line_recorded)
    }
}

/// Which rolling files the CDR output writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CdrFiles {
    #[default]
    Off,
    Csv,
    Jsonl,
    Both,
}

impl CdrFiles {
    pub fn as_str(self) -> &'static str {
        match self {
            CdrFiles::Off => "off",
            CdrFiles::Csv => "csv",
            CdrFiles::Jsonl => "jsonl",
            CdrFiles::Both => "both",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "off" => Some(CdrFiles::Off),
            "csv" => Some(CdrFiles::Csv),
            "jsonl" => Some(CdrFiles::Jsonl),
            "both" => Some(CdrFiles::Both),
            _ => None,
        }
    }

    pub fn csv(self) -> bool {
        matches!(self, CdrFiles::Csv | CdrFiles::Both)
    }

    pub fn jsonl(self) -> bool {
        matches!(self, CdrFiles::Jsonl | CdrFiles::Both)
    }
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
    pub recording_all_lines: Option<bool>,
    /// `Some(None)` keeps entries forever.
    pub retention_call_memory_days: Option<Option<u32>>,
    pub retention_cdr_days: Option<Option<u32>>,
    pub retention_audit_days: Option<Option<u32>>,
    pub pseudonymisation: Option<Pseudonymisation>,
    pub cdr_enabled: Option<bool>,
    pub cdr_store: Option<bool>,
    pub cdr_fields: Option<CdrFields>,
    pub cdr_files: Option<CdrFiles>,
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
            "recording_all_lines",
            &self.recording_all_lines,
            &current.recording_all_lines,
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
        super::note_change(
            &mut c,
            "cdr_enabled",
            &self.cdr_enabled,
            &current.cdr_enabled,
        );
        super::note_change(&mut c, "cdr_store", &self.cdr_store, &current.cdr_store);
        super::note_change(&mut c, "cdr_fields", &self.cdr_fields, &current.cdr_fields);
        super::note_change(&mut c, "cdr_files", &self.cdr_files, &current.cdr_files);
        c
    }
}
