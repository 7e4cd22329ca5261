//! `turret mlc`: Multi-Line Controllers in their own processes, connected
//! to a real `turret serve` over mutual TLS, sharing its lines (issue 6),
//! against Kamailio and baresip.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::Api;
use common::mlcproc::start_mlc;
use common::sip::{Baresip, Kamailio, PBX_PASSWORD};
use openturret_server::client::conn::Connection;
use serde_json::{Value, json};

/// The lines as the admin API shows them, by id.
async fn lines(api: &Api) -> Vec<Value> {
    let (_, v) = api.get("/api/v1/lines").await;
    v.as_array().cloned().unwrap_or_default()
}

/// Waits until every line is registered and `pred` holds of them.
async fn wait_lines(api: &Api, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ls = lines(api).await;
        if ls.len() == 6 && ls.iter().all(|l| l["registration_state"] == "registered") && pred(&ls)
        {
            return ls;
        }
        assert!(Instant::now() < deadline, "{what}: {ls:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ringing_on(line: i64) -> impl Fn(&Value) -> bool {
    move |p: &Value| {
        p["push"] == "call" && p["call"]["state"] == "ringing" && p["call"]["line_id"] == line
    }
}

/// The phone calls `user` (through the PBX at `pbx_port`); the turret
/// answers the ring on `line`. Returns the call's id once the phone has it
/// established, and the phone's event mark after that.
async fn answered_call(
    (turret, phone, pbx_port): (&mut Connection, &mut Baresip, u16),
    (line, user): (i64, &str),
    what: &str,
    seen: usize,
) -> (u64, usize) {
    phone.command("dial", &format!("sip:{user}@127.0.0.1:{pbx_port}"));
    let ring = common::wait_push(turret, what, ringing_on(line)).await;
    let call = ring["call"]["id"].as_u64().unwrap();
    turret
        .request(json!({"op": "answer", "call_id": call}))
        .await
        .unwrap();
    let (_, seen) = phone.wait_event("CALL_ESTABLISHED", seen, Duration::from_secs(10));
    (call, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_mlcs_share_the_lines_carry_calls_and_take_over_when_one_dies() {
    let pbx = Kamailio::start("MD5", false);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("sm");
    let (server, api) = common::fresh_with_env(
        &data,
        &[
            ("TURRET_SIP__ENABLED", "false"),
            ("TURRET_COMPONENTS__LISTEN", "127.0.0.1:0"),
            ("TURRET_COMPONENTS__LOST_CALL_GRACE_SECS", "2"),
        ],
    )
    .await;
    let manager = common::mlcproc::manager_url(&server);

    // Six lines, one profile showing them all, its turret logged in.
    let mut ids = Vec::new();
    for k in 1..=6 {
        let user = format!("100{k}");
        let (st, v) = api
            .post(
                "/api/v1/lines",
                json!({"name": format!("Line {user}"), "uri": format!("sip:{user}@127.0.0.1:{}", pbx.port),
                       "username": user, "password": PBX_PASSWORD}),
            )
            .await;
        assert!(st.is_success(), "{v}");
        ids.push(v["id"].as_i64().unwrap());
    }
    let (_, p) = api
        .post(
            "/api/v1/profiles",
            json!({"name": "Desk", "password": "desk-pw-12-longer", "collect_call_memory": true}),
        )
        .await;
    let pid = p["id"].as_i64().unwrap();
    for (i, l) in ids.iter().enumerate() {
        api.put(
            &format!("/api/v1/profiles/{pid}/lines/{l}"),
            json!({"position": i + 1}),
        )
        .await;
    }
    let cert = std::fs::read(data.join("tls/cert.pem")).unwrap();
    let mut turret = Connection::connect(&server.url, &cert).await.unwrap();
    turret
        .request(json!({"op": "login", "profile_id": pid, "password": "desk-pw-12-longer"}))
        .await
        .unwrap();

    // Enrol two MLCs, and a third that is revoked before it connects.
    let creds = dir.path().join("creds");
    for name in ["mlc-a", "mlc-b", "mlc-x"] {
        let (code, out, err) = common::turret(
            &data,
            &["mlc", "enrol", name, "--out", creds.to_str().unwrap()],
            "",
        );
        assert_eq!(code, 0, "{out}{err}");
    }
    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(creds.join("mlc-a.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(key_mode & 0o777, 0o600, "the private key is private");
    let (code, _, _) = common::turret(&data, &["mlc", "revoke", "mlc-x"], "");
    assert_eq!(code, 0);
    let (code, _, err) = common::turret(&data, &["mlc", "enrol", "local", "--out", "/tmp"], "");
    assert_ne!(code, 0);
    assert!(err.contains("local"), "{err}");

    // No MLC yet: the lines are served by none.
    let none = lines(&api).await;
    assert_eq!(none.len(), 6);
    assert!(none.iter().all(|l| l["served_by"].is_null()));

    // One MLC: it serves every line.
    let _x = start_mlc(&manager, &creds, "mlc-x", dir.path());
    let mut a = start_mlc(&manager, &creds, "mlc-a", dir.path());
    wait_lines(&api, "mlc-a serves all", |ls| {
        ls.iter().all(|l| l["served_by"] == "mlc-a")
    })
    .await;

    // A second: the lines are shared, each served by one.
    let mut b = start_mlc(&manager, &creds, "mlc-b", dir.path());
    let shared = wait_lines(&api, "shared by a and b", |ls| {
        ls.iter().any(|l| l["served_by"] == "mlc-b") && ls.iter().any(|l| l["served_by"] == "mlc-a")
    })
    .await;
    let (_, status) = api.get("/api/v1/mlc").await;
    let names: Vec<&str> = status["controllers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["mlc-a", "mlc-b"],
        "the revoked one never joined: {status}"
    );
    assert_eq!(status["lines"]["registered"], 6, "{status}");

    // A call to a line of mlc-b rings at the turret (connected to the
    // System Manager), is answered there, and hung up.
    let on = |who: &str| -> (i64, String) {
        let l = shared.iter().find(|l| l["served_by"] == who).unwrap();
        (
            l["id"].as_i64().unwrap(),
            l["username"].as_str().unwrap().to_string(),
        )
    };
    let (b_line, b_user) = on("mlc-b");
    let mut phone = Baresip::start("2000", pbx.port, false);
    phone.command("dial", &format!("sip:{b_user}@127.0.0.1:{}", pbx.port));
    let ring = common::wait_push(&mut turret, "ringing via mlc-b", ringing_on(b_line)).await;
    let call = ring["call"]["id"].as_u64().unwrap();
    assert!(
        call > 1 << 40,
        "call ids of a turret mlc are its own range: {call}"
    );
    let (_, ongoing) = api.get("/api/v1/mlc").await;
    assert_eq!(ongoing["calls"], 1);
    turret
        .request(json!({"op": "answer", "call_id": call}))
        .await
        .unwrap();
    let (_, seen) = phone.wait_event("CALL_ESTABLISHED", 0, Duration::from_secs(10));
    common::wait_push(&mut turret, "connected", |p| {
        p["push"] == "call" && p["call"]["id"] == call && p["call"]["state"] == "connected"
    })
    .await;
    turret
        .request(json!({"op": "hangup", "call_id": call}))
        .await
        .unwrap();
    let (_, seen) = phone.wait_event("CALL_CLOSED", seen, Duration::from_secs(10));
    common::wait_push(&mut turret, "ended", |p| {
        p["push"] == "call" && p["call"]["id"] == call && p["call"]["state"] == "ended"
    })
    .await;
    // Recorded by the System Manager like any call.
    turret
        .request(json!({"op": "unlock_call_memory", "password": "desk-pw-12-longer"}))
        .await
        .unwrap();
    // (Written by the report queue after the end is pushed: read until.)
    let deadline = Instant::now() + Duration::from_secs(10);
    let (cm, entries) = loop {
        let cm = turret.request(json!({"op": "call_memory"})).await.unwrap();
        let entries = cm["entries"].as_array().cloned().unwrap_or_default();
        if !entries.is_empty() || Instant::now() > deadline {
            break (cm, entries);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(entries.len(), 1, "{cm}");
    assert_eq!(entries[0]["answered_by"], "local");

    // mlc-a dies (SIGKILL) in the middle of a call: the turret is told at
    // once, and the call is recorded once mlc-a has not come back within
    // the grace (two seconds here).
    let (a_line, a_user) = on("mlc-a");
    let (lost, seen) = answered_call(
        (&mut turret, &mut phone, pbx.port),
        (a_line, &a_user),
        "ringing via mlc-a",
        seen,
    )
    .await;
    let _ = a.0.kill();
    let _ = a.0.wait();
    let ended = common::wait_push(&mut turret, "ended with its MLC", |p| {
        p["push"] == "call" && p["call"]["id"] == lost && p["call"]["state"] == "ended"
    })
    .await;
    assert_eq!(ended["call"]["reason"], "controller_lost");
    phone.command("hangup", "");
    let (_, seen) = phone.wait_event("CALL_CLOSED", seen, Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let cm = turret.request(json!({"op": "call_memory"})).await.unwrap();
        let entries = cm["entries"].as_array().unwrap();
        if entries.len() == 2 {
            assert_eq!(entries[0]["answered_by"], "local", "{cm}");
            break;
        }
        assert_eq!(entries.len(), 1, "recorded once: {cm}");
        assert!(
            Instant::now() < deadline,
            "the call of the vanished MLC was not recorded: {cm}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Its lines move to mlc-b and register there.
    wait_lines(&api, "mlc-b took over", |ls| {
        ls.iter().all(|l| l["served_by"] == "mlc-b")
    })
    .await;
    phone.command("dial", &format!("sip:{a_user}@127.0.0.1:{}", pbx.port));
    let ring = common::wait_push(
        &mut turret,
        "ringing on a line that moved",
        ringing_on(a_line),
    )
    .await;
    turret
        .request(json!({"op": "reject", "call_id": ring["call"]["id"]}))
        .await
        .unwrap();
    let (_, seen) = phone.wait_event("CALL_CLOSED", seen, Duration::from_secs(10));

    // mlc-b is stopped (SIGTERM) during a call: it ends the call and the
    // System Manager still records it.
    // (Counted once the rejected call's record has landed: records are
    // written by the report queue, after the call ends.)
    let deadline = Instant::now() + Duration::from_secs(5);
    let before = loop {
        let cm = turret.request(json!({"op": "call_memory"})).await.unwrap();
        let entries = cm["entries"].as_array().unwrap();
        if entries.iter().any(|e| e["reason"] == "rejected") {
            break entries.len();
        }
        assert!(
            Instant::now() < deadline,
            "the rejected call was not recorded: {cm}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (call, seen) = answered_call(
        (&mut turret, &mut phone, pbx.port),
        (a_line, &a_user),
        "ringing again",
        seen,
    )
    .await;
    let term = Command::new("kill")
        .args(["-TERM", &b.0.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    phone.wait_event("CALL_CLOSED", seen, Duration::from_secs(10));
    let ended = common::wait_push(&mut turret, "ended by the stopping MLC", |p| {
        p["push"] == "call" && p["call"]["id"] == call && p["call"]["state"] == "ended"
    })
    .await;
    assert_eq!(ended["call"]["reason"], "shutdown");
    let status = tokio::task::spawn_blocking(move || b.0.wait().unwrap())
        .await
        .unwrap();
    assert!(
        status.success(),
        "turret mlc exits cleanly on SIGTERM: {status}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let cm = turret.request(json!({"op": "call_memory"})).await.unwrap();
        if cm["entries"].as_array().unwrap().len() == before + 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the call was not recorded: {cm}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Started again, it serves the lines again.
    let _b = start_mlc(&manager, &creds, "mlc-b", dir.path());
    wait_lines(&api, "mlc-b is back", |ls| {
        ls.iter().all(|l| l["served_by"] == "mlc-b")
    })
    .await;

    // Each says where it listens for SIP.
    let (_, status) = api.get("/api/v1/mlc").await;
    let sip = status["controllers"][0]["sip"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        sip.starts_with("127.0.0.1:") && !sip.ends_with(":0"),
        "{status}"
    );
    // A stranger (127.0.0.2) rings one of its lines: 403, and the System
    // Manager's status counts it (issue 14, point 1).
    let to: std::net::SocketAddr = sip.parse().unwrap();
    let line = lines(&api).await[0]["id"].as_i64().unwrap();
    let answer = tokio::task::spawn_blocking(move || {
        let s = std::net::UdpSocket::bind("127.0.0.2:0").unwrap();
        let from = s.local_addr().unwrap();
        let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n";
        let invite = format!(
            "INVITE sip:ot-line-{line}@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKstranger1\r\n\
Max-Forwards: 70\r\nFrom: <sip:666@{from}>;tag=s1\r\nTo: <sip:ot-line-{line}@{to}>\r\nCall-ID: stranger1\r\n\
CSeq: 1 INVITE\r\nContact: <sip:666@{from}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        s.send_to(invite.as_bytes(), to).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut buf = [0u8; 4096];
        let n = s.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    })
    .await
    .unwrap();
    assert!(answer.starts_with("SIP/2.0 403"), "{answer}");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, status) = api.get("/api/v1/mlc").await;
        if status["controllers"][0]["refused_requests"].as_u64() >= Some(1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the refusal is not counted: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Revoking the last one cuts it off: no line is served any more.
    let (code, _, _) = common::turret(&data, &["mlc", "revoke", "mlc-b"], "");
    assert_eq!(code, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, status) = api.get("/api/v1/mlc").await;
        if status["controllers"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "still connected: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(lines(&api).await.iter().all(|l| l["served_by"].is_null()));

    // The links are audited.
    let (_, audit) = api.get("/api/v1/audit?event_type=mlc.connected").await;
    assert!(audit["items"].as_array().unwrap().len() >= 2, "{audit}");
    let (_, audit) = api.get("/api/v1/audit?event_type=mlc.enrolled").await;
    assert_eq!(audit["items"].as_array().unwrap().len(), 3, "{audit}");
    drop(pbx);
}

/// The contacts Kamailio holds for `aor`.
fn contacts(pbx: &Kamailio, aor: &str) -> Vec<String> {
    pbx.location()
        .into_iter()
        .find(|(a, _)| a == aor)
        .map(|(_, c)| c)
        .unwrap_or_default()
}

/// A `turret mlc` whose link to the System Manager goes half-open (a cut
/// network closes nothing) notices it by the silence of the link's beats
/// and stops serving its lines: its contact leaves the registrar well
/// before another node could take the line (a lease lapses after 15 s).
/// The System Manager notices too (the line is served by none), and when
/// the network is back the MLC connects again and serves the line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turret_mlc_behind_a_silent_link_stops_its_lines_and_comes_back() {
    let pbx = Kamailio::start("MD5", false);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("sm");
    let (server, api) = common::fresh_with_env(
        &data,
        &[
            ("TURRET_SIP__ENABLED", "false"),
            ("TURRET_COMPONENTS__LISTEN", "127.0.0.1:0"),
        ],
    )
    .await;
    let (st, v) = api
        .post(
            "/api/v1/lines",
            json!({"name": "Line 1001", "uri": format!("sip:1001@127.0.0.1:{}", pbx.port),
                   "username": "1001", "password": PBX_PASSWORD}),
        )
        .await;
    assert!(st.is_success(), "{v}");
    // The MLC reaches the System Manager through a relay that can go silent.
    let manager = common::mlcproc::manager_url(&server);
    let relay =
        common::relay::Relay::start(manager.trim_start_matches("https://").to_string()).await;
    let creds = dir.path().join("creds");
    common::mlcproc::enrol(&data, &creds, "mlc-a");
    let _mlc = start_mlc(
        &format!("https://127.0.0.1:{}", relay.addr.port()),
        &creds,
        "mlc-a",
        dir.path(),
    );
    let registered = |pbx: &Kamailio| contacts(pbx, "1001").len() == 1;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !registered(&pbx) {
        assert!(
            Instant::now() < deadline,
            "the MLC never registered the line"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The network goes down (the open link falls silent, nothing closes,
    // and no new connection gets through).
    relay.go_down();
    let cut = Instant::now();
    while !contacts(&pbx, "1001").is_empty() {
        assert!(
            cut.elapsed() < Duration::from_secs(15),
            "the MLC still registers the line 15 s after its link went silent"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let unbound = cut.elapsed();
    eprintln!("the line was unbound {unbound:?} after the link went silent");
    // The System Manager hears the silence too: the line is served by none.
    while !lines(&api).await[0]["served_by"].is_null() {
        assert!(
            cut.elapsed() < Duration::from_secs(15),
            "the System Manager still counts on the silent MLC"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The network is back (new connections pass): served again.
    relay.come_back();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !registered(&pbx) {
        assert!(Instant::now() < deadline, "the MLC did not come back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let back = lines(&api).await;
    assert_eq!(back[0]["served_by"], "mlc-a", "{back:#?}");
}
