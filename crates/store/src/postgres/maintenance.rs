//! Whole-database operations on PostgreSQL: the schema version, counts
//! and a consistency check. Backups (a consistent snapshot in the backup
//! format) are not yet written for PostgreSQL (issue 19).

use async_trait::async_trait;

use super::{PgStore, db};
use crate::{DataCounts, ImageSink, MaintenanceStore, Result};

/// The advisory lock under which a node renews and takes line leases
/// ("otlease" in ASCII).
const LEASE_LOCK: i64 = 0x6f74_6c65_6173_6500;

#[async_trait]
impl MaintenanceStore for PgStore {
    /// A SQLite image of a consistent snapshot (`copy::image`), so the
    /// backup format stays one for both backends.
    async fn image(&self, sink: &mut dyn ImageSink) -> Result<()> {
        super::copy::image(&self.pool, sink).await
    }

    async fn schema_version(&self) -> Result<i64> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await
                .map_err(db)?;
        Ok(v.unwrap_or(0))
    }

    async fn counts(&self) -> Result<DataCounts> {
        let r = sqlx::query(
            "SELECT
               (SELECT COUNT(*) FROM admins) AS admins,
               (SELECT COUNT(*) FROM profiles) AS profiles,
               (SELECT COUNT(*) FROM profiles WHERE collect_call_memory) AS collecting,
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
        .fetch_one(&self.pool)
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
        PgStore::close(self).await
    }

    async fn claim_job(
        &self,
        job: &str,
        every_ms: i64,
        now: openturret_domain::Timestamp,
        node: &str,
    ) -> Result<bool> {
        let won: Option<String> = sqlx::query_scalar(
            "INSERT INTO cluster_jobs (name, last_run_at, node) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET last_run_at = excluded.last_run_at, node = excluded.node
             WHERE cluster_jobs.last_run_at <= excluded.last_run_at - $4
                OR cluster_jobs.node = excluded.node
             RETURNING name",
        )
        .bind(job)
        .bind(now.0)
        .bind(node)
        .bind(every_ms)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(won.is_some())
    }

    async fn lease_lines(&self, node: &str, ttl_ms: i64) -> Result<Vec<crate::LineLease>> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        // One node at a time decides, so two nodes starting together do
        // not split the lines between them.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(LEASE_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let now: i64 =
            sqlx::query_scalar("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT")
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
        let until = now + ttl_ms;
        // Ours, renewed.
        sqlx::query("UPDATE line_leases SET expires_at = $2 WHERE holder = $1")
            .bind(node)
            .bind(until)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        // Active and standby: while another node holds a live lease, it
        // serves the lines (new ones too) and this one stands by; once
        // none does, this node takes the lapsed leases (their epochs grow)
        // and the lines nobody holds.
        let others: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM line_leases WHERE holder <> $1 AND expires_at > $2)",
        )
        .bind(node)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        if !others {
            sqlx::query(
                "UPDATE line_leases SET holder = $1, epoch = epoch + 1, expires_at = $2
                 WHERE holder <> $1 AND expires_at <= $3",
            )
            .bind(node)
            .bind(until)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            sqlx::query(
                "INSERT INTO line_leases (line_id, holder, epoch, expires_at)
                 SELECT id, $1, 1, $2 FROM lines
                 WHERE id NOT IN (SELECT line_id FROM line_leases)
                 ON CONFLICT (line_id) DO NOTHING",
            )
            .bind(node)
            .bind(until)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        let rows: Vec<(i64, String, i64, i64)> = sqlx::query_as(
            "SELECT line_id, holder, epoch, expires_at FROM line_leases WHERE holder = $1 ORDER BY line_id",
        )
        .bind(node)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(rows
            .into_iter()
            .map(|r| crate::LineLease::of_row(r, now))
            .collect())
    }

    async fn release_lines(&self, node: &str) -> Result<()> {
        sqlx::query("DELETE FROM line_leases WHERE holder = $1")
            .bind(node)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn line_leases(&self) -> Result<Vec<crate::LineLease>> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let now: i64 =
            sqlx::query_scalar("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT")
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
        let rows: Vec<(i64, String, i64, i64)> = sqlx::query_as(
            "SELECT line_id, holder, epoch, expires_at FROM line_leases ORDER BY line_id",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        Ok(rows
            .into_iter()
            .map(|r| crate::LineLease::of_row(r, now))
            .collect())
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn put_view_state(
        &self,
        session: [u8; 32],
        slot: &str,
        value: Option<&str>,
    ) -> Result<()> {
        match value {
            Some(v) => {
                let sealed = self
                    .keys
                    .seal_note(&view_topic(&session, slot), v.as_bytes());
                // (A session ended meanwhile: nothing to keep.)
                sqlx::query(
                    "INSERT INTO portal_memory (token_hash, slot, value)
                     SELECT $1, $2, $3 WHERE EXISTS
                       (SELECT 1 FROM admin_sessions WHERE token_hash = $1)
                     ON CONFLICT (token_hash, slot) DO UPDATE SET value = excluded.value",
                )
                .bind(&session[..])
                .bind(slot)
                .bind(sealed)
                .execute(&self.pool)
                .await
                .map_err(db)?;
            }
            None => {
                sqlx::query("DELETE FROM portal_memory WHERE token_hash = $1 AND slot = $2")
                    .bind(&session[..])
                    .bind(slot)
                    .execute(&self.pool)
                    .await
                    .map_err(db)?;
            }
        }
        Ok(())
    }

    async fn view_state(
        &self,
        session: [u8; 32],
        slot: &str,
        take: bool,
    ) -> Result<Option<String>> {
        let sql = if take {
            "DELETE FROM portal_memory WHERE token_hash = $1 AND slot = $2 RETURNING value"
        } else {
            "SELECT value FROM portal_memory WHERE token_hash = $1 AND slot = $2"
        };
        let sealed: Option<Vec<u8>> = sqlx::query_scalar(sql)
            .bind(&session[..])
            .bind(slot)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        Ok(sealed.and_then(|s| {
            let open = self.keys.open_note(&view_topic(&session, slot), &s)?;
            String::from_utf8(open.to_vec()).ok()
        }))
    }

    async fn forget_view_state(&self, session: [u8; 32]) -> Result<()> {
        sqlx::query("DELETE FROM portal_memory WHERE token_hash = $1")
            .bind(&session[..])
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn erased_among(&self, names: &[String]) -> Result<Vec<String>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let marks: Vec<Vec<u8>> = names
            .iter()
            .map(|n| self.keys.erased_name_mark(n).to_vec())
            .collect();
        let found: std::collections::HashSet<Vec<u8>> = sqlx::query_scalar(
            "SELECT DISTINCT name_mark FROM erasure_ledger WHERE name_mark = ANY($1)",
        )
        .bind(&marks)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        .into_iter()
        .collect();
        Ok(names
            .iter()
            .zip(marks)
            .filter(|(_, m)| found.contains(m))
            .map(|(n, _)| n.clone())
            .collect())
    }

    async fn cti_sequence(&self, n: i64) -> Result<Vec<i64>> {
        sqlx::query_scalar("SELECT nextval('cti_seq') FROM generate_series(1, $1)")
            .bind(n)
            .fetch_all(&self.pool)
            .await
            .map_err(db)
    }

    async fn mlc_instance(&self) -> Result<Option<u64>> {
        let n: i64 = sqlx::query_scalar("SELECT nextval('mlc_instances')")
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        Ok(Some(n as u64))
    }

    async fn integrity_check(&self) -> Result<String> {
        // Every table is read whole (PostgreSQL checks each page as it
        // reads it; a damaged one is an error here).
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT tablename::TEXT FROM pg_tables WHERE schemaname = current_schema()",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        for t in tables {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(*) FROM \"{}\"",
                t.replace('"', "")
            )))
            .execute(&self.pool)
            .await
            .map_err(db)?;
        }
        Ok("ok".into())
    }
}

/// What a view state is sealed to: its session and slot, so a sealed value
/// moved to another session or slot does not open.
fn view_topic(session: &[u8; 32], slot: &str) -> String {
    let hex: String = session.iter().map(|b| format!("{b:02x}")).collect();
    format!("portal:{hex}:{slot}")
}
