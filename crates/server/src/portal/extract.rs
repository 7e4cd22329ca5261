//! Portal sessions (cookie), CSRF checks and form bodies.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use openturret_domain::Timestamp;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::layout;
use crate::App;
use crate::audit::AuditContext;
use crate::http::extract::{AdminAuth, token_hash};

pub const SESSION_COOKIE: &str = "turret_session";
pub const LOGIN_COOKIE: &str = "turret_login";

/// A signed-in administrator in the portal.
#[derive(Clone)]
pub struct Portal {
    pub auth: AdminAuth,
    /// SHA-256 of the session token: the key of per-session state.
    pub session: [u8; 32],
    /// The CSRF token every form of this session carries.
    pub csrf: String,
    /// The one-time message left for this session, taken by the page a
    /// GET renders.
    pub notice: Option<String>,
}

impl Portal {
    pub async fn flash(&self, app: &App, message: impl Into<String>) {
        app.portal.flash(self.session, message).await;
    }
}

/// The value of cookie `name`, if the request has it.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// A `Set-Cookie` value with every protection on.
pub fn set_cookie(name: &str, value: &str) -> String {
    format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Strict")
}

pub fn clear_cookie(name: &str) -> String {
    format!("{name}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// The CSRF token of a session: derived from the session token's hash,
/// which only the server and the cookie holder can know.
pub fn csrf_for(session: &[u8; 32]) -> String {
    let mut h = Sha256::new();
    h.update(b"openturret-portal-csrf-v1");
    h.update(session);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Constant-time string comparison.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn to_login() -> Response {
    Redirect::to("/login").into_response()
}

/// Refuses requests a browser says came from another site.
pub fn cross_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site")
}

pub fn forbidden(message: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        layout::bare("Request refused", message),
    )
        .into_response()
}

async fn session(
    parts: &mut Parts,
    app: &App,
    allow_must_change: bool,
) -> Result<Portal, Response> {
    let token = cookie(&parts.headers, SESSION_COOKIE).ok_or_else(to_login)?;
    let session = token_hash(&token);
    let admin = app
        .store
        .session_admin(session, Timestamp::now())
        .await
        .map_err(|e| crate::http::error::ApiError::from(e).into_response())?
        .ok_or_else(to_login)?;
    if admin.must_change_password && !allow_must_change {
        return Err(Redirect::to("/password").into_response());
    }
    let ctx = AuditContext::from_request_parts(parts, app)
        .await
        .map_err(|e| e.into_response())?;
    let notice = if parts.method == Method::GET {
        app.portal.take_flash(session).await
    } else {
        None
    };
    Ok(Portal {
        auth: AdminAuth { admin, ctx },
        session,
        csrf: csrf_for(&session),
        notice,
    })
}

impl FromRequestParts<App> for Portal {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let allow = parts.uri.path() == "/password" && parts.method == Method::GET;
        session(parts, app, allow).await
    }
}

/// A POSTed form from a signed-in administrator, its CSRF token checked.
/// `T` is read from the same body (unknown fields, such as `_csrf`, are
/// ignored).
pub struct PortalForm<T>(pub Portal, pub T);

impl<T: DeserializeOwned> FromRequest<App> for PortalForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, app: &App) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        if cross_site(&parts.headers) {
            return Err(forbidden(
                "This request came from another site and was refused.",
            ));
        }
        let allow = parts.uri.path() == "/password" || parts.uri.path() == "/logout";
        let portal = session(&mut parts, app, allow).await?;
        let bytes = axum::body::to_bytes(body, 1 << 20)
            .await
            .map_err(|_| (StatusCode::PAYLOAD_TOO_LARGE, "form too large").into_response())?;
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes)
            .map_err(|_| (StatusCode::BAD_REQUEST, "malformed form").into_response())?;
        let sent = pairs
            .iter()
            .find(|(k, _)| k == "_csrf")
            .map(|(_, v)| v.as_str());
        if !sent.is_some_and(|s| same(s, &portal.csrf)) {
            return Err(forbidden(
                "This form has expired or did not come from this portal. Go back, reload the page and try again.",
            ));
        }
        let value = serde_urlencoded::from_bytes(&bytes).map_err(|e| {
            (StatusCode::UNPROCESSABLE_ENTITY, format!("form: {e}")).into_response()
        })?;
        Ok(PortalForm(portal, value))
    }
}
