//! API keys for external applications (issue 7): created with a name, a
//! scope and an expiry; the key is shown once, in the creation's answer,
//! and stored only as its SHA-256; revoking one ends its connections.

use axum::extract::State;
use axum::http::StatusCode;
use openturret_domain::model::{ApiKey, ApiKeyScope, api_key_name};
use openturret_domain::{ApiKeyId, LineId, Timestamp};
use serde::{Deserialize, Serialize};

use super::error::ApiResult;
use super::extract::{AdminAuth, Json, PathId};
use crate::App;

#[derive(Serialize)]
pub struct ApiKeyOut {
    pub id: i64,
    pub name: String,
    /// `null`: every line.
    pub lines: Option<Vec<i64>>,
    pub events: Vec<String>,
    pub cdrs: bool,
    pub expires_at: Option<String>,
    pub created_at: String,
    pub revoked_at: Option<String>,
    pub last_used_at: Option<String>,
    pub active: bool,
}

impl From<ApiKey> for ApiKeyOut {
    fn from(k: ApiKey) -> Self {
        ApiKeyOut {
            id: k.id.0,
            active: k.is_active(Timestamp::now()),
            name: k.name,
            lines: k.scope.lines.map(|l| l.iter().map(|x| x.0).collect()),
            events: k.scope.events,
            cdrs: k.scope.cdrs,
            expires_at: k.expires_at.map(Timestamp::rfc3339),
            created_at: k.created_at.rfc3339(),
            revoked_at: k.revoked_at.map(Timestamp::rfc3339),
            last_used_at: k.last_used_at.map(Timestamp::rfc3339),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyIn {
    pub name: String,
    /// Line ids; absent or `null`: every line.
    #[serde(default)]
    pub lines: Option<Vec<i64>>,
    /// Any of `calls`, `lines`, `phones`.
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(default)]
    pub cdrs: bool,
    /// Days from now; absent: no expiry.
    #[serde(default)]
    pub expires_in_days: Option<u32>,
}

#[derive(Serialize)]
pub struct CreatedOut {
    pub key: ApiKeyOut,
    /// The API key itself: shown this once, never again.
    pub token: String,
}

pub async fn list(State(app): State<App>, _a: AdminAuth) -> ApiResult<axum::Json<Vec<ApiKeyOut>>> {
    Ok(axum::Json(
        app.store
            .list_api_keys()
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}

/// Creates a key (API and portal).
pub async fn create_key(app: &App, auth: &AdminAuth, b: ApiKeyIn) -> ApiResult<CreatedOut> {
    let name = api_key_name(&b.name)?;
    let scope = ApiKeyScope::new(
        b.lines.map(|l| l.into_iter().map(LineId).collect()),
        b.events,
        b.cdrs,
    )?;
    if let Some(lines) = &scope.lines {
        for l in lines {
            app.store.get_line(*l).await?;
        }
    }
    let expires_at = match b.expires_in_days {
        Some(0) | Some(3651..) => {
            return Err(super::error::ApiError::invalid(
                "expires_in_days",
                "must be between 1 and 3650",
            ));
        }
        Some(d) => Some(Timestamp(Timestamp::now().0 + d as i64 * 86_400_000)),
        None => None,
    };
    let token = crate::cti::new_token();
    let r = auth.record(
        "api_key.created",
        "api_key",
        None,
        vec!["name", "scope", "expires_at"],
    );
    let key = app
        .store
        .create_api_key(&name, &scope, expires_at, crate::cti::token_hash(&token), r)
        .await?;
    Ok(CreatedOut {
        key: key.into(),
        token,
    })
}

pub async fn create(
    State(app): State<App>,
    auth: AdminAuth,
    Json(b): Json<ApiKeyIn>,
) -> ApiResult<(StatusCode, axum::Json<CreatedOut>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(create_key(&app, &auth, b).await?),
    ))
}

/// `DELETE /api-keys/{id}`: revokes the key (kept, for the audit trail)
/// and ends its connections.
pub async fn revoke(
    State(app): State<App>,
    auth: AdminAuth,
    PathId(id): PathId,
) -> ApiResult<StatusCode> {
    let r = auth.record("api_key.revoked", "api_key", Some(id.to_string()), vec![]);
    app.store.revoke_api_key(ApiKeyId(id), r).await?;
    Ok(StatusCode::NO_CONTENT)
}
