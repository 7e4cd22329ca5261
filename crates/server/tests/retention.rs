//! Retention and the live privacy report (SPEC §4).

mod common;

use common::inproc::InProc;
use openturret_domain::model::{Cdr, Direction, RecordingLogEntry};
use openturret_domain::{LineId, ProfileId, RecorderId, Timestamp};
use openturret_server::callmem::{CallEvent, record_call};
use openturret_server::retention::{Purged, run_once};
use serde_json::json;

const DAY: i64 = 86_400_000;

#[tokio::test]
async fn records_older_than_the_limits_are_purged_and_each_purge_is_audited() {
    let s = InProc::start().await;
    let pid = s
        .profile(json!({"name": "Ann", "password": "ann-pw-longer", "collect_call_memory": true}))
        .await;
    let (_, l) = s
        .api
        .post("/api/v1/lines", json!({"name": "L1", "uri": "sip:1@pbx"}))
        .await;
    s.api
        .put(
            &format!("/api/v1/profiles/{pid}/lines/{}", l["id"]),
            json!({"position": 1}),
        )
        .await;
    let now = Timestamp::now();
    for age_days in [200, 100, 10] {
        let ev = CallEvent {
            line: LineId(l["id"].as_i64().unwrap()),
            direction: Direction::Incoming,
            remote_number: "+44 20 7946 0001".into(),
            at: Timestamp(now.0 - age_days * DAY),
            answered_by: None,
            answered: false,
            placed_by: None,
            duration_ms: None,
            reason: String::new(),
        };
        record_call(&s.app, &ev).await.unwrap();
        s.app
            .store
            .insert_cdr(Cdr {
                started_at: Some(Timestamp(now.0 - age_days * 3 * DAY)),
                recorded_at: Some(Timestamp(now.0 - age_days * 3 * DAY)),
                ..Default::default()
            })
            .await
            .unwrap();
        // The record of forwarding to recorders follows the CDRs.
        s.app
            .store
            .log_recordings(vec![RecordingLogEntry {
                at: Timestamp(now.0 - age_days * 3 * DAY),
                call_id: age_days,
                line_id: Some(LineId(l["id"].as_i64().unwrap())),
                profile_id: Some(ProfileId(pid)),
                recorder_id: RecorderId(1),
                outcome: "recording".into(),
                reason: None,
            }])
            .await
            .unwrap();
    }
    // Defaults: 90 days of call memory, 365 days of CDRs.
    let (_, st) = s.api.get("/api/v1/settings").await;
    assert_eq!(
        (
            st["retention_call_memory_days"].as_u64(),
            st["retention_cdr_days"].as_u64()
        ),
        (Some(90), Some(365))
    );
    // Call memory 200 and 100 days old goes; the CDR of 600 days goes.
    assert_eq!(
        run_once(&s.app, now).await.unwrap(),
        Purged {
            call_memory: 2,
            cdrs: 1,
            audit_entries: 0,
            cdr_files: 0,
            recording_log: 1,
            event_log: 0,
        }
    );
    assert_eq!(
        s.app
            .store
            .list_call_memory(ProfileId(pid))
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        s.app
            .store
            .list_cdrs(&openturret_store::CdrFilter {
                to: now,
                ..Default::default()
            })
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        run_once(&s.app, now).await.unwrap(),
        Purged::default(),
        "nothing left to purge"
    );
    let (_, audit) = s.api.get("/api/v1/audit?event_type=retention.purged").await;
    let changes: Vec<String> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{}:{}", e["object_type"], e["changes"][0]))
        .collect();
    assert_eq!(
        changes,
        [
            "\"recording_log\":\"deleted:1\"",
            "\"cdr\":\"deleted:1\"",
            "\"call_memory\":\"deleted:2\""
        ]
    );
    assert_eq!(
        s.app
            .store
            .list_recording_log(Timestamp(0), now, None, 10)
            .await
            .unwrap()
            .len(),
        2
    );

    // An administrator can keep records for ever, or shorten the limits.
    let (st, v) = s
        .api
        .patch(
            "/api/v1/settings",
            json!({"retention_call_memory_days": null, "retention_cdr_days": 5000}),
        )
        .await;
    assert_eq!(st, reqwest::StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["field"], "retention_cdr_days");
    let (_, v) = s
        .api
        .patch(
            "/api/v1/settings",
            json!({"retention_call_memory_days": null, "retention_cdr_days": 1}),
        )
        .await;
    assert!(v["retention_call_memory_days"].is_null());
    assert_eq!(
        run_once(&s.app, now).await.unwrap(),
        Purged {
            call_memory: 0,
            cdrs: 2,
            audit_entries: 0,
            cdr_files: 0,
            recording_log: 2,
            event_log: 0,
        }
    );

    // Audit entries older than their limit go too; the chain still
    // verifies from its new start, which the purge's own entry names.
    let later = Timestamp(now.0 + 3000 * DAY);
    // So do entries of the error log (the same log retention).
    let old = openturret_domain::model::Event::error("backup.failed", "backup", "cannot write")
        .from_component("sm:test-host");
    s.app
        .store
        .write_events(vec![(
            None,
            openturret_domain::model::Folded {
                event: old,
                count: 3,
                first_at: now,
                last_at: now,
            },
        )])
        .await
        .unwrap();
    let before = s.app.store.verify_audit().await.unwrap().verified;
    let p = run_once(&s.app, later).await.unwrap();
    assert_eq!(p.event_log, 1, "the error log's old entry went");
    assert_eq!(
        p.audit_entries as i64,
        before + 1,
        "every entry was older than seven years (with the error log's purge, audited first)"
    );
    let v = s.app.store.verify_audit().await.unwrap();
    assert_eq!(v.broken, None);
    let (_, audit) = s.api.get("/api/v1/audit?object_type=audit_log").await;
    assert_eq!(audit["items"][0]["event_type"], "retention.purged");
    assert_eq!(audit["items"][0]["object_id"], (before + 2).to_string());
}

#[tokio::test]
async fn the_privacy_report_describes_this_deployment() {
    let s = InProc::start().await;
    let a = s
        .profile(
            json!({"name": "Ann Secretname", "password": "ann-pw-longer", "collect_call_memory": true}),
        )
        .await;
    s.profile(json!({"name": "Bob", "password": "bob-pw-longer"}))
        .await;
    s.api
        .post(
            &format!("/api/v1/profiles/{a}/contacts"),
            json!({"name": "Carla Hidden", "number": "+44 20 7946 0002"}),
        )
        .await;
    s.api
        .patch("/api/v1/settings", json!({"cti_enabled": true}))
        .await;
    s.api.delete(&format!("/api/v1/profiles/{a}")).await;
    let (st, r) = s.api.get("/api/v1/privacy-report").await;
    assert_eq!(st, reqwest::StatusCode::OK);
    let count = |name: &str| {
        r["categories"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["category"] == name)
            .unwrap()["records"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(count("Profiles"), 1);
    assert_eq!(count("Local contacts"), 0);
    assert_eq!(count("Administrators"), 1);
    assert_eq!(r["interfaces"]["cti"], true);
    assert_eq!(r["interfaces"]["api"], false);
    assert_eq!(r["erasure_ledger"]["entries"], 1);
    assert_eq!(r["audit"]["chain_intact"], true);
    assert_eq!(r["retention"]["call_memory"]["max_age_days"], 90);
    // Voice: no audio is stored, keys are per call (issue 17).
    assert_eq!(r["voice"]["audio_stored"], false);
    assert!(
        r["voice"]["turret_media"]
            .as_str()
            .unwrap()
            .contains("own SRTP keys"),
        "{}",
        r["voice"]
    );
    assert_eq!(r["voice"]["media_ports"], "UDP 10000-20000");
    // Where the data is, as this run's backend has it; the database's
    // password (if any) never shown.
    let postgres = std::env::var("TURRET_TEST_BACKEND").as_deref() == Ok("postgres");
    let stored = r["categories"][0]["stored"].as_str().unwrap();
    let backend = if postgres {
        "PostgreSQL database postgres://"
    } else {
        "SQLite database /"
    };
    assert!(stored.starts_with(backend), "{stored}");
    assert_eq!(
        r["between_nodes"]["shared"], postgres,
        "{}",
        r["between_nodes"]
    );
    assert!(
        r["encryption"]["erased_rows"]
            .as_str()
            .unwrap()
            .contains(if postgres { "vacuum" } else { "secure_delete" }),
        "{}",
        r["encryption"]
    );
    // It points at the table of its promises and their tests.
    assert!(
        r["proof"]["document"]
            .as_str()
            .unwrap()
            .starts_with("docs/privacy.md"),
        "{}",
        r["proof"]
    );
    let text = r.to_string();
    assert!(
        !text.contains("Secretname") && !text.contains("Carla"),
        "the report holds counts, not people"
    );
    let anon = common::Api {
        token: None,
        ..s.api.clone()
    };
    assert_eq!(
        anon.get("/api/v1/privacy-report").await.0,
        reqwest::StatusCode::UNAUTHORIZED
    );
}

/// Reads `name` from a ZIP with Python's zipfile (an independent reader).
fn unzip(zip: &std::path::Path, name: &str) -> Option<String> {
    let out = std::process::Command::new("python3")
        .args(["-c", "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None; sys.stdout.write(z.read(sys.argv[2]).decode())"])
        .arg(zip)
        .arg(name)
        .output()
        .expect("python3 reads ZIP files");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subject_export_holds_everything_and_call_memory_only_when_the_user_unlocks() {
    let s = InProc::start().await;
    let pid = s
        .profile(json!({"name": "Sam Subject", "password": "sam-pw-longer", "call_memory_password": "sam-cm-longer", "collect_call_memory": true}))
        .await;
    s.api
        .post(
            &format!("/api/v1/profiles/{pid}/contacts"),
            json!({"name": "Tina Contact", "number": "+44 20 7946 0400"}),
        )
        .await;
    s.api
        .post(
            &format!("/api/v1/profiles/{pid}/speed-dials"),
            json!({"kind": "DKM", "position": 2, "name": "Desk", "number": "2001"}),
        )
        .await;
    s.api
        .post(
            "/api/v1/consents",
            json!({"profile_id": pid, "purpose": "call memory", "channel": "email"}),
        )
        .await;
    s.app
        .store
        .insert_cdr(Cdr {
            profile_name: Some("Sam Subject".into()),
            calling_number: Some("+44 20 7000 0555".into()),
            started_at: Some(Timestamp::now()),
            ..Default::default()
        })
        .await
        .unwrap();
    let (_, l) = s
        .api
        .post(
            "/api/v1/lines",
            json!({"name": "L1", "uri": "sip:1@pbx", "display_name": "Rates Desk", "alternate_text": "RATES"}),
        )
        .await;
    s.api
        .put(
            &format!("/api/v1/profiles/{pid}/lines/{}", l["id"]),
            json!({"position": 3}),
        )
        .await;
    // The subject logs in at their turret once: an audit entry of their own.
    drop(s.login(pid, "sam-pw-longer").await);
    let ev = CallEvent {
        line: LineId(l["id"].as_i64().unwrap()),
        direction: Direction::Outgoing,
        remote_number: "+44 20 7000 0666".into(),
        at: Timestamp::now(),
        answered_by: None,
        answered: true,
        placed_by: Some(ProfileId(pid)),
        duration_ms: None,
        reason: String::new(),
    };
    record_call(&s.app, &ev).await.unwrap();
    // A call of theirs went to a voice recorder.
    s.app
        .store
        .log_recordings(vec![RecordingLogEntry {
            at: Timestamp::now(),
            call_id: 9,
            line_id: Some(LineId(l["id"].as_i64().unwrap())),
            profile_id: Some(ProfileId(pid)),
            recorder_id: RecorderId(4),
            outcome: "recording".into(),
            reason: None,
        }])
        .await
        .unwrap();

    // The administrator's export: everything but the sealed call memory.
    let res = s
        .api
        .client
        .get(format!("{}/api/v1/profiles/{pid}/subject-export", s.url))
        .bearer_auth(s.api.token.as_ref().unwrap())
        .send()
        .await
        .unwrap();
    if res.headers()["content-type"] != "application/zip" {
        panic!("export failed: {}", res.text().await.unwrap());
    }
    let admin_zip = s.dir.path().join("admin.zip");
    std::fs::write(&admin_zip, res.bytes().await.unwrap()).unwrap();
    let subject: serde_json::Value =
        serde_json::from_str(&unzip(&admin_zip, "subject.json").unwrap()).unwrap();
    assert_eq!(subject["profile"]["name"], "Sam Subject");
    assert_eq!(subject["local_contacts"][0]["name"], "Tina Contact");
    assert_eq!(subject["speed_dials"][0]["position"], "2");
    assert_eq!(subject["consents"][0]["channel"], "email");
    assert_eq!(
        subject["call_data_records"][0]["calling_number"],
        "+44 20 7000 0555"
    );
    assert_eq!(
        subject["calls_forwarded_to_recorders"][0]["recorder_id"], "4",
        "{subject}"
    );
    assert!(
        unzip(&admin_zip, "calls_forwarded_to_recorders.csv")
            .unwrap()
            .contains(",4,recording")
    );
    assert_eq!(
        subject["line_keys"],
        json!([{"position": "3", "display_name": "Rates Desk", "alternate_text": "RATES"}])
    );
    assert!(
        unzip(&admin_zip, "line_keys.csv")
            .unwrap()
            .contains("3,Rates Desk,RATES")
    );
    // The audit trail: the subject's own entries with the address they came
    // from; an administrator's with the administrator's withheld, and why.
    let events = subject["audit_events"].as_array().unwrap();
    let event = |name: &str| {
        events
            .iter()
            .find(|e| e["event"] == name)
            .unwrap_or_else(|| panic!("no {name} in {events:?}"))
    };
    assert_eq!(event("client.login")["actor"], format!("profile:{pid}"));
    assert_eq!(event("client.login")["client_ip"], "127.0.0.1");
    assert_eq!(event("client.login")["client_host_claimed"], "");
    assert_eq!(event("profile.created")["actor"], "admin");
    assert_eq!(
        event("profile.created")["client_ip"],
        "(an administrator's; withheld)"
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&unzip(&admin_zip, "manifest.json").unwrap()).unwrap();
    assert!(
        manifest["audit_client_details"]
            .as_str()
            .unwrap()
            .contains("administrator's, not yours"),
        "{manifest}"
    );
    assert!(subject["call_memory"].is_null());
    assert!(unzip(&admin_zip, "call_memory.csv").is_none());
    assert!(
        !std::fs::read(&admin_zip)
            .unwrap()
            .windows(9)
            .any(|w| w == b"7000 0666"),
        "no call memory in an admin export"
    );
    assert!(
        unzip(&admin_zip, "index.html")
            .unwrap()
            .contains("Tina Contact")
    );
    assert_eq!(manifest["includes_call_memory"], false);

    // The user's own export, unlocked: with the call memory.
    let user_zip = s.dir.path().join("user.zip");
    let cert = s.dir.path().join("tls/cert.pem");
    let out = tokio::task::block_in_place(|| {
        use std::io::Write;
        let mut child = std::process::Command::new(common::BIN)
            .args([
                "client",
                "--server",
                &s.url,
                "--ca",
                cert.to_str().unwrap(),
                "--profile",
                "Sam Subject",
                "--password-stdin",
                "export-my-data",
                user_zip.to_str().unwrap(),
            ])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"sam-pw-longer\nsam-cm-longer\n")
            .unwrap();
        child.wait_with_output().unwrap()
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cm = unzip(&user_zip, "call_memory.csv").expect("the user's export holds the call memory");
    assert!(
        cm.contains("+44 20 7000 0666") && cm.contains("answered"),
        "{cm}"
    );
}

#[tokio::test]
async fn scheduled_backups_keep_only_the_newest_and_are_audited() {
    let s = InProc::start_with(|c, dir| {
        let pf = dir.join("passphrase");
        std::fs::write(&pf, "scheduled passphrase 1\n").unwrap();
        c.backup.passphrase_file = Some(pf);
        c.backup.keep = Some(2);
    })
    .await;
    let mut files = Vec::new();
    for _ in 0..3 {
        files.push(
            openturret_server::backup::scheduled_once(&s.app)
                .await
                .unwrap(),
        );
        // Backups are named by the millisecond; make sure the next differs.
        let t = std::time::Instant::now();
        while t.elapsed() < std::time::Duration::from_millis(5) {
            std::hint::spin_loop();
        }
    }
    let left = openturret_server::backup::list(&s.dir.path().join("backups")).unwrap();
    assert_eq!(left.len(), 2, "keep = 2");
    assert!(!files[0].exists(), "the oldest went");
    assert!(files[2].exists());
    let v = openturret_server::backup::verify(
        &files[2],
        openturret_domain::secret::Secret::new("scheduled passphrase 1"),
        &s.app.config,
    )
    .await
    .unwrap();
    assert_eq!(v.integrity, "ok");
    let (_, audit) = s.api.get("/api/v1/audit?object_type=backup").await;
    let events: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        [
            "backup.rotated",
            "backup.created",
            "backup.created",
            "backup.created"
        ]
    );
}

/// The job runs by itself: records aged past the limits are gone soon after
/// a server starts over them, with no one calling the purge.
#[tokio::test]
async fn the_retention_job_runs_by_itself_when_the_server_starts() {
    let dir = tempfile::tempdir().unwrap();
    let (server, api) = common::fresh(dir.path()).await;
    let (_, p) = api
        .post(
            "/api/v1/profiles",
            json!({"name": "Ann", "password": "ann-pw-longer"}),
        )
        .await;
    let pid = p["id"].as_i64().unwrap();
    server.stop();
    // Written behind the server's back, as time would have aged them: a
    // CDR and a call-memory entry past the default limits (365 and 90
    // days), and one of each from yesterday.
    let now = Timestamp::now().0;
    let (old, recent) = (now - 400 * DAY, now - DAY);
    let db = dir.path().join("turret.db");
    common::sqlite3(
        &db,
        &format!(
            "INSERT INTO cdrs (profile_name, started_at, recorded_at)
               VALUES ('Old Call', {old}, {old}), ('New Call', {recent}, {recent});
             INSERT INTO call_memory (profile_id, created_at, sealed)
               VALUES ({pid}, {old}, x'00'), ({pid}, {recent}, x'00');"
        ),
    );
    let count = || {
        common::sqlite3(
            &db,
            "SELECT (SELECT COALESCE(group_concat(profile_name), '') FROM cdrs) || '/' ||
                    (SELECT COUNT(*) FROM call_memory);",
        )
        .trim()
        .to_string()
    };
    assert_eq!(count(), "Old Call,New Call/2");
    let server = common::Server::start(dir.path(), &[]).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while count() != "New Call/1" {
        assert!(
            std::time::Instant::now() < deadline,
            "the retention job did not run by itself: {}",
            count()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut api = server.client();
    api.login("admin", common::ADMIN_PASSWORD).await;
    let (_, audit) = api.get("/api/v1/audit?event_type=retention.purged").await;
    let purged: Vec<String> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{}:{}", e["object_type"], e["changes"][0]))
        .collect();
    assert!(
        purged.contains(&"\"cdr\":\"deleted:1\"".to_string())
            && purged.contains(&"\"call_memory\":\"deleted:1\"".to_string()),
        "{purged:?}"
    );
}

/// `docs/privacy.md` names a test for every applicable cell of its table;
/// every test it names exists (and is a test), so the table cannot rot.
#[test]
fn the_privacy_table_names_only_tests_that_exist() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let doc = std::fs::read_to_string(root.join("docs/privacy.md")).unwrap();
    let rows: Vec<Vec<&str>> = doc
        .lines()
        .skip_while(|l| !l.starts_with("| Item"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| l.trim_matches('|').split(" | ").map(str::trim).collect())
        .collect();
    let items: Vec<&str> = rows.iter().map(|r| r[0]).collect();
    assert_eq!(
        items.len(),
        11,
        "the ten items of personal data of SPEC §2, and the record of forwarding to recorders: {items:?}"
    );
    let named = |text: &str| -> Vec<String> {
        text.split('`')
            .skip(1)
            .step_by(2)
            .filter(|t| t.contains("::"))
            .map(str::to_string)
            .collect()
    };
    let mut applicable = 0;
    for r in &rows {
        assert_eq!(r.len(), 6, "a row of five properties: {r:?}");
        for cell in &r[1..] {
            if let Some(reason) = cell.strip_prefix("n/a:") {
                assert!(reason.trim().len() > 15, "{}: n/a needs a reason", r[0]);
            } else {
                assert!(!named(cell).is_empty(), "{}: a cell without a test", r[0]);
                applicable += 1;
            }
        }
    }
    assert!(applicable >= 38, "{applicable} cells proven");
    let mut checked = 0;
    for name in named(&doc) {
        let (file, test) = name.split_once("::").unwrap();
        let source = ["crates/server/tests", "crates/store/tests"]
            .iter()
            .find_map(|d| std::fs::read_to_string(root.join(d).join(format!("{file}.rs"))).ok())
            .unwrap_or_else(|| panic!("{name}: no test file {file}.rs"));
        let lines: Vec<&str> = source.lines().collect();
        let at = lines
            .iter()
            .position(|l| {
                let l = l.trim_start();
                l.starts_with(&format!("async fn {test}(")) || l.starts_with(&format!("fn {test}("))
            })
            .unwrap_or_else(|| panic!("{name}: no such function in {file}.rs"));
        assert!(
            lines[at.saturating_sub(3)..at]
                .iter()
                .any(|l| l.contains("#[tokio::test") || l.contains("#[test]")),
            "{name} is not a test"
        );
        checked += 1;
    }
    assert!(checked >= 60, "{checked} test names checked");
}
