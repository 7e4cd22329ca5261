//! Inside a dialog, and calls we place: BYE either way, outgoing calls, hold.

use super::*;

/// The call ends for the turrets (and its media and records) when the BYE
/// leaves, not when the far end answers it: a far end that never answers
/// would otherwise leave the call showing for the 32 s of the BYE's
/// transaction.
#[tokio::test]
async fn we_hang_up_with_a_bye_and_the_call_ends_at_once() {
    let mut rig = Rig::registered(vec![line(1, "1001", "manual")]).await;
    let Answered { view, call_id, .. } = rig.answered("1001", 40000).await;
    // Only who holds it may hang it up.
    let e = call::hangup(&rig.mlc, view.id, ProfileId(4))
        .await
        .unwrap_err();
    assert_eq!(e.code, "forbidden");
    call::hangup(&rig.mlc, view.id, ProfileId(3)).await.unwrap();
    let bye = rig.request("BYE").await;
    assert_eq!(bye.call_id, call_id);
    let (ended, last) = rig.call_report().await;
    assert!(
        last && ended.state == CallState::Ended && ended.end_reason == "local_hangup",
        "{ended:?}"
    );
    assert_eq!(rig.mlc.voices.sessions(), 0);
    rig.answer(&bye, 200, "OK", &[]).await;
    rig.sends_nothing().await;
}

#[tokio::test]
async fn a_bye_for_no_dialog_gets_481() {
    let mut rig = Rig::registered(vec![line(1, "1001", "manual")]).await;
    let bye = rig.in_dialog("BYE", "1001", "call-99@pbx", "nobody", 2);
    rig.deliver(&bye).await;
    rig.response(481).await;
}

#[tokio::test]
async fn an_outgoing_call_rings_connects_with_an_ack_and_ends_with_the_far_ends_bye() {
    let mut rig = Rig::registered(vec![line(1, "1001", "manual")]).await;
    let id = call::dial(&rig.mlc, ProfileId(5), LineId(1), "+442079460001")
        .await
        .unwrap();
    let invite = rig.request("INVITE").await;
    assert!(
        invite
            .request_uri()
            .unwrap()
            .to_string()
            .contains("+442079460001")
            || invite
                .request_uri()
                .unwrap()
                .to_string()
                .contains("442079460001"),
        "{:?}",
        invite.request_uri()
    );
    assert!(
        openturret_sip::sdp::parse(&invite.body).is_ok(),
        "an SDP offer"
    );
    rig.answer(&invite, 180, "Ringing", &[]).await;
    let v = rig.until_call(CallState::Alerting).await;
    assert_eq!((v.id, v.owner), (id, Some(ProfileId(5))));
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40002 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let ok = message::response_to(&invite.headers, 200, "OK", Some("far"))
        .header("Contact", format!("<sip:far@{PBX}>"))
        .body("application/sdp", sdp.as_bytes().to_vec())
        .build();
    rig.deliver(&ok).await;
    let ack = rig.request("ACK").await;
    assert_eq!(ack.cseq.number, invite.cseq.number);
    rig.until_call(CallState::Connected).await;
    // The 200 again (our ACK was lost): the ACK again, nothing else.
    rig.deliver(&ok).await;
    rig.request("ACK").await;
    // The far end hangs up.
    let bye = message::Builder::request("BYE", &format!("sip:ot-line-1@{US}"))
        .header("Via", format!("SIP/2.0/UDP {PBX};branch=z9hG4bKfarbye"))
        .header("Max-Forwards", "70")
        .header("From", format!("{};tag=far", invite.header("to").unwrap()))
        .header("To", invite.header("from").unwrap())
        .header("Call-ID", &invite.call_id)
        .header("CSeq", "1 BYE")
        .build();
    rig.deliver(&bye).await;
    rig.response(200).await;
    let (ended, last) = rig.call_report().await;
    assert!(last && ended.state == CallState::Ended, "{ended:?}");
}

#[tokio::test]
async fn an_outgoing_call_answers_a_proxy_challenge_and_a_busy_far_end_ends_it() {
    let mut rig = Rig::registered(vec![line(1, "1001", "manual")]).await;
    call::dial(&rig.mlc, ProfileId(5), LineId(1), "2001")
        .await
        .unwrap();
    let invite = rig.request("INVITE").await;
    rig.answer(
        &invite,
        407,
        "Proxy Authentication Required",
        &[(
            "Proxy-Authenticate",
            "Digest realm=\"pbx\", nonce=\"n407\", algorithm=MD5",
        )],
    )
    .await;
    // The 407 is acknowledged, then the INVITE goes again with credentials.
    let ack = rig.request("ACK").await;
    assert_eq!(ack.cseq.number, invite.cseq.number);
    let again = rig.request("INVITE").await;
    let auth = again.header("proxy-authorization").expect("credentials");
    assert!(auth.contains("nonce=\"n407\""), "{auth}");
    rig.answer(&again, 486, "Busy Here", &[]).await;
    rig.request("ACK").await;
    let ended = rig.until_ended().await;
    assert!(ended.state == CallState::Ended);
    assert!(
        ended.end_reason.contains("486") || ended.end_reason.contains("busy"),
        "{ended:?}"
    );
}

#[tokio::test]
async fn hold_sends_a_reinvite_that_stops_our_audio_and_retrieve_restores_it() {
    let mut rig = Rig::registered(vec![line(1, "1001", "manual")]).await;
    let Answered { view, .. } = rig.answered("1001", 40000).await;
    let body = rig.hold(view.id, true).await;
    assert!(
        body.contains("a=sendonly") || body.contains("a=inactive"),
        "{body}"
    );
    rig.until_call(CallState::Held).await;
    let body = rig.hold(view.id, false).await;
    assert!(
        !body.contains("a=sendonly") && !body.contains("a=inactive"),
        "{body}"
    );
    rig.until_call(CallState::Connected).await;
}
