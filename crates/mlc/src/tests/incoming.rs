//! Calls from the PBX: ringing, answer, refusals, CANCEL, the bounds, timeouts.

use super::*;

#[tokio::test]
async fn an_incoming_call_rings_is_answered_and_ends_with_the_pbxs_bye() {
    let mut rig = Rig::registered(vec![line(1, "1001", "manual")]).await;
    let (invite, call_id) = rig.invite("1001");
    rig.deliver(&invite).await;
    let ringing = rig.response(180).await;
    let tag = to_tag(&ringing);
    let view = rig.until_call(CallState::Ringing).await;
    assert_eq!(
        (
            view.remote_number.as_str(),
            view.remote_display.as_str(),
            view.line
        ),
        ("2000", "Alice", LineId(1))
    );
    call::answer_call(&rig.mlc, view.id, Some(ProfileId(7)), "handset 1")
        .await
        .unwrap();
    let ok = rig.response(200).await;
    assert_eq!(to_tag(&ok), tag, "one dialog");
    assert_eq!(ok.content_type().as_deref(), Some("application/sdp"));
    let answer = openturret_sip::sdp::parse(&ok.body).unwrap();
    assert_eq!(answer.codecs[0], openturret_sip::sdp::Codec::Pcmu);
    let connected = rig.until_call(CallState::Connected).await;
    assert_eq!(connected.owner, Some(ProfileId(7)));
    let ack = rig.in_dialog("ACK", "1001", &call_id, &tag, 1);
    rig.deliver(&ack).await;
    let bye = rig.in_dialog("BYE", "1001", &call_id, &tag, 2);
    rig.deliver(&bye).await;
    let ok = rig.response(200).await;
    assert_eq!(ok.cseq.method, "BYE");
    let (ended, last) = rig.call_report().await;
    assert!(last && ended.state == CallState::Ended, "{ended:?}");
    assert!(call::ongoing(&rig.mlc).is_empty());
}

#[tokio::test]
async fn a_retransmitted_invite_is_absorbed_and_answered_again_the_same() {
    let mut rig = Rig::registered(vec![line(1, "1001", "manual")]).await;
    let (invite, _) = rig.invite("1001");
    rig.deliver(&invite).await;
    let first = rig.response(180).await;
    rig.until_call(CallState::Ringing).await;
    rig.deliver(&invite).await;
    let again = rig.response(180).await;
    assert_eq!(to_tag(&again), to_tag(&first), "the remembered answer");
    assert_eq!(call::ongoing(&rig.mlc).len(), 1, "one call");
}

#[tokio::test]
async fn a_stranger_gets_403_and_nothing_exists_for_its_invite() {
    let mut rig = Rig::registered(vec![line(1, "1001", "manual")]).await;
    let (invite, _) = rig.invite("1001");
    let stranger = Peer {
        proto: Proto::Udp,
        addr: "127.0.0.2:5090".parse().unwrap(),
    };
    rig.deliver_from(stranger, &invite).await;
    let refused = rig.response(403).await;
    assert!(refused.header("user-agent").is_none(), "no product named");
    rig.sends_nothing().await;
    assert!(call::ongoing(&rig.mlc).is_empty());
    assert!(rig.told.try_recv().is_err(), "the host heard nothing");
    assert_eq!(rig.mlc.refused_requests(), 1);
}

#[tokio::test]
async fn an_unregistered_line_refuses_calls_with_480() {
    let mut rig = Rig::unregistered(vec![line(1, "1001", "manual")], |_| {}).await;
    let reg = rig.request("REGISTER").await;
    rig.answer(&reg, 403, "Forbidden", &[]).await;
    rig.until_line(LineId(1), |s| matches!(s, LineState::Failing(_)))
        .await;
    let (invite, _) = rig.invite("1001");
    rig.deliver(&invite).await;
    loop {
        let m = rig.next_sent().await;
        if m.method() == Some("REGISTER") {
            continue;
        }
        assert_eq!(m.code(), Some(480), "{m:?}");
        break;
    }
    assert!(call::ongoing(&rig.mlc).is_empty());
}

#[tokio::test]
async fn an_unknown_user_from_the_pbx_gets_404() {
    let mut rig = Rig::registered(vec![line(1, "1001", "manual")]).await;
    let (invite, _) = rig.invite("4711");
    rig.deliver(&invite).await;
    rig.response(404).await;
}

#[tokio::test]
async fn the_ringing_table_of_a_line_is_bounded() {
    let mut rig = Rig::tuned(vec![line(1, "1001", "manual")], |c| {
        c.max_ringing_per_line = 2
    })
    .await;
    for _ in 0..2 {
        let (invite, _) = rig.invite("1001");
        rig.deliver(&invite).await;
        rig.response(180).await;
    }
    let (third, _) = rig.invite("1001");
    rig.deliver(&third).await;
    let m = rig.response(486).await;
    assert!(
        m.header("warning")
            .unwrap()
            .contains("too many calls ringing")
    );
    assert_eq!(call::ongoing(&rig.mlc).len(), 2);
}

#[tokio::test]
async fn a_cancel_ends_a_ringing_call_with_487() {
    let mut rig = Rig::registered(vec![line(1, "1001", "manual")]).await;
    let (invite, _) = rig.ringing("1001").await;
    rig.deliver(&cancel_of(&invite)).await;
    let mut codes = vec![rig.next_sent().await, rig.next_sent().await];
    codes.sort_by_key(|m| m.cseq.method.clone());
    assert_eq!(
        (codes[0].cseq.method.as_str(), codes[0].code()),
        ("CANCEL", Some(200))
    );
    assert_eq!(
        (codes[1].cseq.method.as_str(), codes[1].code()),
        ("INVITE", Some(487))
    );
    let (ended, last) = rig.call_report().await;
    assert!(last && ended.state == CallState::Ended);
}

#[tokio::test]
async fn a_cancel_that_loses_the_race_to_the_answer_changes_nothing() {
    let mut rig = Rig::registered(vec![line(1, "1001", "manual")]).await;
    let (invite, view) = rig.ringing("1001").await;
    call::answer_call(&rig.mlc, view.id, Some(ProfileId(1)), "handset 1")
        .await
        .unwrap();
    rig.response(200).await;
    rig.deliver(&cancel_of(&invite)).await;
    let m = rig.next_sent().await;
    assert_eq!(m.cseq.method, "CANCEL");
    assert!(m.code().unwrap() >= 200, "{m:?}");
    // No 487 follows, and the call is still up.
    let more = tokio::time::timeout(Duration::from_millis(300), rig.sent.recv()).await;
    if let Ok(Some((_, m))) = more {
        assert_ne!(m.code(), Some(487), "{m:?}");
    }
    assert_eq!(call::ongoing(&rig.mlc)[0].state, CallState::Connected);
}

#[tokio::test]
async fn when_every_turret_rejects_the_caller_hears_busy() {
    let mut rig = Rig::registered(vec![line(1, "1001", "manual")]).await;
    let (_, view) = rig.ringing("1001").await;
    let sharing = [ProfileId(1), ProfileId(2)];
    call::reject_call(&rig.mlc, view.id, ProfileId(1), &sharing)
        .await
        .unwrap();
    loop {
        if let Told::Rejected(id, p) = rig.told().await {
            assert_eq!((id, p), (view.id, ProfileId(1)));
            break;
        }
    }
    rig.sends_nothing().await;
    call::reject_call(&rig.mlc, view.id, ProfileId(2), &sharing)
        .await
        .unwrap();
    rig.response(486).await;
}

#[tokio::test]
async fn a_line_in_automatic_mode_answers_by_itself() {
    let mut rig = Rig::registered(vec![line(1, "1001", "automatic")]).await;
    let (invite, _) = rig.invite("1001");
    rig.deliver(&invite).await;
    loop {
        let m = rig.next_sent().await;
        if m.code() == Some(200) {
            break;
        }
        assert!(m.code().unwrap() < 200, "{m:?}");
    }
    let v = rig.until_call(CallState::Connected).await;
    assert_eq!(v.owner, None, "nobody answered: the line did");
}

#[tokio::test]
async fn a_request_that_cannot_be_served_is_answered_naming_why() {
    let mut rig = Rig::registered(vec![line(1, "1001", "manual")]).await;
    let bad = format!(
        "INVITE sip:1001@{US} SIP/3.0\r\nVia: SIP/2.0/UDP {PBX};branch=z9hG4bKbad\r\nFrom: <sip:2000@{PBX}>;tag=x\r\nTo: <sip:1001@{PBX}>\r\nCall-ID: bad@pbx\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    match message::parse(bad.as_bytes(), Framing::Datagram) {
        Err(e) => rig
            .inbound
            .send(Inbound::Refused(e, rig.pbx))
            .await
            .unwrap(),
        Ok(_) => panic!("SIP/3.0 parses"),
    }
    let m = rig.response(505).await;
    assert!(
        m.header("warning")
            .is_some_and(|w| w.contains("399 openturret")),
        "{m:?}"
    );
    assert!(call::ongoing(&rig.mlc).is_empty());
}

#[tokio::test]
async fn options_name_the_product_to_the_pbx_only() {
    let mut rig = Rig::registered(vec![line(1, "1001", "manual")]).await;
    let options = |branch: &str| {
        message::Builder::request("OPTIONS", &format!("sip:{US}"))
            .header("Via", format!("SIP/2.0/UDP {PBX};branch=z9hG4bK{branch}"))
            .header("Max-Forwards", "70")
            .header("From", format!("<sip:probe@{PBX}>;tag=p"))
            .header("To", format!("<sip:{US}>"))
            .header("Call-ID", format!("{branch}@probe"))
            .header("CSeq", "1 OPTIONS")
            .build()
    };
    rig.deliver(&options("o1")).await;
    let ours = loop {
        let (_, m) = tokio::time::timeout(WAIT, rig.sent.recv())
            .await
            .unwrap()
            .unwrap();
        if m.code().is_some() {
            break m;
        }
    };
    assert_eq!(ours.code(), Some(200));
    assert!(
        ours.header("user-agent")
            .is_some_and(|u| u.starts_with("OpenTurret"))
    );
    let stranger = Peer {
        proto: Proto::Udp,
        addr: "127.0.0.9:5090".parse().unwrap(),
    };
    rig.deliver_from(stranger, &options("o2")).await;
    let theirs = loop {
        let (_, m) = tokio::time::timeout(WAIT, rig.sent.recv())
            .await
            .unwrap()
            .unwrap();
        if m.code().is_some() {
            break m;
        }
    };
    assert!(theirs.header("user-agent").is_none(), "{theirs:?}");
}

#[tokio::test]
async fn a_ringing_call_nobody_answers_ends_by_itself() {
    let mut rig = Rig::tuned(vec![line(1, "1001", "manual")], |c| c.ring_timeout_secs = 1).await;
    let (invite, _) = rig.invite("1001");
    rig.deliver(&invite).await;
    rig.response(180).await;
    let m = tokio::time::timeout(Duration::from_secs(4), rig.response(480))
        .await
        .expect("the ring timeout ended it");
    assert_eq!(m.cseq.method, "INVITE");
    let ended = rig.until_ended().await;
    assert!(ended.state == CallState::Ended);
}

#[tokio::test]
async fn every_call_ends_when_the_mlc_stops() {
    let mut rig = Rig::registered(vec![line(1, "1001", "manual")]).await;
    rig.ringing("1001").await;
    call::end_all(&rig.mlc, Duration::from_secs(1)).await;
    assert!(call::ongoing(&rig.mlc).is_empty());
    let m = rig.next_sent().await;
    assert!(m.code().unwrap() >= 400, "the caller is told: {m:?}");
}

/// A call that cannot get an RTP port is refused (503) and leaves no voice
/// bridge behind.
#[tokio::test]
async fn a_call_without_an_rtp_port_is_refused_and_leaves_nothing() {
    let mut rig = Rig::registered(vec![line(1, "1001", "manual")]).await;
    // A media range of four ports, all taken.
    let mut held = Vec::new();
    let base = loop {
        let base = 20_000 + (openturret_sip::message::random_u64() % 20_000) as u16;
        held.clear();
        for p in base..base + 4 {
            if let Ok(s) = std::net::UdpSocket::bind(("127.0.0.1", p)) {
                held.push(s);
            }
        }
        if held.len() == 4 {
            break base;
        }
    };
    rig.mlc.set_media_config(crate::MediaConfig {
        port_min: base,
        port_max: base + 3,
        ..Default::default()
    });
    let (invite, _) = rig.invite("1001");
    rig.deliver(&invite).await;
    rig.response(503).await;
    assert!(call::ongoing(&rig.mlc).is_empty());
    assert_eq!(rig.mlc.voices.bridges(), 0, "no bridge left behind");
}
