//! Line leases: with several System Manager nodes on one database, each
//! line is served by one node's MLCs at a time (issue 19).
//!
//! Every [`RENEW_EVERY`] the node renews the leases it holds and, unless
//! another node holds live leases (it is the active node; this one stands
//! by), takes the lines no node holds or whose holder let its lease lapse
//! (`MaintenanceStore::lease_lines`, on the database's clock, for
//! [`TTL`]; a takeover grows the line's epoch). It **fences itself on its
//! own clock**: a lease counts as held only until [`FENCE_AFTER`] from
//! when the renewal that granted it was *sent*, which is before the
//! database started the lease's time, and `FENCE_AFTER` is shorter than
//! `TTL` by [`MARGIN`]. So when renewals stop (the database is
//! unreachable, the node hangs), its MLCs stop and unbind the lines before
//! another node can take them; when a node dies, the survivors take its
//! lines within `TTL + RENEW_EVERY`.
//!
//! Inside a node, the lines it holds are shared among its MLCs (the
//! in-process one and its `turret mlc`s) by rendezvous hashing
//! (`telephony::owner`). A node's name is stable across restarts, so a
//! restart takes its lines back at once. With one node on its own
//! database (SQLite) nothing of this runs: it holds every line.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use openturret_domain::LineId;
use openturret_domain::model::Event;
use tokio::time::Instant;

use crate::App;

/// How long a lease lasts from its last renewal (database clock).
pub const TTL: Duration = Duration::from_secs(15);
/// How often leases are renewed and free lines taken.
pub const RENEW_EVERY: Duration = Duration::from_secs(3);
/// What the node leaves between stopping its lines and its lease's end:
/// time to unbind them, and for clocks that run at slightly different
/// rates.
pub const MARGIN: Duration = Duration::from_secs(4);
/// How long after sending a renewal the node still serves what it got.
pub const FENCE_AFTER: Duration = Duration::from_secs(TTL.as_secs() - MARGIN.as_secs());
/// The longest a renewal may take before it counts as failed.
const RENEW_TIMEOUT: Duration = Duration::from_secs(5);

/// The leases this node holds (in [`App`]).
#[derive(Default)]
pub struct Leases {
    /// One node on its own database (SQLite): every line, always.
    everything: std::sync::atomic::AtomicBool,
    held: Mutex<Held>,
    /// Asks the task to renew at once (an MLC started or joined).
    wake: tokio::sync::Notify,
}

#[derive(Default)]
struct Held {
    /// Line → epoch.
    lines: HashMap<LineId, i64>,
    /// Until when (this node's clock) they may be served.
    valid_until: Option<Instant>,
}

impl Leases {
    /// Whether this node may serve `line` now.
    pub fn holds(&self, line: LineId) -> bool {
        if self.everything.load(std::sync::atomic::Ordering::Relaxed) {
            return true;
        }
        let h = self.held.lock().unwrap_or_else(|p| p.into_inner());
        h.valid_until.is_some_and(|t| Instant::now() < t) && h.lines.contains_key(&line)
    }

    /// The epoch of the lease this node holds on `line`.
    pub fn epoch(&self, line: LineId) -> Option<i64> {
        let h = self.held.lock().unwrap_or_else(|p| p.into_inner());
        h.lines.get(&line).copied()
    }

    /// How many lines this node holds.
    pub fn len(&self) -> usize {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .lines
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Renew now rather than at the next period.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Replaces what is held; returns whether the set of lines changed.
    fn set(&self, lines: HashMap<LineId, i64>, valid_until: Option<Instant>) -> bool {
        let mut h = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let changed = h.lines != lines;
        h.lines = lines;
        h.valid_until = valid_until;
        changed
    }

    /// Drops every lease whose time on this node's clock is over; returns
    /// how many lines that stops.
    fn fence(&self) -> usize {
        let mut h = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if h.valid_until.is_some_and(|t| Instant::now() >= t) && !h.lines.is_empty() {
            let n = h.lines.len();
            h.lines.clear();
            h.valid_until = None;
            n
        } else {
            0
        }
    }
}

/// Starts the task that keeps this node's leases (with the application);
/// with one node on its own database (SQLite), it simply holds every
/// line, and nothing is ever fenced.
pub fn start(app: &App) {
    if !app.store.is_shared() {
        app.leases
            .everything
            .store(true, std::sync::atomic::Ordering::Relaxed);
        return;
    }
    let app = app.clone();
    tokio::spawn(async move {
        let mut last: Option<Instant> = None;
        let mut failing = false;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = app.leases.wake.notified() => { last = None; }
                _ = app.stopping.wait() => break,
            }
            if app.stopping.is_stopping() {
                break;
            }
            let fenced = app.leases.fence();
            if fenced > 0 {
                tracing::warn!(
                    lines = fenced,
                    "line leases not renewed in time: this node stops serving its lines"
                );
                app.events.raise(
                    Event::warning(
                        "lines.lease_lost",
                        "lines",
                        "the line leases could not be renewed in time: this node's MLCs stopped serving their lines, which another node takes",
                    )
                    .with("lines", fenced),
                );
                crate::telephony::resync_all(&app);
            }
            if last.is_some_and(|t| t.elapsed() < RENEW_EVERY) {
                continue;
            }
            if !crate::telephony::running(&app) {
                // No MLC here: no line either, and none kept from others.
                if !app.leases.is_empty() || last.is_none() {
                    app.leases.set(HashMap::new(), None);
                    let _ = app.store.release_lines(&app.node).await;
                }
                last = Some(Instant::now());
                continue;
            }
            let sent = Instant::now();
            last = Some(sent);
            match tokio::time::timeout(
                RENEW_TIMEOUT,
                app.store.lease_lines(&app.node, TTL.as_millis() as i64),
            )
            .await
            {
                Ok(Ok(leases)) => {
                    if failing {
                        failing = false;
                        tracing::info!("line leases renewed again");
                    }
                    let lines = leases.into_iter().map(|l| (l.line, l.epoch)).collect();
                    if app.leases.set(lines, Some(sent + FENCE_AFTER)) {
                        crate::telephony::resync_all(&app);
                    }
                }
                Ok(Err(e)) => {
                    if !failing {
                        tracing::warn!(error = %e, "line leases not renewed");
                    }
                    failing = true;
                }
                Err(_) => {
                    if !failing {
                        tracing::warn!(
                            "line leases not renewed: the database did not answer in time"
                        );
                    }
                    failing = true;
                }
            }
        }
    });
}

/// The node stops: its MLCs have unbound its lines; another node takes
/// them at once instead of waiting for the leases to lapse.
pub async fn release(app: &App) {
    app.leases.set(HashMap::new(), None);
    if let Err(e) = app.store.release_lines(&app.node).await {
        tracing::warn!(error = %e, "line leases not given up (they lapse by themselves)");
    }
}
