//! Data lifecycle speed, each beside its baseline in the same run:
//! - importing 100,000 contacts (CSV) against `sqlite3 .import` of the same
//!   file, and against `sqlite3 .import` doing the same database work (the
//!   rows with their search keys given, into a table of our shape with our
//!   two indexes, in WAL mode);
//! - an online, encrypted backup of a database of 1,000,000 contacts
//!   against `sqlite3 .backup`, and the admin API's p99 latency during the
//!   backup against its idle value.
//!
//! Run: `cargo bench -p openturret-server --bench lifecycle` (needs the
//! `sqlite3` tool; `BENCH_CONTACTS` changes the backup's size).

#[path = "common/mod.rs"]
mod common;
use common::*;

use std::process::Command;
use std::time::{Duration, Instant};

use openturret_domain::model::ContactFields;
use openturret_domain::number::NumberPlan;
use openturret_domain::secret::Secret;
use openturret_server::config::Config;
use openturret_server::transfer::{Format, import_global_contacts};
use openturret_server::{App, backup, serve, startup};
use openturret_store::OnDuplicate;

fn sqlite3(db: &std::path::Path, script: &str) -> Duration {
    let t = Instant::now();
    let out = Command::new("sqlite3")
        .arg(db)
        .arg(script)
        .output()
        .expect("the sqlite3 tool is needed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.elapsed()
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

async fn api_latencies(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    n: usize,
) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        let r = client
            .get(format!(
                "{base}/global-contacts?name=person%20{}&limit=20",
                i % 997
            ))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        let _ = r.bytes().await.unwrap();
        out.push(t.elapsed());
    }
    out
}

#[tokio::main]
async fn main() {
    let contacts: usize = std::env::var("BENCH_CONTACTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let part = std::env::var("BENCH_PART").unwrap_or_default();
    if part.is_empty() || part == "import" {
        import().await;
    }
    if part.is_empty() || part == "backup" {
        backup(contacts).await;
    }
}

/// Runs of each kind in the import part; medians are reported.
const IMPORT_RUNS: usize = 7;

/// Lets the previous run's writes reach the disk, so they do not land in
/// the next one.
async fn settle() {
    let _ = Command::new("sync").status();
    tokio::time::sleep(Duration::from_millis(300)).await;
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    pct(&mut v, 0.5)
}

/// Import of 100,000 rows: `IMPORT_RUNS` runs of each kind, interleaved
/// (which kind goes first alternates), each into a new database after a
/// `sync`.
async fn import() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("contacts.csv");
    let mut text = String::from("name,number,field3,field4\n");
    for i in 0..100_000 {
        text.push_str(&format!("Person {i},+44 20 7{i:07},desk {},\n", i % 9));
    }
    std::fs::write(&csv, &text).unwrap();
    // The second baseline does the same work as ours in the database: the
    // same rows with their search keys already computed, into tables of
    // the same shape with the same indexes (the contacts', and the words'
    // after the first), in WAL mode.
    let plan = NumberPlan::default();
    let keyed = dir.path().join("keyed.csv");
    let mut w = csv::Writer::from_path(&keyed).unwrap();
    for i in 0..100_000 {
        let (name, number) = (format!("Person {i}"), format!("+44 20 7{i:07}"));
        w.write_record([
            name.as_str(),
            &name.to_lowercase(),
            number.as_str(),
            &plan.key(&number),
            &format!("desk {}", i % 9),
            "",
            "1",
            "1",
            openturret_domain::words::word_keys(&name.to_lowercase())
                .next()
                .unwrap_or(""),
        ])
        .unwrap();
    }
    w.flush().unwrap();
    let (mut ours, mut folded, mut bare, mut same) = (vec![], vec![], vec![], vec![]);
    for run in 0..IMPORT_RUNS {
        let at = dir.path().join(format!("run{run}"));
        std::fs::create_dir(&at).unwrap();
        for kind in if run % 2 == 0 { [0, 1, 2] } else { [1, 0, 2] } {
            settle().await;
            match kind {
                0 => {
                    let config = Config {
                        data_dir: at.join("data"),
                        ..Config::default()
                    };
                    let store = startup::open_store(&config).await.unwrap();
                    let t = Instant::now();
                    let c = import_global_contacts(
                        store.as_ref(),
                        &NumberPlan::default(),
                        &csv,
                        Format::Csv,
                        OnDuplicate::Reject,
                        audit(),
                        |_| {},
                    )
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                    ours.push(t.elapsed());
                    assert_eq!(c.inserted, 100_000);
                    // Closing folds the WAL into the database file (the
                    // checkpoint that otherwise runs in the background).
                    store.close().await;
                    folded.push(t.elapsed());
                }
                1 => {
                    let db = at.join("baseline.db");
                    sqlite3(
                        &db,
                        "CREATE TABLE t (name TEXT, number TEXT, field3 TEXT, field4 TEXT);",
                    );
                    bare.push(sqlite3(
                        &db,
                        &format!(".import --csv --skip 1 {} t", csv.display()),
                    ));
                }
                _ => {
                    let db = at.join("same.db");
                    sqlite3(
                        &db,
                        "PRAGMA journal_mode=WAL; CREATE TABLE g (id INTEGER PRIMARY KEY,
                           name TEXT NOT NULL, name_key TEXT NOT NULL, number TEXT NOT NULL,
                           number_key TEXT NOT NULL, field3 TEXT NOT NULL,
                           field4 TEXT NOT NULL, created_at INTEGER NOT NULL,
                           updated_at INTEGER NOT NULL);
                         CREATE INDEX gn ON g(name_key, id); CREATE INDEX gk ON g(number_key, id);
                         CREATE TABLE w (contact_id INTEGER NOT NULL, key TEXT NOT NULL,
                           PRIMARY KEY (contact_id, key)) WITHOUT ROWID;
                         CREATE INDEX wk ON w(key, contact_id);
                         CREATE VIEW v AS SELECT name, name_key, number, number_key, field3,
                           field4, created_at, updated_at, '' AS word FROM g;
                         CREATE TRIGGER vi INSTEAD OF INSERT ON v BEGIN
                           INSERT INTO g (name, name_key, number, number_key, field3, field4,
                             created_at, updated_at)
                           VALUES (NEW.name, NEW.name_key, NEW.number, NEW.number_key,
                             NEW.field3, NEW.field4, NEW.created_at, NEW.updated_at);
                           INSERT INTO w (contact_id, key)
                             SELECT last_insert_rowid(), NEW.word WHERE NEW.word <> ''; END;",
                    );
                    same.push(sqlite3(
                        &db,
                        &format!(".import --csv {} v", keyed.display()),
                    ));
                }
            }
        }
    }
    let ratios: Vec<f64> = ours
        .iter()
        .zip(&bare)
        .map(|(o, b)| o.as_secs_f64() / b.as_secs_f64())
        .collect();
    let (lo, hi) = ratios
        .iter()
        .fold((f64::MAX, 0f64), |(l, h), r| (l.min(*r), h.max(*r)));
    let (ours, bare) = (median(&ours), median(&bare));
    println!("import of 100,000 contacts (CSV), medians of {IMPORT_RUNS} interleaved runs");
    println!(
        "  turret import (validate, normalise, dedupe, all-or-nothing):   {:8.3} s",
        ours.as_secs_f64()
    );
    println!(
        "  the same, until closed (WAL folded into the database file):   {:8.3} s",
        median(&folded).as_secs_f64()
    );
    println!(
        "  sqlite3 .import (raw rows, one table):                         {:8.3} s",
        bare.as_secs_f64()
    );
    println!(
        "  ratio: {:.2}x (runs: {lo:.2}x to {hi:.2}x)",
        ours.as_secs_f64() / bare.as_secs_f64()
    );
    let same = median(&same);
    println!(
        "  sqlite3 .import (keys given, our tables and indexes, WAL):      {:8.3} s",
        same.as_secs_f64()
    );
    println!(
        "  ratio to the same work in sqlite3: {:.2}x",
        ours.as_secs_f64() / same.as_secs_f64()
    );
}

/// Online backup of a large database, with the API under load.
async fn backup(contacts: usize) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    let prepared = startup::prepare(&config, "bench").await.unwrap();
    let mut batch = Vec::new();
    for i in 0..contacts {
        batch.push(
            ContactFields::new(
                &format!("Person {i}"),
                &format!("+44 20 7{:07}", i % 10_000_000),
                "",
                "",
            )
            .unwrap(),
        );
        if batch.len() == 100_000 || i + 1 == contacts {
            prepared
                .store
                .insert_global_contacts(std::mem::take(&mut batch), audit())
                .await
                .unwrap();
        }
    }
    let app = App::start(prepared.store.clone(), config.clone(), "bench".into())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("https://{}/api/v1", listener.local_addr().unwrap());
    tokio::spawn(serve(
        app.clone(),
        listener,
        prepared.tls.clone(),
        std::future::pending(),
    ));
    let cert = std::fs::read(dir.path().join("tls/cert.pem")).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&cert).unwrap())
        .build()
        .unwrap();
    let otp = prepared
        .first_admin_password
        .as_ref()
        .unwrap()
        .expose()
        .to_string();
    let v: serde_json::Value = client
        .post(format!("{base_url}/auth/login"))
        .json(&serde_json::json!({"username": "admin", "password": otp}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let v: serde_json::Value = client
        .post(format!("{base_url}/auth/password"))
        .bearer_auth(v["token"].as_str().unwrap())
        .json(&serde_json::json!({"current_password": otp, "new_password": "bench-password-01"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = v["token"].as_str().unwrap().to_string();

    // Every run starts with the disk's write-back done (the runs write
    // 139 MB each), so that one run's flush does not land in the next.
    println!("online backup of {contacts} contacts");
    // Runs `job` while the bench keeps calling the API; returns its time,
    // the API's latencies meanwhile, and the API's latencies just before
    // (idle: as many requests), so that each run is compared with the
    // machine's state of the moment.
    struct Run<T> {
        time: Duration,
        idle: Vec<Duration>,
        during: Vec<Duration>,
        out: T,
    }
    async fn under_load<T: Send + 'static>(
        client: &reqwest::Client,
        base_url: &str,
        token: &str,
        job: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Run<T> {
        settle().await;
        let idle = api_latencies(client, base_url, token, 1000).await;
        let t = Instant::now();
        let job = tokio::spawn(job);
        let mut during = Vec::new();
        while !job.is_finished() {
            during.extend(api_latencies(client, base_url, token, 10).await);
        }
        let time = t.elapsed();
        let out = job.await.unwrap();
        Run {
            time,
            idle,
            during,
            out,
        }
    }
    let db = dir.path().join(startup::DB_FILE);
    let copy = dir.path().join("plain-copy.db");
    let plain = |db: std::path::PathBuf, copy: std::path::PathBuf| async move {
        let _ = std::fs::remove_file(&copy);
        tokio::task::spawn_blocking(move || sqlite3(&db, &format!(".backup '{}'", copy.display())))
            .await
            .unwrap()
    };
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    // Pools runs: the median time, and the p99 of all their requests
    // during against the p99 of all their requests just before.
    let report = |what: &str, runs: Vec<Run<u64>>, base: Option<Duration>| {
        let time = median(runs.iter().map(|r| r.time).collect());
        let mut idle: Vec<Duration> = runs.iter().flat_map(|r| r.idle.clone()).collect();
        let mut during: Vec<Duration> = runs.iter().flat_map(|r| r.during.clone()).collect();
        let (i99, d99) = (pct(&mut idle, 0.99), pct(&mut during, 0.99));
        println!(
            "  {what:<40} {:7.3} s  {:5.2}x   API p99 {:5.2} ms against {:5.2} ms idle: {:5.2}x  ({} requests)",
            time.as_secs_f64(),
            time.as_secs_f64() / base.unwrap_or(time).as_secs_f64(),
            d99.as_secs_f64() * 1e3,
            i99.as_secs_f64() * 1e3,
            d99.as_secs_f64() / i99.as_secs_f64(),
            during.len()
        );
        time
    };
    // Under a passphrase, the first backup of a process derives its key
    // (argon2id) and later ones reuse it; under the installation's backup
    // key, no backup derives anything.
    let take = |n: usize, keyed: bool| {
        let (store, data_dir) = (prepared.store.clone(), config.data_dir.clone());
        let out_dir = dir.path().join(format!("backups-{n}"));
        async move {
            let protect = match keyed {
                true => backup::Protection::Key(backup::load_key(&data_dir).unwrap().unwrap()),
                false => backup::Protection::Passphrase(Secret::new("bench passphrase 01")),
            };
            let (file, _) = backup::create(store, &data_dir, &out_dir, protect)
                .await
                .unwrap();
            let size = std::fs::metadata(&file).unwrap().len();
            std::fs::remove_file(&file).unwrap();
            size
        }
    };
    let loaded_copy = |db: std::path::PathBuf, copy: std::path::PathBuf| async move {
        plain(db, copy).await;
        0u64
    };
    // The kinds of run are interleaved, so that the machine's drift over
    // the bench (it slows as the runs go on) falls on all of them alike.
    let first = under_load(&client, &base_url, &token, take(0, false)).await;
    let size = first.out;
    let t = Instant::now();
    backup::set_key(&config.data_dir, Secret::new("bench key passphrase"))
        .await
        .unwrap();
    let key_setup = t.elapsed();
    let (mut quiet, mut alone) = (Vec::new(), Vec::new());
    for n in 0..3 {
        settle().await;
        quiet.push(plain(db.clone(), copy.clone()).await);
        settle().await;
        let t = Instant::now();
        take(100 + n, true).await;
        alone.push(t.elapsed());
    }
    let (quiet, alone) = (median(quiet), median(alone));
    let (mut copies, mut kept, mut keyed) = (Vec::new(), Vec::new(), Vec::new());
    for n in 1..=5 {
        let job = loaded_copy(db.clone(), copy.clone());
        copies.push(under_load(&client, &base_url, &token, job).await);
        // Which of the two comes first alternates too: the run right after
        // the sqlite3 copy is measurably faster.
        for keyed_now in [n % 2 == 0, n % 2 == 1] {
            let run = under_load(
                &client,
                &base_url,
                &token,
                take(10 * n + keyed_now as usize, keyed_now),
            )
            .await;
            if keyed_now {
                keyed.push(run);
            } else {
                kept.push(run);
            }
        }
    }
    println!(
        "  sqlite3 .backup, no API load (median of 3):      {:7.3} s",
        quiet.as_secs_f64()
    );
    println!(
        "  turret, backup key, no API load (median of 3):   {:7.3} s  {:5.2}x",
        alone.as_secs_f64(),
        alone.as_secs_f64() / quiet.as_secs_f64()
    );
    println!("  under the API load (medians of 5; p99 of all their requests):");
    let loaded = report("sqlite3 .backup", copies, None);
    report("turret, passphrase (key kept)", kept, Some(loaded));
    report("turret, backup key", keyed, Some(loaded));
    report(
        "turret, passphrase, first (derives its key)",
        vec![first],
        Some(loaded),
    );
    println!(
        "  (setting up the backup key, once: {:.3} s; {:.0} MB backup file; ratios of time to sqlite3 .backup under the same load, of p99 to the p99 just before)",
        key_setup.as_secs_f64(),
        size as f64 / 1e6
    );
}
