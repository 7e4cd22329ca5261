//! Incoming calls: the INVITE, ringing at the turrets, answer, reject,
//! and what the far end sends in the dialog (CANCEL, BYE, re-INVITE).

use super::*;

// ----- incoming ------------------------------------------------------------

pub(crate) async fn on_invite(mlc: &Mlc, m: Message, peer: Peer) {
    if m.to.tag().is_some() {
        return on_reinvite(mlc, m, peer).await;
    }
    if mlc.host().is_none() {
        return;
    }
    let tag = mlc.token();
    let refuse = |code: u16, reason: &'static str| {
        message::response_to(&m.headers, code, reason, Some(&tag))
    };
    let ruri = m.request_uri().expect("checked request");
    let found = find_line(mlc, &ruri.user, &m.to.uri.user);
    let line = found.as_ref().map(|f| f.0);
    // Only a line's PBX may ring it (its registrar, or a peer listed for
    // the line); a stranger learns nothing, not even whether the line
    // exists, and leaves no call, socket, push or record behind.
    let trusted = match line {
        Some(l) => mlc.trusted_for(l, peer.addr.ip()),
        None => mlc.trusted(peer.addr.ip()),
    };
    if !trusted {
        mlc.note_stranger(peer, "INVITE");
        return mlc.answer(&m, peer, refuse(403, "Forbidden")).await;
    }
    let Some(line) = line else {
        return mlc
            .answer_invite_finally(&m, peer, refuse(404, "Not Found"))
            .await;
    };
    if !matches!(mlc.line_state(line), super::super::LineState::Registered) {
        let b = refuse(480, "Temporarily Unavailable")
            .header("Warning", "399 openturret \"the line is not registered\"");
        return mlc.answer_invite_finally(&m, peer, b).await;
    }
    let config = mlc.config();
    if ringing_on(mlc, line) >= config.max_ringing_per_line.max(1) {
        let b = refuse(486, "Busy Here").header(
            "Warning",
            "399 openturret \"too many calls ringing on the line\"",
        );
        return mlc.answer_invite_finally(&m, peer, b).await;
    }
    if mlc.calls.len() >= MAX_CALLS || mlc.is_closing() {
        return mlc
            .answer_invite_finally(
                &m,
                peer,
                refuse(503, "Service Unavailable").header("Retry-After", "5"),
            )
            .await;
    }
    let offer = if m.body.is_empty() {
        None
    } else {
        match sdp::parse(&m.body) {
            Ok(a) => Some(a),
            Err(_) => {
                let b = refuse(488, "Not Acceptable Here")
                    .header("Warning", "304 openturret \"G.711 (PCMU or PCMA) only\"");
                return mlc.answer_invite_finally(&m, peer, b).await;
            }
        }
    };
    let Some(offer) = offer else {
        let b = refuse(488, "Not Acceptable Here")
            .header("Warning", "399 openturret \"an SDP offer is required\"");
        return mlc.answer_invite_finally(&m, peer, b).await;
    };
    // SRTP (RFC 4568 SDES) when the PBX offers it: only over TLS (keys in
    // clear signalling protect nothing), and only in the suite we speak.
    let srtp = if offer.secure {
        let theirs = offer
            .crypto
            .iter()
            .find_map(|c| crate::srtp::MasterKey::from_crypto_attr(c));
        match (peer.proto, theirs) {
            (Proto::Tls, Some((tag, key))) => Some((tag, key)),
            (Proto::Tls, None) => {
                let b = refuse(488, "Not Acceptable Here").header(
                    "Warning",
                    format!("305 openturret \"SRTP with {} only\"", crate::srtp::SUITE),
                );
                return mlc.answer_invite_finally(&m, peer, b).await;
            }
            _ => {
                let b = refuse(488, "Not Acceptable Here").header(
                    "Warning",
                    "399 openturret \"SRTP keys over unencrypted signalling refused: use TLS\"",
                );
                return mlc.answer_invite_finally(&m, peer, b).await;
            }
        }
    } else {
        None
    };
    let id = mlc.calls.next.fetch_add(1, Ordering::Relaxed) + 1;
    let media = match mlc
        .bind_leg(peer.addr, crate::rtp::Leg { call: id, line })
        .await
    {
        Ok(md) => md,
        Err(e) => {
            tracing::warn!(error = %e, "no RTP port for a call");
            return mlc
                .answer_invite_finally(&m, peer, refuse(503, "Service Unavailable"))
                .await;
        }
    };
    let codec = offer.codecs[0];
    let their_key = srtp.as_ref().map(|(_, k)| k.inline());
    let crypto = srtp.map(|(tag, theirs)| {
        let ours = crate::srtp::MasterKey::random();
        media.set_srtp(Some(&ours), &theirs);
        format!("{tag} {} {}", crate::srtp::SUITE, ours.inline())
    });
    let (_, line_number, auto_answer) = found.expect("line found above");
    let remote_target = m
        .contact()
        .map(|c| c.uri.to_string())
        .unwrap_or_else(|| m.from.uri.to_string());
    let call = Call {
        id,
        line,
        direction: Direction::Incoming,
        state: CallState::Ringing,
        remote_number: number_of(&m.from.uri),
        remote_display: m.from.display.clone().unwrap_or_default(),
        line_number,
        started: Timestamp::now(),
        connected_at: None,
        owner: None,
        speech_unit: String::new(),
        rejected: HashSet::new(),
        dialog: Dialog {
            call_id: m.call_id.clone(),
            local_tag: tag.clone(),
            remote_tag: m.from.tag().map(str::to_string),
            local_uri: m.to.uri.to_string(),
            remote_uri: m.from.uri.to_string(),
            remote_target,
            route_set: m
                .header_values("record-route")
                .iter()
                .map(|s| s.to_string())
                .collect(),
            local_cseq: 0,
            peer: Some(peer),
        },
        invite: Some((m.clone(), peer)),
        sent_invite: None,
        media: Some(media),
        codec,
        codec_settled: true,
        events: None,
        crypto,
        their_key,
        sdp_version: 1,
        remote_held: false,
        recording: None,
        end_reason: String::new(),
    };
    let contact = contact_uri(mlc, line, peer);
    mlc.calls.insert(call);
    // No 100 Trying: the 180 goes out at once (RFC 3261 §8.2.6.1 asks for
    // 100 only when the answer would take over 200 ms).
    let ringing = message::response_to(&m.headers, 180, "Ringing", Some(&tag))
        .header("Contact", format!("<{contact}>"));
    // Remembered as the transaction's latest answer: a retransmitted
    // INVITE gets the 180 again.
    mlc.answer(&m, peer, ringing).await;
    tracing::info!(call = id, line = line.0, "incoming call ringing");
    publish(mlc, id).await;
    if auto_answer {
        let _ = answer_call(mlc, id, None, "speaker-1").await;
    } else {
        // Nobody answers: the call ends by itself (the caller hears 480).
        let me = mlc.clone();
        let after = Duration::from_secs(config.ring_timeout_secs.max(1));
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            ring_timeout(&me, id).await;
        });
    }
}

/// Calls ringing now on `line`.
fn ringing_on(mlc: &Mlc, line: LineId) -> usize {
    mlc.calls
        .map
        .lock()
        .unwrap()
        .values()
        .filter(|c| c.line == line && c.state == CallState::Ringing)
        .count()
}

/// A call still ringing after the ring timeout: 480 to the caller, ended
/// with the reason `no_answer`.
async fn ring_timeout(mlc: &Mlc, id: u64) {
    let still = mlc.calls.with(id, |c| {
        (c.state == CallState::Ringing).then(|| (c.invite.clone(), c.dialog.local_tag.clone()))
    });
    let Some(Some((Some((invite, peer)), tag))) = still else {
        return;
    };
    tracing::info!(call = id, "nobody answered; the ring timeout ends the call");
    let b = message::response_to(&invite.headers, 480, "Temporarily Unavailable", Some(&tag))
        .header("Warning", "399 openturret \"no answer\"");
    mlc.answer_invite_finally(&invite, peer, b).await;
    end(mlc, id, "no_answer").await;
}

/// The line an INVITE is for, from the MLC's line table (no database
/// read on the SIP path): our contact's `ot-line-N` user part, or else the
/// line whose address of record the PBX kept (Request-URI or To user).
/// Returns the line, its number and whether it answers by itself.
pub(super) fn find_line(
    mlc: &Mlc,
    ruri_user: &str,
    to_user: &str,
) -> Option<(LineId, String, bool)> {
    let lines = mlc.lines.lock().unwrap();
    let by_contact = line_of_contact_user(ruri_user).filter(|l| lines.contains_key(l));
    let id = by_contact.or_else(|| {
        lines
            .iter()
            .find(|(_, l)| l.user == ruri_user || l.user == to_user)
            .map(|(id, _)| *id)
    })?;
    let l = lines.get(&id)?;
    Some((id, l.number.clone(), l.auto_answer))
}

/// A turret answers a ringing call (or the line answers by itself when its
/// answer mode is automatic, `by` = None).
pub async fn answer_call(
    mlc: &Mlc,
    id: u64,
    by: Option<ProfileId>,
    unit: &str,
) -> Result<(), OpError> {
    let prepared = mlc.calls.with(id, |c| {
        if c.state != CallState::Ringing || c.direction != Direction::Incoming {
            return Err(op_err(
                "not_ringing",
                "the call is no longer ringing (answered elsewhere or ended)",
            ));
        }
        let (invite, peer) = c.invite.clone().expect("incoming calls keep their INVITE");
        let offer = sdp::parse(&invite.body).ok();
        let media = c.media.as_ref().expect("incoming calls have media");
        let local = media.local;
        media.set_remote(offer.as_ref().and_then(|o| o.rtp), c.codec);
        c.events = offer.as_ref().and_then(|o| o.events);
        let dir = offer.map_or(sdp::Direction::SendRecv, |o| o.direction.answer());
        media.set_sending(matches!(
            dir,
            sdp::Direction::SendRecv | sdp::Direction::SendOnly
        ));
        let body = c.sdp(local, dir);
        c.state = CallState::Connected;
        c.owner = by;
        c.speech_unit = unit.to_string();
        c.connected_at = Some(Timestamp::now());
        Ok((invite, peer, body, c.dialog.local_tag.clone(), c.line))
    });
    let (invite, peer, body, tag, line) =
        prepared.ok_or_else(|| op_err("not_found", "no such call"))??;
    let mut b = message::response_to(&invite.headers, 200, "OK", Some(&tag))
        .header("Contact", format!("<{}>", contact_uri(mlc, line, peer)))
        .header("Allow", openturret_sip::check::ALLOW);
    for rr in invite.header_values("record-route") {
        b = b.header("Record-Route", rr);
    }
    let bytes = b
        .header("User-Agent", mlc.user_agent())
        .body("application/sdp", body)
        .build();
    let acked = mlc.send_reliably(
        peer,
        format!("{} {}", invite.call_id, invite.cseq.number),
        bytes,
    );
    // No ACK within 64·T1: the far end never saw our 200; end the call
    // properly (RFC 3261 §13.3.1.4).
    let me = mlc.clone();
    tokio::spawn(async move {
        if !acked.await.unwrap_or(true) {
            tracing::warn!(call = id, "no ACK for the 200 OK; hanging up");
            send_in_dialog(&me, id, "BYE", None, Vec::new()).await;
            end(&me, id, "no_ack").await;
        }
    });
    tracing::info!(call = id, "call answered");
    publish(mlc, id).await;
    record(mlc, id);
    Ok(())
}

/// A turret rejects a ringing call: it stops ringing there; when every
/// profile showing the line (`sharing`, as the System Manager knows them)
/// has rejected it, the caller hears busy (486).
pub async fn reject_call(
    mlc: &Mlc,
    id: u64,
    by: ProfileId,
    sharing: &[ProfileId],
) -> Result<(), OpError> {
    let pids: HashSet<ProfileId> = sharing.iter().copied().collect();
    let all = mlc
        .calls
        .with(id, |c| {
            if c.state != CallState::Ringing {
                return Err(op_err("not_ringing", "the call is not ringing"));
            }
            c.rejected.insert(by);
            Ok(pids.iter().all(|p| c.rejected.contains(p)))
        })
        .ok_or_else(|| op_err("not_found", "no such call"))??;
    if all {
        if let Some(Some((invite, peer))) = mlc.calls.with(id, |c| c.invite.clone()) {
            let tag = mlc
                .calls
                .with(id, |c| c.dialog.local_tag.clone())
                .unwrap_or_default();
            mlc.answer_invite_finally(
                &invite,
                peer,
                message::response_to(&invite.headers, 486, "Busy Here", Some(&tag)),
            )
            .await;
        }
        end(mlc, id, "rejected").await;
    } else if let (Some(v), Some(host)) = (mlc.calls.with(id, |c| c.view()), mlc.host()) {
        host.rejected_here(v, by).await;
    }
    Ok(())
}

pub(crate) async fn on_ack(mlc: &Mlc, m: &Message) {
    let _ = (mlc, m);
    // The ACK stopped the 200's retransmissions (see `Mlc::send_reliably`);
    // nothing else waits for it.
}

pub(crate) async fn on_cancel(mlc: &Mlc, m: Message, peer: Peer) {
    let id = mlc.calls.id_of(&m.call_id);
    let ringing = id.and_then(|id| {
        mlc.calls.with(id, |c| {
            let matches = c.invite.as_ref().is_some_and(|(inv, _)| {
                inv.cseq.number == m.cseq.number && inv.vias[0].branch() == m.vias[0].branch()
            });
            (matches && c.state == CallState::Ringing)
                .then(|| (c.invite.clone(), c.dialog.local_tag.clone()))
        })
    });
    match (id, ringing.flatten()) {
        (Some(id), Some((Some((invite, ipeer)), tag))) => {
            mlc.answer(
                &m,
                peer,
                message::response_to(&m.headers, 200, "OK", Some(&tag)),
            )
            .await;
            let b = message::response_to(&invite.headers, 487, "Request Terminated", Some(&tag));
            mlc.answer_invite_finally(&invite, ipeer, b).await;
            end(mlc, id, "cancelled").await;
        }
        _ => {
            let b = message::response_to(
                &m.headers,
                481,
                "Call/Transaction Does Not Exist",
                Some(&mlc.token()),
            );
            mlc.answer(&m, peer, b).await;
        }
    }
}

pub(crate) async fn on_bye(mlc: &Mlc, m: Message, peer: Peer) {
    match mlc.calls.id_of(&m.call_id) {
        Some(id) => {
            mlc.answer(&m, peer, message::response_to(&m.headers, 200, "OK", None))
                .await;
            end(mlc, id, "remote_hangup").await;
        }
        None => {
            let b = message::response_to(&m.headers, 481, "Call/Transaction Does Not Exist", None);
            mlc.answer(&m, peer, b).await;
        }
    }
}

pub(crate) async fn on_notify(mlc: &Mlc, m: Message, peer: Peer) {
    let code = if mlc.calls.id_of(&m.call_id).is_some() {
        200
    } else {
        481
    };
    let reason = if code == 200 {
        "OK"
    } else {
        "Call/Transaction Does Not Exist"
    };
    mlc.answer(
        &m,
        peer,
        message::response_to(&m.headers, code, reason, None),
    )
    .await;
}

/// A re-INVITE from the far end (hold, retrieve, new media address).
pub(super) async fn on_reinvite(mlc: &Mlc, m: Message, peer: Peer) {
    let Some(id) = mlc.calls.id_of(&m.call_id) else {
        let b = message::response_to(&m.headers, 481, "Call/Transaction Does Not Exist", None);
        return mlc.answer_invite_finally(&m, peer, b).await;
    };
    let offer = sdp::parse(&m.body).ok();
    let answered = mlc.calls.with(id, |c| {
        let media = c.media.as_ref()?;
        let dir = match &offer {
            Some(o) => {
                let codec = o
                    .codecs
                    .iter()
                    .copied()
                    .find(|k| *k == c.codec)
                    .unwrap_or(o.codecs[0]);
                c.codec = codec;
                media.set_remote(o.rtp, codec);
                // A new key from the far end (RFC 4568 §7.1.4): its
                // stream starts over under it; ours goes on.
                if let Some((_, k)) = o
                    .crypto
                    .iter()
                    .find_map(|a| crate::srtp::MasterKey::from_crypto_attr(a))
                    && c.crypto.is_some()
                    && c.their_key.as_deref() != Some(k.inline().as_str())
                {
                    c.their_key = Some(k.inline());
                    media.set_srtp(None, &k);
                }
                c.remote_held = matches!(
                    o.direction,
                    sdp::Direction::SendOnly | sdp::Direction::Inactive
                ) || o.rtp.is_none();
                o.direction.answer()
            }
            None => sdp::Direction::SendRecv,
        };
        media.set_sending(!c.remote_held);
        c.sdp_version += 1;
        Some((c.sdp(media.local, dir), c.line))
    });
    let Some(Some((body, line))) = answered else {
        let b = message::response_to(&m.headers, 488, "Not Acceptable Here", None);
        return mlc.answer_invite_finally(&m, peer, b).await;
    };
    let bytes = message::response_to(&m.headers, 200, "OK", None)
        .header("Contact", format!("<{}>", contact_uri(mlc, line, peer)))
        .header("User-Agent", mlc.user_agent())
        .body("application/sdp", body)
        .build();
    mlc.send_reliably(peer, format!("{} {}", m.call_id, m.cseq.number), bytes);
    publish(mlc, id).await;
}

pub(crate) async fn on_stray_2xx(mlc: &Mlc, m: &Message) {
    if let Some(id) = mlc.calls.id_of(&m.call_id) {
        send_ack(mlc, id, m.cseq.number).await;
    }
}
