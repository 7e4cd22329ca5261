//! `kill -9` at random moments during import, backup and restore, 20 times
//! each: every acknowledged write is still there, the database passes
//! `PRAGMA integrity_check`, `turret audit verify` passes, an import is
//! there whole or not at all, and no clear copy of the data is left behind.
//! (Set `CRASH_ROUNDS` for a longer run, `CRASH_SEED` to replay one.)

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn spawn(dir: &std::path::Path, args: &[&str], stdin: &str) -> std::process::Child {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env("TURRET_LOG", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child
}

/// Runs `args` and kills it with SIGKILL after a random delay.
fn kill_during(dir: &std::path::Path, args: &[&str], stdin: &str, rng: &mut Lcg, max_ms: u64) {
    let mut child = spawn(dir, args, stdin);
    let until = Instant::now() + Duration::from_millis(rng.below(max_ms));
    while Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// After a crash: the next open completes or discards what was cut short.
fn check(dir: &std::path::Path, what: &str, round: u32) {
    let (code, out, err) = turret(dir, &["audit", "verify"], "");
    assert_eq!(code, 0, "{what} round {round}: audit verify: {out}{err}");
    let db = dir.join("turret.db");
    assert_eq!(
        sqlite3(&db, "PRAGMA integrity_check").trim(),
        "ok",
        "{what} round {round}"
    );
    assert_eq!(
        sqlite3(&db, "SELECT COUNT(*) FROM profiles").trim(),
        "3",
        "{what} round {round}: acknowledged profiles"
    );
    assert_eq!(
        sqlite3(&db, "SELECT COUNT(*) FROM local_contacts").trim(),
        "3",
        "{what} round {round}"
    );
    let globals = sqlite3(&db, "SELECT COUNT(*) FROM global_contacts");
    assert!(
        ["0", "20000"].contains(&globals.trim()),
        "{what} round {round}: an import is whole or absent, found {globals}"
    );
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(
            !(name.starts_with("backup-")
                || name.starts_with("restore-")
                || name.starts_with("import-")),
            "{what} round {round}: {name} was left behind"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_import_backup_and_restore_loses_nothing_acknowledged() {
    let rounds: u32 = std::env::var("CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("CRASH_SEED={seed}");
    let mut rng = Lcg(seed);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (server, api) = fresh(d).await;
    for i in 0..3 {
        let (_, p) = api
            .post(
                "/api/v1/profiles",
                json!({"name": format!("Acked {i}"), "password": "pw-pw"}),
            )
            .await;
        let (s, _) = api
            .post(
                &format!("/api/v1/profiles/{}/contacts", p["id"]),
                json!({"name": "C", "number": format!("{i}")}),
            )
            .await;
        assert_eq!(s, reqwest::StatusCode::CREATED);
    }
    server.stop();
    let csv = d.join("big.csv");
    let mut text = String::from("name,number\n");
    for i in 0..20_000 {
        text.push_str(&format!("Person {i},+44 20 7{i:07}\n"));
    }
    std::fs::write(&csv, text).unwrap();
    let csv = csv.to_str().unwrap().to_string();

    tokio::task::block_in_place(|| {
        for round in 0..rounds {
            kill_during(
                d,
                &[
                    "import",
                    "global-contacts",
                    &csv,
                    "--on-duplicate",
                    "update",
                ],
                "",
                &mut rng,
                1500,
            );
            check(d, "import", round);
        }
        let pass = "crash passphrase 01\n";
        for round in 0..rounds {
            kill_during(
                d,
                &["backup", "create", "--passphrase-stdin"],
                pass,
                &mut rng,
                1500,
            );
            check(d, "backup", round);
        }
        // A complete backup to restore from.
        let (code, out, err) = turret(d, &["backup", "create", "--passphrase-stdin"], pass);
        assert_eq!(code, 0, "{out}{err}");
        let file = out
            .split_whitespace()
            .find(|w| w.ends_with(".otb"))
            .unwrap()
            .to_string();
        for round in 0..rounds {
            kill_during(
                d,
                &["backup", "restore", &file, "--passphrase-stdin"],
                pass,
                &mut rng,
                2500,
            );
            check(d, "restore", round);
        }
        // Every backup file that exists is whole.
        for (path, _) in openturret_server::backup::list(&d.join("backups")).unwrap() {
            let (code, out, err) = turret(
                d,
                &[
                    "backup",
                    "verify",
                    path.to_str().unwrap(),
                    "--passphrase-stdin",
                ],
                pass,
            );
            assert_eq!(code, 0, "{}: {out}{err}", path.display());
        }
    });
}
