//! Call memory and call data records (SPEC §2, rule 6).

use crate::{CallMemoryId, CdrId, LineId, ProfileId, Timestamp};

/// At most this many call-memory entries per profile; the oldest goes when
/// one more arrives (SPEC rule 6). The store enforces it.
pub const CALL_MEMORY_CAPACITY: usize = 100;

/// One call-memory entry as stored: its content is an opaque, sealed blob
/// that only the profile's user can open, so storage (and anyone reading the
/// database or a backup) never sees it in clear.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallMemoryRecord {
    pub id: CallMemoryId,
    pub profile_id: ProfileId,
    pub created_at: Timestamp,
    pub sealed: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Incoming,
    Outgoing,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Incoming => "in",
            Direction::Outgoing => "out",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "in" => Some(Direction::Incoming),
            "out" => Some(Direction::Outgoing),
            _ => None,
        }
    }
}

/// Whether a call was handled at this turret or at another one sharing the
/// line (SPEC rule 6, "answered by local/remote"; CDR "call type").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Locality {
    Local,
    Remote,
}

impl Locality {
    pub fn as_str(self) -> &'static str {
        match self {
            Locality::Local => "local",
            Locality::Remote => "remote",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "local" => Some(Locality::Local),
            "remote" => Some(Locality::Remote),
            _ => None,
        }
    }
}

/// A call data record (SPEC §2): every field optional, as the admin chooses
/// which to produce.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cdr {
    pub id: Option<CdrId>,
    /// The line the call was on: not one of the SPEC's fields, it decides
    /// which API keys may see the record.
    pub line_id: Option<LineId>,
    /// The profile the record names, kept so that erasing the profile can
    /// find its records (never sent out).
    pub profile_id: Option<ProfileId>,
    /// When the record was made (never sent out): the API's time filters
    /// and retention use it, as the start and end times may be switched
    /// off. `None` on a new record: the store sets it.
    pub recorded_at: Option<Timestamp>,
    pub profile_name: Option<String>,
    pub attendant_group: Option<String>,
    pub called_number: Option<String>,
    pub calling_number: Option<String>,
    pub duration_ms: Option<i64>,
    pub call_type: Option<Locality>,
    pub direction: Option<Direction>,
    pub started_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
}

/// One call-memory entry in clear: what only the profile's user sees
/// (SPEC §2, rule 6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallMemoryEntry {
    /// The remote party's number.
    pub number: String,
    /// The caller's or called party's name, from caller identification;
    /// empty when unknown.
    pub name: String,
    pub at: Timestamp,
    pub direction: Direction,
    pub answered: bool,
    /// For answered calls: here (local) or at another turret (remote).
    pub answered_by: Option<Locality>,
    /// How long the call was connected, for answered calls.
    pub duration_ms: Option<i64>,
    /// Why a call that was not answered ended (`486 Busy Here`,
    /// `no_answer`, `cancelled`); empty otherwise.
    pub reason: String,
}

/// One of the CDR fields of SPEC §2, each of which the admin may switch off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CdrField {
    ProfileName,
    AttendantGroup,
    CalledNumber,
    CallingNumber,
    Duration,
    CallType,
    Direction,
    StartedAt,
    EndedAt,
}

impl CdrField {
    /// Every field, in the order of SPEC §2 (and of the CSV columns).
    pub const ALL: [CdrField; 9] = [
        CdrField::ProfileName,
        CdrField::AttendantGroup,
        CdrField::CalledNumber,
        CdrField::CallingNumber,
        CdrField::Duration,
        CdrField::CallType,
        CdrField::Direction,
        CdrField::StartedAt,
        CdrField::EndedAt,
    ];

    /// The field's name in the API, the stream and the files.
    pub fn as_str(self) -> &'static str {
        match self {
            CdrField::ProfileName => "profile_name",
            CdrField::AttendantGroup => "attendant_group",
            CdrField::CalledNumber => "called_number",
            CdrField::CallingNumber => "calling_number",
            CdrField::Duration => "duration_ms",
            CdrField::CallType => "call_type",
            CdrField::Direction => "direction",
            CdrField::StartedAt => "started_at",
            CdrField::EndedAt => "ended_at",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A set of CDR fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CdrFields(u16);

impl Default for CdrFields {
    fn default() -> Self {
        Self::all()
    }
}

impl CdrFields {
    pub fn all() -> Self {
        CdrFields(CdrField::ALL.iter().fold(0, |m, f| m | f.bit()))
    }

    pub fn none() -> Self {
        CdrFields(0)
    }

    pub fn with(self, f: CdrField) -> Self {
        CdrFields(self.0 | f.bit())
    }

    pub fn contains(self, f: CdrField) -> bool {
        self.0 & f.bit() != 0
    }

    /// The fields in the set, in canonical order.
    pub fn iter(self) -> impl Iterator<Item = CdrField> {
        CdrField::ALL.into_iter().filter(move |f| self.contains(*f))
    }

    /// Comma-separated names, as stored.
    pub fn to_list(self) -> String {
        self.iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Parses names separated by commas; the unknown one is the error.
    pub fn parse_list<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut set = Self::none();
        for n in names {
            let n = n.trim();
            if n.is_empty() {
                continue;
            }
            set = set.with(CdrField::parse(n).ok_or_else(|| n.to_string())?);
        }
        Ok(set)
    }
}

impl Cdr {
    /// Drops every field not in `fields`, so a switched-off field is never
    /// stored or sent.
    pub fn keep_only(&mut self, fields: CdrFields) {
        use CdrField as F;
        let off = |f: F| !fields.contains(f);
        if off(F::ProfileName) {
            self.profile_name = None;
            self.profile_id = None;
        }
        if off(F::AttendantGroup) {
            self.attendant_group = None;
        }
        if off(F::CalledNumber) {
            self.called_number = None;
        }
        if off(F::CallingNumber) {
            self.calling_number = None;
        }
        if off(F::Duration) {
            self.duration_ms = None;
        }
        if off(F::CallType) {
            self.call_type = None;
        }
        if off(F::Direction) {
            self.direction = None;
        }
        if off(F::StartedAt) {
            self.started_at = None;
        }
        if off(F::EndedAt) {
            self.ended_at = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdr_fields_round_trip_and_name_the_unknown_one() {
        let f = CdrFields::parse_list("called_number, duration_ms".split(',')).unwrap();
        assert_eq!(f.to_list(), "called_number,duration_ms");
        assert!(!f.contains(CdrField::ProfileName));
        assert_eq!(
            CdrFields::parse_list(CdrFields::all().to_list().split(',')).unwrap(),
            CdrFields::all()
        );
        assert_eq!(
            CdrFields::parse_list(["direction", "colour"]).unwrap_err(),
            "colour"
        );
    }

    #[test]
    fn keep_only_clears_switched_off_fields() {
        let mut c = Cdr {
            profile_name: Some("Ann".into()),
            profile_id: Some(ProfileId(3)),
            called_number: Some("+4930".into()),
            duration_ms: Some(5),
            ..Default::default()
        };
        c.keep_only(CdrFields::none().with(CdrField::Duration));
        assert_eq!(c.profile_name, None);
        assert_eq!(c.profile_id, None);
        assert_eq!(c.called_number, None);
        assert_eq!(c.duration_ms, Some(5));
    }
}
