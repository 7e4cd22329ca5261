//! The error log (issue 20): `GET /events`, newest first, filtered.

use axum::extract::State;
use openturret_domain::model::{EventFilter, EventLevel};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{ApiError, ApiResult};
use super::extract::{AdminAuth, Query};
use super::{limit, parse_ts};
use crate::App;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// `error`, `warning` or `info`: that level only.
    level: Option<String>,
    /// `warning`: errors and warnings; `error`: errors.
    at_least: Option<String>,
    component: Option<String>,
    /// Dotted event type, such as `pbx.unreachable`.
    #[serde(rename = "type")]
    event_type: Option<String>,
    object: Option<String>,
    /// RFC 3339: entries last seen at or after.
    from: Option<String>,
    /// RFC 3339: entries last seen before.
    to: Option<String>,
    /// The previous page's `next_before`.
    before: Option<i64>,
    /// Entries written (new or folded into) after this `seq`, oldest
    /// first: how a follower asks what changed.
    after: Option<i64>,
    limit: Option<i64>,
}

#[derive(Serialize)]
pub struct EventsPage {
    items: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_before: Option<i64>,
}

fn level(field: &str, v: Option<&str>) -> ApiResult<Option<EventLevel>> {
    v.map(|l| {
        EventLevel::parse(l)
            .ok_or_else(|| ApiError::invalid(field, "must be error, warning or info"))
    })
    .transpose()
}

/// The filter a query asks for.
pub fn filter_of(q: EventsQuery) -> ApiResult<EventFilter> {
    if q.before.is_some() && q.after.is_some() {
        return Err(ApiError::invalid("after", "give before or after, not both"));
    }
    Ok(EventFilter {
        level: level("level", q.level.as_deref())?,
        at_least: level("at_least", q.at_least.as_deref())?,
        component: q.component.filter(|s| !s.is_empty()),
        event_type: q.event_type.filter(|s| !s.is_empty()),
        object: q.object.filter(|s| !s.is_empty()),
        from: q.from.as_deref().map(|s| parse_ts("from", s)).transpose()?,
        to: q.to.as_deref().map(|s| parse_ts("to", s)).transpose()?,
        before_seq: q.before,
        after_seq: q.after,
        limit: limit(q.limit, 100, 1000)?,
    })
}

/// `GET /events`: newest first (or, with `after`, oldest first).
pub async fn list(
    State(app): State<App>,
    _a: AdminAuth,
    Query(q): Query<EventsQuery>,
) -> ApiResult<axum::Json<EventsPage>> {
    let f = filter_of(q)?;
    let items = app.store.list_events(&f).await?;
    let next_before = (items.len() as i64 == f.limit && f.after_seq.is_none())
        .then(|| items.last().map(|e| e.seq))
        .flatten();
    Ok(axum::Json(EventsPage {
        items: items.iter().map(crate::events::entry_json).collect(),
        next_before,
    }))
}
