//! Caller identification over 1,000,000 global and 1,000 local contacts:
//! the in-memory index against an indexed SQLite query on the same data
//! (local first, then global, as the index does), in the same run.
//!
//! Run: `cargo bench -p openturret-server --bench caller_id`
//! (`BENCH_CONTACTS`, `BENCH_LOOKUPS` change the sizes).

#[path = "common/mod.rs"]
mod common;
use common::*;

use std::str::FromStr;
use std::time::{Duration, Instant};

use openturret_domain::ProfileId;
use openturret_domain::model::{CallMemoryKeys, ContactFields, NewProfile, ProfileFlags};
use openturret_domain::number::NumberPlan;
use openturret_domain::secret::PasswordHash;
use openturret_server::callerid::CallerId;
use openturret_server::config::Config;
use openturret_server::startup;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[tokio::main]
async fn main() {
    let contacts: u64 = std::env::var("BENCH_CONTACTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let lookups: usize = std::env::var("BENCH_LOOKUPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    config.numbers.country_code = Some("44".into());
    let store = startup::open_store(&config).await.unwrap();
    let plan = NumberPlan {
        country_code: Some("44".into()),
    };

    // Global contacts: +44 20 7xxx xxxx, numbered so that half the lookups hit.
    let t = Instant::now();
    let mut batch = Vec::new();
    for i in 0..contacts {
        batch.push(
            ContactFields::new(
                &format!("Global {i}"),
                &format!("+44 20 7{:07}", i * 2),
                "",
                "",
            )
            .unwrap(),
        );
        if batch.len() == 100_000 || i + 1 == contacts {
            store
                .insert_global_contacts(std::mem::take(&mut batch), audit())
                .await
                .unwrap();
        }
    }
    let profile = store
        .create_profile(
            NewProfile {
                name: "Bench".into(),
                password: PasswordHash::from_phc("x".into()),
                contacts_password: None,
                call_memory_password: None,
                flags: ProfileFlags::default(),
                call_memory_keys: CallMemoryKeys::default(),
            },
            audit(),
        )
        .await
        .unwrap();
    for i in 0..1000u64 {
        let f = ContactFields::new(&format!("Local {i}"), &format!("020 7{:07}", i * 4), "", "")
            .unwrap();
        store
            .create_local_contact(profile.id, f, audit())
            .await
            .unwrap();
    }
    eprintln!(
        "seeded {contacts} global and 1000 local contacts in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let index = CallerId::new(plan.clone());
    index.load(store.as_ref()).await.unwrap();
    eprintln!(
        "index loaded in {:.2} s ({} global)",
        t.elapsed().as_secs_f64(),
        index.global_len()
    );

    let mut rng = Rng(0xCA11);
    let numbers: Vec<String> = (0..lookups)
        .map(|_| format!("020 7{:07}", rng.next_u64() % (contacts * 2)))
        .collect();

    // The index.
    let pid = ProfileId(profile.id.0);
    let mut mem = Vec::with_capacity(lookups);
    let mut hits_mem = 0;
    for n in &numbers {
        let t = Instant::now();
        let r = index.lookup(pid, n);
        mem.push(t.elapsed());
        hits_mem += r.is_some() as usize;
    }

    // The baseline: two indexed queries on the same database file.
    let opts = SqliteConnectOptions::from_str("sqlite:")
        .unwrap()
        .filename(dir.path().join(startup::DB_FILE))
        .read_only(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await
        .unwrap();
    let mut sql = Vec::with_capacity(lookups);
    let mut hits_sql = 0;
    for n in &numbers {
        let t = Instant::now();
        let key = plan.key(n);
        let mut name: Option<String> = sqlx::query_scalar("SELECT name FROM local_contacts WHERE profile_id = ? AND number_key = ? ORDER BY id LIMIT 1")
            .bind(pid.0)
            .bind(&key)
            .fetch_optional(&pool)
            .await
            .unwrap();
        if name.is_none() {
            name = sqlx::query_scalar(
                "SELECT name FROM global_contacts WHERE number_key = ? ORDER BY id LIMIT 1",
            )
            .bind(&key)
            .fetch_optional(&pool)
            .await
            .unwrap();
        }
        sql.push(t.elapsed());
        hits_sql += name.is_some() as usize;
    }
    assert_eq!(hits_mem, hits_sql, "both find the same names");
    mem.sort();
    sql.sort();
    println!(
        "caller-id lookup over {contacts} global + 1000 local contacts, {lookups} lookups ({} hits)",
        hits_mem
    );
    println!("{:<22} {:>10} {:>10}", "", "p50 µs", "p99 µs");
    println!(
        "{:<22} {:>10.2} {:>10.2}",
        "in-memory index",
        us(pct(&mem, 0.5)),
        us(pct(&mem, 0.99))
    );
    println!(
        "{:<22} {:>10.2} {:>10.2}",
        "indexed SQLite query",
        us(pct(&sql, 0.5)),
        us(pct(&sql, 0.99))
    );
    println!(
        "speed-up at p99: {:.0}x",
        pct(&sql, 0.99).as_secs_f64() / pct(&mem, 0.99).as_secs_f64()
    );
}
