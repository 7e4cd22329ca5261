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

pub mod backup;
pub mod keys;
pub mod ledger;
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
