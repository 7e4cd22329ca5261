//! Recorder forwarding (issue 18): the MLC as a SIPREC Session Recording
//! Client (RFC 7866). When a recorded call connects, the MLC opens one
//! recording session with each recorder the host names (2N): an INVITE
//! with `Require: siprec`, a Contact with `+sip.src`, and a
//! `multipart/mixed` body holding an SDP offer of two `sendonly` audio
//! streams (`a=label:1`, what the far end says; `a=label:2`, what the
//! trader says) and the RFC 7865 metadata (the recording session, the
//! call as a communication session, both participants, both streams and
//! who sends and receives which). Once the recorder answers, a [`Fork`]
//! on the call's RTP leg copies each packet to the recorder's ports, with
//! streams of its own (SSRC, sequence, timestamps). Hold and retrieve send
//! a re-INVITE with updated metadata; the call's end sends BYE.
//!
//! A recording session never touches its call: it runs in a task of its
//! own, a recorder that does not answer or refuses only ends that
//! session, and nothing on the call's path waits for it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use openturret_domain::{LineId, Timestamp};
use openturret_sip::message::{self, Builder, Message};
use openturret_sip::sdp::{self, Codec};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::Mlc;
use crate::call::CallView;
use crate::host::{RecorderTarget, Recording};
use crate::rtp::{Packet, Tap, Taps};
use crate::transport::{Peer, Proto};

/// How long a recorder has to answer an INVITE.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// How often a recording session checks its recorder is still there (an
/// in-dialog OPTIONS), and how long the answer may take.
const PING_EVERY: Duration = Duration::from_secs(5);
const PING_WITHIN: Duration = Duration::from_secs(4);
/// Attempts of one recorder per call (the first and the retries, after
/// 2, 4, 8, 16 s), and a wait that stays at the last.
const ATTEMPTS: u32 = 6;

/// The recording sessions of the calls in progress, by call id.
#[derive(Default)]
pub(crate) struct Recordings {
    map: Mutex<HashMap<u64, Vec<Handle>>>,
}

/// One recording session, as its call sees it.
struct Handle {
    tx: mpsc::UnboundedSender<Cmd>,
    state: Arc<AtomicU8>,
}

const PENDING: u8 = 0;
const ACTIVE: u8 = 1;
const FAILED: u8 = 2;

enum Cmd {
    /// The call was held (true) or retrieved (false).
    Held(bool),
    /// The far end took a blind transfer: our leg, and so the recording,
    /// ends next; the recorder is told first.
    Transferred,
    Stop,
}

/// Starts recording call `view` (just connected) if the host says so:
/// one session per recorder, each in its own task.
pub(crate) async fn start(
    mlc: &Mlc,
    view: CallView,
    codec: Codec,
    (taps, announcement): (Taps, crate::rtp::Announcement),
) {
    let Some(host) = mlc.host().cloned() else {
        return;
    };
    let rec = match host.recording(&view).await {
        Ok(Some(r)) if !r.recorders.is_empty() => r,
        Ok(_) => return,
        Err(e) => {
            tracing::warn!(call = view.id, error = %format!("{e:#}"), "cannot tell whether to record the call");
            return;
        }
    };
    // The recording notice, to the far end, once, as the call begins.
    if let Some(n) = &rec.notice {
        let mut q = announcement.lock().unwrap();
        for chunk in n.chunks(160) {
            let mut f: Vec<u8> = chunk
                .iter()
                .map(|x| openturret_sip::g711::encode(codec, *x))
                .collect();
            f.resize(160, codec.silence());
            q.push_back(f);
        }
    }
    let meta = Meta {
        rec: rec.clone(),
        ids: Ids::new(),
        start: Timestamp::now(),
        held: false,
        transferred: false,
        incoming: view.direction == openturret_domain::model::Direction::Incoming,
    };
    let mut handles = Vec::new();
    for target in rec.recorders {
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Arc::new(AtomicU8::new(PENDING));
        handles.push(Handle {
            tx,
            state: state.clone(),
        });
        let s = Session {
            mlc: mlc.clone(),
            call: view.id,
            line: view.line,
            owner: view.owner,
            target,
            codec,
            taps: taps.clone(),
            meta: meta.clone(),
            state,
        };
        tokio::spawn(s.run(rx));
    }
    mlc.recordings.map.lock().unwrap().insert(view.id, handles);
    changed(mlc, view.id).await;
}

/// The call was held or retrieved: each recorder is told.
pub(crate) fn held(mlc: &Mlc, call: u64, on: bool) {
    if let Some(v) = mlc.recordings.map.lock().unwrap().get(&call) {
        for h in v {
            let _ = h.tx.send(Cmd::Held(on));
        }
    }
}

/// The call was transferred away (its end follows).
pub(crate) fn transferred(mlc: &Mlc, call: u64) {
    if let Some(v) = mlc.recordings.map.lock().unwrap().get(&call) {
        for h in v {
            let _ = h.tx.send(Cmd::Transferred);
        }
    }
}

/// The call ended: every recording session of it ends (BYE).
pub(crate) fn stop(mlc: &Mlc, call: u64) {
    if let Some(v) = mlc.recordings.map.lock().unwrap().remove(&call) {
        for h in v {
            let _ = h.tx.send(Cmd::Stop);
        }
    }
}

/// Sets the call's recording state from its sessions' (recording when any
/// recorder takes it, failed when none does and none is still trying) and
/// tells the turrets when it changed.
async fn changed(mlc: &Mlc, call: u64) {
    let now = {
        let map = mlc.recordings.map.lock().unwrap();
        let Some(v) = map.get(&call) else { return };
        let states: Vec<u8> = v.iter().map(|h| h.state.load(Ordering::SeqCst)).collect();
        if states.contains(&ACTIVE) {
            "recording"
        } else if states.contains(&PENDING) {
            "pending"
        } else {
            "failed"
        }
    };
    let differs = mlc.calls.with(call, |c| {
        let d = c.recording != Some(now);
        c.recording = Some(now);
        d
    });
    if differs == Some(true) {
        crate::call::publish(mlc, call).await;
    }
}

/// The identifiers of one recorded call's metadata (RFC 7865 §6: 128-bit
/// values, base64): the call as a communication session, its two
/// participants and its two streams.
#[derive(Clone)]
struct Ids {
    session: String,
    /// The line's side (the trader) and the far end.
    trader: String,
    far: String,
    /// Label 1, what the far end says; label 2, what the trader says.
    far_stream: String,
    trader_stream: String,
}

impl Ids {
    fn new() -> Ids {
        let id = || {
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&message::random_u64().to_be_bytes());
            b[8..].copy_from_slice(&message::random_u64().to_be_bytes());
            base64::engine::general_purpose::STANDARD.encode(b)
        };
        Ids {
            session: id(),
            trader: id(),
            far: id(),
            far_stream: id(),
            trader_stream: id(),
        }
    }
}

/// What a recording's metadata says of its call.
#[derive(Clone)]
struct Meta {
    rec: Recording,
    ids: Ids,
    start: Timestamp,
    held: bool,
    transferred: bool,
    incoming: bool,
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

impl Meta {
    /// The RFC 7865 document (`complete` data mode: every element each
    /// time), with stop times when `stopped`.
    fn xml(&self, stopped: Option<Timestamp>) -> Vec<u8> {
        let i = &self.ids;
        let r = &self.rec;
        let start = self.start.rfc3339();
        let stop = |indent: &str, tag: &str| {
            stopped
                .map(|t| format!("{indent}<{tag}>{}</{tag}>\n", t.rfc3339()))
                .unwrap_or_default()
        };
        let far_aor = if r.remote_number.contains(':') {
            r.remote_number.clone()
        } else {
            let domain = r.line_aor.rsplit('@').next().unwrap_or("invalid");
            format!("sip:{}@{domain}", r.remote_number)
        };
        let trader_name = if r.profile_name.is_empty() {
            r.line_name.clone()
        } else {
            format!("{} ({})", r.line_name, r.profile_name)
        };
        let participant = |id: &str, aor: &str, name: &str| {
            format!(
                "  <participant participant_id=\"{id}\">\n    <nameID aor=\"{}\">\n      <name xml:lang=\"en\">{}</name>\n    </nameID>\n  </participant>\n",
                xml_escape(aor),
                xml_escape(name)
            )
        };
        let assoc = |id: &str| {
            format!(
                "  <participantsessionassoc participant_id=\"{id}\" session_id=\"{}\">\n    <associate-time>{start}</associate-time>\n{}  </participantsessionassoc>\n",
                i.session,
                stop("    ", "disassociate-time")
            )
        };
        let mut x = String::from(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<recording xmlns=\"urn:ietf:params:xml:ns:recording:1\">\n  <datamode>complete</datamode>\n",
        );
        x += &format!(
            "  <session session_id=\"{}\">\n    <start-time>{start}</start-time>\n{}    <ot:state xmlns:ot=\"urn:openturret:params:xml:ns:recording\">{}</ot:state>\n    <ot:direction xmlns:ot=\"urn:openturret:params:xml:ns:recording\">{}</ot:direction>\n  </session>\n",
            i.session,
            stop("    ", "stop-time"),
            if self.transferred {
                "transferred"
            } else if stopped.is_some() {
                "ended"
            } else if self.held {
                "held"
            } else {
                "connected"
            },
            if self.incoming {
                "incoming"
            } else {
                "outgoing"
            },
        );
        x += &participant(&i.trader, &r.line_aor, &trader_name);
        x += &participant(&i.far, &far_aor, &r.remote_name);
        for (id, label) in [(&i.far_stream, 1), (&i.trader_stream, 2)] {
            x += &format!(
                "  <stream stream_id=\"{id}\" session_id=\"{}\">\n    <label>{label}</label>\n  </stream>\n",
                i.session
            );
        }
        x += &format!(
            "  <sessionrecordingassoc session_id=\"{}\">\n    <associate-time>{start}</associate-time>\n{}  </sessionrecordingassoc>\n",
            i.session,
            stop("    ", "disassociate-time")
        );
        x += &assoc(&i.trader);
        x += &assoc(&i.far);
        // Each party sends its own stream and receives the other's.
        for (p, send, recv) in [
            (&i.far, &i.far_stream, &i.trader_stream),
            (&i.trader, &i.trader_stream, &i.far_stream),
        ] {
            x += &format!(
                "  <participantstreamassoc participant_id=\"{p}\">\n    <send>{send}</send>\n    <recv>{recv}</recv>\n  </participantstreamassoc>\n"
            );
        }
        x += "</recording>\n";
        x.into_bytes()
    }
}

/// One recording session with one recorder.
struct Session {
    mlc: Mlc,
    call: u64,
    line: LineId,
    owner: Option<openturret_domain::ProfileId>,
    target: RecorderTarget,
    codec: Codec,
    taps: Taps,
    meta: Meta,
    state: Arc<AtomicU8>,
}

/// How one attempt of a recording session ended.
enum Outcome {
    /// The call ended (or its recording did).
    Stopped,
    Failed(String),
}

/// The SIP dialog of a recording session (we are its UAC).
struct Dialog {
    peer: Peer,
    call_id: String,
    local_tag: String,
    local_uri: String,
    remote_uri: String,
    remote_tag: Option<String>,
    remote_target: String,
    route_set: Vec<String>,
    cseq: u32,
    contact: String,
    /// A digest answer to repeat (recorders that challenge each request).
    credentials: Option<(String, String)>,
}

impl Session {
    /// Records until the call ends, starting again (within bounds) when
    /// the recorder refuses, does not answer or goes away.
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Cmd>) {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let why = match self.once(&mut rx).await {
                Outcome::Stopped => return,
                Outcome::Failed(why) => why,
            };
            tracing::warn!(call = self.call, recorder = %self.target.name, reason = %why, attempt, "the call is not recorded by this recorder");
            self.report(FAILED, Some(why)).await;
            if attempt >= ATTEMPTS {
                // Given up for this call; the call goes on.
                while let Some(Cmd::Held(_) | Cmd::Transferred) = rx.recv().await {}
                return;
            }
            let wait = tokio::time::sleep(Duration::from_secs(1 << attempt.min(4)));
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    _ = &mut wait => break,
                    cmd = rx.recv() => match cmd {
                        Some(Cmd::Held(on)) => self.meta.held = on,
                        Some(Cmd::Transferred) => self.meta.transferred = true,
                        Some(Cmd::Stop) | None => return,
                    },
                }
            }
        }
    }

    /// Tells the host and the call how this recorder is doing.
    async fn report(&self, state: u8, failure: Option<String>) {
        self.state.store(state, Ordering::SeqCst);
        if let Some(h) = self.mlc.host() {
            h.recorder_state(self.call, self.line, self.owner, self.target.id, failure)
                .await;
        }
        changed(&self.mlc, self.call).await;
    }

    /// One recording session, from its INVITE to its BYE or its failure.
    async fn once(&mut self, rx: &mut mpsc::UnboundedReceiver<Cmd>) -> Outcome {
        let Some(peer) = target_peer(&self.mlc, &self.target).await else {
            return Outcome::Failed(format!("{} does not resolve", self.target.uri));
        };
        let (bind, advertise, ports) = self.mlc.media_place(peer.addr);
        let mut sockets = Vec::new();
        for _ in 0..2 {
            match crate::rtp::bind_in_range(bind, ports, true).await {
                Ok(s) => sockets.push(s),
                Err(e) => return Outcome::Failed(format!("no media port: {e}")),
            }
        }
        let ports: Vec<u16> = sockets
            .iter()
            .map(|s| s.local_addr().map(|a| a.port()).unwrap_or(0))
            .collect();
        let at = self.mlc.sent_by(peer);
        let mut d = Dialog {
            peer,
            call_id: self.mlc.call_id(),
            local_tag: self.mlc.token(),
            local_uri: format!("sip:openturret-src@{at}"),
            remote_uri: self.target.uri.clone(),
            remote_tag: None,
            remote_target: self.target.uri.clone(),
            route_set: Vec::new(),
            cseq: 0,
            contact: format!("<sip:openturret-src@{at}>;+sip.src"),
            credentials: None,
        };
        let (codec, call) = (self.codec, self.call);
        // Over TLS the media is SRTP (SDES, RFC 4568): a key per stream,
        // per recording session, offered inside the encrypted signalling.
        let keys = (peer.proto == Proto::Tls).then(|| {
            [
                crate::srtp::MasterKey::random(),
                crate::srtp::MasterKey::random(),
            ]
        });
        let crypto = |i: usize| {
            keys.as_ref()
                .map(|k| format!("1 {} {}", crate::srtp::SUITE, k[i].inline()))
        };
        let sdp_of = |version: u64, held: bool| {
            let dir = if held {
                sdp::Direction::Inactive
            } else {
                sdp::Direction::SendOnly
            };
            let stream = |i: usize, label: &str| sdp::Stream {
                port: ports[i],
                codecs: vec![codec],
                direction: dir,
                label: Some(label.into()),
                events: None,
                crypto: crypto(i),
            };
            sdp::build_streams(advertise, call, version, &[stream(0, "1"), stream(1, "2")])
        };
        let mut version = 1u64;
        let answer = match self
            .invite(
                &mut d,
                &sdp_of(version, self.meta.held),
                &self.meta.xml(None),
            )
            .await
        {
            Ok(a) => a,
            Err(why) => return Outcome::Failed(format!("it did not take the call: {why}")),
        };
        let to = match streams_of(&answer, keys.is_some()) {
            Ok(to) => to,
            Err(why) => {
                let _ = self.request(&mut d, "BYE", None, ANSWER_WITHIN).await;
                return Outcome::Failed(format!("its answer is unusable: {why}"));
            }
        };
        let Ok(sockets) = <[UdpSocket; 2]>::try_from(sockets) else {
            return Outcome::Failed("no media port".into());
        };
        let fork: Arc<dyn Tap> = Arc::new(Fork::new(sockets, to, self.codec, keys.as_ref()));
        self.taps.lock().unwrap().push(fork.clone());
        tracing::info!(call, recorder = %self.target.name, "call recorded");
        self.report(ACTIVE, None).await;
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
        let outcome = loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(Cmd::Held(on)) => {
                        self.meta.held = on;
                        version += 1;
                        let body = multipart(&sdp_of(version, on), &self.meta.xml(None));
                        if let Err(why) = self.request(&mut d, "INVITE", Some(body), ANSWER_WITHIN).await {
                            break Outcome::Failed(format!("it refused the update: {why}"));
                        }
                    }
                    // The call went elsewhere: the last word says so.
                    Some(Cmd::Transferred) => self.meta.transferred = true,
                    Some(Cmd::Stop) | None => break Outcome::Stopped,
                },
                _ = ping.tick() => {
                    if let Err(why) = self.request(&mut d, "OPTIONS", None, PING_WITHIN).await {
                        break Outcome::Failed(format!("it stopped answering: {why}"));
                    }
                }
            }
        };
        self.taps.lock().unwrap().retain(|t| !Arc::ptr_eq(t, &fork));
        if matches!(outcome, Outcome::Stopped) {
            // The last metadata (RFC 7865: the stop times, and how the
            // call ended), then BYE.
            version += 1;
            let body = multipart(
                &sdp_of(version, true),
                &self.meta.xml(Some(Timestamp::now())),
            );
            let _ = self
                .request(&mut d, "INVITE", Some(body), ANSWER_WITHIN)
                .await;
            let _ = self.request(&mut d, "BYE", None, ANSWER_WITHIN).await;
        }
        outcome
    }

    /// The first INVITE: answers a digest challenge once; returns the
    /// recorder's SDP answer.
    async fn invite(&self, d: &mut Dialog, sdp: &[u8], xml: &[u8]) -> Result<Vec<u8>, String> {
        let r = self
            .request(d, "INVITE", Some(multipart(sdp, xml)), ANSWER_WITHIN)
            .await?;
        sdp_of(&r).ok_or_else(|| "the answer holds no SDP".to_string())
    }

    /// Sends `method` in the dialog (an INVITE makes it, the first time),
    /// with one digest retry; returns the final 2xx or why not.
    async fn request(
        &self,
        d: &mut Dialog,
        method: &str,
        body: Option<(String, Vec<u8>)>,
        within: Duration,
    ) -> Result<Box<Message>, String> {
        for attempt in 0..2 {
            d.cseq += 1;
            let branch = self.mlc.branch();
            let mut b = Builder::request(method, &d.remote_target)
                .header("Via", self.mlc.via(d.peer, &branch))
                .header("Max-Forwards", "70");
            for r in &d.route_set {
                b = b.header("Route", r);
            }
            let to = match &d.remote_tag {
                Some(t) => format!("<{}>;tag={t}", d.remote_uri),
                None => format!("<{}>", d.remote_uri),
            };
            b = b
                .header("From", format!("<{}>;tag={}", d.local_uri, d.local_tag))
                .header("To", to)
                .header("Call-ID", &d.call_id)
                .header("CSeq", format!("{} {method}", d.cseq))
                .header("User-Agent", self.mlc.user_agent());
            if method == "INVITE" {
                b = b
                    .header("Contact", &d.contact)
                    .header("Require", "siprec")
                    .header("Accept", "application/sdp, application/rs-metadata+xml");
            }
            if let Some((h, v)) = &d.credentials {
                b = b.header(h, v);
            }
            if let Some((ct, bytes)) = &body {
                b = b.body(ct, bytes.clone());
            }
            let mut rx = self.mlc.transact(
                d.peer,
                branch.clone(),
                b.build(),
                method == "INVITE",
                within,
            );
            let mut last = None;
            while let Some(r) = rx.recv().await {
                if r.code().unwrap_or(0) >= 200 {
                    last = Some(r);
                }
            }
            let send_error = self.mlc.take_send_error(&branch);
            let Some(r) = last else {
                return Err(send_error.unwrap_or_else(|| "no answer".into()));
            };
            let code = r.code().unwrap_or(0);
            // A ping: any answer but "no such dialog" shows it is there.
            if method == "OPTIONS" && code != 481 && code != 408 {
                return Ok(r);
            }
            if (200..300).contains(&code) {
                if d.remote_tag.is_none() {
                    d.remote_tag = r.to.tag().map(str::to_string);
                    if let Some(c) = r.contact() {
                        d.remote_target = c.uri.to_string();
                    }
                    d.route_set = r
                        .header_values("record-route")
                        .iter()
                        .rev()
                        .map(|s| s.to_string())
                        .collect();
                }
                if method == "INVITE" {
                    self.ack(d, r.cseq.number).await;
                }
                return Ok(r);
            }
            if method == "INVITE" {
                self.ack_failure(d, &branch, &r).await;
            }
            if (code == 401 || code == 407)
                && attempt == 0
                && let Some(pw) = &self.target.password
                && let Some((h, v)) = crate::call::digest_answer(
                    &self.mlc,
                    &r,
                    method,
                    &d.remote_target,
                    &self.target.username,
                    pw.expose(),
                )
            {
                d.credentials = Some((h.to_string(), v));
                continue;
            }
            return Err(crate::call::reason_of(&r).chars().take(80).collect());
        }
        Err("authentication failed".into())
    }

    async fn ack(&self, d: &Dialog, cseq: u32) {
        let branch = self.mlc.branch();
        let mut b = Builder::request("ACK", &d.remote_target)
            .header("Via", self.mlc.via(d.peer, &branch))
            .header("Max-Forwards", "70");
        for r in &d.route_set {
            b = b.header("Route", r);
        }
        let b = b
            .header("From", format!("<{}>;tag={}", d.local_uri, d.local_tag))
            .header(
                "To",
                format!(
                    "<{}>;tag={}",
                    d.remote_uri,
                    d.remote_tag.as_deref().unwrap_or_default()
                ),
            )
            .header("Call-ID", &d.call_id)
            .header("CSeq", format!("{cseq} ACK"));
        self.mlc.send(d.peer, &b.build()).await;
    }

    /// The ACK of a failed INVITE (same branch, RFC 3261 §17.1.1.3).
    async fn ack_failure(&self, d: &Dialog, branch: &str, r: &Message) {
        let to = message::header(&r.headers, "to")
            .unwrap_or_default()
            .to_string();
        let b = Builder::request("ACK", &d.remote_target)
            .header("Via", self.mlc.via(d.peer, branch))
            .header("Max-Forwards", "70")
            .header("From", format!("<{}>;tag={}", d.local_uri, d.local_tag))
            .header("To", to)
            .header("Call-ID", &d.call_id)
            .header("CSeq", format!("{} ACK", r.cseq.number));
        self.mlc.send(d.peer, &b.build()).await;
    }
}

/// The INVITE body: the SDP offer and the metadata (RFC 7866 §9.1).
fn multipart(sdp: &[u8], xml: &[u8]) -> (String, Vec<u8>) {
    message::multipart(&[
        ("application/sdp", None, sdp),
        (
            "application/rs-metadata+xml",
            Some("recording-session"),
            xml,
        ),
    ])
}

/// The SDP of an answer, alone or as a part of a multipart body.
fn sdp_of(r: &Message) -> Option<Vec<u8>> {
    match r.content_type().as_deref() {
        Some("application/sdp") => Some(r.body.clone()),
        Some("multipart/mixed") => message::multipart_parts(r.header("content-type")?, &r.body)?
            .into_iter()
            .find(|(ct, _)| ct.eq_ignore_ascii_case("application/sdp"))
            .map(|(_, b)| b),
        _ => None,
    }
}

/// Where the recorder takes each of our two streams: exactly two audio
/// streams, each with an address (and SRTP, when we offered it: media to a
/// recorder reached over TLS is never sent in clear).
fn streams_of(answer: &[u8], secure: bool) -> Result<[SocketAddr; 2], String> {
    let all = sdp::parse_all(answer).map_err(|e| format!("its SDP is not usable: {e:?}"))?;
    if all.len() != 2 {
        return Err(format!("it answered {} audio streams, not 2", all.len()));
    }
    if secure && all.iter().any(|a| !a.secure) {
        return Err("it refused SRTP for a recorder over TLS".into());
    }
    match (all[0].rtp, all[1].rtp) {
        (Some(a), Some(b)) => Ok([a, b]),
        _ => Err("it refused a stream (port 0)".into()),
    }
}

/// The recorder's address, by its URI and configured transport (over
/// TLS, its certificate is checked for the URI's host).
async fn target_peer(mlc: &Mlc, t: &RecorderTarget) -> Option<Peer> {
    let na = openturret_sip::uri::NameAddr::parse(&format!("<{}>", t.uri)).ok()?;
    let u = na.uri;
    let proto = match t.transport.as_str() {
        "tls" => Proto::Tls,
        "tcp" => Proto::Tcp,
        _ if u.scheme.eq_ignore_ascii_case("sips") => Proto::Tls,
        _ => Proto::Udp,
    };
    let default_port = if proto == Proto::Tls { 5061 } else { 5060 };
    let host = u.host.trim_start_matches('[').trim_end_matches(']');
    let addr = tokio::net::lookup_host((host, u.port.unwrap_or(default_port)))
        .await
        .ok()?
        .next()?;
    if proto == Proto::Tls && host.parse::<std::net::IpAddr>().is_err() {
        mlc.set_tls_name(addr, host);
    }
    Some(Peer { proto, addr })
}

/// The copy of a call's audio to one recorder: two RTP streams of its
/// own, sent from the ports the offer named.
pub(crate) struct Fork {
    sockets: [UdpSocket; 2],
    to: [SocketAddr; 2],
    codec: Codec,
    out: Mutex<[Out; 2]>,
    /// Each stream's SRTP context, when the recorder is reached over TLS.
    srtp: Mutex<Option<[crate::srtp::Srtp; 2]>>,
}

/// One outgoing stream's numbering; the far end's is shifted from its own
/// (gaps and timing kept), the trader's counts 20 ms frames.
struct Out {
    ssrc: u32,
    seq: u16,
    ts: u32,
    /// The far end's first sequence number and timestamp.
    base: Option<(u16, u32)>,
}

impl Fork {
    fn new(
        sockets: [UdpSocket; 2],
        to: [SocketAddr; 2],
        codec: Codec,
        keys: Option<&[crate::srtp::MasterKey; 2]>,
    ) -> Fork {
        let out = || {
            let r = message::random_u64();
            Out {
                ssrc: r as u32,
                seq: (r >> 32) as u16,
                ts: (r >> 16) as u32,
                base: None,
            }
        };
        Fork {
            sockets,
            to,
            codec,
            out: Mutex::new([out(), out()]),
            srtp: Mutex::new(
                keys.map(|k| [crate::srtp::Srtp::new(&k[0]), crate::srtp::Srtp::new(&k[1])]),
            ),
        }
    }

    fn send(&self, stream: usize, marker: bool, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) {
        let mut p = Vec::with_capacity(12 + payload.len());
        p.push(0x80);
        p.push(self.codec.payload_type() | if marker { 0x80 } else { 0 });
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(payload);
        if let Some(s) = self.srtp.lock().unwrap().as_mut() {
            s[stream].protect(&mut p, 12);
        }
        // Never waits: a full socket buffer loses this packet only.
        let _ = self.sockets[stream].try_send_to(&p, self.to[stream]);
    }
}

impl Tap for Fork {
    fn far(&self, p: &Packet<'_>) {
        if p.payload_type != self.codec.payload_type() {
            return;
        }
        let (seq, ts, ssrc) = {
            let mut o = self.out.lock().unwrap();
            let s = &mut o[0];
            let (bs, bt) = *s.base.get_or_insert((p.seq, p.timestamp));
            (
                s.seq.wrapping_add(p.seq.wrapping_sub(bs)),
                s.ts.wrapping_add(p.timestamp.wrapping_sub(bt)),
                s.ssrc,
            )
        };
        self.send(0, p.marker, seq, ts, ssrc, p.payload);
    }

    fn near(&self, payload_type: u8, payload: &[u8]) {
        if payload_type != self.codec.payload_type() {
            return;
        }
        let (seq, ts, ssrc) = {
            let mut o = self.out.lock().unwrap();
            let s = &mut o[1];
            s.seq = s.seq.wrapping_add(1);
            s.ts = s.ts.wrapping_add(payload.len() as u32);
            (s.seq, s.ts, s.ssrc)
        };
        self.send(1, false, seq, ts, ssrc, payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta {
            rec: Recording {
                recorders: Vec::new(),
                line_aor: "sip:1001@pbx.example".into(),
                line_name: "FX <Desk>".into(),
                profile_name: "Alice & Co".into(),
                remote_number: "+442079460001".into(),
                remote_name: "Bob".into(),
                notice: None,
            },
            ids: Ids::new(),
            start: Timestamp(1_700_000_000_000),
            held: false,
            transferred: false,
            incoming: true,
        }
    }

    #[test]
    fn the_metadata_names_both_parties_and_ties_each_stream_to_its_sender() {
        let m = meta();
        let x = String::from_utf8(m.xml(None)).unwrap();
        assert!(
            x.contains("xmlns=\"urn:ietf:params:xml:ns:recording:1\""),
            "{x}"
        );
        assert!(
            x.contains("<name xml:lang=\"en\">FX &lt;Desk&gt; (Alice &amp; Co)</name>"),
            "{x}"
        );
        assert!(x.contains("aor=\"sip:+442079460001@pbx.example\""), "{x}");
        assert!(
            x.contains("<label>1</label>") && x.contains("<label>2</label>"),
            "{x}"
        );
        let far_send = format!(
            "<participantstreamassoc participant_id=\"{}\">\n    <send>{}</send>",
            m.ids.far, m.ids.far_stream
        );
        assert!(x.contains(&far_send), "{x}");
        assert!(!x.contains("stop-time"), "{x}");
        let ended = String::from_utf8(m.xml(Some(Timestamp(1_700_000_060_000)))).unwrap();
        assert!(
            ended.contains("<stop-time>") && ended.contains(">ended<"),
            "{ended}"
        );
    }

    #[test]
    fn an_answer_must_hold_two_streams_with_addresses() {
        let two = sdp::build_streams(
            "192.0.2.9".parse().unwrap(),
            1,
            1,
            &[
                sdp::Stream {
                    port: 4000,
                    codecs: vec![Codec::Pcmu],
                    direction: sdp::Direction::RecvOnly,
                    label: Some("1".into()),
                    events: None,
                    crypto: None,
                },
                sdp::Stream {
                    port: 4002,
                    codecs: vec![Codec::Pcmu],
                    direction: sdp::Direction::RecvOnly,
                    label: Some("2".into()),
                    events: None,
                    crypto: None,
                },
            ],
        );
        let to = streams_of(&two, false).unwrap();
        assert!(streams_of(&two, true).unwrap_err().contains("SRTP"));
        assert_eq!(to[1], "192.0.2.9:4002".parse().unwrap());
        let one = sdp::build_call(
            "192.0.2.9:4000".parse().unwrap(),
            1,
            1,
            &[Codec::Pcmu],
            sdp::Direction::RecvOnly,
            None,
            None,
        );
        assert!(
            streams_of(&one, false)
                .unwrap_err()
                .contains("1 audio streams")
        );
        assert!(streams_of(b"garbage", false).is_err());
    }
}
