//! The error log's page (`/events`: filters by level, component, type,
//! object and time, newest first, paged) and the dashboard (`/dashboard`:
//! the errors and warnings of the last 24 hours, the MLCs, the lines).

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use openturret_domain::Timestamp;
use openturret_domain::model::{EventEntry, EventFilter, EventLevel};
use serde::Deserialize;

use super::extract::{Portal, PortalForm};
use super::layout::{self, FormState, field, on, page, select};
use crate::App;
use crate::http::error::ApiError;
use crate::http::parse_ts;
use crate::mlc::LineState;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/dashboard", get(dashboard))
        .route("/events", get(events))
        .route("/events/filter", post(events_filter))
}

const PAGE: i64 = 50;
const KEYS: [&str; 6] = ["level", "component", "type", "object", "from", "to"];
const DAY_MS: i64 = 86_400_000;

#[derive(Deserialize)]
pub struct EventsQuery {
    before: Option<i64>,
    /// A filter set from a link (the dashboard's): `errors`, `warnings`.
    preset: Option<String>,
}

/// The stored filter as a store query.
fn filter_of(stored: &str, before: Option<i64>) -> Result<EventFilter, ApiError> {
    let v = |k: &str| layout::given(&layout::filter_value(stored, k)).map(|s| s.trim().to_string());
    let date = |k: &str, end: bool| -> Result<Option<Timestamp>, ApiError> {
        v(k).map(|d| {
            parse_ts(k, &format!("{d}T00:00:00Z"))
                .map(|t| if end { Timestamp(t.0 + DAY_MS) } else { t })
        })
        .transpose()
    };
    let (level, at_least) = match v("level").as_deref() {
        Some("error") => (None, Some(EventLevel::Error)),
        Some("warning") => (None, Some(EventLevel::Warning)),
        Some("info") => (Some(EventLevel::Info), None),
        _ => (None, None),
    };
    Ok(EventFilter {
        level,
        at_least,
        component: v("component"),
        event_type: v("type"),
        object: v("object"),
        from: date("from", false)?,
        to: date("to", true)?,
        before_seq: before,
        limit: PAGE,
        ..Default::default()
    })
}

fn level_badge(l: EventLevel) -> Markup {
    html! {
        @match l {
            EventLevel::Error => span.badge.bad { "error" },
            EventLevel::Warning => span.badge.warn { "warning" },
            EventLevel::Info => span.badge { "info" },
        }
    }
}

/// The names of the lines, for objects `line:<id>` (entries keep only the
/// id: a line's name may hold its number).
async fn line_names(app: &App) -> HashMap<String, (i64, String)> {
    app.store
        .list_lines()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|l| (format!("line:{}", l.id.0), (l.id.0, l.fields.name)))
        .collect()
}

/// An entry's object, a line named and linked.
fn object(o: &str, lines: &HashMap<String, (i64, String)>) -> Markup {
    html! {
        @match lines.get(o) {
            Some((id, name)) => { a href=(format!("/lines/{id}")) { (name) } " " small.hint { "(" (o) ")" } },
            None => (o),
        }
    }
}

/// A time as the tables show it: `2026-12-04 14:09:33` (UTC).
fn short(t: Timestamp) -> String {
    let r = t.rfc3339();
    r.get(..19).unwrap_or(&r).replacen('T', " ", 1)
}

/// Entries as a table (the page's and the dashboard's).
fn table(entries: &[EventEntry], lines: &HashMap<String, (i64, String)>) -> Markup {
    html! {
        table.events {
            thead { tr { th { "Last seen (UTC)" } th { "Event" } th { "Object" } th { "What happened" } th { "Times" } } }
            tbody {
                @for e in entries {
                    tr {
                        td.when { (short(e.last_at)) }
                        td {
                            (level_badge(e.event.level)) " " code { (e.event.event_type) }
                            br; small.hint { (e.event.component) }
                        }
                        td { (object(&e.event.object, lines)) }
                        td {
                            (e.event.message)
                            @if !e.event.properties.is_empty() {
                                br;
                                small.hint { @for (i, (k, v)) in e.event.properties.iter().enumerate() { @if i > 0 { ", " } (k) "=" (v) } }
                            }
                        }
                        td {
                            (e.count)
                            @if e.count > 1 { br; small.hint { "since " (short(e.first_at)) } }
                        }
                    }
                }
                @if entries.is_empty() { tr { td colspan="5" .muted { "No entries match." } } }
            }
        }
    }
}

async fn events(State(app): State<App>, p: Portal, Query(q): Query<EventsQuery>) -> Response {
    match q.preset.as_deref() {
        Some("errors") => {
            app.portal
                .set_filter(p.session, "events", "level=error".into())
                .await
        }
        Some("warnings") => {
            app.portal
                .set_filter(p.session, "events", "level=warning".into())
                .await
        }
        _ => {}
    }
    if q.preset.is_some() {
        return Redirect::to("/events").into_response();
    }
    let stored = app.portal.filter(p.session, "events").await;
    let filter = match filter_of(&stored, q.before) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let entries = match app.store.list_events(&filter).await {
        Ok(e) => e,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let values: Vec<(&str, String)> = KEYS
        .iter()
        .map(|k| (*k, layout::filter_value(&stored, k)))
        .collect();
    let pairs: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let state = FormState::with_values("events", &pairs);
    let next = (entries.len() as i64 == PAGE)
        .then(|| entries.last().map(|e| format!("/events?before={}", e.seq)))
        .flatten();
    let levels = [
        ("", "Any level"),
        ("error", "Errors"),
        ("warning", "Errors and warnings"),
        ("info", "Information only"),
    ]
    .map(|(v, t)| (v.to_string(), t.to_string()));
    let content = html! {
        p.muted { "What the components report by themselves — this System Manager, its MLCs, the client and CTI interfaces. What administrators did is in the " a href="/audit" { "audit log" } ". Identical events are one entry with a count; entries go with the log retention (Settings)." }
        form method="post" action="/events/filter" {
            (layout::csrf(&p))
            div.row {
                (select(&state, "Level", "level", &levels))
                (field(&state, "Component", "component", "text", Some("e.g. sm:turret1, mlc:desk-a")))
                (field(&state, "Event type", "type", "text", Some("e.g. pbx.unreachable")))
                (field(&state, "Object", "object", "text", Some("e.g. line:7, backup")))
                (field(&state, "From", "from", "date", None))
                (field(&state, "To", "to", "date", None))
            }
            button.secondary type="submit" { "Filter" } " "
            button.secondary type="submit" name="clear" value="on" { "Clear filters" }
        }
        (table(&entries, &line_names(&app).await))
        (layout::pager(q.before.map(|_| "/events".to_string()), next, if q.before.is_some() { "Older entries" } else { "Newest entries" }))
    };
    page(&p, "/events", "Error log", content)
}

#[derive(Deserialize)]
pub struct EventsFilterForm {
    #[serde(default)]
    level: String,
    #[serde(default)]
    component: String,
    #[serde(default, rename = "type")]
    event_type: String,
    #[serde(default)]
    object: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    clear: Option<String>,
}

async fn events_filter(
    State(app): State<App>,
    PortalForm(p, f): PortalForm<EventsFilterForm>,
) -> Response {
    let value = if on(&f.clear) {
        String::new()
    } else {
        layout::filter_text(&[
            ("level", &f.level),
            ("component", &f.component),
            ("type", &f.event_type),
            ("object", &f.object),
            ("from", &f.from),
            ("to", &f.to),
        ])
    };
    app.portal.set_filter(p.session, "events", value).await;
    Redirect::to("/events").into_response()
}

async fn dashboard(State(app): State<App>, p: Portal) -> Response {
    let since = Timestamp(Timestamp::now().0 - DAY_MS);
    let loaded = async {
        let errors = app.store.count_events(EventLevel::Error, since).await?;
        let warnings = app.store.count_events(EventLevel::Warning, since).await?;
        let latest = app
            .store
            .list_events(&EventFilter {
                at_least: Some(EventLevel::Warning),
                from: Some(since),
                limit: 5,
                ..Default::default()
            })
            .await?;
        let lines = app.store.list_lines().await?.len();
        Ok::<_, ApiError>((errors, warnings, latest, lines))
    }
    .await;
    let ((errors, error_times), (warnings, warning_times), latest, lines) = match loaded {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    let states = crate::telephony::line_states(&app);
    let registered = states
        .values()
        .filter(|s| matches!(s, LineState::Registered))
        .count();
    let failing = states
        .values()
        .filter(|s| matches!(s, LineState::Failing(_)))
        .count();
    let members = crate::telephony::members(&app);
    let content = html! {
        div.tiles {
            a.tile.bad[errors > 0] href="/events?preset=errors" {
                span.n #errors-24h { (errors) }
                span { "error" @if errors != 1 { "s" } " in the last 24 hours" }
                @if error_times > errors { small { (error_times) " occurrences" } }
            }
            a.tile.warn[warnings > 0] href="/events?preset=warnings" {
                span.n #warnings-24h { (warnings) }
                span { "warning" @if warnings != 1 { "s" } " in the last 24 hours" }
                @if warning_times > warnings { small { (warning_times) " occurrences" } }
            }
            a.tile href="/lines" {
                span.n { (registered) " / " (lines) }
                span { "lines registered" }
                @if failing > 0 { small { (failing) " failing" } }
            }
            div.tile {
                span.n { (members.len()) }
                span { "MLC" @if members.len() != 1 { "s" } " serving" }
                small { @for (i, m) in members.iter().enumerate() { @if i > 0 { ", " } (m.name()) } }
            }
            div.tile {
                span.n { (crate::telephony::calls_in_progress(&app)) }
                span { "calls in progress" }
            }
        }
        h2 { "Latest errors and warnings" }
        (table(&latest, &line_names(&app).await))
        p { a href="/events" { "The whole error log" } " · " a href="/audit" { "The audit log" } }
    };
    page(&p, "/dashboard", "Dashboard", content)
}
