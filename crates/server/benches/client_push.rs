//! A pushed update to 1,000 connected turret clients, and memory per
//! connected client.
//!
//! Runs the real `turret serve` in its own process, connects 1,000 clients
//! (one profile; one login, then `resume` on every connection), and times
//! how long after an administrator's change the *last* client has the new
//! configuration. The baseline is a bare broadcast WebSocket server (same
//! TLS listener code, same client code, a message of the same size), run by
//! this benchmark in a process of its own. Memory per client is the growth
//! of each server's resident set divided by the number of clients.
//!
//! Run: `cargo bench -p openturret-server --bench client_push`
//! (`BENCH_CLIENTS`, `BENCH_ROUNDS` change the sizes).

mod common;

use std::time::Duration;

use common::pct;
use common::turret::{
    Turret, baseline_message, baseline_server, connect_all, rss_kib, start_baseline, time_rounds,
};
use openturret_server::client::conn::Connection;
use serde_json::json;

#[tokio::main]
async fn main() {
    if std::env::var("BENCH_ROLE").as_deref() == Ok("baseline") {
        return baseline_server().await;
    }
    let n: usize = std::env::var("BENCH_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);

    // OpenTurret, the real binary.
    let t = Turret::start(&[]).await;
    let p = t
        .post(
            "/profiles",
            json!({"name": "Bench", "password": "bench-pw"}),
        )
        .await;
    let pid = p["id"].as_i64().unwrap();
    let mut first = Connection::connect(&t.url, &t.cert).await.unwrap();
    let login = first
        .request(json!({"op": "login", "profile_id": pid, "password": "bench-pw"}))
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap().to_string();
    let before = rss_kib(t.pid());
    let (mut rx, _tasks) =
        connect_all(n, &t.url, &t.cert, json!({"op": "resume", "token": token})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let turret_kib = rss_kib(t.pid()).saturating_sub(before);
    let turret = time_rounds(n, rounds, &mut rx, |k| {
        let t = &t;
        async move {
            t.post(
                &format!("/profiles/{pid}/speed-dials"),
                json!({"kind": "DKM", "position": k, "name": format!("round-{k}"), "number": "2001"}),
            )
            .await;
        }
    })
    .await;
    // The size of the pushed configuration, for the baseline's message.
    let config = first.request(json!({"op": "config"})).await.unwrap();
    let size = json!({"push": "config", "config": config})
        .to_string()
        .len();
    drop(t);

    // The baseline, in its own process.
    let (base, burl, bcert, bhttp) = start_baseline();
    let before = rss_kib(base.0.id());
    let (mut brx, _btasks) =
        connect_all(n, &burl, &bcert, json!({"op": "resume", "token": "x"})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base_kib = rss_kib(base.0.id()).saturating_sub(before);
    let baseline = time_rounds(n, rounds, &mut brx, |k| {
        let (bhttp, burl) = (&bhttp, &burl);
        async move {
            bhttp
                .post(format!("{burl}/trigger"))
                .body(baseline_message(k, size))
                .send()
                .await
                .unwrap();
        }
    })
    .await;

    println!("push to {n} connected clients, {rounds} rounds (message of {size} bytes)");
    println!(
        "{:<34} {:>12} {:>12} {:>16}",
        "", "p50 ms", "p99 ms", "KiB per client"
    );
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{:<34} {:>12.1} {:>12.1} {:>16.1}",
        "OpenTurret (admin change → all)",
        ms(pct(&turret, 0.5)),
        ms(pct(&turret, 0.99)),
        turret_kib as f64 / n as f64
    );
    println!(
        "{:<34} {:>12.1} {:>12.1} {:>16.1}",
        "bare broadcast WebSocket server",
        ms(pct(&baseline, 0.5)),
        ms(pct(&baseline, 0.99)),
        base_kib as f64 / n as f64
    );
    println!(
        "p99 ratio: {:.2}x",
        pct(&turret, 0.99).as_secs_f64() / pct(&baseline, 0.99).as_secs_f64()
    );
}
