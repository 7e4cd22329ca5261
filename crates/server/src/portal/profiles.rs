//! Profiles: list, search, create, edit, delete with an erasure preview;
//! each profile's local contacts, speed dial key grid and line keys.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use openturret_domain::ProfileId;
use openturret_domain::model::{ProfileErasure, SpeedDialKind};
use serde::Deserialize;

use super::extract::{Portal, PortalForm};
use super::layout::{
    self, FormState, button_form, checkbox, field, given, on, page, page_with_status, select,
};
use crate::App;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::PathId;
use crate::http::profiles as api;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/profiles", get(list))
        .route("/profiles/search", post(search))
        .route("/profiles/new", get(new_page).post(create))
        .route("/profiles/{id}", get(detail).post(update))
        .route("/profiles/{id}/delete", get(delete_page).post(delete))
        .route("/profiles/{id}/export", get(subject_export))
        .merge(super::profile_items::routes())
}

/// Redirects with a message on success; renders `on_error` with the field
/// error otherwise.
pub async fn done<T>(
    app: &App,
    p: &Portal,
    result: ApiResult<T>,
    to: &str,
    message: &str,
    on_error: impl FnOnce((String, String)) -> Response,
) -> Response {
    match result {
        Ok(_) => {
            p.flash(app, message).await;
            Redirect::to(to).into_response()
        }
        Err(e) => match layout::form_error(e) {
            Ok(fe) => on_error(fe),
            Err(e) => e.into_response(),
        },
    }
}

const PAGE: i64 = 25;

#[derive(Deserialize)]
pub struct ListQuery {
    page: Option<i64>,
    sort: Option<String>,
}

async fn list(State(app): State<App>, p: Portal, Query(q): Query<ListQuery>) -> Response {
    let page_no = q.page.unwrap_or(1).max(1);
    let sort_key = q.sort.clone().unwrap_or_else(|| "name".into());
    let sort = match api::profile_sort(Some(&sort_key)) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let term = app.portal.filter(p.session, "profiles").await;
    let needle = (!term.is_empty()).then_some(term.as_str());
    let result = match app
        .store
        .list_profiles(needle, sort, PAGE, (page_no - 1) * PAGE)
        .await
    {
        Ok(r) => r,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let pages = ((result.total + PAGE - 1) / PAGE).max(1);
    let link = |n: i64| format!("/profiles?page={n}&sort={sort_key}");
    let sort_link = |key: &str| {
        let next = if sort_key == key {
            format!("-{key}")
        } else {
            key.to_string()
        };
        format!("/profiles?sort={next}")
    };
    let arrow = |key: &str| {
        if sort_key == key {
            " ▲"
        } else if sort_key == format!("-{key}") {
            " ▼"
        } else {
            ""
        }
    };
    let state = FormState::with_values("search", &[("q", &term)]);
    let content = html! {
        div.row {
            form.row method="post" action="/profiles/search" role="search" {
                (layout::csrf(&p))
                (field(&state, "Search profiles by name", "q", "search", None))
                div.field.submit { button.secondary type="submit" { "Search" } }
            }
            div.field.submit { a.button href="/profiles/new" { "New profile" } }
        }
        table {
            thead { tr {
                th { a href=(sort_link("name")) { "Name" (arrow("name")) } }
                th { "Contacts password" } th { "Call memory" }
                th { a href=(sort_link("created")) { "Created" (arrow("created")) } }
            } }
            tbody {
                @for pr in &result.items {
                    tr {
                        td { a href=(format!("/profiles/{}", pr.id)) { (pr.name) } }
                        td { @if pr.has_contacts_password { span.badge.on { "set" } } @else { span.badge { "none" } } }
                        td { @if pr.flags.collect_call_memory { span.badge.on { "collected" } } @else { span.badge { "off" } } }
                        td.muted { (pr.created_at.rfc3339()) }
                    }
                }
                @if result.items.is_empty() { tr { td colspan="4" .muted { "No profiles." } } }
            }
        }
        (layout::pager(
            (page_no > 1).then(|| link(page_no - 1)),
            (page_no < pages).then(|| link(page_no + 1)),
            &format!("Page {page_no} of {pages} · {} profiles", result.total),
        ))
    };
    page(&p, "/profiles", "Profiles", content)
}

#[derive(Deserialize)]
pub struct SearchForm {
    #[serde(default)]
    q: String,
}

async fn search(State(app): State<App>, PortalForm(p, f): PortalForm<SearchForm>) -> Response {
    app.portal
        .set_filter(p.session, "profiles", f.q.trim().to_string())
        .await;
    Redirect::to("/profiles").into_response()
}

#[derive(Deserialize, Default)]
pub struct ProfileForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    contacts_password: String,
    #[serde(default)]
    call_memory_password: String,
    #[serde(default)]
    clear_contacts_password: Option<String>,
    #[serde(default)]
    clear_call_memory_password: Option<String>,
    collect_call_memory: Option<String>,
    allow_call_memory_deletion: Option<String>,
    call_memory_password_protected: Option<String>,
    #[serde(default)]
    handsets: String,
    #[serde(default)]
    speakers: String,
}

/// A count typed into the form: empty for the default (or unchanged), a
/// number, or (to be refused by the check with the field's name) -1.
fn count(v: &str) -> Option<i64> {
    let v = v.trim();
    (!v.is_empty()).then(|| v.parse().unwrap_or(-1))
}

fn profile_fields(
    state: &FormState,
    flags: (bool, bool, bool),
    existing: Option<(bool, bool)>,
) -> Markup {
    let keep = "Leave empty to keep the current one.";
    html! {
        (field(state, "Name", "name", "text", Some("Shown in every client's login list.")))
        (field(state, "Profile password", "password", "password",
            Some(if existing.is_some() { keep } else { "At least 4 characters." })))
        (field(state, "Contacts password", "contacts_password", "password", Some("Optional: asked before contacts are shown.")))
        @if let Some((true, _)) = existing { (checkbox(state, "Remove the contacts password", "clear_contacts_password", false)) }
        (field(state, "Call-memory password", "call_memory_password", "password", Some("Asked before call memory is shown, when protection is on. Call memory is kept only under a password of 12 characters or more: give one here when the profile password is shorter (a PIN).")))
        @if let Some((_, true)) = existing { (checkbox(state, "Remove the call-memory password", "clear_call_memory_password", false)) }
        fieldset {
            legend { "Call memory" }
            (checkbox(state, "Collect call memory for this profile", "collect_call_memory", flags.0))
            (checkbox(state, "Let the user delete call-memory entries", "allow_call_memory_deletion", flags.1))
            (checkbox(state, "Ask for the call-memory password", "call_memory_password_protected", flags.2))
        }
        fieldset {
            legend { "Speech units of the turret" }
            (field(state, "Handsets", "handsets", "number", Some("1 to 4 (2 unless set).")))
            (field(state, "Speaker channels", "speakers", "number", Some("0 to 8 (4 unless set).")))
        }
    }
}

fn new_form(p: &Portal, state: &FormState, status: StatusCode) -> Response {
    let content = html! {
        @if let Some(e) = state.general_error(&["name", "password", "contacts_password", "call_memory_password", "handsets", "speakers"]) {
            p.error-box role="alert" { (e) }
        }
        section.card {
            form method="post" action="/profiles/new" {
                (layout::csrf(p))
                (profile_fields(state, (state.value("collect_call_memory") == "on", state.value("allow_call_memory_deletion") == "on", state.value("call_memory_password_protected") == "on"), None))
                button type="submit" { "Create profile" }
            }
        }
    };
    page_with_status(p, "/profiles", "New profile", status, content)
}

async fn new_page(p: Portal) -> Response {
    new_form(
        &p,
        &FormState {
            form: "profile",
            ..Default::default()
        },
        StatusCode::OK,
    )
}

async fn create(State(app): State<App>, PortalForm(p, f): PortalForm<ProfileForm>) -> Response {
    let input = api::ProfileIn {
        name: f.name.clone(),
        password: f.password.clone(),
        contacts_password: given(&f.contacts_password),
        call_memory_password: given(&f.call_memory_password),
        collect_call_memory: on(&f.collect_call_memory),
        allow_call_memory_deletion: on(&f.allow_call_memory_deletion),
        call_memory_password_protected: on(&f.call_memory_password_protected),
        handsets: count(&f.handsets),
        speakers: count(&f.speakers),
    };
    match api::create_profile(&app, &p.auth, input).await {
        Ok(profile) => {
            p.flash(&app, "Profile created.").await;
            Redirect::to(&format!("/profiles/{}", profile.id)).into_response()
        }
        Err(e) => match layout::form_error(e) {
            Ok(err) => {
                let mut state = FormState::with_values(
                    "profile",
                    &[
                        ("name", &f.name),
                        ("handsets", &f.handsets),
                        ("speakers", &f.speakers),
                    ],
                );
                for (k, v) in [
                    ("collect_call_memory", &f.collect_call_memory),
                    ("allow_call_memory_deletion", &f.allow_call_memory_deletion),
                    (
                        "call_memory_password_protected",
                        &f.call_memory_password_protected,
                    ),
                ] {
                    if on(v) {
                        state.values.insert(k.into(), "on".into());
                    }
                }
                state.error = Some(err);
                new_form(&p, &state, StatusCode::UNPROCESSABLE_ENTITY)
            }
            Err(e) => e.into_response(),
        },
    }
}

/// The states of the forms on a profile's page; the one that failed
/// carries its error.
#[derive(Default)]
pub(super) struct Forms {
    pub(super) profile: Option<FormState>,
    pub(super) contact: Option<FormState>,
    pub(super) key: Option<FormState>,
    pub(super) line: Option<FormState>,
}

pub(super) async fn render_detail(
    app: &App,
    p: &Portal,
    id: i64,
    forms: Forms,
    status: StatusCode,
) -> Response {
    let pid = ProfileId(id);
    let loaded = async {
        Ok::<_, ApiError>((
            app.store.get_profile(pid).await?,
            app.store.list_local_contacts(pid).await?,
            app.store.list_speed_dials(pid).await?,
            app.store.list_profile_lines(pid).await?,
            app.store.list_lines().await?,
        ))
    }
    .await;
    let (profile, contacts, keys, line_keys, lines) = match loaded {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    let (handsets, speakers) = (
        profile.flags.handsets.to_string(),
        profile.flags.speakers.to_string(),
    );
    let ps = forms.profile.unwrap_or_else(|| {
        FormState::with_values(
            "profile",
            &[
                ("name", &profile.name),
                ("handsets", &handsets),
                ("speakers", &speakers),
            ],
        )
    });
    let cs = forms.contact.unwrap_or_else(|| FormState {
        form: "contact",
        ..Default::default()
    });
    let ks = forms
        .key
        .unwrap_or_else(|| FormState::with_values("key", &[("kind", "DKM")]));
    let ls = forms.line.unwrap_or_else(|| FormState {
        form: "linekey",
        ..Default::default()
    });
    let f = profile.flags;
    let base = format!("/profiles/{id}");
    let grid = |kind: SpeedDialKind| {
        let of_kind: Vec<_> = keys.iter().filter(|k| k.fields.kind == kind).collect();
        let max = of_kind
            .iter()
            .map(|k| k.fields.position)
            .max()
            .unwrap_or(0)
            .max(8);
        html! {
            div.keys role="list" aria-label=(format!("{} keys", kind.as_str())) {
                @for pos in 1..=max {
                    @match of_kind.iter().find(|k| k.fields.position == pos) {
                        Some(k) => div.key role="listitem" {
                            span.pos { (kind.as_str()) " " (pos) }
                            span.name { (k.fields.name) }
                            span.num { (k.fields.number) }
                            (button_form(p, &format!("{base}/speed-dials/{}/delete", k.id), "Remove", "small secondary"))
                        },
                        None => div.key.empty role="listitem" { span.pos { (kind.as_str()) " " (pos) } " empty" },
                    }
                }
            }
        }
    };
    let line_options: Vec<(String, String)> = lines
        .iter()
        .map(|l| {
            (
                l.id.0.to_string(),
                format!("{} ({})", l.fields.name, l.fields.display_name),
            )
        })
        .collect();
    let kinds = vec![
        ("DKM".to_string(), "DKM: speed dial memory".to_string()),
        ("DKA".to_string(), "DKA: direct key".to_string()),
    ];
    let content = html! {
        section.card {
            h2 { "Profile" }
            @if let Some(e) = ps.general_error(&["name", "password", "contacts_password", "call_memory_password", "handsets", "speakers"]) { p.error-box role="alert" { (e) } }
            form method="post" action=(base) {
                (layout::csrf(p))
                (profile_fields(&ps, (f.collect_call_memory, f.allow_call_memory_deletion, f.call_memory_password_protected),
                    Some((profile.has_contacts_password, profile.has_call_memory_password))))
                button type="submit" { "Save profile" }
            }
        }
        section.card #contacts {
            h2 { "Local contacts" }
            table {
                thead { tr { th { "Name" } th { "Number" } th { "Field 3" } th { "Field 4" } th { span.muted { "Actions" } } } }
                tbody {
                    @for c in &contacts {
                        tr {
                            td { (c.fields.name) } td { (c.fields.number) } td { (c.fields.field3) } td { (c.fields.field4) }
                            td.actions {
                                a href=(format!("{base}/contacts/{}", c.id)) { "Edit" } " "
                                (button_form(p, &format!("{base}/contacts/{}/delete", c.id), "Delete", "small secondary"))
                            }
                        }
                    }
                    @if contacts.is_empty() { tr { td colspan="5" .muted { "No local contacts." } } }
                }
            }
            h2 { "Add a contact" }
            @if let Some(e) = cs.general_error(&["name", "number", "field3", "field4"]) { p.error-box role="alert" { (e) } }
            form.row method="post" action=(format!("{base}/contacts")) {
                (layout::csrf(p))
                (field(&cs, "Name", "name", "text", None))
                (field(&cs, "Number", "number", "tel", None))
                (field(&cs, "Field 3", "field3", "text", None))
                (field(&cs, "Field 4", "field4", "text", None))
                div.field.submit { button type="submit" { "Add contact" } }
            }
        }
        section.card #keys {
            h2 { "Speed dial keys" }
            h3 { "DKA" } (grid(SpeedDialKind::Dka))
            h3 { "DKM" } (grid(SpeedDialKind::Dkm))
            h2 { "Add a key" }
            @if let Some(e) = ks.general_error(&["kind", "position", "name", "number"]) { p.error-box role="alert" { (e) } }
            form.row method="post" action=(format!("{base}/speed-dials")) {
                (layout::csrf(p))
                (select(&ks, "Kind", "kind", &kinds))
                (field(&ks, "Position", "position", "number", None))
                (field(&ks, "Name", "name", "text", None))
                (field(&ks, "Number", "number", "tel", None))
                div.field.submit { button type="submit" { "Add key" } }
            }
        }
        section.card #lines {
            h2 { "Line keys" }
            table {
                thead { tr { th { "Position" } th { "Line" } th { "Display name" } th { span.muted { "Actions" } } } }
                tbody {
                    @for k in &line_keys {
                        @let line = lines.iter().find(|l| l.id == k.line_id);
                        tr {
                            td { (k.position) }
                            td { @if let Some(l) = line { a href=(format!("/lines/{}", l.id)) { (l.fields.name) } } }
                            td { @if let Some(l) = line { (l.fields.display_name) } }
                            td.actions { (button_form(p, &format!("{base}/lines/{}/delete", k.line_id), "Remove", "small secondary")) }
                        }
                    }
                    @if line_keys.is_empty() { tr { td colspan="4" .muted { "No line keys." } } }
                }
            }
            @if lines.is_empty() {
                p.muted { "There are no lines yet. " a href="/lines/new" { "Create a line" } " first." }
            } @else {
                h2 { "Add a line key" }
                @if let Some(e) = ls.general_error(&["line_id", "position"]) { p.error-box role="alert" { (e) } }
                form.row method="post" action=(format!("{base}/lines")) {
                    (layout::csrf(p))
                    (select(&ls, "Line", "line_id", &line_options))
                    (field(&ls, "Position", "position", "number", None))
                    div.field.submit { button type="submit" { "Add line key" } }
                }
            }
        }
        section.card {
            h2 { "Subject access export" }
            p { "Everything held about this profile, as a ZIP: JSON, CSV and a page to read. Call memory is sealed and only its user can export it, from a turret." }
            a.button href=(format!("{base}/export")) download { "Download the export" }
        }
        section.card {
            h2 { "Delete" }
            p { "Deleting the profile erases its contacts, keys, call memory, consents and passwords." }
            a.button.danger href=(format!("{base}/delete")) { "Delete profile…" }
        }
    };
    page_with_status(p, "/profiles", &profile.name, status, content)
}

async fn detail(State(app): State<App>, p: Portal, PathId(id): PathId) -> Response {
    render_detail(&app, &p, id, Forms::default(), StatusCode::OK).await
}

async fn update(
    State(app): State<App>,
    PathId(id): PathId,
    PortalForm(p, f): PortalForm<ProfileForm>,
) -> Response {
    let opt_pw = |v: &str, clear: &Option<String>| {
        if on(clear) {
            Some(None)
        } else {
            given(v).map(Some)
        }
    };
    let patch = api::ProfilePatch {
        name: Some(f.name.clone()),
        password: given(&f.password),
        contacts_password: opt_pw(&f.contacts_password, &f.clear_contacts_password),
        call_memory_password: opt_pw(&f.call_memory_password, &f.clear_call_memory_password),
        collect_call_memory: Some(on(&f.collect_call_memory)),
        allow_call_memory_deletion: Some(on(&f.allow_call_memory_deletion)),
        call_memory_password_protected: Some(on(&f.call_memory_password_protected)),
        handsets: count(&f.handsets),
        speakers: count(&f.speakers),
    };
    let result = api::update_profile(&app, &p.auth, ProfileId(id), patch).await;
    match result {
        Ok(_) => {
            p.flash(&app, "Profile saved.").await;
            Redirect::to(&format!("/profiles/{id}")).into_response()
        }
        Err(e) => match layout::form_error(e) {
            Ok(err) => {
                let mut state = FormState::with_values(
                    "profile",
                    &[
                        ("name", &f.name),
                        ("handsets", &f.handsets),
                        ("speakers", &f.speakers),
                    ],
                );
                state.error = Some(err);
                let forms = Forms {
                    profile: Some(state),
                    ..Default::default()
                };
                render_detail(&app, &p, id, forms, StatusCode::UNPROCESSABLE_ENTITY).await
            }
            Err(e) => e.into_response(),
        },
    }
}

/// What an erasure takes, as a definition list.
pub fn erasure_list(e: &ProfileErasure) -> Markup {
    html! {
        dl.erase {
            dt { "Local contacts" } dd { (e.local_contacts) }
            dt { "Speed dial keys" } dd { (e.speed_dials) }
            dt { "Call-memory entries" } dd { (e.call_memory_entries) }
            dt { "Line keys" } dd { (e.line_assignments) }
            dt { "Consent records" } dd { (e.consents) }
            dt { "Call data records naming it (kept, without the name)" } dd { (e.cdrs_named) }
            dt { "Passwords" } dd { "profile, contacts and call-memory passwords" }
        }
    }
}

async fn delete_page(State(app): State<App>, p: Portal, PathId(id): PathId) -> Response {
    let pid = ProfileId(id);
    let (profile, preview) = match async {
        Ok::<_, ApiError>((
            app.store.get_profile(pid).await?,
            app.store.profile_erasure_preview(pid).await?,
        ))
    }
    .await
    {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    let content = html! {
        section.card {
            p.warning { "Deleting " strong { (profile.name) } " erases, for good:" }
            (erasure_list(&preview))
            form method="post" action=(format!("/profiles/{id}/delete")) {
                (layout::csrf(&p))
                button.danger type="submit" { "Delete profile and erase its data" } " "
                a href=(format!("/profiles/{id}")) { "Cancel" }
            }
        }
    };
    page(&p, "/profiles", "Delete profile", content)
}

async fn delete(
    State(app): State<App>,
    PathId(id): PathId,
    PortalForm(p, _): PortalForm<super::auth::Empty>,
) -> Response {
    match api::delete_profile(&app, &p.auth, ProfileId(id)).await {
        Ok(e) => {
            p.flash(&app, format!(
                "Profile deleted. Erased {} local contacts, {} speed dial keys, {} call-memory entries, {} line keys, {} consent records and its passwords.",
                e.local_contacts, e.speed_dials, e.call_memory_entries, e.line_assignments, e.consents)).await;
            Redirect::to("/profiles").into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn subject_export(State(app): State<App>, p: Portal, PathId(id): PathId) -> Response {
    match api::subject_export_response(&app, &p.auth, ProfileId(id)).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}
