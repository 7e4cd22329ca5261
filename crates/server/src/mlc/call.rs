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
use serde_json::{Value, json};

use super::register::{contact_uri, line_of_contact_user};
use super::report::{CallView, Job, call_json};
use super::rtp::Media;
use super::transport::{Peer, Proto};
use super::{LineState, Mlc, TXN_TIMEOUT};

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
    sdp_version: u64,
    remote_held: bool,
    end_reason: String,
}

/// The calls the MLC carries, by our id and by SIP Call-ID.
#[derive(Default)]
pub struct Calls {
    map: Mutex<HashMap<u64, Call>>,
    by_call_id: Mutex<HashMap<String, u64>>,
    next: AtomicU64,
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

    fn with<R>(&self, id: u64, f: impl FnOnce(&mut Call) -> R) -> Option<R> {
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

fn op_err(code: &'static str, message: impl Into<String>) -> OpError {
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

fn reason_of(m: &Message) -> String {
    match &m.start {
        openturret_sip::Start::Response { code, reason } => format!("{code} {reason}"),
        _ => String::new(),
    }
}

/// The peer a URI points at (host, port, transport).
async fn peer_of(uri: &str) -> Option<Peer> {
    let na = NameAddr::parse(uri).ok()?;
    let u = na.uri;
    let proto = if u
        .param("transport")
        .is_some_and(|t| t.eq_ignore_ascii_case("tcp"))
    {
        Proto::Tcp
    } else {
        Proto::Udp
    };
    let host = u
        .host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let addr = tokio::net::lookup_host((host.as_str(), u.port.unwrap_or(5060)))
        .await
        .ok()?
        .next()?;
    Some(Peer { proto, addr })
}

// ----- what each profile's turrets are told --------------------------------

/// Queues a report of the call as it is now.
async fn publish(mlc: &Mlc, id: u64) {
    if let Some(v) = mlc.calls.with(id, |c| c.view()) {
        mlc.report(Job::Changed(v)).await;
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

/// Calls on the lines of `pid`, for a client that has just logged in.
pub fn calls_for(mlc: &Mlc, lines: &[LineId], pid: ProfileId) -> Vec<Value> {
    mlc.calls
        .map
        .lock()
        .unwrap()
        .values()
        .filter(|c| lines.contains(&c.line) && c.state != CallState::Ended)
        .map(|c| c.view())
        .collect::<Vec<_>>()
        .iter()
        .filter_map(|v| mlc.app().map(|app| call_json(&app, v, pid)))
        .collect()
}

// ----- incoming ------------------------------------------------------------

pub(crate) async fn on_invite(mlc: &Mlc, m: Message, peer: Peer) {
    if m.to.tag().is_some() {
        return on_reinvite(mlc, m, peer).await;
    }
    if mlc.app().is_none() {
        return;
    }
    let tag = mlc.token();
    let refuse = |code: u16, reason: &'static str| {
        message::response_to(&m.headers, code, reason, Some(&tag))
    };
    let ruri = m.request_uri().expect("checked request");
    let found = find_line(mlc, &ruri.user, &m.to.uri.user);
    let line = found.as_ref().map(|f| f.0);
    let Some(line) = line else {
        return mlc
            .answer_invite_finally(&m, peer, refuse(404, "Not Found"))
            .await;
    };
    if mlc.calls.len() >= MAX_CALLS {
        return mlc
            .answer_invite_finally(
                &m,
                peer,
                refuse(503, "Service Unavailable").header("Retry-After", "5"),
            )
            .await;
    }
    let offer = if m.body.is_empty() {
        None
    } else {
        match sdp::parse(&m.body) {
            Ok(a) => Some(a),
            Err(_) => {
                let b = refuse(488, "Not Acceptable Here")
                    .header("Warning", "304 openturret \"G.711 (PCMU or PCMA) only\"");
                return mlc.answer_invite_finally(&m, peer, b).await;
            }
        }
    };
    let Some(offer) = offer else {
        let b = refuse(488, "Not Acceptable Here")
            .header("Warning", "399 openturret \"an SDP offer is required\"");
        return mlc.answer_invite_finally(&m, peer, b).await;
    };
    let media = match Media::bind(mlc.advertised_ip(peer.addr)).await {
        Ok(md) => md,
        Err(e) => {
            tracing::warn!(error = %e, "no RTP port for a call");
            return mlc
                .answer_invite_finally(&m, peer, refuse(503, "Service Unavailable"))
                .await;
        }
    };
    let codec = offer.codecs[0];
    let (_, line_number, auto_answer) = found.expect("line found above");
    let id = mlc.calls.next.fetch_add(1, Ordering::Relaxed) + 1;
    let remote_target = m
        .contact()
        .map(|c| c.uri.to_string())
        .unwrap_or_else(|| m.from.uri.to_string());
    let call = Call {
        id,
        line,
        direction: Direction::Incoming,
        state: CallState::Ringing,
        remote_number: number_of(&m.from.uri),
        remote_display: m.from.display.clone().unwrap_or_default(),
        line_number,
        started: Timestamp::now(),
        connected_at: None,
        owner: None,
        speech_unit: String::new(),
        rejected: HashSet::new(),
        dialog: Dialog {
            call_id: m.call_id.clone(),
            local_tag: tag.clone(),
            remote_tag: m.from.tag().map(str::to_string),
            local_uri: m.to.uri.to_string(),
            remote_uri: m.from.uri.to_string(),
            remote_target,
            route_set: m
                .header_values("record-route")
                .iter()
                .map(|s| s.to_string())
                .collect(),
            local_cseq: 0,
            peer: Some(peer),
        },
        invite: Some((m.clone(), peer)),
        sent_invite: None,
        media: Some(media),
        codec,
        sdp_version: 1,
        remote_held: false,
        end_reason: String::new(),
    };
    let contact = contact_uri(mlc, line, peer);
    mlc.calls.insert(call);
    // No 100 Trying: the 180 goes out at once (RFC 3261 §8.2.6.1 asks for
    // 100 only when the answer would take over 200 ms).
    let ringing = message::response_to(&m.headers, 180, "Ringing", Some(&tag))
        .header("Contact", format!("<{contact}>"));
    // Remembered as the transaction's latest answer: a retransmitted
    // INVITE gets the 180 again.
    mlc.answer(&m, peer, ringing).await;
    tracing::info!(call = id, line = line.0, "incoming call ringing");
    publish(mlc, id).await;
    if auto_answer {
        let _ = answer_call(mlc, id, None, "speaker-1").await;
    }
}

/// The line an INVITE is for, from the MLC's line table (no database
/// read on the SIP path): our contact's `ot-line-N` user part, or else the
/// line whose address of record the PBX kept (Request-URI or To user).
/// Returns the line, its number and whether it answers by itself.
fn find_line(mlc: &Mlc, ruri_user: &str, to_user: &str) -> Option<(LineId, String, bool)> {
    let lines = mlc.lines.lock().unwrap();
    let by_contact = line_of_contact_user(ruri_user).filter(|l| lines.contains_key(l));
    let id = by_contact.or_else(|| {
        lines
            .iter()
            .find(|(_, l)| l.user == ruri_user || l.user == to_user)
            .map(|(id, _)| *id)
    })?;
    let l = lines.get(&id)?;
    Some((id, l.number.clone(), l.auto_answer))
}

/// A turret answers a ringing call (or the line answers by itself when its
/// answer mode is automatic, `by` = None).
pub async fn answer_call(
    mlc: &Mlc,
    id: u64,
    by: Option<ProfileId>,
    unit: &str,
) -> Result<(), OpError> {
    let prepared = mlc.calls.with(id, |c| {
        if c.state != CallState::Ringing || c.direction != Direction::Incoming {
            return Err(op_err(
                "not_ringing",
                "the call is no longer ringing (answered elsewhere or ended)",
            ));
        }
        let (invite, peer) = c.invite.clone().expect("incoming calls keep their INVITE");
        let offer = sdp::parse(&invite.body).ok();
        let media = c.media.as_ref().expect("incoming calls have media");
        let local = media.local;
        media.set_remote(offer.as_ref().and_then(|o| o.rtp), c.codec);
        let dir = offer.map_or(sdp::Direction::SendRecv, |o| o.direction.answer());
        media.set_sending(matches!(
            dir,
            sdp::Direction::SendRecv | sdp::Direction::SendOnly
        ));
        let body = sdp::build(local, c.id, c.sdp_version, &[c.codec], dir);
        c.state = CallState::Connected;
        c.owner = by;
        c.speech_unit = unit.to_string();
        c.connected_at = Some(Timestamp::now());
        Ok((invite, peer, body, c.dialog.local_tag.clone(), c.line))
    });
    let (invite, peer, body, tag, line) =
        prepared.ok_or_else(|| op_err("not_found", "no such call"))??;
    let mut b = message::response_to(&invite.headers, 200, "OK", Some(&tag))
        .header("Contact", format!("<{}>", contact_uri(mlc, line, peer)))
        .header("Allow", openturret_sip::check::ALLOW);
    for rr in invite.header_values("record-route") {
        b = b.header("Record-Route", rr);
    }
    let bytes = b
        .header("User-Agent", mlc.user_agent())
        .body("application/sdp", body)
        .build();
    let acked = mlc.send_reliably(
        peer,
        format!("{} {}", invite.call_id, invite.cseq.number),
        bytes,
    );
    // No ACK within 64·T1: the far end never saw our 200; end the call
    // properly (RFC 3261 §13.3.1.4).
    let me = mlc.clone();
    tokio::spawn(async move {
        if !acked.await.unwrap_or(true) {
            tracing::warn!(call = id, "no ACK for the 200 OK; hanging up");
            send_in_dialog(&me, id, "BYE", None, Vec::new()).await;
            end(&me, id, "no_ack").await;
        }
    });
    tracing::info!(call = id, "call answered");
    publish(mlc, id).await;
    Ok(())
}

/// A turret rejects a ringing call: it stops ringing there; when every
/// profile showing the line has rejected it, the caller hears busy (486).
pub async fn reject_call(mlc: &Mlc, id: u64, by: ProfileId) -> Result<(), OpError> {
    let app = mlc
        .app()
        .ok_or_else(|| op_err("unavailable", "shutting down"))?;
    let line = mlc
        .calls
        .with(id, |c| c.line)
        .ok_or_else(|| op_err("not_found", "no such call"))?;
    let pids: HashSet<ProfileId> = app
        .store
        .profiles_with_line(line)
        .await
        .unwrap_or_default()
        .into_iter()
        .collect();
    let all = mlc
        .calls
        .with(id, |c| {
            if c.state != CallState::Ringing {
                return Err(op_err("not_ringing", "the call is not ringing"));
            }
            c.rejected.insert(by);
            Ok(pids.iter().all(|p| c.rejected.contains(p)))
        })
        .ok_or_else(|| op_err("not_found", "no such call"))??;
    if all {
        if let Some(Some((invite, peer))) = mlc.calls.with(id, |c| c.invite.clone()) {
            let tag = mlc
                .calls
                .with(id, |c| c.dialog.local_tag.clone())
                .unwrap_or_default();
            mlc.answer_invite_finally(
                &invite,
                peer,
                message::response_to(&invite.headers, 486, "Busy Here", Some(&tag)),
            )
            .await;
        }
        end(mlc, id, "rejected").await;
    } else if let Some(v) = mlc.calls.with(id, |c| c.view()) {
        let mut j = call_json(&app, &v, by);
        j["state"] = json!("rejected_here");
        mlc.report(Job::ToProfile(by, json!({"push": "call", "call": j})))
            .await;
    }
    Ok(())
}

pub(crate) async fn on_ack(mlc: &Mlc, m: &Message) {
    let _ = (mlc, m);
    // The ACK stopped the 200's retransmissions (see `Mlc::send_reliably`);
    // nothing else waits for it.
}

pub(crate) async fn on_cancel(mlc: &Mlc, m: Message, peer: Peer) {
    let id = mlc.calls.id_of(&m.call_id);
    let ringing = id.and_then(|id| {
        mlc.calls.with(id, |c| {
            let matches = c.invite.as_ref().is_some_and(|(inv, _)| {
                inv.cseq.number == m.cseq.number && inv.vias[0].branch() == m.vias[0].branch()
            });
            (matches && c.state == CallState::Ringing)
                .then(|| (c.invite.clone(), c.dialog.local_tag.clone()))
        })
    });
    match (id, ringing.flatten()) {
        (Some(id), Some((Some((invite, ipeer)), tag))) => {
            mlc.answer(
                &m,
                peer,
                message::response_to(&m.headers, 200, "OK", Some(&tag)),
            )
            .await;
            let b = message::response_to(&invite.headers, 487, "Request Terminated", Some(&tag));
            mlc.answer_invite_finally(&invite, ipeer, b).await;
            end(mlc, id, "cancelled").await;
        }
        _ => {
            let b = message::response_to(
                &m.headers,
                481,
                "Call/Transaction Does Not Exist",
                Some(&mlc.token()),
            );
            mlc.answer(&m, peer, b).await;
        }
    }
}

pub(crate) async fn on_bye(mlc: &Mlc, m: Message, peer: Peer) {
    match mlc.calls.id_of(&m.call_id) {
        Some(id) => {
            mlc.answer(&m, peer, message::response_to(&m.headers, 200, "OK", None))
                .await;
            end(mlc, id, "remote_hangup").await;
        }
        None => {
            let b = message::response_to(&m.headers, 481, "Call/Transaction Does Not Exist", None);
            mlc.answer(&m, peer, b).await;
        }
    }
}

pub(crate) async fn on_notify(mlc: &Mlc, m: Message, peer: Peer) {
    let code = if mlc.calls.id_of(&m.call_id).is_some() {
        200
    } else {
        481
    };
    let reason = if code == 200 {
        "OK"
    } else {
        "Call/Transaction Does Not Exist"
    };
    mlc.answer(
        &m,
        peer,
        message::response_to(&m.headers, code, reason, None),
    )
    .await;
}

/// A re-INVITE from the far end (hold, retrieve, new media address).
async fn on_reinvite(mlc: &Mlc, m: Message, peer: Peer) {
    let Some(id) = mlc.calls.id_of(&m.call_id) else {
        let b = message::response_to(&m.headers, 481, "Call/Transaction Does Not Exist", None);
        return mlc.answer_invite_finally(&m, peer, b).await;
    };
    let offer = sdp::parse(&m.body).ok();
    let answered = mlc.calls.with(id, |c| {
        let media = c.media.as_ref()?;
        let dir = match &offer {
            Some(o) => {
                let codec = o
                    .codecs
                    .iter()
                    .copied()
                    .find(|k| *k == c.codec)
                    .unwrap_or(o.codecs[0]);
                c.codec = codec;
                media.set_remote(o.rtp, codec);
                c.remote_held = matches!(
                    o.direction,
                    sdp::Direction::SendOnly | sdp::Direction::Inactive
                ) || o.rtp.is_none();
                o.direction.answer()
            }
            None => sdp::Direction::SendRecv,
        };
        media.set_sending(!c.remote_held);
        c.sdp_version += 1;
        Some((
            sdp::build(media.local, c.id, c.sdp_version, &[c.codec], dir),
            c.line,
        ))
    });
    let Some(Some((body, line))) = answered else {
        let b = message::response_to(&m.headers, 488, "Not Acceptable Here", None);
        return mlc.answer_invite_finally(&m, peer, b).await;
    };
    let bytes = message::response_to(&m.headers, 200, "OK", None)
        .header("Contact", format!("<{}>", contact_uri(mlc, line, peer)))
        .header("User-Agent", mlc.user_agent())
        .body("application/sdp", body)
        .build();
    mlc.send_reliably(peer, format!("{} {}", m.call_id, m.cseq.number), bytes);
    publish(mlc, id).await;
}

pub(crate) async fn on_stray_2xx(mlc: &Mlc, m: &Message) {
    if let Some(id) = mlc.calls.id_of(&m.call_id) {
        send_ack(mlc, id, m.cseq.number).await;
    }
}

// ----- outgoing ------------------------------------------------------------

/// Places a call from a turret of `pid` to `number` on `line` (or the
/// first registered, idle line of the profile).
pub async fn dial(
    mlc: &Mlc,
    pid: ProfileId,
    line: Option<LineId>,
    number: &str,
) -> Result<u64, OpError> {
    let app = mlc
        .app()
        .ok_or_else(|| op_err("unavailable", "shutting down"))?;
    let number = number.trim();
    if number.is_empty()
        || number.len() > 64
        || number
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '>' || c == '<' || c == '"')
    {
        return Err(op_err(
            "invalid",
            "number must be digits or a SIP user (no spaces)",
        ));
    }
    let own: Vec<LineId> = app
        .store
        .list_profile_lines(pid)
        .await
        .map_err(|e| op_err("internal", e.to_string()))?
        .into_iter()
        .map(|k| k.line_id)
        .collect();
    let line = match line {
        Some(l) if own.contains(&l) => l,
        Some(_) => return Err(op_err("forbidden", "this profile has no key for that line")),
        None => {
            let busy: HashSet<LineId> = mlc
                .calls
                .map
                .lock()
                .unwrap()
                .values()
                .map(|c| c.line)
                .collect();
            *own.iter()
                .find(|l| mlc.line_state(**l) == LineState::Registered && !busy.contains(l))
                .ok_or_else(|| {
                    op_err(
                        "no_line",
                        "no registered, idle line is available to this profile",
                    )
                })?
        }
    };
    let l = app
        .store
        .get_line(line)
        .await
        .map_err(|_| op_err("not_found", "no such line"))?;
    let aor =
        Uri::parse(&l.fields.uri).map_err(|_| op_err("invalid", "the line's URI is malformed"))?;
    let registrar = mlc
        .lines
        .lock()
        .unwrap()
        .get(&line)
        .and_then(|r| r.registrar)
        .ok_or_else(|| op_err("line_down", "the line has not reached its PBX"))?;
    let domain = match aor.port {
        Some(p) => format!("{}:{p}", aor.host),
        None => aor.host.clone(),
    };
    let target = if number.contains('@') {
        if number.starts_with("sip:") {
            number.to_string()
        } else {
            format!("sip:{number}")
        }
    } else {
        format!("sip:{number}@{domain}")
    };
    let media = Media::bind(mlc.advertised_ip(registrar.addr))
        .await
        .map_err(|e| op_err("internal", format!("no RTP port: {e}")))?;
    let id = mlc.calls.next.fetch_add(1, Ordering::Relaxed) + 1;
    let call_id = mlc.call_id();
    let local_tag = mlc.token();
    let local_uri = format!("sip:{}@{domain}", aor.user);
    let call = Call {
        id,
        line,
        direction: Direction::Outgoing,
        state: CallState::Dialing,
        remote_number: number.to_string(),
        remote_display: String::new(),
        line_number: if l.fields.preferred_identity.is_empty() {
            aor.user_decoded()
        } else {
            l.fields.preferred_identity.clone()
        },
        started: Timestamp::now(),
        connected_at: None,
        owner: Some(pid),
        speech_unit: "handset-1".into(),
        rejected: HashSet::new(),
        dialog: Dialog {
            call_id: call_id.clone(),
            local_tag: local_tag.clone(),
            remote_tag: None,
            local_uri: local_uri.clone(),
            remote_uri: target.clone(),
            remote_target: target.clone(),
            route_set: Vec::new(),
            local_cseq: 1,
            peer: Some(registrar),
        },
        invite: None,
        sent_invite: None,
        media: Some(media),
        codec: Codec::Pcmu,
        sdp_version: 1,
        remote_held: false,
        end_reason: String::new(),
    };
    mlc.calls.insert(call);
    let username = if l.fields.username.is_empty() {
        aor.user_decoded()
    } else {
        l.fields.username.clone()
    };
    let password = app
        .store
        .line_password(line)
        .await
        .ok()
        .flatten()
        .map(|p| p.expose().to_string());
    let display = l.fields.display_name.replace(['"', '\\'], "");
    let ppi = (!l.fields.preferred_identity.is_empty()).then(|| {
        format!(
            "<sip:{}@{domain}>",
            l.fields.preferred_identity.replace(' ', "")
        )
    });
    publish(mlc, id).await;
    let me = mlc.clone();
    tokio::spawn(async move {
        let from = format!("\"{display}\" <{local_uri}>;tag={local_tag}");
        run_outgoing(&me, id, registrar, &target, &from, ppi, &username, password).await;
    });
    Ok(id)
}

#[allow(clippy::too_many_arguments)]
async fn run_outgoing(
    mlc: &Mlc,
    id: u64,
    peer: Peer,
    target: &str,
    from: &str,
    ppi: Option<String>,
    username: &str,
    password: Option<String>,
) {
    let mut auth: Option<(&'static str, String)> = None;
    for _ in 0..2 {
        let Some((cseq, call_id, local, version, line)) = mlc.calls.with(id, |c| {
            c.dialog.local_cseq += 1;
            (
                c.dialog.local_cseq,
                c.dialog.call_id.clone(),
                c.media.as_ref().map(|m| m.local),
                c.sdp_version,
                c.line,
            )
        }) else {
            return;
        };
        let Some(local) = local else { return };
        let branch = mlc.branch();
        let sdp_offer = sdp::build(
            local,
            id,
            version,
            &[Codec::Pcmu, Codec::Pcma],
            sdp::Direction::SendRecv,
        );
        let mut b = Builder::request("INVITE", target)
            .header("Via", mlc.via(peer, &branch))
            .header("Max-Forwards", "70")
            .header("From", from)
            .header("To", format!("<{target}>"))
            .header("Call-ID", &call_id)
            .header("CSeq", format!("{cseq} INVITE"))
            .header("Contact", format!("<{}>", contact_uri(mlc, line, peer)))
            .header("Allow", openturret_sip::check::ALLOW)
            .header("User-Agent", mlc.user_agent());
        if let Some(p) = &ppi {
            b = b.header("P-Preferred-Identity", p);
        }
        if let Some((h, v)) = &auth {
            b = b.header(h, v);
        }
        let bytes = b.body("application/sdp", sdp_offer).build();
        mlc.calls.with(id, |c| {
            c.sent_invite = Some((peer, branch.clone(), cseq, target.to_string()))
        });
        let mut rx = mlc.transact(peer, branch.clone(), bytes, true, ANSWER_TIMEOUT);
        let mut final_response = None;
        while let Some(r) = rx.recv().await {
            let code = r.code().unwrap_or(0);
            if code < 200 {
                if code == 180 || code == 183 {
                    let changed = mlc.calls.with(id, |c| {
                        let was = c.state;
                        if c.state == CallState::Dialing {
                            c.state = CallState::Alerting;
                        }
                        was != c.state
                    });
                    if changed == Some(true) {
                        publish(mlc, id).await;
                    }
                }
                continue;
            }
            final_response = Some(r);
        }
        let Some(r) = final_response else {
            let reason = match mlc.take_send_error(&branch) {
                Some(e) => format!("cannot reach the PBX: {e}"),
                None => "no_answer".to_string(),
            };
            end(mlc, id, &reason).await;
            return;
        };
        let code = r.code().unwrap_or(0);
        if (200..300).contains(&code) {
            let answer = sdp::parse(&r.body).ok();
            let ended = mlc.calls.with(id, |c| {
                c.dialog.remote_tag = r.to.tag().map(str::to_string);
                if let Some(t) = r.contact() {
                    c.dialog.remote_target = t.uri.to_string();
                }
                c.dialog.route_set = r
                    .header_values("record-route")
                    .iter()
                    .rev()
                    .map(|s| s.to_string())
                    .collect();
                if let (Some(a), Some(m)) = (&answer, &c.media) {
                    c.codec = a.codecs[0];
                    m.set_remote(a.rtp, c.codec);
                }
                let was_cancelled = c.state == CallState::Ended;
                if !was_cancelled {
                    c.state = CallState::Connected;
                    c.connected_at = Some(Timestamp::now());
                }
                was_cancelled
            });
            send_ack(mlc, id, r.cseq.number).await;
            if ended == Some(true) {
                // Hung up while the answer was on its way: end it properly.
                send_in_dialog(mlc, id, "BYE", None, Vec::new()).await;
                return;
            }
            publish(mlc, id).await;
            return;
        }
        // Non-2xx: the transaction's ACK (same branch, §17.1.1.3).
        ack_non_2xx(mlc, peer, &branch, target, from, &r).await;
        if (code == 401 || code == 407) && auth.is_none() {
            let (hdr, answer_hdr) = if code == 401 {
                ("www-authenticate", "Authorization")
            } else {
                ("proxy-authenticate", "Proxy-Authorization")
            };
            let ch = r
                .header_all(hdr)
                .iter()
                .filter_map(|v| Challenge::parse(v).ok())
                .next();
            if let (Some(ch), Some(pw)) = (ch, &password) {
                auth = Some((
                    answer_hdr,
                    ch.answer("INVITE", target, username, pw, 1, &mlc.token()),
                ));
                continue;
            }
        }
        end(mlc, id, &reason_of(&r)).await;
        return;
    }
    end(mlc, id, "authentication failed").await;
}

async fn ack_non_2xx(mlc: &Mlc, peer: Peer, branch: &str, target: &str, from: &str, r: &Message) {
    let to = message::header(&r.headers, "to")
        .unwrap_or_default()
        .to_string();
    let b = Builder::request("ACK", target)
        .header("Via", mlc.via(peer, branch))
        .header("Max-Forwards", "70")
        .header("From", from)
        .header("To", to)
        .header("Call-ID", &r.call_id)
        .header("CSeq", format!("{} ACK", r.cseq.number));
    mlc.send(peer, &b.build()).await;
}

/// Where an in-dialog request goes: the first route, else the remote
/// target, else where the dialog came from.
async fn dialog_peer(d: &Dialog) -> Option<Peer> {
    let next = d
        .route_set
        .first()
        .cloned()
        .unwrap_or_else(|| format!("<{}>", d.remote_target));
    match peer_of(&next).await {
        Some(p) => Some(p),
        None => d.peer,
    }
}

fn dialog_builder(
    mlc: &Mlc,
    d: &Dialog,
    method: &str,
    cseq: u32,
    peer: Peer,
    branch: &str,
) -> Builder {
    let mut b = Builder::request(method, &d.remote_target)
        .header("Via", mlc.via(peer, branch))
        .header("Max-Forwards", "70");
    for r in &d.route_set {
        b = b.header("Route", r);
    }
    let to_tag = d
        .remote_tag
        .as_ref()
        .map(|t| format!(";tag={t}"))
        .unwrap_or_default();
    b.header("From", format!("<{}>;tag={}", d.local_uri, d.local_tag))
        .header("To", format!("<{}>{to_tag}", d.remote_uri))
        .header("Call-ID", &d.call_id)
        .header("CSeq", format!("{cseq} {method}"))
        .header("User-Agent", mlc.user_agent())
}

async fn send_ack(mlc: &Mlc, id: u64, cseq: u32) {
    let Some(d) = mlc.calls.with(id, |c| c.dialog.clone()) else {
        return;
    };
    let Some(peer) = dialog_peer(&d).await else {
        return;
    };
    let b = dialog_builder(mlc, &d, "ACK", cseq, peer, &mlc.branch());
    mlc.send(peer, &b.build()).await;
}

/// Sends an in-dialog request and waits for its final answer.
async fn send_in_dialog(
    mlc: &Mlc,
    id: u64,
    method: &str,
    body: Option<Vec<u8>>,
    extra: Vec<(&str, String)>,
) -> Option<Box<Message>> {
    let (d, line) = mlc.calls.with(id, |c| {
        c.dialog.local_cseq += 1;
        (c.dialog.clone(), c.line)
    })?;
    let peer = dialog_peer(&d).await?;
    let branch = mlc.branch();
    let mut b = dialog_builder(mlc, &d, method, d.local_cseq, peer, &branch);
    if method == "INVITE" || method == "REFER" {
        b = b.header("Contact", format!("<{}>", contact_uri(mlc, line, peer)));
    }
    for (k, v) in extra {
        b = b.header(k, v);
    }
    if let Some(body) = body {
        b = b.body("application/sdp", body);
    }
    let mut rx = mlc.transact(
        peer,
        branch.clone(),
        b.build(),
        method == "INVITE",
        TXN_TIMEOUT,
    );
    let mut last = None;
    while let Some(r) = rx.recv().await {
        if r.code().unwrap_or(0) >= 200 {
            last = Some(r);
        }
    }
    let _ = mlc.take_send_error(&branch);
    if let Some(r) = &last
        && method == "INVITE"
        && r.code().is_some_and(|c| (200..300).contains(&c))
    {
        send_ack(mlc, id, r.cseq.number).await;
    }
    last
}

fn check_owner(mlc: &Mlc, id: u64, by: ProfileId) -> Result<CallState, OpError> {
    mlc.calls
        .with(id, |c| {
            if c.owner.is_some() && c.owner != Some(by) {
                Err(op_err("forbidden", "the call is held by another turret"))
            } else {
                Ok(c.state)
            }
        })
        .ok_or_else(|| op_err("not_found", "no such call"))?
}

/// Hangs up: BYE when connected, CANCEL while an outgoing call rings.
pub async fn hangup(mlc: &Mlc, id: u64, by: ProfileId) -> Result<(), OpError> {
    match check_owner(mlc, id, by)? {
        CallState::Ringing => return Err(op_err("not_answered", "reject a ringing call instead")),
        CallState::Dialing | CallState::Alerting => {
            let sent = mlc
                .calls
                .with(id, |c| (c.sent_invite.clone(), c.dialog.clone()))
                .and_then(|(s, d)| s.map(|s| (s, d)));
            end(mlc, id, "local_hangup").await;
            if let Some(((peer, branch, cseq, target), d)) = sent {
                let b = Builder::request("CANCEL", &target)
                    .header("Via", mlc.via(peer, &branch))
                    .header("Max-Forwards", "70")
                    .header("From", format!("<{}>;tag={}", d.local_uri, d.local_tag))
                    .header("To", format!("<{target}>"))
                    .header("Call-ID", &d.call_id)
                    .header("CSeq", format!("{cseq} CANCEL"))
                    .header("User-Agent", mlc.user_agent());
                let _ = mlc.transact(peer, branch, b.build(), false, TXN_TIMEOUT);
            }
        }
        CallState::Ended => {}
        _ => {
            let me = mlc.clone();
            // End at once for the turrets; the BYE completes behind.
            let d = mlc.calls.with(id, |c| c.state = CallState::Ended);
            if d.is_some() {
                tokio::spawn(async move {
                    send_in_dialog(&me, id, "BYE", None, Vec::new()).await;
                    end(&me, id, "local_hangup").await;
                });
            }
        }
    }
    Ok(())
}

/// Puts a connected call on hold (re-INVITE with sendonly) or takes it
/// back (sendrecv).
pub async fn hold(mlc: &Mlc, id: u64, by: ProfileId, on: bool) -> Result<(), OpError> {
    let state = check_owner(mlc, id, by)?;
    let ok = if on {
        state == CallState::Connected
    } else {
        state == CallState::Held
    };
    if !ok {
        return Err(op_err(
            "wrong_state",
            format!("the call is {}", state.name()),
        ));
    }
    let body = mlc
        .calls
        .with(id, |c| {
            c.sdp_version += 1;
            let dir = if on {
                sdp::Direction::SendOnly
            } else {
                sdp::Direction::SendRecv
            };
            c.media
                .as_ref()
                .map(|m| sdp::build(m.local, c.id, c.sdp_version, &[c.codec], dir))
        })
        .flatten()
        .ok_or_else(|| op_err("not_found", "no such call"))?;
    let r = send_in_dialog(mlc, id, "INVITE", Some(body), Vec::new()).await;
    match r.and_then(|r| r.code()) {
        Some(200..=299) => {
            mlc.calls.with(id, |c| {
                c.state = if on {
                    CallState::Held
                } else {
                    CallState::Connected
                }
            });
            publish(mlc, id).await;
            Ok(())
        }
        Some(code) => Err(op_err("refused", format!("the far end answered {code}"))),
        None => Err(op_err("no_answer", "the far end did not answer")),
    }
}

/// Blind transfer: asks the far end to call `target` (REFER) and, once it
/// accepts, ends our leg.
pub async fn transfer(mlc: &Mlc, id: u64, by: ProfileId, target: &str) -> Result<(), OpError> {
    let state = check_owner(mlc, id, by)?;
    if !matches!(state, CallState::Connected | CallState::Held) {
        return Err(op_err(
            "wrong_state",
            format!("the call is {}", state.name()),
        ));
    }
    let target = target.trim();
    if target.is_empty()
        || target
            .chars()
            .any(|c| c.is_whitespace() || "<>\"".contains(c))
    {
        return Err(op_err("invalid", "target must be digits or a SIP user"));
    }
    let domain = mlc
        .calls
        .with(id, |c| c.line)
        .and_then(|l| mlc.lines.lock().unwrap().get(&l).map(|r| r.domain.clone()))
        .unwrap_or_default();
    let refer_to = if target.contains('@') {
        format!("<sip:{}>", target.trim_start_matches("sip:"))
    } else {
        format!("<sip:{target}@{domain}>")
    };
    let r = send_in_dialog(mlc, id, "REFER", None, vec![("Refer-To", refer_to)]).await;
    match r.and_then(|r| r.code()) {
        Some(200..=299) => {
            mlc.calls.with(id, |c| c.end_reason = "transferred".into());
            if let (Some(app), Some(line)) = (mlc.app(), line_of(mlc, id)) {
                app.cti.publish(
                    "call",
                    Some(line),
                    json!({"call_id": id, "line_id": line.0, "state": "transferred"}),
                );
            }
            mlc.calls.with(id, |c| c.state = CallState::Ended);
            send_in_dialog(mlc, id, "BYE", None, Vec::new()).await;
            end(mlc, id, "transferred").await;
            Ok(())
        }
        Some(code) => Err(op_err(
            "refused",
            format!("the far end refused the transfer ({code})"),
        )),
        None => Err(op_err("no_answer", "the far end did not answer")),
    }
}

// ----- the end of a call ---------------------------------------------------

/// Ends a call: tells the turrets, writes call memory and the CDR, frees
/// the media. Idempotent.
pub(crate) async fn end(mlc: &Mlc, id: u64, reason: &str) {
    let Some(mut call) = mlc.calls.remove(id) else {
        return;
    };
    call.state = CallState::Ended;
    if call.end_reason.is_empty() {
        call.end_reason = reason.to_string();
    }
    call.media = None;
    tracing::info!(call = id, reason = %call.end_reason, "call ended");
    let mut v = call.view();
    v.ended_at = Some(Timestamp::now());
    mlc.report(Job::Ended(v)).await;
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

/// The line a call is on.
pub fn line_of(mlc: &Mlc, id: u64) -> Option<LineId> {
    mlc.calls.with(id, |c| c.line)
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
