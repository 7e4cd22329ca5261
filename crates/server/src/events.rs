//! The error log (issue 20; SPEC §2, audit/error log): what the
//! components report — the System Manager (backups, retention, CDR output,
//! the certificate, the database, disk space, connections), each MLC (PBXs
//! unreachable and back, lines that keep failing to register, its link,
//! media) and the client and CTI interfaces (refusals, queues
//! overflowing) — at a level, for administrators to read in the portal
//! (`/events`), the API (`GET /api/v1/events`), the CLI (`turret events`)
//! and, for applications that ask, as the CTI event kind `error_log`.
//!
//! **Never in the way.** [`EventLog::raise`] takes a lock for a moment and
//! returns: no I/O, no await. Identical events fold into one pending item
//! with a count ([`Pending`], bounded; beyond it events are counted as
//! dropped and said so). A task writes what is pending every
//! [`WRITE_EVERY`], folding into the entry the same event last made when
//! that was within [`FOLD_WINDOW`] and nothing else happened to the same
//! object since, so ten thousand identical failures are one entry with a
//! count and their first and last time.
//!
//! **Apart from the audit chain** (ARCHITECTURE.md says why): entries are
//! updated in place as storms go on, which a chain of immutable entries
//! cannot hold, and a storm must never queue behind, or slow, the audit
//! log's serialised appends. Entries go with the log retention.

use std::sync::Mutex;
use std::time::Duration;

use openturret_domain::Timestamp;
use openturret_domain::model::{Event, EventEntry, Folded, OpenEntries, Pending};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::App;

/// How often pending events are written.
pub const WRITE_EVERY: Duration = Duration::from_millis(250);
/// An event folds into the last entry of its kind seen this recently.
pub const FOLD_WINDOW: Duration = Duration::from_secs(3600);
/// Distinct pending items at most (between two writes).
const CAPACITY: usize = 4096;
/// Open folds remembered at most.
const OPEN: usize = 10_000;

pub struct EventLog {
    /// `sm:<host>`: this System Manager, as events name it.
    component: String,
    pending: Mutex<Pending>,
    wake: Notify,
    /// Which entry each (component, object) folds into; the writer's.
    open: Mutex<OpenEntries>,
    /// Serialises writes (the writer task and `flush`).
    writing: tokio::sync::Mutex<()>,
}

impl EventLog {
    pub fn new(host: &str) -> EventLog {
        EventLog {
            component: if host.is_empty() {
                "sm:system-manager".to_string()
            } else {
                format!("sm:{host}")
            },
            pending: Mutex::new(Pending::new(CAPACITY)),
            wake: Notify::new(),
            open: Mutex::new(OpenEntries::new(FOLD_WINDOW.as_millis() as i64, OPEN)),
            writing: tokio::sync::Mutex::new(()),
        }
    }

    /// This System Manager's component name.
    pub fn component(&self) -> &str {
        &self.component
    }

    /// Raises an event of this System Manager (unless it names another
    /// component). Never blocks.
    pub fn raise(&self, e: Event) {
        let e = if e.component.is_empty() {
            e.from_component(&self.component)
        } else {
            e
        };
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .raise(e, Timestamp::now());
        self.wake.notify_one();
    }

    /// Takes events another component folded (an MLC's), naming them as
    /// `component`, whatever they said.
    pub fn add_from(&self, component: &str, items: Vec<Folded>) {
        let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        for mut f in items {
            f.event = f.event.from_component(component);
            p.add(f);
        }
        drop(p);
        self.wake.notify_one();
    }

    /// Writes what is pending now (the writer does it every
    /// [`WRITE_EVERY`]; the server's stop calls it last).
    pub async fn flush(&self, app: &App) {
        let _writing = self.writing.lock().await;
        let items = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take_all(&self.component, Timestamp::now());
        if items.is_empty() {
            return;
        }
        // Pending already folded what came in a row; a second item about
        // the same component and object in one batch is another event
        // after a different one, so it starts a new entry.
        let writes: Vec<(Option<i64>, Folded)> = {
            let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
            let mut seen = std::collections::HashSet::new();
            items
                .iter()
                .map(|f| {
                    let first = seen.insert(f.event.subject_key());
                    (first.then(|| open.fold_target(f)).flatten(), f.clone())
                })
                .collect()
        };
        match app.store.write_events(writes).await {
            Ok(written) => {
                let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
                for (f, e) in items.iter().zip(&written) {
                    open.written(e.id, f, e.last_at);
                }
                drop(open);
                for e in &written {
                    app.cti.publish("error_log", None, entry_json(e));
                }
            }
            Err(err) => {
                // Kept for the next write (bounded), and said where an
                // operator looks when the database fails.
                tracing::error!(error = %err, events = items.len(), "the error log could not be written");
                let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                for f in items {
                    p.add(f);
                }
            }
        }
    }
}

/// An entry as the API, the CLI and CTI show it.
pub fn entry_json(e: &EventEntry) -> Value {
    json!({
        "id": e.id,
        "seq": e.seq,
        "level": e.event.level.as_str(),
        "component": e.event.component,
        "type": e.event.event_type,
        "object": e.event.object,
        "message": e.event.message,
        "properties": e.event.properties,
        "count": e.count,
        "first_at": e.first_at.rfc3339(),
        "last_at": e.last_at.rfc3339(),
    })
}

/// Starts the writer.
pub fn start(app: &App) {
    let app = app.clone();
    tokio::spawn(async move {
        loop {
            app.events.wake.notified().await;
            tokio::time::sleep(WRITE_EVERY).await;
            app.events.flush(&app).await;
        }
    });
}
