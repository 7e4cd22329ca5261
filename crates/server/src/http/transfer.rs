//! Import and export over the admin API (SPEC rule 9). Import takes the
//! file as the request body (CSV with a header row, or JSON lines) and is
//! all-or-nothing; export streams the file back.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use super::error::{ApiError, ApiResult};
use super::extract::{AdminAuth, Query};
use crate::App;
use crate::transfer::{Format, ImportError, Kind, RowError};

/// Largest file the API accepts.
pub const MAX_IMPORT_BYTES: usize = 512 * 1024 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    /// `csv` (default) or `json` (JSON lines).
    pub format: Option<String>,
    /// The profile, for `local-contacts` and `dkm-keys`.
    pub profile_id: Option<i64>,
    /// `reject` (default) or `update`.
    pub on_duplicate: Option<String>,
}

#[derive(Serialize)]
pub struct ImportOut {
    pub inserted: u64,
    pub updated: u64,
}

/// Why an import was refused, row by row.
#[derive(Serialize)]
pub struct RowsOut {
    pub error: &'static str,
    pub message: String,
    pub rows: Vec<RowError>,
    pub more: u64,
}

/// Runs an import of a file already on disk (API and portal).
pub async fn import_file(
    app: &App,
    auth: &AdminAuth,
    kind: Kind,
    path: &std::path::Path,
    format: Format,
    mode: openturret_store::OnDuplicate,
) -> Result<ImportOut, Response> {
    let (object_type, object_id) = kind.object();
    let r = auth.record(
        &format!("{object_type}.imported"),
        object_type,
        object_id,
        vec![],
    );
    let plan = openturret_domain::number::NumberPlan {
        country_code: app.config.numbers.country_code.clone(),
    };
    match crate::transfer::import(
        app.store.as_ref(),
        &plan,
        kind,
        path,
        crate::transfer::ImportOptions { format, mode },
        r,
        |_| {},
    )
    .await
    {
        Ok(c) => Ok(ImportOut {
            inserted: c.inserted,
            updated: c.updated,
        }),
        Err(ImportError::Rows { errors, more }) => {
            let message = format!(
                "nothing was imported: {} bad row(s)",
                errors.len() as u64 + more
            );
            Err((
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                axum::Json(RowsOut {
                    error: "invalid_rows",
                    message,
                    rows: errors,
                    more,
                }),
            )
                .into_response())
        }
        Err(ImportError::Other(e)) => Err(ApiError::Internal(e).into_response()),
    }
}

/// A private scratch file in the data directory, removed on drop.
pub struct Scratch(pub std::path::PathBuf);

impl Scratch {
    pub fn new(app: &App, what: &str) -> Scratch {
        Scratch(
            app.config
                .data_dir
                .join(format!("{what}-{}", crate::passwords::random_token(6))),
        )
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub fn parse_mode(v: Option<&str>) -> ApiResult<openturret_store::OnDuplicate> {
    match v.unwrap_or("reject") {
        "reject" => Ok(openturret_store::OnDuplicate::Reject),
        "update" => Ok(openturret_store::OnDuplicate::Update),
        _ => Err(ApiError::invalid(
            "on_duplicate",
            "must be reject or update",
        )),
    }
}

/// The kind named in the path, checked against the profile given.
async fn kind(app: &App, name: &str, profile: Option<i64>) -> ApiResult<Kind> {
    if let Some(p) = profile {
        app.store
            .get_profile(openturret_domain::ProfileId(p))
            .await?;
    }
    Kind::parse(name, profile.map(openturret_domain::ProfileId)).map_err(|_| match name {
        "local-contacts" | "dkm-keys" => {
            ApiError::invalid("profile_id", "is required for this kind")
        }
        _ => ApiError::NotFound("kind"),
    })
}

/// `POST /import/{kind}`
pub async fn import(
    State(app): State<App>,
    auth: AdminAuth,
    axum::extract::Path(name): axum::extract::Path<String>,
    Query(q): Query<ImportQuery>,
    req: Request,
) -> Response {
    let kind = match kind(&app, &name, q.profile_id).await {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    let format = match Format::parse(q.format.as_deref().unwrap_or("csv")) {
        Ok(f) => f,
        Err(_) => return ApiError::invalid("format", "must be csv or json").into_response(),
    };
    let mode = match parse_mode(q.on_duplicate.as_deref()) {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    let scratch = Scratch::new(&app, "import");
    let written = async {
        let mut f = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&scratch.0)
            .await?;
        let mut body = req.into_body().into_data_stream();
        let mut total = 0usize;
        while let Some(chunk) = body.next().await {
            let chunk: Bytes = chunk.map_err(|e| std::io::Error::other(e.to_string()))?;
            total += chunk.len();
            if total > MAX_IMPORT_BYTES {
                return Err(std::io::Error::other("too large"));
            }
            f.write_all(&chunk).await?;
        }
        f.flush().await?;
        Ok::<_, std::io::Error>(())
    }
    .await;
    if written.is_err() {
        return ApiError::BadBody(format!(
            "the file could not be received (at most {MAX_IMPORT_BYTES} bytes)"
        ))
        .into_response();
    }
    match import_file(&app, &auth, kind, &scratch.0, format, mode).await {
        Ok(out) => axum::Json(out).into_response(),
        Err(res) => res,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// `csv` (default) or `json` (JSON lines).
    pub format: Option<String>,
    /// The profile, for `local-contacts` and `dkm-keys`.
    pub profile_id: Option<i64>,
}

/// Sends what the exporter writes down an unbounded channel, page by page.
struct Sink(tokio::sync::mpsc::UnboundedSender<Result<Bytes, std::io::Error>>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::other("client gone"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Streams an export (API and portal).
pub fn export_response(app: App, actor: AdminAuth, kind: Kind, format: Format) -> Response {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut sink = Sink(tx.clone());
        match crate::transfer::export(app.store.as_ref(), kind, format, &mut sink).await {
            Ok(_) => {
                let (object_type, object_id) = kind.object();
                let r = actor.record(
                    &format!("{object_type}.exported"),
                    object_type,
                    object_id,
                    vec![],
                );
                let _ = app.store.append_audit(r).await;
            }
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "export failed");
                let _ = tx.send(Err(std::io::Error::other("export failed")));
            }
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let (ctype, ext) = match format {
        Format::Csv => ("text/csv; charset=utf-8", "csv"),
        Format::JsonLines => ("application/x-ndjson", "jsonl"),
    };
    let mut res = Body::from_stream(stream).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{}.{ext}\"",
        kind.file_stem()
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    res
}

/// `GET /export/{kind}`
pub async fn export(
    State(app): State<App>,
    auth: AdminAuth,
    axum::extract::Path(name): axum::extract::Path<String>,
    Query(q): Query<ExportQuery>,
) -> Response {
    let kind = match kind(&app, &name, q.profile_id).await {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    match Format::parse(q.format.as_deref().unwrap_or("csv")) {
        Ok(f) => export_response(app, auth, kind, f),
        Err(_) => ApiError::invalid("format", "must be csv or json").into_response(),
    }
}
