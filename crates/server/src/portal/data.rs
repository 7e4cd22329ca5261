//! Import & export in the portal: download global contacts, a profile's
//! local contacts or DKM keys, or the lines, as CSV or JSON lines; upload a
//! file back (all or nothing, every bad row listed). URLs carry only ids.

use axum::Router;
use axum::extract::{Multipart, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::html;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::extract::{self, Portal};
use super::layout::{self, page_with_status};
use crate::App;
use crate::http::transfer::{MAX_IMPORT_BYTES, Scratch, export_response, import_file, parse_mode};
use crate::transfer::{Format, Kind, RowError};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/data", get(data))
        .route("/data/export/{kind}", get(export))
        .route(
            "/data/import",
            post(import).layer(axum::extract::DefaultBodyLimit::max(MAX_IMPORT_BYTES)),
        )
        .route(
            "/data/import/global-contacts",
            post(import).layer(axum::extract::DefaultBodyLimit::max(MAX_IMPORT_BYTES)),
        )
}

const KINDS: [(&str, &str); 4] = [
    ("global-contacts", "Global contacts"),
    ("local-contacts", "Local contacts of a profile"),
    ("dkm-keys", "DKM speed dial keys of a profile"),
    ("lines", "Lines"),
];

async fn render(
    app: &App,
    p: &Portal,
    rows: Option<(&str, &[RowError], u64)>,
    status: StatusCode,
) -> Response {
    let profiles = app
        .store
        .list_profiles(None, openturret_store::ProfileSort::NameAsc, 10_000, 0)
        .await
        .map(|p| p.items)
        .unwrap_or_default();
    let profile_select = |id: &str| {
        html! {
            div.field {
                label for=(id) { "Profile (for local contacts and DKM keys)" }
                select id=(id) name="profile_id" {
                    option value="" { "—" }
                    @for pr in &profiles { option value=(pr.id.0) { (pr.name) } }
                }
            }
        }
    };
    let content = html! {
        section.card {
            h2 { "Export" }
            p { "Every global contact, as a file you can open in a spreadsheet and import back." }
            p {
                a.button href="/data/export/global-contacts?format=csv" download { "Download global contacts (CSV)" } " "
                a.button href="/data/export/global-contacts?format=json" download { "Download (JSON lines)" } " "
                a.button href="/data/export/lines?format=csv" download { "Download lines (CSV)" }
            }
            p.muted { "Line passwords are never exported. Columns are listed in the import-export documentation." }
            @if !profiles.is_empty() {
                h3 { "A profile's lists" }
                form.row method="get" action="/data/export/local-contacts" {
                    (profile_select("export-lc-profile"))
                    input type="hidden" name="format" value="csv";
                    div.field.submit { button.secondary type="submit" { "Download local contacts (CSV)" } }
                }
                form.row method="get" action="/data/export/dkm-keys" {
                    (profile_select("export-dkm-profile"))
                    input type="hidden" name="format" value="csv";
                    div.field.submit { button.secondary type="submit" { "Download DKM keys (CSV)" } }
                }
            }
        }
        section.card {
            h2 { "Import" }
            p { "A CSV file with a header row, or JSON lines. One bad row and nothing changes: every bad row is listed below with its line and column." }
            @if let Some((message, errors, more)) = rows {
                div.error-box role="alert" {
                    p { strong { (message) } }
                    table {
                        thead { tr { th { "Line" } th { "Column" } th { "Reason" } } }
                        tbody {
                            @for e in errors { tr { td { (e.line) } td { (e.column) } td { (e.reason) } } }
                        }
                    }
                    @if more > 0 { p { "… and " (more) " more." } }
                }
            }
            form method="post" action="/data/import" enctype="multipart/form-data" {
                (layout::csrf(p))
                div.field {
                    label for="import-kind" { "What" }
                    select #import-kind name="kind" {
                        @for (k, label) in KINDS { option value=(k) { (label) } }
                    }
                }
                (profile_select("import-profile"))
                div.field {
                    label for="import-file" { "File" }
                    input #import-file type="file" name="file" accept=".csv,.json,.jsonl,text/csv" required;
                }
                div.field {
                    label for="import-on_duplicate" { "Rows whose name and number already exist" }
                    select #import-on_duplicate name="on_duplicate" {
                        option value="reject" { "Refuse the import" }
                        option value="update" { "Update those contacts" }
                    }
                }
                button type="submit" { "Import" }
            }
        }
    };
    page_with_status(p, "/data", "Import & export", status, content)
}

async fn data(State(app): State<App>, p: Portal) -> Response {
    render(&app, &p, None, StatusCode::OK).await
}

#[derive(Deserialize)]
pub struct ExportQuery {
    format: Option<String>,
    /// Empty when none was chosen.
    #[serde(default)]
    profile_id: String,
}

/// The kind and (for profile kinds) profile a form or link names.
async fn kind_of(app: &App, name: &str, profile: &str) -> Result<Kind, Response> {
    let pid = profile
        .trim()
        .parse::<i64>()
        .ok()
        .map(openturret_domain::ProfileId);
    if let Some(id) = pid
        && let Err(e) = app.store.get_profile(id).await
    {
        return Err(crate::http::error::ApiError::from(e).into_response());
    }
    Kind::parse(name, pid)
        .map_err(|e| (StatusCode::UNPROCESSABLE_ENTITY, format!("{e}")).into_response())
}

async fn export(
    State(app): State<App>,
    p: Portal,
    axum::extract::Path(name): axum::extract::Path<String>,
    Query(q): Query<ExportQuery>,
) -> Response {
    let kind = match kind_of(&app, &name, &q.profile_id).await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let format = if q.format.as_deref() == Some("json") {
        Format::JsonLines
    } else {
        Format::Csv
    };
    export_response(app, p.auth, kind, format)
}

async fn import(
    State(app): State<App>,
    p: Portal,
    headers: HeaderMap,
    mut form: Multipart,
) -> Response {
    if extract::cross_site(&headers) {
        return extract::forbidden("This request came from another site and was refused.");
    }
    let scratch = Scratch::new(&app, "import");
    let (mut csrf_ok, mut mode, mut name, mut got_file) = (false, None, String::new(), false);
    let (mut kind_name, mut profile) = ("global-contacts".to_string(), String::new());
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                return (StatusCode::BAD_REQUEST, format!("the upload failed: {e}"))
                    .into_response();
            }
        };
        match field.name().unwrap_or("") {
            "_csrf" => csrf_ok = field.text().await.is_ok_and(|t| extract::same(&t, &p.csrf)),
            "on_duplicate" => mode = field.text().await.ok(),
            "kind" => kind_name = field.text().await.unwrap_or_default(),
            "profile_id" => profile = field.text().await.unwrap_or_default(),
            "file" => {
                if !csrf_ok {
                    break;
                }
                name = field.file_name().unwrap_or("").to_string();
                let mut field = field;
                let Ok(mut f) = tokio::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&scratch.0)
                    .await
                else {
                    return StatusCode::INTERNAL_SERVER_ERROR.into_response();
                };
                while let Ok(Some(chunk)) = field.chunk().await {
                    if f.write_all(&chunk).await.is_err() {
                        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
                    }
                }
                let _ = f.flush().await;
                got_file = true;
            }
            _ => {}
        }
    }
    if !csrf_ok {
        return extract::forbidden(
            "This form has expired or did not come from this portal. Go back, reload the page and try again.",
        );
    }
    if !got_file {
        return render(
            &app,
            &p,
            Some(("Choose a file to import.", &[], 0)),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    let format = if name.ends_with(".json") || name.ends_with(".jsonl") {
        Format::JsonLines
    } else {
        Format::Csv
    };
    let mode = match parse_mode(mode.as_deref()) {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    let kind = match kind_of(&app, &kind_name, &profile).await {
        Ok(k) => k,
        Err(_) => {
            let msg = "Choose the profile whose list this file holds.";
            return render(
                &app,
                &p,
                Some((msg, &[], 0)),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
    };
    match import_file(&app, &p.auth, kind, &scratch.0, format, mode).await {
        Ok(out) => {
            p.flash(
                &app,
                format!(
                    "Imported {name}: {} new, {} updated.",
                    out.inserted, out.updated
                ),
            )
            .await;
            Redirect::to("/data").into_response()
        }
        Err(res) => {
            // Turn the API's row report into the page.
            let (parts, body) = res.into_parts();
            if parts.status != StatusCode::UNPROCESSABLE_ENTITY {
                return Response::from_parts(parts, body);
            }
            let bytes = axum::body::to_bytes(body, 4 << 20)
                .await
                .unwrap_or_default();
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            let errors: Vec<RowError> = v["rows"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|r| RowError {
                            line: r["line"].as_u64().unwrap_or(0),
                            column: r["column"].as_str().unwrap_or("").to_string(),
                            reason: r["reason"].as_str().unwrap_or("").to_string(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            let more = v["more"].as_u64().unwrap_or(0);
            let message = v["message"]
                .as_str()
                .unwrap_or("nothing was imported")
                .to_string();
            render(
                &app,
                &p,
                Some((&message, &errors, more)),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    }
}
