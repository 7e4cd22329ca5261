//! The web turret: a browser client for traders, served by the binary. A
//! single page (`/turret`) whose script speaks the client protocol over the
//! WebSocket at `/client`; no third-party code, nothing fetched from
//! outside.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::App;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
    img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
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

pub fn routes() -> Router<App> {
    Router::new()
        .route(
            "/turret",
            get(|| async { asset("text/html; charset=utf-8", include_str!("turret.html")) }),
        )
        .route(
            "/assets/turret.js",
            get(|| async { asset("text/javascript; charset=utf-8", include_str!("turret.js")) }),
        )
        .route(
            "/assets/voice.js",
            get(|| async { asset("text/javascript; charset=utf-8", include_str!("voice.js")) }),
        )
        .route(
            "/assets/turret.css",
            get(|| async { asset("text/css; charset=utf-8", include_str!("turret.css")) }),
        )
}
