//! Backups over the admin API: take one, list them, verify one, restore
//! one (staged, then the server restarts itself to swap it in).

use axum::extract::State;
use axum::http::StatusCode;
use openturret_domain::secret::Secret;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiResult};
use super::extract::{AdminAuth, Json};
use crate::App;

#[derive(Serialize)]
pub struct BackupOut {
    pub file: String,
    pub created_at: String,
    pub payload_bytes: u64,
    pub schema_version: i64,
    /// The fingerprint of the backup key it is sealed to; null when it is
    /// under a passphrase of its own.
    pub backup_key: Option<String>,
}

fn out(path: &std::path::Path, m: &openturret_store::backup::Manifest) -> BackupOut {
    BackupOut {
        file: path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default(),
        created_at: openturret_domain::Timestamp(m.created_at).rfc3339(),
        payload_bytes: m.payload_len,
        schema_version: m.schema_version,
        backup_key: m.key_fingerprint(),
    }
}

#[derive(Serialize)]
pub struct KeyOut {
    pub fingerprint: String,
    pub created_at: String,
}

fn key_out(k: &openturret_store::backup::BackupKey) -> KeyOut {
    KeyOut {
        fingerprint: k.fingerprint(),
        created_at: openturret_domain::Timestamp(k.created_at).rfc3339(),
    }
}

/// The installation's backup key (404 when none is set up).
pub async fn get_key(State(app): State<App>, _a: AdminAuth) -> ApiResult<axum::Json<KeyOut>> {
    match crate::backup::load_key(&app.config.data_dir).map_err(ApiError::Internal)? {
        Some(k) => Ok(axum::Json(key_out(&k))),
        None => Err(ApiError::NotFound("backup key")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyIn {
    pub passphrase: String,
}

/// Sets up (or replaces) the installation's backup key under a passphrase
/// (the operation; API and portal).
pub async fn set_backup_key(app: &App, auth: &AdminAuth, passphrase: String) -> ApiResult<KeyOut> {
    let p = Secret::new(passphrase);
    if crate::backup::check_passphrase(&p).is_err() {
        return Err(short_passphrase());
    }
    let k = crate::backup::set_key(&app.config.data_dir, p)
        .await
        .map_err(ApiError::Internal)?;
    let r = auth.record(
        "backup.key_set",
        "backup_key",
        Some(k.fingerprint()),
        vec![],
    );
    app.store.append_audit(r).await?;
    Ok(key_out(&k))
}

pub async fn put_key(
    State(app): State<App>,
    auth: AdminAuth,
    Json(b): Json<KeyIn>,
) -> ApiResult<axum::Json<KeyOut>> {
    Ok(axum::Json(set_backup_key(&app, &auth, b.passphrase).await?))
}

pub async fn list(State(app): State<App>, _a: AdminAuth) -> ApiResult<axum::Json<Vec<BackupOut>>> {
    let dir = crate::backup::backup_dir(&app.config);
    let list = crate::backup::list(&dir).map_err(ApiError::Internal)?;
    Ok(axum::Json(list.iter().map(|(p, m)| out(p, m)).collect()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateIn {
    /// Absent: the backup is sealed to the installation's backup key.
    #[serde(default)]
    pub passphrase: Option<String>,
}

fn short_passphrase() -> ApiError {
    ApiError::invalid(
        "passphrase",
        format!(
            "must be at least {} characters",
            crate::backup::PASSPHRASE_MIN
        ),
    )
}

/// Takes a backup (the operation; API and portal): under `passphrase`, or
/// without one under the installation's backup key.
pub async fn create_backup(
    app: &App,
    auth: &AdminAuth,
    passphrase: Option<String>,
) -> ApiResult<BackupOut> {
    let protect = match passphrase {
        Some(p) => {
            let p = Secret::new(p);
            if crate::backup::check_passphrase(&p).is_err() {
                return Err(short_passphrase());
            }
            crate::backup::Protection::Passphrase(p)
        }
        None => match crate::backup::load_key(&app.config.data_dir).map_err(ApiError::Internal)? {
            Some(k) => crate::backup::Protection::Key(k),
            None => {
                return Err(ApiError::invalid(
                    "passphrase",
                    "is required: no backup key is set up (PUT /api/v1/backups/key)",
                ));
            }
        },
    };
    let dir = crate::backup::backup_dir(&app.config);
    let (path, m) = crate::backup::create(app.store.clone(), &app.config.data_dir, &dir, protect)
        .await
        .map_err(ApiError::Internal)?;
    let file = out(&path, &m);
    let r = auth.record("backup.created", "backup", Some(file.file.clone()), vec![]);
    app.store.append_audit(r).await?;
    Ok(file)
}

pub async fn create(
    State(app): State<App>,
    auth: AdminAuth,
    Json(b): Json<CreateIn>,
) -> ApiResult<(StatusCode, axum::Json<BackupOut>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(create_backup(&app, &auth, b.passphrase).await?),
    ))
}

/// The path of a backup named by its file name in the list (no folders).
fn backup_file(app: &App, file: &str) -> ApiResult<std::path::PathBuf> {
    if file.contains('/') || file.starts_with('.') || !file.ends_with(".otb") {
        return Err(ApiError::invalid(
            "file",
            "must be a backup file name from the list",
        ));
    }
    let path = crate::backup::backup_dir(&app.config).join(file);
    if !path.exists() {
        return Err(ApiError::NotFound("backup"));
    }
    Ok(path)
}

/// A backup that could not be read: a wrong passphrase (or damage the
/// authentication cannot tell apart) on `passphrase`, the rest on `file`.
fn backup_error(e: &anyhow::Error, otherwise: &str) -> ApiError {
    let msg = format!("{e:#}");
    if msg.contains("wrong passphrase") {
        ApiError::invalid("passphrase", "is wrong, or the backup is damaged")
    } else {
        ApiError::invalid(
            "file",
            msg.rsplit(": ").next().unwrap_or(otherwise).to_string(),
        )
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyIn {
    /// A file name from the backup list (no folders).
    pub file: String,
    pub passphrase: String,
}

#[derive(Serialize)]
pub struct VerifiedOut {
    pub ok: bool,
    pub file: String,
    pub created_at: String,
    pub integrity: String,
    pub audit_entries: i64,
}

/// Verifies a backup of the backup folder (API and portal). A wrong
/// passphrase or a damaged file answers 422 on `passphrase`/`file`.
pub async fn verify_backup(app: &App, auth: &AdminAuth, b: VerifyIn) -> ApiResult<VerifiedOut> {
    let path = backup_file(app, &b.file)?;
    let result = crate::backup::verify(&path, Secret::new(b.passphrase), &app.config).await;
    let mut r = auth.record("backup.verified", "backup", Some(b.file.clone()), vec![]);
    r.success = result.is_ok();
    app.store.append_audit(r).await?;
    let v = result.map_err(|e| backup_error(&e, "does not verify"))?;
    Ok(VerifiedOut {
        ok: true,
        file: b.file,
        created_at: openturret_domain::Timestamp(v.manifest.created_at).rfc3339(),
        integrity: v.integrity,
        audit_entries: v.audit_entries,
    })
}

pub async fn verify(
    State(app): State<App>,
    auth: AdminAuth,
    Json(b): Json<VerifyIn>,
) -> ApiResult<axum::Json<VerifiedOut>> {
    Ok(axum::Json(verify_backup(&app, &auth, b).await?))
}

#[derive(Serialize)]
pub struct RestoreOut {
    pub file: String,
    pub created_at: String,
    /// Profiles erased since the backup was taken, erased again in it.
    pub erased_again: usize,
    /// The server restarts now to put the restored data in place.
    pub restarting: bool,
}

/// Restores a backup of the backup folder (API and portal): checks it,
/// builds the database aside with the erasure ledger re-applied, then asks
/// the server to restart, which swaps it in before serving again. A wrong
/// passphrase or a damaged backup changes nothing (422).
pub async fn restore_backup(app: &App, auth: &AdminAuth, b: VerifyIn) -> ApiResult<RestoreOut> {
    postgres_not_yet(app)?;
    let path = backup_file(app, &b.file)?;
    let mut done = auth.record(
        "backup.restored",
        "backup",
        Some(b.file.clone()),
        vec!["database"],
    );
    done.at = openturret_domain::Timestamp::now();
    let result =
        crate::backup::stage_restore(&path, Secret::new(b.passphrase), &app.config, done).await;
    let mut r = auth.record(
        "backup.restore_staged",
        "backup",
        Some(b.file.clone()),
        vec![],
    );
    r.success = result.is_ok();
    app.store.append_audit(r).await?;
    let restored = result.map_err(|e| backup_error(&e, "does not restore"))?;
    tracing::warn!(file = %b.file, "restore staged; restarting to put it in place");
    // Answer first, then restart.
    let app2 = app.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        app2.restart.request();
    });
    Ok(RestoreOut {
        file: b.file,
        created_at: openturret_domain::Timestamp(restored.manifest.created_at).rfc3339(),
        erased_again: restored.erased_again,
        restarting: true,
    })
}

pub async fn restore(
    State(app): State<App>,
    auth: AdminAuth,
    Json(b): Json<VerifyIn>,
) -> ApiResult<(StatusCode, axum::Json<RestoreOut>)> {
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(restore_backup(&app, &auth, b).await?),
    ))
}

/// A PostgreSQL deployment is restored with every node stopped, from the
/// command line, never through a running node: 501, saying how. (Its
/// backups are taken as any.)
fn postgres_not_yet(app: &App) -> ApiResult<()> {
    if crate::startup::embedded(&app.config) {
        return Ok(());
    }
    Err(ApiError::NotImplemented(
        "a PostgreSQL deployment is restored with every node stopped: stop them all, run turret backup restore FILE on one of them, then start them again",
    ))
}
