//! Administrators: create, disable or enable, reset password.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::html;
use serde::Deserialize;

use super::extract::{Portal, PortalForm};
use super::layout::{self, FormState, button_form, checkbox, field, on, page_with_status};
use super::profiles::done;
use crate::App;
use crate::http::admins as api;
use crate::http::error::ApiError;
use crate::http::extract::{Json, PathId};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/admins", get(list).post(create))
        .route("/admins/{id}/enable", post(enable))
        .route("/admins/{id}/disable", post(disable))
        .route("/admins/{id}/password", post(reset))
        .route("/admins/{id}/export", get(export))
}

async fn render(
    app: &App,
    p: &Portal,
    create: &FormState,
    reset: Option<(i64, FormState)>,
    status: StatusCode,
) -> Response {
    let admins = match app.store.list_admins().await {
        Ok(a) => a,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let content = html! {
        table {
            thead { tr { th { "Username" } th { "State" } th { "Password" } th { span.muted { "Actions" } } } }
            tbody {
                @for a in &admins {
                    @let rs = match &reset { Some((id, s)) if *id == a.id.0 => s, _ => &FormState { form: "reset", ..Default::default() } };
                    tr {
                        td { (a.username) @if a.id == p.auth.admin.id { " " span.muted { "(you)" } } }
                        td { @if a.enabled { span.badge.on { "enabled" } } @else { span.badge.bad { "disabled" } } }
                        td { @if a.must_change_password { span.badge { "must change" } } @else { span.badge.on { "set" } } }
                        td.actions {
                            a.button.small.secondary href=(format!("/admins/{}/export", a.id))
                                title="Everything held about this administrator: the account and their audit trail (ZIP)" { "Export data" }
                            " "
                            @if a.id != p.auth.admin.id {
                                @if a.enabled {
                                    (button_form(p, &format!("/admins/{}/disable", a.id), "Disable", "small secondary"))
                                } @else {
                                    (button_form(p, &format!("/admins/{}/enable", a.id), "Enable", "small secondary"))
                                }
                                form.inline method="post" action=(format!("/admins/{}/password", a.id)) {
                                    (layout::csrf(p))
                                    label.muted for=(format!("reset-{}", a.id)) { " New password " }
                                    input id=(format!("reset-{}", a.id)) type="password" name="password" autocomplete="new-password"
                                        aria-invalid=[rs.error.is_some().then_some("true")];
                                    " " button.small type="submit" { "Reset password" }
                                    @if let Some((_, m)) = &rs.error { p.field-error role="alert" { (m) } }
                                }
                            }
                        }
                    }
                }
            }
        }
        section.card {
            h2 { "New administrator" }
            @if let Some(e) = create.general_error(&["username", "password"]) { p.error-box role="alert" { (e) } }
            form method="post" action="/admins" {
                (layout::csrf(p))
                (field(create, "Username", "username", "text", None))
                (field(create, "Initial password", "password", "password", Some("At least 12 characters.")))
                (checkbox(create, "Must choose a new password at first sign-in", "must_change_password", true))
                button type="submit" { "Create administrator" }
            }
        }
    };
    page_with_status(p, "/admins", "Administrators", status, content)
}

async fn list(State(app): State<App>, p: Portal) -> Response {
    render(
        &app,
        &p,
        &FormState {
            form: "admin",
            ..Default::default()
        },
        None,
        StatusCode::OK,
    )
    .await
}

#[derive(Deserialize)]
pub struct AdminForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    must_change_password: Option<String>,
}

async fn create(State(app): State<App>, PortalForm(p, f): PortalForm<AdminForm>) -> Response {
    let body = api::AdminIn {
        username: f.username.clone(),
        password: f.password,
        must_change_password: Some(on(&f.must_change_password)),
    };
    match api::create(State(app.clone()), p.auth.clone(), Json(body)).await {
        Ok(_) => {
            done(
                &app,
                &p,
                Ok(()),
                "/admins",
                "Administrator created.",
                |_| unreachable_response(),
            )
            .await
        }
        Err(e) => match layout::form_error(e) {
            Ok(err) => {
                let mut s = FormState::with_values("admin", &[("username", &f.username)]);
                s.error = Some(err);
                render(&app, &p, &s, None, StatusCode::UNPROCESSABLE_ENTITY).await
            }
            Err(e) => e.into_response(),
        },
    }
}

fn unreachable_response() -> Response {
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

async fn set_enabled(app: App, p: Portal, id: i64, enabled: bool) -> Response {
    let r = api::update(
        State(app.clone()),
        p.auth.clone(),
        PathId(id),
        Json(api::AdminPatch {
            enabled: Some(enabled),
        }),
    )
    .await;
    let msg = if enabled {
        "Administrator enabled."
    } else {
        "Administrator disabled; their sessions have ended."
    };
    done(&app, &p, r, "/admins", msg, |(_, m)| {
        (StatusCode::UNPROCESSABLE_ENTITY, m).into_response()
    })
    .await
}

async fn enable(
    State(app): State<App>,
    PathId(id): PathId,
    PortalForm(p, _): PortalForm<super::auth::Empty>,
) -> Response {
    set_enabled(app, p, id, true).await
}

async fn disable(
    State(app): State<App>,
    PathId(id): PathId,
    PortalForm(p, _): PortalForm<super::auth::Empty>,
) -> Response {
    set_enabled(app, p, id, false).await
}

#[derive(Deserialize)]
pub struct ResetForm {
    #[serde(default)]
    password: String,
}

async fn reset(
    State(app): State<App>,
    PathId(id): PathId,
    PortalForm(p, f): PortalForm<ResetForm>,
) -> Response {
    let body = api::ResetIn {
        password: f.password,
        must_change_password: Some(true),
    };
    match api::reset_password(State(app.clone()), p.auth.clone(), PathId(id), Json(body)).await {
        Ok(_) => {
            done(
                &app,
                &p,
                Ok(()),
                "/admins",
                "Password reset; they must choose a new one at sign-in.",
                |_| unreachable_response(),
            )
            .await
        }
        Err(e) => match layout::form_error(e) {
            Ok(err) => {
                let s = FormState {
                    error: Some(err),
                    form: "reset",
                    ..Default::default()
                };
                render(
                    &app,
                    &p,
                    &FormState {
                        form: "admin",
                        ..Default::default()
                    },
                    Some((id, s)),
                    StatusCode::UNPROCESSABLE_ENTITY,
                )
                .await
            }
            Err(e) => e.into_response(),
        },
    }
}

/// `GET /admins/{id}/export`: the administrator's subject access export.
async fn export(State(app): State<App>, p: Portal, PathId(id): PathId) -> Response {
    match api::subject_export_response(&app, &p.auth, openturret_domain::AdminId(id)).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}
