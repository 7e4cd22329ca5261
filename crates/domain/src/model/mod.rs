//! What the system holds (SPEC §2), one submodule per kind of data.
//!
//! These are domain types: they are never serialised onto the wire as they
//! are (STYLE habit 2). The server maps them to its own wire types.

pub mod admin;
pub mod api_key;
pub mod call;
pub mod consent;
pub mod contact;
pub mod event;
pub mod line;
pub mod profile;
pub mod recorder;
pub mod settings;

pub use admin::*;
pub use api_key::*;
pub use call::*;
pub use consent::*;
pub use contact::*;
pub use event::*;
pub use line::*;
pub use profile::*;
pub use recorder::*;
pub use settings::*;

/// Adds `field` to `changed` when `new` is set and differs from `current`.
pub(crate) fn note_change<T: PartialEq>(
    changed: &mut Vec<&'static str>,
    field: &'static str,
    new: &Option<T>,
    current: &T,
) {
    if matches!(new, Some(v) if v != current) {
        changed.push(field);
    }
}
