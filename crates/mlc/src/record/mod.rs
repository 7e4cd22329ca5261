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

use openturret_domain::{LineId, Timestamp};
use openturret_sip::sdp::{self, Codec};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::Mlc;
use crate::call::CallView;
use crate::host::RecorderTarget;
use crate::rtp::{Tap, Taps};
use crate::transport::{Peer, Proto};

mod fork;
mod metadata;
mod sip;

use fork::Fork;
use metadata::{Ids, Meta};
use sip::multipart;

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
    let forced = match t.transport.as_str() {
        "tls" => Some(Proto::Tls),
        "tcp" => Some(Proto::Tcp),
        _ => None,
    };
    let peer = crate::call::peer_of(&format!("<{}>", t.uri), forced).await?;
    let na = openturret_sip::uri::NameAddr::parse(&format!("<{}>", t.uri)).ok()?;
    let host = na
        .uri
        .host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if peer.proto == Proto::Tls && host.parse::<std::net::IpAddr>().is_err() {
        mlc.set_tls_name(peer.addr, &host);
    }
    Some(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

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
