//! System settings on PostgreSQL: one row.

use async_trait::async_trait;
use openturret_domain::Timestamp;
use openturret_domain::audit::AuditRecord;
use openturret_domain::model::{CdrFields, CdrFiles, Settings, SettingsChanges};
use openturret_domain::secret::PasswordHash;
use sqlx::Row;

use super::{PgStore, db};
use crate::{Result, SettingsStore};

#[async_trait]
impl SettingsStore for PgStore {
    async fn get_settings(&self) -> Result<Settings> {
        let r = sqlx::query("SELECT * FROM settings WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        let days = |c: &str| {
            r.get::<Option<i64>, _>(c)
                .map(|d| d.clamp(0, u32::MAX as i64) as u32)
        };
        Ok(Settings {
            global_contacts_changeable: r.get("global_contacts_changeable"),
            master_password_enabled: r.get("master_password_enabled"),
            cti_enabled: r.get("cti_enabled"),
            api_enabled: r.get("api_enabled"),
            recorder_forwarding_enabled: r.get("recorder_forwarding_enabled"),
            recording_all_lines: r.get("recording_all_lines"),
            retention_call_memory_days: days("retention_call_memory_days"),
            retention_cdr_days: days("retention_cdr_days"),
            retention_audit_days: days("retention_audit_days"),
            pseudonymisation: openturret_domain::model::Pseudonymisation::parse(
                r.get("pseudonymisation"),
            )
            .unwrap_or_default(),
            cdr_enabled: r.get("cdr_enabled"),
            cdr_store: r.get("cdr_store"),
            cdr_fields: CdrFields::parse_list(r.get::<&str, _>("cdr_fields").split(','))
                .unwrap_or_default(),
            cdr_files: CdrFiles::parse(r.get("cdr_files")).unwrap_or_default(),
            updated_at: Timestamp(r.get("updated_at")),
        })
    }

    async fn update_settings(&self, c: SettingsChanges, audit: AuditRecord) -> Result<Settings> {
        let mut tx = self.begin().await?;
        let master_hash = c
            .master_password
            .as_ref()
            .and_then(|o| o.as_ref().map(|h| h.as_phc()));
        let days = |d: Option<Option<u32>>| d.flatten().map(i64::from);
        sqlx::query(
            "UPDATE settings SET
               global_contacts_changeable = COALESCE($1, global_contacts_changeable),
               master_password_enabled = CASE WHEN $2 THEN $3 ELSE master_password_enabled END,
               master_password_hash = CASE WHEN $2 THEN $4 ELSE master_password_hash END,
               cti_enabled = COALESCE($5, cti_enabled),
               api_enabled = COALESCE($6, api_enabled),
               recorder_forwarding_enabled = COALESCE($7, recorder_forwarding_enabled),
               recording_all_lines = COALESCE($8, recording_all_lines),
               retention_call_memory_days = CASE WHEN $9 THEN $10 ELSE retention_call_memory_days END,
               retention_cdr_days = CASE WHEN $11 THEN $12 ELSE retention_cdr_days END,
               retention_audit_days = CASE WHEN $13 THEN $14 ELSE retention_audit_days END,
               pseudonymisation = COALESCE($15, pseudonymisation),
               cdr_enabled = COALESCE($16, cdr_enabled),
               cdr_store = COALESCE($17, cdr_store),
               cdr_fields = COALESCE($18, cdr_fields),
               cdr_files = COALESCE($19, cdr_files),
               updated_at = $20
             WHERE id = 1",
        )
        .bind(c.global_contacts_changeable)
        .bind(c.master_password.is_some())
        .bind(master_hash.is_some())
        .bind(master_hash)
        .bind(c.cti_enabled)
        .bind(c.api_enabled)
        .bind(c.recorder_forwarding_enabled)
        .bind(c.recording_all_lines)
        .bind(c.retention_call_memory_days.is_some())
        .bind(days(c.retention_call_memory_days))
        .bind(c.retention_cdr_days.is_some())
        .bind(days(c.retention_cdr_days))
        .bind(c.retention_audit_days.is_some())
        .bind(days(c.retention_audit_days))
        .bind(c.pseudonymisation.map(|p| p.as_str()))
        .bind(c.cdr_enabled)
        .bind(c.cdr_store)
        .bind(c.cdr_fields.map(|f| f.to_list()))
        .bind(c.cdr_files.map(|f| f.as_str()))
        .bind(Timestamp::now().0)
        .execute(&mut *tx.tx)
        .await
        .map_err(db)?;
        self.audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        self.get_settings().await
    }

    async fn master_password_hash(&self) -> Result<Option<PasswordHash>> {
        let h: Option<String> = sqlx::query_scalar(
            "SELECT master_password_hash FROM settings WHERE id = 1 AND master_password_enabled",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .flatten();
        Ok(h.map(PasswordHash::from_phc))
    }
}
