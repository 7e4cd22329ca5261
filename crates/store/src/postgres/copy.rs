//! Moving a SQLite deployment into PostgreSQL (`turret migrate --to`):
//! every table copied row by row, in foreign-key order, each value
//! converted by the type of its PostgreSQL column (integers stay
//! integers, SQLite's 0/1 become booleans, blobs become BYTEA, text stays
//! text), all in one transaction, then the identity sequences moved past
//! the copied ids and the row counts of both sides compared. The one place
//! that reads a SQLite file from the PostgreSQL module, on purpose.

use std::path::Path;
use std::str::FromStr;

use futures_util::TryStreamExt;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{Postgres, QueryBuilder, Row};

use super::{PgStore, db};
use crate::{Result, StoreError};

/// The tables, parents before children. `store_backfills` (SQLite's own
/// bookkeeping, empty once the SQLite store has opened), `cluster_jobs` and
/// `line_leases` (the deployment's bookkeeping: the new one keeps its own)
/// and `erasure_ledger` (outside every backup, never restored over: each
/// node's ledger file brings its erasures to it) are not copied.
pub const TABLES: &[&str] = &[
    "admins",
    "admin_sessions",
    "profiles",
    "local_contacts",
    "speed_dials",
    "global_contacts",
    "global_contact_words",
    "lines",
    "line_assignments",
    "settings",
    "consents",
    "call_memory",
    "cdrs",
    "audit_log",
    "audit_anchor",
    "api_keys",
    "client_sessions",
    "recorders",
    "recording_log",
    "recording_notice",
    "event_log",
];

/// Rows per INSERT.
const BATCH: usize = 500;

enum Val {
    Int(Option<i64>),
    Bool(Option<bool>),
    Bytes(Option<Vec<u8>>),
    Text(Option<String>),
}

/// How many rows the SQLite database at `sqlite_db` holds in the tables
/// that are copied (for a progress bar).
pub async fn rows_to_copy(sqlite_db: &Path) -> Result<u64> {
    let src = open_source(sqlite_db).await?;
    let mut total = 0u64;
    for t in TABLES {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {t}")))
            .fetch_one(&src)
            .await
            .map_err(StoreError::backend)?;
        total += n.max(0) as u64;
    }
    src.close().await;
    Ok(total)
}

/// Whether the database at `url` may receive a migration: it has none of
/// our tables, or has them (from an attempt that failed) with no
/// administrator and no audit entry in them.
pub async fn database_is_empty(url: &str) -> Result<bool> {
    let pool = sqlx::PgPool::connect_with(
        sqlx::postgres::PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Integrity(format!("the database URL: {e}")))?,
    )
    .await
    .map_err(StoreError::backend)?;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::TEXT FROM pg_tables WHERE schemaname = current_schema()
           AND tablename <> '_sqlx_migrations'",
    )
    .fetch_all(&pool)
    .await
    .map_err(db)?;
    let empty = if tables.is_empty() {
        true
    } else if tables.iter().any(|t| t == "admins") && tables.iter().any(|t| t == "audit_log") {
        let n: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM admins) + (SELECT COUNT(*) FROM audit_log)",
        )
        .fetch_one(&pool)
        .await
        .map_err(db)?;
        n == 0
    } else {
        false
    };
    pool.close().await;
    Ok(empty)
}

/// A consistent image of the database at `pool` as a SQLite database file
/// of this build's SQLite schema — what every backup holds, whichever the
/// backend, so a backup of either restores into either. Built in memory
/// (never on disk in clear) from one `REPEATABLE READ` snapshot, table by
/// table, then streamed page by page into `sink`.
pub(super) async fn image(pool: &sqlx::PgPool, sink: &mut dyn crate::ImageSink) -> Result<()> {
    fn lite_err(e: sqlx::Error) -> StoreError {
        StoreError::backend(e)
    }
    // One connection, kept for the whole image: the in-memory database
    // lives as long as it does.
    let lite = SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with(
            SqliteConnectOptions::from_str("sqlite::memory:")
                .map_err(lite_err)?
                .foreign_keys(false),
        )
        .await
        .map_err(lite_err)?;
    sqlx::migrate!("./migrations/sqlite")
        .run(&lite)
        .await
        .map_err(StoreError::backend)?;
    let mut snap = pool.begin().await.map_err(db)?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *snap)
        .await
        .map_err(db)?;
    let mut w = lite.begin().await.map_err(lite_err)?;
    // The rows come complete (the words of every name among them): no
    // work is left for the SQLite store's backfills.
    sqlx::query("DELETE FROM store_backfills")
        .execute(&mut *w)
        .await
        .map_err(lite_err)?;
    for &table in TABLES {
        let cols = columns(&mut snap, table).await?;
        // (Rows the migrations made, the default settings, are replaced.)
        sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}")))
            .execute(&mut *w)
            .await
            .map_err(lite_err)?;
        let names: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
        let insert = format!(
            "INSERT INTO {table} ({}) VALUES ({})",
            names.join(", "),
            (1..=names.len())
                .map(|i| format!("?{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let select = format!("SELECT {} FROM {table}", names.join(", "));
        let mut rows = sqlx::query(sqlx::AssertSqlSafe(select)).fetch(&mut *snap);
        while let Some(r) = rows.try_next().await.map_err(db)? {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(insert.as_str()));
            for (i, (name, ty)) in cols.iter().enumerate() {
                let bad = |e: sqlx::Error| StoreError::Integrity(format!("{table}.{name}: {e}"));
                q = match ty.as_str() {
                    "bigint" | "integer" | "smallint" => {
                        q.bind(r.try_get::<Option<i64>, _>(i).map_err(bad)?)
                    }
                    "boolean" => {
                        q.bind(r.try_get::<Option<bool>, _>(i).map_err(bad)?.map(i64::from))
                    }
                    "bytea" => q.bind(r.try_get::<Option<Vec<u8>>, _>(i).map_err(bad)?),
                    _ => q.bind(r.try_get::<Option<String>, _>(i).map_err(bad)?),
                };
            }
            q.execute(&mut *w).await.map_err(lite_err)?;
        }
    }
    w.commit().await.map_err(lite_err)?;
    snap.commit().await.map_err(db)?;
    // Now the in-memory file, page by page.
    let mut c = lite.acquire().await.map_err(lite_err)?;
    let r = crate::sqlite::stream_pages(&mut c, sink).await;
    drop(c);
    lite.close().await;
    r
}

/// The columns of `table` in this database, with their types, in order.
async fn columns(
    tx: &mut sqlx::Transaction<'static, Postgres>,
    table: &str,
) -> Result<Vec<(String, String)>> {
    sqlx::query_as(
        "SELECT column_name::TEXT, data_type::TEXT FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = $1
         ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(&mut **tx)
    .await
    .map_err(db)
}

/// Opens the SQLite database at `sqlite_db` read-only, for one read
/// transaction (a consistent view of the source).
async fn open_source(sqlite_db: &Path) -> Result<sqlx::SqlitePool> {
    SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(sqlite_db)
                .read_only(true),
        )
        .await
        .map_err(StoreError::backend)
}

/// Copies every table of `read` into `tx` (whose tables are empty but for
/// the default settings row, replaced), then moves the identities and the
/// error log's sequence past the copied ids — never back, so an id given
/// out before a restore is never given out again. Returns each table with
/// its row count, checked equal on both sides.
async fn copy_tables(
    tx: &mut sqlx::Transaction<'static, Postgres>,
    read: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<(&'static str, u64)>> {
    let mut counts = Vec::with_capacity(TABLES.len());
    for &table in TABLES {
        let cols = columns(tx, table).await?;
        if table == "settings" {
            // The migration made the default row; the copied one replaces it.
            sqlx::query("DELETE FROM settings")
                .execute(&mut **tx)
                .await
                .map_err(db)?;
        }
        let names: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
        let select = format!("SELECT {} FROM {table}", names.join(", "));
        let mut rows = sqlx::query(sqlx::AssertSqlSafe(select)).fetch(&mut **read);
        let mut batch: Vec<Vec<Val>> = Vec::with_capacity(BATCH);
        let mut n = 0u64;
        while let Some(r) = rows.try_next().await.map_err(StoreError::backend)? {
            let mut vals = Vec::with_capacity(cols.len());
            for (i, (name, ty)) in cols.iter().enumerate() {
                let bad = |e: sqlx::Error| StoreError::Integrity(format!("{table}.{name}: {e}"));
                vals.push(match ty.as_str() {
                    "bigint" | "integer" => Val::Int(r.try_get(i).map_err(bad)?),
                    "boolean" => {
                        Val::Bool(r.try_get::<Option<i64>, _>(i).map_err(bad)?.map(|v| v != 0))
                    }
                    "bytea" => Val::Bytes(r.try_get(i).map_err(bad)?),
                    _ => Val::Text(r.try_get(i).map_err(bad)?),
                });
            }
            batch.push(vals);
            n += 1;
            if batch.len() == BATCH {
                insert(tx, table, &names, std::mem::take(&mut batch)).await?;
                progress(BATCH as u64);
            }
        }
        drop(rows);
        let left = batch.len() as u64;
        if !batch.is_empty() {
            insert(tx, table, &names, batch).await?;
            progress(left);
        }
        let there: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                .fetch_one(&mut **tx)
                .await
                .map_err(db)?;
        if there as u64 != n {
            return Err(StoreError::Integrity(format!(
                "{table}: {n} rows read, {there} written"
            )));
        }
        counts.push((table, n));
    }
    let identities: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::TEXT FROM information_schema.columns
         WHERE table_schema = current_schema() AND column_name = 'id'
           AND is_identity = 'YES'",
    )
    .fetch_all(&mut **tx)
    .await
    .map_err(db)?;
    let past = |seq: &str, max: &str| {
        format!(
            "SELECT setval({seq}, GREATEST(pg_sequence_last_value({seq}::regclass), ({max}), 1))"
        )
    };
    for t in identities {
        let seq = format!("pg_get_serial_sequence('{t}', 'id')");
        sqlx::query(sqlx::AssertSqlSafe(past(
            &seq,
            &format!("SELECT MAX(id) FROM {t}"),
        )))
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    }
    sqlx::query(sqlx::AssertSqlSafe(past(
        "'event_log_seq'",
        "SELECT MAX(seq) FROM event_log",
    )))
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(counts)
}

/// The restore epoch an audit entry's changes name (`epoch:N`), if any.
pub fn epoch_of(changes: &str) -> Option<u64> {
    changes
        .split(',')
        .find_map(|c| c.strip_prefix("epoch:")?.parse().ok())
}

impl PgStore {
    /// Copies every table of the SQLite database at `sqlite_db` into this
    /// (empty, migrated) database in one transaction; `progress` is told
    /// each row copied. Returns each table with its row count, checked
    /// equal on both sides.
    pub async fn copy_from_sqlite(
        &self,
        sqlite_db: &Path,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Vec<(&'static str, u64)>> {
        let src = open_source(sqlite_db).await?;
        let mut read = src.begin().await.map_err(StoreError::backend)?;
        let mut tx = self.pool.begin().await.map_err(db)?;
        let counts = copy_tables(&mut tx, &mut read, progress).await?;
        tx.commit().await.map_err(db)?;
        drop(read);
        src.close().await;
        Ok(counts)
    }

    /// Restores: replaces every table of this database with those of the
    /// SQLite database at `sqlite_db` (an unpacked, checked backup whose
    /// newest audit entry is the restore's, naming `epoch`), in one
    /// transaction that holds every table exclusively, so a node sees the
    /// data before or after and nothing between; any failure leaves the
    /// data as it was. Line leases go (no node runs during a restore); the
    /// CTI sequence and every id sequence only move forward. This node's
    /// anchor then takes the restored head under `epoch`; the other nodes'
    /// take it when they start (`reconcile_head`).
    pub async fn replace_from_sqlite(
        &self,
        sqlite_db: &Path,
        epoch: u64,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Vec<(&'static str, u64)>> {
        let src = open_source(sqlite_db).await?;
        let mut read = src.begin().await.map_err(StoreError::backend)?;
        let mut tx = self.pool.begin().await.map_err(db)?;
        let all: Vec<&str> = TABLES.iter().copied().chain(["line_leases"]).collect();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
            all.join(", ")
        )))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        for table in all.iter().rev() {
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}")))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        let counts = copy_tables(&mut tx, &mut read, progress).await?;
        let (seq, mac): (i64, Vec<u8>) =
            sqlx::query_as("SELECT seq, mac FROM audit_log ORDER BY seq DESC LIMIT 1")
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
        let named: Option<String> = sqlx::query_scalar(
            "SELECT changes FROM audit_log WHERE event_type = 'backup.restored'
             ORDER BY seq DESC LIMIT 1",
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        if named.as_deref().and_then(epoch_of) != Some(epoch) {
            return Err(StoreError::Integrity(format!(
                "the restored chain's newest backup.restored entry does not name epoch {epoch}"
            )));
        }
        let mac: [u8; 32] = mac.try_into().map_err(|_| {
            StoreError::Integrity(format!("audit entry {seq}: a MAC of another length"))
        })?;
        tx.commit().await.map_err(db)?;
        drop(read);
        src.close().await;
        self.head.reset((seq, mac), epoch)?;
        Ok(counts)
    }

    /// The restore epoch of the database: the one its newest
    /// `backup.restored` entry names (0 when none does).
    pub async fn restore_epoch(&self) -> Result<u64> {
        let named: Option<String> = sqlx::query_scalar(
            "SELECT changes FROM audit_log WHERE event_type = 'backup.restored'
             ORDER BY seq DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(named.as_deref().and_then(epoch_of).unwrap_or(0))
    }

    /// This node's anchor of the audit head, and its epoch.
    pub fn anchor_epoch(&self) -> Result<u64> {
        self.head.epoch()
    }

    /// After a restore made while this node was stopped: the anchor of the
    /// replaced chain gives way to the restored chain's head. Nothing
    /// changes unless the database names a larger epoch than the anchor.
    pub async fn reconcile_head(&self) -> Result<()> {
        let epoch = self.restore_epoch().await?;
        if epoch <= self.head.epoch()? {
            return Ok(());
        }
        let newest: Option<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT seq, mac FROM audit_log ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        if let Some((seq, mac)) = newest
            && let Ok(mac) = <[u8; 32]>::try_from(mac)
        {
            self.head.reset((seq, mac), epoch)?;
        }
        Ok(())
    }

    /// The System Manager nodes serving from this database now: the
    /// client address of each change listener (every serving node keeps
    /// one), and each holder of a line lease still live.
    pub async fn nodes_serving(&self) -> Result<Vec<String>> {
        let mut v: Vec<String> = sqlx::query_scalar(
            "SELECT 'a node at ' || COALESCE(host(client_addr), 'a local socket')
               FROM pg_stat_activity
              WHERE application_name = $1 AND datname = current_database()
             UNION
             SELECT 'node ' || holder FROM line_leases
              WHERE expires_at > (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT",
        )
        .bind(super::notify::LISTENER_NAME)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        v.sort();
        v.dedup();
        Ok(v)
    }

    /// Anchors `head` (the SQLite deployment's newest audit entry) as this
    /// node's head, so a deletion of the newest copied entries is caught.
    pub fn anchor_head(&self, head: (i64, [u8; 32])) -> Result<()> {
        self.head.write(head)
    }
}

async fn insert(
    tx: &mut sqlx::Transaction<'static, Postgres>,
    table: &str,
    names: &[&str],
    rows: Vec<Vec<Val>>,
) -> Result<()> {
    let mut b: QueryBuilder<Postgres> =
        QueryBuilder::new(format!("INSERT INTO {table} ({}) ", names.join(", ")));
    b.push_values(rows, |mut row, vals| {
        for v in vals {
            match v {
                Val::Int(x) => row.push_bind(x),
                Val::Bool(x) => row.push_bind(x),
                Val::Bytes(x) => row.push_bind(x),
                Val::Text(x) => row.push_bind(x),
            };
        }
    });
    b.build().execute(&mut **tx).await.map_err(db)?;
    Ok(())
}
