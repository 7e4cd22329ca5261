//! Call data record output (issue 7) with real calls: exactly the enabled
//! fields in the CTI stream, the rolling files and the API; erasure and
//! retention of what was written.

mod common;

use std::time::Duration;

use common::cti::*;
use common::inproc::InProc;
use common::sip::Baresip;
use serde_json::{Value, json};

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
    // A key for the same calls without the CDR permission.
    let (_, crm) = s
        .api
        .post(
            "/api/v1/api-keys",
            json!({"name": "crm", "events": ["calls"], "cdrs": false}),
        )
        .await;
    let crm_token: &'static str = Box::leak(crm["token"].as_str().unwrap().into());
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
    let mut ws_crm = cti(&s, crm_token, None).await.unwrap();
    let hello = next(&mut ws_crm, Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(hello["cdrs"], false);

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
    // Without the permission: the calls, but no record, and 403 on the API.
    let crm_events = drain(&mut ws_crm, Duration::from_millis(500)).await;
    assert!(call_states(&crm_events, a).contains(&"ended".to_string()));
    assert!(cdr_events(&crm_events).is_empty(), "{crm_events:?}");
    let r = s
        .api
        .client
        .get(format!("{}/ext/v1/cdrs", s.url))
        .bearer_auth(crm_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::FORBIDDEN);
    assert!(!r.text().await.unwrap().contains("2000"));
    // The folder and every file are the service's alone.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(s.app.cdr.dir()), 0o700);
    let files: Vec<_> = std::fs::read_dir(s.app.cdr.dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(files.len() >= 2, "{files:?}");
    for f in &files {
        assert_eq!(mode(f), 0o600, "{f:?}");
    }

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
