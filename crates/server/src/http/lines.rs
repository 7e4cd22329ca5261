//! Lines (write-only passwords) and the line keys of profiles.

use axum::extract::State;
use axum::http::StatusCode;
use openturret_domain::model::*;
use openturret_domain::secret::Secret;
use openturret_domain::{LineId, ProfileId};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiResult};
use super::extract::{AdminAuth, Json, PathId, PathIds};
use crate::App;

/// A line as the API shows it: never its password, only whether one is set.
#[derive(Serialize)]
pub struct LineOut {
    id: i64,
    name: String,
    uri: String,
    username: String,
    display_name: String,
    alternate_text: String,
    preferred_identity: String,
    answer_mode: &'static str,
    /// Besides the registrar, the addresses or networks the line's PBX
    /// may send requests from.
    peers: String,
    priority: bool,
    /// Its calls go to the voice recorders when recording is on for
    /// chosen lines (issue 18).
    recorded: bool,
    has_password: bool,
    /// As the Multi-Line Controller reports it: registering, registered,
    /// failing (with `registration_reason`) or unregistered.
    registration_state: &'static str,
    registration_reason: Option<String>,
    /// Since when the line has been in that kind of state (as reported
    /// since this server started).
    registration_since: Option<String>,
    /// The Multi-Line Controller serving the line (`local`: the one in
    /// this process; else a `turret mlc`'s name); null when none runs.
    served_by: Option<String>,
    created_at: String,
    updated_at: String,
}

impl LineOut {
    /// The line's id.
    pub fn id(&self) -> i64 {
        self.id
    }

    pub fn new(app: &App, l: Line) -> Self {
        let (state, owner) = crate::telephony::state_and_owner(app, l.id);
        let served_by = owner.map(|m| m.name().to_string());
        LineOut {
            served_by,
            id: l.id.0,
            name: l.fields.name,
            uri: l.fields.uri,
            username: l.fields.username,
            display_name: l.fields.display_name,
            alternate_text: l.fields.alternate_text,
            preferred_identity: l.fields.preferred_identity,
            answer_mode: l.fields.answer_mode.as_str(),
            peers: l.fields.peers,
            priority: l.fields.priority,
            recorded: l.fields.recorded,
            has_password: l.has_password,
            registration_state: state.name(),
            registration_reason: state.reason().map(str::to_string),
            registration_since: crate::telephony::state_since(app, l.id)
                .map(openturret_domain::Timestamp::rfc3339),
            created_at: l.created_at.rfc3339(),
            updated_at: l.updated_at.rfc3339(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineIn {
    pub name: String,
    pub uri: String,
    #[serde(default)]
    pub username: String,
    /// Write-only: stored encrypted, never shown again.
    pub password: Option<String>,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub alternate_text: String,
    #[serde(default)]
    pub preferred_identity: String,
    /// `manual` (default) or `automatic` (intercom: answered at once).
    #[serde(default)]
    pub answer_mode: String,
    /// Addresses or networks, besides the registrar, that may send the
    /// line's calls (a PBX with several nodes).
    #[serde(default)]
    pub peers: String,
    /// Its calls ring with a distinct, faster cadence.
    #[serde(default)]
    pub priority: bool,
    /// Its calls go to the voice recorders (with recording on for chosen
    /// lines).
    #[serde(default)]
    pub recorded: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinePatch {
    pub name: Option<String>,
    pub uri: Option<String>,
    pub username: Option<String>,
    /// Write-only; absent keeps the stored password.
    pub password: Option<String>,
    pub display_name: Option<String>,
    pub alternate_text: Option<String>,
    pub preferred_identity: Option<String>,
    pub answer_mode: Option<String>,
    pub peers: Option<String>,
    pub priority: Option<bool>,
    pub recorded: Option<bool>,
}

/// `GET /mlc`: the Multi-Line Controllers (the one in this process and
/// the connected `turret mlc`s) with their SIP addresses and line counts,
/// how many lines are in each registration state, and the calls in
/// progress.
pub async fn mlc_status(
    State(app): State<App>,
    _a: AdminAuth,
) -> ApiResult<axum::Json<serde_json::Value>> {
    use crate::telephony;
    let mut counts: std::collections::BTreeMap<&'static str, u64> = Default::default();
    if telephony::running(&app) {
        // From the MLCs' own tables: cheap enough to poll.
        for s in telephony::line_states(&app).values() {
            *counts.entry(s.name()).or_default() += 1;
        }
    } else {
        counts.insert("unknown", app.store.list_lines().await?.len() as u64);
    }
    Ok(axum::Json(serde_json::json!({
        "running": telephony::running(&app),
        "sip": app.mlc.local_addr().map(|a| a.to_string()),
        "controllers": telephony::members(&app).iter().map(|m| m.json()).collect::<Vec<_>>(),
        "lines": counts,
        "calls": telephony::calls_in_progress(&app),
        "refused_requests": app.mlc.refused_requests(),
        "node": app.node,
        "leases": app.store.line_leases().await?.iter().map(|l| serde_json::json!({
            "line_id": l.line.0, "holder": l.holder, "epoch": l.epoch, "remaining_ms": l.remaining_ms,
        })).collect::<Vec<_>>(),
    })))
}

pub(crate) fn password(p: Option<String>) -> ApiResult<Option<Secret>> {
    match p {
        Some(p) if p.is_empty() => Err(ApiError::invalid("password", "must not be empty")),
        Some(p) if p.len() > 256 => Err(ApiError::invalid(
            "password",
            "must be at most 256 characters",
        )),
        Some(p) => Ok(Some(Secret::new(p))),
        None => Ok(None),
    }
}

pub async fn list(State(app): State<App>, _a: AdminAuth) -> ApiResult<axum::Json<Vec<LineOut>>> {
    Ok(axum::Json(
        app.store
            .list_lines()
            .await?
            .into_iter()
            .map(|l| LineOut::new(&app, l))
            .collect(),
    ))
}

pub async fn get(
    State(app): State<App>,
    _a: AdminAuth,
    PathId(id): PathId,
) -> ApiResult<axum::Json<LineOut>> {
    Ok(axum::Json(LineOut::new(
        &app,
        app.store.get_line(LineId(id)).await?,
    )))
}

pub async fn create(
    State(app): State<App>,
    auth: AdminAuth,
    Json(b): Json<LineIn>,
) -> ApiResult<(StatusCode, axum::Json<LineOut>)> {
    let f = LineFields::new(
        &b.name,
        &b.uri,
        &b.username,
        &b.display_name,
        &b.alternate_text,
        &b.preferred_identity,
    )?
    .with_answer_mode(AnswerMode::parse(&b.answer_mode)?)
    .with_peers(&b.peers)?
    .with_priority(b.priority)
    .with_recorded(b.recorded);
    let pw = password(b.password)?;
    let mut changed = vec![
        "name",
        "uri",
        "username",
        "display_name",
        "alternate_text",
        "preferred_identity",
    ];
    if !f.peers.is_empty() {
        changed.push("peers");
    }
    if f.priority {
        changed.push("priority");
    }
    if f.recorded {
        changed.push("recorded");
    }
    if pw.is_some() {
        changed.push("password");
    }
    let r = auth.record("line.created", "line", None, changed);
    let l = app.store.create_line(f, pw, r).await?;
    Ok((StatusCode::CREATED, axum::Json(LineOut::new(&app, l))))
}

pub async fn update(
    State(app): State<App>,
    auth: AdminAuth,
    PathId(id): PathId,
    Json(b): Json<LinePatch>,
) -> ApiResult<axum::Json<LineOut>> {
    let id = LineId(id);
    let cur = app.store.get_line(id).await?.fields;
    let f = LineFields::new(
        b.name.as_deref().unwrap_or(&cur.name),
        b.uri.as_deref().unwrap_or(&cur.uri),
        b.username.as_deref().unwrap_or(&cur.username),
        b.display_name.as_deref().unwrap_or(&cur.display_name),
        b.alternate_text.as_deref().unwrap_or(&cur.alternate_text),
        b.preferred_identity
            .as_deref()
            .unwrap_or(&cur.preferred_identity),
    )?
    .with_answer_mode(match b.answer_mode.as_deref() {
        Some(m) => AnswerMode::parse(m)?,
        None => cur.answer_mode,
    })
    .with_peers(b.peers.as_deref().unwrap_or(&cur.peers))?
    .with_priority(b.priority.unwrap_or(cur.priority))
    .with_recorded(b.recorded.unwrap_or(cur.recorded));
    let pw = password(b.password)?;
    let mut changed = f.changed_fields(&cur);
    if pw.is_some() {
        changed.push("password");
    }
    let r = auth.record("line.updated", "line", Some(id.to_string()), changed);
    let l = app.store.update_line(id, f, pw, r).await?;
    Ok(axum::Json(LineOut::new(&app, l)))
}

pub async fn delete(
    State(app): State<App>,
    auth: AdminAuth,
    PathId(id): PathId,
) -> ApiResult<StatusCode> {
    let r = auth.record("line.deleted", "line", Some(id.to_string()), vec![]);
    app.store.delete_line(LineId(id), r).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A line key of a profile.
#[derive(Serialize)]
pub struct LineKeyOut {
    line_id: i64,
    position: u32,
    name: String,
    display_name: String,
    alternate_text: String,
}

pub async fn list_profile_lines(
    State(app): State<App>,
    _a: AdminAuth,
    PathId(pid): PathId,
) -> ApiResult<axum::Json<Vec<LineKeyOut>>> {
    let pid = ProfileId(pid);
    app.store.get_profile(pid).await?;
    let keys = app.store.list_profile_lines(pid).await?;
    let lines = app.store.list_lines().await?;
    let out = keys
        .into_iter()
        .filter_map(|k| {
            lines
                .iter()
                .find(|l| l.id == k.line_id)
                .map(|l| LineKeyOut {
                    line_id: k.line_id.0,
                    position: k.position,
                    name: l.fields.name.clone(),
                    display_name: l.fields.display_name.clone(),
                    alternate_text: l.fields.alternate_text.clone(),
                })
        })
        .collect();
    Ok(axum::Json(out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignIn {
    pub position: i64,
}

#[derive(Serialize)]
pub struct AssignmentOut {
    profile_id: i64,
    line_id: i64,
    position: u32,
}

/// `PUT /profiles/{id}/lines/{line_id}`: shows the line on the profile at
/// a key position (moves it if already shown).
pub async fn assign(
    State(app): State<App>,
    auth: AdminAuth,
    PathIds(pid, lid): PathIds,
    Json(b): Json<AssignIn>,
) -> ApiResult<axum::Json<AssignmentOut>> {
    let a = LineAssignment {
        profile_id: ProfileId(pid),
        line_id: LineId(lid),
        position: line_key_position(b.position)?,
    };
    let r = auth.record(
        "line_key.assigned",
        "line_key",
        Some(format!("{pid}/{lid}")),
        vec!["position"],
    );
    let a = app.store.assign_line(a, r).await?;
    Ok(axum::Json(AssignmentOut {
        profile_id: a.profile_id.0,
        line_id: a.line_id.0,
        position: a.position,
    }))
}

pub async fn unassign(
    State(app): State<App>,
    auth: AdminAuth,
    PathIds(pid, lid): PathIds,
) -> ApiResult<StatusCode> {
    let r = auth.record(
        "line_key.removed",
        "line_key",
        Some(format!("{pid}/{lid}")),
        vec![],
    );
    app.store
        .unassign_line(ProfileId(pid), LineId(lid), r)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
