//! Calls across nodes (issue 19): a turret connected to any node of the
//! deployment sees and works every call and line state of its lines,
//! whichever node's MLCs carry them.
//!
//! The node whose MLCs carry a call (it holds the line's lease) tells the
//! others each change of its calls and line states in notes on [`TOPIC`]
//! (sealed under the deployment's key, never stored: [`Store::signal`]).
//! Each node keeps what the others told it ([`Heard`]) and pushes it to
//! its own turrets as it pushes its own reports (the caller identified
//! from each profile's contacts), and nothing more: call memory, CDRs,
//! audit entries and CTI events are the carrying node's alone, so each
//! is written once.
//!
//! A turret's operation on a call (or a dial on a line) that another node
//! carries is sent there as an `op` note, authorised on both nodes, and
//! answered with a `done` note within [`OP_TIMEOUT`]; the media of a
//! voice session goes straight between the browser and the carrying
//! MLC, so only the offer and answer pass through here.
//!
//! Every node beats every [`BEAT`]. A node silent for [`SILENT`] is gone:
//! its calls end for the turrets here (`controller_lost`) and its lines
//! show `unknown` until a survivor takes their leases and registers them.
//! A node that may have missed notes (it started, its listener came
//! back, another node restarted) asks every node for everything (`ask`,
//! answered with `all`). Each beat carries a digest of the calls its node
//! has told of; a node whose heard calls of that node do not match (a
//! note was lost: an `ended` would leave a call ringing on its turrets)
//! asks that node alone for everything. A node's notes arrive in the
//! order it sent them, so the digest matches exactly unless one was lost.
//! With one node on SQLite none of this runs.
//!
//! Notes longer than a notification may carry are cut into parts
//! ([`PART`]) that the receiver joins again (a node's parts arrive in
//! order: one statement sends them).
//!
//! [`Store::signal`]: openturret_store::AuditStore::signal

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use openturret_domain::{LineId, ProfileId};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::App;
use crate::mlc::call::{CallState, OpError, op_err};
use crate::mlc::link::{known_code, state_json, state_of};
use crate::mlc::{CallView, LineState};

/// The topic of the notes between nodes about calls.
pub const TOPIC: &str = "calls";
/// How often a node says it is there.
pub const BEAT: Duration = Duration::from_secs(2);
/// A node not heard for this long is gone.
pub const SILENT: Duration = Duration::from_secs(8);
/// How long a turret's operation waits for the node carrying the call.
pub const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest part of a note (sealed and base64-encoded it stays under
/// a notification's limit).
pub const PART: usize = 4096;
/// Notes waiting to be sent beyond this make the reporter wait.
const QUEUE: usize = 65_536;

/// What this node knows of the others' calls (in [`App`]).
#[derive(Default)]
pub struct Peers {
    /// This process's number among the nodes' notes (random per start).
    incarnation: OnceLock<u64>,
    heard: Mutex<Heard>,
    /// Operations sent to another node, waiting for its answer.
    pending: Mutex<HashMap<u64, oneshot::Sender<Result<Value, OpError>>>>,
    next: AtomicU64,
    out: OnceLock<mpsc::Sender<Value>>,
    inbox: OnceLock<mpsc::UnboundedSender<Vec<u8>>>,
    /// The calls this node has told the others of, as the digest in its
    /// beats covers them; locked while a note about them is queued, so
    /// a beat's digest counts exactly the notes queued before it.
    told: Mutex<HashMap<u64, Told>>,
}

/// What a call's digest covers: enough to see a lost note.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Told {
    state: &'static str,
    owner: Option<i64>,
}

impl Told {
    fn of(v: &CallView) -> Told {
        Told {
            state: v.state.name(),
            owner: v.owner.map(|p| p.0),
        }
    }
}

/// A digest of calls (FNV-1a over their ids, states and owners in id
/// order): the same on every node for the same calls.
fn digest<'a>(calls: impl Iterator<Item = (u64, Told)> + 'a) -> u64 {
    let mut sorted: Vec<(u64, Told)> = calls.collect();
    sorted.sort_by_key(|(id, _)| *id);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for (id, t) in sorted {
        eat(&id.to_be_bytes());
        eat(t.state.as_bytes());
        eat(&t.owner.unwrap_or(-1).to_be_bytes());
    }
    h
}

#[derive(Default)]
struct Heard {
    nodes: HashMap<String, Seen>,
    calls: HashMap<u64, (String, CallView)>,
    lines: HashMap<LineId, (String, LineState)>,
    /// Parts of long notes, by (sender, note number).
    parts: HashMap<(u64, u32), Vec<u8>>,
}

struct Seen {
    incarnation: u64,
    last: Instant,
}

impl Seen {
    /// Heard now, as `incarnation` (0: not known yet).
    fn new(incarnation: u64) -> Seen {
        Seen {
            incarnation,
            last: Instant::now(),
        }
    }
}

impl Heard {
    /// The digest of the calls heard from `node`.
    fn digest(&self, node: &str) -> u64 {
        digest(
            self.calls
                .iter()
                .filter(|(_, (n, _))| n == node)
                .map(|(id, (_, v))| (*id, Told::of(v))),
        )
    }

    /// A node heard of before its first beat counts as seen now (so what
    /// it told expires should it die before beating); its beat then
    /// brings its incarnation, and with it a full answer.
    fn touch(&mut self, node: &str) {
        if !self.nodes.contains_key(node) {
            self.nodes.insert(node.to_string(), Seen::new(0));
        }
    }
}

impl Peers {
    /// Whether this node shares calls with others (a shared database).
    pub fn is_on(&self) -> bool {
        self.out.get().is_some()
    }

    /// Whether another node carries calls or lines that this one hears.
    pub fn any(&self) -> bool {
        let h = self.heard.lock().unwrap();
        !h.lines.is_empty() || !h.calls.is_empty()
    }

    /// The other nodes this one hears now, by name (one silent for
    /// [`SILENT`] is dropped).
    pub fn nodes(&self) -> Vec<String> {
        let h = self.heard.lock().unwrap();
        let mut names: Vec<String> = h.nodes.keys().cloned().collect();
        names.sort();
        names
    }

    /// The calls other nodes carry.
    pub fn calls(&self) -> Vec<CallView> {
        let h = self.heard.lock().unwrap();
        h.calls.values().map(|(_, c)| c.clone()).collect()
    }

    /// A call another node carries: that node, the call's line and who
    /// holds it.
    pub fn carrier(&self, id: u64) -> Option<(String, LineId, Option<ProfileId>)> {
        let h = self.heard.lock().unwrap();
        h.calls.get(&id).map(|(n, c)| (n.clone(), c.line, c.owner))
    }

    /// A line's state as the node serving it told it.
    pub fn line(&self, id: LineId) -> Option<(String, LineState)> {
        self.heard.lock().unwrap().lines.get(&id).cloned()
    }

    /// Every line state other nodes told.
    pub fn lines(&self) -> HashMap<LineId, LineState> {
        let h = self.heard.lock().unwrap();
        h.lines
            .iter()
            .map(|(id, (_, s))| (*id, s.clone()))
            .collect()
    }

    /// A note of [`TOPIC`] from another node (the store's observer: never
    /// waits).
    pub fn heard_note(&self, note: &[u8]) {
        if let Some(tx) = self.inbox.get() {
            let _ = tx.send(note.to_vec());
        }
    }

    fn send(&self, msg: Value) {
        if let Some(tx) = self.out.get()
            && let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(msg)
        {
            tracing::warn!("a call note for the other nodes was dropped: too many waiting");
        }
    }
}

/// Starts sharing calls with the other nodes of a shared database.
pub fn start(app: &App) {
    if !app.store.is_shared() {
        return;
    }
    let peers = &app.peers;
    let _ = peers.incarnation.set(rand_u64());
    let (out, out_rx) = mpsc::channel(QUEUE);
    let (inbox, inbox_rx) = mpsc::unbounded_channel();
    let _ = peers.out.set(out);
    let _ = peers.inbox.set(inbox);
    tokio::spawn(sender(app.clone(), out_rx));
    let weak = Arc::downgrade(&app.0);
    tokio::spawn(receiver(weak.clone(), inbox_rx));
    tokio::spawn(beats(weak));
    ask(app);
}

fn rand_u64() -> u64 {
    use rand_core::RngCore;
    rand_core::OsRng.next_u64()
}

/// Asks every other node for its calls and line states (this one may
/// have missed notes).
pub fn ask(app: &App) {
    app.peers.send(json!({"k": "ask"}));
}

/// This node's MLC reported a call: the other nodes are told.
pub fn tell_call(app: &App, view: &CallView, ended: bool) {
    if app.peers.is_on() {
        let mut told = app.peers.told.lock().unwrap();
        if ended || view.state == CallState::Ended {
            told.remove(&view.id);
        } else {
            told.insert(view.id, Told::of(view));
        }
        app.peers
            .send(json!({"k": "call", "n": app.node, "v": view.to_json(), "e": ended}));
    }
}

/// This node's MLC reported a line's state.
pub fn tell_line(app: &App, id: LineId, state: &LineState) {
    if app.peers.is_on() {
        app.peers
            .send(json!({"k": "line", "n": app.node, "id": id.0, "s": state_json(state)}));
    }
}

/// A profile rejected a call here: its turrets on other nodes are told.
pub fn tell_rejected(app: &App, view: &CallView, pid: ProfileId) {
    if app.peers.is_on() {
        app.peers
            .send(json!({"k": "rejected", "n": app.node, "v": view.to_json(), "p": pid.0}));
    }
}

/// Runs `op` (as the component link carries it: `{"op": ..., "call_id":
/// ..., "profile_id": ...}`) on `node`, which carries the call; its
/// answer (`{"call_id": ...}` for a dial, `{"sdp": ...}` for voice).
pub async fn forward(app: &App, node: &str, op: Value) -> Result<Value, OpError> {
    let peers = &app.peers;
    let r = peers.next.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = oneshot::channel();
    peers.pending.lock().unwrap().insert(r, tx);
    peers.send(json!({"k": "op", "to": node, "from": app.node, "r": r, "op": op}));
    match tokio::time::timeout(OP_TIMEOUT, rx).await {
        Ok(Ok(answer)) => answer,
        _ => {
            peers.pending.lock().unwrap().remove(&r);
            Err(op_err(
                "unavailable",
                "the node carrying this call did not answer",
            ))
        }
    }
}

/// Sends the queued notes in order, as many as are waiting in one round
/// trip.
async fn sender(app: App, mut rx: mpsc::Receiver<Value>) {
    let me = *app.peers.incarnation.get().expect("set at start");
    let mut seq: u32 = 0;
    let mut lost = false;
    let weak = Arc::downgrade(&app.0);
    drop(app);
    while let Some(first) = rx.recv().await {
        let Some(app) = weak.upgrade().map(App) else {
            return;
        };
        let mut notes: Vec<Vec<u8>> = Vec::new();
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            seq = seq.wrapping_add(1);
            notes.extend(cut(me, seq, msg.to_string().as_bytes()));
            if notes.len() < 256 {
                next = rx.try_recv().ok();
            }
        }
        let refs: Vec<&[u8]> = notes.iter().map(Vec::as_slice).collect();
        tracing::debug!(notes = refs.len(), "call notes to the other nodes");
        match app.store.signal(TOPIC, &refs).await {
            Err(e) => {
                tracing::warn!(error = %e, notes = refs.len(), "call notes not sent to the other nodes");
                lost = true;
            }
            Ok(()) if lost => {
                // Notes were lost (the database was unreachable): once
                // they pass again, the others get everything.
                lost = false;
                tell_all(&app);
            }
            Ok(()) => {}
        }
    }
}

/// `msg` in parts: sender, note number, part, parts, bytes.
fn cut(me: u64, seq: u32, msg: &[u8]) -> Vec<Vec<u8>> {
    let chunks: Vec<&[u8]> = if msg.is_empty() {
        vec![msg]
    } else {
        msg.chunks(PART).collect()
    };
    let n = chunks.len() as u16;
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let mut v = Vec::with_capacity(16 + c.len());
            v.extend_from_slice(&me.to_be_bytes());
            v.extend_from_slice(&seq.to_be_bytes());
            v.extend_from_slice(&(i as u16).to_be_bytes());
            v.extend_from_slice(&n.to_be_bytes());
            v.extend_from_slice(c);
            v
        })
        .collect()
}

/// Joins parts; the whole note once its last part is here.
fn join(parts: &mut HashMap<(u64, u32), Vec<u8>>, note: &[u8]) -> Option<Vec<u8>> {
    if note.len() < 16 {
        return None;
    }
    let from = u64::from_be_bytes(note[..8].try_into().ok()?);
    let seq = u32::from_be_bytes(note[8..12].try_into().ok()?);
    let i = u16::from_be_bytes(note[12..14].try_into().ok()?);
    let n = u16::from_be_bytes(note[14..16].try_into().ok()?);
    let body = &note[16..];
    if n <= 1 {
        return Some(body.to_vec());
    }
    // A sender that stopped half-way leaves its parts: bounded.
    if parts.len() > 1024 {
        parts.clear();
    }
    let buf = parts.entry((from, seq)).or_default();
    buf.extend_from_slice(body);
    if i + 1 == n {
        parts.remove(&(from, seq))
    } else {
        None
    }
}

async fn receiver(app: std::sync::Weak<crate::AppInner>, mut rx: mpsc::UnboundedReceiver<Vec<u8>>) {
    while let Some(note) = rx.recv().await {
        let Some(app) = app.upgrade().map(App) else {
            return;
        };
        let whole = join(&mut app.peers.heard.lock().unwrap().parts, &note);
        let Some(msg) = whole.and_then(|b| serde_json::from_slice::<Value>(&b).ok()) else {
            continue;
        };
        on_note(&app, msg).await;
    }
}

async fn on_note(app: &App, msg: Value) {
    let node = msg["n"].as_str().unwrap_or_default().to_string();
    match msg["k"].as_str().unwrap_or_default() {
        "call" => {
            if let Some(v) = CallView::from_json(&msg["v"]) {
                heard_call(app, &node, v, msg["e"].as_bool().unwrap_or(false)).await;
            }
        }
        "line" => {
            if let Some(id) = msg["id"].as_i64().map(LineId) {
                heard_line(app, &node, id, state_of(&msg["s"])).await;
            }
        }
        "rejected" => {
            if let (Some(v), Some(pid)) = (
                CallView::from_json(&msg["v"]),
                msg["p"].as_i64().map(ProfileId),
            ) {
                crate::telephony::push_rejected_here(app, &v, pid).await;
            }
        }
        "beat" => {
            let inc = msg["i"].as_u64().unwrap_or_default();
            let (new, missed) = {
                let mut h = app.peers.heard.lock().unwrap();
                let seen = h.nodes.insert(node.clone(), Seen::new(inc));
                let missed = msg["d"].as_u64().is_some_and(|d| d != h.digest(&node));
                (seen.is_none_or(|s| s.incarnation != inc), missed)
            };
            if new {
                // A node started (or this one had not heard it): what it
                // carries now, from it.
                ask(app);
            } else if missed {
                tracing::warn!(%node, "a call note from another node was missed: asking it for everything");
                app.peers.send(json!({"k": "ask", "to": node}));
            }
        }
        "ask" if msg["to"].is_null() || msg["to"] == json!(app.node) => tell_all(app),
        "all" => heard_all(app, &node, &msg).await,
        "op" if msg["to"] == json!(app.node) => {
            let app = app.clone();
            tokio::spawn(async move {
                let answer = run_forwarded(&app, &msg["op"]).await;
                let done = match answer {
                    Ok(v) => json!({"k": "done", "to": msg["from"], "r": msg["r"], "ok": v}),
                    Err(e) => json!({"k": "done", "to": msg["from"], "r": msg["r"],
                                     "err": {"code": e.code, "message": e.message}}),
                };
                app.peers.send(done);
            });
        }
        "done" if msg["to"] == json!(app.node) => {
            let Some(r) = msg["r"].as_u64() else {
                return;
            };
            let Some(tx) = app.peers.pending.lock().unwrap().remove(&r) else {
                return;
            };
            let answer = match msg.get("err") {
                Some(e) => Err(op_err(
                    code(e["code"].as_str().unwrap_or_default()),
                    e["message"].as_str().unwrap_or_default(),
                )),
                None => Ok(msg["ok"].clone()),
            };
            let _ = tx.send(answer);
        }
        _ => {}
    }
}

/// The codes an operation's failure may carry between nodes.
fn code(c: &str) -> &'static str {
    match c {
        "telephony_off" => "telephony_off",
        c => known_code(c),
    }
}

async fn heard_call(app: &App, node: &str, v: CallView, ended: bool) {
    tracing::debug!(call = v.id, state = v.state.name(), %node, "a call another node carries");
    {
        let mut h = app.peers.heard.lock().unwrap();
        h.touch(node);
        if ended || v.state == CallState::Ended {
            h.calls.remove(&v.id);
        } else {
            h.calls.insert(v.id, (node.to_string(), v.clone()));
        }
    }
    crate::telephony::push_call(app, v).await;
}

async fn heard_line(app: &App, node: &str, id: LineId, state: LineState) {
    {
        let mut h = app.peers.heard.lock().unwrap();
        h.touch(node);
        h.lines.insert(id, (node.to_string(), state.clone()));
    }
    show_line(app, id, &state).await;
}

/// Answers an `ask`: every call and line state this node's MLCs carry.
fn tell_all(app: &App) {
    let mut told = app.peers.told.lock().unwrap();
    let ongoing = crate::telephony::ongoing_here(app);
    *told = ongoing.iter().map(|v| (v.id, Told::of(v))).collect();
    let calls: Vec<Value> = ongoing.iter().map(CallView::to_json).collect();
    let lines: Vec<Value> = crate::telephony::line_states_here(app)
        .iter()
        .map(|(id, s)| json!([id.0, state_json(s)]))
        .collect();
    app.peers.send(json!({"k": "all", "n": app.node,
        "i": app.peers.incarnation.get(), "calls": calls, "lines": lines}));
}

/// Everything `node` carries: what it no longer carries ends here.
async fn heard_all(app: &App, node: &str, msg: &Value) {
    let calls: Vec<CallView> = msg["calls"]
        .as_array()
        .map(|a| a.iter().filter_map(CallView::from_json).collect())
        .unwrap_or_default();
    let lines: Vec<(LineId, LineState)> = msg["lines"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| Some((LineId(l[0].as_i64()?), state_of(&l[1]))))
                .collect()
        })
        .unwrap_or_default();
    let (gone_calls, gone_lines, changed_calls, changed_lines) = {
        let mut h = app.peers.heard.lock().unwrap();
        if let Some(inc) = msg["i"].as_u64() {
            h.nodes.insert(node.to_string(), Seen::new(inc));
        }
        let new_ids: std::collections::HashSet<u64> = calls.iter().map(|c| c.id).collect();
        let gone_calls: Vec<CallView> = h
            .calls
            .iter()
            .filter(|(id, (n, _))| n == node && !new_ids.contains(id))
            .map(|(_, (_, c))| c.clone())
            .collect();
        for c in &gone_calls {
            h.calls.remove(&c.id);
        }
        let changed_calls: Vec<CallView> = calls
            .into_iter()
            .filter(|c| {
                h.calls
                    .get(&c.id)
                    .is_none_or(|(_, old)| old.to_json() != c.to_json())
            })
            .collect();
        for c in &changed_calls {
            h.calls.insert(c.id, (node.to_string(), c.clone()));
        }
        let new_lines: std::collections::HashSet<LineId> = lines.iter().map(|l| l.0).collect();
        let gone_lines: Vec<LineId> = h
            .lines
            .iter()
            .filter(|(id, (n, _))| n == node && !new_lines.contains(id))
            .map(|(id, _)| *id)
            .collect();
        for id in &gone_lines {
            h.lines.remove(id);
        }
        let changed_lines: Vec<(LineId, LineState)> = lines
            .into_iter()
            .filter(|(id, s)| h.lines.get(id).is_none_or(|(_, old)| old != s))
            .collect();
        for (id, s) in &changed_lines {
            h.lines.insert(*id, (node.to_string(), s.clone()));
        }
        (gone_calls, gone_lines, changed_calls, changed_lines)
    };
    tell_gone(app, gone_calls, gone_lines).await;
    for c in changed_calls {
        crate::telephony::push_call(app, c).await;
    }
    for (id, s) in changed_lines {
        show_line(app, id, &s).await;
    }
}

/// A call as ended because the node carrying it went silent.
fn lost(mut c: CallView) -> CallView {
    c.state = CallState::Ended;
    c.end_reason = "controller_lost".into();
    c
}

/// Beats, and forgets the nodes gone silent.
async fn beats(app: std::sync::Weak<crate::AppInner>) {
    let mut tick = tokio::time::interval(BEAT);
    loop {
        tick.tick().await;
        let Some(app) = app.upgrade().map(App) else {
            return;
        };
        {
            let told = app.peers.told.lock().unwrap();
            let d = digest(told.iter().map(|(id, t)| (*id, *t)));
            app.peers.send(json!({"k": "beat", "n": app.node,
                "i": app.peers.incarnation.get(), "d": d}));
        }
        let (calls, lines) = {
            let mut h = app.peers.heard.lock().unwrap();
            let gone: Vec<String> = h
                .nodes
                .iter()
                .filter(|(_, s)| s.last.elapsed() > SILENT)
                .map(|(n, _)| n.clone())
                .collect();
            let mut calls = Vec::new();
            let mut lines = Vec::new();
            for n in &gone {
                h.nodes.remove(n);
                tracing::warn!(node = %n, "another node went silent: its calls end here");
                h.calls.retain(|_, (node, c)| {
                    if node == n {
                        calls.push(c.clone());
                    }
                    node != n
                });
                h.lines.retain(|id, (node, _)| {
                    if node == n {
                        lines.push(*id);
                    }
                    node != n
                });
            }
            (calls, lines)
        };
        tell_gone(&app, calls, lines).await;
    }
}

/// Tells the turrets here that calls and lines another node carried are
/// gone with it (or no longer its).
async fn tell_gone(app: &App, calls: Vec<CallView>, lines: Vec<LineId>) {
    for c in calls {
        crate::telephony::push_call(app, lost(c)).await;
    }
    for id in lines {
        show_line(app, id, &LineState::Unknown).await;
    }
}

/// Pushes a line state another node told, unless this node serves the
/// line (its turrets then show its own state).
async fn show_line(app: &App, id: LineId, state: &LineState) {
    if crate::telephony::owner(app, id).is_none() {
        crate::telephony::push_line_state(app, id, state).await;
    }
}

/// Runs an operation another node sent for a call (or a line) this
/// node's MLCs carry, authorised again here against the profile's lines;
/// never sent on (a call that moved is not found).
async fn run_forwarded(app: &App, op: &Value) -> Result<Value, OpError> {
    use crate::telephony as t;
    let pid = ProfileId(op["profile_id"].as_i64().ok_or_else(t::no_call)?);
    let id = op["call_id"].as_u64().unwrap_or_default();
    let s = |k: &str| op[k].as_str().unwrap_or_default().to_string();
    let lines = t::profile_lines(app, pid).await?;
    let name = op["op"].as_str().unwrap_or_default();
    if name == "dial" {
        let line = LineId(
            op["line_id"]
                .as_i64()
                .ok_or_else(|| op_err("invalid", "no line"))?,
        );
        if t::owner(app, line).is_none() {
            return Err(op_err("line_down", "the line is not served here"));
        }
        let call = t::dial(app, pid, Some(line), &s("number")).await?;
        return Ok(json!({"call_id": call}));
    }
    if !t::carries_here(app, id) {
        return Err(t::no_call());
    }
    t::may_act(app, id, pid, &lines)?;
    match name {
        "answer" => t::answer(app, id, pid, &s("speech_unit")).await?,
        "reject" => t::reject(app, id, pid).await?,
        "hangup" => t::hangup(app, id, pid).await?,
        "hold" => t::hold(app, id, pid, true).await?,
        "retrieve" => t::hold(app, id, pid, false).await?,
        "transfer" => t::transfer(app, id, pid, &s("target")).await?,
        "move" => t::move_to(app, id, pid, &s("target")).await?,
        "dtmf" => t::dtmf(app, id, pid, &s("target")).await?,
        "voice" => {
            let turret = s("turret")
                .parse()
                .map_err(|_| op_err("invalid", "no turret address"))?;
            let sdp = t::voice(app, id, pid, &s("sdp"), turret).await?;
            return Ok(json!({"sdp": sdp}));
        }
        _ => return Err(op_err("invalid", "no such operation")),
    }
    Ok(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_note_is_cut_and_joined_again_and_short_ones_pass_whole() {
        let long: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let parts = cut(7, 1, &long);
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| p.len() <= PART + 16));
        let mut store = HashMap::new();
        // Another sender's short note between the parts changes nothing.
        assert_eq!(join(&mut store, &parts[0]), None);
        assert_eq!(
            join(&mut store, &cut(9, 1, b"short")[0]).as_deref(),
            Some(&b"short"[..])
        );
        assert_eq!(join(&mut store, &parts[1]), None);
        assert_eq!(join(&mut store, &parts[2]), Some(long));
        assert!(store.is_empty());
        // Too short to be a note: ignored.
        assert_eq!(join(&mut store, b"x"), None);
    }

    fn call(id: u64, state: &str, owner: Option<i64>) -> CallView {
        CallView::from_json(&json!({"id": id, "line": 1, "direction": "in",
            "state": state, "owner": owner, "started": 0}))
        .unwrap()
    }

    #[test]
    fn a_beats_digest_matches_what_was_heard_from_its_node_and_sees_a_lost_note() {
        let calls = [call(3, "ringing", None), call(1, "connected", Some(7))];
        // What node a told, in the order it told it.
        let told: HashMap<u64, Told> = calls.iter().map(|v| (v.id, Told::of(v))).collect();
        let said = digest(told.iter().map(|(id, t)| (*id, *t)));
        // What node c heard: a's calls (in another order) and b's.
        let mut heard = Heard::default();
        for v in calls.iter().rev() {
            heard.calls.insert(v.id, ("a".into(), v.clone()));
        }
        heard
            .calls
            .insert(9, ("b".into(), call(9, "ringing", None)));
        assert_eq!(heard.digest("a"), said);
        assert_ne!(heard.digest("b"), said);
        // a's call 3 ended and the note was lost: c still has it ringing.
        let mut told = told;
        told.remove(&3);
        let said = digest(told.iter().map(|(id, t)| (*id, *t)));
        assert_ne!(heard.digest("a"), said);
        // Answered by someone else, or held, is another digest too.
        heard.calls.remove(&3);
        assert_eq!(heard.digest("a"), said);
        heard
            .calls
            .insert(1, ("a".into(), call(1, "held", Some(7))));
        assert_ne!(heard.digest("a"), said);
        heard
            .calls
            .insert(1, ("a".into(), call(1, "connected", Some(8))));
        assert_ne!(heard.digest("a"), said);
        // No calls at all: one fixed digest on both sides.
        assert_eq!(Heard::default().digest("a"), digest(std::iter::empty()));
    }
}
