//! The System Manager's side of telephony: the Multi-Line Controllers of
//! the system, the lines each one serves, and the operations of turret
//! clients routed to the MLC that carries the call.
//!
//! An MLC is either the one inside `turret serve` ([`Member::Local`]) or a
//! `turret mlc` process connected over the component link
//! ([`crate::component`]). Each line is served by exactly one of them at a
//! time, chosen by rendezvous hashing of the line id over the connected
//! MLCs' names, so an MLC joining or leaving moves only its share of the
//! lines. Whatever an MLC reports (line states, calls) comes here through
//! [`Host`], and is told to the turrets, the CTI stream, the audit log,
//! call memory and the CDRs in one place, whichever MLC it came from.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use openturret_domain::model::Line;
use openturret_domain::secret::Secret;
use openturret_domain::{LineId, ProfileId, Timestamp};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::component::Link;
use crate::hub::PushKind;
use crate::mlc::CallView;
use crate::mlc::call;
use crate::mlc::{Host, LineState};
use crate::report::{self, Job, call_json};
use crate::{App, AppInner};

mod ops;

pub(crate) use ops::no_call;
pub use ops::{
    answer, carries_here, dial, dtmf, hangup, hold, may_act, move_to, profile_lines, reject,
    transfer, voice,
};

/// The name the in-process MLC goes by in line ownership.
pub const LOCAL_NAME: &str = "local";

/// The telephony state of the System Manager (in [`App`]).
#[derive(Default)]
pub struct Telephony {
    reports: OnceLock<mpsc::Sender<Job>>,
    audits: OnceLock<mpsc::Sender<openturret_store::AuditRecord>>,
    /// The audit writer holds a batch it has not committed yet.
    audit_writing: Arc<AtomicBool>,
    /// Connected `turret mlc` processes, in the order they connected.
    remotes: Mutex<Vec<Arc<Link>>>,
    /// Numbers the `turret mlc` connections (their call-id ranges).
    instances: std::sync::atomic::AtomicU64,
    /// Calls of MLCs whose link dropped, by id, as they were last known:
    /// recorded here as ended unless their MLC reports them again in time.
    orphans: Mutex<HashMap<u64, CallView>>,
    /// When each line last changed the kind of its registration state, as
    /// any MLC reported it.
    since: Mutex<HashMap<LineId, (&'static str, openturret_domain::Timestamp)>>,
}

/// When line `id` entered its present kind of registration state, if an
/// MLC of this run reported it.
pub fn state_since(app: &App, id: LineId) -> Option<openturret_domain::Timestamp> {
    let state = line_state(app, id);
    app.telephony
        .since
        .lock()
        .unwrap()
        .get(&id)
        .filter(|(name, _)| *name == state.name())
        .map(|(_, at)| *at)
}

/// A number for a new `turret mlc` connection, so that call ids never
/// clash between MLCs: with one node 1, 2, ... (0 is the local MLC); with
/// several, from the deployment's series, so no two nodes' MLCs share one.
pub async fn next_instance(app: &App) -> anyhow::Result<u64> {
    match app.store.mlc_instance().await? {
        Some(n) => Ok(n),
        None => Ok(app.telephony.instances.fetch_add(1, Ordering::SeqCst) + 1),
    }
}

/// An MLC of the system.
#[derive(Clone)]
pub enum Member {
    Local,
    Remote(Arc<Link>),
}

impl Member {
    pub fn name(&self) -> &str {
        match self {
            Member::Local => LOCAL_NAME,
            Member::Remote(l) => &l.name,
        }
    }

    /// For the status API and the privacy report.
    pub fn json(&self) -> Value {
        match self {
            Member::Local => json!({"name": LOCAL_NAME, "in_process": true}),
            Member::Remote(l) => json!({"name": l.name, "in_process": false,
                "sip": *l.sip.lock().unwrap(), "peer": l.peer.to_string(), "lines": l.line_states().len(),
                "refused_requests": l.refused.load(Ordering::Relaxed)}),
        }
    }
}

/// Starts the report and audit tasks (with the application).
pub fn start(app: &App) {
    let _ = app.telephony.reports.set(report::start(app));
    let _ = app
        .telephony
        .audits
        .set(start_audit_writer(app, app.telephony.audit_writing.clone()));
}

/// Starts the in-process MLC on `config`; returns its SIP address.
pub async fn start_local(
    app: &App,
    config: crate::config::SipConfig,
) -> anyhow::Result<std::net::SocketAddr> {
    let (server, _) = crate::tls::server_config(&app.config.tls, &app.config.data_dir, &app.host)?;
    let tls = crate::mlc::tls_setup(&server, &config)?;
    let host = Arc::new(LocalHost(Arc::downgrade(&app.0)));
    if let Some(n) = app.store.mlc_instance().await? {
        // Beside other nodes: a range of its own (with one node, 0).
        app.mlc
            .set_call_id_base(n * crate::component::CALL_ID_SPACE);
    }
    app.mlc.set_media_config(app.config.media.clone());
    let at = app.mlc.start(host, config, Some(tls)).await?;
    // Lines to serve: leases now rather than at the next renewal.
    app.leases.wake();
    // The lines the remote MLCs served so far may now be ours.
    resync_all(app);
    Ok(at)
}

/// The MLCs now serving, local first.
pub fn members(app: &App) -> Vec<Member> {
    let mut v = Vec::new();
    if app.mlc.is_running() {
        v.push(Member::Local);
    }
    v.extend(
        app.telephony
            .remotes
            .lock()
            .unwrap()
            .iter()
            .cloned()
            .map(Member::Remote),
    );
    v
}

/// Whether any MLC serves this system.
pub fn running(app: &App) -> bool {
    app.mlc.is_running() || !app.telephony.remotes.lock().unwrap().is_empty()
}

/// Rendezvous (highest random weight) hashing: the member whose keyed
/// hash of the line is highest serves it. An MLC leaving moves only its
/// own lines. SHA-256, not the standard library's hasher, whose output
/// may change between Rust releases: an upgrade must not move lines.
fn weight(name: &str, line: LineId) -> u64 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0]);
    h.update(line.0.to_be_bytes());
    u64::from_be_bytes(h.finalize()[..8].try_into().expect("8 bytes"))
}

fn choose(members: &[Member], line: LineId) -> Option<Member> {
    members
        .iter()
        .max_by_key(|m| (weight(m.name(), line), m.name().to_string()))
        .cloned()
}

/// Among this node's MLCs, the one to serve `line`: none unless the node
/// holds the line's lease ([`crate::lease`]).
fn choose_leased(app: &App, members: &[Member], line: LineId) -> Option<Member> {
    if app.leases.holds(line) {
        choose(members, line)
    } else {
        None
    }
}

/// The MLC serving `line`, if any runs here and this node holds its lease.
pub fn owner(app: &App, line: LineId) -> Option<Member> {
    choose_leased(app, &members(app), line)
}

/// Whether `name` serves `line`.
pub fn serves(app: &App, name: &str, line: LineId) -> bool {
    owner(app, line).is_some_and(|m| m.name() == name)
}

/// The lines (with passwords) that the MLC `name` is to serve.
pub async fn lines_of(app: &App, name: &str) -> anyhow::Result<Vec<(Line, Option<Secret>)>> {
    let members = members(app);
    // The lines first, then the passwords: a line created in between is
    // in neither read or has its password (both are written in one
    // transaction); the other way round, it could start without one.
    let lines = app.store.list_lines().await?;
    let mut passwords: HashMap<LineId, Secret> =
        app.store.line_passwords().await?.into_iter().collect();
    let mut out = Vec::new();
    for l in lines {
        if !choose_leased(app, &members, l.id).is_some_and(|m| m.name() == name) {
            continue;
        }
        let p = match passwords.remove(&l.id) {
            None if l.has_password => app.store.line_password(l.id).await?,
            p => p,
        };
        out.push((l, p));
    }
    Ok(out)
}

/// One line for the MLC `name`, if it is to serve it.
pub async fn line_of(
    app: &App,
    name: &str,
    id: LineId,
) -> anyhow::Result<Option<(Line, Option<Secret>)>> {
    if !serves(app, name, id) {
        return Ok(None);
    }
    match app.store.get_line(id).await {
        Ok(l) => Ok(Some((l, app.store.line_password(id).await?))),
        Err(openturret_store::StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A line's state, from the MLC serving it.
pub fn line_state(app: &App, id: LineId) -> LineState {
    state_and_owner(app, id).0
}

/// A line's state and the MLC serving it (none here: the state another
/// node told, [`crate::peers`]).
pub fn state_and_owner(app: &App, id: LineId) -> (LineState, Option<Member>) {
    let owner = owner(app, id);
    let state = match &owner {
        None => app.peers.line(id).map_or(LineState::Unknown, |(_, s)| s),
        Some(Member::Local) => app.mlc.line_state(id),
        Some(Member::Remote(l)) => l.line_state(id),
    };
    (state, owner)
}

/// The state of every line some MLC of the deployment serves (each from
/// its owner; those of other nodes as they told it).
pub fn line_states(app: &App) -> HashMap<LineId, LineState> {
    let mut all = app.peers.lines();
    all.extend(line_states_here(app));
    all
}

/// The state of every line this node's MLCs serve.
pub fn line_states_here(app: &App) -> HashMap<LineId, LineState> {
    let members = members(app);
    let mine =
        |name: &str, id: LineId| choose_leased(app, &members, id).is_some_and(|m| m.name() == name);
    let mut all: HashMap<LineId, LineState> = app
        .mlc
        .line_states()
        .into_iter()
        .filter(|(id, _)| mine(LOCAL_NAME, *id))
        .collect();
    for l in app.telephony.remotes.lock().unwrap().iter() {
        all.extend(
            l.line_states()
                .into_iter()
                .filter(|(id, _)| mine(&l.name, *id)),
        );
    }
    all
}

/// Calls in progress on every MLC of the deployment, by id.
pub fn ongoing(app: &App) -> Vec<CallView> {
    let mut v = ongoing_here(app);
    let here: HashSet<u64> = v.iter().map(|c| c.id).collect();
    v.extend(
        app.peers
            .calls()
            .into_iter()
            .filter(|c| !here.contains(&c.id)),
    );
    v.sort_by_key(|c| c.id);
    v
}

/// Calls in progress on this node's MLCs, by id.
pub fn ongoing_here(app: &App) -> Vec<CallView> {
    let mut v = call::ongoing(&app.mlc);
    for l in app.telephony.remotes.lock().unwrap().iter() {
        v.extend(l.calls());
    }
    v.sort_by_key(|c| c.id);
    v
}

/// Whether turrets here can work calls: an MLC runs here, or another
/// node's MLCs carry lines or calls that this node hears.
pub fn reachable(app: &App) -> bool {
    running(app) || app.peers.any()
}

pub fn calls_in_progress(app: &App) -> usize {
    ongoing(app).len()
}

/// The calls on `lines`, as `pid`'s turret shows them.
pub fn calls_for(app: &App, lines: &[LineId], pid: ProfileId) -> Vec<Value> {
    ongoing(app)
        .iter()
        .filter(|c| lines.contains(&c.line))
        .map(|c| call_json(app, c, pid))
        .collect()
}

/// A line was created, changed or deleted: the MLC serving it (re)starts
/// it, and any other MLC that served it stops it.
pub fn line_changed(app: &App, id: LineId) {
    app.mlc.line_changed(id);
    for l in app.telephony.remotes.lock().unwrap().iter() {
        l.line_changed(id);
    }
}

/// Lines changed in bulk, or moved between MLCs: every MLC resyncs.
pub fn resync_all(app: &App) {
    app.mlc.lines_changed();
    for l in app.telephony.remotes.lock().unwrap().iter() {
        l.resync();
    }
}

/// A `turret mlc` joined: its lines move to it.
pub fn joined(app: &App, link: Arc<Link>) {
    app.telephony.remotes.lock().unwrap().push(link);
    app.leases.wake();
    resync_all(app);
}

/// A `turret mlc` left: its lines move to the others, and the turrets and
/// the CTI stream are told its calls are gone (`controller_lost`; no
/// records: should the MLC come back with the call still up, it reports it
/// again, and its records are written when it ends).
pub async fn left(app: &App, link: &Arc<Link>) {
    app.telephony
        .remotes
        .lock()
        .unwrap()
        .retain(|l| !Arc::ptr_eq(l, link));
    resync_all(app);
    // The turrets are told at once that the calls are gone. The records
    // wait: the MLC may only have lost the link, keep its calls, and
    // report them (and the ends it saw meanwhile) when it is back.
    let lost_at = Timestamp::now();
    let mut ids = Vec::new();
    for mut c in link.calls() {
        c.state = call::CallState::Ended;
        c.end_reason = "controller_lost".into();
        c.ended_at = Some(lost_at);
        ids.push(c.id);
        app.telephony
            .orphans
            .lock()
            .unwrap()
            .insert(c.id, c.clone());
        crate::peers::tell_call(app, &c, false);
        send_job(app, Job::Changed(c)).await;
    }
    if ids.is_empty() {
        return;
    }
    let grace = Duration::from_secs(app.config.components.lost_call_grace_secs);
    let weak = Arc::downgrade(&app.0);
    tokio::spawn(async move {
        tokio::time::sleep(grace).await;
        if let Some(app) = weak.upgrade().map(App) {
            record_orphans(&app, Some(&ids)).await;
        }
    });
}

/// Records, as ended when their link was lost, the calls of a vanished MLC
/// that it did not report again: those of `ids`, or all of them.
async fn record_orphans(app: &App, ids: Option<&[u64]>) {
    let calls: Vec<CallView> = {
        let mut o = app.telephony.orphans.lock().unwrap();
        match ids {
            Some(ids) => ids.iter().filter_map(|id| o.remove(id)).collect(),
            None => o.drain().map(|(_, c)| c).collect(),
        }
    };
    if !calls.is_empty() {
        tracing::warn!(
            calls = calls.len(),
            "recording calls whose Multi-Line Controller vanished"
        );
    }
    for c in calls {
        send_job(app, Job::Ended(c)).await;
    }
}

/// The server is stopping: the local MLC ends its calls and unbinds its
/// lines, then every record is written.
pub async fn shutdown(app: &App) {
    app.mlc.shutdown().await;
    // Calls of a vanished MLC still in their grace: recorded now, or never.
    record_orphans(app, None).await;
    flush(app).await;
}

/// Returns once every report queued so far is told and recorded, and the
/// line-state audit entries are written.
pub async fn flush(app: &App) {
    if let Some(tx) = app.telephony.reports.get() {
        let (done, rx) = tokio::sync::oneshot::channel();
        if tx.send(Job::Flush(done)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(10), rx).await;
        }
    }
    if let Some(tx) = app.telephony.audits.get() {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while (tx.capacity() < tx.max_capacity()
            || app.telephony.audit_writing.load(Ordering::SeqCst))
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn send_job(app: &App, job: Job) {
    if let Some(tx) = app.telephony.reports.get() {
        let _ = tx.send(job).await;
    }
}

/// What any MLC's report of a line state does: the CTI event, the pushes
/// to the clients showing the line and, when the kind of state changes, an
/// audit entry.
pub async fn on_line_state(app: &App, id: LineId, previous: &LineState, state: &LineState) {
    {
        let mut since = app.telephony.since.lock().unwrap();
        let kind = state.name();
        if since.get(&id).is_none_or(|(k, _)| *k != kind) {
            since.insert(id, (kind, openturret_domain::Timestamp::now()));
        }
    }
    app.cti.publish(
        "line",
        Some(id),
        json!({"line_id": id.0, "state": state.name(), "reason": state.reason()}),
    );
    crate::peers::tell_line(app, id, state);
    push_line_state(app, id, state).await;
    if previous.name() != state.name() && *state != LineState::Registering {
        let event = match state {
            LineState::Registered => "line.registered",
            LineState::Failing(_) => "line.registration_failed",
            _ => "line.unregistered",
        };
        if let Some(tx) = app.telephony.audits.get() {
            let _ = tx
                .send(app.system_record(event, "line", Some(id.0.to_string())))
                .await;
        }
    }
}

/// Tells the clients here showing line `id` its state.
pub async fn push_line_state(app: &App, id: LineId, state: &LineState) {
    // Only clients hear it: with none connected, no need to ask the store.
    if app.sessions.is_empty() {
        return;
    }
    let push = Arc::<str>::from(
        json!({"push": "line_state", "line_id": id.0, "state": state.name(), "reason": state.reason()})
            .to_string(),
    );
    if let Ok(pids) = app.store.profiles_with_line(id).await {
        for pid in pids {
            app.hub.send(Some(pid), PushKind::Raw(push.clone()));
        }
    }
}

/// Tells the clients here of a call another node carries (nothing is
/// recorded here: [`crate::peers`]).
pub async fn push_call(app: &App, view: CallView) {
    send_job(app, Job::Relayed(view)).await;
}

/// What any MLC's report of a call does.
pub async fn on_call(app: &App, view: CallView, ended: bool) {
    // Reported again by its MLC, back in time: its record is the MLC's.
    app.telephony.orphans.lock().unwrap().remove(&view.id);
    crate::peers::tell_call(app, &view, ended);
    send_job(
        app,
        if ended {
            Job::Ended(view)
        } else {
            Job::Changed(view)
        },
    )
    .await;
}

pub async fn on_rejected_here(app: &App, view: CallView, pid: ProfileId) {
    crate::peers::tell_rejected(app, &view, pid);
    push_rejected_here(app, &view, pid).await;
}

/// Tells `pid`'s clients here that they rejected the call.
pub async fn push_rejected_here(app: &App, view: &CallView, pid: ProfileId) {
    let mut j = call_json(app, view, pid);
    j["state"] = json!("rejected_here");
    send_job(app, Job::ToProfile(pid, json!({"push": "call", "call": j}))).await;
}

pub fn on_transferred(app: &App, call: u64, line: LineId) {
    app.cti.publish(
        "call",
        Some(line),
        json!({"call_id": call, "line_id": line.0, "state": "transferred"}),
    );
}

/// The in-process MLC's host: the application itself.
struct LocalHost(Weak<AppInner>);

impl LocalHost {
    fn app(&self) -> anyhow::Result<App> {
        self.0
            .upgrade()
            .map(App)
            .ok_or_else(|| anyhow::anyhow!("the server is stopping"))
    }
}

#[async_trait]
impl Host for LocalHost {
    async fn lines(&self) -> anyhow::Result<Vec<(Line, Option<Secret>)>> {
        lines_of(&self.app()?, LOCAL_NAME).await
    }

    async fn line(&self, id: LineId) -> anyhow::Result<Option<(Line, Option<Secret>)>> {
        line_of(&self.app()?, LOCAL_NAME, id).await
    }

    async fn line_state(&self, id: LineId, previous: LineState, state: LineState) {
        if let Ok(app) = self.app() {
            on_line_state(&app, id, &previous, &state).await;
        }
    }

    async fn call(&self, view: CallView, ended: bool) {
        if let Ok(app) = self.app() {
            on_call(&app, view, ended).await;
        }
    }

    async fn rejected_here(&self, view: CallView, profile: ProfileId) {
        if let Ok(app) = self.app() {
            on_rejected_here(&app, view, profile).await;
        }
    }

    async fn transferred(&self, call: u64, line: LineId) {
        if let Ok(app) = self.app() {
            on_transferred(&app, call, line);
        }
    }

    async fn flush(&self) {
        if let Ok(app) = self.app() {
            flush(&app).await;
        }
    }

    async fn recording(&self, call: &CallView) -> anyhow::Result<Option<crate::mlc::Recording>> {
        crate::recording::recording_of(&self.app()?, call).await
    }

    async fn events(&self, events: Vec<openturret_domain::model::Folded>) {
        if let Ok(app) = self.app() {
            // The in-process MLC, as the error log names it.
            let me = format!("mlc:{LOCAL_NAME}@{}", app.host);
            app.events.add_from(&me, events);
        }
    }

    async fn recorder_state(
        &self,
        call: u64,
        line: LineId,
        owner: Option<ProfileId>,
        recorder: i64,
        failure: Option<String>,
    ) {
        if let Ok(app) = self.app() {
            crate::recording::on_recorder_state(&app, call, line, owner, recorder, failure).await;
        }
    }
}

/// Appends the MLCs' audit entries in batches: a burst of line state
/// changes (ten thousand lines registering) costs a few transactions, not
/// one disk sync each.
fn start_audit_writer(
    app: &App,
    writing: Arc<AtomicBool>,
) -> mpsc::Sender<openturret_store::AuditRecord> {
    let (tx, mut rx) = mpsc::channel::<openturret_store::AuditRecord>(65_536);
    let store = app.store.clone();
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            writing.store(true, Ordering::SeqCst);
            let mut batch = vec![first];
            while batch.len() < 1000 {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            let n = batch.len();
            if let Err(e) = store.append_audits(batch).await {
                tracing::error!(error = %e, entries = n, "MLC audit entries not written");
            }
            writing.store(false, Ordering::SeqCst);
        }
    });
    tx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_weights_are_fixed_by_their_definition() {
        // SHA-256("local" 0x00 00000000_00000007), first 8 bytes, as
        // Python's hashlib computes it: the same on every build, so no
        // upgrade moves a line.
        assert_eq!(weight("local", LineId(7)), 0xa600_69c1_c120_18fa);
        assert_ne!(weight("local", LineId(7)), weight("local", LineId(8)));
        assert_ne!(weight("mlc-a", LineId(7)), weight("local", LineId(7)));
    }
}
