//! Administrator accounts: list, create, disable, reset password, delete.

use axum::extract::State;
use axum::http::StatusCode;
use openturret_domain::AdminId;
use openturret_domain::model::{ADMIN_PASSWORD_MIN, Admin, admin_username};
use openturret_domain::secret::Secret;
use openturret_domain::validate;
use openturret_store::AdminChanges;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiResult};
use super::extract::{AdminAuth, Json, PathId};
use crate::{App, passwords};

#[derive(Serialize)]
pub struct AdminOut {
    id: i64,
    username: String,
    enabled: bool,
    must_change_password: bool,
    created_at: String,
    updated_at: String,
}

impl From<&Admin> for AdminOut {
    fn from(a: &Admin) -> Self {
        AdminOut {
            id: a.id.0,
            username: a.username.clone(),
            enabled: a.enabled,
            must_change_password: a.must_change_password,
            created_at: a.created_at.rfc3339(),
            updated_at: a.updated_at.rfc3339(),
        }
    }
}

pub async fn list(State(app): State<App>, _a: AdminAuth) -> ApiResult<axum::Json<Vec<AdminOut>>> {
    let admins = app.store.list_admins().await?;
    Ok(axum::Json(admins.iter().map(AdminOut::from).collect()))
}

pub async fn get(
    State(app): State<App>,
    _a: AdminAuth,
    PathId(id): PathId,
) -> ApiResult<axum::Json<AdminOut>> {
    Ok(axum::Json(
        (&app.store.get_admin(AdminId(id)).await?).into(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminIn {
    pub username: String,
    pub password: String,
    /// Default `true`: the new administrator chooses their own password.
    pub must_change_password: Option<bool>,
}

pub async fn create(
    State(app): State<App>,
    auth: AdminAuth,
    Json(body): Json<AdminIn>,
) -> ApiResult<(StatusCode, axum::Json<AdminOut>)> {
    let username = admin_username(&body.username)?;
    validate::new_password("password", &body.password, ADMIN_PASSWORD_MIN)?;
    let hash = passwords::hash(Secret::new(body.password)).await;
    let r = auth.record("admin.created", "admin", None, vec!["username", "password"]);
    let admin = app
        .store
        .create_admin(
            &username,
            hash,
            body.must_change_password.unwrap_or(true),
            r,
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json((&admin).into())))
}

/// Refuses to leave the system without an enabled administrator.
async fn ensure_another_enabled(app: &App, id: AdminId, field: &str) -> ApiResult<()> {
    let others = app
        .store
        .list_admins()
        .await?
        .into_iter()
        .filter(|a| a.enabled && a.id != id)
        .count();
    if others == 0 {
        return Err(ApiError::invalid(
            field,
            "would leave no enabled administrator",
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminPatch {
    pub enabled: Option<bool>,
}

/// `PATCH /admins/{id}`: enable or disable (disabling ends their sessions).
pub async fn update(
    State(app): State<App>,
    auth: AdminAuth,
    PathId(id): PathId,
    Json(body): Json<AdminPatch>,
) -> ApiResult<axum::Json<AdminOut>> {
    let id = AdminId(id);
    let current = app.store.get_admin(id).await?;
    if body.enabled == Some(false) {
        if id == auth.admin.id {
            return Err(ApiError::invalid(
                "enabled",
                "you cannot disable your own account",
            ));
        }
        ensure_another_enabled(&app, id, "enabled").await?;
    }
    let changed = if body.enabled.is_some_and(|e| e != current.enabled) {
        vec!["enabled"]
    } else {
        vec![]
    };
    let r = auth.record("admin.updated", "admin", Some(id.to_string()), changed);
    let changes = AdminChanges {
        enabled: body.enabled,
        ..Default::default()
    };
    Ok(axum::Json(
        (&app.store.update_admin(id, changes, r).await?).into(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetIn {
    pub password: String,
    /// Default `true`.
    pub must_change_password: Option<bool>,
}

/// `POST /admins/{id}/password`: sets a new password (ends their sessions).
pub async fn reset_password(
    State(app): State<App>,
    auth: AdminAuth,
    PathId(id): PathId,
    Json(body): Json<ResetIn>,
) -> ApiResult<axum::Json<AdminOut>> {
    let id = AdminId(id);
    app.store.get_admin(id).await?;
    validate::new_password("password", &body.password, ADMIN_PASSWORD_MIN)?;
    let hash = passwords::hash(Secret::new(body.password)).await;
    let r = auth.record(
        "admin.password_reset",
        "admin",
        Some(id.to_string()),
        vec!["password"],
    );
    let changes = AdminChanges {
        password: Some((hash, body.must_change_password.unwrap_or(true))),
        ..Default::default()
    };
    Ok(axum::Json(
        (&app.store.update_admin(id, changes, r).await?).into(),
    ))
}

pub async fn delete(
    State(app): State<App>,
    auth: AdminAuth,
    PathId(id): PathId,
) -> ApiResult<StatusCode> {
    let id = AdminId(id);
    app.store.get_admin(id).await?;
    if id == auth.admin.id {
        return Err(ApiError::invalid(
            "id",
            "you cannot delete your own account",
        ));
    }
    ensure_another_enabled(&app, id, "id").await?;
    let r = auth.record("admin.deleted", "admin", Some(id.to_string()), vec![]);
    app.store.delete_admin(id, r).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /admins/{id}/subject-export`: what the system holds about an
/// administrator, as a ZIP (API and portal). Audited.
pub async fn subject_export_response(
    app: &App,
    auth: &AdminAuth,
    id: AdminId,
) -> ApiResult<axum::response::Response> {
    super::audited_zip(
        app,
        auth,
        crate::subject::export_admin(app, id).await,
        "admin.subject_exported",
        "admin",
        id.to_string(),
        &format!("admin-{id}.zip"),
    )
    .await
}

pub async fn subject_export(
    State(app): State<App>,
    auth: AdminAuth,
    PathId(id): PathId,
) -> ApiResult<axum::response::Response> {
    subject_export_response(&app, &auth, AdminId(id)).await
}
