//! Line registration: digest, refusal and retry, refresh.

use super::*;

#[tokio::test]
async fn a_line_registers_and_its_host_hears_of_it() {
    let mut rig = Rig::unregistered(vec![line(1, "1001", "manual")], |_| {}).await;
    let reg = rig.request("REGISTER").await;
    assert_eq!(reg.request_uri().unwrap().to_string(), format!("sip:{PBX}"));
    assert!(reg.header("contact").unwrap().contains("ot-line-1@"));
    rig.answer(&reg, 200, "OK", &[("Expires", "300")]).await;
    rig.until_line(LineId(1), |s| matches!(s, LineState::Registered))
        .await;
    assert_eq!(rig.mlc.line_state(LineId(1)), LineState::Registered);
}

#[tokio::test]
async fn a_digest_challenge_is_answered_with_the_lines_credentials() {
    let mut rig = Rig::unregistered(vec![line(1, "1001", "manual")], |_| {}).await;
    let reg = rig.request("REGISTER").await;
    assert!(reg.header("authorization").is_none());
    rig.answer(
        &reg,
        401,
        "Unauthorized",
        &[(
            "WWW-Authenticate",
            "Digest realm=\"pbx\", nonce=\"abc123\", algorithm=MD5",
        )],
    )
    .await;
    let again = rig.request("REGISTER").await;
    let auth = again.header("authorization").expect("credentials");
    assert!(
        auth.contains("username=\"1001\"")
            && auth.contains("nonce=\"abc123\"")
            && auth.contains("response="),
        "{auth}"
    );
    assert_ne!(again.cseq.number, reg.cseq.number, "a new CSeq");
    rig.answer(&again, 200, "OK", &[("Expires", "300")]).await;
    rig.until_line(LineId(1), |s| matches!(s, LineState::Registered))
        .await;
}

#[tokio::test]
async fn a_refused_registration_fails_visibly_and_is_tried_again() {
    let mut rig = Rig::unregistered(vec![line(1, "1001", "manual")], |_| {}).await;
    let reg = rig.request("REGISTER").await;
    rig.answer(&reg, 403, "Forbidden", &[]).await;
    rig.until_line(LineId(1), |s| matches!(s, LineState::Failing(_)))
        .await;
    // Back-off, then a new attempt that succeeds.
    let again = tokio::time::timeout(Duration::from_secs(3), rig.request("REGISTER"))
        .await
        .expect("tried again within the first back-off");
    rig.answer(&again, 200, "OK", &[("Expires", "300")]).await;
    rig.until_line(LineId(1), |s| matches!(s, LineState::Registered))
        .await;
}

#[tokio::test]
async fn a_registration_is_refreshed_before_the_registrar_lets_it_lapse() {
    let mut rig = Rig::unregistered(vec![line(1, "1001", "manual")], |_| {}).await;
    let reg = rig.request("REGISTER").await;
    // The registrar grants 2 s, less than asked: the MLC refreshes at half.
    let contact = format!("{};expires=2", reg.header("contact").unwrap());
    rig.answer(&reg, 200, "OK", &[("Contact", &contact)]).await;
    rig.until_line(LineId(1), |s| matches!(s, LineState::Registered))
        .await;
    let started = std::time::Instant::now();
    let again = rig.request("REGISTER").await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(700) && waited < Duration::from_secs(2),
        "refreshed after {waited:?}"
    );
    assert_eq!(again.call_id, reg.call_id, "the same registration");
    assert!(again.cseq.number > reg.cseq.number);
    rig.answer(&again, 200, "OK", &[("Contact", &contact)])
        .await;
    rig.sends_nothing().await;
    assert_eq!(rig.mlc.line_state(LineId(1)), LineState::Registered);
}

#[tokio::test]
async fn a_line_taken_over_replaces_the_binding_another_mlc_left_in_one_request() {
    let mut rig =
        Rig::unregistered(vec![line(1, "1001", "manual")], |c| c.query_bindings = true).await;
    // First the bindings are asked for: no Contact, no Expires.
    let query = rig.request("REGISTER").await;
    assert!(query.header("contact").is_none(), "{query:?}");
    assert!(query.header("expires").is_none(), "{query:?}");
    let left = "<sip:ot-line-1@192.0.2.77:5060>;expires=250";
    let other_line = "<sip:ot-line-2@192.0.2.77:5060>;expires=250";
    rig.answer(
        &query,
        200,
        "OK",
        &[("Contact", left), ("Contact", other_line)],
    )
    .await;
    // Then ours is added and the one left removed, in one request.
    let reg = rig.request("REGISTER").await;
    assert!(reg.cseq.number > query.cseq.number);
    let contacts = reg.header_values("contact");
    assert_eq!(contacts.len(), 2, "{contacts:?}");
    assert!(contacts[0].contains("ot-line-1@") && !contacts[0].contains("192.0.2.77"));
    assert!(
        contacts[1].contains("sip:ot-line-1@192.0.2.77:5060") && contacts[1].contains("expires=0"),
        "{contacts:?}"
    );
    assert!(
        !contacts.iter().any(|c| c.contains("ot-line-2")),
        "another line's binding is not ours to remove"
    );
    let ours = format!("{};expires=300", contacts[0]);
    rig.answer(&reg, 200, "OK", &[("Contact", &ours)]).await;
    rig.until_line(LineId(1), |s| matches!(s, LineState::Registered))
        .await;
    rig.sends_nothing().await;
}
