//! Changes heard across nodes: every transaction that commits audited
//! changes also sends, with `pg_notify` inside it (so only on commit),
//! what identifies them — event type, object, the names of the changed
//! fields, never a value — on [`CHANNEL`]. Each node's listener hands the
//! changes of the other nodes to the store's observer as
//! [`Change::Committed`].
//!
//! PostgreSQL drops notifications sent while a listener is away, so after
//! every reconnection the observer is told [`Change::Missed`] (re-read
//! everything), and a heartbeat (the node's own notification, every
//! [`BEAT`]) must come back within [`DEAF_AFTER`], or the listener's
//! connection counts as half-open: it is dropped and made again.
//!
//! Nodes also send each other notes ([`signal`]: login failures for the
//! shared throttle), sealed under a key derived from the master key that
//! every node holds, so PostgreSQL (and its notification queue, which
//! spills to disk under load) sees only ciphertext.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine as _;
use openturret_domain::Timestamp;
use openturret_domain::audit::{AuditLevel, AuditPii, AuditRecord};
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgListener, PgPool};
use sqlx::{Postgres, Transaction};
use tokio::sync::mpsc;

use crate::keys::Keys;
use crate::{Change, ChangeObserver, Result};

/// The channel of the deployment's notifications.
pub const CHANNEL: &str = "openturret_changes";
/// How often a node checks that its listener still hears.
pub const BEAT: Duration = Duration::from_secs(5);
/// A listener that has not heard its node's heartbeat for this long is
/// made again: checked at every beat, so a half-open connection is
/// noticed within `DEAF_AFTER + BEAT` (20 s). (PostgreSQL caps a payload
/// at 8,000 bytes; ours stay under [`MAX_PAYLOAD`].)
pub const DEAF_AFTER: Duration = Duration::from_secs(15);
const MAX_PAYLOAD: usize = 7_000;
/// What the listener's connection calls itself (`pg_stat_activity`).
pub const LISTENER_NAME: &str = "openturret-listener";

/// One notification: the sending node and its changes, or its heartbeat.
#[derive(Serialize, Deserialize, Default)]
struct Note {
    /// The sending store (random per process).
    o: String,
    /// Changes: event type, object type, object id, changed fields.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    c: Vec<(String, String, Option<String>, Vec<String>)>,
    /// A heartbeat's number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    b: Option<u64>,
    /// A note: its topic and the sealed note (base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    s: Option<(String, String)>,
}

/// Sends sealed notes of `topic` to the other nodes (not in a
/// transaction: at once), in order, in one statement.
pub(super) async fn signal(
    pool: &PgPool,
    origin: &str,
    keys: &Keys,
    topic: &str,
    notes: &[&[u8]],
) -> Result<()> {
    let mut payloads = Vec::with_capacity(notes.len());
    for n in notes {
        let sealed = base64::engine::general_purpose::STANDARD.encode(keys.seal_note(topic, n));
        let note = Note {
            o: origin.to_string(),
            s: Some((topic.to_string(), sealed)),
            ..Default::default()
        };
        let payload = serde_json::to_string(&note).expect("a note serialises");
        if payload.len() > MAX_PAYLOAD {
            return Err(crate::StoreError::Integrity(format!(
                "a note of {} bytes is larger than a notification may carry",
                payload.len()
            )));
        }
        payloads.push(payload);
    }
    // (unnest keeps the array's order; pg_notify queues in call order.)
    sqlx::query(
        "SELECT pg_notify($1, p) FROM unnest($2::text[]) WITH ORDINALITY AS t(p, i) ORDER BY i",
    )
    .bind(CHANNEL)
    .bind(payloads)
    .execute(pool)
    .await
    .map_err(super::db)?;
    Ok(())
}

/// Sends the changes of `records` inside `tx`: delivered when it commits,
/// never when it rolls back. Split so no payload passes [`MAX_PAYLOAD`].
pub(super) async fn send(
    tx: &mut Transaction<'static, Postgres>,
    origin: &str,
    records: &[AuditRecord],
) -> Result<()> {
    let mut note = Note {
        o: origin.to_string(),
        ..Default::default()
    };
    let mut size = 0;
    for r in records {
        let mut changes = r.changes.clone();
        let item_size = r.event_type.len()
            + r.object_type.len()
            + r.object_id.as_ref().map_or(0, String::len)
            + changes.iter().map(|c| c.len() + 3).sum::<usize>()
            + 16;
        if item_size > MAX_PAYLOAD / 2 {
            // Only a password change matters to the listeners' views.
            changes.retain(|c| c == "password");
        }
        if size + item_size > MAX_PAYLOAD && !note.c.is_empty() {
            notify(tx, &note).await?;
            note.c.clear();
            size = 0;
        }
        size += item_size;
        note.c.push((
            r.event_type.clone(),
            r.object_type.clone(),
            r.object_id.clone(),
            changes,
        ));
    }
    if !note.c.is_empty() {
        notify(tx, &note).await?;
    }
    Ok(())
}

async fn notify(tx: &mut Transaction<'static, Postgres>, note: &Note) -> Result<()> {
    let payload = serde_json::to_string(note).expect("a note serialises");
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(payload)
        .execute(&mut **tx)
        .await
        .map_err(super::db)?;
    Ok(())
}

/// Starts the listener of the other nodes' changes; it runs until the
/// pool closes.
pub(super) fn start(
    pool: PgPool,
    origin: String,
    keys: Keys,
    observer: Arc<RwLock<Option<ChangeObserver>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut first = true;
        while !pool.is_closed() {
            if let Err(e) = hear(&pool, &origin, &keys, &observer, first).await {
                tracing::warn!(error = %e, "the listener of other nodes' changes stopped; connecting again");
            }
            first = false;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

fn tell(observer: &RwLock<Option<ChangeObserver>>, change: Change<'_>) {
    let o = observer.read().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some(o) = o {
        o(change);
    }
}

/// One listening connection, from LISTEN until it is lost or goes deaf.
async fn hear(
    pool: &PgPool,
    origin: &str,
    keys: &Keys,
    observer: &RwLock<Option<ChangeObserver>>,
    first: bool,
) -> std::result::Result<(), String> {
    let mut listener = PgListener::connect_with(pool)
        .await
        .map_err(|e| e.to_string())?;
    sqlx::query("SELECT set_config('application_name', $1, false)")
        .bind(LISTENER_NAME)
        .execute(&mut listener)
        .await
        .map_err(|e| e.to_string())?;
    listener.listen(CHANNEL).await.map_err(|e| e.to_string())?;
    // Whatever was sent before LISTEN is lost (at the start, since the
    // views were read; after a reconnection, while away), so every view
    // is read again now, after LISTEN, so nothing falls between.
    if !first {
        tracing::info!("listening to other nodes' changes again; resynchronising");
    }
    tell(observer, Change::Missed);
    // The listener reads in a task of its own, so a half-open connection
    // is simply abandoned (never a cancelled read).
    let (tx, mut rx) = mpsc::channel::<String>(1024);
    let reader = tokio::spawn(async move {
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) => {
                    if tx.send(n.payload().to_string()).await.is_err() {
                        return;
                    }
                }
                // The connection was lost (or an error): this listener ends.
                Ok(None) | Err(_) => return,
            }
        }
    });
    let _abort = AbortOnDrop(reader);
    let mut beat: u64 = 0;
    let mut heard_beat = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(BEAT);
    loop {
        tokio::select! {
            got = rx.recv() => {
                let Some(payload) = got else {
                    return Err("the listening connection was lost".into());
                };
                let Ok(note) = serde_json::from_str::<Note>(&payload) else {
                    tracing::warn!("a notification that is not ours was ignored");
                    continue;
                };
                if note.o == origin {
                    if note.b.is_some() {
                        heard_beat = tokio::time::Instant::now();
                    }
                    continue;
                }
                if let Some((topic, sealed)) = &note.s {
                    let opened = base64::engine::general_purpose::STANDARD
                        .decode(sealed)
                        .ok()
                        .and_then(|b| keys.open_note(topic, &b));
                    match opened {
                        Some(n) => tell(observer, Change::Signal { topic, note: &n }),
                        None => tracing::warn!(
                            "a note that no node of this deployment sealed was ignored (another master key?)"
                        ),
                    }
                }
                for (event_type, object_type, object_id, changes) in note.c {
                    let record = AuditRecord {
                        at: Timestamp::now(),
                        level: AuditLevel::Info,
                        event_type,
                        object_type,
                        object_id,
                        changes,
                        success: true,
                        server_host: String::new(),
                        pii: AuditPii::default(),
                    };
                    tell(observer, Change::Committed(&record));
                }
            }
            _ = tick.tick() => {
                if pool.is_closed() {
                    return Ok(());
                }
                if heard_beat.elapsed() > DEAF_AFTER {
                    return Err("no heartbeat came back: the listening connection is half-open".into());
                }
                beat += 1;
                let note = Note { o: origin.to_string(), b: Some(beat), ..Default::default() };
                let payload = serde_json::to_string(&note).expect("a note serialises");
                let sent = tokio::time::timeout(
                    Duration::from_secs(5),
                    sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(payload).execute(pool),
                )
                .await;
                if !matches!(sent, Ok(Ok(_))) {
                    tracing::warn!("the heartbeat could not be sent");
                }
            }
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
