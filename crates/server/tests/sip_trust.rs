//! Telephony trust (issue 14, point 1): only a line's PBX rings a trader.
//! Kamailio is the PBX on 127.0.0.1; strangers send from 127.0.0.2, a
//! second PBX node listed for the line from 127.0.0.3.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::inproc::InProc;
use common::sip::{Kamailio, PBX_PASSWORD};
use openturret_store::CdrFilter;
use serde_json::json;

/// An INVITE for `ruri_user` at the MLC, from the caller `from_number`,
/// with a G.711 offer; `call_id` makes it a new call.
fn invite(
    mlc: SocketAddr,
    from: SocketAddr,
    ruri_user: &str,
    from_number: &str,
    call_id: &str,
) -> Vec<u8> {
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n",
        ip = from.ip()
    );
    format!(
        "INVITE sip:{ruri_user}@{mlc} SIP/2.0\r\nVia: SIP/2.0/UDP {from};rport;branch=z9hG4bK{call_id}\r\n\
Max-Forwards: 70\r\nFrom: \"Forged Bank\" <sip:{from_number}@{from}>;tag=f{call_id}\r\nTo: <sip:{ruri_user}@{mlc}>\r\n\
Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:{from_number}@{from}>\r\n\
Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
    .into_bytes()
}

/// Every answer `sock` receives within `window` (final answers to an
/// INVITE are repeated until an ACK, which these tests never send).
fn answers(sock: &UdpSocket, window: Duration) -> Vec<String> {
    let deadline = Instant::now() + window;
    let mut out = Vec::new();
    let mut buf = [0u8; 65_536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return out;
        }
        sock.set_read_timeout(Some(left)).unwrap();
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
}

fn code(answer: &str) -> u16 {
    answer
        .strip_prefix("SIP/2.0 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// The final answer to Call-ID `call_id` among `all`.
fn final_for<'a>(all: &'a [String], call_id: &str) -> Option<&'a str> {
    all.iter()
        .map(String::as_str)
        .filter(|a| a.contains(&format!("Call-ID: {call_id}\r\n")) && code(a) >= 200)
        .last()
}

async fn wait_state(s: &InProc, line: i64, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, v) = s.api.get(&format!("/api/v1/lines/{line}")).await;
        if v["registration_state"] == state {
            return;
        }
        assert!(Instant::now() < deadline, "line {line} never {state}: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_lines_pbx_rings_a_trader_and_nothing_rings_for_ever() {
    let pbx = Kamailio::start("MD5", false);
    let s = InProc::start_with(|c, _| {
        c.sip.enabled = true;
        c.sip.keepalive_secs = 1;
        c.sip.ring_timeout_secs = 2;
        c.sip.max_ringing_per_line = 2;
    })
    .await;
    let (st, v) = s
        .api
        .patch("/api/v1/settings", json!({"cdr_enabled": true}))
        .await;
    assert!(st.is_success(), "{v}");
    let (st, v) = s
        .api
        .post(
            "/api/v1/global-contacts",
            json!({"name": "Forged Bank", "number": "666"}),
        )
        .await;
    assert!(st.is_success(), "{v}");
    let line = s
        .line(
            json!({"name": "Desk", "uri": format!("sip:1001@127.0.0.1:{}", pbx.port),
                     "username": "1001", "password": PBX_PASSWORD}),
        )
        .await;
    let intercom = s
        .line(
            json!({"name": "Intercom", "uri": format!("sip:1002@127.0.0.1:{}", pbx.port),
                     "username": "1002", "password": PBX_PASSWORD, "answer_mode": "automatic"}),
        )
        .await;
    let pid = s
        .profile(
            json!({"name": "Trader", "password": "pw-123456-longer", "collect_call_memory": true}),
        )
        .await;
    for (l, pos) in [(line, 1), (intercom, 2)] {
        let (st, v) = s
            .api
            .put(
                &format!("/api/v1/profiles/{pid}/lines/{l}"),
                json!({"position": pos}),
            )
            .await;
        assert!(st.is_success(), "{v}");
    }
    let (mut turret, _) = s.login(pid, "pw-123456-longer").await;
    wait_state(&s, line, "registered").await;
    wait_state(&s, intercom, "registered").await;
    let mlc = s.app.mlc.local_addr().unwrap();

    // 1. A stranger floods both lines (and a line that does not exist)
    // with 500 INVITEs under a caller ID from the global contacts.
    let stranger = UdpSocket::bind("127.0.0.2:0").expect("127.0.0.2 is a loopback address");
    let from = stranger.local_addr().unwrap();
    let flood = tokio::task::spawn_blocking(move || {
        // Answers read while the flood goes out (a socket's buffer holds
        // only a couple of hundred).
        let reader = stranger.try_clone().unwrap();
        let read = std::thread::spawn(move || answers(&reader, Duration::from_millis(2000)));
        for i in 0..500 {
            let user = match i % 3 {
                0 => format!("ot-line-{line}"),
                1 => format!("ot-line-{intercom}"),
                _ => "ot-line-99999".to_string(),
            };
            stranger
                .send_to(&invite(mlc, from, &user, "666", &format!("flood{i}")), mlc)
                .unwrap();
            if i % 50 == 49 {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // And an OPTIONS, to see what the product tells strangers.
        let options = format!(
            "OPTIONS sip:{mlc} SIP/2.0\r\nVia: SIP/2.0/UDP {from};rport;branch=z9hG4bKopt1\r\n\
From: <sip:x@{from}>;tag=o1\r\nTo: <sip:{mlc}>\r\nCall-ID: opt1\r\nCSeq: 1 OPTIONS\r\n\
Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        stranger.send_to(options.as_bytes(), mlc).unwrap();
        read.join().unwrap()
    })
    .await
    .unwrap();
    let invites: Vec<&String> = flood
        .iter()
        .filter(|a| a.contains("CSeq: 1 INVITE"))
        .collect();
    assert!(
        invites.len() >= 490,
        "answers to the flood: {}",
        invites.len()
    );
    let not_403: Vec<&&String> = invites.iter().filter(|a| code(a) != 403).collect();
    assert!(
        not_403.is_empty(),
        "a stranger's INVITE not refused: {:?}",
        not_403.first()
    );
    let options = flood
        .iter()
        .find(|a| a.contains("Call-ID: opt1"))
        .expect("OPTIONS answered");
    for a in flood.iter() {
        assert!(
            !a.contains(env!("CARGO_PKG_VERSION")) && !a.contains("User-Agent"),
            "an answer to a stranger names the product's version: {a}"
        );
    }
    assert_eq!(code(options), 200, "{options}");
    // No call, no push, no record.
    assert_eq!(s.app.mlc.calls_in_progress(), 0);
    assert!(
        turret
            .push(Duration::from_millis(500))
            .await
            .is_none_or(|p| p["push"] != "call"),
        "the turret was told of a stranger's call"
    );
    let (_, status) = s.api.get("/api/v1/mlc").await;
    assert!(
        status["refused_requests"].as_u64().unwrap() >= 490,
        "{status}"
    );
    let cdrs = s.app.store.list_cdrs(&CdrFilter::default()).await.unwrap();
    assert!(cdrs.is_empty(), "a stranger's call left a CDR: {cdrs:?}");
    turret
        .request(json!({"op": "unlock_call_memory", "password": "pw-123456-longer"}))
        .await
        .unwrap();
    let mem = turret.request(json!({"op": "call_memory"})).await.unwrap();
    assert_eq!(mem["entries"], json!([]), "{mem}");

    // 2. The PBX's own address rings the line, up to the cap per line;
    // unanswered calls end by themselves after the ring timeout.
    let pbx_side = UdpSocket::bind("127.0.0.1:0").unwrap();
    let pfrom = pbx_side.local_addr().unwrap();
    // One at a time: each INVITE is sent once the one before is answered.
    let (pbx_side, mut early) = tokio::task::spawn_blocking(move || {
        let mut got = Vec::new();
        for i in 0..3 {
            let call_id = format!("pbx{i}");
            let bytes = invite(mlc, pfrom, &format!("ot-line-{line}"), "2000", &call_id);
            pbx_side.send_to(&bytes, mlc).unwrap();
            let deadline = Instant::now() + Duration::from_secs(5);
            while !got
                .iter()
                .any(|a: &String| a.contains(&format!("Call-ID: {call_id}\r\n")))
            {
                assert!(Instant::now() < deadline, "{call_id} unanswered");
                got.extend(answers(&pbx_side, Duration::from_millis(50)));
            }
        }
        (pbx_side, got)
    })
    .await
    .unwrap();
    let ring = common::wait_push(&mut turret, "the PBX's call rings", |p| {
        p["push"] == "call" && p["call"]["state"] == "ringing"
    })
    .await;
    assert_eq!(ring["call"]["line_id"], json!(line));
    let started = Instant::now();
    let later =
        tokio::task::spawn_blocking(move || answers(&pbx_side, Duration::from_millis(4000)))
            .await
            .unwrap();
    early.extend(later);
    let got = early;
    let f0 = final_for(&got, "pbx0").expect("the first call ends by itself");
    let f1 = final_for(&got, "pbx1").expect("the second call ends by itself");
    let f2 = final_for(&got, "pbx2").expect("the third call is refused");
    assert_eq!((code(f0), code(f1), code(f2)), (480, 480, 486), "{got:#?}");
    assert!(
        got.iter()
            .any(|a| a.contains("Call-ID: pbx0") && code(a) == 180)
    );
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(s.app.mlc.calls_in_progress(), 0);

    // 3. A second PBX node, once listed for the line, rings it too.
    let node = UdpSocket::bind("127.0.0.3:0").unwrap();
    let nfrom = node.local_addr().unwrap();
    let (st, v) = s
        .api
        .patch(
            &format!("/api/v1/lines/{line}"),
            json!({"peers": "127.0.0.3, 10.9.0.0/16"}),
        )
        .await;
    assert!(st.is_success(), "{v}");
    assert_eq!(v["peers"], json!("127.0.0.3, 10.9.0.0/16"));
    let (st, v) = s
        .api
        .patch(
            &format!("/api/v1/lines/{line}"),
            json!({"peers": "pbx-node-2"}),
        )
        .await;
    assert_eq!(st, reqwest::StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v.to_string().contains("pbx-node-2"),
        "the error names the entry: {v}"
    );
    // The MLC reloads the line with its peers and re-registers it; from
    // then on the node's INVITE rings (before, it gets 403, then 480).
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let call_id = format!("node{attempt}");
        node.send_to(
            &invite(mlc, nfrom, &format!("ot-line-{line}"), "2000", &call_id),
            mlc,
        )
        .unwrap();
        let n = node.try_clone().unwrap();
        let got = tokio::task::spawn_blocking(move || answers(&n, Duration::from_millis(300)))
            .await
            .unwrap();
        let mine: Vec<u16> = got
            .iter()
            .filter(|a| a.contains(&format!("Call-ID: {call_id}\r\n")))
            .map(|a| code(a))
            .collect();
        if mine.contains(&180) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the listed node's call never rang: {got:#?}"
        );
    }

    // 4. A line that is not registered takes no call, even from its PBX
    // (over TCP, nobody listening: it fails at once).
    let dead = s
        .line(json!({"name": "Dead", "uri": format!("sip:1003@127.0.0.1:{};transport=tcp", common::sip::free_port()),
                     "username": "1003", "password": PBX_PASSWORD}))
        .await;
    wait_state(&s, dead, "failing").await;
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sfrom = sock.local_addr().unwrap();
    sock.send_to(
        &invite(mlc, sfrom, &format!("ot-line-{dead}"), "2000", "dead1"),
        mlc,
    )
    .unwrap();
    let got = tokio::task::spawn_blocking(move || answers(&sock, Duration::from_millis(800)))
        .await
        .unwrap();
    assert_eq!(final_for(&got, "dead1").map(code), Some(480), "{got:#?}");
}
