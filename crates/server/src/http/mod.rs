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
pub mod events;
pub mod ext;
pub mod extract;
pub mod lines;
pub mod profiles;
pub mod recorders;
pub mod settings;
pub mod transfer;

use std::time::{Instant, UNIX_EPOCH};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use openturret_domain::Timestamp;
use serde::Deserialize;

use crate::App;
use error::ApiError;

/// A ZIP export as a download, audited as `event` on `object_type`
/// `object_id` (the subject access exports of profiles and
/// administrators).
pub(crate) async fn audited_zip(
    app: &App,
    auth: &extract::AdminAuth,
    zip: anyhow::Result<Vec<u8>>,
    event: &str,
    object_type: &str,
    object_id: String,
    filename: &str,
) -> error::ApiResult<Response> {
    let zip = zip.map_err(|e| match e.downcast::<openturret_store::StoreError>() {
        Ok(se) => ApiError::from(se),
        Err(e) => ApiError::Internal(e),
    })?;
    let r = auth.record(event, object_type, Some(object_id), vec![]);
    app.store.append_audit(r).await?;
    let mut res = zip.into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(res)
}

/// Routes that record what they route, so the OpenAPI document can be
/// checked against them both ways (`openapi::tests`).
struct Routes {
    router: Router<App>,
    prefix: &'static str,
    ops: Vec<(&'static str, String)>,
}

macro_rules! method {
    ($name:ident) => {
        fn $name<H, T>(self, path: &'static str, h: H) -> Self
        where
            H: axum::handler::Handler<T, App>,
            T: 'static,
        {
            self.on(stringify!($name), path, axum::routing::$name(h))
        }
    };
}

impl Routes {
    fn new(prefix: &'static str) -> Routes {
        Routes {
            router: Router::new(),
            prefix,
            ops: Vec::new(),
        }
    }

    fn on(
        mut self,
        method: &'static str,
        path: &'static str,
        mr: axum::routing::MethodRouter<App>,
    ) -> Self {
        self.ops.push((method, format!("{}{path}", self.prefix)));
        self.router = self.router.route(path, mr);
        self
    }

    method!(get);
    method!(post);
    method!(put);
    method!(patch);
    method!(delete);
}

/// The admin API under `/api/v1`.
fn api_routes() -> Routes {
    Routes::new("/api/v1")
        .post("/auth/login", auth::login)
        .post("/auth/logout", auth::logout)
        .post("/auth/password", auth::change_password)
        .get("/auth/me", auth::me)
        .get("/lockouts", auth::lockouts)
        .post("/lockouts/clear", auth::clear_lockout)
        .get("/admins", admins::list)
        .post("/admins", admins::create)
        .get("/admins/{id}", admins::get)
        .patch("/admins/{id}", admins::update)
        .delete("/admins/{id}", admins::delete)
        .post("/admins/{id}/password", admins::reset_password)
        .get("/admins/{id}/subject-export", admins::subject_export)
        .get("/profiles", profiles::list)
        .post("/profiles", profiles::create)
        .get("/profiles/{id}", profiles::get)
        .patch("/profiles/{id}", profiles::update)
        .delete("/profiles/{id}", profiles::delete)
        .get("/profiles/{id}/erasure-preview", profiles::erasure_preview)
        .get("/profiles/{id}/subject-export", profiles::subject_export)
        .get("/profiles/{id}/contacts", contacts::list_local)
        .post("/profiles/{id}/contacts", contacts::create_local)
        .get("/profiles/{id}/contacts/{contact_id}", contacts::get_local)
        .patch(
            "/profiles/{id}/contacts/{contact_id}",
            contacts::update_local,
        )
        .delete(
            "/profiles/{id}/contacts/{contact_id}",
            contacts::delete_local,
        )
        .get("/profiles/{id}/speed-dials", contacts::list_keys)
        .post("/profiles/{id}/speed-dials", contacts::create_key)
        .get("/profiles/{id}/speed-dials/{key_id}", contacts::get_key)
        .patch("/profiles/{id}/speed-dials/{key_id}", contacts::update_key)
        .delete("/profiles/{id}/speed-dials/{key_id}", contacts::delete_key)
        .get("/profiles/{id}/lines", lines::list_profile_lines)
        .put("/profiles/{id}/lines/{line_id}", lines::assign)
        .delete("/profiles/{id}/lines/{line_id}", lines::unassign)
        .get("/global-contacts", contacts::search_global)
        .post("/global-contacts", contacts::create_global)
        .get("/global-contacts/{id}", contacts::get_global)
        .patch("/global-contacts/{id}", contacts::update_global)
        .delete("/global-contacts/{id}", contacts::delete_global)
        .get("/lines", lines::list)
        .post("/lines", lines::create)
        .get("/lines/{id}", lines::get)
        .patch("/lines/{id}", lines::update)
        .delete("/lines/{id}", lines::delete)
        .get("/mlc", lines::mlc_status)
        .get("/recorders", recorders::list)
        .post("/recorders", recorders::create)
        .get("/recorders/{id}", recorders::get)
        .patch("/recorders/{id}", recorders::update)
        .delete("/recorders/{id}", recorders::delete)
        .get("/recordings", recorders::log)
        .get("/recording-notice", recorders::get_notice)
        .put("/recording-notice", recorders::put_notice)
        .delete("/recording-notice", recorders::delete_notice)
        .get("/api-keys", api_keys::list)
        .post("/api-keys", api_keys::create)
        .delete("/api-keys/{id}", api_keys::revoke)
        .get("/settings", settings::get)
        .patch("/settings", settings::update)
        .post(
            "/settings/pseudonym-key/rotate",
            settings::rotate_pseudonym_key,
        )
        .get("/consents", profiles::list_consents)
        .post("/consents", profiles::create_consent)
        .get("/consents/{id}", profiles::get_consent)
        .post("/consents/{id}/withdraw", profiles::withdraw_consent)
        .on(
            "post",
            "/import/{kind}",
            post(transfer::import).layer(axum::extract::DefaultBodyLimit::max(
                transfer::MAX_IMPORT_BYTES,
            )),
        )
        .get("/export/{kind}", transfer::export)
        .get("/privacy-report", privacy_report)
        .get("/backups", backups::list)
        .post("/backups", backups::create)
        .get("/backups/key", backups::get_key)
        .put("/backups/key", backups::put_key)
        .post("/backups/verify", backups::verify)
        .post("/backups/restore", backups::restore)
        .get("/audit", audit::list)
        .get("/audit/verify", audit::verify)
        .get("/events", events::list)
}

/// The query API for external applications and the health check.
fn ext_routes() -> Routes {
    Routes::new("")
        .get("/healthz", health)
        .get("/ext/v1/calls", ext::calls)
        .get("/ext/v1/lines", ext::lines)
        .get("/ext/v1/phones", ext::phones)
        .get("/ext/v1/cdrs", ext::cdrs)
}

/// Every operation routed in the admin and query APIs, as (method, path).
pub fn operations() -> Vec<(&'static str, String)> {
    let mut ops = api_routes().ops;
    ops.extend(ext_routes().ops);
    ops
}

pub fn router(app: App) -> Router {
    let api = api_routes().router;
    Router::new()
        .nest("/api/v1", api)
        .merge(crate::portal::routes())
        .merge(crate::turret::routes())
        .merge(ext_routes().router)
        // WebSockets over HTTP/2 arrive as CONNECT, over HTTP/1.1 as GET.
        .route("/client", axum::routing::any(crate::client::upgrade))
        .route("/cti", axum::routing::any(crate::cti::upgrade))
        .route("/api/openapi.json", get(openapi))
        .fallback(|| async { ApiError::NotFound("resource") })
        .layer(middleware::from_fn_with_state(app.clone(), headers_and_log))
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
async fn headers_and_log(State(app): State<App>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let http1 = req.version() < axum::http::Version::HTTP_2;
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "(unmatched)".into());
    let mut res = next.run(req).await;
    if let Some(f) = res.extensions().get::<error::InternalFailure>() {
        app.events.raise(f.event(&route));
    }
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
    // An HTTP/1.1 connection waiting for its next request is closed once
    // the header timeout passes (hyper's header timer runs between
    // requests): said to clients, so those that read it do not send on a
    // connection about to close.
    if http1
        && let Ok(v) = HeaderValue::from_str(&format!(
            "timeout={}",
            app.config.http.header_timeout_secs.max(1)
        ))
    {
        h.insert(HeaderName::from_static("keep-alive"), v);
    }
    tracing::info!(
        %method,
        route,
        status = res.status().as_u16(),
        ms = start.elapsed().as_millis() as u64,
        "request"
    );
    res
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// Drift is impossible by construction: the routes record what they
    /// route, and this compares them with the document both ways.
    #[test]
    fn the_document_and_the_router_name_the_same_operations() {
        let routed: BTreeSet<(String, String)> = super::operations()
            .into_iter()
            .map(|(m, p)| (m.to_string(), p))
            .collect();
        let doc = crate::openapi::document();
        let documented: BTreeSet<(String, String)> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(p, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .map(move |m| (m.clone(), p.clone()))
            })
            .collect();
        let undocumented: Vec<_> = routed.difference(&documented).collect();
        let unrouted: Vec<_> = documented.difference(&routed).collect();
        assert!(
            undocumented.is_empty() && unrouted.is_empty(),
            "routed but not documented: {undocumented:?}\ndocumented but not routed: {unrouted:?}"
        );
    }
}
