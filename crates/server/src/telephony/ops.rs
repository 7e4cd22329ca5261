//! Turrets' operations on calls (and dials on lines), each authorised
//! ([`may_act`]) and routed to what carries the call: an MLC of this node
//! (in process, or a `turret mlc` over its link), or another node
//! ([`crate::peers::forward`]).

use std::collections::HashSet;

use openturret_domain::{LineId, ProfileId};
use serde_json::json;

use super::{Member, line_state, ongoing, owner};
use crate::App;
use crate::mlc::LineState;
use crate::mlc::call::{self, OpError, op_err};

/// Where a call is carried: by an MLC of this node, or on another node.
enum Carrier {
    Here(Member),
    Node(String),
}

/// What carries call `id`, the call's line and who holds it.
fn carrier(app: &App, id: u64) -> Option<(Carrier, LineId, Option<ProfileId>)> {
    if let Some((m, line, owner)) = carrier_here(app, id) {
        return Some((Carrier::Here(m), line, owner));
    }
    app.peers
        .carrier(id)
        .map(|(node, line, owner)| (Carrier::Node(node), line, owner))
}

fn carrier_here(app: &App, id: u64) -> Option<(Member, LineId, Option<ProfileId>)> {
    if let Some((line, owner)) = call::line_of(&app.mlc, id) {
        return Some((Member::Local, line, owner));
    }
    let remotes = app.telephony.remotes.lock().unwrap();
    remotes.iter().find_map(|l| {
        l.call_line(id)
            .map(|(line, owner)| (Member::Remote(l.clone()), line, owner))
    })
}

/// Whether one of this node's MLCs carries call `id`.
pub fn carries_here(app: &App, id: u64) -> bool {
    carrier_here(app, id).is_some()
}

/// Whether profile `pid`, whose line keys are `lines`, may act on call
/// `id`: the call is on one of its lines, or it placed or answered the
/// call. Every turret operation on a call is checked here first; a call
/// it may not act on is answered exactly as a call that does not exist
/// (so call ids cannot be probed).
pub fn may_act(app: &App, id: u64, pid: ProfileId, lines: &[LineId]) -> Result<(), OpError> {
    match carrier(app, id) {
        Some((_, line, owner)) if lines.contains(&line) || owner == Some(pid) => Ok(()),
        _ => Err(no_call()),
    }
}

pub(crate) fn no_call() -> OpError {
    op_err("not_found", "no such call")
}

/// The lines profile `pid` has keys for.
pub async fn profile_lines(app: &App, pid: ProfileId) -> Result<Vec<LineId>, OpError> {
    Ok(app
        .store
        .list_profile_lines(pid)
        .await
        .map_err(|e| op_err("internal", e.to_string()))?
        .into_iter()
        .map(|k| k.line_id)
        .collect())
}

/// Places a call from `pid`'s turret: on `line` (which must be one of
/// the profile's), or on its first registered line with no call on it.
pub async fn dial(
    app: &App,
    pid: ProfileId,
    line: Option<LineId>,
    number: &str,
) -> Result<u64, OpError> {
    let own = profile_lines(app, pid).await?;
    let line = match line {
        Some(l) if own.contains(&l) => l,
        Some(_) => return Err(op_err("forbidden", "this profile has no key for that line")),
        None => {
            let busy: HashSet<LineId> = ongoing(app).iter().map(|c| c.line).collect();
            *own.iter()
                .find(|l| line_state(app, **l) == LineState::Registered && !busy.contains(l))
                .ok_or_else(|| {
                    op_err(
                        "no_line",
                        "no registered, idle line is available to this profile",
                    )
                })?
        }
    };
    let op = json!({"op": "dial", "profile_id": pid.0, "line_id": line.0, "number": number});
    match owner(app, line) {
        // Served by another node: dialled there.
        None => match app.peers.line(line) {
            Some((node, _)) => crate::peers::forward(app, &node, op).await.and_then(|v| {
                v["call_id"]
                    .as_u64()
                    .ok_or_else(|| op_err("internal", "no call id"))
            }),
            None => Err(op_err(
                "telephony_off",
                "no Multi-Line Controller is running",
            )),
        },
        Some(Member::Local) => call::dial(&app.mlc, pid, line, number).await,
        Some(Member::Remote(l)) => l.op(op).await.and_then(|v| {
            v["call_id"]
                .as_u64()
                .ok_or_else(|| op_err("internal", "no call id"))
        }),
    }
}

/// The other operations on a call, routed to the MLC carrying it.
pub async fn answer(app: &App, id: u64, pid: ProfileId, unit: &str) -> Result<(), OpError> {
    let op = json!({"op": "answer", "call_id": id, "profile_id": pid.0, "speech_unit": unit});
    match carrier(app, id).ok_or_else(no_call)?.0 {
        Carrier::Here(Member::Local) => call::answer_call(&app.mlc, id, Some(pid), unit).await,
        Carrier::Here(Member::Remote(l)) => l.op(op).await.map(drop),
        Carrier::Node(n) => crate::peers::forward(app, &n, op).await.map(drop),
    }
}

/// Rejects a call for `pid`: it stops ringing there, and the call ends
/// once every profile sharing the line has rejected it (the carrier
/// reads who shares the line).
pub async fn reject(app: &App, id: u64, pid: ProfileId) -> Result<(), OpError> {
    let (member, line, _) = carrier(app, id).ok_or_else(no_call)?;
    let member = match member {
        Carrier::Here(m) => m,
        Carrier::Node(n) => {
            let op = json!({"op": "reject", "call_id": id, "profile_id": pid.0});
            return crate::peers::forward(app, &n, op).await.map(drop);
        }
    };
    let sharing = app
        .store
        .profiles_with_line(line)
        .await
        .map_err(|e| op_err("internal", e.to_string()))?;
    match member {
        Member::Local => call::reject_call(&app.mlc, id, pid, &sharing).await,
        Member::Remote(l) => l
            .op(json!({"op": "reject", "call_id": id, "profile_id": pid.0,
                       "sharing": sharing.iter().map(|p| p.0).collect::<Vec<_>>()}))
            .await
            .map(drop),
    }
}

pub async fn hangup(app: &App, id: u64, pid: ProfileId) -> Result<(), OpError> {
    simple(app, id, pid, "hangup", None).await
}

pub async fn hold(app: &App, id: u64, pid: ProfileId, on: bool) -> Result<(), OpError> {
    simple(app, id, pid, if on { "hold" } else { "retrieve" }, None).await
}

pub async fn transfer(app: &App, id: u64, pid: ProfileId, target: &str) -> Result<(), OpError> {
    simple(app, id, pid, "transfer", Some(target)).await
}

/// Moves a call to another speech unit of the turret holding it.
pub async fn move_to(app: &App, id: u64, pid: ProfileId, unit: &str) -> Result<(), OpError> {
    simple(app, id, pid, "move", Some(unit)).await
}

/// Sends DTMF digits on a call (RFC 4733 telephone events).
pub async fn dtmf(app: &App, id: u64, pid: ProfileId, digits: &str) -> Result<(), OpError> {
    simple(app, id, pid, "dtmf", Some(digits)).await
}

/// A turret's WebRTC offer to hear and speak on a call its profile holds,
/// sent to the MLC carrying the call; returns the SDP answer.
pub async fn voice(
    app: &App,
    id: u64,
    pid: ProfileId,
    offer: &str,
    turret: std::net::IpAddr,
) -> Result<String, OpError> {
    let op = json!({"op": "voice", "call_id": id, "profile_id": pid.0,
                    "sdp": offer, "turret": turret.to_string()});
    let answer = match carrier(app, id).ok_or_else(no_call)?.0 {
        Carrier::Here(Member::Local) => return app.mlc.attach_voice(id, pid, offer, turret).await,
        Carrier::Here(Member::Remote(l)) => l.op(op).await,
        Carrier::Node(n) => crate::peers::forward(app, &n, op).await,
    };
    answer.and_then(|v| {
        v["sdp"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| op_err("internal", "no SDP answer"))
    })
}

async fn simple(
    app: &App,
    id: u64,
    pid: ProfileId,
    op: &str,
    target: Option<&str>,
) -> Result<(), OpError> {
    let json = json!({"op": op, "call_id": id, "profile_id": pid.0, "target": target});
    match carrier(app, id).ok_or_else(no_call)?.0 {
        Carrier::Here(Member::Local) => {
            call::run_op(&app.mlc, op, id, pid, target.unwrap_or_default()).await
        }
        Carrier::Here(Member::Remote(l)) => l.op(json).await.map(drop),
        Carrier::Node(n) => crate::peers::forward(app, &n, json).await.map(drop),
    }
}
