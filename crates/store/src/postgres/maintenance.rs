//! Whole-database operations on PostgreSQL: the schema version, counts
//! and a consistency check. Backups (a consistent snapshot in the backup
//! format) are not yet written for PostgreSQL (issue 19).

use async_trait::async_trait;

use super::{PgStore, db};
use crate::{DataCounts, ImageSink, MaintenanceStore, Result, StoreError};

#[async_trait]
impl MaintenanceStore for PgStore {
    async fn image(&self, _sink: &mut dyn ImageSink) -> Result<()> {
        Err(StoreError::Integrity(
            "backups of a PostgreSQL deployment are not available yet: use the \
             database's own backups (pg_dump, base backups) meanwhile"
                .into(),
        ))
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
