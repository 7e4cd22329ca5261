//! The client protocol's wire types (documented in `docs/protocol.md`).
//!
//! Every client message is a JSON object with an `id` and an `op`; the
//! server answers `{"re": id, "ok": ...}` or `{"re": id, "error": {...}}`,
//! and pushes `{"push": kind, ...}` at any time. Wire types never carry
//! domain types straight (STYLE habit 2).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::http::error::ApiError;

/// The protocol version this server speaks.
pub const PROTOCOL_VERSION: u32 = 1;

#[derive(Deserialize)]
pub struct Envelope {
    pub id: u64,
    #[serde(flatten)]
    pub request: Request,
}

/// Every operation a client may ask for. No `Debug`: several carry
/// passwords.
#[derive(Deserialize, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Hello {
        version: u32,
    },
    Profiles,
    Login {
        profile_id: i64,
        password: String,
    },
    MasterLogin {
        profile_id: i64,
        password: String,
    },
    Resume {
        token: String,
    },
    Logout,
    Config,
    UnlockContacts {
        password: String,
    },
    Contacts {
        search: Option<String>,
        limit: Option<i64>,
    },
    CreateContact {
        name: String,
        number: String,
        #[serde(default)]
        field3: String,
        #[serde(default)]
        field4: String,
    },
    UpdateContact {
        contact_id: i64,
        name: Option<String>,
        number: Option<String>,
        field3: Option<String>,
        field4: Option<String>,
    },
    DeleteContact {
        contact_id: i64,
    },
    UpdateGlobalContact {
        contact_id: i64,
        name: Option<String>,
        number: Option<String>,
        field3: Option<String>,
        field4: Option<String>,
    },
    DeleteGlobalContact {
        contact_id: i64,
    },
    CreateSpeedDial {
        kind: String,
        position: i64,
        name: String,
        number: String,
    },
    UpdateSpeedDial {
        key_id: i64,
        kind: Option<String>,
        position: Option<i64>,
        name: Option<String>,
        number: Option<String>,
    },
    DeleteSpeedDial {
        key_id: i64,
    },
    UnlockCallMemory {
        password: String,
    },
    CallMemory,
    DeleteCallMemory {
        entry_id: i64,
    },
    Lookup {
        number: String,
    },
    SubjectExport,
    /// The calls and line states of the profile's lines.
    Calls,
    #[serde(untagged)]
    Call(CallOp),
}

/// Telephony operations (issue 6).
#[derive(Deserialize, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum CallOp {
    Dial {
        line_id: Option<i64>,
        number: String,
    },
    Answer {
        call_id: u64,
        speech_unit: Option<String>,
    },
    Reject {
        call_id: u64,
    },
    Hangup {
        call_id: u64,
    },
    Hold {
        call_id: u64,
    },
    Retrieve {
        call_id: u64,
    },
    Transfer {
        call_id: u64,
        target: String,
    },
    /// Moves a call to another of the turret's speech units.
    Move {
        call_id: u64,
        speech_unit: String,
    },
    /// Digits sent to the far end as RFC 4733 telephone events.
    Dtmf {
        call_id: u64,
        digits: String,
    },
    /// A WebRTC offer to hear and speak on a call the profile holds; the
    /// answer carries the MLC's SDP.
    Voice {
        call_id: u64,
        sdp: String,
    },
}

/// A refusal or failure, as sent to the client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ProtoError {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub retry_after_secs: Option<u64>,
}

impl ProtoError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        ProtoError {
            code: code.into(),
            message: message.into(),
            field: None,
            retry_after_secs: None,
        }
    }
}

impl From<ApiError> for ProtoError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Invalid { field, reason } | ApiError::Duplicate { field, reason } => {
                ProtoError {
                    message: format!("{field} {reason}"),
                    field: Some(field),
                    ..ProtoError::new("invalid", "")
                }
            }
            ApiError::NotFound(what) => ProtoError::new("not_found", format!("{what} not found")),
            ApiError::TooMany {
                retry_after,
                message,
            } => ProtoError {
                retry_after_secs: Some(retry_after.as_secs().max(1)),
                ..ProtoError::new("too_many_attempts", message)
            },
            ApiError::Unauthorized(m) => ProtoError::new("wrong_password", m),
            ApiError::Forbidden(code, m) => ProtoError::new(code, m),
            ApiError::BadBody(m) => ProtoError::new("bad_request", m),
            ApiError::NotImplemented(m) => ProtoError::new("not_implemented", m),
            ApiError::Internal(cause) => {
                tracing::error!(
                    error = format!("{cause:#}"),
                    "internal error in client protocol"
                );
                ProtoError::new("internal", "internal error; the server log has details")
            }
        }
    }
}

impl From<openturret_store::StoreError> for ProtoError {
    fn from(e: openturret_store::StoreError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<openturret_domain::ValidationError> for ProtoError {
    fn from(e: openturret_domain::ValidationError) -> Self {
        ApiError::from(e).into()
    }
}

pub fn reply(id: u64, result: Result<Value, ProtoError>) -> String {
    match result {
        Ok(v) => json!({"re": id, "ok": v}).to_string(),
        Err(e) => json!({"re": id, "error": e}).to_string(),
    }
}
