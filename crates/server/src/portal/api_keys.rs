//! API keys of external applications (issue 7): list, create (the key is
//! shown once, on the page that answers the creation), revoke.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::html;

use super::extract::{Portal, PortalForm};
use super::layout::{self, FormState, button_form, checkbox, field, on, page_with_status};
use super::profiles::done;
use crate::App;
use crate::http::api_keys as api;
use crate::http::error::ApiError;
use crate::http::extract::PathId;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/api-keys", get(list).post(create))
        .route("/api-keys/{id}/revoke", post(revoke))
}

async fn render(
    app: &App,
    p: &Portal,
    create: &FormState,
    created: Option<&api::CreatedOut>,
    status: StatusCode,
) -> Response {
    let (keys, lines, settings) = match (
        app.store.list_api_keys().await,
        app.store.list_lines().await,
        app.store.get_settings().await,
    ) {
        (Ok(k), Ok(l), Ok(s)) => (k, l, s),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            return ApiError::from(e).into_response();
        }
    };
    let line_name = |id: i64| {
        lines
            .iter()
            .find(|l| l.id.0 == id)
            .map_or(format!("line {id}"), |l| l.fields.name.clone())
    };
    let content = html! {
        @if let Some(c) = created {
            section.card.notice role="status" {
                h2 { "The key of " (c.key.name) }
                p { "Copy it now: it is shown this once and stored only as a hash. Lost keys are revoked and replaced, never recovered." }
                pre { code #new-key { (c.token) } }
            }
        }
        p {
            "CTI interface: "
            @if settings.cti_enabled { span.badge.on { "on" } } @else { span.badge.bad { "off" } " (switch it on in " a href="/settings" { "Settings" } ")" }
            ". Applications connect to " code { "wss://<this server>/cti" } " with the header " code { "Authorization: Bearer <key>" } "."
        }
        table {
            thead { tr { th { "Name" } th { "Lines" } th { "Events" } th { "CDRs" } th { "Expires" } th { "Last used" } th { "State" } th { span.muted { "Actions" } } } }
            tbody {
                @for k in &keys {
                    @let out = api::ApiKeyOut::from(k.clone());
                    tr {
                        td { (out.name) }
                        td { @match &out.lines { None => "all", Some(l) => (l.iter().map(|id| line_name(*id)).collect::<Vec<_>>().join(", ")) } }
                        td { (out.events.join(", ")) }
                        td { @if out.cdrs { "yes" } @else { "no" } }
                        td { (out.expires_at.as_deref().unwrap_or("never")) }
                        td { (out.last_used_at.as_deref().unwrap_or("never")) }
                        td { @if out.active { span.badge.on { "active" } } @else if out.revoked_at.is_some() { span.badge.bad { "revoked" } } @else { span.badge { "expired" } } }
                        td.actions { @if out.revoked_at.is_none() { (button_form(p, &format!("/api-keys/{}/revoke", out.id), "Revoke", "small danger")) } }
                    }
                }
                @if keys.is_empty() { tr { td colspan="8" .muted { "No API keys yet." } } }
            }
        }
        section.card {
            h2 { "New API key" }
            @if let Some(e) = create.general_error(&["name", "expires_in_days"]) { p.error-box role="alert" { (e) } }
            form method="post" action="/api-keys" {
                (layout::csrf(p))
                (field(create, "Name (the application)", "name", "text", None))
                fieldset {
                    legend { "Lines it may follow (none ticked: every line)" }
                    @for l in &lines { (checkbox(create, &l.fields.name, &format!("line_{}", l.id.0), false)) }
                }
                fieldset {
                    legend { "What it receives" }
                    (checkbox(create, "Call status and caller identification", "calls", true))
                    (checkbox(create, "Line registration states", "lines", false))
                    (checkbox(create, "Phone status (turret logins; only for keys on every line)", "phones", false))
                    (checkbox(create, "Recording starts and failures (voice recorders)", "recording", false))
                    (checkbox(create, "The error log: what the components report (for network management)", "errors", false))
                    (checkbox(create, "Call data records", "cdrs", false))
                }
                (field(create, "Expires after (days)", "expires_in_days", "number", Some("Empty: never.")))
                button type="submit" { "Create key" }
            }
        }
    };
    page_with_status(p, "/api-keys", "API keys", status, content)
}

async fn list(State(app): State<App>, p: Portal) -> Response {
    let empty = FormState {
        form: "key",
        ..Default::default()
    };
    render(&app, &p, &empty, None, StatusCode::OK).await
}

async fn create(
    State(app): State<App>,
    PortalForm(p, f): PortalForm<std::collections::HashMap<String, String>>,
) -> Response {
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    let ticked = |k: &str| on(&f.get(k).cloned());
    let lines: Vec<i64> = f
        .keys()
        .filter_map(|k| k.strip_prefix("line_")?.parse().ok())
        .filter(|id: &i64| ticked(&format!("line_{id}")))
        .collect();
    let events = openturret_domain::model::EVENT_KINDS
        .iter()
        .copied()
        .filter(|e| ticked(e))
        .map(str::to_string)
        .collect();
    let days = get("expires_in_days");
    let expires = match days.trim() {
        "" => Ok(None),
        d => d
            .parse::<u32>()
            .map(Some)
            .map_err(|_| ApiError::invalid("expires_in_days", "must be a whole number of days")),
    };
    let result = match expires {
        Ok(expires_in_days) => {
            let body = api::ApiKeyIn {
                name: get("name"),
                lines: (!lines.is_empty()).then_some(lines),
                events,
                cdrs: ticked("cdrs"),
                expires_in_days,
            };
            api::create_key(&app, &p.auth, body).await
        }
        Err(e) => Err(e),
    };
    let empty = FormState {
        form: "key",
        ..Default::default()
    };
    match result {
        Ok(created) => render(&app, &p, &empty, Some(&created), StatusCode::CREATED).await,
        Err(e) => match layout::form_error(e) {
            Ok(err) => {
                let mut s = FormState::with_values(
                    "key",
                    &[("name", &get("name")), ("expires_in_days", &days)],
                );
                s.error = Some(err);
                render(&app, &p, &s, None, StatusCode::UNPROCESSABLE_ENTITY).await
            }
            Err(e) => e.into_response(),
        },
    }
}

async fn revoke(
    State(app): State<App>,
    PathId(id): PathId,
    PortalForm(p, _): PortalForm<super::auth::Empty>,
) -> Response {
    let r = api::revoke(State(app.clone()), p.auth.clone(), PathId(id))
        .await
        .map(|_| ());
    done(
        &app,
        &p,
        r,
        "/api-keys",
        "API key revoked; its connections were ended.",
        |_| StatusCode::UNPROCESSABLE_ENTITY.into_response(),
    )
    .await
}
