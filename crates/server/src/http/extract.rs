//! Extractors: JSON bodies and queries whose errors name the field, numeric
//! path ids (anything else is 404), the request context for audit entries,
//! and the authenticated administrator.

use std::net::{IpAddr, Ipv4Addr};

use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use openturret_domain::Timestamp;
use openturret_domain::audit::AuditRecord;
use openturret_domain::model::Admin;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::error::ApiError;
use crate::App;
use crate::audit::AuditContext;
use crate::tls::ClientAddr;

/// A JSON body. Bad JSON, a missing or unknown field or a wrong type
/// answers 422 naming the field.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::BadBody(e.body_text()))?;
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        match serde_path_to_error::deserialize(de) {
            Ok(v) => Ok(Json(v)),
            Err(e) => {
                let path = e.path().to_string();
                let inner = e.into_inner();
                // serde names missing and unknown fields in its message.
                if path == "." || path.is_empty() {
                    Err(ApiError::BadBody(format!("request body: {inner}")))
                } else {
                    Err(ApiError::invalid(path, inner.to_string()))
                }
            }
        }
    }
}

/// Query parameters; a bad one answers 422.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e: QueryRejection| ApiError::BadBody(e.body_text()))
    }
}

/// The one numeric id of a path such as `/profiles/{id}`.
pub struct PathId(pub i64);

/// The two numeric ids of a path such as `/profiles/{id}/contacts/{cid}`.
pub struct PathIds(pub i64, pub i64);

async fn path_ids(parts: &mut Parts) -> Result<Vec<i64>, ApiError> {
    let Path(params) = Path::<Vec<(String, String)>>::from_request_parts(parts, &())
        .await
        .map_err(|_| ApiError::NotFound("resource"))?;
    params
        .iter()
        .map(|(_, v)| v.parse::<i64>().map_err(|_| ApiError::NotFound("resource")))
        .collect()
}

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match path_ids(parts).await?.as_slice() {
            [a] => Ok(PathId(*a)),
            _ => Err(ApiError::NotFound("resource")),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PathIds {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match path_ids(parts).await?.as_slice() {
            [a, b] => Ok(PathIds(*a, *b)),
            _ => Err(ApiError::NotFound("resource")),
        }
    }
}

/// The computer name the client claims in `X-Client-Host`. Nothing
/// proves it (any client can send any name), so it is recorded as a claim:
/// host-name characters only (letters, digits, `-`, `.`, `_`), at most
/// [`CLIENT_HOST_MAX`] of them; a header with anything else is recorded
/// as `invalid`, so the log cannot be fed markup, spoofed separators or
/// bulk text.
fn client_host(headers: &HeaderMap) -> String {
    let Some(v) = headers.get("x-client-host") else {
        return String::new();
    };
    let claim = v.to_str().unwrap_or_default().trim();
    let fits = !claim.is_empty()
        && claim.len() <= CLIENT_HOST_MAX
        && claim
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if fits {
        claim.to_string()
    } else {
        "invalid".into()
    }
}

/// The longest computer name recorded (a DNS label is at most 63).
pub const CLIENT_HOST_MAX: usize = 63;

impl FromRequestParts<App> for AuditContext {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let client_ip = parts
            .extensions
            .get::<ConnectInfo<ClientAddr>>()
            .map(|c| c.0.0.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        Ok(AuditContext {
            client_ip,
            client_host: client_host(&parts.headers),
            server_host: app.host.clone(),
        })
    }
}

/// The SHA-256 of a bearer token: what the session table stores.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// An authenticated administrator whose password needs no change: what
/// every admin endpoint requires.
#[derive(Clone)]
pub struct AdminAuth {
    pub admin: Admin,
    pub ctx: AuditContext,
}

/// An authenticated administrator who may still have to change the
/// one-time password: accepted only by the password change, logout and
/// "who am I" endpoints.
pub struct AnyAdminAuth {
    pub admin: Admin,
    pub ctx: AuditContext,
    pub token_hash: [u8; 32],
}

impl FromRequestParts<App> for AnyAdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(ApiError::Unauthorized("send Authorization: Bearer <token>"))?;
        let hash = token_hash(token.trim());
        let admin = app
            .store
            .session_admin(hash, Timestamp::now())
            .await?
            .ok_or(ApiError::Unauthorized(
                "the token is unknown, expired or revoked",
            ))?;
        let ctx = AuditContext::from_request_parts(parts, app).await?;
        Ok(AnyAdminAuth {
            admin,
            ctx,
            token_hash: hash,
        })
    }
}

impl FromRequestParts<App> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let any = AnyAdminAuth::from_request_parts(parts, app).await?;
        if any.admin.must_change_password {
            return Err(ApiError::Forbidden(
                "password_change_required",
                "change your one-time password first: POST /api/v1/auth/password".into(),
            ));
        }
        Ok(AdminAuth {
            admin: any.admin,
            ctx: any.ctx,
        })
    }
}

impl AdminAuth {
    /// An audit record of a successful action by this administrator.
    pub fn record(
        &self,
        event_type: &str,
        object_type: &str,
        object_id: Option<String>,
        changes: Vec<&str>,
    ) -> AuditRecord {
        self.ctx.record(
            &self.admin.username,
            event_type,
            object_type,
            object_id,
            changes,
        )
    }
}
