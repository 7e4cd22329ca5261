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
/// Chosen once at start: in this process for one node, in the shared
/// database (sealed, gone with the session) when several nodes serve, so a
/// session's next request may reach any of them.
pub enum Memory {
    Local(LocalMemory),
    Shared(std::sync::Arc<dyn openturret_store::Store>),
}

/// One node's view state, in memory.
#[derive(Default)]
pub struct LocalMemory {
    flashes: Mutex<HashMap<[u8; 32], String>>,
    filters: Mutex<HashMap<([u8; 32], &'static str), String>>,
}

/// Beyond this many remembered items, the oldest state is dropped wholesale.
const MEMORY_LIMIT: usize = 20_000;

const FLASH: &str = "flash";

fn filter_slot(view: &str) -> String {
    format!("filter:{view}")
}

/// View state is a convenience: a failure to keep or read it is logged and
/// the page goes on without it.
fn logged<T: Default>(what: &str, r: openturret_store::Result<T>) -> T {
    r.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "the portal's view state could not be {what}");
        T::default()
    })
}

impl Memory {
    pub fn for_store(store: &std::sync::Arc<dyn openturret_store::Store>) -> Memory {
        if store.is_shared() {
            Memory::Shared(store.clone())
        } else {
            Memory::Local(LocalMemory::default())
        }
    }

    pub async fn flash(&self, session: [u8; 32], message: impl Into<String>) {
        let message = message.into();
        match self {
            Memory::Local(m) => m.flash(session, message),
            Memory::Shared(s) => logged(
                "kept",
                s.put_view_state(session, FLASH, Some(&message)).await,
            ),
        }
    }

    pub async fn take_flash(&self, session: [u8; 32]) -> Option<String> {
        match self {
            Memory::Local(m) => m.take_flash(session),
            Memory::Shared(s) => logged("read", s.view_state(session, FLASH, true).await),
        }
    }

    pub async fn set_filter(&self, session: [u8; 32], view: &'static str, value: String) {
        match self {
            Memory::Local(m) => m.set_filter(session, view, value),
            Memory::Shared(s) => {
                let value = (!value.is_empty()).then_some(value.as_str());
                logged(
                    "kept",
                    s.put_view_state(session, &filter_slot(view), value).await,
                )
            }
        }
    }

    pub async fn filter(&self, session: [u8; 32], view: &'static str) -> String {
        match self {
            Memory::Local(m) => m.filter(session, view),
            Memory::Shared(s) => logged(
                "read",
                s.view_state(session, &filter_slot(view), false).await,
            )
            .unwrap_or_default(),
        }
    }

    /// Forgets everything about a session (at logout).
    pub async fn forget(&self, session: [u8; 32]) {
        match self {
            Memory::Local(m) => m.forget(session),
            Memory::Shared(s) => logged("removed", s.forget_view_state(session).await),
        }
    }
}

impl LocalMemory {
    fn flash(&self, session: [u8; 32], message: String) {
        let mut m = self.flashes.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() > MEMORY_LIMIT {
            m.clear();
        }
        m.insert(session, message);
    }

    fn take_flash(&self, session: [u8; 32]) -> Option<String> {
        self.flashes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&session)
    }

    fn set_filter(&self, session: [u8; 32], view: &'static str, value: String) {
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

    fn filter(&self, session: [u8; 32], view: &'static str) -> String {
        self.filters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(session, view))
            .cloned()
            .unwrap_or_default()
    }

    fn forget(&self, session: [u8; 32]) {
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
