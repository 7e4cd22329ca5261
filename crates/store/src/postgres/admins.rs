//! Administrators and their sessions.

use async_trait::async_trait;
use openturret_domain::audit::AuditRecord;
use openturret_domain::model::Admin;
use openturret_domain::secret::PasswordHash;
use openturret_domain::{AdminId, Timestamp};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::{PgStore, db, one_row};
use crate::{AdminChanges, AdminStore, Result, StoreError};

fn admin(r: &PgRow) -> Admin {
    Admin {
        id: AdminId(r.get("id")),
        username: r.get("username"),
        enabled: r.get("enabled"),
        must_change_password: r.get("must_change_password"),
        created_at: Timestamp(r.get("created_at")),
        updated_at: Timestamp(r.get("updated_at")),
    }
}

#[async_trait]
impl AdminStore for PgStore {
    async fn count_admins(&self) -> Result<i64> {
        sqlx::query_scalar("SELECT COUNT(*) FROM admins")
            .fetch_one(&self.pool)
            .await
            .map_err(db)
    }

    async fn list_admins(&self) -> Result<Vec<Admin>> {
        let rows = sqlx::query(
            "SELECT id, username, enabled, must_change_password, created_at, updated_at
             FROM admins ORDER BY username",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows.iter().map(admin).collect())
    }

    async fn get_admin(&self, id: AdminId) -> Result<Admin> {
        sqlx::query(
            "SELECT id, username, enabled, must_change_password, created_at, updated_at
             FROM admins WHERE id = $1",
        )
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .map(|r| admin(&r))
        .ok_or(StoreError::NotFound("admin"))
    }

    async fn admin_credentials(&self, username: &str) -> Result<Option<(Admin, PasswordHash)>> {
        let row = sqlx::query(
            "SELECT id, username, enabled, must_change_password, created_at, updated_at,
                    password_hash
             FROM admins WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(row.map(|r| (admin(&r), PasswordHash::from_phc(r.get("password_hash")))))
    }

    async fn create_admin(
        &self,
        username: &str,
        password: PasswordHash,
        must_change_password: bool,
        mut audit: AuditRecord,
    ) -> Result<Admin> {
        let now = Timestamp::now();
        let mut tx = self.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO admins (username, password_hash, enabled, must_change_password,
               created_at, updated_at) VALUES ($1, $2, TRUE, $3, $4, $5) RETURNING id",
        )
        .bind(username)
        .bind(password.as_phc())
        .bind(must_change_password)
        .bind(now.0)
        .bind(now.0)
        .fetch_one(&mut *tx.tx)
        .await
        .map_err(|e| match db(e) {
            StoreError::Conflict { reason, .. } => StoreError::Conflict {
                field: "username".into(),
                reason,
            },
            other => other,
        })?;
        audit.object_id = Some(super::object_id(audit.object_id.take(), id));
        self.audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        self.get_admin(AdminId(id)).await
    }

    async fn update_admin(
        &self,
        id: AdminId,
        changes: AdminChanges,
        audit: AuditRecord,
    ) -> Result<Admin> {
        let now = Timestamp::now();
        let mut tx = self.begin().await?;
        let r = sqlx::query("UPDATE admins SET updated_at = $1 WHERE id = $2")
            .bind(now.0)
            .bind(id.0)
            .execute(&mut *tx.tx)
            .await
            .map_err(db)?;
        one_row(r, "admin")?;
        if let Some(enabled) = changes.enabled {
            sqlx::query("UPDATE admins SET enabled = $1 WHERE id = $2")
                .bind(enabled)
                .bind(id.0)
                .execute(&mut *tx.tx)
                .await
                .map_err(db)?;
        }
        if let Some((hash, must_change)) = &changes.password {
            sqlx::query(
                "UPDATE admins SET password_hash = $1, must_change_password = $2 WHERE id = $3",
            )
            .bind(hash.as_phc())
            .bind(must_change)
            .bind(id.0)
            .execute(&mut *tx.tx)
            .await
            .map_err(db)?;
        }
        if changes.enabled == Some(false) || changes.password.is_some() {
            sqlx::query("DELETE FROM admin_sessions WHERE admin_id = $1")
                .bind(id.0)
                .execute(&mut *tx.tx)
                .await
                .map_err(db)?;
        }
        self.audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        self.get_admin(id).await
    }

    async fn delete_admin(&self, id: AdminId, audit: AuditRecord) -> Result<()> {
        self.delete_recorded(
            "DELETE FROM admins WHERE id = $1",
            &[id.0],
            "admin",
            &audit,
            Some(("admin", id.0)),
        )
        .await
    }

    async fn create_session(
        &self,
        token_hash: [u8; 32],
        admin: AdminId,
        expires_at: Timestamp,
    ) -> Result<()> {
        let now = Timestamp::now();
        let mut tx = self.begin().await?;
        // Expired sessions are swept whenever a new one starts.
        sqlx::query("DELETE FROM admin_sessions WHERE expires_at <= $1")
            .bind(now.0)
            .execute(&mut *tx.tx)
            .await
            .map_err(db)?;
        sqlx::query(
            "INSERT INTO admin_sessions (token_hash, admin_id, created_at, expires_at)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(&token_hash[..])
        .bind(admin.0)
        .bind(now.0)
        .bind(expires_at.0)
        .execute(&mut *tx.tx)
        .await
        .map_err(db)?;
        self.commit(tx).await
    }

    async fn session_admin(&self, token_hash: [u8; 32], now: Timestamp) -> Result<Option<Admin>> {
        let row = sqlx::query(
            "SELECT a.id, a.username, a.enabled, a.must_change_password, a.created_at,
                    a.updated_at
             FROM admins a JOIN admin_sessions s ON s.admin_id = a.id
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND a.enabled",
        )
        .bind(&token_hash[..])
        .bind(now.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(row.map(|r| admin(&r)))
    }

    async fn delete_session(&self, token_hash: [u8; 32]) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM admin_sessions WHERE token_hash = $1")
            .bind(&token_hash[..])
            .execute(&mut *tx.tx)
            .await
            .map_err(db)?;
        self.commit(tx).await
    }

    async fn end_all_sessions(&self) -> Result<u64> {
        let mut tx = self.begin().await?;
        let mut n = sqlx::query("DELETE FROM admin_sessions")
            .execute(&mut *tx.tx)
            .await
            .map_err(db)?
            .rows_affected();
        n += sqlx::query("DELETE FROM client_sessions")
            .execute(&mut *tx.tx)
            .await
            .map_err(db)?
            .rows_affected();
        self.commit(tx).await?;
        Ok(n)
    }
}
