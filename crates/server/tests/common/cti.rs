//! A CTI application for the tests: connects to `/cti` over TLS with a
//! key, reads events; and the CDR files a server wrote.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::inproc::InProc;
use super::sip::{Kamailio, PBX_PASSWORD};

pub type Ws = WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;

/// Connects to `/cti` with `token`; `Err(status)` when refused.
pub async fn cti(s: &InProc, token: &str, since: Option<u64>) -> Result<Ws, u16> {
    cti_at(&s.url, &s.cert, token, since).await
}

/// [`cti`] of the server at `url` whose certificate is `cert` (PEM).
pub async fn cti_at(url: &str, cert: &[u8], token: &str, since: Option<u64>) -> Result<Ws, u16> {
    let authority = url.strip_prefix("https://").unwrap().to_string();
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(cert) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(&authority).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let q = since.map(|n| format!("?since={n}")).unwrap_or_default();
    let mut req = format!("wss://{authority}/cti{q}")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    match tokio_tungstenite::client_async(req, tls).await {
        Ok((ws, _)) => Ok(ws),
        Err(WsError::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("{e}"),
    }
}

/// A test PBX, and a server with the MLC on.
pub async fn with_pbx() -> (Kamailio, InProc) {
    let pbx = Kamailio::start("MD5", false);
    let s = InProc::start_with(|c, _| {
        c.sip.enabled = true;
        c.sip.keepalive_secs = 1;
    })
    .await;
    (pbx, s)
}

/// A line for `user` on the test PBX, in answer `mode`.
pub async fn line_on(s: &InProc, pbx: &Kamailio, user: &str, mode: &str) -> i64 {
    s.line(
        json!({"name": user, "uri": format!("sip:{user}@127.0.0.1:{}", pbx.port), "username": user,
                  "password": PBX_PASSWORD, "answer_mode": mode}),
    )
    .await
}

/// The next JSON message, or `Err(close code)` when the server closes.
pub async fn next(ws: &mut Ws, wait: Duration) -> Result<Option<Value>, u16> {
    match tokio::time::timeout(wait, ws.next()).await {
        Err(_) => Ok(None),
        Ok(Some(Ok(Message::Text(t)))) => Ok(Some(serde_json::from_str(t.as_str()).unwrap())),
        Ok(Some(Ok(Message::Close(c)))) => Err(c.map_or(0, |c| u16::from(c.code))),
        Ok(None) | Ok(Some(Err(_))) => Err(0),
        Ok(Some(Ok(_))) => Ok(None),
    }
}

/// Collects messages for `wait`.
pub async fn drain(ws: &mut Ws, wait: Duration) -> Vec<Value> {
    let deadline = Instant::now() + wait;
    let mut out = Vec::new();
    while let Ok(Some(v)) = next(ws, deadline.saturating_duration_since(Instant::now())).await {
        out.push(v);
    }
    out
}

pub fn call_states(events: &[Value], line: i64) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["kind"] == "call" && e["event"]["line_id"] == json!(line))
        .map(|e| e["event"]["state"].as_str().unwrap().to_string())
        .collect()
}

/// Reads the CDR files of `kind` (`csv` or `jsonl`), open or closed,
/// oldest first.
pub fn cdr_files(s: &InProc, kind: &str) -> Vec<(String, String)> {
    s.app
        .cdr
        .list()
        .iter()
        .filter(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n.ends_with(&format!(".{kind}")) || n.ends_with(&format!(".{kind}.part"))
        })
        .map(|p| {
            (
                p.file_name().unwrap().to_str().unwrap().to_string(),
                std::fs::read_to_string(p).unwrap(),
            )
        })
        .collect()
}

pub fn keys_of(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}
