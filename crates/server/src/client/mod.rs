//! The client protocol (SPEC §1): a versioned JSON protocol over a
//! WebSocket at `/client`, on the same TLS listener as everything else.
//! `docs/protocol.md` documents every message.
//!
//! - [`proto`]: wire types.
//! - [`session`]: logged-in sessions and resume tokens.
//! - [`ops`]: what each operation does, authorised on the server.
//! - [`conn`]: the client side (CLI client and tests).
//!
//! Each connection runs one task that reads requests and forwards the
//! pushes (`crate::hub`) that concern its profile.

pub mod conn;
mod ops;
pub mod proto;
pub mod session;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use openturret_domain::ProfileId;
use openturret_store::StoreError;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::App;
use crate::hub::{Push, PushKind};
use crate::tls::ClientAddr;

/// Largest message a client may send.
const MAX_MESSAGE: usize = 64 * 1024;
/// How often a connection is pinged, and how long a silent one lives.
const PING_EVERY: std::time::Duration = std::time::Duration::from_secs(20);
const IDLE_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

/// `GET /client`: upgrades to the client protocol.
pub async fn upgrade(
    ws: WebSocketUpgrade,
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<ClientAddr>,
) -> Response {
    let ip = addr.0.ip();
    ws.max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .on_upgrade(move |socket| run(app, socket, ip))
}

async fn run(app: App, mut socket: WebSocket, ip: std::net::IpAddr) {
    let mut pushes = app.hub.subscribe();
    let stopping = app.clone();
    let events = app.events.clone();
    let mut conn = ops::Conn::new(app, ip);
    // A ping every PING_EVERY; a client silent for IDLE_LIMIT (no
    // message, no pong) is gone and its connection is closed.
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let mut heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = stopping.stopping.wait() => {
                let _ = socket.send(Message::Close(Some(CloseFrame {
                    code: close_code::RESTART,
                    reason: "the server is restarting".into(),
                }))).await;
                break;
            }
            _ = ping.tick() => {
                if heard.elapsed() > IDLE_LIMIT {
                    let _ = socket.send(Message::Close(Some(CloseFrame {
                        code: close_code::POLICY,
                        reason: "no answer to pings".into(),
                    }))).await;
                    break;
                }
                if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                    break;
                }
            }
            msg = socket.recv() => match { heard = tokio::time::Instant::now(); msg } {
                Some(Ok(Message::Text(text))) => {
                    let out = conn.handle(text.as_str()).await;
                    if socket.send(Message::Text(out.into())).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    let out = proto::reply(0, Err(proto::ProtoError::new("bad_request", "send JSON text messages")));
                    if socket.send(Message::Text(out.into())).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            push = pushes.recv() => {
                let push = match push {
                    Ok(p) => p,
                    // Missed pushes: resend the whole configuration.
                    Err(RecvError::Lagged(n)) => {
                        events.raise(
                            openturret_domain::model::Event::warning(
                                "client.queue_overflow",
                                "",
                                "turrets read too slowly and missed pushes; each was sent its whole configuration again",
                            )
                            .with("missed", n),
                        );
                        Push { profile: None, kind: PushKind::Config(None) }
                    }
                    Err(RecvError::Closed) => break,
                };
                let Some(profile) = conn.profile().await else { continue };
                if push.profile.is_some_and(|p| p != profile) {
                    continue;
                }
                let (text, end) = conn.push_message(profile, &push.kind).await;
                if let Some(t) = text
                    && socket.send(Message::Text(t.into())).await.is_err() {
                        break;
                    }
                if end {
                    let _ = socket.send(Message::Close(None)).await;
                    break;
                }
            }
        }
    }
    conn.detach().await;
}

/// A speed dial key as clients see it.
pub(crate) fn key_json(k: &openturret_domain::model::SpeedDial) -> serde_json::Value {
    json!({"id": k.id.0, "kind": k.fields.kind.as_str(), "position": k.fields.position,
           "name": k.fields.name, "number": k.fields.number})
}

/// The configuration a client of `profile` works with: line keys (display
/// name and alternate text only, SPEC §2), speed dial keys, the switches
/// that matter to it, speech units and concentrator keys.
pub async fn config_json(app: &App, profile: ProfileId) -> Result<String, StoreError> {
    let p = app.store.get_profile(profile).await?;
    let keys = app.store.list_speed_dials(profile).await?;
    let line_keys = app.store.list_profile_lines(profile).await?;
    let lines = app.store.list_lines().await?;
    let settings = app.store.get_settings().await?;
    let line_json: Vec<_> = line_keys
        .iter()
        .filter_map(|k| {
            lines.iter().find(|l| l.id == k.line_id).map(|l| {
                let st = crate::telephony::line_state(app, l.id);
                json!({"line_id": l.id.0, "position": k.position,
                       "display_name": l.fields.display_name, "alternate_text": l.fields.alternate_text,
                       "priority": l.fields.priority,
                       "answer_mode": l.fields.answer_mode.as_str(),
                       "state": st.name(), "state_reason": st.reason()})
            })
        })
        .collect();
    // Concentrator keys group the line keys by tens of positions until
    // administrators can define their own groups.
    let mut groups: std::collections::BTreeMap<u32, Vec<i64>> = Default::default();
    for k in &line_keys {
        groups
            .entry((k.position - 1) / 10)
            .or_default()
            .push(k.line_id.0);
    }
    let concentrators: Vec<_> = groups
        .into_iter()
        .map(|(g, ids)| json!({"name": format!("Lines {}–{}", g * 10 + 1, g * 10 + 10), "line_ids": ids}))
        .collect();
    Ok(json!({
        "profile": {
            "id": p.id.0,
            "name": p.name,
            "has_contacts_password": p.has_contacts_password,
            "collect_call_memory": p.flags.collect_call_memory,
            "allow_call_memory_deletion": p.flags.allow_call_memory_deletion,
            "call_memory_password_protected": p.flags.call_memory_password_protected,
        },
        "line_keys": line_json,
        "speed_dials": keys.iter().map(key_json).collect::<Vec<_>>(),
        "settings": {"global_contacts_changeable": settings.global_contacts_changeable},
        "speech_units": p.flags.speech_units().into_iter()
            .map(|(id, kind, name)| json!({"id": id, "kind": kind, "name": name}))
            .collect::<Vec<_>>(),
        "concentrators": concentrators,
    })
    .to_string())
}
