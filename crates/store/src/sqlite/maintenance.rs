//! Snapshots and checks of the whole database.

use std::path::Path;

use async_trait::async_trait;

use super::{SqliteStore, db};
use crate::{DataCounts, MaintenanceStore, Result, StoreError};

#[async_trait]
impl MaintenanceStore for SqliteStore {
    async fn snapshot(&self, dest: &Path) -> Result<()> {
        let dest = dest
            .to_str()
            .ok_or_else(|| StoreError::Integrity("snapshot path is not UTF-8".into()))?
            .to_string();
        // VACUUM INTO writes a consistent, compact copy from one read
        // transaction: writers carry on, and free pages (erased data) are
        // not copied. On a connection of its own, so the readers' pool
        // stays free for requests (and the connection's thread is made by
        // the caller's: a caller at low priority gets a snapshot at low
        // priority).
        use sqlx::{ConnectOptions, Connection};
        let mut c = self.read_opts.connect().await.map_err(db)?;
        let r = sqlx::query("VACUUM INTO ?")
            .bind(dest)
            .execute(&mut c)
            .await
            .map_err(db);
        let _ = c.close().await;
        r.map(drop)
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
            audit_entries: r.get("audit"),
            oldest_call_memory: r.get("oldest_cm"),
            oldest_cdr: r.get("oldest_cdr"),
        })
    }

    async fn integrity_check(&self) -> Result<String> {
        let rows: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_all(&self.reader)
            .await
            .map_err(db)?;
        Ok(rows.join("; "))
    }
}
