//! The SQLite implementation of the [`crate::Store`] traits: the embedded
//! default (SPEC §1).
//!
//! Shape: a read pool of several connections and a write pool of exactly
//! one, so writers queue in-process instead of meeting `SQLITE_BUSY`; every
//! write transaction starts with `BEGIN IMMEDIATE` so another process (the
//! CLI) waits on the lock instead of failing half-way. WAL journal,
//! `synchronous=FULL` (a committed change survives power loss), foreign keys
//! on, `secure_delete` on (erased rows are overwritten, not left in free
//! pages). The database file is created with mode 0600.
//!
//! Checkpoints (copying the WAL into the database file) are off the write
//! path: the writer never checkpoints on commit; a task of the store's own
//! does it on a connection of its own, shortly after commits, at most once
//! per [`CHECKPOINT_GAP`]. A commit's durability is the WAL's fsync; the
//! checkpoint's copy and second fsync no longer delay the one who wrote.
//!
//! The audit chain's head (last sequence number and MAC) is also written to
//! a file beside the database after each commit, so removing the newest
//! audit rows is detected too.

mod admins;
mod api_keys;
mod audit;
mod calls;
mod contacts;
mod events;
mod import;
mod lines;
mod maintenance;
pub(crate) use maintenance::stream_pages;
mod profiles;
mod recorders;
mod settings;

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use openturret_domain::ProfileId;
use openturret_domain::audit::{AuditRecord, entry_mac, pii_commitment};
use openturret_domain::number::NumberPlan;
use rand_core::{OsRng, RngCore};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use crate::keys::Keys;
use crate::to32;
use crate::{Result, StoreError};

/// The newest schema version this build knows.
pub fn latest_schema_version() -> i64 {
    sqlx::migrate!("./migrations/sqlite")
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0)
}

/// The embedded store: one SQLite database file.
pub struct SqliteStore {
    reader: SqlitePool,
    writer: SqlitePool,
    keys: Keys,
    plan: NumberPlan,
    /// Where the audit chain's head is anchored outside the database.
    head: crate::head::HeadFile,
    /// Told about every committed audited change.
    observer: std::sync::RwLock<Option<crate::ChangeObserver>>,
    /// Where erasures are recorded, outside the database and its backups.
    ledger: crate::ledger::Ledger,
    /// How to open one more read-only connection (for a snapshot).
    read_opts: SqliteConnectOptions,
    /// Told after each commit; checkpoints the WAL in the background.
    checkpointer: Checkpointer,
}

/// Least time between two background checkpoints: a burst of commits is
/// checkpointed once.
const CHECKPOINT_GAP: Duration = Duration::from_millis(500);

/// The background checkpoint task and how to wake it.
struct Checkpointer {
    wake: std::sync::Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
    pool: SqlitePool,
}

impl Checkpointer {
    fn start(pool: SqlitePool) -> Checkpointer {
        let wake = std::sync::Arc::new(tokio::sync::Notify::new());
        let (w, p) = (wake.clone(), pool.clone());
        let task = tokio::spawn(async move {
            loop {
                w.notified().await;
                // PASSIVE: copies what no reader still needs, never waits
                // on the writer or readers.
                if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                    .execute(&p)
                    .await
                {
                    tracing::warn!(error = %e, "background WAL checkpoint failed");
                }
                tokio::time::sleep(CHECKPOINT_GAP).await;
            }
        });
        Checkpointer { wake, task, pool }
    }

    async fn stop(&self) {
        self.task.abort();
        self.pool.close().await;
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

/// Work a migration left to Rust (see `store_backfills`), done once, each
/// in one transaction with the removal of its mark.
async fn backfill(writer: &SqlitePool) -> Result<()> {
    let pending: Vec<String> = sqlx::query_scalar("SELECT name FROM store_backfills")
        .fetch_all(writer)
        .await
        .map_err(db)?;
    for name in pending {
        let mut tx = writer.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        match name.as_str() {
            "global_contact_words" => {
                let mut after = 0i64;
                loop {
                    let rows: Vec<(i64, String)> = sqlx::query_as(
                        "SELECT id, name_key FROM global_contacts WHERE id > ? ORDER BY id LIMIT 10000",
                    )
                    .bind(after)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db)?;
                    let Some((last, _)) = rows.last() else { break };
                    after = *last;
                    import::insert_words(rows.iter().map(|(id, k)| (*id, k.as_str())))
                        .execute(&mut *tx)
                        .await
                        .map_err(db)?;
                }
            }
            other => {
                return Err(StoreError::Integrity(format!(
                    "the database asks for work {other:?} this build does not know"
                )));
            }
        }
        sqlx::query("DELETE FROM store_backfills WHERE name = ?")
            .bind(&name)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its
    /// schema up to date.
    pub async fn open(
        path: &Path,
        keys: Keys,
        plan: NumberPlan,
        ledger: crate::ledger::Ledger,
    ) -> Result<SqliteStore> {
        if !path.exists() {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(StoreError::backend)?;
        }
        let opts = SqliteConnectOptions::from_str("sqlite:")
            .map_err(StoreError::backend)?
            .filename(path)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            .pragma("secure_delete", "ON")
            // Temporary tables and sorts (index builds) live in memory,
            // never on disk.
            .pragma("temp_store", "MEMORY");
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            // A bulk write (an import) keeps its dirty pages in memory
            // until the commit instead of spilling them to the WAL early;
            // the checkpointer, not the commit, copies the WAL back.
            .connect_with(
                opts.clone()
                    .pragma("cache_size", "-65536")
                    .pragma("wal_autocheckpoint", "0"),
            )
            .await
            .map_err(StoreError::backend)?;
        let checkpointer = Checkpointer::start(
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(0)
                .connect_lazy_with(opts.clone()),
        );
        sqlx::migrate!("./migrations/sqlite")
            .run(&writer)
            .await
            .map_err(StoreError::backend)?;
        backfill(&writer).await?;
        let read_opts = opts.read_only(true);
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(read_opts.clone())
            .await
            .map_err(StoreError::backend)?;
        let mut head_path = path.as_os_str().to_owned();
        head_path.push(".audit-head");
        Ok(SqliteStore {
            reader,
            writer,
            keys,
            plan,
            head: crate::head::HeadFile::new(head_path.into()),
            observer: std::sync::RwLock::new(None),
            ledger,
            read_opts,
            checkpointer,
        })
    }

    /// Moves the WAL's content into the database and empties it, so erased
    /// rows do not linger in old WAL frames.
    async fn checkpoint(&self) -> Result<()> {
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.writer)
            .await
            .map_err(db)?;
        Ok(())
    }

    /// Stops the checkpointer and closes both pools, checkpointing the WAL.
    pub async fn close(&self) {
        self.checkpointer.stop().await;
        let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.writer)
            .await;
        self.writer.close().await;
        self.reader.close().await;
    }

    /// Starts a write transaction (`BEGIN IMMEDIATE`).
    async fn begin(&self) -> Result<Tx> {
        let tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db)?;
        Ok(Tx {
            tx,
            head: None,
            records: Vec::new(),
        })
    }

    /// Commits and then anchors the audit head outside the database.
    async fn commit(&self, tx: Tx) -> Result<()> {
        tx.tx.commit().await.map_err(db)?;
        self.checkpointer.wake.notify_one();
        if let Some(head) = tx.head {
            self.head.write(head)?;
        }
        if !tx.records.is_empty() {
            let observer = self
                .observer
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            if let Some(o) = observer {
                tx.records
                    .iter()
                    .for_each(|r| o(crate::Change::Committed(r)));
            }
        }
        Ok(())
    }

    /// Appends `record` to the audit chain inside `tx`; returns its sequence.
    async fn audit(&self, tx: &mut Tx, record: &AuditRecord) -> Result<i64> {
        let last: Option<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT seq, mac FROM audit_log ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *tx.tx)
                .await
                .map_err(db)?;
        let (seq, prev) = match last {
            Some((s, mac)) => (s + 1, to32(&mac)?),
            // No entry left (all purged): continue from the anchor.
            None => {
                let anchor: Option<(i64, Vec<u8>)> =
                    sqlx::query_as("SELECT first_seq, prev_mac FROM audit_anchor WHERE id = 1")
                        .fetch_optional(&mut *tx.tx)
                        .await
                        .map_err(db)?;
                match anchor {
                    Some((first, mac)) => (first, to32(&mac)?),
                    None => (1, [0u8; 32]),
                }
            }
        };
        let mut salt = [0u8; 16];
        OsRng.fill_bytes(&mut salt);
        let commit = pii_commitment(&salt, &record.pii);
        let mac = entry_mac(self.keys.audit_key(), seq, &prev, record, &commit);
        sqlx::query(
            "INSERT INTO audit_log (seq, at, level, event_type, object_type, object_id, changes,
               success, server_host, actor, client_ip, client_host, pii_salt, pii_commit,
               prev_mac, mac)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(seq)
        .bind(record.at.0)
        .bind(record.level.as_str())
        .bind(&record.event_type)
        .bind(&record.object_type)
        .bind(&record.object_id)
        .bind(record.changes.join(","))
        .bind(record.success)
        .bind(&record.server_host)
        .bind(&record.pii.actor)
        .bind(&record.pii.client_ip)
        .bind(&record.pii.client_host)
        .bind(&salt[..])
        .bind(&commit[..])
        .bind(&prev[..])
        .bind(&mac[..])
        .execute(&mut *tx.tx)
        .await
        .map_err(db)?;
        tx.head = Some((seq, mac));
        tx.records.push(record.clone());
        Ok(seq)
    }
}

impl SqliteStore {
    /// Fails with `NotFound("profile")` unless the profile exists.
    async fn require_profile(&self, tx: &mut Tx, profile: ProfileId) -> Result<()> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM profiles WHERE id = ?")
            .bind(profile.0)
            .fetch_one(&mut *tx.tx)
            .await
            .map_err(db)?;
        if n == 0 {
            return Err(StoreError::NotFound("profile"));
        }
        Ok(())
    }
}

impl SqliteStore {
    /// Runs a `DELETE` that must remove exactly the row `ids` name, with its
    /// audit entry, in one transaction; `NotFound(what)` if there is none.
    async fn delete_audited(
        &self,
        sql: &'static str,
        ids: &[i64],
        what: &'static str,
        audit: &AuditRecord,
    ) -> Result<()> {
        self.delete_recorded(sql, ids, what, audit, None).await
    }

    /// [`Self::delete_audited`] of personal data: the deletion goes into
    /// the erasure ledger (`kind`, the row's id) before the commit, so a
    /// restore of an older backup cannot bring the row back.
    async fn delete_recorded(
        &self,
        sql: &'static str,
        ids: &[i64],
        what: &'static str,
        audit: &AuditRecord,
        ledger: Option<(&'static str, i64)>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let mut q = sqlx::query(sql);
        for id in ids {
            q = q.bind(*id);
        }
        one_row(q.execute(&mut *tx.tx).await.map_err(db)?, what)?;
        if let Some((kind, id)) = ledger {
            self.ledger
                .record(kind, id, openturret_domain::Timestamp::now().0)?;
        }
        self.audit(&mut tx, audit).await?;
        self.commit(tx).await
    }

    /// Deletes again a row the ledger says was erased (`kind`, `id`, at
    /// `at_ms`), if it is the same row: created before the erasure, since
    /// SQLite may give a deleted newest id to a later row. Returns whether
    /// one was deleted.
    async fn erase_again(&self, tx: &mut Tx, kind: &str, id: i64, at_ms: i64) -> Result<bool> {
        let sql = match kind {
            "admin" => "DELETE FROM admins WHERE id = ? AND created_at <= ?",
            "global_contact" => "DELETE FROM global_contacts WHERE id = ? AND created_at <= ?",
            "local_contact" => "DELETE FROM local_contacts WHERE id = ? AND created_at <= ?",
            "speed_dial" => "DELETE FROM speed_dials WHERE id = ? AND created_at <= ?",
            "call_memory" => "DELETE FROM call_memory WHERE id = ? AND created_at <= ?",
            _ => return Ok(false),
        };
        let r = sqlx::query(sql)
            .bind(id)
            .bind(at_ms)
            .execute(&mut *tx.tx)
            .await
            .map_err(db)?;
        Ok(r.rows_affected() > 0)
    }
}

/// A write transaction and the audit head it will anchor on commit.
struct Tx {
    tx: Transaction<'static, Sqlite>,
    head: Option<(i64, [u8; 32])>,
    /// The audit records of this transaction, for the observer.
    records: Vec<AuditRecord>,
}

/// Maps a database error, turning unique-key clashes into
/// [`StoreError::Conflict`] naming the column.
fn db(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(d) = &e
        && d.is_unique_violation()
    {
        // "UNIQUE constraint failed: speed_dials.profile_id, speed_dials.position"
        let field = d
            .message()
            .rsplit(['.', ' '])
            .next()
            .unwrap_or("value")
            .to_string();
        return StoreError::Conflict {
            field,
            reason: "is already in use".into(),
        };
    }
    StoreError::backend(e)
}

use crate::object_id;

/// Fails with `NotFound(what)` when an UPDATE or DELETE touched no row.
fn one_row(r: sqlx::sqlite::SqliteQueryResult, what: &'static str) -> Result<()> {
    if r.rows_affected() == 0 {
        Err(StoreError::NotFound(what))
    } else {
        Ok(())
    }
}
