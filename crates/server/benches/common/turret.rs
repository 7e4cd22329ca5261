//! Running the real `turret serve` for a benchmark, and the bare broadcast
//! WebSocket server the push benchmarks compare it with.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openturret_server::client::conn::Connection;
use serde_json::{Value, json};
use tokio::sync::mpsc;

pub fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Reads lines of a child's stdout until `prefix` starts one; returns the
/// rest of that line, and every line read.
pub fn wait_line(child: &mut Child, prefixes: &[&str]) -> Vec<String> {
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

pub struct Killer(pub Child);
impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Connects `n` clients with `setup` and spawns a reader per client that
/// reports (client, round) when a message naming `round-K` arrives.
pub async fn connect_all(
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
pub async fn time_rounds<F, Fut>(
    n: usize,
    rounds: usize,
    rx: &mut mpsc::UnboundedReceiver<usize>,
    trigger: F,
) -> Vec<Duration>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    time_rounds_after(n, rounds, rx, |_| async { false }, trigger).await
}

/// As [`time_rounds`], with `before(k)` run untimed ahead of each round
/// (then a pause, and whatever the clients reported meanwhile dropped).
pub async fn time_rounds_after<B, BFut, F, Fut>(
    n: usize,
    rounds: usize,
    rx: &mut mpsc::UnboundedReceiver<usize>,
    before: B,
    trigger: F,
) -> Vec<Duration>
where
    B: Fn(usize) -> BFut,
    BFut: std::future::Future<Output = bool>,
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut out = Vec::new();
    for k in 1..=rounds {
        if before(k).await {
            tokio::time::sleep(Duration::from_millis(300)).await;
            while rx.try_recv().is_ok() {}
        }
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
pub async fn baseline_server() {
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
    // The same connection handling as the System Manager's (and, like
    // it here, no per-address limit in the way of 1,000 local clients).
    let http = openturret_server::config::HttpConfig {
        max_connections_per_address: 100_000,
        ..Default::default()
    };
    openturret_server::net::serve_router(
        app.into(),
        listener,
        tls,
        &http,
        None,
        std::future::pending(),
        || {},
    )
    .await
    .unwrap();
}

/// `turret serve` in its own process on 127.0.0.1 (HTTPS and SIP on free
/// ports), with the first administrator past the one-time password.
pub struct Turret {
    pub process: Killer,
    pub url: String,
    pub cert: Vec<u8>,
    pub admin: String,
    pub http: reqwest::Client,
    /// Where the MLC listens (None when it is switched off).
    pub sip: Option<std::net::SocketAddr>,
    pub dir: tempfile::TempDir,
}

impl Turret {
    pub async fn start(env: &[(&str, &str)]) -> Turret {
        Self::start_in(tempfile::tempdir().unwrap(), env, false).await
    }

    /// `turret serve` on `dir`; `joining`: a further node on a database
    /// whose administrator already has the password `bench-password-01`.
    pub async fn start_in(dir: tempfile::TempDir, env: &[(&str, &str)], joining: bool) -> Turret {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_turret"));
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--sip-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("TURRET_LOG", "error")
        // Every simulated turret connects from 127.0.0.1: one address with
        // thousands of clients, far over the per-address default (256).
        .env("TURRET_HTTP__MAX_CONNECTIONS_PER_ADDRESS", "100000")
        .stdout(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut process = Killer(cmd.spawn().unwrap());
        let wanted: &[&str] = if joining {
            &["portal:", "SIP (MLC):"]
        } else {
            &["portal:", "one-time password:", "SIP (MLC):"]
        };
        let lines = wait_line(&mut process.0, wanted);
        let find = |p: &str| {
            lines
                .iter()
                .find_map(|l| l.strip_prefix(p))
                .unwrap()
                .trim()
                .to_string()
        };
        let url = find("portal:").trim_end_matches('/').to_string();
        let otp = if joining {
            String::new()
        } else {
            find("one-time password:")
        };
        let sip = find("SIP (MLC):")
            .split_whitespace()
            .next()
            .and_then(|a| a.parse().ok());
        let cert = std::fs::read(dir.path().join("tls/cert.pem")).unwrap();
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&cert).unwrap())
            .timeout(Duration::from_secs(120))
            // (The server closes HTTP/1.1 connections idle for 10 s.)
            .pool_idle_timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let mut t = Turret {
            process,
            url,
            cert,
            admin: String::new(),
            http,
            sip,
            dir,
        };
        if joining {
            let v = t
                .post(
                    "/auth/login",
                    json!({"username": "admin", "password": "bench-password-01"}),
                )
                .await;
            t.admin = v["token"].as_str().unwrap().to_string();
            return t;
        }
        let v = t
            .post("/auth/login", json!({"username": "admin", "password": otp}))
            .await;
        t.admin = v["token"].as_str().unwrap().to_string();
        let v = t
            .post(
                "/auth/password",
                json!({"current_password": otp, "new_password": "bench-password-01"}),
            )
            .await;
        t.admin = v["token"].as_str().unwrap().to_string();
        t
    }

    /// Sends JSON to the admin API with `method`; panics on failure.
    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let r = self
            .http
            .request(method, format!("{}/api/v1{path}", self.url))
            .bearer_auth(&self.admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap_or(Value::Null)
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.send(reqwest::Method::POST, path, body).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Value {
        self.send(reqwest::Method::PUT, path, body).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Value {
        self.send(reqwest::Method::PATCH, path, body).await
    }

    pub async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}/api/v1{path}", self.url))
            .bearer_auth(&self.admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.process.0.id()
    }

    /// The data directory.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// kill -9.
    pub fn kill(&mut self) {
        let _ = self.process.0.kill();
        let _ = self.process.0.wait();
    }
}

/// Starts the bare broadcast server (this benchmark binary again, in the
/// role `baseline`); returns it, its URL, its certificate and a client.
pub fn start_baseline() -> (Killer, String, Vec<u8>, reqwest::Client) {
    let child = Command::new(std::env::current_exe().unwrap())
        .env("BENCH_ROLE", "baseline")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut base = Killer(child);
    let lines = wait_line(&mut base.0, &["listening", "cert"]);
    let url = lines
        .iter()
        .find_map(|l| l.strip_prefix("listening "))
        .unwrap()
        .to_string();
    let cert = std::fs::read(lines.iter().find_map(|l| l.strip_prefix("cert ")).unwrap()).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&cert).unwrap())
        .pool_idle_timeout(std::time::Duration::from_secs(5))
        .build()
        .unwrap();
    (base, url, cert, http)
}

/// A broadcast of `size` bytes naming round `k`, for the baseline.
pub fn baseline_message(k: usize, size: usize) -> String {
    let head = format!("{{\"push\":\"x\",\"round\":\"round-{k}\",\"pad\":\"");
    format!(
        "{head}{}\"}}",
        "x".repeat(size.saturating_sub(head.len() + 2))
    )
}
