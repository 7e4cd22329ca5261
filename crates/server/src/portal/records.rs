//! The records administrators review: the audit log viewer (with the state
//! of its hash chain), backups, and the live privacy report.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::html;
use openturret_store::AuditFilter;
use serde::Deserialize;

use super::extract::{Portal, PortalForm};
use super::layout::{self, FormState, field, on, page, page_with_status, select};
use crate::App;
use crate::http::error::ApiError;
use crate::http::parse_ts;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/audit", get(audit))
        .route("/audit/filter", post(audit_filter))
        .route("/backups", get(backups).post(create_backup))
        .route("/backups/key", post(set_backup_key))
        .route("/backups/verify", post(verify_backup))
        .route("/backups/restore", post(restore_backup))
        .route("/privacy", get(privacy))
}

#[derive(Deserialize)]
pub struct AuditQuery {
    before: Option<i64>,
}

/// The audit filter kept for a session, as `key=value` lines.

const AUDIT_KEYS: [&str; 6] = [
    "actor",
    "event_type",
    "object_type",
    "object_id",
    "from",
    "to",
];

async fn audit(State(app): State<App>, p: Portal, Query(q): Query<AuditQuery>) -> Response {
    let stored = app.portal.filter(p.session, "audit").await;
    let v =
        |k: &str| layout::given(&layout::filter_value(&stored, k)).map(|s| s.trim().to_string());
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
        .map(|k| (*k, layout::filter_value(&stored, k)))
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
                        td { (e.seq) } td { (r.at.rfc3339()) }
                        td { @if r.success { (r.level.as_str()) } @else { span.badge.bad { (r.level.as_str()) } } }
                        td { (r.event_type) }
                        td { (r.object_type) @if let Some(id) = &r.object_id { " " (id) } }
                        td { (r.changes.join(", ")) }
                        td { (r.pii.actor) }
                        td { (r.pii.client_ip) @if !r.pii.client_host.is_empty() { " " small.hint title="sent by the client in X-Client-Host; not verified" { "(claims " (r.pii.client_host) ")" } } }
                    }
                }
                @if entries.is_empty() { tr { td colspan="8" .muted { "No entries match." } } }
            }
        }
        (layout::pager(q.before.map(|_| "/audit".to_string()), next, if q.before.is_some() { "Older entries" } else { "Newest entries" }))
    };
    page(&p, "/audit", "Audit log", content)
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
        layout::filter_text(&[
            ("actor", &f.actor),
            ("event_type", &f.event_type),
            ("object_type", &f.object_type),
            ("object_id", &f.object_id),
            ("from", &f.from),
            ("to", &f.to),
        ])
    };
    app.portal.set_filter(p.session, "audit", value).await;
    Redirect::to("/audit").into_response()
}

async fn backups_page(
    app: &App,
    p: &Portal,
    create: &FormState,
    check: &FormState,
    status: StatusCode,
) -> Response {
    let embedded = crate::startup::embedded(&app.config);
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
    // `check` is the verify or the restore form, whichever was sent.
    let blank = |form| FormState {
        form,
        ..Default::default()
    };
    let (verify_blank, restore_blank) = (blank("verify"), blank("restore"));
    // `create` is the backup or the key form, whichever was sent.
    let (backup_blank, key_blank) = (blank("backup"), blank("key"));
    let (create, key_form) = if create.form == "key" {
        (&backup_blank, create)
    } else {
        (create, &key_blank)
    };
    let key = crate::backup::load_key(&app.config.data_dir).ok().flatten();
    let verify = if check.form == "restore" {
        &verify_blank
    } else {
        check
    };
    let restore = if check.form == "restore" {
        check
    } else {
        &restore_blank
    };
    let content = html! {
        section.card {
            h2 { "Backups in " code { (crate::backup::backup_dir(&app.config).display()) } }
            table {
                thead { tr { th { "Taken (UTC)" } th { "File" } th { "Size" } th { "Schema" } th { "Protected by" } } }
                tbody {
                    @for (path, m) in &list {
                        tr {
                            td { (openturret_domain::Timestamp(m.created_at).rfc3339()) }
                            td { (path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default()) }
                            td { (m.payload_len / 1024) " KiB" }
                            td { (m.schema_version) }
                            td {
                                @match m.key_fingerprint() {
                                    Some(f) => { "backup key " code { (f) } }
                                    None => { "its own passphrase" }
                                }
                            }
                        }
                    }
                    @if list.is_empty() { tr { td colspan="5" .muted { "No backups yet." } } }
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
        section.card {
            h2 { "Backup key" }
            @if let Some(k) = &key {
                p { "Backups can be sealed to this installation's backup key " code { (k.fingerprint()) } " (set up " (openturret_domain::Timestamp(k.created_at).rfc3339()) "). Taking one needs no passphrase, and scheduled backups use it, so no passphrase has to be kept on this machine. Verifying or restoring one needs the key's passphrase, which travels inside every backup wrapped by itself." }
                form method="post" action="/backups" {
                    (layout::csrf(p))
                    input type="hidden" name="with_key" value="on";
                    button type="submit" id="take-with-key" { "Take backup with the key" }
                }
            } @else {
                p { "Set up a backup key to take backups without typing a passphrase each time, and so that scheduled backups need no passphrase on this machine. Its passphrase is needed to verify or restore them; nobody can recover it for you." }
            }
            @if let Some(e) = key_form.general_error(&["passphrase", "confirm"]) { p.error-box role="alert" { (e) } }
            form method="post" action="/backups/key" {
                (layout::csrf(p))
                (field(key_form, "Key passphrase", "passphrase", "password", Some("At least 12 characters.")))
                (field(key_form, "Key passphrase again", "confirm", "password", None))
                button.secondary type="submit" { @if key.is_some() { "Replace the key" } @else { "Set up the key" } }
            }
        }
        @if !files.is_empty() {
            section.card {
                h2 { "Verify a backup" }
                @if let Some(e) = verify.general_error(&["file", "passphrase"]) { p.error-box role="alert" { (e) } }
                form method="post" action="/backups/verify" {
                    (layout::csrf(p))
                    (select(verify, "Backup", "file", &files))
                    (field(verify, "Its passphrase", "passphrase", "password", None))
                    button.secondary type="submit" { "Verify" }
                }
            }
        }
        section.card {
            h2 { "Restore" }
            p { "Restoring replaces all data with the backup's. The backup is checked and the restored database built aside first: a wrong passphrase or a damaged file changes nothing. Then the System Manager restarts to put it in place; everyone signs in again." }
            p.muted { "Profiles erased after the backup was taken are erased again during the restore: the erasure ledger is kept outside every backup." }
            @if !embedded {
                p { "This deployment's nodes share a PostgreSQL database: a running node cannot restore under the others. Stop every node, run " code { "turret backup restore FILE --passphrase-stdin" } " on one of them, then start them again." }
            } @else if !files.is_empty() {
                @if let Some(e) = restore.general_error(&["file", "passphrase"]) { p.error-box role="alert" { (e) } }
                form method="post" action="/backups/restore" {
                    (layout::csrf(p))
                    (select(restore, "Backup", "file", &files))
                    (field(restore, "Its passphrase", "passphrase", "password", None))
                    (layout::checkbox(restore, "I understand that all current data is replaced", "confirm", false))
                    button.danger type="submit" { "Restore and restart" }
                }
            }
            @if embedded {
                p.muted { "With the System Manager stopped: " code { "turret backup restore FILE --passphrase-stdin" } }
            }
        }
    };
    page_with_status(p, "/backups", "Backups", status, content)
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
    /// Sealed to the backup key instead of a passphrase.
    with_key: Option<String>,
}

/// Redirects with `flash` on success; otherwise shows the page again with
/// the error on the `form` form (the backup or the key form).
async fn backups_answer(
    app: &App,
    p: &Portal,
    result: crate::http::error::ApiResult<String>,
    form: &'static str,
) -> Response {
    match result {
        Ok(flash) => {
            p.flash(app, flash).await;
            Redirect::to("/backups").into_response()
        }
        Err(e) => match layout::form_error(e) {
            Ok(err) => {
                let failed = FormState {
                    error: Some(err),
                    form,
                    ..Default::default()
                };
                let verify = FormState {
                    form: "verify",
                    ..Default::default()
                };
                backups_page(app, p, &failed, &verify, StatusCode::UNPROCESSABLE_ENTITY).await
            }
            Err(e) => e.into_response(),
        },
    }
}

fn differ() -> crate::http::error::ApiError {
    crate::http::error::ApiError::invalid("confirm", "The two passphrases differ.")
}

async fn create_backup(
    State(app): State<App>,
    PortalForm(p, f): PortalForm<BackupForm>,
) -> Response {
    let with_key = layout::on(&f.with_key);
    let result = if !with_key && f.passphrase != f.confirm {
        Err(differ())
    } else {
        let passphrase = (!with_key).then_some(f.passphrase);
        crate::http::backups::create_backup(&app, &p.auth, passphrase)
            .await
            .map(|b| format!("Backup written: {}", b.file))
    };
    backups_answer(&app, &p, result, "backup").await
}

async fn set_backup_key(
    State(app): State<App>,
    PortalForm(p, f): PortalForm<BackupForm>,
) -> Response {
    let result = if f.passphrase != f.confirm {
        Err(differ())
    } else {
        crate::http::backups::set_backup_key(&app, &p.auth, f.passphrase)
            .await
            .map(|k| format!("Backup key {} set up.", k.fingerprint))
    };
    backups_answer(&app, &p, result, "key").await
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
            )
            .await;
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
pub struct RestoreForm {
    #[serde(default)]
    file: String,
    #[serde(default)]
    passphrase: String,
    confirm: Option<String>,
}

async fn restore_backup(
    State(app): State<App>,
    PortalForm(p, f): PortalForm<RestoreForm>,
) -> Response {
    let refuse = |err: (String, String)| {
        let mut s = FormState::with_values("restore", &[("file", &f.file)]);
        s.error = Some(err);
        s
    };
    let result = if !layout::on(&f.confirm) {
        Err(crate::http::error::ApiError::invalid(
            "confirm",
            "tick the box: a restore replaces all current data",
        ))
    } else {
        let body = crate::http::backups::VerifyIn {
            file: f.file.clone(),
            passphrase: f.passphrase.clone(),
        };
        crate::http::backups::restore_backup(&app, &p.auth, body).await
    };
    match result {
        Ok(r) => layout::respond(
            StatusCode::OK,
            layout::bare_page(
                "Restoring",
                html! {
                    meta http-equiv="refresh" content="6;url=/login";
                    p { (r.file) " (taken " (r.created_at) ") checked and prepared. "
                        "The System Manager restarts now to put it in place; sign in again in a few seconds." }
                    @if r.erased_again > 0 {
                        p { (r.erased_again) " profile(s) erased since the backup stay erased." }
                    }
                    p { a href="/login" { "Sign in" } }
                },
            ),
        ),
        Err(e) => match layout::form_error(e) {
            Ok(err) => {
                let s = refuse(err);
                let create = FormState {
                    form: "backup",
                    ..Default::default()
                };
                backups_page(&app, &p, &create, &s, StatusCode::UNPROCESSABLE_ENTITY).await
            }
            Err(e) => e.into_response(),
        },
    }
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
        p.muted { "How each promise below is tested, item by item: " (r["proof"]["document"].as_str().unwrap_or("")) "." }
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
            p.muted { "Stored in the " (r["categories"][0]["stored"].as_str().unwrap_or("")) "." }
        }
        section.card {
            h2 { "Collection and interfaces" }
            table { tbody {
                tr { td { "Profiles collecting call memory" } td { (r["collection"]["profiles_collecting_call_memory"]) } }
                tr { td { "Master password" } td { (yes(&r["collection"]["master_password_enabled"])) } }
                tr { td { "Clients may change global contacts" } td { (yes(&r["collection"]["global_contacts_changeable_by_clients"])) } }
                tr { td { "CTI interface" } td { (yes(&r["interfaces"]["cti"])) } }
                tr { td { "API interface" } td { (yes(&r["interfaces"]["api"])) } }
                tr { td { "Active API keys" } td { (r["interfaces"]["api_keys_active"]) } }
                tr #privacy-recording { td { "Recorder forwarding" } td {
                    (yes(&r["recording"]["enabled"]))
                    @if let Some(since) = r["recording"]["since"].as_str() { " (switched " (since) ")" }
                    @if r["recording"]["enabled"] == true {
                        "; " (r["recording"]["scope"].as_str().unwrap_or("")) ": "
                        (r["recording"]["lines"].as_array().into_iter().flatten().filter_map(|l| l["name"].as_str()).collect::<Vec<_>>().join(", "))
                        "; to "
                        (r["recording"]["recorders"].as_array().into_iter().flatten()
                            .map(|x| format!("{} (since {})", x["name"].as_str().unwrap_or(""), x["since"].as_str().unwrap_or("")))
                            .collect::<Vec<_>>().join(", "))
                    }
                } }
                tr { td { "Multi-Line Controller (SIP)" } td {
                    (yes(&r["telephony"]["mlc_running"]))
                    @if let Some(a) = r["telephony"]["sip_listen"].as_str() { " on " (a) }
                } }
                tr #privacy-nodes { td { "Between nodes" } td {
                    @if r["between_nodes"]["shared"] == true {
                        "this node " (r["between_nodes"]["this_node"].as_str().unwrap_or("")) "; others heard now: "
                        (r["between_nodes"]["other_nodes"].as_array().into_iter().flatten().filter_map(|n| n.as_str()).collect::<Vec<_>>().join(", "))
                        ". " (r["between_nodes"]["notes"].as_str().unwrap_or("")) "; " (r["between_nodes"]["protection"].as_str().unwrap_or("")) ", never stored."
                    } @else { "one node" }
                } }
                tr { td { "SIP signalling" } td { (r["telephony"]["signalling"].as_str().unwrap_or("")) } }
                tr { td { "Media" } td { (r["telephony"]["media"].as_str().unwrap_or("")) } }
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
    page(&p, "/privacy", "Privacy report", content)
}
