//! The API interface for external applications (issue 7): read-only
//! queries under `/ext/v1`, behind an API key (`Authorization: Bearer`)
//! and off until an administrator switches the API interface on (SPEC rule
//! 11). Each answer holds only what the key's scope allows.

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use openturret_domain::Timestamp;
use openturret_domain::model::ApiKey;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::App;
use crate::report::cti_call_json;
use crate::telephony;
use crate::tls::ClientAddr;

fn refuse(code: StatusCode, message: &str) -> Response {
    (
        code,
        axum::Json(json!({"error": {"code": code.as_u16(), "message": message}})),
    )
        .into_response()
}

/// The key of an allowed request, needing event kind `needs` (or CDR access
/// for `"cdrs"`).
async fn key(
    app: &App,
    headers: &HeaderMap,
    ip: std::net::IpAddr,
    needs: &str,
) -> Result<ApiKey, Response> {
    match app.store.get_settings().await {
        Ok(s) if s.api_enabled => {}
        Ok(_) => {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "the API interface is switched off",
            ));
        }
        Err(_) => return Err(refuse(StatusCode::INTERNAL_SERVER_ERROR, "internal error")),
    }
    let k = crate::cti::authenticate(app, headers, ip, needs)
        .await
        .map_err(|(code, m)| refuse(code, m))?;
    let allowed = if needs == "cdrs" {
        k.scope.cdrs
    } else {
        k.scope.allows_event(needs)
    };
    if !allowed {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "this key's scope does not cover that",
        ));
    }
    Ok(k)
}

/// `GET /ext/v1/calls`: calls in progress on the key's lines.
pub async fn calls(
    State(app): State<App>,
    ConnectInfo(a): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
) -> Response {
    let k = match key(&app, &headers, a.0.ip(), "calls").await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let calls: Vec<Value> = telephony::ongoing(&app)
        .iter()
        .filter(|c| k.scope.allows_line(c.line))
        .map(|c| cti_call_json(&app, c))
        .collect();
    axum::Json(json!({"calls": calls})).into_response()
}

/// `GET /ext/v1/lines`: the key's lines and their registration states.
pub async fn lines(
    State(app): State<App>,
    ConnectInfo(a): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
) -> Response {
    let k = match key(&app, &headers, a.0.ip(), "lines").await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let Ok(all) = app.store.list_lines().await else {
        return refuse(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
    };
    let lines: Vec<Value> = all
        .iter()
        .filter(|l| k.scope.allows_line(l.id))
        .map(|l| {
            let st = telephony::line_state(&app, l.id);
            json!({"line_id": l.id.0, "name": l.fields.name, "display_name": l.fields.display_name,
                   "state": st.name(), "reason": st.reason()})
        })
        .collect();
    axum::Json(json!({"lines": lines})).into_response()
}

/// `GET /ext/v1/phones`: the profiles logged in at a turret (keys on every
/// line only).
pub async fn phones(
    State(app): State<App>,
    ConnectInfo(a): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
) -> Response {
    let k = match key(&app, &headers, a.0.ip(), "phones").await {
        Ok(k) => k,
        Err(r) => return r,
    };
    if k.scope.lines.is_some() {
        return refuse(
            StatusCode::FORBIDDEN,
            "phone status is for keys on every line",
        );
    }
    let ids: Vec<i64> = app.sessions.profiles().iter().map(|p| p.0).collect();
    axum::Json(json!({"logged_in_profiles": ids})).into_response()
}

#[derive(Deserialize)]
pub struct Range {
    from: Option<String>,
    to: Option<String>,
    limit: Option<i64>,
}

fn parse_time(field: &str, v: &Option<String>, default: Timestamp) -> Result<Timestamp, String> {
    match v {
        None => Ok(default),
        Some(t) => super::parse_ts(field, t)
            .map_err(|_| format!("{field} must be a time such as 2026-11-27T10:00:00Z")),
    }
}

/// `GET /ext/v1/cdrs?from=&to=&limit=`: call data records made in
/// [from, to), oldest first, on the key's lines, with the fields the
/// administrator has switched on.
pub async fn cdrs(
    State(app): State<App>,
    ConnectInfo(a): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    Query(q): Query<Range>,
) -> Response {
    let k = match key(&app, &headers, a.0.ip(), "cdrs").await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let (from, to) = match (
        parse_time("from", &q.from, Timestamp(0)),
        parse_time("to", &q.to, Timestamp(i64::MAX)),
    ) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(m), _) | (_, Err(m)) => return refuse(StatusCode::UNPROCESSABLE_ENTITY, &m),
    };
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let filter = openturret_store::CdrFilter {
        from,
        to,
        lines: k.scope.lines.clone(),
        profile: None,
        limit,
    };
    let (Ok(list), Ok(s)) = (
        app.store.list_cdrs(&filter).await,
        app.store.get_settings().await,
    ) else {
        return refuse(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
    };
    let cdrs: Vec<Value> = list
        .iter()
        .map(|c| crate::cdr::json(&app, c, s.cdr_fields))
        .collect();
    axum::Json(json!({"cdrs": cdrs})).into_response()
}
