//! The admin REST API under `/api/v1` (JSON over HTTPS), `/healthz` and
//! `/api/openapi.json`.
//!
//! Each resource module holds its wire types (request and response JSON,
//! converted explicitly from and to domain types: STYLE habit 2) and its
//! handlers. Every handler that changes data builds the audit record and
//! hands it to the store with the change.

pub mod admins;
pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod backups;
pub mod contacts;
pub mod error;
pub mod ext;
pub mod extract;
pub mod lines;
pub mod profiles;
pub mod settings;
pub mod transfer;

use std::time::{Duration, Instant, UNIX_EPOCH};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use openturret_domain::Timestamp;
use serde::Deserialize;

use crate::App;
use error::ApiError;

pub fn router(app: App) -> Router {
    let api = Router::new()
        .route("/auth/login", post(auth::login))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/password", post(auth::change_password))
        .route("/auth/me", get(auth::me))
        .route("/lockouts", get(auth::lockouts))
        .route("/lockouts/clear", post(auth::clear_lockout))
        .route("/admins", get(admins::list).post(admins::create))
        .route(
            "/admins/{id}",
            get(admins::get)
                .patch(admins::update)
                .delete(admins::delete),
        )
        .route("/admins/{id}/password", post(admins::reset_password))
        .route("/profiles", get(profiles::list).post(profiles::create))
        .route(
            "/profiles/{id}",
            get(profiles::get)
                .patch(profiles::update)
                .delete(profiles::delete),
        )
        .route(
            "/profiles/{id}/erasure-preview",
            get(profiles::erasure_preview),
        )
        .route(
            "/profiles/{id}/subject-export",
            get(profiles::subject_export),
        )
        .route(
            "/profiles/{id}/contacts",
            get(contacts::list_local).post(contacts::create_local),
        )
        .route(
            "/profiles/{id}/contacts/{contact_id}",
            get(contacts::get_local)
                .patch(contacts::update_local)
                .delete(contacts::delete_local),
        )
        .route(
            "/profiles/{id}/speed-dials",
            get(contacts::list_keys).post(contacts::create_key),
        )
        .route(
            "/profiles/{id}/speed-dials/{key_id}",
            get(contacts::get_key)
                .patch(contacts::update_key)
                .delete(contacts::delete_key),
        )
        .route("/profiles/{id}/lines", get(lines::list_profile_lines))
        .route(
            "/profiles/{id}/lines/{line_id}",
            put(lines::assign).delete(lines::unassign),
        )
        .route(
            "/global-contacts",
            get(contacts::search_global).post(contacts::create_global),
        )
        .route(
            "/global-contacts/{id}",
            get(contacts::get_global)
                .patch(contacts::update_global)
                .delete(contacts::delete_global),
        )
        .route("/lines", get(lines::list).post(lines::create))
        .route(
            "/lines/{id}",
            get(lines::get).patch(lines::update).delete(lines::delete),
        )
        .route("/mlc", get(lines::mlc_status))
        .route("/api-keys", get(api_keys::list).post(api_keys::create))
        .route("/api-keys/{id}", axum::routing::delete(api_keys::revoke))
        .route("/settings", get(settings::get).patch(settings::update))
        .route(
            "/settings/pseudonym-key/rotate",
            post(settings::rotate_pseudonym_key),
        )
        .route(
            "/consents",
            get(profiles::list_consents).post(profiles::create_consent),
        )
        .route("/consents/{id}", get(profiles::get_consent))
        .route("/consents/{id}/withdraw", post(profiles::withdraw_consent))
        .route(
            "/import/{kind}",
            post(transfer::import).layer(axum::extract::DefaultBodyLimit::max(
                transfer::MAX_IMPORT_BYTES,
            )),
        )
        .route("/export/{kind}", get(transfer::export))
        .route("/privacy-report", get(privacy_report))
        .route("/backups", get(backups::list).post(backups::create))
        .route("/backups/key", get(backups::get_key).put(backups::put_key))
        .route("/backups/verify", post(backups::verify))
        .route("/backups/restore", post(backups::restore))
        .route("/audit", get(audit::list))
        .route("/audit/verify", get(audit::verify));
    Router::new()
        .nest("/api/v1", api)
        .merge(crate::portal::routes())
        .merge(crate::turret::routes())
        .route("/healthz", get(health))
        // WebSockets over HTTP/2 arrive as CONNECT, over HTTP/1.1 as GET.
        .route("/client", axum::routing::any(crate::client::upgrade))
        .route("/cti", axum::routing::any(crate::cti::upgrade))
        .route("/ext/v1/calls", get(ext::calls))
        .route("/ext/v1/lines", get(ext::lines))
        .route("/ext/v1/phones", get(ext::phones))
        .route("/ext/v1/cdrs", get(ext::cdrs))
        .route("/api/openapi.json", get(openapi))
        .fallback(|| async { ApiError::NotFound("resource") })
        .layer(middleware::from_fn(headers_and_log))
        .with_state(app)
}

/// `GET /healthz`: 200 when the database answers.
async fn health(State(app): State<App>) -> Response {
    match app.store.count_admins().await {
        Ok(_) => Json(serde_json::json!({"status": "ok"})).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({"status": "unavailable"})),
            )
                .into_response()
        }
    }
}

/// `GET /privacy-report`: the live privacy report (SPEC §4).
async fn privacy_report(
    State(app): State<App>,
    _a: extract::AdminAuth,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(
        crate::privacy::report(&app)
            .await
            .map_err(ApiError::Internal)?,
    ))
}

async fn openapi() -> Json<serde_json::Value> {
    Json(crate::openapi::document())
}

/// Security headers on every response, and one log line per request with
/// the route pattern (never the raw path or query, which may hold personal
/// data) and the status.
async fn headers_and_log(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "(unmatched)".into());
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    tracing::info!(
        %method,
        route,
        status = res.status().as_u16(),
        ms = start.elapsed().as_millis() as u64,
        "request"
    );
    res
}

/// RFC 3339 UTC with milliseconds, as every API time is written.
pub fn ts(t: Timestamp) -> String {
    let st = UNIX_EPOCH + Duration::from_millis(t.0.max(0) as u64);
    humantime::format_rfc3339_millis(st).to_string()
}

/// Parses an RFC 3339 time given in `field`.
pub fn parse_ts(field: &str, s: &str) -> Result<Timestamp, ApiError> {
    let st = humantime::parse_rfc3339_weak(s.trim()).map_err(|_| {
        ApiError::invalid(
            field,
            "must be an RFC 3339 time such as 2026-01-31T09:00:00Z",
        )
    })?;
    let ms = st
        .duration_since(UNIX_EPOCH)
        .map_err(|_| ApiError::invalid(field, "must not be before 1970"))?
        .as_millis();
    Ok(Timestamp(ms as i64))
}

/// Paging parameters of list endpoints.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Paging {
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

/// Checks a `limit` parameter: default `default`, at most `max`.
pub fn limit(v: Option<i64>, default: i64, max: i64) -> Result<i64, ApiError> {
    match v {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::invalid(
            "limit",
            format!("must be between 1 and {max}"),
        )),
    }
}

/// For PATCH bodies: tells "absent" (`None`) from `null` (`Some(None)`).
pub fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}
