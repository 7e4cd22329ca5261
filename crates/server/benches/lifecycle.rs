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
use openturret_store::{ContactStore, OnDuplicate};

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

    // 1. Import of 100,000 rows.
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("contacts.csv");
    let mut text = String::from("name,number,field3,field4\n");
    for i in 0..100_000 {
        text.push_str(&format!("Person {i},+44 20 7{i:07},desk {},\n", i % 9));
    }
    std::fs::write(&csv, &text).unwrap();
    let config = Config {
        data_dir: dir.path().join("data"),
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
    let ours = t.elapsed();
    assert_eq!(c.inserted, 100_000);
    let baseline_db = dir.path().join("baseline.db");
    sqlite3(
        &baseline_db,
        "CREATE TABLE t (name TEXT, number TEXT, field3 TEXT, field4 TEXT);",
    );
    let base = sqlite3(
        &baseline_db,
        &format!(".import --csv --skip 1 {} t", csv.display()),
    );
    // A second baseline doing the same work as ours in the database: the
    // same rows with their search keys already computed, into a table of
    // the same shape with the same two indexes.
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
        ])
        .unwrap();
    }
    w.flush().unwrap();
    let same_db = dir.path().join("same.db");
    sqlite3(
        &same_db,
        "PRAGMA journal_mode=WAL; CREATE TABLE g (id INTEGER PRIMARY KEY, name TEXT NOT NULL,
           name_key TEXT NOT NULL, number TEXT NOT NULL, number_key TEXT NOT NULL,
           field3 TEXT NOT NULL, field4 TEXT NOT NULL, created_at INTEGER NOT NULL,
           updated_at INTEGER NOT NULL);
         CREATE INDEX gn ON g(name_key, id); CREATE INDEX gk ON g(number_key, id);
         CREATE VIEW v AS SELECT name, name_key, number, number_key, field3, field4,
           created_at, updated_at FROM g;
         CREATE TRIGGER vi INSTEAD OF INSERT ON v BEGIN
           INSERT INTO g (name, name_key, number, number_key, field3, field4, created_at, updated_at)
           VALUES (NEW.name, NEW.name_key, NEW.number, NEW.number_key, NEW.field3, NEW.field4,
                   NEW.created_at, NEW.updated_at); END;",
    );
    let same = sqlite3(&same_db, &format!(".import --csv {} v", keyed.display()));
    println!("import of 100,000 contacts (CSV)");
    println!(
        "  turret import (validate, normalise, dedupe, all-or-nothing): {:8.3} s",
        ours.as_secs_f64()
    );
    println!(
        "  sqlite3 .import (raw rows, one table):                        {:8.3} s",
        base.as_secs_f64()
    );
    println!("  ratio: {:.2}x", ours.as_secs_f64() / base.as_secs_f64());
    println!(
        "  sqlite3 .import (keys given, our table and indexes, WAL):      {:8.3} s",
        same.as_secs_f64()
    );
    println!(
        "  ratio to the same work in sqlite3: {:.2}x",
        ours.as_secs_f64() / same.as_secs_f64()
    );
    store.close().await;

    // 2. Online backup of a large database, with the API under load.
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

    let mut idle = api_latencies(&client, &base_url, &token, 500).await;
    let out_dir = dir.path().join("backups");
    let store = prepared.store.clone();
    let data_dir = config.data_dir.clone();
    let t = Instant::now();
    let job = tokio::spawn(async move {
        backup::create(
            store,
            &data_dir,
            &out_dir,
            Secret::new("bench passphrase 01"),
        )
        .await
        .unwrap()
    });
    let mut during = Vec::new();
    while !job.is_finished() {
        during.extend(api_latencies(&client, &base_url, &token, 20).await);
    }
    let (file, _) = job.await.unwrap();
    let ours = t.elapsed();
    let size = std::fs::metadata(&file).unwrap().len();
    let base = sqlite3(
        &dir.path().join(startup::DB_FILE),
        &format!(".backup '{}'", dir.path().join("plain-copy.db").display()),
    );
    println!(
        "online backup of {contacts} contacts ({:.0} MB backup file)",
        size as f64 / 1e6
    );
    println!(
        "  turret backup (snapshot + argon2id + XChaCha20-Poly1305): {:8.3} s",
        ours.as_secs_f64()
    );
    println!(
        "  sqlite3 .backup (plain copy):                              {:8.3} s",
        base.as_secs_f64()
    );
    println!("  ratio: {:.2}x", ours.as_secs_f64() / base.as_secs_f64());
    let (i99, d99) = (pct(&mut idle, 0.99), pct(&mut during, 0.99));
    println!(
        "  API p99 idle {:.2} ms, during the backup {:.2} ms ({} requests): {:.2}x",
        i99.as_secs_f64() * 1e3,
        d99.as_secs_f64() * 1e3,
        during.len(),
        d99.as_secs_f64() / i99.as_secs_f64()
    );
}
