//! Settings (with the master password and retention) and consents.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::html;
use openturret_domain::ConsentId;
use openturret_domain::model::CdrField;
use openturret_store::ProfileSort;
use serde::Deserialize;

use super::extract::{Portal, PortalForm};
use super::layout::{self, FormState, checkbox, field, on, page, page_with_status, select};
use super::profiles::{done, erasure_list};
use crate::App;
use crate::http::error::ApiError;
use crate::http::extract::{Json, PathId};
use crate::http::{profiles as api_profiles, settings as api_settings};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/settings", get(settings).post(save_settings))
        .route("/settings/master-password", post(set_master))
        .route("/settings/master-password/disable", post(disable_master))
        .route("/consents", get(consents).post(record_consent))
        .route("/consents/{id}/withdraw", get(withdraw_page).post(withdraw))
        .route("/settings/retention", post(save_retention))
        .route("/settings/pseudonym-key/rotate", post(rotate_pseudonym_key))
        .route("/settings/cdr", post(save_cdr))
}

async fn settings_page(app: &App, p: &Portal, master: &FormState, status: StatusCode) -> Response {
    let s = match app.store.get_settings().await {
        Ok(s) => s,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let sw = FormState {
        form: "switches",
        ..Default::default()
    };
    let cdr = FormState {
        form: "cdr",
        ..Default::default()
    };
    let content = html! {
        section.card {
            h2 { "Switches" }
            form method="post" action="/settings" {
                (layout::csrf(p))
                (checkbox(&sw, "Client users may change global contacts (never delete them)", "global_contacts_changeable", s.global_contacts_changeable))
                h3 { "External interfaces" }
                p.muted { "Each interface stays off until switched on." }
                (checkbox(&sw, "CTI interface", "cti_enabled", s.cti_enabled))
                (checkbox(&sw, "API interface", "api_enabled", s.api_enabled))
                (checkbox(&sw, "Recorder forwarding", "recorder_forwarding_enabled", s.recorder_forwarding_enabled))
                (checkbox(&sw, "Record every line (otherwise only the lines marked Recorded)", "recording_all_lines", s.recording_all_lines))
                (layout::select(&FormState::with_values("switches", &[("pseudonymisation", s.pseudonymisation.as_str())]),
                    "Numbers sent to external applications", "pseudonymisation", &[
                    ("off".into(), "In clear".into()),
                    ("keyed_hash".into(), "Pseudonymised: keyed hash (same number, same pseudonym, until the key is rotated)".into()),
                    ("truncate".into(), "Truncated: the last three digits hidden".into()),
                ]))
                button type="submit" { "Save switches" }
            }
            form method="post" action="/settings/pseudonym-key/rotate" {
                (layout::csrf(p))
                button.secondary.small type="submit" { "Rotate the pseudonym key" }
            }
        }
        section.card #cdr {
            h2 { "Call data records" }
            p.muted {
                "Off until switched on. A switched-off field is never stored or sent. Records go to external applications "
                "with CDR access (the CTI stream and " code { "/ext/v1/cdrs" } "), and to rolling files in "
                code { (app.cdr.dir().display()) } " for offline pick-up."
            }
            form method="post" action="/settings/cdr" {
                (layout::csrf(p))
                (checkbox(&cdr, "Produce call data records", "cdr_enabled", s.cdr_enabled))
                (checkbox(&cdr, "Keep them in the database (readable through the API, within their retention)", "cdr_store", s.cdr_store))
                fieldset {
                    legend { "Fields" }
                    @for f in CdrField::ALL {
                        (checkbox(&cdr, cdr_label(f), &format!("field.{}", f.as_str()), s.cdr_fields.contains(f)))
                    }
                }
                (select(&FormState::with_values("cdr", &[("cdr_files", s.cdr_files.as_str())]),
                    "Rolling files", "cdr_files", &[
                    ("off".into(), "None".into()),
                    ("csv".into(), "CSV".into()),
                    ("jsonl".into(), "JSON lines".into()),
                    ("both".into(), "CSV and JSON lines".into()),
                ]))
                button type="submit" { "Save call data records" }
            }
        }
        section.card #retention {
            h2 { "Retention" }
            p.muted { "Older records are deleted every hour; each purge is audited. Leave a field empty to keep records until they are deleted." }
            form.row method="post" action="/settings/retention" {
                (layout::csrf(p))
                (field(&FormState::with_values("retention", &[("call_memory_days", &s.retention_call_memory_days.map(|d| d.to_string()).unwrap_or_default())]),
                    "Call memory: days", "call_memory_days", "number", None))
                (field(&FormState::with_values("retention", &[("cdr_days", &s.retention_cdr_days.map(|d| d.to_string()).unwrap_or_default())]),
                    "Call data records: days", "cdr_days", "number", None))
                (field(&FormState::with_values("retention", &[("audit_days", &s.retention_audit_days.map(|d| d.to_string()).unwrap_or_default())]),
                    "Audit log: days", "audit_days", "number", Some("Older entries are purged; the hash chain then verifies from the oldest kept entry.")))
                div.field.submit { button type="submit" { "Save retention" } }
            }
        }
        section.card #master {
            h2 { "Master password" }
            p.warning {
                "The master password lets an administrator sign in to any profile from a client to delete call-memory entries. "
                "Enabling it, disabling it and every use are recorded in the audit log."
            }
            @if s.master_password_enabled {
                p { span.badge.on { "enabled" } }
            } @else {
                p { span.badge { "disabled" } }
            }
            @if let Some(e) = master.general_error(&["master_password", "confirm"]) { p.error-box role="alert" { (e) } }
            form method="post" action="/settings/master-password" {
                (layout::csrf(p))
                (field(master, if s.master_password_enabled { "New master password" } else { "Master password" }, "master_password", "password", Some("At least 12 characters.")))
                (field(master, "Master password again", "confirm", "password", None))
                button type="submit" { @if s.master_password_enabled { "Change master password" } @else { "Enable master password" } }
            }
            @if s.master_password_enabled {
                p {}
                (layout::button_form(p, "/settings/master-password/disable", "Disable master password", "danger"))
            }
        }
    };
    page_with_status(p, "/settings", "Settings", status, content)
}

async fn settings(State(app): State<App>, p: Portal) -> Response {
    settings_page(
        &app,
        &p,
        &FormState {
            form: "master",
            ..Default::default()
        },
        StatusCode::OK,
    )
    .await
}

#[derive(Deserialize)]
pub struct Switches {
    global_contacts_changeable: Option<String>,
    cti_enabled: Option<String>,
    api_enabled: Option<String>,
    recorder_forwarding_enabled: Option<String>,
    recording_all_lines: Option<String>,
    #[serde(default)]
    pseudonymisation: Option<String>,
}

fn patch() -> api_settings::SettingsPatch {
    api_settings::SettingsPatch {
        global_contacts_changeable: None,
        master_password_enabled: None,
        master_password: None,
        cti_enabled: None,
        api_enabled: None,
        recorder_forwarding_enabled: None,
        recording_all_lines: None,
        retention_call_memory_days: None,
        retention_cdr_days: None,
        retention_audit_days: None,
        pseudonymisation: None,
        cdr_enabled: None,
        cdr_store: None,
        cdr_fields: None,
        cdr_files: None,
    }
}

async fn save_settings(State(app): State<App>, PortalForm(p, f): PortalForm<Switches>) -> Response {
    let body = api_settings::SettingsPatch {
        global_contacts_changeable: Some(on(&f.global_contacts_changeable)),
        cti_enabled: Some(on(&f.cti_enabled)),
        api_enabled: Some(on(&f.api_enabled)),
        recorder_forwarding_enabled: Some(on(&f.recorder_forwarding_enabled)),
        recording_all_lines: Some(on(&f.recording_all_lines)),
        pseudonymisation: f.pseudonymisation.clone(),
        ..patch()
    };
    let r = api_settings::update(State(app.clone()), p.auth.clone(), Json(body)).await;
    done(&app, &p, r, "/settings", "Settings saved.", |(_, m)| {
        (StatusCode::UNPROCESSABLE_ENTITY, m).into_response()
    })
    .await
}

fn cdr_label(f: CdrField) -> &'static str {
    match f {
        CdrField::ProfileName => "Profile name",
        CdrField::AttendantGroup => "Attendant group",
        CdrField::CalledNumber => "Called number",
        CdrField::CallingNumber => "Calling number",
        CdrField::Duration => "Duration",
        CdrField::CallType => "Call type (local or remote)",
        CdrField::Direction => "Direction",
        CdrField::StartedAt => "Start time",
        CdrField::EndedAt => "End time",
    }
}

/// The CDR form: switches, one checkbox per field (`field.<name>`), files.
async fn save_cdr(
    State(app): State<App>,
    PortalForm(p, f): PortalForm<std::collections::HashMap<String, String>>,
) -> Response {
    let checked = |k: &str| on(&f.get(k).cloned());
    let body = api_settings::SettingsPatch {
        cdr_enabled: Some(checked("cdr_enabled")),
        cdr_store: Some(checked("cdr_store")),
        cdr_fields: Some(
            CdrField::ALL
                .iter()
                .filter(|x| checked(&format!("field.{}", x.as_str())))
                .map(|x| x.as_str().to_string())
                .collect(),
        ),
        cdr_files: f.get("cdr_files").cloned(),
        ..patch()
    };
    let r = api_settings::update(State(app.clone()), p.auth.clone(), Json(body)).await;
    done(
        &app,
        &p,
        r,
        "/settings",
        "Call data record output saved.",
        |(_, m)| (StatusCode::UNPROCESSABLE_ENTITY, m).into_response(),
    )
    .await
}

async fn rotate_pseudonym_key(
    State(app): State<App>,
    PortalForm(p, _): PortalForm<super::auth::Empty>,
) -> Response {
    let r = api_settings::rotate_pseudonym_key(State(app.clone()), p.auth.clone()).await;
    done(
        &app,
        &p,
        r,
        "/settings",
        "A new pseudonym key is in use.",
        |(_, m)| (StatusCode::UNPROCESSABLE_ENTITY, m).into_response(),
    )
    .await
}

#[derive(Deserialize)]
pub struct MasterForm {
    #[serde(default)]
    master_password: String,
    #[serde(default)]
    confirm: String,
}

async fn set_master(State(app): State<App>, PortalForm(p, f): PortalForm<MasterForm>) -> Response {
    let master = |err: (String, String)| FormState {
        error: Some(err),
        form: "master",
        ..Default::default()
    };
    if f.master_password != f.confirm {
        let state = master(("confirm".into(), "The two passwords differ.".into()));
        return settings_page(&app, &p, &state, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    let body = api_settings::SettingsPatch {
        master_password_enabled: Some(true),
        master_password: Some(f.master_password),
        ..patch()
    };
    match api_settings::update(State(app.clone()), p.auth.clone(), Json(body)).await {
        Ok(_) => {
            p.flash(
                &app,
                "The master password is enabled. This was recorded in the audit log.",
            )
            .await;
            Redirect::to("/settings").into_response()
        }
        Err(e) => match layout::form_error(e) {
            Ok(err) => {
                settings_page(&app, &p, &master(err), StatusCode::UNPROCESSABLE_ENTITY).await
            }
            Err(e) => e.into_response(),
        },
    }
}

async fn disable_master(
    State(app): State<App>,
    PortalForm(p, _): PortalForm<super::auth::Empty>,
) -> Response {
    let body = api_settings::SettingsPatch {
        master_password_enabled: Some(false),
        ..patch()
    };
    let r = api_settings::update(State(app.clone()), p.auth.clone(), Json(body)).await;
    done(
        &app,
        &p,
        r,
        "/settings",
        "The master password is disabled and cleared.",
        |(_, m)| (StatusCode::UNPROCESSABLE_ENTITY, m).into_response(),
    )
    .await
}

async fn consents_page(app: &App, p: &Portal, state: &FormState, status: StatusCode) -> Response {
    let loaded = async {
        Ok::<_, ApiError>((
            app.store.list_consents(None).await?,
            app.store
                .list_profiles(None, ProfileSort::NameAsc, 10_000, 0)
                .await?
                .items,
        ))
    }
    .await;
    let (consents, profiles) = match loaded {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    let name_of = |id| {
        profiles
            .iter()
            .find(|p| p.id == id)
            .map(|p| p.name.as_str())
            .unwrap_or("?")
    };
    let options: Vec<(String, String)> = profiles
        .iter()
        .map(|p| (p.id.0.to_string(), p.name.clone()))
        .collect();
    let channels: Vec<(String, String)> = [
        ("paper", "Paper"),
        ("email", "E-mail"),
        ("electronic", "Electronic"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    let content = html! {
        table {
            thead { tr { th { "Profile" } th { "Purpose" } th { "How" } th { "Given" } th { "Recorded by" } th { span.muted { "Actions" } } } }
            tbody {
                @for c in &consents {
                    tr {
                        td { a href=(format!("/profiles/{}", c.profile_id)) { (name_of(c.profile_id)) } }
                        td { (c.purpose) } td { (c.channel.as_str()) } td { (c.given_at.rfc3339()) } td { (c.recorded_by) }
                        td.actions { a.button.danger href=(format!("/consents/{}/withdraw", c.id)) { "Withdraw…" } }
                    }
                }
                @if consents.is_empty() { tr { td colspan="6" .muted { "No consent records." } } }
            }
        }
        section.card {
            h2 { "Record a consent" }
            @if let Some(e) = state.general_error(&["profile_id", "purpose", "channel", "given_at"]) { p.error-box role="alert" { (e) } }
            @if profiles.is_empty() {
                p.muted { "Create a profile first." }
            } @else {
                form method="post" action="/consents" {
                    (layout::csrf(p))
                    (select(state, "Profile", "profile_id", &options))
                    (field(state, "Purpose", "purpose", "text", Some("What the person agreed to, e.g. call memory collection.")))
                    (select(state, "Given by", "channel", &channels))
                    (field(state, "Date given", "given_at", "date", None))
                    button type="submit" { "Record consent" }
                }
            }
        }
    };
    page_with_status(p, "/consents", "Consents", status, content)
}

async fn consents(State(app): State<App>, p: Portal) -> Response {
    consents_page(
        &app,
        &p,
        &FormState::with_values("consent", &[("channel", "paper")]),
        StatusCode::OK,
    )
    .await
}

#[derive(Deserialize)]
pub struct ConsentForm {
    #[serde(default)]
    profile_id: String,
    #[serde(default)]
    purpose: String,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    given_at: String,
}

async fn record_consent(
    State(app): State<App>,
    PortalForm(p, f): PortalForm<ConsentForm>,
) -> Response {
    let r = async {
        let profile_id = super::profile_items::number_field("profile_id", &f.profile_id)?;
        let given_at = layout::given(&f.given_at).map(|d| format!("{}T00:00:00Z", d.trim()));
        let body = api_profiles::ConsentIn {
            profile_id,
            purpose: f.purpose.clone(),
            channel: f.channel.clone(),
            given_at,
        };
        api_profiles::record_consent(&app, &p.auth, body).await
    }
    .await;
    let state = match r {
        Ok(_) => {
            p.flash(&app, "Consent recorded.").await;
            return Redirect::to("/consents").into_response();
        }
        Err(e) => match layout::form_error(e) {
            Ok(err) => {
                let mut s = FormState::with_values(
                    "consent",
                    &[
                        ("profile_id", &f.profile_id),
                        ("purpose", &f.purpose),
                        ("channel", &f.channel),
                        ("given_at", &f.given_at),
                    ],
                );
                s.error = Some(err);
                s
            }
            Err(e) => return e.into_response(),
        },
    };
    consents_page(&app, &p, &state, StatusCode::UNPROCESSABLE_ENTITY).await
}

async fn withdraw_page(State(app): State<App>, p: Portal, PathId(id): PathId) -> Response {
    let loaded = async {
        let c = app.store.get_consent(ConsentId(id)).await?;
        Ok::<_, ApiError>((
            app.store.get_profile(c.profile_id).await?,
            app.store.profile_erasure_preview(c.profile_id).await?,
            c,
        ))
    }
    .await;
    let (profile, preview, consent) = match loaded {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    let content = html! {
        section.card {
            p.warning {
                "Withdrawing the consent of " strong { (profile.name) } " (" (consent.purpose) ") deletes the profile. This erases, for good:"
            }
            (erasure_list(&preview))
            form method="post" action=(format!("/consents/{id}/withdraw")) {
                (layout::csrf(&p))
                button.danger type="submit" { "Withdraw consent and erase the profile" } " "
                a href="/consents" { "Cancel" }
            }
        }
    };
    page(&p, "/consents", "Withdraw consent", content)
}

async fn withdraw(
    State(app): State<App>,
    PathId(id): PathId,
    PortalForm(p, _): PortalForm<super::auth::Empty>,
) -> Response {
    match api_profiles::withdraw(&app, &p.auth, ConsentId(id)).await {
        Ok(e) => {
            p.flash(&app, format!(
                "Consent withdrawn and profile erased: {} local contacts, {} speed dial keys, {} call-memory entries, {} line keys, {} consent records and its passwords.",
                e.local_contacts, e.speed_dials, e.call_memory_entries, e.line_assignments, e.consents)).await;
            Redirect::to("/consents").into_response()
        }
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
pub struct RetentionForm {
    #[serde(default)]
    call_memory_days: String,
    #[serde(default)]
    cdr_days: String,
    #[serde(default)]
    audit_days: String,
}

async fn save_retention(
    State(app): State<App>,
    PortalForm(p, f): PortalForm<RetentionForm>,
) -> Response {
    let days = |field: &str, v: &str| -> Result<Option<u32>, ApiError> {
        match v.trim() {
            "" => Ok(None),
            t => t
                .parse()
                .map(Some)
                .map_err(|_| ApiError::invalid(field, "must be a whole number of days")),
        }
    };
    let r = async {
        let body = api_settings::SettingsPatch {
            retention_call_memory_days: Some(days(
                "retention_call_memory_days",
                &f.call_memory_days,
            )?),
            retention_cdr_days: Some(days("retention_cdr_days", &f.cdr_days)?),
            retention_audit_days: Some(days("retention_audit_days", &f.audit_days)?),
            ..patch()
        };
        api_settings::update(State(app.clone()), p.auth.clone(), Json(body)).await
    }
    .await;
    // A refused value is told the same way as success: a message above
    // the settings.
    let message = match r {
        Ok(_) => "Retention saved.".to_string(),
        Err(e) => match layout::form_error(e) {
            Ok((_, m)) => m,
            Err(e) => return e.into_response(),
        },
    };
    p.flash(&app, message).await;
    Redirect::to("/settings#retention").into_response()
}
