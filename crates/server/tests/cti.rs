//! The CTI interface (issue 7) with a real client over TLS and real calls
//! (Kamailio and baresip): scoped keys see their lines' calls only;
//! unknown, expired and revoked keys are refused; reconnecting with
//! `?since=` replays; switching the interface off disconnects.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::inproc::InProc;
use common::sip::{Baresip, Kamailio, PBX_PASSWORD};
use futures_util::StreamExt;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

type Ws = WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;

/// Connects to `/cti` with `token`; `Err(status)` when refused.
async fn cti(s: &InProc, token: &str, since: Option<u64>) -> Result<Ws, u16> {
    let authority = s.url.strip_prefix("https://").unwrap().to_string();
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&s.cert) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(&authority).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let q = since.map(|n| format!("?since={n}")).unwrap_or_default();
    let mut req = format!("wss://{authority}/cti{q}")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    match tokio_tungstenite::client_async(req, tls).await {
        Ok((ws, _)) => Ok(ws),
        Err(WsError::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("{e}"),
    }
}

/// A test PBX, and a server with the MLC on.
async fn with_pbx() -> (Kamailio, InProc) {
    let pbx = Kamailio::start("MD5", false);
    let s = InProc::start_with(|c, _| {
        c.sip.enabled = true;
        c.sip.keepalive_secs = 1;
    })
    .await;
    (pbx, s)
}

/// A line for `user` on the test PBX, in answer `mode`.
async fn line_on(s: &InProc, pbx: &Kamailio, user: &str, mode: &str) -> i64 {
    s.line(
        json!({"name": user, "uri": format!("sip:{user}@127.0.0.1:{}", pbx.port), "username": user,
                  "password": PBX_PASSWORD, "answer_mode": mode}),
    )
    .await
}

/// The next JSON message, or `Err(close code)` when the server closes.
async fn next(ws: &mut Ws, wait: Duration) -> Result<Option<Value>, u16> {
    match tokio::time::timeout(wait, ws.next()).await {
        Err(_) => Ok(None),
        Ok(Some(Ok(Message::Text(t)))) => Ok(Some(serde_json::from_str(t.as_str()).unwrap())),
        Ok(Some(Ok(Message::Close(c)))) => Err(c.map_or(0, |c| u16::from(c.code))),
        Ok(None) | Ok(Some(Err(_))) => Err(0),
        Ok(Some(Ok(_))) => Ok(None),
    }
}

/// Collects messages for `wait`.
async fn drain(ws: &mut Ws, wait: Duration) -> Vec<Value> {
    let deadline = Instant::now() + wait;
    let mut out = Vec::new();
    while let Ok(Some(v)) = next(ws, deadline.saturating_duration_since(Instant::now())).await {
        out.push(v);
    }
    out
}

fn call_states(events: &[Value], line: i64) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["kind"] == "call" && e["event"]["line_id"] == json!(line))
        .map(|e| e["event"]["state"].as_str().unwrap().to_string())
        .collect()
}

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

/// Reads the CDR files of `kind` (`csv` or `jsonl`), open or closed,
/// oldest first.
fn cdr_files(s: &InProc, kind: &str) -> Vec<(String, String)> {
    s.app
        .cdr
        .list()
        .iter()
        .filter(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n.ends_with(&format!(".{kind}")) || n.ends_with(&format!(".{kind}.part"))
        })
        .map(|p| {
            (
                p.file_name().unwrap().to_str().unwrap().to_string(),
                std::fs::read_to_string(p).unwrap(),
            )
        })
        .collect()
}

fn keys_of(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdrs_hold_exactly_the_enabled_fields_in_the_stream_the_files_and_the_api() {
    let (pbx, s) = with_pbx().await;
    let (a, b) = (
        line_on(&s, &pbx, "1001", "automatic").await,
        line_on(&s, &pbx, "1002", "automatic").await,
    );
    let (_, rec) = s
        .api
        .post(
            "/api/v1/api-keys",
            json!({"name": "recorder A", "lines": [a], "events": ["calls"], "cdrs": true}),
        )
        .await;
    let (_, all) = s
        .api
        .post(
            "/api/v1/api-keys",
            json!({"name": "billing", "events": ["calls"], "cdrs": true}),
        )
        .await;
    let (rec_token, all_token) = (
        rec["token"].as_str().unwrap(),
        all["token"].as_str().unwrap(),
    );
    s.api
        .patch(
            "/api/v1/settings",
            json!({"cti_enabled": true, "api_enabled": true}),
        )
        .await;
    let mut ws_rec = cti(&s, rec_token, None).await.unwrap();
    let mut ws_all = cti(&s, all_token, None).await.unwrap();
    let hello = next(&mut ws_rec, Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(hello["cdrs"], true);
    next(&mut ws_all, Duration::from_secs(5)).await.unwrap();

    let mut phone = Baresip::start("2000", pbx.port, false);
    let mut seen = 0;
    let mut call = |phone: &mut Baresip, user: &str| {
        phone.command("dial", &format!("sip:{user}@127.0.0.1:{}", pbx.port));
        let (_, n) = phone.wait_event("CALL_ESTABLISHED", seen, Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(300));
        phone.command("hangup", "");
        let (_, n) = phone.wait_event("CALL_CLOSED", n, Duration::from_secs(10));
        seen = n;
    };
    let cdr_events = |events: &[Value]| -> Vec<Value> {
        events
            .iter()
            .filter(|e| e["kind"] == "cdr")
            .map(|e| e["event"].clone())
            .collect()
    };

    // CDRs are off until switched on (SPEC rule 11): a call leaves none.
    call(&mut phone, "1001");
    let events = drain(&mut ws_all, Duration::from_secs(1)).await;
    assert!(call_states(&events, a).contains(&"ended".to_string()));
    assert!(cdr_events(&events).is_empty(), "{events:?}");
    assert!(
        s.app
            .store
            .list_cdrs(&Default::default())
            .await
            .unwrap()
            .is_empty()
    );

    // Switched on, with five of the nine fields, to both kinds of file.
    // (In the order of SPEC §2, as the settings answer them.)
    let enabled = [
        "called_number",
        "calling_number",
        "duration_ms",
        "direction",
        "started_at",
    ];
    let (st, v) = s
        .api
        .patch(
            "/api/v1/settings",
            json!({"cdr_enabled": true, "cdr_fields": enabled, "cdr_files": "both"}),
        )
        .await;
    assert!(st.is_success(), "{v}");
    assert_eq!(v["cdr_fields"], json!(enabled));
    let (st, v) = s
        .api
        .patch("/api/v1/settings", json!({"cdr_fields": ["colour"]}))
        .await;
    assert_eq!(st, reqwest::StatusCode::UNPROCESSABLE_ENTITY);
    assert!(v.to_string().contains("colour"), "{v}");

    call(&mut phone, "1001");
    call(&mut phone, "1002");
    let mut expected_keys: Vec<String> = ["id", "line_id"]
        .iter()
        .chain(enabled.iter())
        .map(|s| s.to_string())
        .collect();
    expected_keys.sort();

    // The stream: the recorder sees line A's record only; billing both.
    let from_all = cdr_events(&drain(&mut ws_all, Duration::from_secs(2)).await);
    let from_rec = cdr_events(&drain(&mut ws_rec, Duration::from_millis(500)).await);
    assert_eq!(from_all.len(), 2, "{from_all:?}");
    assert_eq!(from_rec.len(), 1, "{from_rec:?}");
    assert_eq!(from_rec[0]["line_id"], json!(a));
    assert_eq!(from_all[1]["line_id"], json!(b));
    for c in &from_all {
        assert_eq!(keys_of(c), expected_keys, "{c}");
        assert_eq!(c["calling_number"], "2000");
        assert_eq!(c["direction"], "in");
        assert!(c["duration_ms"].as_i64().unwrap() > 0);
        assert!(c["id"].as_i64().is_some(), "kept in the database");
    }

    // The API: the same records, within each key's lines.
    let get = |token: &'static str| {
        let s = &s;
        async move {
            let r = s
                .api
                .client
                .get(format!("{}/ext/v1/cdrs", s.url))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            r.json::<Value>().await.unwrap()["cdrs"].clone()
        }
    };
    let rec_token: &'static str = Box::leak(rec_token.to_string().into_boxed_str());
    let all_token: &'static str = Box::leak(all_token.to_string().into_boxed_str());
    assert_eq!(get(all_token).await, json!(from_all));
    assert_eq!(get(rec_token).await, json!(from_rec));

    // The files: one CSV and one JSON-lines file, still open (.part).
    let csv = cdr_files(&s, "csv");
    assert_eq!(csv.len(), 1, "{csv:?}");
    assert!(csv[0].0.ends_with(".csv.part"));
    let mut lines = csv[0].1.lines();
    assert_eq!(
        lines.next(),
        Some("id,line_id,called_number,calling_number,duration_ms,direction,started_at")
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        rows[0].starts_with(&format!("{},{a},1001,2000,", from_all[0]["id"])),
        "{rows:?}"
    );
    let jsonl = cdr_files(&s, "jsonl");
    let parsed: Vec<Value> = jsonl[0]
        .1
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(parsed, from_all);

    // Changing the fields closes the files and starts new ones with the
    // new columns; nothing of the switched-off fields is stored.
    s.api
        .patch(
            "/api/v1/settings",
            json!({"cdr_fields": ["direction"], "cdr_files": "csv"}),
        )
        .await;
    call(&mut phone, "1001");
    drain(&mut ws_all, Duration::from_secs(1)).await;
    let csv = cdr_files(&s, "csv");
    assert_eq!(csv.len(), 2, "{csv:?}");
    assert!(csv[0].0.ends_with(".csv"), "the first file is closed");
    assert_eq!(
        csv[1].1.lines().next(),
        Some("id,line_id,direction"),
        "{csv:?}"
    );
    let jsonl = cdr_files(&s, "jsonl");
    assert!(
        jsonl.iter().all(|(n, _)| n.ends_with(".jsonl")),
        "JSON lines switched off: its file is closed: {jsonl:?}"
    );
    let stored = s.app.store.list_cdrs(&Default::default()).await.unwrap();
    assert_eq!(stored.len(), 3);
    assert_eq!(stored[2].called_number, None, "switched off, never stored");
    assert!(stored[2].direction.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasing_a_profile_clears_its_name_from_cdrs_and_retention_deletes_old_files() {
    use openturret_domain::model::Cdr;
    use openturret_domain::{ProfileId, Timestamp};
    let s = InProc::start().await;
    let pid = s
        .profile(json!({"name": "Sam Subject", "password": "sam-pw-12"}))
        .await;
    s.api
        .patch(
            "/api/v1/settings",
            json!({"cdr_enabled": true, "cdr_files": "both"}),
        )
        .await;
    let cdr = |name: &str, profile: Option<ProfileId>| Cdr {
        profile_id: profile,
        profile_name: Some(name.into()),
        called_number: Some("+44 20 7000 0555".into()),
        started_at: Some(Timestamp::now()),
        ..Default::default()
    };
    openturret_server::cdr::produce(
        &s.app,
        vec![
            cdr("Sam Subject", Some(ProfileId(pid))),
            cdr("Other Person", None),
        ],
    )
    .await;
    let text = |s: &InProc| {
        s.app
            .cdr
            .list()
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect::<String>()
    };
    assert_eq!(text(&s).matches("Sam Subject").count(), 2, "CSV and JSONL");

    let (st, v) = s.api.delete(&format!("/api/v1/profiles/{pid}")).await;
    assert!(st.is_success(), "{v}");
    assert_eq!(v["erased"]["cdrs_named"], 1);
    let files = text(&s);
    assert!(!files.contains("Sam Subject"), "{files}");
    assert_eq!(files.matches("Other Person").count(), 2);
    assert_eq!(
        files.matches("+44 20 7000 0555").count(),
        4,
        "the calls stay"
    );
    let stored = s.app.store.list_cdrs(&Default::default()).await.unwrap();
    assert_eq!(
        stored
            .iter()
            .map(|c| c.profile_name.clone())
            .collect::<Vec<_>>(),
        [None, Some("Other Person".to_string())]
    );
    assert!(
        s.app
            .cdr
            .list()
            .iter()
            .all(|p| p.extension().unwrap() != "part")
    );

    // A closed file last written 400 days ago goes with the 365-day limit;
    // the records in the database (started now) stay.
    let old = &s.app.cdr.list()[0];
    std::fs::File::options()
        .write(true)
        .open(old)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(400 * 86_400))
        .unwrap();
    let purged = openturret_server::retention::run_once(&s.app, Timestamp::now())
        .await
        .unwrap();
    assert_eq!((purged.cdr_files, purged.cdrs), (1, 0));
    assert!(!old.exists());
    assert_eq!(s.app.cdr.list().len(), 1);
    let (_, audit) = s.api.get("/api/v1/audit?event_type=retention.purged").await;
    assert!(audit.to_string().contains("cdr_files"), "{audit}");
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

    let child = run(&key_file, "4");
    tokio::time::sleep(Duration::from_millis(1500)).await;
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
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["kind"], "hello");
    assert_eq!(lines[0]["key"], "shell");
    let states: Vec<&str> = lines
        .iter()
        .filter(|e| e["kind"] == "phone")
        .map(|e| e["event"]["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["logged_in", "logged_out"], "{lines:?}");
}
