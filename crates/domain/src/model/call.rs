//! Call memory and call data records (SPEC §2, rule 6).

use crate::{CallMemoryId, CdrId, ProfileId, Timestamp};

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
}
