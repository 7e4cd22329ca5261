//! The `turret` command line on a data directory: administrator accounts,
//! audit verification, configuration help.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn admin_create_and_reset_password_work_on_the_data_dir_and_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let (server, api) = fresh(dir.path()).await;

    // While the server runs: create an administrator from the CLI.
    let (code, out, err) = turret(
        dir.path(),
        &["admin", "create", "--username", "carol", "--password-stdin"],
        "carol-password-01\n",
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("carol"), "{out}");
    let mut carol = Api {
        token: None,
        ..api.clone()
    };
    carol.login("carol", "carol-password-01").await;

    let (code, _, err) = turret(
        dir.path(),
        &["admin", "create", "--username", "carol", "--password-stdin"],
        "carol-password-01\n",
    );
    assert_eq!(code, 2);
    assert!(err.contains("already exists"), "{err}");
    let (code, _, err) = turret(
        dir.path(),
        &["admin", "create", "--username", "dave", "--password-stdin"],
        "short\n",
    );
    assert_eq!(code, 2);
    assert!(err.contains("at least 12"), "{err}");

    let (code, out, err) = turret(
        dir.path(),
        &[
            "admin",
            "reset-password",
            "--username",
            "carol",
            "--password-stdin",
        ],
        "carol-password-02\n",
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        carol.get("/api/v1/auth/me").await.0,
        reqwest::StatusCode::UNAUTHORIZED,
        "reset ends sessions"
    );
    carol.login("carol", "carol-password-02").await;
    let (code, _, err) = turret(
        dir.path(),
        &[
            "admin",
            "reset-password",
            "--username",
            "nobody",
            "--password-stdin",
        ],
        "whatever-password\n",
    );
    assert_eq!(code, 2);
    assert!(err.contains("no administrator named nobody"), "{err}");

    let (_, audit) = api.get("/api/v1/audit?object_type=admin").await;
    let cli_events: Vec<(String, String)> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"].as_str().unwrap().starts_with("cli:"))
        .map(|e| {
            (
                e["event_type"].as_str().unwrap().to_string(),
                e["changes"].to_string(),
            )
        })
        .collect();
    assert!(
        cli_events.contains(&(
            "admin.created".into(),
            json!(["username", "password"]).to_string()
        )),
        "{cli_events:?}"
    );
    assert!(
        cli_events.iter().any(|(e, _)| e == "admin.password_reset"),
        "{cli_events:?}"
    );
    server.stop();
    let (code, out, _) = turret(dir.path(), &["audit", "verify"], "");
    assert_eq!(
        code, 0,
        "the chain holds across server and CLI writes: {out}"
    );
}

/// A data directory with a few audit entries, the server stopped.
async fn audited_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (server, api) = fresh(dir.path()).await;
    for name in ["P1", "P2", "P3"] {
        let (s, _) = api
            .post(
                "/api/v1/profiles",
                json!({"name": name, "password": "pppp"}),
            )
            .await;
        assert_eq!(s, reqwest::StatusCode::CREATED);
    }
    server.stop();
    let (code, out, err) = turret(dir.path(), &["audit", "verify"], "");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("intact"), "{out}");
    dir
}

#[tokio::test]
async fn audit_verify_fails_after_a_row_is_altered_behind_the_systems_back() {
    let dir = audited_dir().await;
    let db = dir.path().join("turret.db");
    sqlite3(
        &db,
        "UPDATE audit_log SET changes = 'nothing' WHERE seq = 3",
    );
    let (code, out, _) = turret(dir.path(), &["audit", "verify"], "");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("BROKEN at entry 3"), "{out}");

    let dir = audited_dir().await;
    let db = dir.path().join("turret.db");
    sqlite3(&db, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 2");
    let (code, out, _) = turret(dir.path(), &["audit", "verify"], "");
    assert_eq!(code, 1);
    assert!(out.contains("BROKEN at entry 2"), "{out}");
}

#[tokio::test]
async fn audit_verify_fails_after_a_row_is_deleted_anywhere() {
    let dir = audited_dir().await;
    sqlite3(
        &dir.path().join("turret.db"),
        "DELETE FROM audit_log WHERE seq = 4",
    );
    let (code, out, _) = turret(dir.path(), &["audit", "verify"], "");
    assert_eq!(code, 1);
    assert!(out.contains("BROKEN at entry 4"), "{out}");
    assert!(out.contains("missing"), "{out}");

    // Removing the newest rows is caught by the head kept outside the DB.
    let dir = audited_dir().await;
    let db = dir.path().join("turret.db");
    let last: i64 = sqlite3(&db, "SELECT MAX(seq) FROM audit_log")
        .trim()
        .parse()
        .unwrap();
    sqlite3(&db, &format!("DELETE FROM audit_log WHERE seq = {last}"));
    let (code, out, _) = turret(dir.path(), &["audit", "verify"], "");
    assert_eq!(code, 1);
    assert!(out.contains(&format!("BROKEN at entry {last}")), "{out}");

    // A forged row inserted with a made-up MAC does not verify either.
    let dir = audited_dir().await;
    let db = dir.path().join("turret.db");
    sqlite3(
        &db,
        "INSERT INTO audit_log SELECT seq + 100, at, level, 'forged', object_type, object_id, changes, success, server_host, actor, client_ip, client_host, pii_salt, pii_commit, mac, mac FROM audit_log WHERE seq = (SELECT MAX(seq) FROM audit_log)",
    );
    let (code, out, _) = turret(dir.path(), &["audit", "verify"], "");
    assert_eq!(code, 1, "{out}");
}

#[test]
fn config_default_prints_a_commented_example_and_help_helps() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = turret(dir.path(), &["config", "default"], "");
    assert_eq!(code, 0);
    assert!(out.contains("listen = \"127.0.0.1:8443\""));
    assert!(
        out.lines().filter(|l| l.starts_with('#')).count() > 5,
        "commented"
    );
    assert!(
        !dir.path().join("turret.db").exists(),
        "printing config touches no data"
    );

    let out = std::process::Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--listen", "--data-dir", "--config"] {
        assert!(help.contains(flag), "{help}");
    }
}

#[test]
fn audit_verify_on_a_directory_without_a_database_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = turret(&dir.path().join("nope"), &["audit", "verify"], "");
    assert_eq!(code, 2);
    assert!(err.contains("no OpenTurret database"), "{err}");
}

#[tokio::test]
async fn a_config_file_and_environment_configure_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("turret.toml");
    std::fs::write(&cfg, "[auth]\nmax_failures_per_user = 2\nunknown_key = 1\n").unwrap();
    let data = dir.path().join("data");
    let cfg_s = cfg.to_str().unwrap().to_string();
    let server = Server::start(
        &data,
        &[
            ("TURRET_CONFIG", &cfg_s),
            ("TURRET_AUTH__LOCKOUT_SECS", "42"),
        ],
    )
    .await;
    let api = server.client();
    for _ in 0..2 {
        api.post(
            "/api/v1/auth/login",
            json!({"username": "admin", "password": "nope"}),
        )
        .await;
    }
    let (s, h, _) = api
        .call_full(
            reqwest::Method::POST,
            "/api/v1/auth/login",
            Some(json!({"username": "admin", "password": "nope"})),
            &[],
        )
        .await;
    assert_eq!(
        s,
        reqwest::StatusCode::TOO_MANY_REQUESTS,
        "the file's limit of 2 applies"
    );
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(
        retry <= 42 && retry > 30,
        "the environment's lockout of 42 s applies: {retry}"
    );
}

/// Issue 14, point 18: `turret client` finds the server of its data
/// directory wherever it listens (here a random port), and a reader that
/// closes the pipe early ends it quietly, without a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_client_finds_its_server_and_survives_a_closed_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let (server, api) = common::fresh(dir.path()).await;
    let (s, v) = api
        .post(
            "/api/v1/profiles",
            json!({"name": "Desk", "password": "desk-pw-1"}),
        )
        .await;
    assert!(s.is_success(), "{v}");
    // 900 keys with long names: a configuration far larger than a pipe's
    // buffer, so the writer meets the closed pipe.
    let mut csv = String::from("position,name,number\n");
    for i in 1..=900 {
        csv.push_str(&format!("{i},Key {i:03} {},2{i:03}\n", "x".repeat(80)));
    }
    let file = dir.path().join("keys.csv");
    std::fs::write(&file, csv).unwrap();
    let (code, out, err) = common::turret(
        dir.path(),
        &[
            "import",
            "dkm-keys",
            file.to_str().unwrap(),
            "--profile",
            "Desk",
        ],
        "",
    );
    assert_eq!(code, 0, "{out}{err}");
    let args = ["client", "--profile", "Desk", "--password-stdin", "config"];
    let (code, out, err) = common::turret(dir.path(), &args, "desk-pw-1\n");
    assert_eq!(code, 0, "{err}");
    assert!(
        out.len() > 100_000 && out.contains("Key 900"),
        "{}",
        out.len()
    );
    // `turret client ... config | head -c 10`: the pipe closes under it.
    let data = dir.path().to_path_buf();
    let (status, err) = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut child = std::process::Command::new(common::BIN)
            .args(args)
            .arg("--data-dir")
            .arg(&data)
            .env_remove("TURRET_CONFIG")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"desk-pw-1\n")
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let mut ten = [0u8; 10];
        out.read_exact(&mut ten).unwrap();
        drop(out);
        let o = child.wait_with_output().unwrap();
        (o.status, String::from_utf8_lossy(&o.stderr).into_owned())
    })
    .await
    .unwrap();
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(status.code(), Some(0), "{err}");
    server.stop();
}
