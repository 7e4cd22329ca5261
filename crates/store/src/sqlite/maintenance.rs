//! Snapshots and checks of the whole database.

use std::path::Path;

use async_trait::async_trait;

use super::{SqliteStore, db};
use crate::{MaintenanceStore, Result, StoreError};

#[async_trait]
impl MaintenanceStore for SqliteStore {
    async fn snapshot(&self, dest: &Path) -> Result<()> {
        let dest = dest
            .to_str()
            .ok_or_else(|| StoreError::Integrity("snapshot path is not UTF-8".into()))?
            .to_string();
        // VACUUM INTO writes a consistent, compact copy from one read
        // transaction: writers carry on, and free pages (erased data) are
        // not copied.
        sqlx::query("VACUUM INTO ?")
            .bind(dest)
            .execute(&self.reader)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn schema_version(&self) -> Result<i64> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success = 1")
                .fetch_one(&self.reader)
                .await
                .map_err(db)?;
        Ok(v.unwrap_or(0))
    }

    async fn integrity_check(&self) -> Result<String> {
        let rows: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_all(&self.reader)
            .await
            .map_err(db)?;
        Ok(rows.join("; "))
    }
}
