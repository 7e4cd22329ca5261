//! What the System Manager does with what its MLCs tell about calls, in the
//! order things happened: pushes to the turrets showing a call's line
//! (caller identified per profile), the call-event stream for the CTI
//! interface, and, when a call ends, its call-memory entries (SPEC rule 6)
//! and call data record (SPEC §2).
//!
//! One task does all of it from a queue, so no MLC ever waits on the
//! database and a call's reports can never overtake each other.

use openturret_domain::model::{Cdr, Direction, Locality};
use openturret_domain::{ProfileId, Timestamp};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::callmem::CallEvent;
use crate::hub::PushKind;
use crate::{App, AppInner};
use openturret_mlc::CallView;
use openturret_mlc::call::CallState;

/// Reports waiting beyond this make the dispatcher wait (back-pressure
/// rather than unbounded memory).
pub const QUEUE: usize = 65_536;

pub enum Job {
    /// The call changed: tell the turrets and the event stream.
    Changed(CallView),
    /// The call ended: tell, then write call memory and the CDR.
    Ended(CallView),
    /// A call another node carries changed: tell the turrets here only.
    Relayed(CallView),
    /// A push for one profile only.
    ToProfile(ProfileId, Value),
    /// Answered once everything queued before it is told and recorded.
    Flush(tokio::sync::oneshot::Sender<()>),
}

enum Record {
    Ended(CallView),
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The push for one profile about a call, with the caller identified from
/// that profile's contacts and the line's shared state as it sees it.
pub fn call_json(app: &App, c: &CallView, pid: ProfileId) -> Value {
    let name = app
        .caller_id
        .lookup(pid, &c.remote_number)
        .unwrap_or_else(|| c.remote_display.clone());
    let here = c.owner == Some(pid);
    let state = match c.state {
        CallState::Connected | CallState::Held if c.owner.is_some() && !here => {
            "answered_elsewhere"
        }
        s => s.name(),
    };
    let activity = match c.state {
        CallState::Ringing => "ringing",
        CallState::Ended => "idle",
        CallState::Held => "held",
        _ if here => "busy_here",
        _ => "busy_elsewhere",
    };
    json!({
        "id": c.id, "line_id": c.line.0, "direction": c.direction.as_str(),
        "state": state, "remote_number": c.remote_number, "remote_name": name,
        "here": here, "line_activity": activity, "speech_unit": if here { Some(&c.speech_unit) } else { None },
        "reason": if c.state == CallState::Ended { Some(&c.end_reason) } else { None },
        "answered": c.connected_at.is_some(),
        "early_media": here && c.early_media,
        "recording": c.recording,
    })
}

/// Starts the report tasks of `app` (they end with it).
pub fn start(app: &App) -> mpsc::Sender<Job> {
    let (tx, rx) = mpsc::channel(QUEUE);
    let (rec_tx, rec_rx) = mpsc::channel::<Record>(QUEUE);
    tokio::spawn(run(std::sync::Arc::downgrade(&app.0), rx, rec_tx));
    tokio::spawn(write_records(std::sync::Arc::downgrade(&app.0), rec_rx));
    tx
}

type WeakApp = std::sync::Weak<AppInner>;

/// Tells, in order. Records go to their own task, so a push never waits
/// behind a disk write.
async fn run(app: WeakApp, mut rx: mpsc::Receiver<Job>, records: mpsc::Sender<Record>) {
    while let Some(job) = rx.recv().await {
        let Some(app) = app.upgrade().map(App) else {
            return;
        };
        match job {
            Job::Changed(v) => tell(&app, &v).await,
            Job::Relayed(v) => push(&app, &v).await,
            Job::Ended(v) => {
                tell(&app, &v).await;
                let _ = records.send(Record::Ended(v)).await;
            }
            Job::ToProfile(pid, v) => app.hub.send(Some(pid), PushKind::Raw(v.to_string().into())),
            Job::Flush(done) => {
                let _ = records.send(Record::Flush(done)).await;
            }
        }
    }
}

/// Writes the records of ended calls: whatever ended meanwhile goes into
/// one transaction.
async fn write_records(app: WeakApp, mut rx: mpsc::Receiver<Record>) {
    while let Some(first) = rx.recv().await {
        let Some(app) = app.upgrade().map(App) else {
            return;
        };
        let mut ended = Vec::new();
        let mut flushes = Vec::new();
        let mut next = Some(first);
        while let Some(r) = next.take() {
            match r {
                Record::Ended(v) => ended.push(v),
                Record::Flush(done) => flushes.push(done),
            }
            if ended.len() < 512 {
                next = rx.try_recv().ok();
            }
        }
        if !ended.is_empty() {
            record(&app, ended).await;
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

async fn tell(app: &App, v: &CallView) {
    push(app, v).await;
    app.cti.publish("call", Some(v.line), cti_call_json(app, v));
}

/// Pushes the call to every profile showing its line.
async fn push(app: &App, v: &CallView) {
    let pids = app
        .store
        .profiles_with_line(v.line)
        .await
        .unwrap_or_default();
    for pid in pids {
        let j = call_json(app, v, pid);
        app.hub.send(
            Some(pid),
            PushKind::Raw(json!({"push": "call", "call": j}).to_string().into()),
        );
    }
}

/// A call as the CTI interface and the query API show it: the caller
/// identified from global contacts only (a profile's own contacts are that
/// profile's).
pub fn cti_call_json(app: &App, v: &CallView) -> Value {
    let state = match v.state {
        CallState::Dialing => "offered",
        CallState::Ringing | CallState::Alerting => "ringing",
        CallState::Connected => "answered",
        CallState::Held => "held",
        CallState::Ended => "ended",
    };
    json!({
        "call_id": v.id, "line_id": v.line.0, "state": state, "direction": v.direction.as_str(),
        "remote_number": app.pseudo.apply(&v.remote_number),
        // With numbers pseudonymised, no name either: it would identify.
        "remote_name": if app.pseudo.is_on() { None } else { app.caller_id.lookup_global(&v.remote_number) },
        "answered_at_profile": v.owner.filter(|_| v.connected_at.is_some()).map(|p| p.0),
        "reason": (v.state == CallState::Ended).then_some(&v.end_reason),
    })
}

async fn record(app: &App, calls: Vec<CallView>) {
    let mut cdrs = Vec::with_capacity(calls.len());
    // Read once for the batch: whether CDRs are made, and which fields.
    let settings = app.store.get_settings().await.ok();
    let on = settings.as_ref().is_some_and(|s| s.cdr_enabled);
    for v in &calls {
        record_memory(app, v).await;
        if on {
            cdrs.push(cdr(app, v).await);
        }
    }
    if let Some(s) = settings {
        crate::cdr::produce_with(app, &s, cdrs).await;
    }
}

async fn record_memory(app: &App, v: &CallView) {
    let answered = v.connected_at.is_some();
    let event = CallEvent {
        line: v.line,
        direction: v.direction,
        remote_number: v.remote_number.clone(),
        at: v.started,
        answered_by: match v.direction {
            Direction::Incoming => v.owner.filter(|_| answered),
            Direction::Outgoing => None,
        },
        answered,
        placed_by: match v.direction {
            Direction::Outgoing => v.owner,
            Direction::Incoming => None,
        },
        duration_ms: v
            .connected_at
            .zip(v.ended_at)
            .map(|(from, to)| (to.0 - from.0).max(0)),
        reason: if answered {
            String::new()
        } else {
            v.end_reason.clone()
        },
    };
    if let Err(e) = crate::callmem::record_call(app, &event).await {
        tracing::error!(error = %e, call = v.id, "call memory not written");
        app.events.raise(openturret_domain::model::Event::error(
            "call_memory.write_failed",
            "call_memory",
            "a call's call-memory entries could not be written (the server's log has the cause)",
        ));
    }
}

async fn cdr(app: &App, v: &CallView) -> Cdr {
    let answered = v.connected_at.is_some();
    let ended = v.ended_at.unwrap_or_else(Timestamp::now);
    let profile_name = match v.owner {
        Some(p) => app.store.get_profile(p).await.ok().map(|p| p.name),
        None => None,
    };
    let (calling, called) = match v.direction {
        Direction::Incoming => (v.remote_number.clone(), v.line_number.clone()),
        Direction::Outgoing => (v.line_number.clone(), v.remote_number.clone()),
    };
    Cdr {
        id: None,
        line_id: Some(v.line),
        profile_id: v.owner,
        recorded_at: Some(ended),
        profile_name,
        attendant_group: None,
        called_number: Some(called),
        calling_number: Some(calling),
        duration_ms: v.connected_at.map(|c| ended.0 - c.0),
        call_type: answered.then_some(Locality::Local),
        direction: Some(v.direction),
        started_at: Some(v.started),
        ended_at: Some(ended),
    }
}
