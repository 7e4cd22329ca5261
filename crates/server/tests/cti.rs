//! The CTI interface (issue 7) with a real client over TLS and real calls
//! (Kamailio and baresip): scoped keys see their lines' calls only;
//! unknown, expired and revoked keys are refused; reconnecting with
//! `?since=` replays; switching the interface off disconnects.

mod common;

use std::time::{Duration, Instant};

use common::cti::*;
use common::inproc::InProc;
use common::sip::Baresip;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_keys_follow_real_calls_and_are_refused_revoked_and_cut_off() {
    let (pbx, s) = with_pbx().await;
    let (a, b) = (
        line_on(&s, &pbx, "1001", "automatic").await,
        line_on(&s, &pbx, "1002", "manual").await,
    );
    s.api
        .post(
            "/api/v1/global-contacts",
            json!({"name": "Alice Caller", "number": "2000"}),
        )
        .await;
    let (_, only_a) = s
        .api
        .post(
            "/api/v1/api-keys",
            json!({"name": "recorder A", "lines": [a], "events": ["calls"]}),
        )
        .await;
    let (_, all) = s
        .api
        .post(
            "/api/v1/api-keys",
            json!({"name": "crm", "events": ["calls", "lines"], "expires_in_days": 30}),
        )
        .await;
    let (only_a_token, all_token) = (
        only_a["token"].as_str().unwrap(),
        all["token"].as_str().unwrap(),
    );
    // The list never shows a key again.
    let (_, list) = s.api.get("/api/v1/api-keys").await;
    assert!(!list.to_string().contains(all_token));

    // Off until switched on (SPEC rule 11).
    assert_eq!(cti(&s, all_token, None).await.err(), Some(403));
    s.api
        .patch("/api/v1/settings", json!({"cti_enabled": true}))
        .await;
    assert_eq!(cti(&s, "otk_not-a-key", None).await.err(), Some(401));
    // An expired key.
    let expired_token = openturret_server::cti::new_token();
    let scope =
        openturret_domain::model::ApiKeyScope::new(None, vec!["calls".into()], false).unwrap();
    s.app
        .store
        .create_api_key(
            "old",
            &scope,
            Some(openturret_domain::Timestamp(1)),
            openturret_server::cti::token_hash(&expired_token),
            s.app.system_record("api_key.created", "api_key", None),
        )
        .await
        .unwrap();
    assert_eq!(cti(&s, &expired_token, None).await.err(), Some(401));

    let mut ws_a = cti(&s, only_a_token, None).await.unwrap();
    let mut ws_all = cti(&s, all_token, None).await.unwrap();
    assert_eq!(
        next(&mut ws_a, Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap()["kind"],
        "hello"
    );
    assert_eq!(
        next(&mut ws_all, Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap()["kind"],
        "hello"
    );

    // Calls: one to line B (rings, the caller gives up), one to line A
    // (answered at once, then hung up).
    let mut phone = Baresip::start("2000", pbx.port, false);
    phone.command("dial", &format!("sip:1002@127.0.0.1:{}", pbx.port));
    let (_, seen) = phone.wait_event("CALL_RINGING", 0, Duration::from_secs(10));
    phone.command("hangup", "");
    let (_, seen) = phone.wait_event("CALL_CLOSED", seen, Duration::from_secs(10));
    phone.command("dial", &format!("sip:1001@127.0.0.1:{}", pbx.port));
    let (_, seen) = phone.wait_event("CALL_ESTABLISHED", seen, Duration::from_secs(10));
    phone.command("hangup", "");
    phone.wait_event("CALL_CLOSED", seen, Duration::from_secs(10));

    let seen_all = drain(&mut ws_all, Duration::from_secs(2)).await;
    let seen_a = drain(&mut ws_a, Duration::from_millis(500)).await;
    assert_eq!(
        call_states(&seen_all, b),
        ["ringing", "ended"],
        "{seen_all:?}"
    );
    assert_eq!(
        call_states(&seen_all, a),
        ["ringing", "answered", "ended"],
        "{seen_all:?}"
    );
    assert_eq!(call_states(&seen_a, a), ["ringing", "answered", "ended"]);
    assert!(
        call_states(&seen_a, b).is_empty(),
        "a key scoped to line A sees nothing of B"
    );
    assert!(
        seen_a.iter().all(|e| e["kind"] == "call"),
        "no line events without that scope"
    );
    let ringing = seen_all.iter().find(|e| e["kind"] == "call").unwrap();
    assert_eq!(ringing["event"]["remote_number"], "2000");
    assert_eq!(ringing["event"]["remote_name"], "Alice Caller");
    // Sequence numbers rise without gaps for the key that sees everything
    // it is scoped to.
    let seqs: Vec<u64> = seen_all.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert!(seqs.windows(2).all(|w| w[1] > w[0]));

    // Reconnecting from a sequence number replays what came after it.
    let from = seqs[0];
    let mut again = cti(&s, all_token, Some(from)).await.unwrap();
    let replayed = drain(&mut again, Duration::from_millis(500)).await;
    let replayed_seqs: Vec<u64> = replayed.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert_eq!(replayed_seqs, seqs[1..].to_vec());

    // Revoking a key ends its connection at once; switching the interface
    // off ends all of them.
    let (code, _) = s
        .api
        .delete(&format!("/api/v1/api-keys/{}", only_a["key"]["id"]))
        .await;
    assert_eq!(code, reqwest::StatusCode::NO_CONTENT);
    assert_eq!(
        next(&mut ws_a, Duration::from_secs(5)).await.err(),
        Some(4401)
    );
    assert_eq!(cti(&s, only_a_token, None).await.err(), Some(401));
    s.api
        .patch("/api/v1/settings", json!({"cti_enabled": false}))
        .await;
    assert_eq!(
        next(&mut ws_all, Duration::from_secs(5)).await.err(),
        Some(4403)
    );
    assert_eq!(
        next(&mut again, Duration::from_secs(5)).await.err(),
        Some(4403)
    );

    // Phone status goes to keys on every line that asked for it.
    let (_, phones) = s
        .api
        .post(
            "/api/v1/api-keys",
            json!({"name": "floor monitor", "events": ["phones"]}),
        )
        .await;
    s.api
        .patch("/api/v1/settings", json!({"cti_enabled": true}))
        .await;
    let mut ws_p = cti(&s, phones["token"].as_str().unwrap(), None)
        .await
        .unwrap();
    next(&mut ws_p, Duration::from_secs(5)).await.unwrap();
    let pid = s
        .profile(json!({"name": "Desk", "password": "desk-pw-1"}))
        .await;
    let (mut turret, _) = s.login(pid, "desk-pw-1").await;
    turret.request(json!({"op": "logout"})).await.unwrap();
    let got = drain(&mut ws_p, Duration::from_millis(500)).await;
    let states: Vec<&str> = got
        .iter()
        .filter(|e| e["kind"] == "phone")
        .map(|e| e["event"]["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["logged_in", "logged_out"], "{got:?}");

    // Every use of a key is audited.
    let (_, audit) = s.api.get("/api/v1/audit?event_type=api_key.used").await;
    assert!(audit["items"].as_array().unwrap().len() >= 3);
    let (_, refused) = s.api.get("/api/v1/audit?event_type=api_key.refused").await;
    assert!(refused["items"].as_array().unwrap().len() >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_application_is_told_it_lost_events_and_slows_nobody() {
    let s = InProc::start().await;
    s.api
        .patch("/api/v1/settings", json!({"cti_enabled": true}))
        .await;
    let (_, k) = s
        .api
        .post(
            "/api/v1/api-keys",
            json!({"name": "slow reader", "events": ["calls"]}),
        )
        .await;
    let mut stalled = cti(&s, k["token"].as_str().unwrap(), None).await.unwrap();
    // A turret, to see that its pushes still flow.
    let pid = s
        .profile(json!({"name": "Desk", "password": "desk-pw-1"}))
        .await;
    let (mut turret, _) = s.login(pid, "desk-pw-1").await;

    // Far more events than the socket buffers and the queue hold, while
    // the application reads nothing: publishing never waits for a reader
    // (were it to, this loop would never end).
    let filler = "x".repeat(200);
    for i in 0..60_000u64 {
        s.app.cti.publish(
            "call",
            Some(openturret_domain::LineId(1)),
            json!({"call_id": i, "line_id": 1, "state": "ringing", "pad": filler}),
        );
    }
    // The turret still gets its push at once.
    s.api
        .post(
            &format!("/api/v1/profiles/{pid}/speed-dials"),
            json!({"kind": "DKM", "position": 1, "name": "Broker", "number": "2001"}),
        )
        .await;
    let push = turret
        .push(Duration::from_secs(5))
        .await
        .expect("the turret's push arrives");
    assert_eq!(push["push"], "config");

    // Every event numbered and sent (at once on one node; on several,
    // as fast as the database numbers them) while the application still
    // reads nothing.
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.app.cti.newest() < 60_000 {
        assert!(Instant::now() < deadline, "events not numbered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The application, reading at last, is told it lost events.
    let mut lost = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while lost.is_none() && Instant::now() < deadline {
        match next(&mut stalled, Duration::from_secs(2)).await {
            Ok(Some(v)) if v["kind"] == "lost" => lost = v["count"].as_u64(),
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    assert!(lost.is_some_and(|n| n > 0), "no lost notice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_api_answers_within_each_keys_scope() {
    let (pbx, s) = with_pbx().await;
    let (a, b) = (
        line_on(&s, &pbx, "1001", "automatic").await,
        line_on(&s, &pbx, "1002", "manual").await,
    );
    let (_, crm) = s
        .api
        .post(
            "/api/v1/api-keys",
            json!({"name": "crm", "events": ["calls", "lines", "phones"], "cdrs": true}),
        )
        .await;
    let (_, rec_b) = s
        .api
        .post(
            "/api/v1/api-keys",
            json!({"name": "recorder B", "lines": [b], "events": ["calls"], "cdrs": true}),
        )
        .await;
    let (crm, rec_b) = (
        crm["token"].as_str().unwrap(),
        rec_b["token"].as_str().unwrap(),
    );
    let get = |path: &str, token: &str| {
        s.api
            .client
            .get(format!("{}{path}", s.url))
            .bearer_auth(token)
            .send()
    };
    // Off until switched on.
    assert_eq!(get("/ext/v1/calls", crm).await.unwrap().status(), 403);
    s.api
        .patch(
            "/api/v1/settings",
            json!({"api_enabled": true, "cdr_enabled": true}),
        )
        .await;
    assert_eq!(
        get("/ext/v1/calls", "otk_nope").await.unwrap().status(),
        401
    );

    // A call on line A, answered at once.
    let mut phone = Baresip::start("2000", pbx.port, false);
    phone.command("dial", &format!("sip:1001@127.0.0.1:{}", pbx.port));
    let (_, seen) = phone.wait_event("CALL_ESTABLISHED", 0, Duration::from_secs(10));
    let v: Value = get("/ext/v1/calls", crm)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["calls"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["calls"][0]["line_id"], json!(a));
    assert_eq!(v["calls"][0]["remote_number"], "2000");
    assert_eq!(v["calls"][0]["state"], "answered");
    let v: Value = get("/ext/v1/calls", rec_b)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        v["calls"].as_array().unwrap().is_empty(),
        "line B's key sees nothing of line A"
    );

    // Line states: for keys with that scope only.
    assert_eq!(get("/ext/v1/lines", rec_b).await.unwrap().status(), 403);
    let v: Value = get("/ext/v1/lines", crm)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["lines"].as_array().unwrap().len(), 2);
    assert!(
        v["lines"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["state"] == "registered"),
        "{v}"
    );

    // Logged-in profiles.
    let pid = s
        .profile(json!({"name": "Desk", "password": "desk-pw-1"}))
        .await;
    let (_turret, _) = s.login(pid, "desk-pw-1").await;
    let v: Value = get("/ext/v1/phones", crm)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["logged_in_profiles"], json!([pid]));

    // The CDR once the call ends; a key limited to some lines gets none.
    phone.command("hangup", "");
    phone.wait_event("CALL_CLOSED", seen, Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(5);
    let cdrs = loop {
        let v: Value = get("/ext/v1/cdrs", crm)
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if !v["cdrs"].as_array().unwrap().is_empty() || Instant::now() > deadline {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(cdrs["cdrs"][0]["calling_number"], "2000", "{cdrs}");
    assert_eq!(cdrs["cdrs"][0]["direction"], "in");
    let v: Value = get("/ext/v1/cdrs?from=2999-01-01T00:00:00Z", crm)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(v["cdrs"].as_array().unwrap().is_empty());
    assert_eq!(
        get("/ext/v1/cdrs?from=yesterday", crm)
            .await
            .unwrap()
            .status(),
        422
    );
    // A key limited to line B reads line B's records: none.
    let v: Value = get("/ext/v1/cdrs", rec_b)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["cdrs"], json!([]), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_pseudonymisation_on_no_clear_number_reaches_an_application() {
    let (pbx, s) = with_pbx().await;
    let line = line_on(&s, &pbx, "1001", "automatic").await;
    s.api
        .post(
            "/api/v1/global-contacts",
            json!({"name": "Alice Caller", "number": "2000"}),
        )
        .await;
    let (_, k) = s
        .api
        .post(
            "/api/v1/api-keys",
            json!({"name": "crm", "events": ["calls"], "cdrs": true}),
        )
        .await;
    let token = k["token"].as_str().unwrap();
    let (st, v) = s
        .api
        .patch(
            "/api/v1/settings",
            json!({"cti_enabled": true, "api_enabled": true, "pseudonymisation": "keyed_hash",
                   "cdr_enabled": true, "cdr_files": "both"}),
        )
        .await;
    assert!(st.is_success(), "{v}");
    let (st, _) = s
        .api
        .patch(
            "/api/v1/settings",
            json!({"pseudonymisation": "unkeyed_hash"}),
        )
        .await;
    assert_eq!(
        st,
        reqwest::StatusCode::UNPROCESSABLE_ENTITY,
        "only the documented modes"
    );
    let mut ws = cti(&s, token, None).await.unwrap();
    next(&mut ws, Duration::from_secs(5)).await.unwrap();
    let mut phone = Baresip::start("2000", pbx.port, false);
    let mut seen = 0;
    let mut call = |phone: &mut Baresip| {
        phone.command("dial", &format!("sip:1001@127.0.0.1:{}", pbx.port));
        let (_, n) = phone.wait_event("CALL_ESTABLISHED", seen, Duration::from_secs(10));
        phone.command("hangup", "");
        let (_, n) = phone.wait_event("CALL_CLOSED", n, Duration::from_secs(10));
        seen = n;
    };
    let numbers = |events: &[Value]| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["kind"] == "call" && e["event"]["line_id"] == json!(line))
            .map(|e| e["event"]["remote_number"].as_str().unwrap().to_string())
            .collect()
    };

    call(&mut phone);
    let events = drain(&mut ws, Duration::from_secs(1)).await;
    let hashed = numbers(&events);
    assert!(!hashed.is_empty());
    assert!(
        hashed
            .iter()
            .all(|n| n.starts_with("p:") && n == &hashed[0]),
        "{hashed:?}"
    );
    assert!(
        events.iter().all(|e| e["event"]["remote_name"].is_null()),
        "no name either"
    );
    let get = |path: &str| {
        s.api
            .client
            .get(format!("{}{path}", s.url))
            .bearer_auth(token)
            .send()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let cdrs = loop {
        let v: Value = get("/ext/v1/cdrs").await.unwrap().json().await.unwrap();
        if !v["cdrs"].as_array().unwrap().is_empty() || Instant::now() > deadline {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(cdrs["cdrs"][0]["calling_number"], json!(hashed[0]));
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "cdr" && e["event"]["calling_number"] == json!(hashed[0])),
        "the CDR event, pseudonymised: {events:?}"
    );
    let files: String = cdr_files(&s, "csv")
        .into_iter()
        .chain(cdr_files(&s, "jsonl"))
        .map(|(_, t)| t)
        .collect();
    assert_eq!(files.matches(&hashed[0]).count(), 2, "{files}");
    assert!(
        files
            .lines()
            .all(|l| !l.split(',').any(|f| f == "2000" || f == "1001")),
        "a clear number in a CSV file: {files}"
    );
    for text in [
        serde_json::to_string(&events).unwrap(),
        cdrs.to_string(),
        files,
    ] {
        assert!(
            !text.contains("\"2000\"") && !text.contains("Alice"),
            "a clear number or name leaked: {text}"
        );
    }

    // Rotating the key makes new pseudonyms that cannot be linked to old ones.
    let (st, _) = s
        .api
        .post("/api/v1/settings/pseudonym-key/rotate", json!({}))
        .await;
    assert_eq!(st, reqwest::StatusCode::NO_CONTENT);
    call(&mut phone);
    let rotated = numbers(&drain(&mut ws, Duration::from_secs(1)).await);
    assert!(rotated[0].starts_with("p:") && rotated[0] != hashed[0]);

    // Truncation.
    s.api
        .patch("/api/v1/settings", json!({"pseudonymisation": "truncate"}))
        .await;
    call(&mut phone);
    let truncated = numbers(&drain(&mut ws, Duration::from_secs(1)).await);
    assert_eq!(truncated[0], "2***");
    let (_, report) = s.api.get("/api/v1/privacy-report").await;
    assert_eq!(report["pseudonymisation"], "truncate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turret_cti_follows_the_stream_from_the_command_line() {
    let s = InProc::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &s.cert).unwrap();
    let (_, k) = s
        .api
        .post(
            "/api/v1/api-keys",
            json!({"name": "shell", "events": ["phones"]}),
        )
        .await;
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, format!("{}\n", k["token"].as_str().unwrap())).unwrap();
    let run = |key: &std::path::Path, seconds: &str| {
        std::process::Command::new(common::BIN)
            .args(["cti", "--server", &s.url, "--ca"])
            .arg(&ca)
            .arg("--key-file")
            .arg(key)
            .args(["--seconds", seconds])
            .env("TURRET_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Switched off: refused, saying why.
    let out = run(&key_file, "5").wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("403") && err.contains("switched off"), "{err}");

    s.api
        .patch("/api/v1/settings", json!({"cti_enabled": true}))
        .await;
    let bad = dir.path().join("bad");
    std::fs::write(&bad, "otk_wrong").unwrap();
    let out = run(&bad, "5").wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));

    // Wait for its `hello` (it is connected), then make phone events.
    let mut child = run(&key_file, "4");
    let stdout = child.stdout.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(l);
        }
    });
    let first = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("turret cti says hello")
        .unwrap();
    let pid = s
        .profile(json!({"name": "Desk", "password": "desk-pw-1"}))
        .await;
    let (mut turret, _) = s.login(pid, "desk-pw-1").await;
    turret.request(json!({"op": "logout"})).await.unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines: Vec<Value> = vec![serde_json::from_str(&first).unwrap()];
    while let Some(l) = rx.recv().await {
        lines.push(serde_json::from_str(&l).unwrap());
    }
    assert_eq!(lines[0]["kind"], "hello");
    assert_eq!(lines[0]["key"], "shell");
    let states: Vec<&str> = lines
        .iter()
        .filter(|e| e["kind"] == "phone")
        .map(|e| e["event"]["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["logged_in", "logged_out"], "{lines:?}");
}
