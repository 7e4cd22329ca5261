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
/// are not copied.
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
    let src = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(sqlite_db)
                .read_only(true),
        )
        .await
        .map_err(StoreError::backend)?;
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
        let src = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(
                SqliteConnectOptions::new()
                    .filename(sqlite_db)
                    .read_only(true),
            )
            .await
            .map_err(StoreError::backend)?;
        // One read transaction: a consistent view of the source.
        let mut read = src.begin().await.map_err(StoreError::backend)?;
        let mut tx = self.pool.begin().await.map_err(db)?;
        let mut counts = Vec::with_capacity(TABLES.len());
        for &table in TABLES {
            let cols: Vec<(String, String)> = sqlx::query_as(
                "SELECT column_name::TEXT, data_type::TEXT FROM information_schema.columns
                 WHERE table_schema = current_schema() AND table_name = $1
                 ORDER BY ordinal_position",
            )
            .bind(table)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
            if table == "settings" {
                // The migration made the default row; the copied one replaces it.
                sqlx::query("DELETE FROM settings")
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
            }
            let names: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
            let select = format!("SELECT {} FROM {table}", names.join(", "));
            let mut rows = sqlx::query(sqlx::AssertSqlSafe(select)).fetch(&mut *read);
            let mut batch: Vec<Vec<Val>> = Vec::with_capacity(BATCH);
            let mut n = 0u64;
            while let Some(r) = rows.try_next().await.map_err(StoreError::backend)? {
                let mut vals = Vec::with_capacity(cols.len());
                for (i, (name, ty)) in cols.iter().enumerate() {
                    let bad =
                        |e: sqlx::Error| StoreError::Integrity(format!("{table}.{name}: {e}"));
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
                    insert(&mut tx, table, &names, std::mem::take(&mut batch)).await?;
                    progress(BATCH as u64);
                }
            }
            drop(rows);
            let left = batch.len() as u64;
            if !batch.is_empty() {
                insert(&mut tx, table, &names, batch).await?;
                progress(left);
            }
            let there: i64 =
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db)?;
            if there as u64 != n {
                return Err(StoreError::Integrity(format!(
                    "{table}: {n} rows read, {there} written"
                )));
            }
            counts.push((table, n));
        }
        // Identities and the error log's sequence start after the copies.
        let identities: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::TEXT FROM information_schema.columns
             WHERE table_schema = current_schema() AND column_name = 'id'
               AND is_identity = 'YES'",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        for t in identities {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT setval(pg_get_serial_sequence('{t}', 'id'),
                   GREATEST((SELECT MAX(id) FROM {t}), 1))"
            )))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        sqlx::query(
            "SELECT setval('event_log_seq', GREATEST((SELECT MAX(seq) FROM event_log), 1))",
        )
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        drop(read);
        src.close().await;
        Ok(counts)
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
