//! Global-contact search over 1,000,000 contacts: the admin API (HTTPS,
//! authentication, JSON) against a direct indexed SQLite query on the same
//! database file, in the same run. Prints p50 and p99 of each and their
//! ratio. The name search is the API's `q`, which finds the beginning of
//! any word of a name (both words of the seeded names); its baseline is the
//! plain range query over the names' first words.
//!
//! Run: `cargo bench -p openturret-server --bench contact_search`
//! (`BENCH_CONTACTS` and `BENCH_QUERIES` change the sizes).

#[path = "common/mod.rs"]
mod common;
use common::*;

use std::str::FromStr;
use std::time::Instant;

use openturret_domain::model::ContactFields;
use openturret_server::config::Config;
use openturret_server::{App, serve, startup};
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

#[tokio::main]
async fn main() {
    let contacts: usize = std::env::var("BENCH_CONTACTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let queries: usize = std::env::var("BENCH_QUERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    let prepared = startup::prepare(&config, "bench").await.unwrap();

    let t = Instant::now();
    let mut rng = Rng(0x5EED);
    let mut batch = Vec::with_capacity(100_000);
    for i in 0..contacts {
        let name = format!("{} {}", word(&mut rng, 3), word(&mut rng, 2));
        let number = format!("+44 20 7{:03} {:04}", rng.next_u64() % 1000, i % 10_000);
        batch.push(ContactFields::new(&name, &number, "", "").unwrap());
        if batch.len() == 100_000 || i + 1 == contacts {
            prepared
                .store
                .insert_global_contacts(std::mem::take(&mut batch), audit())
                .await
                .unwrap();
        }
    }
    eprintln!(
        "seeded {contacts} global contacts in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = App::start(prepared.store.clone(), config.clone(), "bench".into())
        .await
        .unwrap();
    tokio::spawn(serve(
        app,
        listener,
        prepared.tls.clone(),
        std::future::pending(),
    ));
    let cert = std::fs::read(dir.path().join("tls/cert.pem")).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&cert).unwrap())
        .build()
        .unwrap();
    let base = format!("https://{addr}/api/v1");
    let otp = prepared
        .first_admin_password
        .as_ref()
        .unwrap()
        .expose()
        .to_string();
    let login = |pw: String| {
        let client = client.clone();
        let base = base.clone();
        async move {
            let v: serde_json::Value = client
                .post(format!("{base}/auth/login"))
                .json(&serde_json::json!({"username": "admin", "password": pw}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["token"].as_str().unwrap().to_string()
        }
    };
    let tok = login(otp.clone()).await;
    client
        .post(format!("{base}/auth/password"))
        .bearer_auth(&tok)
        .json(&serde_json::json!({"current_password": otp, "new_password": "bench-password-01"}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let token = login("bench-password-01".into()).await;

    // The baseline: the same indexed range query, straight on the file.
    let opts = SqliteConnectOptions::from_str("sqlite:")
        .unwrap()
        .filename(dir.path().join(startup::DB_FILE))
        .read_only(true);
    let direct = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await
        .unwrap();

    println!("global-contact search over {contacts} contacts, {queries} queries each, 50 per page");
    println!(
        "{:<16} {:>11} {:>11} {:>14} {:>14} {:>10}",
        "search", "API p50 ms", "API p99 ms", "direct p50 ms", "direct p99 ms", "p99 ratio"
    );
    for (label, key) in [
        ("name, any word", "name_key"),
        ("number prefix", "number_key"),
    ] {
        let mut rng = Rng(0xC0FFEE);
        let terms: Vec<String> = (0..queries)
            .map(|_| match key {
                "name_key" => word(&mut rng, 1) + &SYLLABLES[(rng.next_u64() % 16) as usize][..1],
                _ => format!("+44 20 7{:03}", rng.next_u64() % 1000),
            })
            .collect();
        let param = if key == "name_key" { "q" } else { "number" };
        let mut api = Vec::with_capacity(queries);
        let mut rows_seen = 0usize;
        for term in &terms {
            let t = Instant::now();
            let res = client
                .get(format!("{base}/global-contacts"))
                .query(&[(param, term.as_str()), ("limit", "50")])
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            let v: serde_json::Value = res.json().await.unwrap();
            api.push(t.elapsed());
            rows_seen += v["items"].as_array().unwrap().len();
        }
        let mut db = Vec::with_capacity(queries);
        let mut direct_rows = 0usize;
        for term in &terms {
            let k = if key == "name_key" {
                term.to_lowercase()
            } else {
                term.chars().filter(char::is_ascii_digit).collect()
            };
            let sql = format!(
                "SELECT id, name, number, field3, field4 FROM global_contacts WHERE {key} >= ? AND {key} < ? ORDER BY {key}, id LIMIT 50"
            );
            let t = Instant::now();
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&k)
                .bind(format!("{k}\u{10FFFF}"))
                .fetch_all(&direct)
                .await
                .unwrap();
            let names: Vec<String> = rows.iter().map(|r| r.get("name")).collect();
            db.push(t.elapsed());
            direct_rows += names.len();
        }
        assert_eq!(rows_seen, direct_rows, "both paths return the same rows");
        api.sort();
        db.sort();
        let (a50, a99, d50, d99) = (
            pct(&api, 0.5),
            pct(&api, 0.99),
            pct(&db, 0.5),
            pct(&db, 0.99),
        );
        println!(
            "{label:<16} {:>11.3} {:>11.3} {:>14.3} {:>14.3} {:>9.1}x",
            ms(a50),
            ms(a99),
            ms(d50),
            ms(d99),
            a99.as_secs_f64() / d99.as_secs_f64()
        );
    }
}
