//! Telephony (issue 6) against real peers: Kamailio as the PBX, baresip as
//! the far end, turret clients over the client protocol.

mod common;

use std::time::{Duration, Instant};

use common::inproc::InProc;
use common::sip::{Baresip, Kamailio, PBX_PASSWORD, options_to_user};
use openturret_server::client::conn::Connection;
use serde_json::{Value, json};

/// A server with the MLC on, and CDRs switched on (they are off until
/// then: SPEC rule 11).
async fn server() -> InProc {
    let s = InProc::start_with(|c, _| {
        c.sip.enabled = true;
        c.sip.keepalive_secs = 1;
        c.sip.register_expires = 120;
    })
    .await;
    let (st, v) = s
        .api
        .patch("/api/v1/settings", json!({"cdr_enabled": true}))
        .await;
    assert!(st.is_success(), "{v}");
    s
}

/// An automatic-answer line (`user` at `uri`), registered; returns its id.
async fn intercom(s: &InProc, name: &str, user: &str, uri: String) -> i64 {
    let line = s
        .line(json!({"name": name, "uri": uri, "username": user,
                     "password": PBX_PASSWORD, "answer_mode": "automatic"}))
        .await;
    wait_lines(s, &[line], "registered", Duration::from_secs(10)).await;
    line
}

/// Creates a line on the test PBX; returns its id.
async fn line(s: &InProc, user: &str, pbx_port: u16, password: &str) -> i64 {
    s.line(
        json!({"name": format!("Line {user}"), "uri": format!("sip:{user}@127.0.0.1:{pbx_port}"),
                  "username": user, "password": password, "display_name": format!("Desk {user}")}),
    )
    .await
}

async fn line_state(s: &InProc, id: i64) -> Value {
    let (_, v) = s.api.get(&format!("/api/v1/lines/{id}")).await;
    v
}

/// Polls the admin API until every line is `state` or the time is up.
async fn wait_lines(s: &InProc, ids: &[i64], state: &str, wait: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let (_, all) = s.api.get("/api/v1/lines").await;
        let done = ids.iter().all(|id| {
            all.as_array()
                .unwrap()
                .iter()
                .any(|l| l["id"] == json!(id) && l["registration_state"] == json!(state))
        });
        if done {
            return start.elapsed();
        }
        if start.elapsed() > wait {
            let other: Vec<String> = all
                .as_array()
                .unwrap()
                .iter()
                .filter(|l| {
                    ids.contains(&l["id"].as_i64().unwrap())
                        && l["registration_state"] != json!(state)
                })
                .map(|l| {
                    format!(
                        "{} {} {}",
                        l["name"], l["registration_state"], l["registration_reason"]
                    )
                })
                .collect();
            panic!("lines not all {state} after {wait:?}: {other:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_lines_register_a_wrong_password_fails_and_all_return_after_a_pbx_restart() {
    let mut pbx = Kamailio::start("MD5", false);
    let s = server().await;
    let mut ids = Vec::new();
    for i in 0..50 {
        ids.push(line(&s, &format!("{}", 1000 + i), pbx.port, PBX_PASSWORD).await);
    }
    let bad = line(&s, "1999", pbx.port, "not-the-password").await;
    let took = wait_lines(&s, &ids, "registered", Duration::from_secs(20)).await;
    eprintln!("50 lines registered in {took:?}");
    let (_, status) = s.api.get("/api/v1/mlc").await;
    assert_eq!(status["running"], json!(true));
    assert_eq!(status["lines"]["registered"], json!(50), "{status}");
    wait_lines(&s, &[bad], "failing", Duration::from_secs(20)).await;
    let v = line_state(&s, bad).await;
    assert!(
        v["registration_reason"]
            .as_str()
            .unwrap()
            .contains("wrong username or password"),
        "{v}"
    );
    // Fixing the password in the API takes effect without a restart.
    let (st, _) = s
        .api
        .patch(
            &format!("/api/v1/lines/{bad}"),
            json!({"password": PBX_PASSWORD}),
        )
        .await;
    assert!(st.is_success());
    wait_lines(&s, &[bad], "registered", Duration::from_secs(10)).await;
    // The PBX reaches the MLC through the binding (OPTIONS relayed, answered).
    let port = pbx.port;
    let status = tokio::task::spawn_blocking(move || options_to_user(port, "1999"))
        .await
        .unwrap();
    assert_eq!(status.as_deref(), Some("SIP/2.0 200 OK"));
    // Deleting a line removes its binding at the PBX.
    let (st, _) = s.api.delete(&format!("/api/v1/lines/{bad}")).await;
    assert_eq!(st, reqwest::StatusCode::NO_CONTENT);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = tokio::task::spawn_blocking(move || options_to_user(port, "1999"))
            .await
            .unwrap();
        if status
            .as_deref()
            .is_some_and(|s| s.starts_with("SIP/2.0 404"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the deleted line is still bound: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The audit log has the state changes.
    let (_, audit) = s.api.get("/api/v1/audit?event_type=line.registered").await;
    let audited = audit["items"].as_array().unwrap().len();
    assert_eq!(
        audited, 51,
        "one line.registered audit entry per line (50 + the fixed one)"
    );

    // The PBX dies: the lines are shown failing.
    pbx.kill();
    assert!(!common::sip::options_ok(pbx.port), "the PBX is down");
    wait_lines(&s, &ids, "failing", Duration::from_secs(15)).await;
    // It comes back without any registration: all lines return within 30 s.
    pbx.restart();
    let back = wait_lines(&s, &ids, "registered", Duration::from_secs(30)).await;
    eprintln!("50 lines re-registered {back:?} after the PBX returned");
}

/// Issue 20: a PBX outage is one warning for the PBX (not one per line)
/// and one info entry when it answers again; a line the PBX refuses again
/// and again is an entry of its own; no entry holds a password or a
/// number; `turret events` shows them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pbx_outage_is_one_warning_in_the_error_log_and_its_return_one_info() {
    let mut pbx = Kamailio::start("MD5", false);
    let s = server().await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(line(&s, &format!("447100{n}"), pbx.port, PBX_PASSWORD).await);
    }
    let bad = line(&s, "4471999", pbx.port, "wrong-password-xyz").await;
    wait_lines(&s, &ids, "registered", Duration::from_secs(20)).await;
    let refused = s
        .api
        .wait_error_log(
            "type=line.registration_failed",
            |e| e["object"] == json!(format!("line:{bad}")),
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(refused["level"], "warning");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("wrong username or password"),
        "{refused}"
    );
    // The line by its id only: its name may hold its number.
    assert_eq!(refused["properties"], json!({}));

    pbx.kill();
    wait_lines(&s, &ids, "failing", Duration::from_secs(15)).await;
    let pbx_object = format!("pbx:127.0.0.1:{}", pbx.port);
    let down = s
        .api
        .wait_error_log(
            "type=pbx.unreachable",
            |e| e["object"] == json!(pbx_object),
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(down["level"], "warning");
    assert_eq!(down["component"], "mlc:local@test-host");
    pbx.restart();
    wait_lines(&s, &ids, "registered", Duration::from_secs(30)).await;
    let up = s
        .api
        .wait_error_log(
            "type=pbx.reachable",
            |e| e["object"] == json!(pbx_object),
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(up["level"], "info");
    assert!(up["seq"].as_i64() > down["seq"].as_i64());

    let all = s.api.error_log("").await;
    let about = |t: &str| {
        all.iter()
            .filter(|e| e["type"] == json!(t))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(about("pbx.unreachable").len(), 1, "one per PBX: {all:#?}");
    assert_eq!(about("pbx.reachable").len(), 1, "{all:#?}");
    let failing_lines: Vec<&Value> = all
        .iter()
        .filter(|e| e["type"] == json!("line.registration_failed"))
        .filter(|e| e["object"] != json!(format!("line:{bad}")))
        .collect();
    assert!(
        failing_lines.is_empty(),
        "the outage is the PBX's, not each line's: {failing_lines:#?}"
    );
    // Nothing personal or secret: no password, no number, no address of
    // record.
    for e in &all {
        let text = e.to_string();
        for bad_text in [PBX_PASSWORD, "wrong-password-xyz", "4471", "sip:"] {
            assert!(!text.contains(bad_text), "{bad_text} in {text}");
        }
    }
    // The CLI shows the same, at least warnings.
    let dir = s.dir.path().to_path_buf();
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        common::turret(&dir, &["events", "--level", "warning", "--since", "1h"], "")
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines().any(|l| l.contains("WARNING")
            && l.contains("pbx.unreachable")
            && l.contains(&pbx_object)),
        "{out}"
    );
    assert!(
        !out.contains("pbx.reachable"),
        "info is below --level warning: {out}"
    );

    // An administrator reads the outage and the recovery in the portal;
    // the refused line is shown by its name, which the entry never held.
    let b = common::browser::Browser::start(&s.url).await;
    b.goto("/login").await;
    b.fill("#login-username", "admin").await;
    b.fill("#login-password", common::ADMIN_PASSWORD).await;
    b.submit("form[action='/login'] button[type=submit]").await;
    b.goto("/events").await;
    let rows = b.text("table.events tbody").await;
    let at = |t: &str| {
        rows.find(t)
            .unwrap_or_else(|| panic!("{t} not shown: {rows}"))
    };
    assert!(
        at("pbx.reachable") < at("pbx.unreachable"),
        "newest first: {rows}"
    );
    assert!(rows.contains("Line 4471999"), "{rows}");
    b.screenshot("error-log-pbx").await;
}

fn call_push(state: &'static str) -> impl Fn(&Value) -> bool {
    move |p: &Value| p["push"] == json!("call") && p["call"]["state"] == json!(state)
}

/// Two profiles sharing one line, each with a turret logged in, the line
/// registered on the PBX, and the caller in the global contacts.
struct Floor {
    s: InProc,
    pbx: Kamailio,
    line: i64,
    a: (i64, Connection),
    b: (i64, Connection),
}

async fn floor() -> Floor {
    let pbx = Kamailio::start("MD5", false);
    let s = server().await;
    let line = line(&s, "1001", pbx.port, PBX_PASSWORD).await;
    let (st, v) = s
        .api
        .post(
            "/api/v1/global-contacts",
            json!({"name": "Alice Caller", "number": "2000"}),
        )
        .await;
    assert_eq!(st, reqwest::StatusCode::CREATED, "{v}");
    let mut turrets = Vec::new();
    for name in ["Trader A", "Trader B"] {
        let pid = s
            .profile(
                json!({"name": name, "password": "pw-123456-longer", "collect_call_memory": true}),
            )
            .await;
        let (st, v) = s
            .api
            .put(
                &format!("/api/v1/profiles/{pid}/lines/{line}"),
                json!({"position": 1}),
            )
            .await;
        assert!(st.is_success(), "{v}");
        let (c, _) = s.login(pid, "pw-123456-longer").await;
        turrets.push((pid, c));
    }
    wait_lines(&s, &[line], "registered", Duration::from_secs(10)).await;
    let b = turrets.pop().unwrap();
    let a = turrets.pop().unwrap();
    Floor { s, pbx, line, a, b }
}

/// The call memory once it holds at least `n` entries (they are written
/// after a call's end is pushed), or what it holds after 10 s.
async fn call_memory_of(c: &mut Connection, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = call_memory(c).await;
        if m.len() >= n || Instant::now() > deadline {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn call_memory(c: &mut Connection) -> Vec<Value> {
    c.request(json!({"op": "unlock_call_memory", "password": "pw-123456-longer"}))
        .await
        .unwrap();
    let v = c.request(json!({"op": "call_memory"})).await.unwrap();
    v["entries"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| v.as_array().cloned().unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_rings_on_both_turrets_one_answers_and_both_remember_it() {
    // Everything the System Manager and its MLC log, down to debug.
    let log = common::logs::capture();
    let mut f = floor().await;
    let mut phone = Baresip::start("2000", f.pbx.port, false);
    let target = format!("sip:1001@127.0.0.1:{}", f.pbx.port);

    // 1. baresip calls the line: both turrets ring, the caller identified.
    phone.command("dial", &target);
    let ring_a = common::wait_push(&mut f.a.1, "ringing at A", call_push("ringing")).await;
    let ring_b = common::wait_push(&mut f.b.1, "ringing at B", call_push("ringing")).await;
    assert_eq!(ring_a["call"]["remote_number"], json!("2000"));
    assert_eq!(ring_a["call"]["remote_name"], json!("Alice Caller"));
    assert_eq!(ring_a["call"]["line_id"], json!(f.line));
    assert_eq!(ring_b["call"]["id"], ring_a["call"]["id"]);
    let call = ring_a["call"]["id"].as_u64().unwrap();
    let (_, seen) = phone.wait_event("CALL_RINGING", 0, Duration::from_secs(10));

    // 2. A answers; B sees it answered elsewhere; baresip is connected.
    f.a.1
        .request(json!({"op": "answer", "call_id": call}))
        .await
        .unwrap();
    let conn_a = common::wait_push(&mut f.a.1, "connected at A", call_push("connected")).await;
    assert_eq!(conn_a["call"]["here"], json!(true));
    assert_eq!(conn_a["call"]["line_activity"], json!("busy_here"));
    let elsewhere = common::wait_push(
        &mut f.b.1,
        "answered elsewhere at B",
        call_push("answered_elsewhere"),
    )
    .await;
    assert_eq!(elsewhere["call"]["line_activity"], json!("busy_elsewhere"));
    let (_, seen) = phone.wait_event("CALL_ESTABLISHED", seen, Duration::from_secs(10));
    // B may not take it any more.
    let e =
        f.b.1
            .request(json!({"op": "answer", "call_id": call}))
            .await
            .unwrap_err();
    assert_eq!(e.code, "not_ringing");
    // RTP flows both ways through the MLC's anchor.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (sent, received) = f.s.app.mlc.media_stats(call).unwrap();
        if sent > 10 && received > 10 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "RTP not flowing: sent {sent}, received {received}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // 3. The caller hangs up: both turrets see the end.
    phone.command("hangup", "");
    common::wait_push(&mut f.a.1, "ended at A", call_push("ended")).await;
    common::wait_push(&mut f.b.1, "ended at B", call_push("ended")).await;
    let (_, seen) = phone.wait_event("CALL_CLOSED", seen, Duration::from_secs(10));

    // Call memory: answered here on A, answered remotely on B (written
    // after the end is pushed: read until both are there).
    let deadline = Instant::now() + Duration::from_secs(10);
    let (ma, mb) = loop {
        let (ma, mb) = (call_memory(&mut f.a.1).await, call_memory(&mut f.b.1).await);
        if (!ma.is_empty() && !mb.is_empty()) || Instant::now() > deadline {
            break (ma, mb);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(ma.len(), 1, "{ma:?}");
    assert_eq!(mb.len(), 1, "{mb:?}");
    assert_eq!(ma[0]["number"], json!("2000"));
    assert_eq!(ma[0]["name"], json!("Alice Caller"));
    assert_eq!(ma[0]["direction"], json!("in"));
    assert_eq!(ma[0]["answered"], json!(true));
    assert_eq!(ma[0]["answered_by"], json!("local"));
    assert_eq!(mb[0]["answered_by"], json!("remote"));
    // A search of the phonebook from the turret, by name.
    let found =
        f.a.1
            .request(json!({"op": "contacts", "search": "Alice Cal"}))
            .await
            .unwrap();
    assert_eq!(found["global"][0]["number"], json!("2000"));
    // None of it reached the log: not the caller's number or name, not
    // the search term, not the profile's or the line's password.
    log.assert_holds_none(&[
        "sip:2000@",
        "\"2000\"",
        "=2000 ",
        "Alice",
        "pw-123456-longer",
        // The line's password is the common word "secret" (the PBX's
        // configuration), so it is searched as a value, not as a word.
        &format!("\"{PBX_PASSWORD}\""),
        &format!("={PBX_PASSWORD}"),
        &format!(":{PBX_PASSWORD}@"),
    ]);
    // And a CDR.
    let cdrs = f.s.app.store.list_cdrs(&Default::default()).await.unwrap();
    assert_eq!(cdrs.len(), 1);
    assert_eq!(cdrs[0].profile_name.as_deref(), Some("Trader A"));
    assert_eq!(cdrs[0].profile_id.map(|p| p.0), Some(f.a.0));
    assert_eq!(cdrs[0].line_id.map(|l| l.0), Some(f.line));
    assert_eq!(cdrs[0].calling_number.as_deref(), Some("2000"));
    assert!(cdrs[0].duration_ms.unwrap() > 0);

    // 4. Again, answered by B and hung up from the turret.
    phone.command("dial", &target);
    let ring = common::wait_push(&mut f.b.1, "ringing at B", call_push("ringing")).await;
    let call = ring["call"]["id"].as_u64().unwrap();
    f.b.1
        .request(json!({"op": "answer", "call_id": call, "speech_unit": "speaker-1"}))
        .await
        .unwrap();
    let (_, seen) = phone.wait_event("CALL_ESTABLISHED", seen, Duration::from_secs(10));
    f.b.1
        .request(json!({"op": "hangup", "call_id": call}))
        .await
        .unwrap();
    let (_, seen) = phone.wait_event("CALL_CLOSED", seen, Duration::from_secs(10));
    common::wait_push(&mut f.a.1, "ended at A", call_push("ended")).await;

    // 5. The caller gives up while it rings (CANCEL): an unanswered entry.
    phone.command("dial", &target);
    common::wait_push(&mut f.a.1, "ringing at A", call_push("ringing")).await;
    phone.wait_event("CALL_RINGING", seen, Duration::from_secs(10));
    phone.command("hangup", "");
    let ended = common::wait_push(&mut f.a.1, "ended at A", call_push("ended")).await;
    assert_eq!(ended["call"]["reason"], json!("cancelled"));
    // (The entry is written after the end is pushed: read until it is.)
    let ma = call_memory_of(&mut f.a.1, 3).await;
    assert_eq!(ma.len(), 3, "{ma:?}");
    assert!(ma.iter().any(|e| e["answered"] == json!(false)), "{ma:?}");
    assert_eq!(f.s.app.mlc.calls_in_progress(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turret_dials_out_holds_retrieves_and_transfers() {
    let mut f = floor().await;
    let far = Baresip::start("2000", f.pbx.port, true);
    let other = Baresip::start("3000", f.pbx.port, true);

    // Dial over the line (chosen automatically: the profile's only one).
    let v =
        f.a.1
            .request(json!({"op": "dial", "number": "2000"}))
            .await
            .unwrap();
    let call = v["call_id"].as_u64().unwrap();
    let up = common::wait_push(&mut f.a.1, "connected", call_push("connected")).await;
    assert_eq!(up["call"]["direction"], json!("out"));
    assert_eq!(up["call"]["remote_name"], json!("Alice Caller"));
    let (_, seen) = far.wait_event("CALL_ESTABLISHED", 0, Duration::from_secs(10));
    // B, sharing the line, sees it busy at another turret.
    let b_view = common::wait_push(&mut f.b.1, "busy elsewhere at B", |p| {
        p["push"] == json!("call") && p["call"]["line_activity"] == json!("busy_elsewhere")
    })
    .await;
    assert_eq!(b_view["call"]["id"], json!(call));
    // B may not hang up A's call.
    let e =
        f.b.1
            .request(json!({"op": "hangup", "call_id": call}))
            .await
            .unwrap_err();
    assert_eq!(e.code, "forbidden");

    // Hold and retrieve (re-INVITEs through the PBX's record-route).
    f.a.1
        .request(json!({"op": "hold", "call_id": call}))
        .await
        .unwrap();
    let held = common::wait_push(&mut f.a.1, "held", call_push("held")).await;
    assert_eq!(held["call"]["line_activity"], json!("held"));
    f.a.1
        .request(json!({"op": "retrieve", "call_id": call}))
        .await
        .unwrap();
    common::wait_push(&mut f.a.1, "connected again", call_push("connected")).await;

    // Blind transfer to 3000: the far end calls it, our leg ends.
    f.a.1
        .request(json!({"op": "transfer", "call_id": call, "target": "3000"}))
        .await
        .unwrap();
    let ended = common::wait_push(&mut f.a.1, "ended", call_push("ended")).await;
    assert_eq!(ended["call"]["reason"], json!("transferred"));
    other.wait_event("CALL_ESTABLISHED", 0, Duration::from_secs(10));
    far.wait_event("CALL_CLOSED", seen, Duration::from_secs(10));

    // Only the dialling profile remembers the outgoing call (written after
    // the end is pushed: read until it is).
    let ma = call_memory_of(&mut f.a.1, 1).await;
    assert_eq!(ma.len(), 1, "{ma:?}");
    assert_eq!(ma[0]["direction"], json!("out"));
    assert_eq!(ma[0]["number"], json!("2000"));
    assert!(call_memory(&mut f.b.1).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_over_tcp_registers_and_carries_a_call() {
    let pbx = Kamailio::start("MD5", false);
    let s = server().await;
    intercom(
        &s,
        "TCP line",
        "1002",
        format!("sip:1002@127.0.0.1:{};transport=tcp", pbx.port),
    )
    .await;
    // Automatic answer mode: the call connects with no turret involved.
    let mut phone = Baresip::start("2000", pbx.port, false);
    phone.command("dial", &format!("sip:1002@127.0.0.1:{}", pbx.port));
    let (_, seen) = phone.wait_event("CALL_ESTABLISHED", 0, Duration::from_secs(10));
    assert_eq!(s.app.mlc.calls_in_progress(), 1);
    phone.command("hangup", "");
    phone.wait_event("CALL_CLOSED", seen, Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.app.mlc.calls_in_progress() != 0 {
        assert!(Instant::now() < deadline, "the call never ended at the MLC");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sha_256_digest_registers_with_and_without_qop() {
    for qop in [false, true] {
        let pbx = Kamailio::start("SHA-256", qop);
        let s = server().await;
        let good = line(&s, "1003", pbx.port, PBX_PASSWORD).await;
        let bad = line(&s, "1004", pbx.port, "wrong").await;
        wait_lines(&s, &[good], "registered", Duration::from_secs(10)).await;
        wait_lines(&s, &[bad], "failing", Duration::from_secs(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_lines_register_without_a_restart() {
    let pbx = Kamailio::start("MD5", false);
    let s = server().await;
    let mut csv = String::from("name,uri,username,password,answer_mode\n");
    for i in 0..20 {
        csv.push_str(&format!(
            "Imported {i},sip:{}@127.0.0.1:{},{},{PBX_PASSWORD},manual\n",
            3000 + i,
            pbx.port,
            3000 + i
        ));
    }
    let res = s
        .api
        .client
        .post(format!("{}/api/v1/import/lines", s.api.base))
        .bearer_auth(s.api.token.as_ref().unwrap())
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.text().await.unwrap());
    let (_, all) = s.api.get("/api/v1/lines").await;
    let ids: Vec<i64> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 20);
    wait_lines(&s, &ids, "registered", Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_over_tls_registers_and_carries_a_call() {
    let pbx = Kamailio::start_tls();
    let ca = pbx.cert_path();
    let s = InProc::start_with(move |c, _| {
        c.sip.enabled = true;
        c.sip.keepalive_secs = 1;
        c.sip.tls_ca = Some(ca);
    })
    .await;
    let tls_port = pbx.tls_port.unwrap();
    intercom(
        &s,
        "TLS line",
        "1006",
        format!("sips:1006@127.0.0.1:{tls_port}"),
    )
    .await;
    // The PBX reaches the MLC over TLS for the call.
    let mut phone = Baresip::start("2000", pbx.port, false);
    phone.command("dial", &format!("sip:1006@127.0.0.1:{}", pbx.port));
    let (_, seen) = phone.wait_event("CALL_ESTABLISHED", 0, Duration::from_secs(10));
    phone.command("hangup", "");
    phone.wait_event("CALL_CLOSED", seen, Duration::from_secs(10));

    // A line whose PBX certificate is not trusted fails, saying why.
    let s2 = server().await;
    let (_, v) = s2
        .api
        .post(
            "/api/v1/lines",
            json!({"name": "Untrusted", "uri": format!("sips:1007@127.0.0.1:{tls_port}"),
                   "username": "1007", "password": PBX_PASSWORD}),
        )
        .await;
    let bad = v["id"].as_i64().unwrap();
    wait_lines(&s2, &[bad], "failing", Duration::from_secs(10)).await;
    let v = line_state(&s2, bad).await;
    assert!(
        v["registration_reason"]
            .as_str()
            .unwrap()
            .contains("sip.tls_ca"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_up_an_outgoing_call_while_it_rings_cancels_it() {
    let mut f = floor().await;
    let far = Baresip::start("2000", f.pbx.port, false);
    let v =
        f.a.1
            .request(json!({"op": "dial", "number": "2000"}))
            .await
            .unwrap();
    let call = v["call_id"].as_u64().unwrap();
    common::wait_push(&mut f.a.1, "alerting", call_push("alerting")).await;
    let (_, seen) = far.wait_event("CALL_INCOMING", 0, Duration::from_secs(10));
    f.a.1
        .request(json!({"op": "hangup", "call_id": call}))
        .await
        .unwrap();
    common::wait_push(&mut f.a.1, "ended", call_push("ended")).await;
    far.wait_event("CALL_CLOSED", seen, Duration::from_secs(10));
    // Unanswered, dialled by A: one entry, on A only (written after the
    // end is pushed: read until it is).
    let ma = call_memory_of(&mut f.a.1, 1).await;
    assert_eq!(ma.len(), 1, "{ma:?}");
    assert_eq!(ma[0]["answered"], json!(false));
    assert_eq!(ma[0]["direction"], json!("out"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_server_ends_its_calls_unbinds_its_lines_and_keeps_the_records() {
    let pbx = Kamailio::start("MD5", false);
    let s = server().await;
    intercom(
        &s,
        "Intercom",
        "1010",
        format!("sip:1010@127.0.0.1:{}", pbx.port),
    )
    .await;
    let mut phone = Baresip::start("2000", pbx.port, false);
    phone.command("dial", &format!("sip:1010@127.0.0.1:{}", pbx.port));
    let (_, seen) = phone.wait_event("CALL_ESTABLISHED", 0, Duration::from_secs(10));

    s.app.mlc.shutdown().await;
    phone.wait_event("CALL_CLOSED", seen, Duration::from_secs(10));
    let port = pbx.port;
    let status = tokio::task::spawn_blocking(move || options_to_user(port, "1010"))
        .await
        .unwrap();
    assert!(
        status
            .as_deref()
            .is_some_and(|s| s.starts_with("SIP/2.0 404")),
        "still bound: {status:?}"
    );
    let cdrs = s.app.store.list_cdrs(&Default::default()).await.unwrap();
    assert_eq!(
        cdrs.len(),
        1,
        "the call's record is written before the store closes"
    );
}

/// Issue 14, point 2: a profile with no key for a line touches none of its
/// calls (auto-answered or ringing), and is answered exactly as for a call
/// id that does not exist, so ids cannot be probed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_without_the_line_touches_none_of_its_calls() {
    let pbx = Kamailio::start("MD5", false);
    let s = server().await;
    let auto = intercom(
        &s,
        "Intercom",
        "1001",
        format!("sip:1001@127.0.0.1:{}", pbx.port),
    )
    .await;
    let manual = line(&s, "1002", pbx.port, PBX_PASSWORD).await;
    let owner = s
        .profile(json!({"name": "Owner", "password": "pw-123456-longer"}))
        .await;
    let outsider = s
        .profile(json!({"name": "Outsider", "password": "pw-123456-longer"}))
        .await;
    for (l, pos) in [(auto, 1), (manual, 2)] {
        let (st, v) = s
            .api
            .put(
                &format!("/api/v1/profiles/{owner}/lines/{l}"),
                json!({"position": pos}),
            )
            .await;
        assert!(st.is_success(), "{v}");
    }
    let (mut own, _) = s.login(owner, "pw-123456-longer").await;
    let (mut out, _) = s.login(outsider, "pw-123456-longer").await;
    wait_lines(&s, &[manual], "registered", Duration::from_secs(10)).await;
    let mut phone = Baresip::start("2000", pbx.port, false);
    let mut ring_phone = Baresip::start("2001", pbx.port, false);

    // Every operation on `call` from the outsider: refused exactly as an
    // unknown id is.
    async fn probe(out: &mut Connection, call: u64, ops: &[&str]) {
        for op in ops {
            let mut req = json!({"op": op, "call_id": call});
            if *op == "transfer" {
                req["target"] = json!("2999");
            }
            if *op == "move" {
                req["speech_unit"] = json!("speaker-1");
            }
            if *op == "dtmf" {
                req["digits"] = json!("1");
            }
            if *op == "voice" {
                req["sdp"] = json!("v=0\r\n");
            }
            let theirs = out.request(req.clone()).await.unwrap_err();
            req["call_id"] = json!(987_654_321u64);
            let unknown = out.request(req).await.unwrap_err();
            assert_eq!(
                serde_json::to_value(&theirs).unwrap(),
                serde_json::to_value(&unknown).unwrap(),
                "{op} on another profile's call"
            );
            assert_eq!(theirs.code, "not_found", "{op}");
        }
    }

    // An auto-answered call on the intercom.
    phone.command("dial", &format!("sip:1001@127.0.0.1:{}", pbx.port));
    let up = common::wait_push(&mut own, "auto-answered", call_push("connected")).await;
    let call = up["call"]["id"].as_u64().unwrap();
    let (_, seen) = phone.wait_event("CALL_ESTABLISHED", 0, Duration::from_secs(10));
    probe(
        &mut out,
        call,
        &[
            "answer", "reject", "hangup", "hold", "retrieve", "transfer", "move", "dtmf", "voice",
        ],
    )
    .await;
    // The call is untouched: still up at the phone, and its rightful
    // holder (a profile showing the line) holds and hangs it up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let since = phone.event_types_since(seen);
    assert!(
        !since.iter().any(|t| [
            "CALL_CLOSED",
            "CALL_TRANSFER",
            "CALL_REMOTE_SDP",
            "CALL_HOLD"
        ]
        .contains(&t.as_str())),
        "the outsider changed the call: {since:?}"
    );
    own.request(json!({"op": "hold", "call_id": call}))
        .await
        .unwrap();
    common::wait_push(&mut own, "held", call_push("held")).await;
    own.request(json!({"op": "hangup", "call_id": call}))
        .await
        .unwrap();
    phone.wait_event("CALL_CLOSED", seen, Duration::from_secs(10));

    // A ringing call on the manual line.
    ring_phone.command("dial", &format!("sip:1002@127.0.0.1:{}", pbx.port));
    let ring = common::wait_push(&mut own, "ringing", call_push("ringing")).await;
    let call = ring["call"]["id"].as_u64().unwrap();
    probe(
        &mut out,
        call,
        &[
            "answer", "reject", "hangup", "hold", "retrieve", "transfer", "move", "dtmf", "voice",
        ],
    )
    .await;
    own.request(json!({"op": "answer", "call_id": call}))
        .await
        .unwrap();
    ring_phone.wait_event("CALL_ESTABLISHED", 0, Duration::from_secs(10));
    own.request(json!({"op": "hangup", "call_id": call}))
        .await
        .unwrap();
}
