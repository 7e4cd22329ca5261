//! Recorder forwarding (issue 18), with real peers: Kamailio as the PBX,
//! baresip as the far end playing a 1 kHz tone, the web turret in headless
//! Chromium answering with a 440 Hz fake microphone, and a strict
//! stand-in Session Recording Server (`common::srs`: no recorder ships in
//! Debian). What is asserted is what the recorder received: two streams
//! carrying those tones (checked by frequency), and metadata naming the
//! line, the profile and both parties, updated on hold and retrieve.

mod common;

use std::time::{Duration, Instant};

use common::cti::{Ws, cti_at, next};
use common::desk::{Desk, FAR, MIC, Mlc, desk, desk_with_ca, phone};
use common::sip::{free_port, hears, sine_wav};
use common::srs::{Answer, Srs, last, seconds};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(15);

/// Records the desk's line on `recorders` (their URIs).
async fn record(d: &Desk, recorders: &[String]) {
    for (i, uri) in recorders.iter().enumerate() {
        let (st, r) = d
            .api
            .post(
                "/api/v1/recorders",
                json!({"name": format!("Recorder {}", i + 1), "uri": uri}),
            )
            .await;
        assert_eq!(st.as_u16(), 201, "{r}");
        let want = if uri.starts_with("sips:") {
            "tls"
        } else if uri.ends_with(";transport=tcp") {
            "tcp"
        } else {
            "udp"
        };
        assert_eq!(r["transport"], want);
    }
    let (st, s) = d
        .api
        .patch(
            "/api/v1/settings",
            json!({"recorder_forwarding_enabled": true}),
        )
        .await;
    assert!(st.is_success(), "{s}");
    let (st, l) = d
        .api
        .patch(
            &format!("/api/v1/lines/{}", d.line),
            json!({"recorded": true}),
        )
        .await;
    assert!(st.is_success() && l["recorded"] == true, "{l}");
}

/// An incoming call from baresip (2000, 1 kHz), answered on handset 1.
async fn answered_call(d: &Desk) -> common::sip::Baresip {
    let mut far = phone(d, "2000", FAR, "PCMU", false);
    far.command("dial", &format!("sip:1001@127.0.0.1:{}", d.pbx.port));
    d.b.wait_text("li.call[data-state=ringing]", "2000").await;
    d.b.click("li.call [data-op=answer]").await;
    far.wait_event("CALL_ESTABLISHED", 0, Duration::from_secs(10));
    d.b.wait_text("li.call[data-state=connected]", "connected")
        .await;
    far
}

/// Waits until both streams of the one recording session carry a second
/// more of sound, then checks the tone of each: label 1 the far end's,
/// label 2 the trader's.
fn both_tones_recorded(srs: &Srs) {
    let from = srs.only(|r| (seconds(r, "1"), seconds(r, "2")));
    srs.wait(WAIT, "a second more of both streams", |s| {
        s.sessions
            .values()
            .next()
            .is_some_and(|r| seconds(r, "1") > from.0 + 1.2 && seconds(r, "2") > from.1 + 1.2)
    });
    srs.only(|r| {
        let (far, trader) = (last(r, "1", 1.0), last(r, "2", 1.0));
        assert!(
            hears(&far, 8000, FAR),
            "stream 1 carries the far end's 1 kHz"
        );
        assert!(!hears(&far, 8000, MIC), "stream 1 holds no trader");
        assert!(
            hears(&trader, 8000, MIC),
            "stream 2 carries the trader's 440 Hz"
        );
        assert!(!hears(&trader, 8000, FAR), "stream 2 holds no far end");
    });
}

/// The whole life of a recorded call, with two recorders of which one
/// does not listen: the call connects and goes on, the other records both
/// directions with metadata naming everyone, updated on hold and retrieve,
/// and ended by a BYE. Switched off, recording sends nothing at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_call_reaches_the_recorder_as_two_streams_with_its_metadata() {
    let d = desk(Mlc::InProcess).await;
    let srs = Srs::start();
    // The second recorder: a port nothing listens at.
    let deaf = format!("sip:srs@127.0.0.1:{}", free_port());
    record(&d, &[srs.uri(), deaf]).await;
    let (st, e) = d
        .api
        .post(
            "/api/v1/recorders",
            json!({"name": "Third", "uri": "sip:srs@127.0.0.1:5999"}),
        )
        .await;
    assert_eq!(
        (st.as_u16(), e["field"].as_str()),
        (422, Some("recorders")),
        "at most two recorders: {e}"
    );

    // The privacy report says what is recorded, where, since when.
    let (_, report) = d.api.get("/api/v1/privacy-report").await;
    let rec = &report["recording"];
    assert_eq!(rec["enabled"], true, "{rec}");
    assert!(rec["since"].is_string(), "{rec}");
    assert_eq!(rec["lines"][0]["id"], d.line, "{rec}");
    assert_eq!(rec["recorders"].as_array().unwrap().len(), 2, "{rec}");
    assert_eq!(rec["recorders"][0]["uri"], srs.uri().as_str(), "{rec}");

    let mut far = answered_call(&d).await;
    srs.wait(WAIT, "a recording session", |s| s.sessions.len() == 1);
    srs.only(|r| {
        assert_eq!(r.labels, ["1", "2"]);
        assert_eq!(r.directions, ["sendonly", "sendonly"]);
        let m = &r.metadata[0];
        for want in [
            "FX Desk",
            "Ann Trader",
            "sip:1001@127.0.0.1",
            "sip:2000@",
            ">connected<",
        ] {
            assert!(m.contains(want), "the metadata names {want}:\n{m}");
        }
    });
    both_tones_recorded(&srs);

    // Hold and retrieve: a re-INVITE each, with updated metadata.
    d.b.click("li.call [data-op=hold]").await;
    d.b.wait_text("li.call[data-state=held]", "on hold").await;
    srs.wait(WAIT, "the hold's metadata", |s| {
        s.sessions
            .values()
            .next()
            .is_some_and(|r| r.metadata.len() == 2)
    });
    srs.only(|r| {
        assert!(r.metadata[1].contains(">held<"), "{}", r.metadata[1]);
        assert_eq!(r.directions, ["inactive", "inactive"]);
    });
    d.b.click("li.call [data-op=retrieve]").await;
    d.b.wait_text("li.call[data-state=connected]", "connected")
        .await;
    srs.wait(WAIT, "the retrieve's metadata", |s| {
        s.sessions
            .values()
            .next()
            .is_some_and(|r| r.metadata.len() == 3)
    });
    srs.only(|r| {
        assert!(r.metadata[2].contains(">connected<"), "{}", r.metadata[2]);
        assert_eq!(r.directions, ["sendonly", "sendonly"]);
    });

    // The call ends: the recording session ends with a BYE.
    let seen = far.event_count();
    d.b.click("li.call [data-op=hangup]").await;
    far.wait_event("CALL_CLOSED", seen, Duration::from_secs(10));
    srs.wait(WAIT, "the BYE", |s| s.sessions.values().all(|r| r.ended));
    srs.only(|r| {
        let last = r.metadata.last().unwrap();
        assert!(
            last.contains(">ended<")
                && last.contains("<stop-time>")
                && last.contains("<disassociate-time>"),
            "the last metadata has the stop times: {last}"
        );
    });
    assert!(
        srs.state.lock().unwrap().refusals.is_empty(),
        "the stand-in refused: {:?}",
        srs.state.lock().unwrap().refusals
    );

    // Recording switched off: a new call sends no INVITE to any recorder.
    let invites = srs.invites();
    let (st, _) = d
        .api
        .patch(
            "/api/v1/settings",
            json!({"recorder_forwarding_enabled": false}),
        )
        .await;
    assert!(st.is_success());
    let seen = far.event_count();
    far.command("dial", &format!("sip:1001@127.0.0.1:{}", d.pbx.port));
    d.b.wait_text("li.call[data-state=ringing]", "2000").await;
    d.b.click("li.call [data-op=answer]").await;
    far.wait_event("CALL_ESTABLISHED", seen, Duration::from_secs(10));
    // Bounded: a recording starts within milliseconds of the answer.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        assert_eq!(srs.invites(), invites, "an INVITE reached the recorder");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    d.b.click("li.call [data-op=hangup]").await;
}

/// A call on a line served by a separate `turret mlc`: the MLC asks the
/// System Manager over the component link and records it the same way.
/// With pseudonymisation on, the metadata shows the far end's number
/// pseudonymised and no name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_on_a_separate_mlc_is_recorded_the_same_way_and_pseudonymised() {
    let d = desk(Mlc::Separate).await;
    let srs = Srs::start();
    record(&d, &[srs.uri()]).await;
    let (st, _) = d
        .api
        .patch("/api/v1/settings", json!({"pseudonymisation": "truncate"}))
        .await;
    assert!(st.is_success());
    let _far = answered_call(&d).await;
    srs.wait(WAIT, "a recording session", |s| s.sessions.len() == 1);
    srs.only(|r| {
        let m = &r.metadata[0];
        assert!(m.contains("aor=\"sip:2***@") && !m.contains("2000"), "{m}");
        assert!(m.contains("FX Desk (Ann Trader)"), "{m}");
    });
    both_tones_recorded(&srs);

    // A blind transfer: the recorder is told the call went elsewhere (a
    // last metadata update with its stop time), then BYE.
    let other = phone(&d, "3000", 1500.0, "PCMU", true);
    d.b.eval("window.prompt = () => '3000'; return true;").await;
    d.b.click("li.call [data-op=transfer]").await;
    other.wait_event("CALL_ESTABLISHED", 0, Duration::from_secs(10));
    srs.wait(WAIT, "the transfer's metadata and the BYE", |s| {
        s.sessions.values().next().is_some_and(|r| {
            r.ended
                && r.metadata
                    .last()
                    .is_some_and(|m| m.contains(">transferred<") && m.contains("<stop-time>"))
        })
    });
}

/// Waits for the next CTI `recording` event in `state`.
async fn recording_event(ws: &mut Ws, state: &str) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no CTI recording event {state}");
        if let Ok(Some(e)) = next(ws, left).await
            && e["kind"] == "recording"
            && e["event"]["state"] == state
        {
            return e["event"].clone();
        }
    }
}

/// A recorder that dies in the middle of a call: the call goes on; the
/// failure reaches the API, the CTI stream (a `recording` event) and the
/// audit log, and the turret shows the call as not being recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorder_that_dies_mid_call_is_reported_and_the_call_goes_on() {
    let d = desk(Mlc::InProcess).await;
    let srs = Srs::start();
    record(&d, &[srs.uri()]).await;
    let (st, _) = d
        .api
        .patch("/api/v1/settings", json!({"cti_enabled": true}))
        .await;
    assert!(st.is_success());
    let (_, key) = d
        .api
        .post(
            "/api/v1/api-keys",
            json!({"name": "network management", "events": ["recording"]}),
        )
        .await;
    let mut ws = cti_at(&d.url, &d.cert, key["token"].as_str().unwrap(), None)
        .await
        .unwrap();
    let far = answered_call(&d).await;
    srs.wait(WAIT, "a recording session", |s| s.sessions.len() == 1);
    d.b.wait_text("li.call .recorded", "recorded").await;
    let began = recording_event(&mut ws, "recording").await;
    assert_eq!(began["line_id"], d.line);

    let seen = far.event_count();
    srs.kill();
    let failed = recording_event(&mut ws, "failed").await;
    let reason = failed["reason"].as_str().unwrap_or_default().to_string();
    assert!(reason.contains("stopped answering"), "{failed}");
    d.b.wait_text("li.call .unrecorded", "not being recorded")
        .await;
    let (_, list) = d.api.get("/api/v1/recorders").await;
    let status = &list[0]["status"];
    assert_eq!(status["state"], "failing", "{list}");
    assert!(status["failures"].as_u64().unwrap() >= 1, "{list}");
    assert_eq!(status["last_failure"], reason.as_str());
    // The system's own record: the call went to the recorder, then
    // failed there.
    let (_, log) = d.api.get("/api/v1/recordings").await;
    let outcomes: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["outcome"].as_str())
        .collect();
    assert_eq!(outcomes.last(), Some(&"recording"), "{log}");
    assert!(outcomes.contains(&"failed"), "{log}");
    assert_eq!(log[0]["line_id"], d.line, "{log}");
    assert!(log[0]["profile_id"].is_i64(), "{log}");
    let (_, audit) = d.api.get("/api/v1/audit?event_type=recorder.failed").await;
    let entry = &audit["items"][0];
    assert_eq!(entry["object_type"], "recorder", "{audit}");
    assert_eq!(entry["object_id"], list[0]["id"].to_string(), "{audit}");
    assert_eq!(entry["level"], "warning", "{audit}");

    // The call itself went on throughout.
    assert!(
        far.event_types_since(seen)
            .iter()
            .all(|e| e != "CALL_CLOSED"),
        "the call ended with its recorder"
    );
    d.b.wait_text("li.call[data-state=connected]", "connected")
        .await;
    d.b.click("li.call [data-op=hangup]").await;
    far.wait_event("CALL_CLOSED", seen, Duration::from_secs(10));
}

/// Recorders that answer badly (one stream where two were offered; a
/// body that is no SDP at all): each recording session gets a clean end
/// (a BYE for the dialog the 200 made), an audited failure, and the call
/// is untouched; the turret shows it unrecorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorders_that_answer_badly_are_ended_cleanly_and_change_nothing() {
    let d = desk(Mlc::InProcess).await;
    let one = Srs::answering(Answer::OneStream);
    let garbage = Srs::answering(Answer::Garbage);
    record(&d, &[one.uri(), garbage.uri()]).await;
    let far = answered_call(&d).await;
    for srs in [&one, &garbage] {
        srs.wait(WAIT, "a BYE after its bad answer", |s| {
            !s.sessions.is_empty() && s.sessions.values().all(|r| r.ended)
        });
    }
    d.b.wait_text("li.call .unrecorded", "not being recorded")
        .await;
    let (_, list) = d.api.get("/api/v1/recorders").await;
    let reasons: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["status"]["last_failure"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert!(reasons[0].contains("1 audio streams, not 2"), "{reasons:?}");
    assert!(reasons[1].contains("SDP is not usable"), "{reasons:?}");
    let (_, audit) = d.api.get("/api/v1/audit?event_type=recorder.failed").await;
    let ids: std::collections::HashSet<String> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["object_id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(ids.len(), 2, "a failure audited for each recorder: {audit}");
    // The call: connected, heard both ways, ended by the trader.
    let seen = far.event_count();
    assert!(far.event_types_since(0).iter().all(|e| e != "CALL_CLOSED"));
    d.b.click("li.call [data-op=hangup]").await;
    far.wait_event("CALL_CLOSED", seen, Duration::from_secs(10));
}

/// A recorder reached over TLS: the signalling over TLS (its certificate
/// checked against `sip.tls_ca`), the media as SRTP keyed by SDES inside
/// it. The stand-in refuses anything else (488) and decrypts with its own
/// RFC 3711 code: both tones arrive, and no packet fails authentication.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorder_over_tls_gets_the_call_as_srtp() {
    let srs = Srs::tls();
    let d = desk_with_ca(Mlc::InProcess, srs.tls_cert.clone()).await;
    record(&d, &[srs.uri()]).await;
    let far = answered_call(&d).await;
    srs.wait(WAIT, "a recording session over TLS", |s| {
        s.sessions.len() == 1
    });
    srs.only(|r| assert!(r.srtp, "the offer was SRTP"));
    both_tones_recorded(&srs);
    srs.only(|r| {
        assert_eq!(
            r.forged.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "every SRTP packet authenticated"
        )
    });
    let seen = far.event_count();
    d.b.click("li.call [data-op=hangup]").await;
    far.wait_event("CALL_CLOSED", seen, Duration::from_secs(10));
    srs.wait(WAIT, "the BYE over TLS", |s| {
        s.sessions.values().all(|r| r.ended)
    });
    assert!(srs.state.lock().unwrap().refusals.is_empty());
}

/// The recording notice: a WAV an administrator sets (8 kHz mono, checked:
/// anything else is refused naming what it is) is played to the far end
/// as a recorded call connects, then the trader is heard; the recorder
/// gets it too, on the trader's stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recording_notice_is_played_to_the_far_end_as_a_recorded_call_connects() {
    use base64::Engine;
    const NOTICE: f64 = 2000.0;
    let d = desk(Mlc::InProcess).await;
    let srs = Srs::start();
    record(&d, &[srs.uri()]).await;
    let dir = tempfile::tempdir().unwrap();
    let b64 = |rate: u32| {
        let f = dir.path().join(format!("notice-{rate}.wav"));
        sine_wav(&f, NOTICE, rate, 2);
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(f).unwrap())
    };
    let (st, e) = d
        .api
        .put("/api/v1/recording-notice", json!({"wav": b64(16_000)}))
        .await;
    assert_eq!(st.as_u16(), 422, "{e}");
    assert_eq!(e["field"], "wav");
    assert!(e["message"].as_str().unwrap().contains("16000 Hz"), "{e}");
    let (st, n) = d
        .api
        .put("/api/v1/recording-notice", json!({"wav": b64(8000)}))
        .await;
    assert!(st.is_success(), "{n}");
    assert_eq!(
        (n["present"].clone(), n["seconds"].clone()),
        (json!(true), json!(2.0))
    );

    let far = answered_call(&d).await;
    // What the far end recorded: the notice first, then the trader.
    let deadline = Instant::now() + WAIT;
    let (heard, rate) = loop {
        let (s, rate) = far.heard();
        if s.len() > 4 * rate as usize {
            break (s, rate);
        }
        assert!(Instant::now() < deadline, "baresip recorded too little");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let at = |from: f64, to: f64| {
        heard[(from * rate as f64) as usize..(to * rate as f64) as usize].to_vec()
    };
    assert!(
        hears(&at(0.3, 1.5), rate, NOTICE),
        "the far end heard the notice first"
    );
    assert!(
        !hears(&at(0.3, 1.5), rate, MIC),
        "and not the trader over it"
    );
    assert!(hears(&at(3.0, 4.0), rate, MIC), "then the trader");
    srs.wait(WAIT, "a recording session", |s| s.sessions.len() == 1);
    both_tones_recorded(&srs);
    srs.only(|r| {
        let trader = r.audio["2"].lock().unwrap().1[..8000].to_vec();
        assert!(
            hears(&trader, 8000, NOTICE),
            "the recorder has the notice on the trader's stream"
        );
    });
    let (_, rec) = d.api.get("/api/v1/recording-notice").await;
    assert_eq!(rec["present"], true);
    let (st, _) = d.api.delete("/api/v1/recording-notice").await;
    assert_eq!(st.as_u16(), 204);
    let events = d.api.audit_events("object_type=recording_notice").await;
    assert_eq!(events, ["recording_notice.removed", "recording_notice.set"]);
}

/// A recorder over TCP: the same recording session on a stream transport.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorder_over_tcp_records_the_call() {
    let d = desk(Mlc::InProcess).await;
    let srs = Srs::tcp();
    record(&d, &[srs.uri()]).await;
    let far = answered_call(&d).await;
    srs.wait(WAIT, "a recording session over TCP", |s| {
        s.sessions.len() == 1
    });
    both_tones_recorded(&srs);
    let seen = far.event_count();
    d.b.click("li.call [data-op=hangup]").await;
    far.wait_event("CALL_CLOSED", seen, Duration::from_secs(10));
    srs.wait(WAIT, "the BYE over TCP", |s| {
        s.sessions.values().all(|r| r.ended)
    });
}
