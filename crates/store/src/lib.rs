//! Storage for the System Manager: the [`Store`] traits every caller uses,
//! and their SQLite implementation ([`sqlite::SqliteStore`]).
//!
//! Contracts every implementation keeps:
//! - **Audit in the same transaction.** Every method that changes data takes
//!   the [`AuditRecord`] describing the change and appends it to the hash
//!   chain inside the same transaction: a change is never stored without its
//!   audit entry, nor an entry without its change.
//! - **Secrets.** Password hashes go in as [`PasswordHash`] and only come out
//!   through the `*_credentials` / `*_hash` methods that verify logins. Line
//!   passwords go in as [`Secret`] and are encrypted with a key kept outside
//!   the database (see [`keys`]); only [`LineStore::line_password`] decrypts.
//! - **Call memory is opaque.** Entries are sealed blobs; storage enforces the
//!   100-entry FIFO (SPEC rule 6) and never looks inside.
//! - **Errors name the field.** A unique-key clash is [`StoreError::Conflict`]
//!   with the field it concerns.
//!
//! Architecture invariant: nothing outside `sqlite/` knows it is SQLite. A
//! PostgreSQL implementation adds a sibling module and its own migrations.
#![forbid(unsafe_code)]

/// An audit entry from a database row (the same columns in every
/// implementation). A macro, so that each backend's row type serves.
#[macro_export]
#[doc(hidden)]
macro_rules! audit_entry_of_row {
    ($r:expr) => {{
        use openturret_domain::Timestamp;
        use openturret_domain::audit::{AuditEntry, AuditLevel, AuditPii, AuditRecord};
        use sqlx::Row;
        use $crate::StoreError;
        let r = $r;

        let level: String = r.get("level");
        let changes: String = r.get("changes");
        let salt: Option<Vec<u8>> = r.get("pii_salt");
        Ok(AuditEntry {
            seq: r.get("seq"),
            record: AuditRecord {
                at: Timestamp(r.get("at")),
                level: AuditLevel::parse(&level)
                    .ok_or_else(|| StoreError::Integrity(format!("audit level {level:?}")))?,
                event_type: r.get("event_type"),
                object_type: r.get("object_type"),
                object_id: r.get("object_id"),
                changes: changes
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
                success: r.get("success"),
                server_host: r.get("server_host"),
                pii: AuditPii {
                    actor: r.get("actor"),
                    client_ip: r.get("client_ip"),
                    client_host: r.get("client_host"),
                },
            },
            pii_salt: match salt {
                Some(s) => Some(
                    s.try_into()
                        .map_err(|_| StoreError::Integrity("audit salt length".into()))?,
                ),
                None => None,
            },
            pii_commit: $crate::to32(&r.get::<Vec<u8>, _>("pii_commit"))?,
            prev_mac: $crate::to32(&r.get::<Vec<u8>, _>("prev_mac"))?,
            mac: $crate::to32(&r.get::<Vec<u8>, _>("mac"))?,
        })
    }};
}

/// An error-log entry from a database row (the same columns in every
/// implementation).
#[macro_export]
#[doc(hidden)]
macro_rules! event_entry_of_row {
    ($r:expr) => {{
        use openturret_domain::Timestamp;
        use openturret_domain::model::{Event, EventEntry, EventLevel};
        use sqlx::Row;
        use $crate::StoreError;
        let r = $r;

        let level: String = r.get("level");
        let props: String = r.get("properties");
        Ok(EventEntry {
            id: r.get("id"),
            seq: r.get("seq"),
            event: Event {
                component: r.get("component"),
                level: EventLevel::parse(&level)
                    .ok_or_else(|| StoreError::Integrity(format!("event level {level:?}")))?,
                event_type: r.get("event_type"),
                object: r.get("object"),
                message: r.get("message"),
                properties: serde_json::from_str(&props)
                    .map_err(|e| StoreError::Integrity(format!("event properties: {e}")))?,
            },
            count: r.get::<i64, _>("count") as u64,
            first_at: Timestamp(r.get("first_at")),
            last_at: Timestamp(r.get("last_at")),
        })
    }};
}

pub mod backup;
mod chain;
pub mod head;
pub mod keys;
pub mod ledger;
pub mod postgres;
pub mod sealing;
pub mod sqlite;
mod traits;

pub use traits::*;

use openturret_domain::ValidationError;

/// What can go wrong in storage.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such object (its kind is named: "profile", "line", ...).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A unique key is already taken.
    #[error("{field}: {reason}")]
    Conflict { field: String, reason: String },
    /// The request is well-formed but not allowed by the data's state.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// Stored data failed an integrity check (a ciphertext that does not
    /// decrypt, a key file of the wrong size).
    #[error("integrity: {0}")]
    Integrity(String),
    /// The database or file system failed.
    #[error("storage backend: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    pub fn backend(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Backend(Box::new(e))
    }
}

pub use openturret_domain::audit::AuditRecord;
pub use openturret_domain::secret::{PasswordHash, Secret};

/// A stored 32-byte hash, checked for its length.
#[doc(hidden)]
pub fn to32(v: &[u8]) -> Result<[u8; 32]> {
    v.try_into()
        .map_err(|_| StoreError::Integrity("stored hash has the wrong length".into()))
}

/// The audit object id of a new object (see the `Store` docs): a given
/// prefix ending in `/` takes the new id after it.
pub(crate) fn object_id(prefix: Option<String>, id: i64) -> String {
    match prefix {
        Some(p) if p.ends_with('/') => format!("{p}{id}"),
        _ => id.to_string(),
    }
}
