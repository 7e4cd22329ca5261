//! Requests inside a dialog (RFC 3261 §12): routing by route set and
//! remote target, and the turret's operations on a call: hang up, hold,
//! retrieve, blind transfer.

use super::*;

/// Where an in-dialog request goes: the first route, else the remote
/// target, else where the dialog came from.
pub(super) async fn dialog_peer(d: &Dialog) -> Option<Peer> {
    let next = d
        .route_set
        .first()
        .cloned()
        .unwrap_or_else(|| format!("<{}>", d.remote_target));
    match peer_of(&next, None).await {
        Some(p) => Some(p),
        None => d.peer,
    }
}

pub(super) fn dialog_builder(
    mlc: &Mlc,
    d: &Dialog,
    method: &str,
    cseq: u32,
    peer: Peer,
    branch: &str,
) -> Builder {
    let mut b = Builder::request(method, &d.remote_target)
        .header("Via", mlc.via(peer, branch))
        .header("Max-Forwards", "70");
    for r in &d.route_set {
        b = b.header("Route", r);
    }
    let to_tag = d
        .remote_tag
        .as_ref()
        .map(|t| format!(";tag={t}"))
        .unwrap_or_default();
    b.header("From", format!("<{}>;tag={}", d.local_uri, d.local_tag))
        .header("To", format!("<{}>{to_tag}", d.remote_uri))
        .header("Call-ID", &d.call_id)
        .header("CSeq", format!("{cseq} {method}"))
        .header("User-Agent", mlc.user_agent())
}

pub(super) async fn send_ack(mlc: &Mlc, id: u64, cseq: u32) {
    let Some(d) = mlc.calls.with(id, |c| c.dialog.clone()) else {
        return;
    };
    let Some(peer) = dialog_peer(&d).await else {
        return;
    };
    let b = dialog_builder(mlc, &d, "ACK", cseq, peer, &mlc.branch());
    mlc.send(peer, &b.build()).await;
}

/// Sends an in-dialog request and waits for its final answer.
pub(super) async fn send_in_dialog(
    mlc: &Mlc,
    id: u64,
    method: &str,
    body: Option<Vec<u8>>,
    extra: Vec<(&str, String)>,
) -> Option<Box<Message>> {
    let (rx, branch) = start_in_dialog(mlc, id, method, body, extra).await?;
    let mut rx = rx;
    let mut last = None;
    while let Some(r) = rx.recv().await {
        if r.code().unwrap_or(0) >= 200 {
            last = Some(r);
        }
    }
    let _ = mlc.take_send_error(&branch);
    if let Some(r) = &last
        && method == "INVITE"
        && r.code().is_some_and(|c| (200..300).contains(&c))
    {
        send_ack(mlc, id, r.cseq.number).await;
    }
    last
}

/// Sends an in-dialog request; returns its transaction's responses and
/// its branch. Needs the call in the table only until it is sent.
async fn start_in_dialog(
    mlc: &Mlc,
    id: u64,
    method: &str,
    body: Option<Vec<u8>>,
    extra: Vec<(&str, String)>,
) -> Option<(tokio::sync::mpsc::Receiver<Box<Message>>, String)> {
    let (d, line) = mlc.calls.with(id, |c| {
        c.dialog.local_cseq += 1;
        (c.dialog.clone(), c.line)
    })?;
    let peer = dialog_peer(&d).await?;
    let branch = mlc.branch();
    let mut b = dialog_builder(mlc, &d, method, d.local_cseq, peer, &branch);
    if method == "INVITE" || method == "REFER" {
        b = b.header("Contact", format!("<{}>", contact_uri(mlc, line, peer)));
    }
    for (k, v) in extra {
        b = b.header(k, v);
    }
    if let Some(body) = body {
        b = b.body("application/sdp", body);
    }
    let rx = mlc.transact(
        peer,
        branch.clone(),
        b.build(),
        method == "INVITE",
        TXN_TIMEOUT,
    );
    Some((rx, branch))
}

pub(super) fn check_owner(mlc: &Mlc, id: u64, by: ProfileId) -> Result<CallState, OpError> {
    mlc.calls
        .with(id, |c| {
            if c.owner.is_some() && c.owner != Some(by) {
                Err(op_err("forbidden", "the call is held by another turret"))
            } else {
                Ok(c.state)
            }
        })
        .ok_or_else(|| op_err("not_found", "no such call"))?
}

/// Hangs up: BYE when connected, CANCEL while an outgoing call rings.
pub async fn hangup(mlc: &Mlc, id: u64, by: ProfileId) -> Result<(), OpError> {
    match check_owner(mlc, id, by)? {
        CallState::Ringing => return Err(op_err("not_answered", "reject a ringing call instead")),
        CallState::Dialing | CallState::Alerting => {
            let sent = mlc
                .calls
                .with(id, |c| (c.sent_invite.clone(), c.dialog.clone()))
                .and_then(|(s, d)| s.map(|s| (s, d)));
            end(mlc, id, "local_hangup").await;
            if let Some(((peer, branch, cseq, target), d)) = sent {
                let b = Builder::request("CANCEL", &target)
                    .header("Via", mlc.via(peer, &branch))
                    .header("Max-Forwards", "70")
                    .header("From", format!("<{}>;tag={}", d.local_uri, d.local_tag))
                    .header("To", format!("<{target}>"))
                    .header("Call-ID", &d.call_id)
                    .header("CSeq", format!("{cseq} CANCEL"))
                    .header("User-Agent", mlc.user_agent());
                let _ = mlc.transact(peer, branch, b.build(), false, TXN_TIMEOUT);
            }
        }
        CallState::Ended => {}
        _ => {
            // The call ends for everyone (turrets, media, records) once the
            // BYE is sent; its response, or its timeout when the far end
            // does not answer, completes behind and changes nothing.
            if mlc.calls.with(id, |c| c.state = CallState::Ended).is_some() {
                let bye = start_in_dialog(mlc, id, "BYE", None, Vec::new()).await;
                end(mlc, id, "local_hangup").await;
                if let Some((mut rx, branch)) = bye {
                    let me = mlc.clone();
                    tokio::spawn(async move {
                        while rx.recv().await.is_some() {}
                        let _ = me.take_send_error(&branch);
                    });
                }
            }
        }
    }
    Ok(())
}

/// Puts a connected call on hold (re-INVITE with sendonly) or takes it
/// back (sendrecv).
pub async fn hold(mlc: &Mlc, id: u64, by: ProfileId, on: bool) -> Result<(), OpError> {
    let state = check_owner(mlc, id, by)?;
    let ok = if on {
        state == CallState::Connected
    } else {
        state == CallState::Held
    };
    if !ok {
        return Err(op_err(
            "wrong_state",
            format!("the call is {}", state.name()),
        ));
    }
    let body = mlc
        .calls
        .with(id, |c| {
            c.sdp_version += 1;
            let dir = if on {
                sdp::Direction::SendOnly
            } else {
                sdp::Direction::SendRecv
            };
            c.media.as_ref().map(|m| c.sdp(m.local, dir))
        })
        .flatten()
        .ok_or_else(|| op_err("not_found", "no such call"))?;
    let r = send_in_dialog(mlc, id, "INVITE", Some(body), Vec::new()).await;
    match r.and_then(|r| r.code()) {
        Some(200..=299) => {
            mlc.calls.with(id, |c| {
                c.state = if on {
                    CallState::Held
                } else {
                    CallState::Connected
                };
                // Held: nothing of the trader reaches the far end, nothing
                // of the far end reaches the turret.
                if let Some(m) = &c.media {
                    m.set_held(on);
                }
            });
            publish(mlc, id).await;
            crate::record::held(mlc, id, on);
            Ok(())
        }
        Some(code) => Err(op_err("refused", format!("the far end answered {code}"))),
        None => Err(op_err("no_answer", "the far end did not answer")),
    }
}

/// Blind transfer: asks the far end to call `target` (REFER) and, once it
/// accepts, ends our leg.
pub async fn transfer(mlc: &Mlc, id: u64, by: ProfileId, target: &str) -> Result<(), OpError> {
    let state = check_owner(mlc, id, by)?;
    if !matches!(state, CallState::Connected | CallState::Held) {
        return Err(op_err(
            "wrong_state",
            format!("the call is {}", state.name()),
        ));
    }
    let target = target.trim();
    if target.is_empty()
        || target
            .chars()
            .any(|c| c.is_whitespace() || "<>\"".contains(c))
    {
        return Err(op_err("invalid", "target must be digits or a SIP user"));
    }
    let domain = mlc
        .calls
        .with(id, |c| c.line)
        .and_then(|l| mlc.lines.lock().unwrap().get(&l).map(|r| r.domain.clone()))
        .unwrap_or_default();
    let refer_to = if target.contains('@') {
        format!("<sip:{}>", target.trim_start_matches("sip:"))
    } else {
        format!("<sip:{target}@{domain}>")
    };
    let r = send_in_dialog(mlc, id, "REFER", None, vec![("Refer-To", refer_to)]).await;
    match r.and_then(|r| r.code()) {
        Some(200..=299) => {
            mlc.calls.with(id, |c| c.end_reason = "transferred".into());
            crate::record::transferred(mlc, id);
            if let (Some(host), Some(line)) = (mlc.host(), line_of(mlc, id).map(|(l, _)| l)) {
                host.transferred(id, line).await;
            }
            mlc.calls.with(id, |c| c.state = CallState::Ended);
            send_in_dialog(mlc, id, "BYE", None, Vec::new()).await;
            end(mlc, id, "transferred").await;
            Ok(())
        }
        Some(code) => Err(op_err(
            "refused",
            format!("the far end refused the transfer ({code})"),
        )),
        None => Err(op_err("no_answer", "the far end did not answer")),
    }
}
