//! Profiles: what a trader logs into (SPEC §2, rules 2, 3, 6, 8).

use super::note_change;
use crate::secret::PasswordHash;
use crate::validate::{self, ValidationError};
use crate::{ProfileId, Timestamp};

/// Minimum length of the three profile passwords.
pub const PROFILE_PASSWORD_MIN: usize = 4;

/// The shortest password that may protect call memory (wrap its key):
/// twelve characters, so that even digits alone leave 10^12 guesses, each
/// an argon2id derivation, to whoever holds the database, the key files
/// and the backups (docs/call-memory.md). A 4-digit PIN may still open the
/// turret; it never opens call memory.
pub const CALL_MEMORY_PASSWORD_MIN: usize = 12;

/// Whether `password` is long enough to protect call memory.
pub fn protects_call_memory(password: &str) -> bool {
    password.chars().count() >= CALL_MEMORY_PASSWORD_MIN
}

/// Per-profile switches an administrator sets (SPEC rule 6), and the
/// speech units of the profile's turret (SPEC §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProfileFlags {
    /// Call memory is collected for this profile only when this is on.
    pub collect_call_memory: bool,
    /// The user may delete call-memory entries one by one.
    pub allow_call_memory_deletion: bool,
    /// Showing call memory asks for the call-memory password.
    pub call_memory_password_protected: bool,
    /// Handsets of the turret ([`HANDSETS`]).
    pub handsets: u8,
    /// Speaker channels of the turret ([`SPEAKERS`]).
    pub speakers: u8,
}

/// How many handsets a turret may have, and has unless set.
pub const HANDSETS: std::ops::RangeInclusive<u8> = 1..=4;
pub const DEFAULT_HANDSETS: u8 = 2;
/// How many speaker channels a turret may have, and has unless set.
pub const SPEAKERS: std::ops::RangeInclusive<u8> = 0..=8;
pub const DEFAULT_SPEAKERS: u8 = 4;

impl Default for ProfileFlags {
    fn default() -> Self {
        ProfileFlags {
            collect_call_memory: false,
            allow_call_memory_deletion: false,
            call_memory_password_protected: false,
            handsets: DEFAULT_HANDSETS,
            speakers: DEFAULT_SPEAKERS,
        }
    }
}

/// A count of speech units, checked against its range.
pub fn speech_units(
    field: &str,
    value: i64,
    range: std::ops::RangeInclusive<u8>,
) -> Result<u8, ValidationError> {
    u8::try_from(value)
        .ok()
        .filter(|v| range.contains(v))
        .ok_or_else(|| {
            ValidationError::new(
                field,
                format!("must be from {} to {}", range.start(), range.end()),
            )
        })
}

/// The handsets and speaker channels asked for (either may be absent),
/// each checked against its range.
pub fn speech_unit_counts(
    handsets: Option<i64>,
    speakers: Option<i64>,
) -> Result<(Option<u8>, Option<u8>), ValidationError> {
    Ok((
        handsets
            .map(|v| speech_units("handsets", v, HANDSETS))
            .transpose()?,
        speakers
            .map(|v| speech_units("speakers", v, SPEAKERS))
            .transpose()?,
    ))
}

impl ProfileFlags {
    /// The turret's speech units: `(id, kind, name)`, handsets first.
    pub fn speech_units(&self) -> Vec<(String, &'static str, String)> {
        let h = (1..=self.handsets)
            .map(|i| (format!("handset-{i}"), "handset", format!("Handset {i}")));
        let s = (1..=self.speakers)
            .map(|i| (format!("speaker-{i}"), "speaker", format!("Speaker {i}")));
        h.chain(s).collect()
    }
}

/// A profile as shown to administrators: never its password hashes, only
/// whether the optional passwords are set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    pub id: ProfileId,
    /// Often a person's name: personal data (SPEC §2).
    pub name: String,
    pub has_contacts_password: bool,
    pub has_call_memory_password: bool,
    pub flags: ProfileFlags,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Clone, Debug)]
pub struct NewProfile {
    pub name: String,
    pub password: PasswordHash,
    pub contacts_password: Option<PasswordHash>,
    pub call_memory_password: Option<PasswordHash>,
    pub flags: ProfileFlags,
    pub call_memory_keys: CallMemoryKeys,
}

/// A profile's call-memory key pair as stored: the public key entries are
/// sealed to, and the private key wrapped (encrypted) under each password
/// that may open it. Opaque bytes here; `openturret_store::sealing` makes
/// and opens them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallMemoryKeys {
    pub public: Option<[u8; 32]>,
    pub wrapped_by_profile_password: Option<Vec<u8>>,
    pub wrapped_by_call_memory_password: Option<Vec<u8>>,
}

/// A change to a profile: `None` leaves a field as it is. For the optional
/// passwords, `Some(None)` removes the password.
#[derive(Clone, Debug, Default)]
pub struct ProfileChanges {
    pub name: Option<String>,
    pub password: Option<PasswordHash>,
    pub contacts_password: Option<Option<PasswordHash>>,
    pub call_memory_password: Option<Option<PasswordHash>>,
    pub collect_call_memory: Option<bool>,
    pub allow_call_memory_deletion: Option<bool>,
    pub call_memory_password_protected: Option<bool>,
    pub handsets: Option<u8>,
    pub speakers: Option<u8>,
    /// New call-memory keys; `erase_call_memory` deletes every sealed entry
    /// (they could no longer be opened).
    pub call_memory_keys: Option<CallMemoryKeys>,
    pub erase_call_memory: bool,
}

impl ProfileChanges {
    /// The names of the fields this change alters, for the audit log. A
    /// password given is always a change (its old value is not comparable).
    pub fn changed_fields(&self, current: &Profile) -> Vec<&'static str> {
        let mut changed = Vec::new();
        note_change(&mut changed, "name", &self.name, &current.name);
        if self.password.is_some() {
            changed.push("password");
        }
        if self.contacts_password.is_some() {
            changed.push("contacts_password");
        }
        if self.call_memory_password.is_some() {
            changed.push("call_memory_password");
        }
        let f = &current.flags;
        note_change(
            &mut changed,
            "collect_call_memory",
            &self.collect_call_memory,
            &f.collect_call_memory,
        );
        note_change(
            &mut changed,
            "allow_call_memory_deletion",
            &self.allow_call_memory_deletion,
            &f.allow_call_memory_deletion,
        );
        note_change(
            &mut changed,
            "call_memory_password_protected",
            &self.call_memory_password_protected,
            &f.call_memory_password_protected,
        );
        note_change(&mut changed, "handsets", &self.handsets, &f.handsets);
        note_change(&mut changed, "speakers", &self.speakers, &f.speakers);
        changed
    }
}

/// A profile's password hashes, for verifying a client's login and
/// unlocks; never shown.
#[derive(Clone, Debug)]
pub struct ProfileSecrets {
    pub password: PasswordHash,
    pub contacts_password: Option<PasswordHash>,
    pub call_memory_password: Option<PasswordHash>,
}

/// A profile name: the login list entry every client sees (SPEC rule 2).
pub fn profile_name(value: &str) -> Result<String, ValidationError> {
    validate::text("name", value, 100)
}

/// What deleting a profile erases (SPEC rule 8), counted so that the
/// administrator can be told exactly what goes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProfileErasure {
    pub local_contacts: u64,
    pub speed_dials: u64,
    pub call_memory_entries: u64,
    pub line_assignments: u64,
    pub consents: u64,
    /// Call data records that named the profile: they stay, without the
    /// name.
    pub cdrs_named: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> Profile {
        Profile {
            id: ProfileId(1),
            name: "Ann".into(),
            has_contacts_password: false,
            has_call_memory_password: false,
            flags: ProfileFlags::default(),
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
        }
    }

    #[test]
    fn only_fields_that_differ_are_reported_and_passwords_always_are() {
        let c = ProfileChanges {
            name: Some("Ann".into()),
            password: Some(PasswordHash::from_phc("x".into())),
            collect_call_memory: Some(true),
            allow_call_memory_deletion: Some(false),
            ..Default::default()
        };
        assert_eq!(
            c.changed_fields(&profile()),
            vec!["password", "collect_call_memory"]
        );
    }
}
