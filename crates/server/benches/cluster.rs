//! Scale-out on PostgreSQL (issue 19), each figure beside its baseline in
//! the same run:
//!
//! 1. contact search through the store, PostgreSQL beside SQLite (same
//!    contacts, same queries);
//! 2. audit appends per second: SQLite with one node, PostgreSQL with one
//!    node, PostgreSQL with two nodes writing at once (one chain, verified);
//! 3. an administrator's change pushed to the connected turrets: SQLite
//!    (one node) beside PostgreSQL with the turrets on the other node;
//! 4. failover of the lines: kill -9 of the node serving them, until the
//!    other has registered them all at Kamailio (p50, max over the
//!    trials), beside a planned stop (SIGTERM: the leases are given up).
//!
//! Run: `cargo bench -p openturret-server --bench cluster` (as root: it
//! starts a throwaway PostgreSQL cluster unless `TURRET_TEST_POSTGRES_URL`
//! names one). Sizes: `BENCH_CONTACTS`, `BENCH_QUERIES`, `BENCH_CLIENTS`,
//! `BENCH_ROUNDS`, `BENCH_TRIALS`; `BENCH_PARTS=search,audit,push,failover`.

#[path = "common/mod.rs"]
mod common;
#[allow(dead_code)]
#[path = "../tests/common/sip.rs"]
mod sip;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::turret::{Turret, connect_all, time_rounds};
use common::{Postgres, Rng, audit, ms, pct, word};
use openturret_domain::model::ContactFields;
use openturret_domain::number::NumberPlan;
use openturret_server::client::conn::Connection;
use openturret_store::keys::Keys;
use openturret_store::ledger::Ledger;
use openturret_store::postgres::PgStore;
use openturret_store::sqlite::SqliteStore;
use openturret_store::{GlobalContactQuery, Store};
use serde_json::json;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A store of each kind in `dir` (the same master key for both).
async fn sqlite_in(dir: &std::path::Path) -> SqliteStore {
    let keys = Keys::load_or_create(&dir.join("secret.key")).unwrap();
    let ledger = Ledger::open(&dir.join("ledger"), &dir.join("ledger.key")).unwrap();
    SqliteStore::open(&dir.join("turret.db"), keys, NumberPlan::default(), ledger)
        .await
        .unwrap()
}

async fn pg_in(dir: &std::path::Path, url: &str) -> PgStore {
    let keys = Keys::load_or_create(&dir.join("secret.key")).unwrap();
    let ledger = Ledger::open(&dir.join("ledger"), &dir.join("ledger.key")).unwrap();
    PgStore::connect(url, dir, keys, NumberPlan::default(), ledger)
        .await
        .unwrap()
}

#[tokio::main]
async fn main() {
    if std::env::var("BENCH_ROLE").as_deref() == Ok("baseline") {
        return common::turret::baseline_server().await;
    }
    let parts =
        std::env::var("BENCH_PARTS").unwrap_or_else(|_| "search,audit,push,failover".into());
    let pg = Postgres::start();
    if parts.contains("search") {
        search(&pg).await;
    }
    if parts.contains("audit") {
        audit_appends(&pg).await;
    }
    if parts.contains("push") {
        push(&pg).await;
    }
    if parts.contains("failover") {
        failover(&pg).await;
    }
}

/// 1. The same contacts and queries on both stores.
async fn search(pg: &Postgres) {
    let contacts = env("BENCH_CONTACTS", 200_000);
    let queries = env("BENCH_QUERIES", 2_000);
    let dir = tempfile::tempdir().unwrap();
    let lite = sqlite_in(dir.path()).await;
    let post = pg_in(dir.path(), &pg.database("bench_search")).await;
    let stores: [(&str, &dyn Store); 2] = [("SQLite", &lite), ("PostgreSQL", &post)];
    for (name, store) in stores {
        let t = Instant::now();
        let mut rng = Rng(0x5EED);
        let mut batch = Vec::with_capacity(50_000);
        for i in 0..contacts {
            let n = format!("{} {}", word(&mut rng, 3), word(&mut rng, 2));
            let number = format!("+44 20 7{:03} {:04}", rng.next_u64() % 1000, i % 10_000);
            batch.push(ContactFields::new(&n, &number, "", "").unwrap());
            if batch.len() == 50_000 || i + 1 == contacts {
                store
                    .insert_global_contacts(std::mem::take(&mut batch), audit())
                    .await
                    .unwrap();
            }
        }
        eprintln!(
            "{name}: seeded {contacts} contacts in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
    println!(
        "contact search through the store, {contacts} contacts, {queries} queries of each kind, limit 50"
    );
    println!(
        "{:<28} {:>10} {:>10} {:>10} {:>10} {:>9}",
        "", "SQLite p50", "p99", "PG p50", "p99", "p99 ×"
    );
    for kind in ["name, any word", "number prefix"] {
        let mut times: Vec<Vec<Duration>> = Vec::new();
        let mut rows: Vec<usize> = Vec::new();
        for (_, store) in stores {
            let mut rng = Rng(0xC0FFEE);
            let mut t = Vec::with_capacity(queries);
            let mut found = 0;
            for _ in 0..queries {
                let q = if kind.starts_with("name") {
                    GlobalContactQuery {
                        name: Some(word(&mut rng, 2)),
                        limit: 50,
                        ..Default::default()
                    }
                } else {
                    GlobalContactQuery {
                        number_prefix: Some(format!("44207{:02}", rng.next_u64() % 100)),
                        limit: 50,
                        ..Default::default()
                    }
                };
                let t0 = Instant::now();
                found += store.search_global_contacts(&q).await.unwrap().len();
                t.push(t0.elapsed());
            }
            t.sort();
            times.push(t);
            rows.push(found);
        }
        assert_eq!(rows[0], rows[1], "both stores find the same contacts");
        println!(
            "{:<28} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>8.2}×",
            kind,
            ms(pct(&times[0], 0.5)),
            ms(pct(&times[0], 0.99)),
            ms(pct(&times[1], 0.5)),
            ms(pct(&times[1], 0.99)),
            pct(&times[1], 0.99).as_secs_f64() / pct(&times[0], 0.99).as_secs_f64()
        );
    }
    post.close().await;
}

/// Appends for `secs` from `writers` tasks on each store; returns the count.
async fn appends(stores: &[Arc<dyn Store>], writers: usize, secs: u64) -> u64 {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for s in stores {
        for _ in 0..writers {
            let (s, stop, count) = (s.clone(), stop.clone(), count.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    s.append_audit(audit()).await.unwrap();
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    count.load(Ordering::Relaxed)
}

/// 2. Audit appends per second.
async fn audit_appends(pg: &Postgres) {
    let secs = 5;
    let dir = tempfile::tempdir().unwrap();
    let lite: Arc<dyn Store> = Arc::new(sqlite_in(dir.path()).await);
    let url = pg.database("bench_audit");
    let a_dir = tempfile::tempdir().unwrap();
    let a: Arc<dyn Store> = Arc::new(pg_in(a_dir.path(), &url).await);
    let b_dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        a_dir.path().join("secret.key"),
        b_dir.path().join("secret.key"),
    )
    .unwrap();
    let b: Arc<dyn Store> = Arc::new(pg_in(b_dir.path(), &url).await);
    let one_lite = appends(std::slice::from_ref(&lite), 8, secs).await;
    let one_pg = appends(std::slice::from_ref(&a), 8, secs).await;
    let two_pg = appends(&[a.clone(), b.clone()], 4, secs).await;
    let v = b.verify_audit().await.unwrap();
    assert_eq!(v.broken, None, "one chain after two nodes wrote at once");
    assert_eq!(v.verified as u64, one_pg + two_pg);
    println!("audit appends (one entry per transaction, 8 writers, {secs} s each)");
    let rate = |n: u64| n as f64 / secs as f64;
    println!("{:<44} {:>10.0}/s", "SQLite, one node", rate(one_lite));
    println!("{:<44} {:>10.0}/s", "PostgreSQL, one node", rate(one_pg));
    println!(
        "{:<44} {:>10.0}/s ({:.2}× one PostgreSQL node; chain of {} verified)",
        "PostgreSQL, two nodes at once (4 writers each)",
        rate(two_pg),
        two_pg as f64 / one_pg as f64,
        v.verified
    );
}

/// A further node on `first`'s database: its keys copied.
async fn joining(first: &Turret, url: &str, env: &[(&str, &str)]) -> Turret {
    let dir = tempfile::tempdir().unwrap();
    for f in ["secret.key", "ledger.key"] {
        std::fs::copy(first.dir().join(f), dir.path().join(f)).unwrap();
    }
    let mut all = vec![("TURRET_DATABASE__URL", url)];
    all.extend_from_slice(env);
    Turret::start_in(dir, &all, true).await
}

/// Rounds of an administrator's change on `edit`, timed until every
/// client connected to `clients` has it.
async fn push_rounds(edit: &Turret, clients: &Turret, n: usize, rounds: usize) -> Vec<Duration> {
    let p = edit
        .post(
            "/profiles",
            json!({"name": "Bench", "password": "bench-pw"}),
        )
        .await;
    let pid = p["id"].as_i64().unwrap();
    let mut first = Connection::connect(&clients.url, &clients.cert)
        .await
        .unwrap();
    let login = first
        .request(json!({"op": "login", "profile_id": pid, "password": "bench-pw"}))
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap().to_string();
    let (mut rx, _tasks) = connect_all(
        n,
        &clients.url,
        &clients.cert,
        json!({"op": "resume", "token": token}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    time_rounds(n, rounds, &mut rx, |k| async move {
        edit.post(
            &format!("/profiles/{pid}/speed-dials"),
            json!({"kind": "DKM", "position": k, "name": format!("round-{k}"), "number": "2001"}),
        )
        .await;
    })
    .await
}

/// 3. Push fan-out.
async fn push(pg: &Postgres) {
    let n = env("BENCH_CLIENTS", 500);
    let rounds = env("BENCH_ROUNDS", 20);
    let many = [("TURRET_HTTP__MAX_CONNECTIONS_PER_ADDRESS", "100000")];
    let lite = Turret::start(&many).await;
    let on_lite = push_rounds(&lite, &lite, n, rounds).await;
    drop(lite);
    let url = pg.database("bench_push");
    let a = Turret::start(&[("TURRET_DATABASE__URL", url.as_str()), many[0]]).await;
    let b = joining(&a, &url, &many).await;
    let across = push_rounds(&a, &b, n, rounds).await;
    println!(
        "an administrator's change pushed to {n} connected turrets, {rounds} rounds (until the last has it)"
    );
    println!("{:<52} {:>9} {:>9}", "", "p50 ms", "p99 ms");
    println!(
        "{:<52} {:>9.1} {:>9.1}",
        "SQLite, one node",
        ms(pct(&on_lite, 0.5)),
        ms(pct(&on_lite, 0.99))
    );
    println!(
        "{:<52} {:>9.1} {:>9.1}",
        "PostgreSQL, change on node A, turrets on node B",
        ms(pct(&across, 0.5)),
        ms(pct(&across, 0.99))
    );
    println!(
        "p99 ratio: {:.2}×",
        pct(&across, 0.99).as_secs_f64() / pct(&on_lite, 0.99).as_secs_f64()
    );
}

/// 4. Failover: how long until node B has registered every line of A.
async fn failover(pg: &Postgres) {
    let trials = env("BENCH_TRIALS", 10);
    let users = ["4101", "4102", "4103", "4104"];
    let mut crashed = Vec::new();
    let mut stopped = Vec::new();
    for trial in 0..trials * 2 {
        let planned = trial % 2 == 1;
        let pbx = sip::Kamailio::start("MD5", false);
        let url = pg.database(&format!("bench_failover_{trial}"));
        let mut a = Turret::start(&[("TURRET_DATABASE__URL", url.as_str())]).await;
        for u in users {
            a.post(
                "/lines",
                json!({"name": format!("Desk {u}"), "uri": format!("sip:{u}@127.0.0.1:{}", pbx.port),
                       "username": u, "password": sip::PBX_PASSWORD}),
            )
            .await;
        }
        let contacts = |t: &[(String, Vec<String>)], u: &str| {
            t.iter()
                .find(|(a, _)| a == u)
                .map(|(_, c)| c.clone())
                .unwrap_or_default()
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let a_port = loop {
            let t = pbx.location();
            if users.iter().all(|u| contacts(&t, u).len() == 1) {
                break contacts(&t, users[0])[0]
                    .rsplit(':')
                    .next()
                    .unwrap()
                    .to_string();
            }
            assert!(Instant::now() < deadline, "A did not register its lines");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let _b = joining(&a, &url, &[]).await;
        tokio::time::sleep(Duration::from_secs(4)).await;
        let t0 = Instant::now();
        if planned {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &a.pid().to_string()])
                .status();
        } else {
            a.kill();
        }
        loop {
            let t = pbx.location();
            let moved = users.iter().all(|u| {
                let c = contacts(&t, u);
                c.len() == 1 && !c[0].ends_with(&format!(":{a_port}"))
            });
            assert!(
                users.iter().all(|u| contacts(&t, u).len() <= 1),
                "two of our contacts for a line: {t:?}"
            );
            if moved {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "B did not take the lines"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let took = t0.elapsed();
        eprintln!(
            "trial {trial} ({}): {:.2} s",
            if planned { "SIGTERM" } else { "kill -9" },
            took.as_secs_f64()
        );
        if planned { &mut stopped } else { &mut crashed }.push(took);
        drop(a);
    }
    crashed.sort();
    stopped.sort();
    println!(
        "failover of 4 lines to the other node, {trials} trials each (until Kamailio has every line at B)"
    );
    println!("{:<40} {:>8} {:>8}", "", "p50 s", "max s");
    println!(
        "{:<40} {:>8.2} {:>8.2}",
        "kill -9 of the serving node",
        pct(&crashed, 0.5).as_secs_f64(),
        crashed.last().unwrap().as_secs_f64()
    );
    println!(
        "{:<40} {:>8.2} {:>8.2}",
        "planned stop (SIGTERM, leases given up)",
        pct(&stopped, 0.5).as_secs_f64(),
        stopped.last().unwrap().as_secs_f64()
    );
}
