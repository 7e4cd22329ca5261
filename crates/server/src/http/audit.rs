//! The audit log viewer: filtered listing and chain verification.

use axum::extract::State;
use openturret_domain::audit::AuditEntry;
use openturret_store::AuditFilter;
use serde::{Deserialize, Serialize};

use super::error::ApiResult;
use super::extract::{AdminAuth, Query};
use super::{limit, parse_ts};
use crate::App;

#[derive(Serialize)]
pub struct AuditOut {
    seq: i64,
    at: String,
    level: &'static str,
    event_type: String,
    object_type: String,
    object_id: Option<String>,
    /// Names of the fields that changed, never their values.
    changes: Vec<String>,
    success: bool,
    server_host: String,
    actor: String,
    client_ip: String,
    client_host: String,
}

impl From<AuditEntry> for AuditOut {
    fn from(e: AuditEntry) -> Self {
        let r = e.record;
        AuditOut {
            seq: e.seq,
            at: r.at.rfc3339(),
            level: r.level.as_str(),
            event_type: r.event_type,
            object_type: r.object_type,
            object_id: r.object_id,
            changes: r.changes,
            success: r.success,
            server_host: r.server_host,
            actor: r.pii.actor,
            client_ip: r.pii.client_ip,
            client_host: r.pii.client_host,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    actor: Option<String>,
    event_type: Option<String>,
    object_type: Option<String>,
    object_id: Option<String>,
    /// RFC 3339; entries at or after.
    from: Option<String>,
    /// RFC 3339; entries before.
    to: Option<String>,
    /// Entries with a sequence number below this (the previous page's
    /// `next_before`).
    before: Option<i64>,
    limit: Option<i64>,
}

#[derive(Serialize)]
pub struct AuditPage {
    items: Vec<AuditOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_before: Option<i64>,
}

/// `GET /audit`: newest first.
pub async fn list(
    State(app): State<App>,
    _a: AdminAuth,
    Query(q): Query<AuditQuery>,
) -> ApiResult<axum::Json<AuditPage>> {
    let lim = limit(q.limit, 100, 1000)?;
    let f = AuditFilter {
        actor: q.actor,
        event_type: q.event_type,
        object_type: q.object_type,
        object_id: q.object_id,
        from: q.from.as_deref().map(|s| parse_ts("from", s)).transpose()?,
        to: q.to.as_deref().map(|s| parse_ts("to", s)).transpose()?,
        before_seq: q.before,
        about_profile: None,
        limit: lim,
    };
    let items = app.store.list_audit(&f).await?;
    let next_before = (items.len() as i64 == lim)
        .then(|| items.last().map(|e| e.seq))
        .flatten();
    Ok(axum::Json(AuditPage {
        items: items.into_iter().map(Into::into).collect(),
        next_before,
    }))
}

#[derive(Serialize)]
pub struct VerifyOut {
    ok: bool,
    verified: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    broken_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// `GET /audit/verify`: checks the whole hash chain.
pub async fn verify(State(app): State<App>, _a: AdminAuth) -> ApiResult<axum::Json<VerifyOut>> {
    let v = app.store.verify_audit().await?;
    Ok(axum::Json(VerifyOut {
        ok: v.broken.is_none(),
        verified: v.verified,
        broken_at: v.broken.as_ref().map(|b| b.seq),
        reason: v.broken.map(|b| b.reason),
    }))
}
