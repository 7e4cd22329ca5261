//! The OpenTurret domain: what the system holds (SPEC §2) and the rules it
//! obeys (SPEC §3), with no I/O.
//!
//! Architecture invariant: this crate depends on no database, network or
//! HTTP crate. Storage (`openturret-store`) and the server
//! (`openturret-server`) depend on it, never the other way round.
//!
//! Map of the modules:
//! - [`ids`]: newtype identifiers, so a `LineId` can never be passed as a
//!   `ProfileId`.
//! - [`secret`]: clear-text secrets and password hashes with redacting `Debug`.
//! - [`validate`]: the one validation error type, naming field and reason.
//! - [`number`]: phone-number normalisation used for search and caller id.
//! - [`model`]: administrators, profiles, contacts, keys, lines, settings,
//!   consents, call memory, call data records.
//! - [`cell`]: CSV cells safe from spreadsheet formula injection.
//! - [`audit`]: audit entries and the hash chain that makes them
//!   tamper-evident.
//! - [`words`]: searching names by the beginning of any of their words.
#![forbid(unsafe_code)]

pub mod audit;
pub mod cell;
pub mod ids;
pub mod model;
pub mod number;
pub mod secret;
pub mod validate;
pub mod words;

pub use ids::*;
pub use validate::ValidationError;

/// A point in time as milliseconds since the Unix epoch, UTC.
///
/// Kept as an integer so that every SQL dialect compares and indexes it the
/// same way; it is rendered as RFC 3339 only at the edges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(d.as_millis() as i64)
    }

    /// The time as RFC 3339 in UTC with milliseconds
    /// (`2026-12-04T06:08:59.123Z`), as every interface shows it; a time
    /// before the epoch shows as the epoch.
    pub fn rfc3339(self) -> String {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(self.0.max(0) as u64);
        humantime::format_rfc3339_millis(at).to_string()
    }
}
