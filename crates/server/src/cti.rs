//! The CTI interface (SPEC §1, rule 11; issue 7): live events for external
//! applications over a TLS WebSocket at `/cti`, behind an API key
//! (`Authorization: Bearer <key>`), off until an administrator switches it
//! on. Documented in `docs/cti.md`.
//!
//! Every event gets a sequence number and goes into a ring of the latest
//! [`REPLAY`] events, so an application that reconnects with `?since=N`
//! gets what it missed, or is told which events are gone. Each connection
//! reads from a bounded broadcast: one that reads too slowly is told how
//! many events it lost, and never slows the calls or anyone else.
//!
//! With several nodes on one database ([`start_shared`]) the sequence
//! numbers come from the database, one series for the deployment, and
//! every node sends its events to the others (notes sealed under the
//! deployment's key, never stored), so each node's ring holds every
//! node's events and an application may reconnect to any node with
//! `?since=`. Events of different nodes may arrive a few milliseconds out
//! of order; each is delivered once.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use openturret_domain::model::ApiKey;
use openturret_domain::{ApiKeyId, LineId, Timestamp};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, watch};

use crate::App;
use crate::audit::AuditContext;
use crate::tls::ClientAddr;

/// The protocol version of `/cti`.
pub const CTI_VERSION: u32 = 1;
/// Events kept for reconnecting applications.
pub const REPLAY: usize = 10_000;
/// Events a connection may fall behind before it is told it lost some.
const QUEUE: usize = 1024;

/// One published event.
#[derive(Clone, Debug)]
pub struct Event {
    pub seq: u64,
    pub kind: &'static str,
    /// The line it concerns (`None` for phone events).
    pub line: Option<LineId>,
    /// The whole message, encoded once.
    pub text: std::sync::Arc<str>,
}

/// An event waiting for its sequence number from the database.
pub struct Unsequenced {
    pub kind: &'static str,
    pub line: Option<LineId>,
    pub body: Value,
    pub at: Timestamp,
}

pub struct Cti {
    ring: Mutex<(u64, VecDeque<Event>)>,
    /// Several nodes: events go to the sequencer ([`start_shared`]).
    shared: std::sync::OnceLock<tokio::sync::mpsc::Sender<Unsequenced>>,
    /// Events the sequencer could not take (its queue was full), to be
    /// told to the applications as lost.
    unsequenced_lost: std::sync::atomic::AtomicU64,
    live: broadcast::Sender<Event>,
    /// Whether the interface is switched on (settings), for connections to
    /// end the moment it is switched off.
    enabled: watch::Sender<bool>,
    /// Revoked keys, for their connections to end at once.
    revoked: broadcast::Sender<ApiKeyId>,
}

impl Default for Cti {
    fn default() -> Self {
        Cti {
            ring: Mutex::new((0, VecDeque::with_capacity(REPLAY))),
            shared: std::sync::OnceLock::new(),
            unsequenced_lost: std::sync::atomic::AtomicU64::new(0),
            live: broadcast::channel(QUEUE).0,
            enabled: watch::channel(false).0,
            revoked: broadcast::channel(64).0,
        }
    }
}

impl Cti {
    /// Publishes an event of `kind` (`call`, `line`, `phone`, `recording`,
    /// `cdr` or `error_log`).
    pub fn publish(&self, kind: &'static str, line: Option<LineId>, body: Value) {
        let at = Timestamp::now();
        if let Some(tx) = self.shared.get() {
            if tx
                .try_send(Unsequenced {
                    kind,
                    line,
                    body,
                    at,
                })
                .is_err()
            {
                self.unsequenced_lost
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            return;
        }
        let mut ring = self.ring.lock().unwrap();
        let seq = ring.0 + 1;
        let e = Event {
            seq,
            kind,
            line,
            text: encode(seq, kind, at, &body).into(),
        };
        Self::keep(&mut ring, e.clone());
        // Sent under the lock, so the live order is the ring's order.
        let _ = self.live.send(e);
    }

    /// Puts `e` in the ring, in sequence order (an event of another node
    /// may come a little late), keeping the newest [`REPLAY`].
    fn keep(ring: &mut (u64, VecDeque<Event>), e: Event) {
        ring.0 = ring.0.max(e.seq);
        let at = ring
            .1
            .iter()
            .rposition(|x| x.seq < e.seq)
            .map_or(0, |i| i + 1);
        if ring.1.get(at).is_some_and(|x| x.seq == e.seq) {
            return;
        }
        ring.1.insert(at, e);
        if ring.1.len() > REPLAY {
            ring.1.pop_front();
        }
    }

    /// An event with its number (this node's, from the sequencer, or
    /// another node's): kept for replay and sent to the connections.
    pub fn deliver(&self, e: Event) {
        let mut ring = self.ring.lock().unwrap();
        Self::keep(&mut ring, e.clone());
        let _ = self.live.send(e);
    }

    /// The newest sequence number this node has delivered.
    pub fn newest(&self) -> u64 {
        self.ring.lock().unwrap().0
    }

    /// Events another node sent ([`start_shared`]).
    pub fn heard(&self, note: &[u8]) {
        let Ok(events) = serde_json::from_slice::<Vec<(u64, String, Option<i64>, String)>>(note)
        else {
            tracing::warn!("CTI events from another node were not understood");
            return;
        };
        for (seq, kind, line, text) in events {
            let Some(kind) = KINDS.iter().find(|k| **k == kind) else {
                continue;
            };
            self.deliver(Event {
                seq,
                kind,
                line: line.map(LineId),
                text: text.into(),
            });
        }
    }

    pub fn set_enabled(&self, on: bool) {
        self.enabled.send_if_modified(|v| {
            let changed = *v != on;
            *v = on;
            changed
        });
    }

    pub fn revoked(&self, id: ApiKeyId) {
        let _ = self.revoked.send(id);
    }

    /// After changes may have been missed: the connections of every key
    /// that is no longer active (revoked on another node) end.
    pub async fn recheck_keys(&self, store: &dyn openturret_store::Store) -> anyhow::Result<()> {
        let now = Timestamp::now();
        for k in store.list_api_keys().await? {
            if !k.is_active(now) {
                self.revoked(k.id);
            }
        }
        Ok(())
    }

    /// The events after `since` still held, and, if some are gone, the
    /// first one that is still there.
    fn replay(&self, since: u64) -> (Vec<Event>, Option<(u64, u64)>) {
        let ring = self.ring.lock().unwrap();
        let oldest = ring.1.front().map_or(ring.0 + 1, |e| e.seq);
        let gap = (since + 1 < oldest && since < ring.0).then_some((since + 1, oldest - 1));
        let events = ring.1.iter().filter(|e| e.seq > since).cloned().collect();
        (events, gap)
    }
}

/// The kinds of event.
const KINDS: [&str; 6] = ["call", "line", "phone", "recording", "cdr", "error_log"];

/// An event as the stream carries it.
fn encode(seq: u64, kind: &str, at: Timestamp, body: &Value) -> String {
    json!({"v": CTI_VERSION, "seq": seq, "at": at.rfc3339(), "kind": kind, "event": body})
        .to_string()
}

/// The topic of CTI events between nodes.
pub const TOPIC: &str = "cti";
/// Events waiting for their numbers; beyond, they are lost (and the
/// applications told so).
const SEQUENCER_QUEUE: usize = 65_536;
/// Events per note between nodes stay under this many bytes of JSON.
const NOTE_BYTES: usize = 4_000;

/// Several nodes on one database: this node's events take their numbers
/// from the database's series, in batches, and go to the other nodes.
pub fn start_shared(app: &App) {
    if !app.store.is_shared() {
        return;
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Unsequenced>(SEQUENCER_QUEUE);
    let _ = app.cti.shared.set(tx);
    let app = app.clone();
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < 500
                && let Ok(e) = rx.try_recv()
            {
                batch.push(e);
            }
            let seqs = loop {
                match app.store.cti_sequence(batch.len() as i64).await {
                    Ok(s) if s.len() == batch.len() => break s,
                    Ok(_) => tracing::warn!("the database gave too few CTI sequence numbers"),
                    Err(e) => tracing::warn!(error = %e, "no CTI sequence numbers; trying again"),
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            };
            // Delivered here, and in notes of a few kilobytes to the
            // other nodes, all in one round trip.
            let mut notes: Vec<Vec<u8>> = Vec::new();
            let mut note: Vec<(u64, &str, Option<i64>, std::sync::Arc<str>)> = Vec::new();
            let mut size = 0;
            for (u, seq) in batch.into_iter().zip(seqs) {
                let seq = seq as u64;
                let e = Event {
                    seq,
                    kind: u.kind,
                    line: u.line,
                    text: encode(seq, u.kind, u.at, &u.body).into(),
                };
                app.cti.deliver(e.clone());
                if e.text.len() > NOTE_BYTES {
                    tracing::warn!(
                        seq,
                        "a CTI event too large for the other nodes was not sent to them"
                    );
                    continue;
                }
                if size + e.text.len() > NOTE_BYTES && !note.is_empty() {
                    notes.push(serde_json::to_vec(&note).expect("events serialise"));
                    note.clear();
                    size = 0;
                }
                size += e.text.len() + 32;
                note.push((seq, e.kind, e.line.map(|l| l.0), e.text));
            }
            if !note.is_empty() {
                notes.push(serde_json::to_vec(&note).expect("events serialise"));
            }
            let refs: Vec<&[u8]> = notes.iter().map(Vec::as_slice).collect();
            if let Err(e) = app.store.signal(TOPIC, &refs).await {
                tracing::warn!(error = %e, "CTI events were not sent to the other nodes");
            }
            let lost = app
                .cti
                .unsequenced_lost
                .swap(0, std::sync::atomic::Ordering::Relaxed);
            if lost > 0 {
                tracing::warn!(
                    lost,
                    "CTI events were lost: more came than could be numbered"
                );
                let text = json!({"v": CTI_VERSION, "kind": "lost", "count": lost,
                    "hint": "events came faster than they could be numbered; they are not in the replay"});
                let _ = app.cti.live.send(Event {
                    seq: 0,
                    kind: "lost",
                    line: None,
                    text: text.to_string().into(),
                });
            }
        }
    });
}

/// Whether `key` may see `e`.
fn visible(key: &ApiKey, e: &Event) -> bool {
    let allowed = match e.kind {
        "call" => key.scope.allows_event("calls"),
        "line" => key.scope.allows_event("lines"),
        "recording" => key.scope.allows_event("recording"),
        // The error log names lines by id only, and no person: any key
        // that asks for it sees all of it.
        "error_log" => return key.scope.allows_event("errors"),
        "cdr" => key.scope.cdrs,
        _ => key.scope.allows_event("phones"),
    };
    if !allowed {
        return false;
    }
    match e.line {
        Some(l) => key.scope.allows_line(l),
        // Phone events name profiles, not lines: only for keys that may see
        // every line.
        None => key.scope.lines.is_none(),
    }
}

pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Makes a new key's token: 256 random bits, prefixed so it is recognisable
/// in a configuration file (and by secret scanners).
pub fn new_token() -> String {
    let mut b = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    format!(
        "otk_{}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    )
}

/// The active key a request carries, or why not. Every use is audited.
pub async fn authenticate(
    app: &App,
    headers: &HeaderMap,
    ip: std::net::IpAddr,
    what: &str,
) -> Result<ApiKey, (StatusCode, &'static str)> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or((
            StatusCode::UNAUTHORIZED,
            "an API key is needed: Authorization: Bearer <key>",
        ))?;
    let key = app
        .store
        .api_key_by_hash(token_hash(token.trim()))
        .await
        .map_err(|_| (StatusCode::INTERNAL_SERVER_ERROR, "internal error"))?;
    let ctx = AuditContext {
        client_ip: ip,
        client_host: String::new(),
        server_host: app.host.clone(),
    };
    let now = Timestamp::now();
    let Some(key) = key.filter(|k| k.is_active(now)) else {
        let mut r = ctx.record("apikey:?", "api_key.refused", "api_key", None, vec![]);
        r.success = false;
        let _ = app.store.append_audit(r).await;
        return Err((
            StatusCode::UNAUTHORIZED,
            "unknown, revoked or expired API key",
        ));
    };
    let r = ctx.record(
        &format!("apikey:{}", key.name),
        "api_key.used",
        "api_key",
        Some(key.id.0.to_string()),
        vec![what],
    );
    let _ = app.store.append_audit(r).await;
    let _ = app.store.touch_api_key(key.id, now).await;
    Ok(key)
}

#[derive(Deserialize)]
pub struct Since {
    since: Option<u64>,
}

/// `GET /cti`: the live event stream.
pub async fn upgrade(
    ws: WebSocketUpgrade,
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    Query(q): Query<Since>,
) -> Response {
    let enabled = match app.store.get_settings().await {
        Ok(s) => s.cti_enabled,
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    if !enabled {
        return (StatusCode::FORBIDDEN, "the CTI interface is switched off").into_response();
    }
    let key = match authenticate(&app, &headers, addr.0.ip(), "cti").await {
        Ok(k) => k,
        Err((code, msg)) => return (code, msg).into_response(),
    };
    ws.max_message_size(4096)
        .on_upgrade(move |socket| run(app, socket, key, q.since))
}

async fn run(app: App, mut socket: WebSocket, key: ApiKey, since: Option<u64>) {
    // Subscribe before replaying, so nothing falls between the two.
    let mut live = app.cti.live.subscribe();
    let mut enabled = app.cti.enabled.subscribe();
    let mut revoked = app.cti.revoked.subscribe();
    // Replayed events that may also come live (published meanwhile).
    let mut replayed = std::collections::HashSet::new();
    let hello = json!({"v": CTI_VERSION, "kind": "hello", "key": key.name,
        "events": key.scope.events, "cdrs": key.scope.cdrs, "lines": key.scope.lines.as_ref().map(|l| l.iter().map(|x| x.0).collect::<Vec<_>>())});
    if socket
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    if let Some(since) = since {
        let (events, gap) = app.cti.replay(since);
        if let Some((from, to)) = gap {
            let m = json!({"v": CTI_VERSION, "kind": "missed", "from": from, "to": to});
            if socket
                .send(Message::Text(m.to_string().into()))
                .await
                .is_err()
            {
                return;
            }
        }
        for e in events {
            replayed.insert(e.seq);
            if visible(&key, &e)
                && socket
                    .send(Message::Text(e.text.to_string().into()))
                    .await
                    .is_err()
            {
                return;
            }
        }
    }
    let expiry = key
        .expires_at
        .map(|t| Duration::from_millis((t.0 - Timestamp::now().0).max(0) as u64));
    let expired = async {
        match expiry {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(expired);
    loop {
        tokio::select! {
            e = live.recv() => match e {
                Ok(e) if e.kind == "lost" => {
                    // Numbered by nobody: every application is told.
                    if socket.send(Message::Text(e.text.to_string().into())).await.is_err() {
                        break;
                    }
                }
                Ok(e) => {
                    if !replayed.is_empty() && replayed.remove(&e.seq) {
                        continue;
                    }
                    if visible(&key, &e) && socket.send(Message::Text(e.text.to_string().into())).await.is_err() {
                        break;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    app.events.raise(
                        openturret_domain::model::Event::warning(
                            "cti.queue_overflow",
                            format!("api_key:{}", key.id.0),
                            "a CTI application read too slowly and lost events (it can get them from the replay)",
                        )
                        .with("key", &key.name)
                        .with("lost", n),
                    );
                    let m = json!({"v": CTI_VERSION, "kind": "lost", "count": n,
                        "hint": "read faster, or reconnect with ?since= to get them from the replay"});
                    if socket.send(Message::Text(m.to_string().into())).await.is_err() {
                        break;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            changed = enabled.changed() => {
                if changed.is_err() || !*enabled.borrow() {
                    let _ = socket.send(Message::Close(Some(axum::extract::ws::CloseFrame {
                        code: 4403, reason: "the CTI interface was switched off".into() }))).await;
                    break;
                }
            }
            id = revoked.recv() => {
                if matches!(id, Ok(id) if id == key.id) {
                    let _ = socket.send(Message::Close(Some(axum::extract::ws::CloseFrame {
                        code: 4401, reason: "the API key was revoked".into() }))).await;
                    break;
                }
            }
            _ = &mut expired => {
                let _ = socket.send(Message::Close(Some(axum::extract::ws::CloseFrame {
                    code: 4401, reason: "the API key expired".into() }))).await;
                break;
            }
            _ = app.stopping.wait() => {
                // Reconnect with ?since= once the server is back.
                let _ = socket.send(Message::Close(Some(axum::extract::ws::CloseFrame {
                    code: axum::extract::ws::close_code::RESTART,
                    reason: "the server is restarting".into() }))).await;
                break;
            }
            m = socket.recv() => match m {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                _ => {}
            },
        }
    }
}

/// `turret cti`: connects to `/cti` with `key` and prints every message as
/// one JSON line, until the server closes (an error naming the close
/// reason) or `seconds` pass.
pub async fn watch(
    url: &str,
    ca_pem: &[u8],
    key: &str,
    since: Option<u64>,
    seconds: Option<u64>,
    out: &mut (dyn std::io::Write + Send),
) -> anyhow::Result<()> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message as M;
    let path = match since {
        Some(n) => format!("/cti?since={n}"),
        None => "/cti".to_string(),
    };
    let mut ws = crate::client::conn::open_ws(url, ca_pem, &path, Some(key)).await?;
    let until = seconds.map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    loop {
        let next = match until {
            Some(t) => match tokio::time::timeout_at(t, ws.next()).await {
                Ok(m) => m,
                Err(_) => return Ok(()),
            },
            None => ws.next().await,
        };
        match next {
            Some(Ok(M::Text(t))) => {
                writeln!(out, "{}", t.as_str())?;
                out.flush()?;
            }
            Some(Ok(M::Close(c))) => {
                let (code, reason) = c.map_or((0, String::new()), |c| {
                    (u16::from(c.code), c.reason.to_string())
                });
                anyhow::bail!("the server closed the stream ({code}): {reason}");
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(anyhow::Error::new(e).context("while reading /cti")),
            None => anyhow::bail!("the server closed the connection"),
        }
    }
}
