//! The error log (issue 20) with real parts: a storm of failed TLS
//! handshakes folded into one entry and followed by a CTI application, a
//! scheduled backup that cannot be written, `turret mlc` processes that
//! report by name and die, `turret events --follow`, and the portal's page
//! and dashboard in Chromium.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::cti::{cti, drain};
use common::inproc::InProc;
use common::mlcproc::{enrol, manager_url, start_mlc};
use common::sip::{Kamailio, PBX_PASSWORD};
use openturret_server::config::MonitorConfig;
use serde_json::{Value, json};

/// Ten thousand clients that do not speak TLS, `parallel` at a time.
async fn failed_handshakes(url: &str, n: usize, parallel: usize) {
    let at = common::socket_addr(url);
    let mut tasks = Vec::new();
    for k in 0..parallel {
        let share = n / parallel + usize::from(k < n % parallel);
        tasks.push(tokio::task::spawn_blocking(move || {
            for _ in 0..share {
                let mut s = std::net::TcpStream::connect(at).unwrap();
                s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
                // The server closes after its failed handshake.
                let mut rest = Vec::new();
                let _ = s.read_to_end(&mut rest);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_failed_handshakes_are_one_entry_with_their_count_and_reach_cti() {
    let s = InProc::start().await;
    let (st, v) = s
        .api
        .patch("/api/v1/settings", json!({"cti_enabled": true}))
        .await;
    assert!(st.is_success(), "{v}");
    let (_, nms) = s
        .api
        .post(
            "/api/v1/api-keys",
            json!({"name": "nms", "events": ["errors"]}),
        )
        .await;
    let (_, crm) = s
        .api
        .post(
            "/api/v1/api-keys",
            json!({"name": "crm", "events": ["calls", "lines", "phones"]}),
        )
        .await;
    let mut nms = cti(&s, nms["token"].as_str().unwrap(), None).await.unwrap();
    let mut crm = cti(&s, crm["token"].as_str().unwrap(), None).await.unwrap();

    failed_handshakes(&s.url, 10_000, 4).await;
    let e = s
        .api
        .wait_error_log(
            "type=tls.handshake_failed",
            |e| e["count"] == 10_000,
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(
        s.api.error_log("type=tls.handshake_failed").await.len(),
        1,
        "one entry for the storm"
    );
    assert_eq!(e["level"], "warning");
    assert_eq!(e["component"], "sm:test-host");
    assert!(e["first_at"].as_str() < e["last_at"].as_str(), "{e}");
    // No client address in it: a storm's sources are the server log's.
    assert!(!e.to_string().contains("127.0.0.1"), "{e}");

    // The application that asked for the error log follows the count; the
    // one that did not sees none of it.
    let seen = drain(&mut nms, Duration::from_secs(1)).await;
    let counts: Vec<u64> = seen
        .iter()
        .filter(|m| m["kind"] == "error_log" && m["event"]["type"] == "tls.handshake_failed")
        .filter_map(|m| m["event"]["count"].as_u64())
        .collect();
    assert_eq!(counts.last(), Some(&10_000), "{seen:#?}");
    assert!(
        counts.windows(2).all(|w| w[0] <= w[1]),
        "folds only grow: {counts:?}"
    );
    assert!(
        counts.len() < 200,
        "published as folded, not per failure: {}",
        counts.len()
    );
    let other = drain(&mut crm, Duration::from_millis(300)).await;
    assert!(other.iter().all(|m| m["kind"] != "error_log"), "{other:#?}");
    // A client that speaks TLS 1.3 is served as before.
    assert!(s.api.get("/api/v1/events?limit=1").await.0.is_success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_backup_into_a_folder_that_cannot_be_written_is_an_error() {
    let s = InProc::start_with(|c, dir| {
        // A folder below a file: no one, root included, can create it.
        std::fs::write(dir.join("not-a-folder"), b"x").unwrap();
        c.backup.dir = Some(dir.join("not-a-folder/backups"));
        c.backup.every_minutes = Some(60);
        let pf = dir.join("backup-pass");
        std::fs::write(&pf, "scheduled passphrase 1\n").unwrap();
        c.backup.passphrase_file = Some(pf);
    })
    .await;
    // Said at the start, before the first run is due...
    let at_start = s
        .api
        .wait_error_log(
            "type=backup.failed",
            |e| {
                e["message"]
                    .as_str()
                    .unwrap()
                    .contains("cannot be written into")
            },
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(at_start["level"], "error");
    assert_eq!(at_start["object"], "backup");
    // ...and by the run itself.
    openturret_server::backup::scheduled_run(&s.app).await;
    let run = s
        .api
        .wait_error_log(
            "type=backup.failed",
            |e| {
                e["message"]
                    .as_str()
                    .unwrap()
                    .contains("the scheduled backup into")
            },
            Duration::from_secs(10),
        )
        .await;
    assert!(
        run["message"]
            .as_str()
            .unwrap()
            .contains("not-a-folder/backups"),
        "{run}"
    );
    assert!(!run.to_string().contains("scheduled passphrase 1"), "{run}");
    // A second failure folds into the same entry.
    openturret_server::backup::scheduled_run(&s.app).await;
    s.api
        .wait_error_log(
            "type=backup.failed",
            |e| e["count"] == 2,
            Duration::from_secs(10),
        )
        .await;
    // Only errors, at least: the filter of the API.
    let errors = s.api.error_log("at_least=error").await;
    assert!(errors.iter().all(|e| e["level"] == "error"), "{errors:#?}");
    let (st, v) = s.api.get("/api/v1/events?level=fatal").await;
    assert_eq!(st, 422, "{v}");
}

/// The disk watch under limits of one's own: a disk under the warning
/// share is one entry for the data, backup and CDR folders on it, and
/// an error limit above the free space makes it an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_under_the_configured_limit_is_one_entry_for_all_its_folders() {
    // Every disk has less than 100 % free: low, at once.
    let s = InProc::start_with(|c, _| {
        c.monitor = MonitorConfig {
            disk_warn_percent: 100,
            ..MonitorConfig::off()
        }
    })
    .await;
    let low = s
        .api
        .wait_error_log("type=disk.low", |_| true, Duration::from_secs(10))
        .await;
    assert_eq!(low["level"], "warning");
    assert_eq!(
        low["object"],
        format!("disk:{}", s.dir.path().display()),
        "{low}"
    );
    let free: u64 = low["properties"]["free_mib"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let total: u64 = low["properties"]["total_mib"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(free <= total && total > 0, "{low}");
    // The backup and CDR folders are on the same disk: no second entry.
    let all = s.api.error_log("").await;
    let disks: Vec<&Value> = all
        .iter()
        .filter(|e| e["type"].as_str().unwrap().starts_with("disk."))
        .collect();
    assert_eq!(disks.len(), 1, "{disks:#?}");
    // An error where less is free than the error limit in MiB (here more
    // than any disk holds).
    let s = InProc::start_with(|c, _| {
        c.monitor = MonitorConfig {
            disk_error_mib: 1 << 40,
            ..MonitorConfig::off()
        }
    })
    .await;
    let full = s
        .api
        .wait_error_log("type=disk.full", |_| true, Duration::from_secs(10))
        .await;
    assert_eq!(full["level"], "error", "{full}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turret_mlc_processes_report_by_name_and_their_loss_is_an_entry_naming_them() {
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
    let manager = manager_url(&server);
    // A line the PBX refuses (wrong password): its MLC reports it.
    let (st, v) = api
        .post(
            "/api/v1/lines",
            json!({"name": "Rates", "uri": format!("sip:4471234@127.0.0.1:{}", pbx.port),
                   "username": "4471234", "password": "not-the-pbx-password"}),
        )
        .await;
    assert!(st.is_success(), "{v}");
    let line = v["id"].as_i64().unwrap();
    let creds = dir.path().join("creds");
    for name in ["desk-a", "desk-b"] {
        enrol(&data, &creds, name);
    }
    let mut a = start_mlc(&manager, &creds, "desk-a", dir.path());
    let refused = api
        .wait_error_log(
            "component=mlc:desk-a&type=line.registration_failed",
            |e| e["object"] == json!(format!("line:{line}")),
            Duration::from_secs(30),
        )
        .await;
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("wrong username or password"),
        "{refused}"
    );
    api.wait_error_log(
        "type=mlc.connected",
        |e| e["object"] == "mlc:desk-a",
        Duration::from_secs(10),
    )
    .await;

    // kill -9: the System Manager says which MLC it lost.
    let _ = a.0.kill();
    let _ = a.0.wait();
    let lost = api
        .wait_error_log(
            "type=mlc.link_lost",
            |e| e["object"] == "mlc:desk-a",
            Duration::from_secs(15),
        )
        .await;
    assert_eq!(lost["level"], "warning");
    assert!(
        lost["message"].as_str().unwrap().contains("desk-a"),
        "{lost}"
    );

    // A planned stop is information, not a failure.
    let b = start_mlc(&manager, &creds, "desk-b", dir.path());
    api.wait_error_log(
        "type=mlc.connected",
        |e| e["object"] == "mlc:desk-b",
        Duration::from_secs(10),
    )
    .await;
    let pid = b.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let stopped = api
        .wait_error_log(
            "type=mlc.stopped",
            |e| e["object"] == "mlc:desk-b",
            Duration::from_secs(15),
        )
        .await;
    assert_eq!(stopped["level"], "info");
    assert!(
        api.error_log("type=mlc.link_lost&object=mlc:desk-b")
            .await
            .is_empty()
    );
    drop(b);

    // Nothing personal or secret anywhere in the log.
    let all = api.error_log("").await;
    for e in &all {
        let text = e.to_string();
        for bad in ["not-the-pbx-password", PBX_PASSWORD, "4471234", "sip:"] {
            assert!(!text.contains(bad), "{bad} in {text}");
        }
    }
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turret_events_follows_what_is_written() {
    let s = InProc::start().await;
    let mut follow = Command::new(common::BIN);
    if let Some(url) = common::known_database(s.dir.path()) {
        follow.env("TURRET_DATABASE__URL", url);
    }
    let mut follow = follow
        .args(["events", "--follow", "--json", "--data-dir"])
        .arg(s.dir.path())
        .env_remove("TURRET_CONFIG")
        .env("TURRET_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = follow.stdout.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines() {
            let Ok(l) = l else { break };
            let _ = tx.send(serde_json::from_str(&l).unwrap());
        }
    });
    // Three refused administrator logins: one entry, shown as it grows.
    // The first, then the follower is seen to show it, then two more.
    let refuse = || async {
        let (st, _) = s
            .api
            .post(
                "/api/v1/auth/login",
                json!({"username": "nobody", "password": "wrong password here"}),
            )
            .await;
        assert_eq!(st, 401);
    };
    refuse().await;
    match tokio::time::timeout(Duration::from_secs(15), rx.recv()).await {
        Ok(Some(e)) => assert_eq!(e["type"], "admin.login_refused", "{e}"),
        _ => panic!("turret events --follow showed nothing"),
    }
    refuse().await;
    refuse().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = Value::Null;
    while last["count"] != 3 {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(e)) => {
                assert_eq!(e["type"], "admin.login_refused", "{e}");
                last = e;
            }
            _ => panic!("turret events --follow did not show the refusals: {last}"),
        }
    }
    assert!(!last.to_string().contains("nobody"), "{last}");
    let _ = follow.kill();
    let _ = follow.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_shows_the_error_log_with_its_filters_and_the_dashboard_counts_errors() {
    let dir = tempfile::tempdir().unwrap();
    // A scheduled backup that cannot be written: an error at the start.
    std::fs::create_dir_all(dir.path()).unwrap();
    std::fs::write(dir.path().join("blocker"), b"x").unwrap();
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "a passphrase of the schedule\n").unwrap();
    let data = dir.path().join("data");
    let blocked = dir.path().join("blocker/backups");
    let (server, b, api) = common::browser::signed_in_with(
        &data,
        &[
            ("TURRET_BACKUP__EVERY_MINUTES", "60"),
            ("TURRET_BACKUP__DIR", blocked.to_str().unwrap()),
            ("TURRET_BACKUP__PASSPHRASE_FILE", pass.to_str().unwrap()),
        ],
    )
    .await;
    // Two refused logins: a warning with a count.
    for _ in 0..2 {
        let (st, _) = server
            .client()
            .post(
                "/api/v1/auth/login",
                json!({"username": "someone", "password": "wrong password"}),
            )
            .await;
        assert_eq!(st, 401);
    }
    api.wait_error_log(
        "type=admin.login_refused",
        |e| e["count"] == 2,
        Duration::from_secs(10),
    )
    .await;

    b.goto("/dashboard").await;
    assert_eq!(b.text("#errors-24h").await, "1");
    assert_eq!(b.text("#warnings-24h").await, "1");
    let main = b.text("main").await;
    assert!(
        main.contains("backup.failed") && main.contains("admin.login_refused"),
        "{main}"
    );
    b.screenshot("dashboard").await;
    // The errors tile opens the log filtered to errors.
    b.click("a.tile.bad").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.path().await != "/events" {
        assert!(Instant::now() < deadline, "the tile did not open the log");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rows = b.wait_text("main h1", "Error log").await;
    assert!(!rows.is_empty());
    let rows = b.text("table.events tbody").await;
    assert!(
        rows.contains("backup.failed") && !rows.contains("admin.login_refused"),
        "{rows}"
    );
    assert!(rows.contains("cannot be written into"), "{rows}");
    // Filter by type, then clear.
    b.choose("#events-level", "Any level").await;
    b.fill("#events-type", "admin.login_refused").await;
    b.submit("form[action='/events/filter'] button[type=submit]")
        .await;
    let rows = b.text("table.events tbody").await;
    assert!(
        rows.contains("admin.login_refused") && !rows.contains("backup.failed"),
        "{rows}"
    );
    assert!(rows.contains('2'), "its count: {rows}");
    assert_eq!(b.path().await, "/events", "filters never go into the URL");
    b.fill("#events-type", "").await;
    b.fill("#events-component", "mlc:nowhere").await;
    b.submit("form[action='/events/filter'] button[type=submit]")
        .await;
    assert!(
        b.text("table.events tbody")
            .await
            .contains("No entries match")
    );
    b.submit("form[action='/events/filter'] button[name=clear]")
        .await;
    let rows = b.text("table.events tbody").await;
    assert!(
        rows.contains("backup.failed") && rows.contains("admin.login_refused"),
        "{rows}"
    );
    assert!(
        !b.source().await.contains("someone"),
        "no user name in the log"
    );
    b.screenshot("error-log").await;
    server.stop();
}
