//! Whole-database operations: the image a backup reads, checks, counts.

use async_trait::async_trait;

use super::{SqliteStore, db};
use crate::{DataCounts, ImageSink, MaintenanceStore, Result, StoreError};

#[async_trait]
impl MaintenanceStore for SqliteStore {
    async fn image(&self, sink: &mut dyn ImageSink) -> Result<()> {
        // On a connection of its own, so the readers' pool stays free for
        // requests (and the connection's thread is made by the caller's: a
        // caller at low priority reads at low priority).
        use sqlx::{ConnectOptions, Connection};
        let mut c = self
            .read_opts
            .clone()
            // The pages pass through once: no point caching them.
            .pragma("cache_size", "-1024")
            .connect()
            .await
            .map_err(db)?;
        let r = async {
            sqlx::query("BEGIN").execute(&mut c).await.map_err(db)?;
            // The read transaction starts here: the size and every page
            // come from the same snapshot of the database.
            stream_pages(&mut c, sink).await
        }
        .await;
        let _ = sqlx::query("ROLLBACK").execute(&mut c).await;
        let _ = c.close().await;
        r
    }

    async fn schema_version(&self) -> Result<i64> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success = 1")
                .fetch_one(&self.reader)
                .await
                .map_err(db)?;
        Ok(v.unwrap_or(0))
    }

    async fn counts(&self) -> Result<DataCounts> {
        let r = sqlx::query(
            "SELECT
               (SELECT COUNT(*) FROM admins) AS admins,
               (SELECT COUNT(*) FROM profiles) AS profiles,
               (SELECT COUNT(*) FROM profiles WHERE collect_call_memory = 1) AS collecting,
               (SELECT COUNT(*) FROM local_contacts) AS local_contacts,
               (SELECT COUNT(*) FROM speed_dials) AS speed_dials,
               (SELECT COUNT(*) FROM global_contacts) AS global_contacts,
               (SELECT COUNT(*) FROM lines) AS lines,
               (SELECT COUNT(*) FROM line_assignments) AS line_assignments,
               (SELECT COUNT(*) FROM consents) AS consents,
               (SELECT COUNT(*) FROM call_memory) AS call_memory,
               (SELECT COUNT(*) FROM cdrs) AS cdrs,
               (SELECT COUNT(*) FROM recording_log) AS recording_log,
               (SELECT COUNT(*) FROM audit_log) AS audit,
               (SELECT MIN(created_at) FROM call_memory) AS oldest_cm,
               (SELECT MIN(recorded_at) FROM cdrs) AS oldest_cdr",
        )
        .fetch_one(&self.reader)
        .await
        .map_err(db)?;
        use sqlx::Row;
        Ok(DataCounts {
            admins: r.get("admins"),
            profiles: r.get("profiles"),
            profiles_collecting_call_memory: r.get("collecting"),
            local_contacts: r.get("local_contacts"),
            speed_dials: r.get("speed_dials"),
            global_contacts: r.get("global_contacts"),
            lines: r.get("lines"),
            line_assignments: r.get("line_assignments"),
            consents: r.get("consents"),
            call_memory_entries: r.get("call_memory"),
            cdrs: r.get("cdrs"),
            recording_log: r.get("recording_log"),
            audit_entries: r.get("audit"),
            oldest_call_memory: r.get("oldest_cm"),
            oldest_cdr: r.get("oldest_cdr"),
        })
    }

    async fn close(&self) {
        SqliteStore::close(self).await
    }

    async fn claim_job(
        &self,
        job: &str,
        every_ms: i64,
        now: openturret_domain::Timestamp,
        node: &str,
    ) -> Result<bool> {
        let won: Option<String> = sqlx::query_scalar(
            "INSERT INTO cluster_jobs (name, last_run_at, node) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET last_run_at = excluded.last_run_at, node = excluded.node
             WHERE cluster_jobs.last_run_at <= excluded.last_run_at - ?4
                OR cluster_jobs.node = excluded.node
             RETURNING name",
        )
        .bind(job)
        .bind(now.0)
        .bind(node)
        .bind(every_ms)
        .fetch_optional(&self.writer)
        .await
        .map_err(db)?;
        Ok(won.is_some())
    }

    /// One node only (the file is its own, under the data directory's
    /// lock): it holds every line, and nothing is written, so a long
    /// write (an import) never delays a renewal.
    async fn lease_lines(&self, node: &str, ttl_ms: i64) -> Result<Vec<crate::LineLease>> {
        let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM lines ORDER BY id")
            .fetch_all(&self.reader)
            .await
            .map_err(db)?;
        Ok(ids
            .into_iter()
            .map(|id| crate::LineLease {
                line: openturret_domain::LineId(id),
                holder: node.to_string(),
                epoch: 1,
                remaining_ms: ttl_ms,
            })
            .collect())
    }

    async fn release_lines(&self, _node: &str) -> Result<()> {
        Ok(())
    }

    /// No leases are kept: one node serves every line.
    async fn line_leases(&self) -> Result<Vec<crate::LineLease>> {
        Ok(Vec::new())
    }

    fn is_shared(&self) -> bool {
        false
    }

    async fn erased_among(&self, _: &[String]) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    /// One node keeps the portal's view state in memory.
    async fn put_view_state(&self, _: [u8; 32], _: &str, _: Option<&str>) -> Result<()> {
        Err(in_memory())
    }

    async fn view_state(&self, _: [u8; 32], _: &str, _: bool) -> Result<Option<String>> {
        Err(in_memory())
    }

    async fn forget_view_state(&self, _: [u8; 32]) -> Result<()> {
        Err(in_memory())
    }

    /// One node numbers its CTI events itself, in memory.
    async fn cti_sequence(&self, _n: i64) -> Result<Vec<i64>> {
        Err(StoreError::backend(std::io::Error::other(
            "one node on SQLite numbers its CTI events itself",
        )))
    }

    async fn mlc_instance(&self) -> Result<Option<u64>> {
        Ok(None)
    }

    async fn integrity_check(&self) -> Result<String> {
        let rows: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_all(&self.reader)
            .await
            .map_err(db)?;
        Ok(rows.join("; "))
    }
}

/// Streams the database of `c` into `sink`, page by page (`sqlite_dbpage`),
/// as it is in `c`'s transaction: the image of a backup, of this store's
/// file or of the in-memory copy a PostgreSQL store makes.
pub(crate) async fn stream_pages(
    c: &mut sqlx::SqliteConnection,
    sink: &mut dyn ImageSink,
) -> Result<()> {
    use futures_util::TryStreamExt;
    use sqlx::Row;
    let (count, size): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT page_count FROM pragma_page_count()),
                (SELECT page_size FROM pragma_page_size())",
    )
    .fetch_one(&mut *c)
    .await
    .map_err(db)?;
    let has_dbpage: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM pragma_module_list WHERE name = 'sqlite_dbpage'")
            .fetch_optional(&mut *c)
            .await
            .map_err(db)?;
    if has_dbpage.is_none() {
        return Err(StoreError::Integrity(
            "this build's SQLite lacks the sqlite_dbpage table that backups read: \
             build with LIBSQLITE3_FLAGS=-DSQLITE_ENABLE_DBPAGE_VTAB (see .cargo/config.toml)"
                .into(),
        ));
    }
    sink.begin((count * size) as u64)?;
    // One page a row: bigger rows read faster but, through the
    // driver's allocations, cost the requests served meanwhile more
    // latency (measured: the p99 doubled at eight pages a row).
    let mut rows = sqlx::query("SELECT data FROM sqlite_dbpage").fetch(&mut *c);
    let mut read = 0i64;
    while let Some(row) = rows.try_next().await.map_err(db)? {
        let data: &[u8] = row.try_get(0).map_err(db)?;
        if data.len() as i64 != size {
            return Err(StoreError::Integrity(format!(
                "database image: page {} has the wrong size",
                read + 1
            )));
        }
        sink.bytes(data)?;
        read += 1;
    }
    drop(rows);
    if read != count {
        return Err(StoreError::Integrity(format!(
            "database image: {read} pages read, {count} expected"
        )));
    }
    Ok(())
}

fn in_memory() -> StoreError {
    StoreError::backend(std::io::Error::other(
        "one node on SQLite keeps the portal's view state in memory",
    ))
}
