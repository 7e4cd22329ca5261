//! Retention (SPEC §4): call-memory entries and call data records older
//! than the administrator's limits (settings) are deleted by a background
//! job, at start and then every hour; each purge is audited with how many
//! records went. Closed rolling CDR files and the record of forwarding to
//! voice recorders older than the CDR limit go too, and entries of the
//! error log older than the audit limit (the log retention). Defaults: call memory 90 days, CDRs 365 days, audit
//! entries 2,557 days (seven years).

use std::time::Duration;

use openturret_domain::Timestamp;

use crate::App;

const EVERY: Duration = Duration::from_secs(3600);
const DAY_MS: i64 = 86_400_000;

/// How many records one run deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Purged {
    pub call_memory: u64,
    pub cdrs: u64,
    pub audit_entries: u64,
    /// Closed rolling CDR files.
    pub cdr_files: u64,
    /// Lines of the record of forwarding to voice recorders (kept as long
    /// as CDRs).
    pub recording_log: u64,
    /// Entries of the error log (kept as long as the audit log).
    pub event_log: u64,
}

fn record(app: &App, event: &str, object: &str) -> openturret_store::AuditRecord {
    app.system_record(event, object, None)
}

/// Applies the retention limits once, as of `now`.
pub async fn run_once(app: &App, now: Timestamp) -> anyhow::Result<Purged> {
    let s = app.store.get_settings().await?;
    let mut p = Purged::default();
    let before = |days: Option<u32>| days.map(|d| Timestamp(now.0 - d as i64 * DAY_MS));
    if let Some(cutoff) = before(s.retention_call_memory_days) {
        p.call_memory = app
            .store
            .purge_call_memory_before(cutoff, record(app, "retention.purged", "call_memory"))
            .await?;
    }
    if let Some(cutoff) = before(s.retention_cdr_days) {
        p.cdrs = app
            .store
            .purge_cdrs_before(cutoff, record(app, "retention.purged", "cdr"))
            .await?;
        p.recording_log = app
            .store
            .purge_recording_log_before(cutoff, record(app, "retention.purged", "recording_log"))
            .await?;
        let before = std::time::UNIX_EPOCH + Duration::from_millis(cutoff.0.max(0) as u64);
        p.cdr_files = app.cdr.purge_before(before).await? as u64;
        if p.cdr_files > 0 {
            let mut r = record(app, "retention.purged", "cdr_files");
            r.changes = vec![format!("deleted:{}", p.cdr_files)];
            app.store.append_audit(r).await?;
        }
    }
    if let Some(cutoff) = before(s.retention_audit_days) {
        p.event_log = app
            .store
            .purge_events_before(cutoff, record(app, "retention.purged", "event_log"))
            .await?;
        // The purge re-anchors the hash chain; its own entry names the
        // new start (see `AuditStore::purge_audit_before`).
        p.audit_entries = app
            .store
            .purge_audit_before(cutoff, record(app, "retention.purged", "audit_log"))
            .await?;
    }
    Ok(p)
}

/// Starts the hourly job.
pub fn start(app: &App) {
    let app = app.clone();
    tokio::spawn(async move {
        loop {
            // Once per period for the deployment, whichever node asks
            // first (a minute's slack for the nodes' timers).
            let mine = app
                .store
                .claim_job(
                    "retention",
                    EVERY.as_millis() as i64 - 60_000,
                    Timestamp::now(),
                    app.events.component(),
                )
                .await;
            let result = match mine {
                Ok(true) => run_once(&app, Timestamp::now()).await,
                Ok(false) => Ok(Purged::default()),
                Err(e) => Err(e.into()),
            };
            match result {
                Ok(p) if p != Purged::default() => tracing::info!(
                    call_memory = p.call_memory,
                    cdrs = p.cdrs,
                    audit_entries = p.audit_entries,
                    cdr_files = p.cdr_files,
                    recording_log = p.recording_log,
                    event_log = p.event_log,
                    "retention purge"
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), "retention purge failed");
                    app.events.raise(openturret_domain::model::Event::error(
                        "retention.failed",
                        "retention",
                        format!(
                            "the retention purge failed (it is tried again within the hour): {e:#}"
                        ),
                    ));
                }
            }
            tokio::time::sleep(EVERY).await;
        }
    });
}
