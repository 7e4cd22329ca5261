//! Voice recorders (issue 18): the Session Recording Servers recorded
//! calls go to, each with how it has been doing since the start; add,
//! change and remove (at most two). Whether calls are recorded at all, and which, is
//! in Settings and on each line.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::html;

use super::extract::{Portal, PortalForm};
use super::layout::{self, FormState, button_form, field, page_with_status};
use super::profiles::done;
use crate::App;
use crate::http::error::ApiError;
use crate::http::extract::{Json, PathId};
use crate::http::recorders as api;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/recorders", get(list).post(create))
        .route("/recorders/{id}", get(edit_page).post(update))
        .route("/recorders/{id}/delete", post(delete))
        .route(
            "/recorders/notice",
            post(upload_notice).layer(axum::extract::DefaultBodyLimit::max(2 << 20)),
        )
        .route("/recorders/notice/delete", post(delete_notice))
}

async fn render(app: &App, p: &Portal, form: &FormState, status: StatusCode) -> Response {
    render_with(app, p, form, None, status).await
}

async fn render_with(
    app: &App,
    p: &Portal,
    form: &FormState,
    notice_error: Option<String>,
    status: StatusCode,
) -> Response {
    let (recorders, lines, settings) = match (
        app.store.list_recorders().await,
        app.store.list_lines().await,
        app.store.get_settings().await,
    ) {
        (Ok(r), Ok(l), Ok(s)) => (r, l, s),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            return ApiError::from(e).into_response();
        }
    };
    let notice = match api::notice_out(app).await {
        Ok(n) => n,
        Err(e) => return e.into_response(),
    };
    let recorded: Vec<&str> = lines
        .iter()
        .filter(|l| settings.records(l.fields.recorded))
        .map(|l| l.fields.name.as_str())
        .collect();
    let content = html! {
        p {
            "Recorder forwarding: "
            @if settings.recorder_forwarding_enabled { span.badge.on { "on" } } @else { span.badge.bad { "off" } }
            " — "
            @if !settings.recorder_forwarding_enabled { "no call is recorded" }
            @else if settings.recording_all_lines { "every line's calls are recorded" }
            @else if recorded.is_empty() { "no line is marked Recorded" }
            @else { "recorded lines: " (recorded.join(", ")) }
            " (" a href="/settings" { "Settings" } ", and each line's Recording choice). Each recorded call goes to every recorder below (SIPREC, RFC 7866)."
        }
        table #recorders {
            thead { tr { th { "Name" } th { "Address" } th { "Transport" } th { "Credentials" } th { "Since the start" } th { span.muted { "Actions" } } } }
            tbody {
                @for r in &recorders {
                    @let out = api::RecorderOut::new(app, r.clone());
                    tr data-recorder=(out.id) {
                        td { a href=(format!("/recorders/{}", out.id)) { (out.name) } }
                        td { code { (out.uri) } }
                        td { (out.transport) }
                        td { @if out.username.is_empty() { "none" } @else { (out.username) @if out.has_password { " (password set)" } } }
                        td {
                            @match out.status.state {
                                "ok" => span.badge.on { "recording" },
                                "failing" => span.badge.bad { "failing" },
                                _ => span.badge { "no call yet" },
                            }
                            " " (out.status.sessions) " sessions, " (out.status.failures) " failures"
                            @if let (Some(why), Some(at)) = (&out.status.last_failure, &out.status.last_failure_at) {
                                br; span.muted { "Last failure " (at) ": " (why) }
                            }
                        }
                        td.actions { (button_form(p, &format!("/recorders/{}/delete", out.id), "Remove", "small danger")) }
                    }
                }
                @if recorders.is_empty() { tr { td colspan="6" .muted { "No recorders yet." } } }
            }
        }
        section.card #notice {
            h2 { "Recording notice" }
            p {
                @if let (Some(secs), Some(at)) = (notice.seconds, &notice.uploaded_at) {
                    "Played to the far end of every recorded call as it connects: " (format!("{secs:.1}")) " s, uploaded " (at) "."
                } @else {
                    "None: recorded calls begin without an announcement."
                }
            }
            @if let Some(e) = &notice_error { p.error-box #notice-error role="alert" { (e) } }
            form method="post" action="/recorders/notice" enctype="multipart/form-data" {
                input type="hidden" name="_csrf" value=(p.csrf);
                label for="notice-file" { "WAV file (8 kHz, mono, 16-bit PCM, up to 30 s)" }
                input #notice-file type="file" name="file" accept=".wav,audio/wav";
                button type="submit" { "Upload notice" }
            }
            @if notice.present { (button_form(p, "/recorders/notice/delete", "Remove the notice", "small danger")) }
        }
        section.card {
            h2 { "Add a recorder" }
            @if let Some(e) = form.general_error(&["name", "uri", "transport", "username", "password"]) { p.error-box role="alert" { (e) } }
            form method="post" action="/recorders" {
                (layout::csrf(p))
                (field(form, "Name", "name", "text", None))
                (field(form, "SIP address of the Session Recording Server", "uri", "text", Some("For example sip:srs@recorder.example.com:5060; sips: for TLS.")))
                (layout::select(form, "Transport", "transport", &[
                    ("udp".into(), "UDP".into()), ("tcp".into(), "TCP".into()), ("tls".into(), "TLS".into()),
                ]))
                (field(form, "Username (if the recorder asks for digest authentication)", "username", "text", None))
                (field(form, "Password", "password", "password", Some("Stored encrypted; never shown again.")))
                button type="submit" { "Add recorder" }
            }
        }
    };
    page_with_status(p, "/recorders", "Voice recorders", status, content)
}

async fn list(State(app): State<App>, p: Portal) -> Response {
    let empty = FormState {
        form: "recorder",
        ..Default::default()
    };
    render(&app, &p, &empty, StatusCode::OK).await
}

/// The form as sent, kept for the page that says what was wrong.
fn recorder_form(name: &str, uri: &str, transport: &str, username: &str) -> FormState {
    FormState::with_values(
        "recorder",
        &[
            ("name", name),
            ("uri", uri),
            ("transport", transport),
            ("username", username),
        ],
    )
}

#[derive(serde::Deserialize)]
struct RecorderForm {
    name: String,
    uri: String,
    #[serde(default)]
    transport: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

impl RecorderForm {
    fn refill(&self, err: (String, String)) -> FormState {
        let mut s = recorder_form(&self.name, &self.uri, &self.transport, &self.username);
        s.error = Some(err);
        s
    }
}

async fn create(State(app): State<App>, PortalForm(p, f): PortalForm<RecorderForm>) -> Response {
    let body = api::RecorderIn {
        name: f.name.clone(),
        uri: f.uri.clone(),
        transport: f.transport.clone(),
        username: f.username.clone(),
        password: layout::given(&f.password),
    };
    match api::create(State(app.clone()), p.auth.clone(), Json(body)).await {
        Ok(_) => {
            done(&app, &p, Ok(()), "/recorders", "Recorder added.", |_| {
                StatusCode::UNPROCESSABLE_ENTITY.into_response()
            })
            .await
        }
        Err(e) => match layout::form_error(e) {
            Ok(err) => {
                let s = f.refill(err);
                render(&app, &p, &s, StatusCode::UNPROCESSABLE_ENTITY).await
            }
            Err(e) => e.into_response(),
        },
    }
}

async fn delete(
    State(app): State<App>,
    PathId(id): PathId,
    PortalForm(p, _): PortalForm<super::auth::Empty>,
) -> Response {
    let r = api::delete(State(app.clone()), p.auth.clone(), PathId(id))
        .await
        .map(|_| ());
    done(&app, &p, r, "/recorders", "Recorder removed.", |_| {
        StatusCode::UNPROCESSABLE_ENTITY.into_response()
    })
    .await
}

/// The recording notice from the page's file field.
async fn upload_notice(
    State(app): State<App>,
    p: Portal,
    headers: axum::http::HeaderMap,
    mut form: axum::extract::Multipart,
) -> Response {
    if super::extract::cross_site(&headers) {
        return super::extract::forbidden("This request came from another site and was refused.");
    }
    let (mut csrf_ok, mut wav) = (false, None);
    while let Ok(Some(field)) = form.next_field().await {
        match field.name().unwrap_or("") {
            "_csrf" => {
                csrf_ok = field
                    .text()
                    .await
                    .is_ok_and(|t| super::extract::same(&t, &p.csrf))
            }
            "file" if csrf_ok => wav = field.bytes().await.ok(),
            _ => {}
        }
    }
    if !csrf_ok {
        return super::extract::forbidden("The form was stale; reload the page and try again.");
    }
    let empty = FormState {
        form: "recorder",
        ..Default::default()
    };
    let result = match wav.filter(|w| !w.is_empty()) {
        Some(w) => api::set_notice(&app, &p.auth, &w).await.map(|_| ()),
        None => Err(ApiError::invalid("wav", "choose a WAV file first")),
    };
    match result {
        Ok(()) => {
            done(
                &app,
                &p,
                Ok(()),
                "/recorders",
                "Recording notice set.",
                |_| StatusCode::UNPROCESSABLE_ENTITY.into_response(),
            )
            .await
        }
        Err(ApiError::Invalid { reason, .. }) => {
            render_with(
                &app,
                &p,
                &empty,
                Some(format!("The file {reason}.")),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(e) => e.into_response(),
    }
}

async fn delete_notice(
    State(app): State<App>,
    PortalForm(p, _): PortalForm<super::auth::Empty>,
) -> Response {
    let r = api::delete_notice(State(app.clone()), p.auth.clone())
        .await
        .map(|_| ());
    done(
        &app,
        &p,
        r,
        "/recorders",
        "Recording notice removed.",
        |_| StatusCode::UNPROCESSABLE_ENTITY.into_response(),
    )
    .await
}

/// The form of one recorder (the password left empty keeps it).
async fn edit_render(
    app: &App,
    p: &Portal,
    id: i64,
    form: &FormState,
    status: StatusCode,
) -> Response {
    let r = match app
        .store
        .get_recorder(openturret_domain::RecorderId(id))
        .await
    {
        Ok(r) => r,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let content = html! {
        section.card {
            @if let Some(e) = form.general_error(&["name", "uri", "transport", "username", "password"]) { p.error-box role="alert" { (e) } }
            form method="post" action=(format!("/recorders/{id}")) {
                (layout::csrf(p))
                (field(form, "Name", "name", "text", None))
                (field(form, "SIP address of the Session Recording Server", "uri", "text", Some("sips: or ;transport=tls for TLS, ;transport=tcp for TCP.")))
                (layout::select(form, "Transport", "transport", &[
                    ("udp".into(), "UDP".into()), ("tcp".into(), "TCP".into()), ("tls".into(), "TLS".into()),
                ]))
                (field(form, "Username (if the recorder asks for digest authentication)", "username", "text", None))
                (field(form, "New password", "password", "password", Some(if r.has_password { "Empty: keep the stored one." } else { "None stored." })))
                button type="submit" { "Save recorder" } " " a href="/recorders" { "Cancel" }
            }
        }
    };
    page_with_status(
        p,
        "/recorders",
        &format!("Recorder {}", r.fields.name),
        status,
        content,
    )
}

async fn edit_page(State(app): State<App>, p: Portal, PathId(id): PathId) -> Response {
    let r = match app
        .store
        .get_recorder(openturret_domain::RecorderId(id))
        .await
    {
        Ok(r) => r,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let f = &r.fields;
    let form = recorder_form(&f.name, &f.uri, f.transport.as_str(), &f.username);
    edit_render(&app, &p, id, &form, StatusCode::OK).await
}

async fn update(
    State(app): State<App>,
    PathId(id): PathId,
    PortalForm(p, f): PortalForm<RecorderForm>,
) -> Response {
    let body = api::RecorderPatch {
        name: Some(f.name.clone()),
        uri: Some(f.uri.clone()),
        transport: Some(f.transport.clone()),
        username: Some(f.username.clone()),
        password: layout::given(&f.password),
    };
    match api::update(State(app.clone()), p.auth.clone(), PathId(id), Json(body)).await {
        Ok(_) => {
            done(&app, &p, Ok(()), "/recorders", "Recorder saved.", |_| {
                StatusCode::UNPROCESSABLE_ENTITY.into_response()
            })
            .await
        }
        Err(e) => match layout::form_error(e) {
            Ok(err) => {
                let s = f.refill(err);
                edit_render(&app, &p, id, &s, StatusCode::UNPROCESSABLE_ENTITY).await
            }
            Err(e) => e.into_response(),
        },
    }
}
