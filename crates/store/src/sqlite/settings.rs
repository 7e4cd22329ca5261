//! System settings: one row.

use async_trait::async_trait;
use openturret_domain::Timestamp;
use openturret_domain::audit::AuditRecord;
use openturret_domain::model::{CdrFields, CdrFiles, Settings, SettingsChanges};
use openturret_domain::secret::PasswordHash;
use sqlx::Row;

use super::{SqliteStore, db};
use crate::{Result, SettingsStore};

#[async_trait]
impl SettingsStore for SqliteStore {
    async fn get_settings(&self) -> Result<Settings> {
        let r = sqlx::query("SELECT * FROM settings WHERE id = 1")
            .fetch_one(&self.reader)
            .await
            .map_err(db)?;
        Ok(Settings {
            global_contacts_changeable: r.get("global_contacts_changeable"),
            master_password_enabled: r.get("master_password_enabled"),
            cti_enabled: r.get("cti_enabled"),
            api_enabled: r.get("api_enabled"),
            recorder_forwarding_enabled: r.get("recorder_forwarding_enabled"),
            recording_all_lines: r.get("recording_all_lines"),
            retention_call_memory_days: r
                .get::<Option<i64>, _>("retention_call_memory_days")
                .map(|d| d as u32),
            retention_cdr_days: r
                .get::<Option<i64>, _>("retention_cdr_days")
                .map(|d| d as u32),
            retention_audit_days: r
                .get::<Option<i64>, _>("retention_audit_days")
                .map(|d| d as u32),
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
        sqlx::query(
            "UPDATE settings SET
               global_contacts_changeable = COALESCE(?, global_contacts_changeable),
               master_password_enabled = CASE WHEN ? THEN ? ELSE master_password_enabled END,
               master_password_hash = CASE WHEN ? THEN ? ELSE master_password_hash END,
               cti_enabled = COALESCE(?, cti_enabled),
               api_enabled = COALESCE(?, api_enabled),
               recorder_forwarding_enabled = COALESCE(?, recorder_forwarding_enabled),
               recording_all_lines = COALESCE(?, recording_all_lines),
               retention_call_memory_days = CASE WHEN ? THEN ? ELSE retention_call_memory_days END,
               retention_cdr_days = CASE WHEN ? THEN ? ELSE retention_cdr_days END,
               retention_audit_days = CASE WHEN ? THEN ? ELSE retention_audit_days END,
               pseudonymisation = COALESCE(?, pseudonymisation),
               cdr_enabled = COALESCE(?, cdr_enabled),
               cdr_store = COALESCE(?, cdr_store),
               cdr_fields = COALESCE(?, cdr_fields),
               cdr_files = COALESCE(?, cdr_files),
               updated_at = ?
             WHERE id = 1",
        )
        .bind(c.global_contacts_changeable)
        .bind(c.master_password.is_some())
        .bind(master_hash.is_some())
        .bind(c.master_password.is_some())
        .bind(master_hash)
        .bind(c.cti_enabled)
        .bind(c.api_enabled)
        .bind(c.recorder_forwarding_enabled)
        .bind(c.recording_all_lines)
        .bind(c.retention_call_memory_days.is_some())
        .bind(c.retention_call_memory_days.flatten().map(|d| d as i64))
        .bind(c.retention_cdr_days.is_some())
        .bind(c.retention_cdr_days.flatten().map(|d| d as i64))
        .bind(c.retention_audit_days.is_some())
        .bind(c.retention_audit_days.flatten().map(|d| d as i64))
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
            "SELECT master_password_hash FROM settings WHERE id = 1 AND master_password_enabled = 1",
        )
        .fetch_optional(&self.reader)
        .await
        .map_err(db)?
        .flatten();
        Ok(h.map(PasswordHash::from_phc))
    }
}
