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

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openturret_server::client::conn::Connection;
use serde_json::{Value, json};
use tokio::sync::mpsc;

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Reads lines of a child's stdout until `prefix` starts one; returns the
/// rest of that line, and every line read.
fn wait_line(child: &mut Child, prefixes: &[&str]) -> Vec<String> {
    let out = child.stdout.as_mut().unwrap();
    let mut reader = BufReader::new(out);
    let mut lines = Vec::new();
    let mut seen = 0;
    while seen < prefixes.len() {
        let mut l = String::new();
        if reader.read_line(&mut l).unwrap() == 0 {
            panic!("child exited early: {lines:?}");
        }
        if prefixes.iter().any(|p| l.trim().starts_with(p)) {
            seen += 1;
        }
        lines.push(l.trim().to_string());
    }
    lines
}

struct Killer(Child);
impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Connects `n` clients with `setup` and spawns a reader per client that
/// reports (client, round) when a message naming `round-K` arrives.
async fn connect_all(
    n: usize,
    url: &str,
    cert: &[u8],
    setup: Value,
) -> (
    mpsc::UnboundedReceiver<usize>,
    Vec<tokio::task::JoinHandle<()>>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    let cert = Arc::new(cert.to_vec());
    for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
        let mut batch = Vec::new();
        for _ in chunk {
            let (url, cert, setup) = (url.to_string(), cert.clone(), setup.clone());
            batch.push(tokio::spawn(async move {
                let mut c = Connection::connect(&url, &cert).await.unwrap();
                c.request(setup).await.unwrap();
                c
            }));
        }
        for b in batch {
            let mut c = b.await.unwrap();
            let tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(text) = c.next_text(Duration::from_secs(120)).await {
                    if let Some(i) = text.rfind("round-") {
                        let k: usize = text[i + 6..]
                            .chars()
                            .take_while(|c| c.is_ascii_digit())
                            .collect::<String>()
                            .parse()
                            .unwrap_or(0);
                        if tx.send(k).is_err() {
                            break;
                        }
                    }
                }
            }));
        }
    }
    (rx, tasks)
}

/// Times `rounds` broadcasts: `trigger(k)` starts round k; the round ends
/// when all `n` clients reported it.
async fn time_rounds<F, Fut>(
    n: usize,
    rounds: usize,
    rx: &mut mpsc::UnboundedReceiver<usize>,
    trigger: F,
) -> Vec<Duration>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut out = Vec::new();
    for k in 1..=rounds {
        let t0 = Instant::now();
        trigger(k).await;
        let mut got = 0;
        while got < n {
            let r = tokio::time::timeout(Duration::from_secs(60), rx.recv())
                .await
                .expect("all clients get the push")
                .unwrap();
            if r == k {
                got += 1;
            }
        }
        out.push(t0.elapsed());
    }
    out.sort();
    out
}

/// The bare broadcast WebSocket server: answers every request with an
/// empty `ok` and forwards whatever `/trigger` receives to every client.
async fn baseline_server() {
    use axum::Router;
    use axum::extract::State;
    use axum::extract::ws::{Message, WebSocketUpgrade};
    use axum::routing::{any, post};
    let dir = tempfile::tempdir().unwrap();
    let (tls, _) =
        openturret_server::tls::server_config(&Default::default(), dir.path(), "localhost")
            .unwrap();
    let (tx, _) = tokio::sync::broadcast::channel::<String>(1024);
    let app = Router::new()
        .route(
            "/client",
            any(|ws: WebSocketUpgrade, State(tx): State<tokio::sync::broadcast::Sender<String>>| async move {
                ws.write_buffer_size(0).on_upgrade(move |mut socket| async move {
                    let mut rx = tx.subscribe();
                    loop {
                        tokio::select! {
                            m = socket.recv() => match m {
                                Some(Ok(Message::Text(t))) => {
                                    let id: Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                                    let reply = json!({"re": id["id"], "ok": {}}).to_string();
                                    if socket.send(Message::Text(reply.into())).await.is_err() { break; }
                                }
                                Some(Ok(_)) => {}
                                _ => break,
                            },
                            b = rx.recv() => match b {
                                Ok(text) => if socket.send(Message::Text(text.into())).await.is_err() { break; },
                                Err(_) => break,
                            }
                        }
                    }
                })
            }),
        )
        .route("/trigger", post(|State(tx): State<tokio::sync::broadcast::Sender<String>>, body: String| async move {
            let _ = tx.send(body);
        }))
        .with_state(tx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("listening https://{}", listener.local_addr().unwrap());
    println!("cert {}", dir.path().join("tls/cert.pem").display());
    let listener = openturret_server::tls::TlsListener::new(listener, tls).unwrap();
    let service = app.into_make_service_with_connect_info::<openturret_server::tls::ClientAddr>();
    axum::serve(listener, service).await.unwrap();
}

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
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_turret"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--sip-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("TURRET_LOG", "error")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut server = Killer(child);
    let lines = wait_line(&mut server.0, &["portal:", "one-time password:"]);
    let url = lines
        .iter()
        .find_map(|l| l.strip_prefix("portal:"))
        .unwrap()
        .trim()
        .trim_end_matches('/')
        .to_string();
    let otp = lines
        .iter()
        .find_map(|l| l.strip_prefix("one-time password:"))
        .unwrap()
        .trim()
        .to_string();
    let cert = std::fs::read(dir.path().join("tls/cert.pem")).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&cert).unwrap())
        .build()
        .unwrap();
    let post = |path: &str, token: Option<&str>, body: Value| {
        let mut r = http.post(format!("{url}/api/v1{path}")).json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    let v: Value = post(
        "/auth/login",
        None,
        json!({"username": "admin", "password": otp}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let v: Value = post(
        "/auth/password",
        v["token"].as_str(),
        json!({"current_password": otp, "new_password": "bench-password-01"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let admin = v["token"].as_str().unwrap().to_string();
    let p: Value = post(
        "/profiles",
        Some(&admin),
        json!({"name": "Bench", "password": "bench-pw"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let pid = p["id"].as_i64().unwrap();
    let mut first = Connection::connect(&url, &cert).await.unwrap();
    let login = first
        .request(json!({"op": "login", "profile_id": pid, "password": "bench-pw"}))
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap().to_string();
    let before = rss_kib(server.0.id());
    let (mut rx, _tasks) =
        connect_all(n, &url, &cert, json!({"op": "resume", "token": token})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let turret_kib = rss_kib(server.0.id()).saturating_sub(before);
    let admin_ref = &admin;
    let turret = time_rounds(n, rounds, &mut rx, |k| {
        let post = &post;
        async move {
            let r = post(&format!("/profiles/{pid}/speed-dials"), Some(admin_ref),
                json!({"kind": "DKM", "position": k, "name": format!("round-{k}"), "number": "2001"})).await.unwrap();
            assert!(r.status().is_success());
        }
    })
    .await;
    // The size of the pushed configuration, for the baseline's message.
    let config = first.request(json!({"op": "config"})).await.unwrap();
    let size = json!({"push": "config", "config": config})
        .to_string()
        .len();
    drop(server);

    // The baseline, in its own process.
    let child = Command::new(std::env::current_exe().unwrap())
        .env("BENCH_ROLE", "baseline")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut base = Killer(child);
    let lines = wait_line(&mut base.0, &["listening", "cert"]);
    let burl = lines
        .iter()
        .find_map(|l| l.strip_prefix("listening "))
        .unwrap()
        .to_string();
    let bcert = std::fs::read(lines.iter().find_map(|l| l.strip_prefix("cert ")).unwrap()).unwrap();
    let bhttp = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&bcert).unwrap())
        .build()
        .unwrap();
    let before = rss_kib(base.0.id());
    let (mut brx, _btasks) =
        connect_all(n, &burl, &bcert, json!({"op": "resume", "token": "x"})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base_kib = rss_kib(base.0.id()).saturating_sub(before);
    let baseline = time_rounds(n, rounds, &mut brx, |k| {
        let (bhttp, burl) = (&bhttp, &burl);
        async move {
            let head = format!("{{\"push\":\"config\",\"round\":\"round-{k}\",\"pad\":\"");
            let body = format!(
                "{head}{}\"}}",
                "x".repeat(size.saturating_sub(head.len() + 2))
            );
            bhttp
                .post(format!("{burl}/trigger"))
                .body(body)
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
