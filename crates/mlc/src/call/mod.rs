//! Calls on lines (SPEC §5): incoming calls ring on every turret whose
//! profile shows the line and the first to answer takes them; outgoing
//! calls go out on a chosen or automatically selected line; hold, retrieve,
//! blind transfer and hang-up from either side. Each finished call leaves
//! call-memory entries (SPEC rule 6), a call data record and call events.
//!
//! Dialogs follow RFC 3261 §12: we keep the remote target and route set,
//! our CSeq, and both tags; in-dialog requests go to the first route or the
//! remote target.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use openturret_domain::model::Direction;
use openturret_domain::{LineId, ProfileId, Timestamp};
use openturret_sip::digest::Challenge;
use openturret_sip::message::{self, Builder, Message};
use openturret_sip::sdp::{self, Codec};
use openturret_sip::uri::{NameAddr, Uri};

use super::register::{contact_uri, line_of_contact_user};
use super::rtp::Media;
use super::transport::{Peer, Proto};
use super::{Mlc, TXN_TIMEOUT};
use serde_json::{Value, json};

/// How long an outgoing call may wait for the far end to answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);
/// The most calls the MLC carries at once; more are refused with 503.
pub const MAX_CALLS: usize = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallState {
    /// Incoming, ringing at the turrets.
    Ringing,
    /// Outgoing, INVITE sent.
    Dialing,
    /// Outgoing, the far end is ringing.
    Alerting,
    Connected,
    /// Put on hold by us.
    Held,
    Ended,
}

impl CallState {
    pub fn name(self) -> &'static str {
        match self {
            CallState::Ringing => "ringing",
            CallState::Dialing => "dialing",
            CallState::Alerting => "alerting",
            CallState::Connected => "connected",
            CallState::Held => "held",
            CallState::Ended => "ended",
        }
    }
    pub fn parse(s: &str) -> Option<CallState> {
        [
            CallState::Ringing,
            CallState::Dialing,
            CallState::Alerting,
            CallState::Connected,
            CallState::Held,
            CallState::Ended,
        ]
        .into_iter()
        .find(|c| c.name() == s)
    }
}

/// A dialog's routing state.
#[derive(Clone, Debug, Default)]
struct Dialog {
    call_id: String,
    local_tag: String,
    remote_tag: Option<String>,
    /// Our URI (From on our requests) and theirs (To).
    local_uri: String,
    remote_uri: String,
    remote_target: String,
    route_set: Vec<String>,
    local_cseq: u32,
    /// Where in-dialog requests go when no route or target says otherwise.
    peer: Option<Peer>,
}

impl Call {
    /// Our session description of the call's one stream at `local`, in
    /// its codec, with its telephone events and SRTP key when it has them.
    fn sdp(&self, local: std::net::SocketAddr, dir: sdp::Direction) -> Vec<u8> {
        sdp::build_call(
            local,
            self.id,
            self.sdp_version,
            &[self.codec],
            dir,
            self.events,
            self.crypto.as_deref(),
        )
    }

    fn view(&self) -> CallView {
        CallView {
            id: self.id,
            line: self.line,
            direction: self.direction,
            state: self.state,
            remote_number: self.remote_number.clone(),
            remote_display: self.remote_display.clone(),
            owner: self.owner,
            speech_unit: self.speech_unit.clone(),
            end_reason: self.end_reason.clone(),
            started: self.started,
            connected_at: self.connected_at,
            line_number: self.line_number.clone(),
            ended_at: None,
            early_media: self.direction == Direction::Outgoing
                && self.state == CallState::Alerting
                && self.codec_settled,
            recording: self.recording,
        }
    }
}

pub struct Call {
    pub id: u64,
    pub line: LineId,
    pub direction: Direction,
    pub state: CallState,
    pub remote_number: String,
    pub remote_display: String,
    /// The number of the line (its preferred identity or AOR user).
    pub line_number: String,
    pub started: Timestamp,
    pub connected_at: Option<Timestamp>,
    /// Incoming: who answered. Outgoing: who dialled.
    pub owner: Option<ProfileId>,
    pub speech_unit: String,
    rejected: HashSet<ProfileId>,
    dialog: Dialog,
    /// Incoming: the INVITE, to answer it.
    invite: Option<(Message, Peer)>,
    /// Outgoing: the INVITE as sent, to CANCEL it.
    sent_invite: Option<(Peer, String, u32, String)>,
    media: Option<Media>,
    codec: Codec,
    /// Our `a=crypto` value when the call's RTP is SRTP (RFC 4568), and
    /// the key the far end gave (to notice when a re-INVITE changes it).
    crypto: Option<String>,
    their_key: Option<String>,
    /// The payload type the far end takes RFC 4733 telephone events (DTMF)
    /// at, if it does.
    events: Option<u8>,
    /// Whether `codec` is agreed with the far end (incoming: from the
    /// offer; outgoing: once an answer came).
    codec_settled: bool,
    sdp_version: u64,
    remote_held: bool,
    /// Whether the call is recorded now (issue 18): `None` when it is not
    /// to be, else `pending`, `recording` (at least one recorder takes it)
    /// or `failed` (none does).
    pub(crate) recording: Option<&'static str>,
    end_reason: String,
}

/// The calls the MLC carries, by our id and by SIP Call-ID.
#[derive(Default)]
pub struct Calls {
    map: Mutex<HashMap<u64, Call>>,
    by_call_id: Mutex<HashMap<String, u64>>,
    pub(crate) next: AtomicU64,
}

impl Calls {
    fn insert(&self, call: Call) {
        self.by_call_id
            .lock()
            .unwrap()
            .insert(call.dialog.call_id.clone(), call.id);
        self.map.lock().unwrap().insert(call.id, call);
    }

    fn id_of(&self, call_id: &str) -> Option<u64> {
        self.by_call_id.lock().unwrap().get(call_id).copied()
    }

    pub(crate) fn with<R>(&self, id: u64, f: impl FnOnce(&mut Call) -> R) -> Option<R> {
        self.map.lock().unwrap().get_mut(&id).map(f)
    }

    fn remove(&self, id: u64) -> Option<Call> {
        let c = self.map.lock().unwrap().remove(&id)?;
        self.by_call_id.lock().unwrap().remove(&c.dialog.call_id);
        Some(c)
    }

    pub fn len(&self) -> usize {
        self.map.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A refusal of a client operation.
#[derive(Debug)]
pub struct OpError {
    pub code: &'static str,
    pub message: String,
}

/// An [`OpError`] of `code` saying `message`.
pub fn op_err(code: &'static str, message: impl Into<String>) -> OpError {
    OpError {
        code,
        message: message.into(),
    }
}

/// The number in a SIP URI or name-addr's user part (`tel:` too).
fn number_of(uri: &Uri) -> String {
    if uri.scheme == "tel" {
        return uri.rest.split(';').next().unwrap_or_default().to_string();
    }
    uri.user_decoded()
}

/// The digest answer to a 401 or 407 `r` for `method` on `uri`: the
/// header to send and its value; `None` when `r` holds no challenge we
/// can answer.
pub(crate) fn digest_answer(
    mlc: &Mlc,
    r: &Message,
    method: &str,
    uri: &str,
    username: &str,
    password: &str,
) -> Option<(&'static str, String)> {
    let (hdr, answer_hdr) = match r.code()? {
        401 => ("www-authenticate", "Authorization"),
        407 => ("proxy-authenticate", "Proxy-Authorization"),
        _ => return None,
    };
    let ch = r
        .header_all(hdr)
        .iter()
        .filter_map(|v| Challenge::parse(v).ok())
        .next()?;
    Some((
        answer_hdr,
        ch.answer(method, uri, username, password, 1, &mlc.token()),
    ))
}

pub(crate) fn reason_of(m: &Message) -> String {
    match &m.start {
        openturret_sip::Start::Response { code, reason } => format!("{code} {reason}"),
        _ => String::new(),
    }
}

/// The peer a URI points at (host, port, transport; `forced` overrides
/// the URI's transport, as a recorder's configured one does).
pub(crate) async fn peer_of(uri: &str, forced: Option<Proto>) -> Option<Peer> {
    let na = NameAddr::parse(uri).ok()?;
    let u = na.uri;
    let transport = u.param("transport");
    let proto = if let Some(p) = forced {
        p
    } else if u.scheme.eq_ignore_ascii_case("sips")
        || transport.is_some_and(|t| t.eq_ignore_ascii_case("tls"))
    {
        Proto::Tls
    } else if transport.is_some_and(|t| t.eq_ignore_ascii_case("tcp")) {
        Proto::Tcp
    } else {
        Proto::Udp
    };
    let default_port = if proto == Proto::Tls { 5061 } else { 5060 };
    let host = u
        .host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let addr = tokio::net::lookup_host((host.as_str(), u.port.unwrap_or(default_port)))
        .await
        .ok()?
        .next()?;
    Some(Peer { proto, addr })
}

// ----- what each profile's turrets are told --------------------------------

/// Starts recording a call that just connected, if the host says so
/// (issue 18), without holding the call up.
fn record(mlc: &Mlc, id: u64) {
    let Some((view, codec, Some(leg))) = mlc.calls.with(id, |c| {
        (
            c.view(),
            c.codec,
            c.media.as_ref().map(|m| (m.taps(), m.announcement())),
        )
    }) else {
        return;
    };
    let me = mlc.clone();
    tokio::spawn(async move { crate::record::start(&me, view, codec, leg).await });
}

/// Queues a report of the call as it is now.
pub(crate) async fn publish(mlc: &Mlc, id: u64) {
    if let Some(v) = mlc.calls.with(id, |c| c.view()) {
        mlc.report(v, false).await;
    }
}

/// Every call in progress, as snapshots.
pub fn ongoing(mlc: &Mlc) -> Vec<CallView> {
    let mut v: Vec<CallView> = mlc
        .calls
        .map
        .lock()
        .unwrap()
        .values()
        .filter(|c| c.state != CallState::Ended)
        .map(|c| c.view())
        .collect();
    v.sort_by_key(|c| c.id);
    v
}

/// Calls in progress on `lines`, as snapshots.
pub fn calls_on(mlc: &Mlc, lines: &[LineId]) -> Vec<CallView> {
    mlc.calls
        .map
        .lock()
        .unwrap()
        .values()
        .filter(|c| lines.contains(&c.line) && c.state != CallState::Ended)
        .map(|c| c.view())
        .collect()
}

mod dialog;
mod incoming;
mod outgoing;

use dialog::*;
pub use dialog::{hangup, hold, transfer};
pub use incoming::{answer_call, reject_call};
pub(crate) use incoming::{on_ack, on_bye, on_cancel, on_invite, on_notify, on_stray_2xx};
pub(crate) use outgoing::ack_non_2xx;
pub use outgoing::dial;

// ----- the end of a call ---------------------------------------------------

/// Ends a call: tells the turrets, writes call memory and the CDR, frees
/// the media. Idempotent.
pub(crate) async fn end(mlc: &Mlc, id: u64, reason: &str) {
    let Some(mut call) = mlc.calls.remove(id) else {
        return;
    };
    crate::record::stop(mlc, id);
    call.state = CallState::Ended;
    if call.end_reason.is_empty() {
        call.end_reason = reason.to_string();
    }
    call.media = None;
    mlc.voices.remove(id);
    tracing::info!(call = id, reason = %call.end_reason, "call ended");
    let mut v = call.view();
    v.ended_at = Some(Timestamp::now());
    mlc.report(v, true).await;
}

/// Ends every call (the server is stopping): BYE for established calls,
/// CANCEL for outgoing ones still ringing, 480 for incoming ones. Waits at
/// most `limit`.
pub async fn end_all(mlc: &Mlc, limit: Duration) {
    type Ending = (u64, CallState, Direction, Option<(Message, Peer)>, String);
    let calls: Vec<Ending> = mlc
        .calls
        .map
        .lock()
        .unwrap()
        .values()
        .map(|c| {
            (
                c.id,
                c.state,
                c.direction,
                c.invite.clone(),
                c.dialog.local_tag.clone(),
            )
        })
        .collect();
    let mut tasks = Vec::new();
    for (id, state, direction, invite, tag) in calls {
        let mlc = mlc.clone();
        tasks.push(tokio::spawn(async move {
            match (state, direction, invite) {
                (CallState::Ringing, Direction::Incoming, Some((inv, peer))) => {
                    let b = message::response_to(
                        &inv.headers,
                        480,
                        "Temporarily Unavailable",
                        Some(&tag),
                    );
                    mlc.answer_invite_finally(&inv, peer, b).await;
                    end(&mlc, id, "shutdown").await;
                }
                (CallState::Dialing | CallState::Alerting, _, _) => {
                    if let Some(owner) = mlc.calls.with(id, |c| c.owner).flatten() {
                        let _ = hangup(&mlc, id, owner).await;
                    }
                }
                _ => {
                    send_in_dialog(&mlc, id, "BYE", None, Vec::new()).await;
                    end(&mlc, id, "shutdown").await;
                }
            }
        }));
    }
    let all = async {
        for t in tasks {
            let _ = t.await;
        }
    };
    if tokio::time::timeout(limit, all).await.is_err() {
        tracing::warn!("some calls were not ended cleanly before the shutdown");
    }
}

/// Ends every call a profile's turret holds (its session ended).
pub async fn drop_profile_calls(mlc: &Mlc, pid: ProfileId) {
    let ids: Vec<u64> = mlc
        .calls
        .map
        .lock()
        .unwrap()
        .values()
        .filter(|c| c.owner == Some(pid))
        .map(|c| c.id)
        .collect();
    for id in ids {
        let _ = hangup(mlc, id, pid).await;
    }
}

/// Moves a call the profile holds to another of its speech units (the
/// turret checked the unit exists): the turrets show it there.
pub async fn move_to(mlc: &Mlc, id: u64, by: ProfileId, unit: &str) -> Result<(), OpError> {
    let state = check_owner(mlc, id, by)?;
    if matches!(state, CallState::Ringing | CallState::Ended) {
        return Err(op_err(
            "wrong_state",
            format!("the call is {}", state.name()),
        ));
    }
    mlc.calls.with(id, |c| c.speech_unit = unit.to_string());
    publish(mlc, id).await;
    Ok(())
}

/// Sends `digits` (0–9, *, #, A–D; at most 32) to the far end of a
/// connected call as RFC 4733 telephone events.
pub async fn dtmf(mlc: &Mlc, id: u64, by: ProfileId, digits: &str) -> Result<(), OpError> {
    let events: Vec<u8> = digits
        .chars()
        .map(crate::rtp::dtmf_event)
        .collect::<Option<_>>()
        .filter(|e: &Vec<u8>| !e.is_empty() && e.len() <= 32)
        .ok_or_else(|| op_err("invalid", "digits are 0-9, *, #, A-D (1 to 32 of them)"))?;
    let state = check_owner(mlc, id, by)?;
    if state != CallState::Connected {
        return Err(op_err(
            "wrong_state",
            format!("the call is {}", state.name()),
        ));
    }
    mlc.calls
        .with(id, |c| match (c.events, &c.media) {
            (Some(pt), Some(m)) => {
                m.send_dtmf(pt, &events);
                Ok(())
            }
            _ => Err(op_err(
                "no_dtmf",
                "the far end did not offer telephone events (RFC 4733)",
            )),
        })
        .unwrap_or_else(|| Err(op_err("not_found", "no such call")))
}

/// The line a call is on, and who holds it (answered or placed it).
pub fn line_of(mlc: &Mlc, id: u64) -> Option<(LineId, Option<ProfileId>)> {
    mlc.calls.with(id, |c| (c.line, c.owner))
}

/// The codec of call `id` for a turret of profile `by` that wants to hear
/// it: `by` must hold the call, and its codec be settled.
pub(crate) fn voice_codec(mlc: &Mlc, id: u64, by: ProfileId) -> Result<Codec, OpError> {
    let (owner, state, codec, settled) = mlc
        .calls
        .with(id, |c| (c.owner, c.state, c.codec, c.codec_settled))
        .ok_or_else(|| op_err("not_found", "no such call"))?;
    if owner != Some(by) {
        return Err(op_err("not_found", "no such call"));
    }
    if state == CallState::Ringing || !settled {
        return Err(op_err(
            "wrong_state",
            format!("the call is {}: no audio yet", state.name()),
        ));
    }
    Ok(codec)
}

pub(crate) fn media_stats(mlc: &Mlc, id: u64) -> Option<(u64, u64)> {
    mlc.calls
        .with(id, |c| {
            c.media.as_ref().map(|m| {
                (
                    m.stats.sent.load(Ordering::Relaxed),
                    m.stats.received.load(Ordering::Relaxed),
                )
            })
        })
        .flatten()
}

/// Runs a call operation on an MLC of this process (the local one, or
/// the one of `turret mlc` for an operation that came over the link).
pub async fn run_op(
    mlc: &Mlc,
    op: &str,
    id: u64,
    pid: ProfileId,
    target: &str,
) -> Result<(), OpError> {
    match op {
        "hangup" => hangup(mlc, id, pid).await,
        "hold" => hold(mlc, id, pid, true).await,
        "retrieve" => hold(mlc, id, pid, false).await,
        "transfer" => transfer(mlc, id, pid, target).await,
        "move" => move_to(mlc, id, pid, target).await,
        "dtmf" => dtmf(mlc, id, pid, target).await,
        _ => Err(op_err("invalid", "no such operation")),
    }
}

/// A snapshot of a call, taken under the call table's lock.
#[derive(Clone, Debug)]
pub struct CallView {
    pub id: u64,
    pub line: LineId,
    pub direction: Direction,
    pub state: CallState,
    pub remote_number: String,
    pub remote_display: String,
    /// Incoming: who answered. Outgoing: who dialled.
    pub owner: Option<ProfileId>,
    pub speech_unit: String,
    pub end_reason: String,
    pub started: Timestamp,
    pub connected_at: Option<Timestamp>,
    pub line_number: String,
    /// When the call ended (set on `Job::Ended`).
    pub ended_at: Option<Timestamp>,
    /// An outgoing call still ringing at the far end, whose far end sends
    /// early media (a 180 or 183 with SDP): the turret plays it instead
    /// of its own ringback.
    pub early_media: bool,
    /// A recorded call: `pending`, `recording` or `failed` (no recorder
    /// takes it); `None` when it is not to be recorded.
    pub recording: Option<&'static str>,
}

impl CallView {
    /// As it travels over the component link.
    pub fn to_json(&self) -> Value {
        let mut v = json!({"id": self.id, "line": self.line.0, "direction": self.direction.as_str(),
            "state": self.state.name(), "remote_number": self.remote_number,
            "remote_display": self.remote_display, "owner": self.owner.map(|p| p.0),
            "speech_unit": self.speech_unit, "end_reason": self.end_reason,
            "started": self.started.0, "connected_at": self.connected_at.map(|t| t.0),
            "line_number": self.line_number, "ended_at": self.ended_at.map(|t| t.0)});
        // Only when true, so a version-1 peer's bytes stay as they were.
        if self.early_media {
            v["early_media"] = json!(true);
        }
        if let Some(r) = self.recording {
            v["recording"] = json!(r);
        }
        v
    }

    pub fn from_json(v: &Value) -> Option<CallView> {
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        let t = |k: &str| v[k].as_i64().map(Timestamp);
        Some(CallView {
            id: v["id"].as_u64()?,
            line: LineId(v["line"].as_i64()?),
            direction: Direction::parse(v["direction"].as_str()?)?,
            state: CallState::parse(v["state"].as_str()?)?,
            remote_number: s("remote_number"),
            remote_display: s("remote_display"),
            owner: v["owner"].as_i64().map(ProfileId),
            speech_unit: s("speech_unit"),
            end_reason: s("end_reason"),
            started: t("started")?,
            connected_at: t("connected_at"),
            line_number: s("line_number"),
            ended_at: t("ended_at"),
            early_media: v["early_media"].as_bool().unwrap_or(false),
            recording: match v["recording"].as_str() {
                Some("pending") => Some("pending"),
                Some("recording") => Some("recording"),
                Some("failed") => Some("failed"),
                _ => None,
            },
        })
    }
}
