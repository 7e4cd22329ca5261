//! Page layout and form helpers shared by every portal page.

use std::collections::HashMap;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::CSP;
use super::extract::Portal;
use crate::http::error::ApiError;

/// The sections of the navigation, in order: (path, label).
const NAV: &[(&str, &str)] = &[
    ("/dashboard", "Dashboard"),
    ("/profiles", "Profiles"),
    ("/global-contacts", "Global contacts"),
    ("/lines", "Lines"),
    ("/recorders", "Recorders"),
    ("/consents", "Consents"),
    ("/settings", "Settings"),
    ("/audit", "Audit log"),
    ("/events", "Error log"),
    ("/admins", "Administrators"),
    ("/api-keys", "API keys"),
    ("/data", "Import & export"),
    ("/backups", "Backups"),
    ("/privacy", "Privacy"),
];

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · OpenTurret" }
            link rel="stylesheet" href="/assets/portal.css";
        }
    }
}

/// Adds the portal's security headers to a rendered page.
pub fn respond(status: StatusCode, body: Markup) -> Response {
    let mut res = (status, body.into_string()).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

/// A full page for a signed-in administrator: header, navigation, the
/// one-time message of the session, then `content`.
pub fn page(p: &Portal, active: &str, title: &str, content: Markup) -> Response {
    page_with_status(p, active, title, StatusCode::OK, content)
}

pub fn page_with_status(
    p: &Portal,
    active: &str,
    title: &str,
    status: StatusCode,
    content: Markup,
) -> Response {
    let flash = p.notice.as_deref();
    let body = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/dashboard" { "OpenTurret" span { "Management Portal" } }
                    div.who {
                        span { "Signed in as " strong { (p.auth.admin.username) } }
                        form method="post" action="/logout" {
                            (csrf(p))
                            button.link type="submit" { "Log out" }
                        }
                    }
                }
                nav.side aria-label="Sections" {
                    ul {
                        @for (path, label) in NAV {
                            li { a href=(path) aria-current=[(*path == active).then_some("page")] { (label) } }
                        }
                    }
                }
                main #main {
                    h1 { (title) }
                    @if let Some(f) = flash { p.flash role="status" { (f) } }
                    (content)
                }
            }
        }
    };
    respond(status, body)
}

/// A page without navigation (sign-in, refusals).
pub fn bare(title: &str, message: &str) -> Response {
    respond(
        StatusCode::FORBIDDEN,
        bare_page(title, html! { p.error-box { (message) } }),
    )
}

pub fn bare_page(title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body.bare {
                main #main.narrow {
                    p.brand-line { "OpenTurret " span { "Management Portal" } }
                    h1 { (title) }
                    (content)
                }
            }
        }
    }
}

/// The hidden CSRF field of every form.
pub fn csrf(p: &Portal) -> Markup {
    html! { input type="hidden" name="_csrf" value=(p.csrf); }
}

/// What a form was filled with and what was wrong with it, to render it
/// again with the error beside its field.
#[derive(Default)]
pub struct FormState {
    pub values: HashMap<String, String>,
    pub error: Option<(String, String)>,
    /// Which form on the page the state belongs to.
    pub form: &'static str,
}

impl FormState {
    pub fn with_values(form: &'static str, values: &[(&str, &str)]) -> Self {
        FormState {
            values: values
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            error: None,
            form,
        }
    }

    /// The state of `form` if this is the form the state belongs to, else
    /// an empty one.
    pub fn value(&self, name: &str) -> &str {
        self.values.get(name).map(String::as_str).unwrap_or("")
    }

    pub fn error_for(&self, name: &str) -> Option<&str> {
        match &self.error {
            Some((f, m)) if f == name => Some(m.as_str()),
            _ => None,
        }
    }

    /// The error if it names no field of the form (shown above it).
    pub fn general_error(&self, fields: &[&str]) -> Option<&str> {
        match &self.error {
            Some((f, m)) if !fields.contains(&f.as_str()) => Some(m.as_str()),
            _ => None,
        }
    }
}

/// Turns an operation's error into a field and message for the form, or
/// hands back errors a form cannot show (not found, internal).
pub fn form_error(e: ApiError) -> Result<(String, String), ApiError> {
    match e {
        ApiError::Invalid { field, reason } | ApiError::Duplicate { field, reason } => {
            let label = field.replace('_', " ");
            let mut msg = format!("{label} {reason}");
            if let Some(c) = msg.get_mut(0..1) {
                c.make_ascii_uppercase();
            }
            Ok((field, msg))
        }
        ApiError::BadBody(m) => Ok((String::new(), m)),
        other => Err(other),
    }
}

/// A labelled input. Password inputs never show a value.
pub fn field(state: &FormState, label: &str, name: &str, kind: &str, hint: Option<&str>) -> Markup {
    let id = format!("{}-{name}", state.form);
    let err = state.error_for(name);
    let value = if kind == "password" {
        ""
    } else {
        state.value(name)
    };
    let hint_id = format!("{id}-hint");
    let err_id = format!("{id}-error");
    html! {
        div.field.invalid[err.is_some()] {
            label for=(id) { (label) }
            input id=(id) name=(name) type=(kind) value=(value)
                autocomplete=[(kind == "password").then_some("new-password")]
                aria-invalid=[err.is_some().then_some("true")]
                aria-describedby=[err.map(|_| err_id.clone()).or(hint.map(|_| hint_id.clone()))]
                autofocus[err.is_some()];
            @if let Some(h) = hint { small.hint id=(hint_id) { (h) } }
            @if let Some(m) = err { p.field-error id=(err_id) role="alert" { (m) } }
        }
    }
}

/// A labelled checkbox.
pub fn checkbox(state: &FormState, label: &str, name: &str, checked: bool) -> Markup {
    let id = format!("{}-{name}", state.form);
    html! {
        div.check {
            input id=(id) type="checkbox" name=(name) value="on" checked[checked];
            label for=(id) { (label) }
        }
    }
}

/// A labelled select of (value, text) options.
pub fn select(state: &FormState, label: &str, name: &str, options: &[(String, String)]) -> Markup {
    let id = format!("{}-{name}", state.form);
    let err = state.error_for(name);
    let current = state.value(name);
    html! {
        div.field.invalid[err.is_some()] {
            label for=(id) { (label) }
            select id=(id) name=(name) aria-invalid=[err.is_some().then_some("true")] autofocus[err.is_some()] {
                @for (v, t) in options {
                    option value=(v) selected[v == current] { (t) }
                }
            }
            @if let Some(m) = err { p.field-error role="alert" { (m) } }
        }
    }
}

/// Previous/next links of a paged table.
pub fn pager(prev: Option<String>, next: Option<String>, summary: &str) -> Markup {
    html! {
        nav.pager aria-label="Pages" {
            @if let Some(p) = prev { a href=(p) rel="prev" { "← Previous" } } @else { span.disabled { "← Previous" } }
            span.summary { (summary) }
            @if let Some(n) = next { a href=(n) rel="next" { "Next →" } } @else { span.disabled { "Next →" } }
        }
    }
}

/// A one-button form (delete, disable...).
pub fn button_form(p: &Portal, action: &str, label: &str, class: &str) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            (csrf(p))
            button type="submit" class=(class) { (label) }
        }
    }
}

/// `checkbox` form values arrive as `Some("on")` or not at all.
pub fn on(v: &Option<String>) -> bool {
    v.as_deref() == Some("on")
}

/// An empty form value is "not given".
pub fn given(v: &str) -> Option<String> {
    let t = v.trim();
    (!t.is_empty()).then(|| v.to_string())
}

/// A list page's filter as kept in the session (`key=value` lines; the
/// values may be names, so they never go into URLs), from its form.
pub fn filter_text(pairs: &[(&str, &String)]) -> String {
    pairs
        .iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| format!("{k}={}", v.trim().replace('\n', " ")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One value of a filter kept by [`filter_text`] (empty when unset).
pub fn filter_value(stored: &str, key: &str) -> String {
    stored
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or("")
        .to_string()
}
