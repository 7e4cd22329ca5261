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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use openturret_domain::{LineId, ProfileId};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

use crate::App;

use crate::mlc::CallView;
use crate::mlc::LineState;
use crate::mlc::call::{OpError, op_err};
use crate::mlc::link::{VERSION, known_code, line_json, provider, roots, state_of};
use crate::telephony;

mod ca;
mod link;

pub use crate::mlc::link::{MlcOptions, run_mlc};
pub use ca::{enrol, enrolled, revoke};
pub use link::{Link, serve};

/// Call ids of the n-th MLC to connect start above n << 40.
pub const CALL_ID_SPACE: u64 = 1 << 40;
/// How often a connected MLC's certificate is checked against the
/// enrolled list (a revoked one is cut off).
const REVOCATION_CHECK: Duration = Duration::from_secs(2);
/// How long an operation may wait for the MLC's result.
const OP_TIMEOUT: Duration = Duration::from_secs(15);
