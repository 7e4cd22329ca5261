//! System settings (SPEC rules 4, 7, 11). Enabling, changing and disabling
//! the master password are audited under their own event types.

use axum::extract::State;
use axum::http::StatusCode;
use openturret_domain::model::{
    ADMIN_PASSWORD_MIN, CdrFields, CdrFiles, Pseudonymisation, Settings, SettingsChanges,
};
use openturret_domain::secret::Secret;
use openturret_domain::validate;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiResult};
use super::extract::{AdminAuth, Json};
use crate::{App, passwords};

#[derive(Serialize)]
pub struct SettingsOut {
    global_contacts_changeable: bool,
    master_password_enabled: bool,
    cti_enabled: bool,
    api_enabled: bool,
    recorder_forwarding_enabled: bool,
    /// Every line's calls are recorded (else the lines marked `recorded`).
    recording_all_lines: bool,
    retention_call_memory_days: Option<u32>,
    retention_cdr_days: Option<u32>,
    retention_audit_days: Option<u32>,
    pseudonymisation: &'static str,
    cdr_enabled: bool,
    cdr_store: bool,
    cdr_fields: Vec<&'static str>,
    cdr_files: &'static str,
    updated_at: String,
}

impl From<Settings> for SettingsOut {
    fn from(s: Settings) -> Self {
        SettingsOut {
            global_contacts_changeable: s.global_contacts_changeable,
            master_password_enabled: s.master_password_enabled,
            cti_enabled: s.cti_enabled,
            api_enabled: s.api_enabled,
            recorder_forwarding_enabled: s.recorder_forwarding_enabled,
            recording_all_lines: s.recording_all_lines,
            retention_call_memory_days: s.retention_call_memory_days,
            retention_cdr_days: s.retention_cdr_days,
            retention_audit_days: s.retention_audit_days,
            pseudonymisation: s.pseudonymisation.as_str(),
            cdr_enabled: s.cdr_enabled,
            cdr_store: s.cdr_store,
            cdr_fields: s.cdr_fields.iter().map(|f| f.as_str()).collect(),
            cdr_files: s.cdr_files.as_str(),
            updated_at: s.updated_at.rfc3339(),
        }
    }
}

pub async fn get(State(app): State<App>, _a: AdminAuth) -> ApiResult<axum::Json<SettingsOut>> {
    Ok(axum::Json(app.store.get_settings().await?.into()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    pub global_contacts_changeable: Option<bool>,
    /// `true` needs `master_password` (unless already enabled); `false`
    /// disables it and clears the stored hash.
    pub master_password_enabled: Option<bool>,
    /// Sets (and enables) the master password. Write-only.
    pub master_password: Option<String>,
    pub cti_enabled: Option<bool>,
    pub api_enabled: Option<bool>,
    pub recorder_forwarding_enabled: Option<bool>,
    pub recording_all_lines: Option<bool>,
    /// Days; `null` keeps entries until deleted.
    #[serde(default, deserialize_with = "super::double_option")]
    pub retention_call_memory_days: Option<Option<u32>>,
    /// Days; `null` keeps records until deleted.
    #[serde(default, deserialize_with = "super::double_option")]
    pub retention_cdr_days: Option<Option<u32>>,
    /// Days; `null` keeps audit entries until deleted.
    #[serde(default, deserialize_with = "super::double_option")]
    pub retention_audit_days: Option<Option<u32>>,
    /// `off`, `keyed_hash` or `truncate`.
    pub pseudonymisation: Option<String>,
    /// Call data records are produced (off until switched on).
    pub cdr_enabled: Option<bool>,
    /// CDRs are kept in the database.
    pub cdr_store: Option<bool>,
    /// The fields a CDR holds, by name.
    pub cdr_fields: Option<Vec<String>>,
    /// `off`, `csv`, `jsonl` or `both`.
    pub cdr_files: Option<String>,
}

/// `POST /settings/pseudonym-key/rotate`: a new key for keyed-hash
/// pseudonyms; the old ones can no longer be linked to new ones.
pub async fn rotate_pseudonym_key(
    State(app): State<App>,
    auth: AdminAuth,
) -> ApiResult<StatusCode> {
    app.pseudo.rotate().map_err(ApiError::Internal)?;
    let r = auth.record("pseudonym_key.rotated", "settings", None, vec![]);
    app.store.append_audit(r).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn update(
    State(app): State<App>,
    auth: AdminAuth,
    Json(b): Json<SettingsPatch>,
) -> ApiResult<axum::Json<SettingsOut>> {
    let current = app.store.get_settings().await?;
    let master_password = match (b.master_password_enabled, b.master_password) {
        (Some(false), Some(_)) => {
            return Err(ApiError::invalid(
                "master_password",
                "must not be given while disabling the master password",
            ));
        }
        (Some(false), None) => Some(None),
        (_, Some(p)) => {
            validate::new_password("master_password", &p, ADMIN_PASSWORD_MIN)?;
            Some(Some(passwords::hash(Secret::new(p)).await))
        }
        (Some(true), None) if !current.master_password_enabled => {
            return Err(ApiError::invalid(
                "master_password",
                "is required to enable the master password",
            ));
        }
        _ => None,
    };
    for (field, v) in [
        ("retention_call_memory_days", b.retention_call_memory_days),
        ("retention_cdr_days", b.retention_cdr_days),
        ("retention_audit_days", b.retention_audit_days),
    ] {
        if let Some(Some(d)) = v
            && !(1..=3650).contains(&d)
        {
            return Err(ApiError::invalid(
                field,
                "must be between 1 and 3650 days, or null to keep",
            ));
        }
    }
    let pseudonymisation = match &b.pseudonymisation {
        None => None,
        Some(m) => Some(Pseudonymisation::parse(m).ok_or_else(|| {
            ApiError::invalid("pseudonymisation", "must be off, keyed_hash or truncate")
        })?),
    };
    let cdr_fields = match &b.cdr_fields {
        None => None,
        Some(names) => Some(
            CdrFields::parse_list(names.iter().map(String::as_str)).map_err(|bad| {
                ApiError::invalid(
                    "cdr_fields",
                    format!(
                        "{bad:?} is not a CDR field; the fields are {}",
                        CdrFields::all().to_list().replace(',', ", ")
                    ),
                )
            })?,
        ),
    };
    let cdr_files = match &b.cdr_files {
        None => None,
        Some(m) => Some(
            CdrFiles::parse(m)
                .ok_or_else(|| ApiError::invalid("cdr_files", "must be off, csv, jsonl or both"))?,
        ),
    };
    let event = match &master_password {
        Some(Some(_)) if current.master_password_enabled => "master_password.changed",
        Some(Some(_)) => "master_password.enabled",
        Some(None) if current.master_password_enabled => "master_password.disabled",
        _ => "settings.updated",
    };
    let changes = SettingsChanges {
        global_contacts_changeable: b.global_contacts_changeable,
        master_password,
        cti_enabled: b.cti_enabled,
        api_enabled: b.api_enabled,
        recorder_forwarding_enabled: b.recorder_forwarding_enabled,
        recording_all_lines: b.recording_all_lines,
        retention_call_memory_days: b.retention_call_memory_days,
        retention_cdr_days: b.retention_cdr_days,
        retention_audit_days: b.retention_audit_days,
        pseudonymisation,
        cdr_enabled: b.cdr_enabled,
        cdr_store: b.cdr_store,
        cdr_fields,
        cdr_files,
    };
    let r = auth.record(event, "settings", None, changes.changed_fields(&current));
    Ok(axum::Json(
        app.store.update_settings(changes, r).await?.into(),
    ))
}
