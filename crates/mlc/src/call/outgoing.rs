//! Outgoing calls: line selection, the INVITE with its digest answer,
//! and the ACKs.

use super::*;

// ----- outgoing ------------------------------------------------------------

/// Places a call from a turret of `pid` to `number` on `line` (chosen,
/// and checked against the profile's keys, by the System Manager).
/// The payload type we offer RFC 4733 telephone events (DTMF) at.
const OUR_EVENTS_PT: u8 = 101;

pub async fn dial(mlc: &Mlc, pid: ProfileId, line: LineId, number: &str) -> Result<u64, OpError> {
    let number = number.trim();
    if number.is_empty()
        || number.len() > 64
        || number
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '>' || c == '<' || c == '"')
    {
        return Err(op_err(
            "invalid",
            "number must be digits or a SIP user (no spaces)",
        ));
    }
    let (registrar, domain, user, line_number, dial_as) = {
        let lines = mlc.lines.lock().unwrap();
        let l = lines
            .get(&line)
            .ok_or_else(|| op_err("line_down", "the line is not served here"))?;
        let r = l
            .registrar
            .ok_or_else(|| op_err("line_down", "the line has not reached its PBX"))?;
        (
            r,
            l.domain.clone(),
            l.user.clone(),
            l.number.clone(),
            l.dial.clone(),
        )
    };
    let target = if number.contains('@') {
        if number.starts_with("sip:") {
            number.to_string()
        } else {
            format!("sip:{number}")
        }
    } else {
        format!("sip:{number}@{domain}")
    };
    let id = mlc.calls.next.fetch_add(1, Ordering::Relaxed) + 1;
    let media = mlc
        .bind_leg(registrar.addr, crate::rtp::Leg { call: id, line })
        .await
        .map_err(|e| op_err("internal", format!("no RTP port: {e}")))?;
    let call_id = mlc.call_id();
    let local_tag = mlc.token();
    let local_uri = format!("sip:{user}@{domain}");
    let call = Call {
        id,
        line,
        direction: Direction::Outgoing,
        state: CallState::Dialing,
        remote_number: number.to_string(),
        remote_display: String::new(),
        line_number,
        started: Timestamp::now(),
        connected_at: None,
        owner: Some(pid),
        speech_unit: "handset-1".into(),
        rejected: HashSet::new(),
        dialog: Dialog {
            call_id: call_id.clone(),
            local_tag: local_tag.clone(),
            remote_tag: None,
            local_uri: local_uri.clone(),
            remote_uri: target.clone(),
            remote_target: target.clone(),
            route_set: Vec::new(),
            local_cseq: 1,
            peer: Some(registrar),
        },
        invite: None,
        sent_invite: None,
        media: Some(media),
        codec: Codec::Pcmu,
        codec_settled: false,
        events: None,
        crypto: None,
        their_key: None,
        sdp_version: 1,
        remote_held: false,
        recording: None,
        end_reason: String::new(),
    };
    mlc.calls.insert(call);
    let username = dial_as.username;
    let password = dial_as.password.map(|p| p.expose().to_string());
    let display = dial_as.display_name.replace(['"', '\\'], "");
    let ppi = (!dial_as.preferred_identity.is_empty()).then(|| {
        format!(
            "<sip:{}@{domain}>",
            dial_as.preferred_identity.replace(' ', "")
        )
    });
    publish(mlc, id).await;
    let me = mlc.clone();
    tokio::spawn(async move {
        let from = format!("\"{display}\" <{local_uri}>;tag={local_tag}");
        run_outgoing(&me, id, registrar, &target, &from, ppi, &username, password).await;
    });
    Ok(id)
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn run_outgoing(
    mlc: &Mlc,
    id: u64,
    peer: Peer,
    target: &str,
    from: &str,
    ppi: Option<String>,
    username: &str,
    password: Option<String>,
) {
    let mut auth: Option<(&'static str, String)> = None;
    // On a line over TLS the offer is SRTP (RFC 4568 SDES) with a key of
    // this call; a PBX that refuses it (488) gets the plain offer once.
    let ours = crate::srtp::MasterKey::random();
    let mut secure = peer.proto == Proto::Tls;
    for _ in 0..3 {
        let Some((cseq, call_id, local, version, line)) = mlc.calls.with(id, |c| {
            c.dialog.local_cseq += 1;
            (
                c.dialog.local_cseq,
                c.dialog.call_id.clone(),
                c.media.as_ref().map(|m| m.local),
                c.sdp_version,
                c.line,
            )
        }) else {
            return;
        };
        let Some(local) = local else { return };
        let branch = mlc.branch();
        let sdp_offer = sdp::build_call(
            local,
            id,
            version,
            &[Codec::Pcmu, Codec::Pcma],
            sdp::Direction::SendRecv,
            Some(OUR_EVENTS_PT),
            secure
                .then(|| format!("1 {} {}", crate::srtp::SUITE, ours.inline()))
                .as_deref(),
        );
        let mut b = Builder::request("INVITE", target)
            .header("Via", mlc.via(peer, &branch))
            .header("Max-Forwards", "70")
            .header("From", from)
            .header("To", format!("<{target}>"))
            .header("Call-ID", &call_id)
            .header("CSeq", format!("{cseq} INVITE"))
            .header("Contact", format!("<{}>", contact_uri(mlc, line, peer)))
            .header("Allow", openturret_sip::check::ALLOW)
            .header("User-Agent", mlc.user_agent());
        if let Some(p) = &ppi {
            b = b.header("P-Preferred-Identity", p);
        }
        if let Some((h, v)) = &auth {
            b = b.header(h, v);
        }
        let bytes = b.body("application/sdp", sdp_offer).build();
        mlc.calls.with(id, |c| {
            c.sent_invite = Some((peer, branch.clone(), cseq, target.to_string()))
        });
        let mut rx = mlc.transact(peer, branch.clone(), bytes, true, ANSWER_TIMEOUT);
        let mut final_response = None;
        while let Some(r) = rx.recv().await {
            let code = r.code().unwrap_or(0);
            if code < 200 {
                if code == 180 || code == 183 {
                    // With an SDP answer: early media (a ringback or an
                    // announcement from the far end), heard from now on.
                    let early = sdp::parse(&r.body).ok();
                    let changed = mlc.calls.with(id, |c| {
                        let was = c.state;
                        if c.state == CallState::Dialing {
                            c.state = CallState::Alerting;
                        }
                        let mut media_began = false;
                        if let (Some(a), Some(m)) = (&early, &c.media)
                            && !c.codec_settled
                        {
                            c.codec = a.codecs[0];
                            c.codec_settled = true;
                            c.events = a.events;
                            m.set_remote(a.rtp, c.codec);
                            take_keys(c, a, secure.then_some(&ours));
                            media_began = true;
                        }
                        was != c.state || media_began
                    });
                    if changed == Some(true) {
                        publish(mlc, id).await;
                    }
                }
                continue;
            }
            final_response = Some(r);
        }
        let Some(r) = final_response else {
            let reason = match mlc.take_send_error(&branch) {
                Some(e) => format!("cannot reach the PBX: {e}"),
                None => "no_answer".to_string(),
            };
            end(mlc, id, &reason).await;
            return;
        };
        let code = r.code().unwrap_or(0);
        if (200..300).contains(&code) {
            let answer = sdp::parse(&r.body).ok();
            let ended = mlc.calls.with(id, |c| {
                c.dialog.remote_tag = r.to.tag().map(str::to_string);
                if let Some(t) = r.contact() {
                    c.dialog.remote_target = t.uri.to_string();
                }
                c.dialog.route_set = r
                    .header_values("record-route")
                    .iter()
                    .rev()
                    .map(|s| s.to_string())
                    .collect();
                if let (Some(a), Some(m)) = (&answer, &c.media) {
                    c.codec = a.codecs[0];
                    c.events = a.events;
                    m.set_remote(a.rtp, c.codec);
                    take_keys(c, a, secure.then_some(&ours));
                }
                c.codec_settled = true;
                let was_cancelled = c.state == CallState::Ended;
                if !was_cancelled {
                    c.state = CallState::Connected;
                    c.connected_at = Some(Timestamp::now());
                }
                was_cancelled
            });
            send_ack(mlc, id, r.cseq.number).await;
            if ended == Some(true) {
                // Hung up while the answer was on its way: end it properly.
                send_in_dialog(mlc, id, "BYE", None, Vec::new()).await;
                return;
            }
            publish(mlc, id).await;
            record(mlc, id);
            return;
        }
        // Non-2xx: the transaction's ACK (same branch, §17.1.1.3).
        ack_non_2xx(mlc, peer, &branch, target, from, &r).await;
        if code == 488 && secure {
            tracing::info!(call = id, "the PBX refused SRTP; offering plain RTP");
            secure = false;
            continue;
        }
        if (code == 401 || code == 407)
            && auth.is_none()
            && let Some(pw) = &password
            && let Some(a) = digest_answer(mlc, &r, "INVITE", target, username, pw)
        {
            auth = Some(a);
            continue;
        }
        end(mlc, id, &reason_of(&r)).await;
        return;
    }
    end(mlc, id, "authentication failed").await;
}

/// Keys the call's RTP when we offered SRTP with `ours` and the answer
/// takes it with a key of its own (once: a later answer keeps them). An
/// answer without SRTP leaves the RTP plain.
fn take_keys(c: &mut super::Call, a: &sdp::Audio, ours: Option<&crate::srtp::MasterKey>) {
    let (Some(ours), Some(m)) = (ours, &c.media) else {
        return;
    };
    if c.crypto.is_some() || !a.secure {
        return;
    }
    if let Some((tag, theirs)) = a
        .crypto
        .iter()
        .find_map(|x| crate::srtp::MasterKey::from_crypto_attr(x))
    {
        m.set_srtp(Some(ours), &theirs);
        c.crypto = Some(format!("{tag} {} {}", crate::srtp::SUITE, ours.inline()));
        c.their_key = Some(theirs.inline());
    }
}

pub(crate) async fn ack_non_2xx(
    mlc: &Mlc,
    peer: Peer,
    branch: &str,
    target: &str,
    from: &str,
    r: &Message,
) {
    let to = message::header(&r.headers, "to")
        .unwrap_or_default()
        .to_string();
    let b = Builder::request("ACK", target)
        .header("Via", mlc.via(peer, branch))
        .header("Max-Forwards", "70")
        .header("From", from)
        .header("To", to)
        .header("Call-ID", &r.call_id)
        .header("CSeq", format!("{} ACK", r.cseq.number));
    mlc.send(peer, &b.build()).await;
}
