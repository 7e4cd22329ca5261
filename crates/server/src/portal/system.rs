//! Settings (with the master password), consents, the audit log viewer,
//! and the places kept for import/export, backups and privacy.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::html;
use openturret_domain::ConsentId;
use openturret_store::{AuditFilter, ProfileSort};
use serde::Deserialize;

use super::extract::{Portal, PortalForm};
use super::layout::{self, FormState, checkbox, field, on, page, page_with_status, select};
use super::profiles::{done, erasure_list};
use crate::App;
use crate::http::error::ApiError;
use crate::http::extract::{Json, PathId};
use crate::http::{parse_ts, profiles as api_profiles, settings as api_settings, ts};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/settings", get(settings).post(save_settings))
        .route("/settings/master-password", post(set_master))
        .route("/settings/master-password/disable", post(disable_master))
        .route("/consents", get(consents).post(record_consent))
        .route("/consents/{id}/withdraw", get(withdraw_page).post(withdraw))
        .route("/audit", get(audit))
        .route("/audit/filter", post(audit_filter))
        .route("/backups", get(backups).post(create_backup))
        .route("/backups/verify", post(verify_backup))
        .route("/privacy", get(privacy))
        .route("/settings/retention", post(save_retention))
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
                button type="submit" { "Save switches" }
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
    page_with_status(app, p, "/settings", "Settings", status, content)
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
}

fn patch() -> api_settings::SettingsPatch {
    api_settings::SettingsPatch {
        global_contacts_changeable: None,
        master_password_enabled: None,
        master_password: None,
        cti_enabled: None,
        api_enabled: None,
        recorder_forwarding_enabled: None,
        retention_call_memory_days: None,
        retention_cdr_days: None,
    }
}

async fn save_settings(State(app): State<App>, PortalForm(p, f): PortalForm<Switches>) -> Response {
    let body = api_settings::SettingsPatch {
        global_contacts_changeable: Some(on(&f.global_contacts_changeable)),
        cti_enabled: Some(on(&f.cti_enabled)),
        api_enabled: Some(on(&f.api_enabled)),
        recorder_forwarding_enabled: Some(on(&f.recorder_forwarding_enabled)),
        ..patch()
    };
    let r = api_settings::update(State(app.clone()), p.auth.clone(), Json(body)).await;
    done(&app, &p, r, "/settings", "Settings saved.", |(_, m)| {
        (StatusCode::UNPROCESSABLE_ENTITY, m).into_response()
    })
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
            );
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
                        td { (c.purpose) } td { (c.channel.as_str()) } td { (ts(c.given_at)) } td { (c.recorded_by) }
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
    page_with_status(app, p, "/consents", "Consents", status, content)
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
        let profile_id = super::profiles::number_field("profile_id", &f.profile_id)?;
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
            p.flash(&app, "Consent recorded.");
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
    page(&app, &p, "/consents", "Withdraw consent", content)
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
                e.local_contacts, e.speed_dials, e.call_memory_entries, e.line_assignments, e.consents));
            Redirect::to("/consents").into_response()
        }
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
pub struct AuditQuery {
    before: Option<i64>,
}

/// The audit filter kept for a session, as `key=value` lines.
fn filter_value(stored: &str, key: &str) -> String {
    stored
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or("")
        .to_string()
}

const AUDIT_KEYS: [&str; 6] = [
    "actor",
    "event_type",
    "object_type",
    "object_id",
    "from",
    "to",
];

async fn audit(State(app): State<App>, p: Portal, Query(q): Query<AuditQuery>) -> Response {
    let stored = app.portal.filter(p.session, "audit");
    let v = |k: &str| layout::given(&filter_value(&stored, k)).map(|s| s.trim().to_string());
    let date = |k: &str, end: bool| -> Result<Option<openturret_domain::Timestamp>, ApiError> {
        match v(k) {
            Some(d) => {
                let t = parse_ts(k, &format!("{d}T00:00:00Z"))?;
                Ok(Some(if end {
                    openturret_domain::Timestamp(t.0 + 86_400_000)
                } else {
                    t
                }))
            }
            None => Ok(None),
        }
    };
    let filter = match (date("from", false), date("to", true)) {
        (Ok(from), Ok(to)) => AuditFilter {
            actor: v("actor"),
            event_type: v("event_type"),
            object_type: v("object_type"),
            object_id: v("object_id"),
            from,
            to,
            before_seq: q.before,
            about_profile: None,
            limit: 50,
        },
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    let loaded = async {
        Ok::<_, ApiError>((
            app.store.list_audit(&filter).await?,
            app.store.verify_audit().await?,
        ))
    }
    .await;
    let (entries, chain) = match loaded {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    let values: Vec<(&str, String)> = AUDIT_KEYS
        .iter()
        .map(|k| (*k, filter_value(&stored, k)))
        .collect();
    let pairs: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let state = FormState::with_values("audit", &pairs);
    let next = (entries.len() == 50)
        .then(|| entries.last().map(|e| format!("/audit?before={}", e.seq)))
        .flatten();
    let content = html! {
        @match &chain.broken {
            None => p.chain.ok role="status" { "Hash chain verified: " (chain.verified) " entries, none altered or removed." },
            Some(b) => p.chain.bad role="alert" { "Hash chain BROKEN at entry " (b.seq) ": " (b.reason) "." },
        }
        form method="post" action="/audit/filter" {
            (layout::csrf(&p))
            div.row {
                (field(&state, "Administrator", "actor", "text", None))
                (field(&state, "Event type", "event_type", "text", Some("e.g. profile.created")))
                (field(&state, "Object type", "object_type", "text", Some("e.g. profile")))
                (field(&state, "Object id", "object_id", "text", None))
                (field(&state, "From", "from", "date", None))
                (field(&state, "To", "to", "date", None))
            }
            button.secondary type="submit" { "Filter" } " "
            button.secondary type="submit" name="clear" value="on" { "Clear filters" }
        }
        table {
            thead { tr { th { "#" } th { "Time (UTC)" } th { "Level" } th { "Event" } th { "Object" } th { "Changed fields" } th { "By" } th { "From" } } }
            tbody {
                @for e in &entries {
                    @let r = &e.record;
                    tr {
                        td { (e.seq) } td { (ts(r.at)) }
                        td { @if r.success { (r.level.as_str()) } @else { span.badge.bad { (r.level.as_str()) } } }
                        td { (r.event_type) }
                        td { (r.object_type) @if let Some(id) = &r.object_id { " " (id) } }
                        td { (r.changes.join(", ")) }
                        td { (r.pii.actor) }
                        td { (r.pii.client_ip) @if !r.pii.client_host.is_empty() { " (" (r.pii.client_host) ")" } }
                    }
                }
                @if entries.is_empty() { tr { td colspan="8" .muted { "No entries match." } } }
            }
        }
        (layout::pager(q.before.map(|_| "/audit".to_string()), next, if q.before.is_some() { "Older entries" } else { "Newest entries" }))
    };
    page(&app, &p, "/audit", "Audit log", content)
}

#[derive(Deserialize)]
pub struct AuditFilterForm {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    event_type: String,
    #[serde(default)]
    object_type: String,
    #[serde(default)]
    object_id: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    clear: Option<String>,
}

async fn audit_filter(
    State(app): State<App>,
    PortalForm(p, f): PortalForm<AuditFilterForm>,
) -> Response {
    let value = if on(&f.clear) {
        String::new()
    } else {
        [
            ("actor", &f.actor),
            ("event_type", &f.event_type),
            ("object_type", &f.object_type),
            ("object_id", &f.object_id),
            ("from", &f.from),
            ("to", &f.to),
        ]
        .iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| format!("{k}={}", v.trim().replace('\n', " ")))
        .collect::<Vec<_>>()
        .join("\n")
    };
    app.portal.set_filter(p.session, "audit", value);
    Redirect::to("/audit").into_response()
}

async fn backups_page(
    app: &App,
    p: &Portal,
    create: &FormState,
    check: &FormState,
    status: StatusCode,
) -> Response {
    let list = match crate::backup::list(&crate::backup::backup_dir(&app.config)) {
        Ok(l) => l,
        Err(e) => return ApiError::Internal(e).into_response(),
    };
    let files: Vec<(String, String)> = list
        .iter()
        .map(|(path, _)| {
            let f = path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            (f.clone(), f)
        })
        .collect();
    let content = html! {
        section.card {
            h2 { "Backups in " code { (crate::backup::backup_dir(&app.config).display()) } }
            table {
                thead { tr { th { "Taken (UTC)" } th { "File" } th { "Size" } th { "Schema" } } }
                tbody {
                    @for (path, m) in &list {
                        tr {
                            td { (ts(openturret_domain::Timestamp(m.created_at))) }
                            td { (path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default()) }
                            td { (m.payload_len / 1024) " KiB" }
                            td { (m.schema_version) }
                        }
                    }
                    @if list.is_empty() { tr { td colspan="4" .muted { "No backups yet." } } }
                }
            }
        }
        section.card {
            h2 { "Take a backup now" }
            p { "The backup holds the whole configuration and the sealed call memory, encrypted under the passphrase you choose. Without the passphrase it reveals nothing, and nobody can recover it for you." }
            @if let Some(e) = create.general_error(&["passphrase", "confirm"]) { p.error-box role="alert" { (e) } }
            form method="post" action="/backups" {
                (layout::csrf(p))
                (field(create, "Passphrase", "passphrase", "password", Some("At least 12 characters.")))
                (field(create, "Passphrase again", "confirm", "password", None))
                button type="submit" { "Take backup" }
            }
        }
        @if !files.is_empty() {
            section.card {
                h2 { "Verify a backup" }
                @if let Some(e) = check.general_error(&["file", "passphrase"]) { p.error-box role="alert" { (e) } }
                form method="post" action="/backups/verify" {
                    (layout::csrf(p))
                    (select(check, "Backup", "file", &files))
                    (field(check, "Its passphrase", "passphrase", "password", None))
                    button.secondary type="submit" { "Verify" }
                }
            }
        }
        section.card {
            h2 { "Restore" }
            p { "Restoring replaces all data. Stop the System Manager, then run:" }
            pre { code { "turret backup restore FILE --passphrase-stdin" } }
            p.muted { "Profiles erased after the backup was taken are erased again during the restore: the erasure ledger is kept outside every backup." }
        }
    };
    page_with_status(app, p, "/backups", "Backups", status, content)
}

async fn backups(State(app): State<App>, p: Portal) -> Response {
    let empty = |form| FormState {
        form,
        ..Default::default()
    };
    backups_page(&app, &p, &empty("backup"), &empty("verify"), StatusCode::OK).await
}

#[derive(Deserialize)]
pub struct BackupForm {
    #[serde(default)]
    passphrase: String,
    #[serde(default)]
    confirm: String,
}

async fn create_backup(
    State(app): State<App>,
    PortalForm(p, f): PortalForm<BackupForm>,
) -> Response {
    let empty = |form| FormState {
        form,
        ..Default::default()
    };
    let fail = |err: (String, String)| FormState {
        error: Some(err),
        form: "backup",
        ..Default::default()
    };
    if f.passphrase != f.confirm {
        let s = fail(("confirm".into(), "The two passphrases differ.".into()));
        return backups_page(
            &app,
            &p,
            &s,
            &empty("verify"),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    match crate::http::backups::create_backup(&app, &p.auth, f.passphrase).await {
        Ok(b) => {
            p.flash(&app, format!("Backup written: {}", b.file));
            Redirect::to("/backups").into_response()
        }
        Err(e) => match layout::form_error(e) {
            Ok(err) => {
                backups_page(
                    &app,
                    &p,
                    &fail(err),
                    &empty("verify"),
                    StatusCode::UNPROCESSABLE_ENTITY,
                )
                .await
            }
            Err(e) => e.into_response(),
        },
    }
}

#[derive(Deserialize)]
pub struct VerifyForm {
    #[serde(default)]
    file: String,
    #[serde(default)]
    passphrase: String,
}

async fn verify_backup(
    State(app): State<App>,
    PortalForm(p, f): PortalForm<VerifyForm>,
) -> Response {
    let body = crate::http::backups::VerifyIn {
        file: f.file.clone(),
        passphrase: f.passphrase,
    };
    match crate::http::backups::verify_backup(&app, &p.auth, body).await {
        Ok(v) => {
            p.flash(
                &app,
                format!(
                    "{} is intact: taken {}, database integrity {}, {} audit entries verified.",
                    v.file, v.created_at, v.integrity, v.audit_entries
                ),
            );
            Redirect::to("/backups").into_response()
        }
        Err(e) => match layout::form_error(e) {
            Ok(err) => {
                let mut s = FormState::with_values("verify", &[("file", &f.file)]);
                s.error = Some(err);
                backups_page(
                    &app,
                    &p,
                    &FormState {
                        form: "backup",
                        ..Default::default()
                    },
                    &s,
                    StatusCode::UNPROCESSABLE_ENTITY,
                )
                .await
            }
            Err(e) => e.into_response(),
        },
    }
}

#[derive(Deserialize)]
pub struct RetentionForm {
    #[serde(default)]
    call_memory_days: String,
    #[serde(default)]
    cdr_days: String,
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
            ..patch()
        };
        api_settings::update(State(app.clone()), p.auth.clone(), Json(body)).await
    }
    .await;
    done(
        &app,
        &p,
        r,
        "/settings#retention",
        "Retention saved.",
        |(_, m)| {
            p.flash(&app, m);
            Redirect::to("/settings#retention").into_response()
        },
    )
}

async fn privacy(State(app): State<App>, p: Portal) -> Response {
    let r = match crate::privacy::report(&app).await {
        Ok(r) => r,
        Err(e) => return ApiError::Internal(e).into_response(),
    };
    let yes = |v: &serde_json::Value| {
        if v.as_bool() == Some(true) {
            "on"
        } else {
            "off"
        }
    };
    let content = html! {
        p.muted { "Generated " (r["generated_at"].as_str().unwrap_or("")) " from this deployment. The same document as JSON: " code { "GET /api/v1/privacy-report" } "." }
        section.card {
            h2 { "What is held" }
            table {
                thead { tr { th { "Data" } th { "Records" } th { "Fields" } th { "Who can read it" } th { "Protection" } } }
                tbody {
                    @for c in r["categories"].as_array().into_iter().flatten() {
                        tr {
                            td { strong { (c["category"].as_str().unwrap_or("")) } }
                            td { (c["records"]) }
                            td { (c["fields"].as_str().unwrap_or("")) }
                            td { (c["readers"].as_str().unwrap_or("")) }
                            td { (c["protection"].as_str().unwrap_or("")) }
                        }
                    }
                }
            }
            p.muted { "Stored in " (r["deployment"]["data_directory"].as_str().unwrap_or("")) "." }
        }
        section.card {
            h2 { "Collection and interfaces" }
            table { tbody {
                tr { td { "Profiles collecting call memory" } td { (r["collection"]["profiles_collecting_call_memory"]) } }
                tr { td { "Master password" } td { (yes(&r["collection"]["master_password_enabled"])) } }
                tr { td { "Clients may change global contacts" } td { (yes(&r["collection"]["global_contacts_changeable_by_clients"])) } }
                tr { td { "CTI interface" } td { (yes(&r["interfaces"]["cti"])) } }
                tr { td { "API interface" } td { (yes(&r["interfaces"]["api"])) } }
                tr { td { "Recorder forwarding" } td { (yes(&r["interfaces"]["recorder_forwarding"])) } }
            } }
        }
        section.card {
            h2 { "Retention, backups, erasure" }
            table { tbody {
                tr { td { "Call memory kept" } td { (r["retention"]["call_memory"]["max_age_days"].as_u64().map(|d| format!("{d} days")).unwrap_or("until deleted".into())) ", at most " (r["retention"]["call_memory_fifo_per_profile"]) " per profile" } }
                tr { td { "Call data records kept" } td { (r["retention"]["cdrs"]["max_age_days"].as_u64().map(|d| format!("{d} days")).unwrap_or("until deleted".into())) } }
                tr { td { "Backups" } td { (r["backups"]["count"]) " in " (r["backups"]["directory"].as_str().unwrap_or("")) } }
                tr { td { "Erasures in the ledger" } td { (r["erasure_ledger"]["entries"]) " (kept outside every backup)" } }
                tr { td { "Audit log" } td { (r["audit"]["entries"]) " entries; hash chain " @if r["audit"]["chain_intact"].as_bool() == Some(true) { "intact" } @else { strong { "BROKEN" } } } }
            } }
        }
        section.card {
            h2 { "Encryption" }
            table { tbody {
                @for (k, v) in r["encryption"].as_object().into_iter().flatten() {
                    tr { td { (k.replace('_', " ")) } td { (v.as_str().unwrap_or("")) } }
                }
            } }
        }
    };
    page(&app, &p, "/privacy", "Privacy report", content)
}
