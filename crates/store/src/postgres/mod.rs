//! The PostgreSQL implementation of the storage traits (issue 19: several
//! System Manager nodes on one database). **Under construction**: it
//! implements every trait of [`crate::Store`] and runs the behaviour
//! suite, but backups (`MaintenanceStore::image`) are refused and
//! `turret serve` does not offer it yet: the per-process parts of the
//! System Manager (change hub, throttling, CTI sequence, line ownership,
//! schedulers) are not shared between nodes yet.
//!
//! Shape: one connection pool; the schema comes from its own migrations
//! (`migrations/postgres/`), run under sqlx's advisory migration lock so
//! nodes starting together do not race. Every write transaction that
//! appends to the audit chain first takes a transaction-scoped advisory
//! lock ([`AUDIT_LOCK`]), so appends from several nodes are serialised and
//! the chain stays one. Each node also anchors the newest head it wrote in
//! its own data directory (`crate::head`), as the SQLite store does beside
//! its database.

mod admins;
mod api_keys;
mod audit;
mod calls;
mod contacts;
mod copy;
mod events;
mod import;
mod lines;
mod maintenance;
pub mod notify;
mod profiles;
mod recorders;
mod settings;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use openturret_domain::audit::{AuditRecord, entry_mac, pii_commitment};
use openturret_domain::number::NumberPlan;
use rand_core::{OsRng, RngCore};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{PgConnection, Postgres, QueryBuilder, Transaction};

use crate::keys::Keys;
use crate::to32;
use crate::{Result, StoreError};

pub use copy::{TABLES, database_is_empty, epoch_of, rows_to_copy};

/// The advisory lock that serialises audit appends across nodes
/// ("otaudit" in ASCII).
pub const AUDIT_LOCK: i64 = 0x6f74_6175_6469_7400;

/// The newest schema version this build knows.
pub fn latest_schema_version() -> i64 {
    sqlx::migrate!("./migrations/postgres")
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0)
}

/// A System Manager node's store on a shared PostgreSQL database.
pub struct PgStore {
    pool: PgPool,
    keys: Keys,
    plan: NumberPlan,
    /// The newest audit head this node wrote, outside the database.
    head: crate::head::HeadFile,
    /// Told about every committed audited change, this node's and (through
    /// the listener, [`notify`]) the other nodes'.
    observer: std::sync::Arc<std::sync::RwLock<Option<crate::ChangeObserver>>>,
    /// Names this store in its notifications (random per process), so its
    /// listener knows its own.
    origin: String,
    /// The listener of the other nodes' changes, once observed.
    listener: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Where erasures are recorded, outside the database and its backups.
    ledger: crate::ledger::Ledger,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may hold the password.
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://...`; TLS as its
    /// `sslmode` says) and brings its schema up to date. `data_dir` holds
    /// this node's anchor of the audit head.
    pub async fn connect(
        url: &str,
        data_dir: &Path,
        keys: Keys,
        plan: NumberPlan,
        ledger: crate::ledger::Ledger,
    ) -> Result<PgStore> {
        let opts = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Integrity(format!("the database URL: {e}")))?
            .application_name("openturret");
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await
            .map_err(StoreError::backend)?;
        // sqlx takes its advisory lock around the migrations.
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(StoreError::backend)?;
        let store = PgStore {
            pool,
            keys,
            plan,
            head: crate::head::HeadFile::new(data_dir.join("postgres.audit-head")),
            observer: Default::default(),
            origin: {
                let mut b = [0u8; 8];
                OsRng.fill_bytes(&mut b);
                b.iter().map(|x| format!("{x:02x}")).collect()
            },
            listener: std::sync::Mutex::new(None),
            ledger,
        };
        // A restore made while this node was stopped replaced the chain
        // its anchor names; erasures made through the other nodes come
        // into this node's ledger (re-applied at every start).
        store.reconcile_head().await?;
        store.sync_ledger().await?;
        Ok(store)
    }

    /// Nothing to do: SQLite's WAL is checkpointed after an erasure so
    /// erased rows leave no old frames; PostgreSQL's dead rows go at the
    /// next vacuum (autovacuum), and its WAL is the cluster's.
    async fn checkpoint(&self) -> Result<()> {
        Ok(())
    }

    /// Fails with `NotFound("profile")` unless the profile exists.
    async fn require_profile(
        &self,
        tx: &mut Tx,
        profile: openturret_domain::ProfileId,
    ) -> Result<()> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM profiles WHERE id = $1")
            .bind(profile.0)
            .fetch_one(&mut *tx.tx)
            .await
            .map_err(db)?;
        if n == 0 {
            return Err(StoreError::NotFound("profile"));
        }
        Ok(())
    }

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

    /// [`Self::delete_audited`] of personal data, recorded in the erasure
    /// ledger before the commit.
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
            self.record_erasure(&mut tx.tx, kind, id, None).await?;
        }
        self.audit(&mut tx, audit).await?;
        self.commit(tx).await
    }

    /// Records an erasure in this node's ledger file (synced, before the
    /// commit: never resurrect) and in the deployment's ledger table,
    /// inside the erasing transaction `conn`.
    /// A profile's erasure also marks its name (`Keys::erased_name_mark`).
    async fn record_erasure(
        &self,
        conn: &mut PgConnection,
        kind: &str,
        id: i64,
        name: Option<&str>,
    ) -> Result<()> {
        let e = self
            .ledger
            .record(kind, id, openturret_domain::Timestamp::now().0)?;
        sqlx::query(
            "INSERT INTO erasure_ledger (kind, id, at_ms, name_mark) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
        )
        .bind(&e.kind)
        .bind(e.id)
        .bind(e.at_ms)
        .bind(name.map(|n| self.keys.erased_name_mark(n).to_vec()))
        .execute(&mut *conn)
        .await
        .map_err(db)?;
        Ok(())
    }

    /// Makes this node's ledger file and the deployment's ledger table hold
    /// the same erasures: those made through other nodes come into the
    /// file, those of the file (made before the table, or by this node
    /// alone) into the table. Returns how many the file took.
    pub async fn sync_ledger(&self) -> Result<usize> {
        let shared: Vec<(String, i64, i64)> =
            sqlx::query_as("SELECT kind, id, at_ms FROM erasure_ledger ORDER BY at_ms, kind, id")
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
        let mine: std::collections::HashSet<(String, i64, i64)> = self
            .ledger
            .entries()?
            .into_iter()
            .map(|e| (e.kind, e.id, e.at_ms))
            .collect();
        let mut taken = 0;
        for (kind, id, at) in &shared {
            if !mine.contains(&(kind.clone(), *id, *at)) {
                self.ledger.record(kind, *id, *at)?;
                taken += 1;
            }
        }
        let theirs: std::collections::HashSet<&(String, i64, i64)> = shared.iter().collect();
        let missing: Vec<&(String, i64, i64)> =
            mine.iter().filter(|e| !theirs.contains(e)).collect();
        if !missing.is_empty() {
            let mut b: QueryBuilder<Postgres> =
                QueryBuilder::new("INSERT INTO erasure_ledger (kind, id, at_ms) ");
            b.push_values(missing, |mut row, (kind, id, at)| {
                row.push_bind(kind.clone()).push_bind(*id).push_bind(*at);
            });
            b.push(" ON CONFLICT DO NOTHING");
            b.build().execute(&self.pool).await.map_err(db)?;
        }
        Ok(taken)
    }

    /// Deletes again a row the ledger says was erased, if it is the same
    /// row (created before the erasure). Returns whether one was deleted.
    async fn erase_again(&self, tx: &mut Tx, kind: &str, id: i64, at_ms: i64) -> Result<bool> {
        let sql = match kind {
            "admin" => "DELETE FROM admins WHERE id = $1 AND created_at <= $2",
            "global_contact" => "DELETE FROM global_contacts WHERE id = $1 AND created_at <= $2",
            "local_contact" => "DELETE FROM local_contacts WHERE id = $1 AND created_at <= $2",
            "speed_dial" => "DELETE FROM speed_dials WHERE id = $1 AND created_at <= $2",
            "call_memory" => "DELETE FROM call_memory WHERE id = $1 AND created_at <= $2",
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

    pub async fn close(&self) {
        if let Some(l) = self
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            l.abort();
        }
        self.pool.close().await;
    }

    async fn begin(&self) -> Result<Tx> {
        Ok(Tx {
            tx: self.pool.begin().await.map_err(db)?,
            head: None,
            records: Vec::new(),
        })
    }

    /// Commits (with the notification of its changes to the other
    /// nodes), then anchors the head and tells the observer.
    async fn commit(&self, mut tx: Tx) -> Result<()> {
        if !tx.records.is_empty() {
            notify::send(&mut tx.tx, &self.origin, &tx.records).await?;
        }
        tx.tx.commit().await.map_err(db)?;
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

    /// Appends `record` to the audit chain inside `tx`, under the chain's
    /// advisory lock (held until `tx` ends); returns its sequence.
    async fn audit(&self, tx: &mut Tx, record: &AuditRecord) -> Result<i64> {
        if tx.head.is_none() {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(AUDIT_LOCK)
                .execute(&mut *tx.tx)
                .await
                .map_err(db)?;
        }
        let last: Option<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT seq, mac FROM audit_log ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *tx.tx)
                .await
                .map_err(db)?;
        let (seq, prev) = match last {
            Some((s, mac)) => (s + 1, to32(&mac)?),
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
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
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

/// A write transaction and the audit head it will anchor on commit.
struct Tx {
    tx: Transaction<'static, Postgres>,
    head: Option<(i64, [u8; 32])>,
    records: Vec<AuditRecord>,
}

/// Maps a database error, turning unique-key clashes into
/// [`StoreError::Conflict`] naming the constraint's column.
fn db(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(d) = &e
        && d.is_unique_violation()
    {
        // "Key (profile_id, kind, position)=(1, DKA, 4) already exists.":
        // the last column, as SQLite's message gives it.
        let field = d
            .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .and_then(|p| p.detail())
            .and_then(|t| t.strip_prefix("Key (")?.split_once(")=").map(|(c, _)| c))
            .and_then(|cols| cols.rsplit(", ").next())
            .unwrap_or("value")
            .trim_matches('"')
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
fn one_row(r: sqlx::postgres::PgQueryResult, what: &'static str) -> Result<()> {
    if r.rows_affected() == 0 {
        Err(StoreError::NotFound(what))
    } else {
        Ok(())
    }
}
