//! The Management Portal (SPEC §1): server-rendered HTML (maud) for every
//! administrative task, on top of the same operations as the admin API.
//!
//! Security shape:
//! - the session is an admin session of the store, carried in a cookie that
//!   is `Secure`, `HttpOnly` and `SameSite=Strict`;
//! - every state-changing request is a POST whose form carries a CSRF token
//!   derived from the session (and, before login, a double-submit token);
//!   requests a browser marks `Sec-Fetch-Site: cross-site` are refused too;
//! - a strict Content-Security-Policy: only our own stylesheet and script;
//! - no personal data in URLs: search terms and filters travel in POST
//!   bodies and are kept per session on the server; URLs carry only ids,
//!   page numbers and sort keys;
//! - POST-redirect-GET everywhere, so the back button never resubmits.

mod admins;
mod api_keys;
mod auth;
mod data;
mod directory;
mod events;
mod extract;
mod layout;
mod profile_items;
mod profiles;
mod recorders;
mod records;
mod system;

use std::collections::HashMap;
use std::sync::Mutex;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::App;

pub use extract::{Portal, PortalForm};

/// Per-session view state kept on the server: one-time messages and the
/// filters of list pages (which may hold names, so never go into URLs).
#[derive(Default)]
pub struct Memory {
    flashes: Mutex<HashMap<[u8; 32], String>>,
    filters: Mutex<HashMap<([u8; 32], &'static str), String>>,
}

/// Beyond this many remembered items, the oldest state is dropped wholesale.
const MEMORY_LIMIT: usize = 20_000;

impl Memory {
    pub fn flash(&self, session: [u8; 32], message: impl Into<String>) {
        let mut m = self.flashes.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() > MEMORY_LIMIT {
            m.clear();
        }
        m.insert(session, message.into());
    }

    pub fn take_flash(&self, session: [u8; 32]) -> Option<String> {
        self.flashes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&session)
    }

    pub fn set_filter(&self, session: [u8; 32], view: &'static str, value: String) {
        let mut m = self.filters.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() > MEMORY_LIMIT {
            m.clear();
        }
        if value.is_empty() {
            m.remove(&(session, view));
        } else {
            m.insert((session, view), value);
        }
    }

    pub fn filter(&self, session: [u8; 32], view: &'static str) -> String {
        self.filters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(session, view))
            .cloned()
            .unwrap_or_default()
    }

    /// Forgets everything about a session (at logout).
    pub fn forget(&self, session: [u8; 32]) {
        self.flashes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&session);
        self.filters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(s, _), _| *s != session);
    }
}

/// The portal's routes (merged into the main router).
pub fn routes() -> Router<App> {
    Router::new()
        .route(
            "/",
            get(|| async { axum::response::Redirect::to("/dashboard") }),
        )
        .route("/assets/portal.css", get(css))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route(
            "/password",
            get(auth::password_page).post(auth::change_password),
        )
        .merge(profiles::routes())
        .merge(api_keys::routes())
        .merge(recorders::routes())
        .merge(directory::routes())
        .merge(system::routes())
        .merge(records::routes())
        .merge(events::routes())
        .merge(admins::routes())
        .merge(data::routes())
}

async fn css() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/css; charset=utf-8"),
        )],
        include_str!("portal.css"),
    )
        .into_response()
}

/// The Content-Security-Policy of every portal page.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
    frame-ancestors 'none'; base-uri 'none'";
