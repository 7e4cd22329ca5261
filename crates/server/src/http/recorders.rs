//! Voice recorders (issue 18): the Session Recording Servers every
//! recorded call is forwarded to with SIPREC. One or two (2N); whether and
//! which calls are recorded is in the settings (`recorder_forwarding_enabled`,
//! `recording_all_lines`) and on each line (`recorded`). Every change is
//! audited; a recorder's password is write-only and stored encrypted.

use axum::extract::State;
use axum::http::StatusCode;
use openturret_domain::model::{Recorder, RecorderFields};
use openturret_domain::{RecorderId, Timestamp};
use serde::{Deserialize, Serialize};

use super::error::ApiResult;
use super::extract::{AdminAuth, Json, PathId};
use super::lines::password;
use crate::App;

#[derive(Serialize)]
pub struct RecorderOut {
    pub id: i64,
    pub name: String,
    /// The Session Recording Server's SIP address.
    pub uri: String,
    /// `udp`, `tcp` or `tls`.
    pub transport: &'static str,
    pub username: String,
    pub has_password: bool,
    /// How it has been doing since the start.
    pub status: StatusOut,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Serialize)]
pub struct StatusOut {
    /// `ok`, `failing` (its last attempt failed) or `unused`.
    pub state: &'static str,
    pub sessions: u64,
    pub failures: u64,
    pub last_failure: Option<String>,
    pub last_failure_at: Option<String>,
}

impl RecorderOut {
    pub fn new(app: &App, r: Recorder) -> Self {
        let s = app.recorder_status.of(r.id.0);
        RecorderOut {
            status: StatusOut {
                state: s.state(),
                sessions: s.sessions,
                failures: s.failures,
                last_failure: s.last_failure.as_ref().map(|(_, w)| w.clone()),
                last_failure_at: s.last_failure.as_ref().map(|(t, _)| t.rfc3339()),
            },
            id: r.id.0,
            name: r.fields.name,
            uri: r.fields.uri,
            transport: r.fields.transport.as_str(),
            username: r.fields.username,
            has_password: r.has_password,
            created_at: r.created_at.rfc3339(),
            updated_at: r.updated_at.rfc3339(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecorderIn {
    pub name: String,
    pub uri: String,
    #[serde(default)]
    pub transport: String,
    #[serde(default)]
    pub username: String,
    /// Write-only.
    pub password: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecorderPatch {
    pub name: Option<String>,
    pub uri: Option<String>,
    pub transport: Option<String>,
    pub username: Option<String>,
    /// Write-only; absent keeps the stored password.
    pub password: Option<String>,
}

pub async fn list(
    State(app): State<App>,
    _a: AdminAuth,
) -> ApiResult<axum::Json<Vec<RecorderOut>>> {
    Ok(axum::Json(
        app.store
            .list_recorders()
            .await?
            .into_iter()
            .map(|r| RecorderOut::new(&app, r))
            .collect(),
    ))
}

pub async fn get(
    State(app): State<App>,
    _a: AdminAuth,
    PathId(id): PathId,
) -> ApiResult<axum::Json<RecorderOut>> {
    Ok(axum::Json(RecorderOut::new(
        &app,
        app.store.get_recorder(RecorderId(id)).await?,
    )))
}

pub async fn create(
    State(app): State<App>,
    auth: AdminAuth,
    Json(b): Json<RecorderIn>,
) -> ApiResult<(StatusCode, axum::Json<RecorderOut>)> {
    let f = RecorderFields::new(&b.name, &b.uri, &b.transport, &b.username)?;
    let pw = password(b.password)?;
    let mut changed = vec!["name", "uri", "transport", "username"];
    if pw.is_some() {
        changed.push("password");
    }
    let r = auth.record("recorder.created", "recorder", None, changed);
    let rec = app.store.create_recorder(f, pw, r).await?;
    Ok((StatusCode::CREATED, axum::Json(RecorderOut::new(&app, rec))))
}

pub async fn update(
    State(app): State<App>,
    auth: AdminAuth,
    PathId(id): PathId,
    Json(b): Json<RecorderPatch>,
) -> ApiResult<axum::Json<RecorderOut>> {
    let id = RecorderId(id);
    let cur = app.store.get_recorder(id).await?.fields;
    let f = RecorderFields::new(
        b.name.as_deref().unwrap_or(&cur.name),
        b.uri.as_deref().unwrap_or(&cur.uri),
        b.transport.as_deref().unwrap_or(cur.transport.as_str()),
        b.username.as_deref().unwrap_or(&cur.username),
    )?;
    let pw = password(b.password)?;
    let mut changed = Vec::new();
    for (field, new, old) in [
        ("name", &f.name, &cur.name),
        ("uri", &f.uri, &cur.uri),
        ("username", &f.username, &cur.username),
    ] {
        if new != old {
            changed.push(field);
        }
    }
    if f.transport != cur.transport {
        changed.push("transport");
    }
    if pw.is_some() {
        changed.push("password");
    }
    let r = auth.record(
        "recorder.updated",
        "recorder",
        Some(id.to_string()),
        changed,
    );
    let rec = app.store.update_recorder(id, f, pw, r).await?;
    Ok(axum::Json(RecorderOut::new(&app, rec)))
}

pub async fn delete(
    State(app): State<App>,
    auth: AdminAuth,
    PathId(id): PathId,
) -> ApiResult<StatusCode> {
    let r = auth.record("recorder.deleted", "recorder", Some(id.to_string()), vec![]);
    app.store.delete_recorder(RecorderId(id), r).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    /// RFC 3339; entries at or after (default: the start of time).
    from: Option<String>,
    /// RFC 3339; entries before (default: now).
    to: Option<String>,
    limit: Option<i64>,
}

#[derive(Serialize)]
pub struct LogEntryOut {
    at: String,
    call_id: i64,
    line_id: Option<i64>,
    /// `null` once the person was erased.
    profile_id: Option<i64>,
    recorder_id: i64,
    /// `recording` (the recorder took the call) or `failed`.
    outcome: String,
    reason: Option<String>,
}

/// `GET /recordings`: the system's own record of which calls went to
/// which recorder (or failed to), newest first. Kept as long as CDRs.
pub async fn log(
    State(app): State<App>,
    _a: AdminAuth,
    axum::extract::Query(q): axum::extract::Query<LogQuery>,
) -> ApiResult<axum::Json<Vec<LogEntryOut>>> {
    let lim = super::limit(q.limit, 100, 1000)?;
    let from = q
        .from
        .as_deref()
        .map(|s| super::parse_ts("from", s))
        .transpose()?
        .unwrap_or(Timestamp(0));
    let to =
        q.to.as_deref()
            .map(|s| super::parse_ts("to", s))
            .transpose()?
            .unwrap_or(Timestamp(i64::MAX));
    Ok(axum::Json(
        app.store
            .list_recording_log(from, to, None, lim)
            .await?
            .into_iter()
            .map(|e| LogEntryOut {
                at: e.at.rfc3339(),
                call_id: e.call_id,
                line_id: e.line_id.map(|l| l.0),
                profile_id: e.profile_id.map(|p| p.0),
                recorder_id: e.recorder_id.0,
                outcome: e.outcome,
                reason: e.reason,
            })
            .collect(),
    ))
}

#[derive(Serialize)]
pub struct NoticeOut {
    /// Whether a notice is played to the far end of each recorded call.
    pub present: bool,
    pub seconds: Option<f64>,
    pub uploaded_at: Option<String>,
}

pub async fn notice_out(app: &App) -> ApiResult<NoticeOut> {
    Ok(match app.store.recording_notice().await? {
        Some((s, at)) => NoticeOut {
            present: true,
            seconds: Some(s.len() as f64 / 8000.0),
            uploaded_at: Some(at.rfc3339()),
        },
        None => NoticeOut {
            present: false,
            seconds: None,
            uploaded_at: None,
        },
    })
}

/// `GET /recording-notice`: whether a recording notice is set.
pub async fn get_notice(State(app): State<App>, _a: AdminAuth) -> ApiResult<axum::Json<NoticeOut>> {
    Ok(axum::Json(notice_out(&app).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoticeIn {
    /// The WAV file (8 kHz, mono, 16-bit PCM, up to 30 s), base64.
    pub wav: String,
}

/// Sets the notice from a WAV file's bytes (API and portal).
pub async fn set_notice(app: &App, auth: &AdminAuth, wav: &[u8]) -> ApiResult<NoticeOut> {
    let samples = openturret_domain::model::notice_from_wav(wav)?;
    let r = auth.record(
        "recording_notice.set",
        "recording_notice",
        None,
        vec!["wav"],
    );
    app.store.set_recording_notice(Some(samples), r).await?;
    notice_out(app).await
}

/// `PUT /recording-notice`: the announcement played to the far end when
/// a recorded call connects.
pub async fn put_notice(
    State(app): State<App>,
    auth: AdminAuth,
    Json(b): Json<NoticeIn>,
) -> ApiResult<axum::Json<NoticeOut>> {
    use base64::Engine;
    let wav = base64::engine::general_purpose::STANDARD
        .decode(b.wav.trim())
        .map_err(|_| super::error::ApiError::invalid("wav", "must be base64"))?;
    Ok(axum::Json(set_notice(&app, &auth, &wav).await?))
}

pub async fn delete_notice(State(app): State<App>, auth: AdminAuth) -> ApiResult<StatusCode> {
    let r = auth.record("recording_notice.removed", "recording_notice", None, vec![]);
    app.store.set_recording_notice(None, r).await?;
    Ok(StatusCode::NO_CONTENT)
}
