//! The component link between the System Manager and `turret mlc`
//! processes (SPEC §1: mutual TLS between server components).
//!
//! **Trust.** The System Manager keeps an internal CA in
//! `<data_dir>/components/` (its key never leaves that folder, mode 0600).
//! `turret mlc enrol NAME` issues an MLC its client certificate and key and
//! records the certificate's SHA-256 fingerprint in `enrolled.json`;
//! `turret mlc revoke NAME` removes it. The component listener
//! (`components.listen`) demands a client certificate of that CA (TLS 1.3)
//! and then one that is enrolled: a copied or revoked certificate gets
//! nowhere. The MLC checks the System Manager's certificate against the same
//! CA, so neither side trusts anything else.
//!
//! **Protocol.** One WebSocket per MLC, JSON text messages with a type
//! `t`. The MLC says `hello` and gets `welcome` (its name and the base of
//! its call ids). It asks for its `lines` (with their passwords: it must
//! register them) and for one `line` when told `line_changed`, and it
//! `resync`s when told to (lines moving between MLCs). It reports
//! `line_state`, `call` (changed or ended), `rejected_here` and
//! `transferred`, in order, and asks `flush` before it stops. The System
//! Manager sends `op` (dial, answer, reject, hangup, hold, retrieve,
//! transfer) and the MLC answers with `result`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use async_trait::async_trait;
use futures_util::{SinkExt, StreamExt};
use openturret_domain::model::{AnswerMode, Line, LineFields};
use openturret_domain::secret::Secret;
use openturret_domain::{LineId, ProfileId, Timestamp};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

use crate::App;

use crate::mlc::CallView;
use crate::mlc::call::{OpError, op_err};
use crate::mlc::{Host, LineState, Mlc};
use crate::telephony;

mod ca;
mod link;
mod remote;

pub use ca::{enrol, enrolled, revoke};
pub use link::{Link, serve};
pub use remote::{MlcOptions, run_mlc};

/// The link protocol's version.
pub const VERSION: u64 = 1;
/// Call ids of the n-th MLC to connect start above n << 40.
const CALL_ID_SPACE: u64 = 1 << 40;
/// How often a connected MLC's certificate is checked against the
/// enrolled list (a revoked one is cut off).
const REVOCATION_CHECK: Duration = Duration::from_secs(2);
/// How long an operation may wait for the MLC's result.
const OP_TIMEOUT: Duration = Duration::from_secs(15);

/// The codes a call operation can fail with (they travel as text).
pub(super) fn known_code(c: &str) -> &'static str {
    const CODES: &[&str] = &[
        "not_found",
        "not_ringing",
        "not_answered",
        "forbidden",
        "invalid",
        "line_down",
        "no_line",
        "refused",
        "no_answer",
        "unavailable",
        "internal",
    ];
    CODES.iter().find(|x| **x == c).copied().unwrap_or("failed")
}

pub(super) fn state_json(s: &LineState) -> Value {
    json!({"state": s.name(), "reason": s.reason()})
}

pub(super) fn state_of(v: &Value) -> LineState {
    match v["state"].as_str().unwrap_or_default() {
        "registered" => LineState::Registered,
        "registering" => LineState::Registering,
        "failing" => LineState::Failing(v["reason"].as_str().unwrap_or_default().to_string()),
        "unknown" => LineState::Unknown,
        _ => LineState::Unregistered,
    }
}

pub(super) fn line_json((l, password): &(Line, Option<Secret>)) -> Value {
    let f = &l.fields;
    json!({"id": l.id.0, "name": f.name, "uri": f.uri, "username": f.username,
        "display_name": f.display_name, "alternate_text": f.alternate_text,
        "preferred_identity": f.preferred_identity, "answer_mode": f.answer_mode.as_str(),
        "peers": f.peers, "created_at": l.created_at.0, "updated_at": l.updated_at.0,
        "password": password.as_ref().map(|p| p.expose().to_string())})
}

pub(super) fn line_of_json(v: &Value) -> Option<(Line, Option<Secret>)> {
    let s = |k: &str| v[k].as_str().unwrap_or_default();
    let fields = LineFields::new(
        s("name"),
        s("uri"),
        s("username"),
        s("display_name"),
        s("alternate_text"),
        s("preferred_identity"),
    )
    .ok()?
    .with_answer_mode(AnswerMode::parse(s("answer_mode")).unwrap_or(AnswerMode::Manual))
    .with_peers(s("peers"))
    .ok()?;
    Some((
        Line {
            id: LineId(v["id"].as_i64()?),
            fields,
            has_password: v["password"].is_string(),
            created_at: Timestamp(v["created_at"].as_i64().unwrap_or_default()),
            updated_at: Timestamp(v["updated_at"].as_i64().unwrap_or_default()),
        },
        v["password"].as_str().map(Secret::new),
    ))
}
