//! Global contacts (search, keyset paging) and lines (write-only passwords).

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::html;
use openturret_domain::number::looks_like_number;
use openturret_domain::{GlobalContactId, LineId};
use openturret_store::GlobalContactQuery;
use serde::Deserialize;

use super::extract::{Portal, PortalForm};
use super::layout::{self, FormState, button_form, field, page, page_with_status};
use super::profile_items::ContactFormFields;
use super::profiles::done;
use crate::App;
use crate::http::error::ApiError;
use crate::http::extract::{Json, PathId};
use crate::http::{contacts as api_contacts, lines as api_lines};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/global-contacts", get(contacts))
        .route("/global-contacts/search", post(search))
        .route(
            "/global-contacts/new",
            get(new_contact).post(create_contact),
        )
        .route(
            "/global-contacts/{id}",
            get(edit_contact).post(update_contact),
        )
        .route("/global-contacts/{id}/delete", post(delete_contact))
        .route("/lines", get(lines))
        .route("/lines/new", get(new_line).post(create_line))
        .route("/lines/{id}", get(edit_line).post(update_line))
        .route(
            "/lines/{id}/delete",
            get(delete_line_page).post(delete_line),
        )
}

#[derive(Deserialize)]
pub struct PageQuery {
    /// Id of the last contact of the previous page.
    after: Option<i64>,
}

const PAGE: i64 = 50;

async fn contacts(State(app): State<App>, p: Portal, Query(q): Query<PageQuery>) -> Response {
    let term = app.portal.filter(p.session, "global-contacts").await;
    let (name, number) = if term.is_empty() {
        (None, None)
    } else if looks_like_number(&term) {
        (None, Some(term.clone()))
    } else {
        (Some(term.clone()), None)
    };
    let query = GlobalContactQuery {
        name,
        number_prefix: number,
        after: q.after.map(GlobalContactId),
        limit: PAGE + 1,
    };
    let mut items = match app.store.search_global_contacts(&query).await {
        Ok(i) => i,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let more = items.len() as i64 > PAGE;
    items.truncate(PAGE as usize);
    let state = FormState::with_values("search", &[("q", &term)]);
    let content = html! {
        div.row {
            form.row method="post" action="/global-contacts/search" role="search" {
                (layout::csrf(&p))
                (field(&state, "Search by any word of the name (beginning), or number", "q", "search", None))
                div.field.submit { button.secondary type="submit" { "Search" } }
            }
            div.field.submit { a.button href="/global-contacts/new" { "New global contact" } }
        }
        table {
            thead { tr { th { "Name" } th { "Number" } th { "Field 3" } th { "Field 4" } th { span.muted { "Actions" } } } }
            tbody {
                @for c in &items {
                    tr {
                        td { (c.fields.name) } td { (c.fields.number) } td { (c.fields.field3) } td { (c.fields.field4) }
                        td.actions {
                            a href=(format!("/global-contacts/{}", c.id)) { "Edit" } " "
                            (button_form(&p, &format!("/global-contacts/{}/delete", c.id), "Delete", "small secondary"))
                        }
                    }
                }
                @if items.is_empty() { tr { td colspan="5" .muted { "No global contacts match." } } }
            }
        }
        (layout::pager(
            q.after.map(|_| "/global-contacts".to_string()),
            more.then(|| items.last().map(|c| format!("/global-contacts?after={}", c.id))).flatten(),
            if q.after.is_some() { "Later results" } else { "First results" },
        ))
    };
    page(&p, "/global-contacts", "Global contacts", content)
}

#[derive(Deserialize)]
pub struct SearchForm {
    #[serde(default)]
    q: String,
}

async fn search(State(app): State<App>, PortalForm(p, f): PortalForm<SearchForm>) -> Response {
    app.portal
        .set_filter(p.session, "global-contacts", f.q.trim().to_string())
        .await;
    Redirect::to("/global-contacts").into_response()
}

fn contact_page(
    p: &Portal,
    action: &str,
    title: &str,
    state: &FormState,
    status: StatusCode,
) -> Response {
    let content = html! {
        section.card {
            @if let Some(e) = state.general_error(&["name", "number", "field3", "field4"]) { p.error-box role="alert" { (e) } }
            form method="post" action=(action) {
                (layout::csrf(p))
                (field(state, "Name", "name", "text", None))
                (field(state, "Number", "number", "tel", None))
                (field(state, "Field 3", "field3", "text", None))
                (field(state, "Field 4", "field4", "text", None))
                button type="submit" { "Save" } " " a href="/global-contacts" { "Cancel" }
            }
        }
    };
    page_with_status(p, "/global-contacts", title, status, content)
}

async fn new_contact(p: Portal) -> Response {
    contact_page(
        &p,
        "/global-contacts/new",
        "New global contact",
        &FormState {
            form: "gc",
            ..Default::default()
        },
        StatusCode::OK,
    )
}

async fn create_contact(
    State(app): State<App>,
    PortalForm(p, f): PortalForm<ContactFormFields>,
) -> Response {
    let body = api_contacts::ContactIn {
        name: f.name.clone(),
        number: f.number.clone(),
        field3: f.field3.clone(),
        field4: f.field4.clone(),
    };
    let r = api_contacts::create_global(State(app.clone()), p.auth.clone(), Json(body)).await;
    done(
        &app,
        &p,
        r,
        "/global-contacts",
        "Global contact created.",
        |err| {
            contact_page(
                &p,
                "/global-contacts/new",
                "New global contact",
                &f.state("gc", err),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
        },
    )
    .await
}

async fn edit_contact(State(app): State<App>, p: Portal, PathId(id): PathId) -> Response {
    match app.store.get_global_contact(GlobalContactId(id)).await {
        Ok(c) => {
            let f = &c.fields;
            let state = FormState::with_values(
                "gc",
                &[
                    ("name", &f.name),
                    ("number", &f.number),
                    ("field3", &f.field3),
                    ("field4", &f.field4),
                ],
            );
            contact_page(
                &p,
                &format!("/global-contacts/{id}"),
                "Edit global contact",
                &state,
                StatusCode::OK,
            )
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn update_contact(
    State(app): State<App>,
    PathId(id): PathId,
    PortalForm(p, f): PortalForm<ContactFormFields>,
) -> Response {
    let body = api_contacts::ContactPatch {
        name: Some(f.name.clone()),
        number: Some(f.number.clone()),
        field3: Some(f.field3.clone()),
        field4: Some(f.field4.clone()),
    };
    let r = api_contacts::update_global(State(app.clone()), p.auth.clone(), PathId(id), Json(body))
        .await;
    done(
        &app,
        &p,
        r,
        "/global-contacts",
        "Global contact saved.",
        |err| {
            contact_page(
                &p,
                &format!("/global-contacts/{id}"),
                "Edit global contact",
                &f.state("gc", err),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
        },
    )
    .await
}

async fn delete_contact(
    State(app): State<App>,
    PathId(id): PathId,
    PortalForm(p, _): PortalForm<super::auth::Empty>,
) -> Response {
    let r = api_contacts::delete_global(State(app.clone()), p.auth.clone(), PathId(id)).await;
    done(
        &app,
        &p,
        r,
        "/global-contacts",
        "Global contact deleted.",
        |(_, m)| (StatusCode::UNPROCESSABLE_ENTITY, m).into_response(),
    )
    .await
}

async fn lines(State(app): State<App>, p: Portal) -> Response {
    let lines = match app.store.list_lines().await {
        Ok(l) => l,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let content = html! {
        p { a.button href="/lines/new" { "New line" } }
        table {
            thead { tr { th { "Name" } th { "SIP address" } th { "Username" } th { "Display name" } th { "Password" } th { "Registration" } th { "Served by" } } }
            tbody {
                @for l in &lines {
                    tr {
                        td { a href=(format!("/lines/{}", l.id)) { (l.fields.name) } }
                        td { (l.fields.uri) } td { (l.fields.username) } td { (l.fields.display_name) }
                        td { @if l.has_password { span.badge.on { "set" } } @else { span.badge { "none" } } }
                        @let (st, owner) = crate::telephony::state_and_owner(&app, l.id);
                        td {
                            @match st.name() {
                                "registered" => span.badge.on title="Registered with its PBX" { "registered" },
                                "failing" => span.badge.bad { "failing" },
                                name => span.badge { (name) },
                            }
                            @if let Some(r) = st.reason() { " " span.muted.line-reason { (r) } }
                            @if let Some(at) = crate::telephony::state_since(&app, l.id) {
                                br; small.muted.line-since { "since " (at.rfc3339()) }
                            }
                        }
                        td.served-by {
                            @match owner {
                                Some(m) => { (if m.name() == crate::telephony::LOCAL_NAME { "this server" } else { m.name() }) }
                                None => span.muted { "no MLC running" },
                            }
                        }
                    }
                }
                @if lines.is_empty() { tr { td colspan="7" .muted { "No lines yet." } } }
            }
        }
        p.muted { "Registration states are those the Multi-Line Controllers report, with the time each began; this page refreshes itself every 10 seconds. "
            "Each line is served by one Multi-Line Controller: this server's own, or a connected turret mlc." }
    };
    let content = html! {
        // No script in the portal: the page reloads itself to stay live.
        meta http-equiv="refresh" content="10";
        (content)
    };
    page(&p, "/lines", "Lines", content)
}

/// Other lines with the same SIP address and username as `id`: the PBX
/// would see them as one registration, so the portal warns.
async fn same_address(app: &App, id: Option<LineId>, uri: &str, username: &str) -> Vec<String> {
    app.store
        .list_lines()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|l| {
            Some(l.id) != id
                && l.fields.uri.eq_ignore_ascii_case(uri.trim())
                && l.fields.username == username.trim()
        })
        .map(|l| l.fields.name)
        .collect()
}

fn saved_message(done: &str, twins: &[String]) -> String {
    match twins {
        [] => done.to_string(),
        names => format!(
            "{done} Warning: {} {} the same SIP address and username; the PBX will see them as one registration and only one will work.",
            names
                .iter()
                .map(|n| format!("“{n}”"))
                .collect::<Vec<_>>()
                .join(", "),
            if names.len() == 1 { "has" } else { "have" }
        ),
    }
}

/// `GET /lines/{id}/delete`: what deleting the line takes away, and the
/// button that does it.
async fn delete_line_page(State(app): State<App>, p: Portal, PathId(id): PathId) -> Response {
    let line = match app.store.get_line(LineId(id)).await {
        Ok(l) => l,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let keys = app
        .store
        .profiles_with_line(line.id)
        .await
        .unwrap_or_default()
        .len();
    let calls = crate::telephony::ongoing(&app)
        .iter()
        .filter(|c| c.line == line.id)
        .count();
    let content = html! {
        section.card {
            p.warning { "Delete the line " strong { (line.fields.name) } " (" (line.fields.uri) ")?" }
            ul {
                li { "Its key goes from " (keys) " profile" (if keys == 1 { "" } else { "s" }) "." }
                li { "Its registration at the PBX is removed; calls to it are no longer taken." }
                @if calls > 0 { li.warning { (calls) " call" (if calls == 1 { " is" } else { "s are" }) " in progress on it now." } }
                li { "Call memory and call data records of its past calls stay." }
            }
            form method="post" action=(format!("/lines/{id}/delete")) {
                (layout::csrf(&p))
                input type="hidden" name="confirm" value="yes";
                button.danger type="submit" { "Delete the line" } " "
                a href=(format!("/lines/{id}")) { "Cancel" }
            }
        }
    };
    page(&p, "/lines", "Delete line", content)
}

#[derive(Deserialize)]
pub struct LineForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    uri: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    alternate_text: String,
    #[serde(default)]
    preferred_identity: String,
    #[serde(default)]
    answer_mode: String,
    #[serde(default)]
    peers: String,
    #[serde(default)]
    priority: String,
    #[serde(default)]
    recorded: String,
}

impl LineForm {
    fn state(&self, err: Option<(String, String)>) -> FormState {
        let mut s = FormState::with_values(
            "line",
            &[
                ("name", &self.name),
                ("uri", &self.uri),
                ("username", &self.username),
                ("display_name", &self.display_name),
                ("alternate_text", &self.alternate_text),
                ("preferred_identity", &self.preferred_identity),
                ("answer_mode", &self.answer_mode),
                ("peers", &self.peers),
                ("priority", &self.priority),
                ("recorded", &self.recorded),
            ],
        );
        s.error = err;
        s
    }
}

fn line_page(
    app: &App,
    p: &Portal,
    action: &str,
    title: &str,
    state: &FormState,
    has_password: Option<bool>,
    status: StatusCode,
) -> Response {
    let pw_hint = match has_password {
        Some(true) => "A password is stored. It is never shown; type a new one only to replace it.",
        Some(false) => "No password is stored yet.",
        None => "Stored encrypted; never shown again.",
    };
    let content = html! {
        section.card {
            @if let Some(e) = state.general_error(&["name", "uri", "username", "password", "display_name", "alternate_text", "preferred_identity", "answer_mode", "peers"]) {
                p.error-box role="alert" { (e) }
            }
            form method="post" action=(action) autocomplete="off" {
                (layout::csrf(p))
                (field(state, "Name", "name", "text", None))
                (field(state, "SIP address", "uri", "text", Some("For example sip:1001@pbx.example.com")))
                (field(state, "Username", "username", "text", Some("Digest authentication username.")))
                (field(state, "Password", "password", "password", Some(pw_hint)))
                (field(state, "Display name", "display_name", "text", Some("Shown on the line key.")))
                (field(state, "Alternate text", "alternate_text", "text", None))
                (field(state, "Preferred identity number", "preferred_identity", "tel", Some("Presented on outgoing calls.")))
                (layout::select(state, "Answer mode", "answer_mode", &[
                    ("manual".into(), "Manual: a turret answers".into()),
                    ("automatic".into(), "Automatic: answered at once on a speaker (intercom)".into()),
                ]))
                (layout::select(state, "Ring", "priority", &[
                    ("".into(), "Normal".into()),
                    ("priority".into(), "Priority: a distinct, faster ring on the turrets".into()),
                ]))
                (layout::select(state, "Recording", "recorded", &[
                    ("".into(), "Not recorded (unless the system records all lines)".into()),
                    ("recorded".into(), "Recorded: its calls go to the voice recorders".into()),
                ]))
                (field(state, "Other PBX addresses", "peers", "text", Some("Calls for this line are taken only from its registrar and from these addresses or networks (a PBX with several nodes), for example 192.0.2.10, 192.0.2.11 or 10.1.0.0/24. Anyone else gets 403.")))
                button type="submit" { "Save line" } " " a href="/lines" { "Cancel" }
            }
        }
        @if has_password.is_some() {
            @if let Some(id) = action.strip_prefix("/lines/").and_then(|i| i.parse::<i64>().ok()) {
                @let (st, _) = crate::telephony::state_and_owner(app, LineId(id));
                section.card {
                    h2 { "Registration" }
                    p.line-state {
                        (st.name())
                        @if let Some(r) = st.reason() { ": " (r) }
                        @if let Some(at) = crate::telephony::state_since(app, LineId(id)) { ", since " (at.rfc3339()) }
                    }
                }
            }
            section.card {
                h2 { "Delete" }
                a.button.danger href=(format!("{action}/delete")) { "Delete line…" }
            }
        }
    };
    page_with_status(p, "/lines", title, status, content)
}

async fn new_line(State(app): State<App>, p: Portal) -> Response {
    line_page(
        &app,
        &p,
        "/lines/new",
        "New line",
        &FormState {
            form: "line",
            ..Default::default()
        },
        None,
        StatusCode::OK,
    )
}

async fn create_line(State(app): State<App>, PortalForm(p, f): PortalForm<LineForm>) -> Response {
    let body = api_lines::LineIn {
        name: f.name.clone(),
        uri: f.uri.clone(),
        username: f.username.clone(),
        password: layout::given(&f.password),
        display_name: f.display_name.clone(),
        alternate_text: f.alternate_text.clone(),
        preferred_identity: f.preferred_identity.clone(),
        answer_mode: f.answer_mode.clone(),
        peers: f.peers.clone(),
        priority: f.priority == "priority",
        recorded: f.recorded == "recorded",
    };
    let r = api_lines::create(State(app.clone()), p.auth.clone(), Json(body)).await;
    let created = r.as_ref().ok().map(|(_, l)| l.0.id());
    let twins = match created {
        Some(id) => same_address(&app, Some(LineId(id)), &f.uri, &f.username).await,
        None => Vec::new(),
    };
    done(
        &app,
        &p,
        r,
        "/lines",
        &saved_message("Line created.", &twins),
        |err| {
            line_page(
                &app,
                &p,
                "/lines/new",
                "New line",
                &f.state(Some(err)),
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
        },
    )
    .await
}

async fn edit_line(State(app): State<App>, p: Portal, PathId(id): PathId) -> Response {
    match app.store.get_line(LineId(id)).await {
        Ok(l) => {
            let f = &l.fields;
            let form = LineForm {
                name: f.name.clone(),
                uri: f.uri.clone(),
                username: f.username.clone(),
                password: String::new(),
                display_name: f.display_name.clone(),
                alternate_text: f.alternate_text.clone(),
                preferred_identity: f.preferred_identity.clone(),
                answer_mode: f.answer_mode.as_str().to_string(),
                peers: f.peers.clone(),
                priority: if f.priority {
                    "priority".into()
                } else {
                    String::new()
                },
                recorded: if f.recorded {
                    "recorded".into()
                } else {
                    String::new()
                },
            };
            line_page(
                &app,
                &p,
                &format!("/lines/{id}"),
                &format!("Line {}", f.name),
                &form.state(None),
                Some(l.has_password),
                StatusCode::OK,
            )
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn update_line(
    State(app): State<App>,
    PathId(id): PathId,
    PortalForm(p, f): PortalForm<LineForm>,
) -> Response {
    let body = api_lines::LinePatch {
        name: Some(f.name.clone()),
        uri: Some(f.uri.clone()),
        username: Some(f.username.clone()),
        password: layout::given(&f.password),
        display_name: Some(f.display_name.clone()),
        alternate_text: Some(f.alternate_text.clone()),
        preferred_identity: Some(f.preferred_identity.clone()),
        answer_mode: Some(f.answer_mode.clone()),
        peers: Some(f.peers.clone()),
        priority: Some(f.priority == "priority"),
        recorded: Some(f.recorded == "recorded"),
    };
    let r = api_lines::update(State(app.clone()), p.auth.clone(), PathId(id), Json(body)).await;
    let has_password = app
        .store
        .get_line(LineId(id))
        .await
        .map(|l| l.has_password)
        .unwrap_or(false);
    let twins = if r.is_ok() {
        same_address(&app, Some(LineId(id)), &f.uri, &f.username).await
    } else {
        Vec::new()
    };
    done(
        &app,
        &p,
        r,
        "/lines",
        &saved_message("Line saved.", &twins),
        |err| {
            line_page(
                &app,
                &p,
                &format!("/lines/{id}"),
                "Edit line",
                &f.state(Some(err)),
                Some(has_password),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
        },
    )
    .await
}

#[derive(Deserialize)]
pub struct DeleteConfirm {
    #[serde(default)]
    confirm: String,
}

async fn delete_line(
    State(app): State<App>,
    PathId(id): PathId,
    PortalForm(p, f): PortalForm<DeleteConfirm>,
) -> Response {
    if f.confirm != "yes" {
        // Only from the confirmation page.
        return Redirect::to(&format!("/lines/{id}/delete")).into_response();
    }
    let r = api_lines::delete(State(app.clone()), p.auth.clone(), PathId(id)).await;
    done(&app, &p, r, "/lines", "Line deleted.", |(_, m)| {
        (StatusCode::UNPROCESSABLE_ENTITY, m).into_response()
    })
    .await
}
