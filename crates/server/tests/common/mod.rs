//! Test harness: starts the real `turret` binary on 127.0.0.1:0 with a
//! temporary data directory, waits for `/healthz` (polling, never sleeping
//! blindly), and talks to it over HTTPS trusting only the certificate the
//! server generated.
#![allow(dead_code)]

pub mod browser;
pub mod cti;
pub mod desk;
pub mod inproc;
pub mod logs;
pub mod mlcproc;
#[path = "../../../store/tests/support/relay.rs"]
pub mod relay;
pub mod schema;
pub mod sip;
pub mod srs;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_turret");

/// With `TURRET_TEST_BACKEND=postgres`, the PostgreSQL database of the
/// test server on `data_dir`: made in the cluster `TURRET_TEST_POSTGRES_URL`
/// names on first use and remembered in the data directory, so a restart
/// or a CLI command on the same directory finds the same data. Otherwise
/// `None`: SQLite in the data directory.
pub async fn test_database(data_dir: &Path) -> Option<String> {
    if std::env::var("TURRET_TEST_BACKEND").as_deref() != Ok("postgres") {
        return None;
    }
    Some(postgres_database(data_dir).await)
}

/// The PostgreSQL database of the test server on `data_dir`, made (and
/// remembered there) on first use, whatever the backend of the run: for
/// the tests of several nodes on one database.
pub async fn postgres_database(data_dir: &Path) -> String {
    let marker = data_dir.join(".test-database-url");
    if let Ok(url) = std::fs::read_to_string(&marker) {
        return url;
    }
    let admin = std::env::var("TURRET_TEST_POSTGRES_URL").expect(
        "TURRET_TEST_BACKEND=postgres needs TURRET_TEST_POSTGRES_URL (scripts/test.sh sets both)",
    );
    let name = format!("srv_{}", std::process::id())
        + &format!(
            "_{}",
            NEXT_DB.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
    let pool = sqlx::PgPool::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("the test cluster at TURRET_TEST_POSTGRES_URL: {e}"));
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name}"
    )))
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    std::fs::create_dir_all(data_dir).unwrap();
    std::fs::write(&marker, &url).unwrap();
    url
}

/// A second node's data directory for the database of `first`: the same
/// master key and erasure-ledger key (copied as an administrator would),
/// the same database, its own certificate and name.
pub fn second_node_dir(first: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["secret.key", "ledger.key", ".test-database-url"] {
        std::fs::copy(first.join(f), dir.path().join(f))
            .unwrap_or_else(|e| panic!("{f} of the first node: {e}"));
    }
    dir
}

static NEXT_DB: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The database a test server already made for `data_dir`, if any.
pub fn known_database(data_dir: &Path) -> Option<String> {
    std::fs::read_to_string(data_dir.join(".test-database-url")).ok()
}

/// A running `turret serve`, stopped on drop.
pub struct Server {
    child: Child,
    pub url: String,
    pub data_dir: PathBuf,
    out: Arc<Mutex<Vec<String>>>,
    err: Arc<Mutex<Vec<String>>>,
    err_reader: Option<std::thread::JoinHandle<()>>,
    client: reqwest::Client,
    /// How many start banners `url` has followed: a restart is the next
    /// one, whenever it was printed (it may come before anyone waits).
    banners: usize,
}

impl Server {
    /// Starts a server on `data_dir` with extra environment variables.
    pub async fn start(data_dir: &Path, env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--sip-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data_dir)
        .env_remove("TURRET_CONFIG")
        // `TURRET_TEST_LOG` says more when a test is looked into.
        .env(
            "TURRET_LOG",
            std::env::var("TURRET_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        // The error log does not depend on the machine's free space.
        for key in ["WARN_PERCENT", "WARN_MIB", "ERROR_PERCENT", "ERROR_MIB"] {
            cmd.env(format!("TURRET_MONITOR__DISK_{key}"), "0");
        }
        // (A database made for this directory is used whatever the run's
        // backend: the tests of several nodes make theirs.)
        let db = match known_database(data_dir) {
            Some(url) => Some(url),
            None => test_database(data_dir).await,
        };
        if let Some(url) = db {
            cmd.env("TURRET_DATABASE__URL", url);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("turret binary starts");
        let stdout = child.stdout.take().unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = out.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        // Its log is read, kept for the tests to search, and passed on to
        // the test's own output.
        let stderr = child.stderr.take().unwrap();
        let err = Arc::new(Mutex::new(Vec::new()));
        let sink = err.clone();
        let err_reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                sink.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = loop {
            if let Some(u) = out.lock().unwrap().iter().find_map(|l| {
                l.trim()
                    .strip_prefix("portal:")
                    .map(|u| u.trim().trim_end_matches('/').to_string())
            }) {
                break u;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("turret serve exited early with {status}");
            }
            assert!(
                Instant::now() < deadline,
                "turret serve printed no portal URL"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let cert = std::fs::read(data_dir.join("tls/cert.pem")).expect("certificate generated");
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&cert).unwrap())
            .timeout(Duration::from_secs(30))
            // The server closes an HTTP/1.1 connection idle for its header
            // timeout (10 s, told in Keep-Alive): never reuse one that old.
            .pool_idle_timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let server = Server {
            child,
            url,
            data_dir: data_dir.to_path_buf(),
            out,
            err,
            err_reader: Some(err_reader),
            client,
            banners: 1,
        };
        server.wait_healthy().await;
        server
    }

    async fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = self
                .client
                .get(format!("{}/healthz", self.url))
                .send()
                .await
                && r.status() == StatusCode::OK
            {
                return;
            }
            assert!(Instant::now() < deadline, "server never became healthy");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the server has restarted itself (it prints its banner
    /// again, on a new port), then points at the new address. The banner
    /// counted is the one after the last this handle followed, so a
    /// restart that came before the call is found too.
    pub async fn wait_restart(&mut self) {
        let portal_lines = |s: &Server| {
            s.stdout()
                .iter()
                .filter_map(|l| {
                    l.trim()
                        .strip_prefix("portal:")
                        .map(|u| u.trim().trim_end_matches('/').to_string())
                })
                .collect::<Vec<_>>()
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let lines = portal_lines(self);
            if lines.len() > self.banners {
                self.banners += 1;
                self.url = lines[self.banners - 1].clone();
                break;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("turret serve exited instead of restarting: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "the server did not restart (banners: {lines:?})"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.wait_healthy().await;
    }

    /// Everything the server printed on standard output so far.
    pub fn stdout(&self) -> Vec<String> {
        self.out.lock().unwrap().clone()
    }

    /// Everything the server logged (standard error) so far; the last
    /// lines may still be on their way (see [`Self::stop_and_read_log`]).
    pub fn stderr(&self) -> String {
        self.err.lock().unwrap().join("\n")
    }

    /// Stops the server and returns all it logged, to the last line.
    pub fn stop_and_read_log(mut self) -> String {
        self.terminate();
        if let Some(reader) = self.err_reader.take() {
            let _ = reader.join();
        }
        self.stderr()
    }

    /// The one-time password printed on first start.
    pub fn one_time_password(&self) -> Option<String> {
        self.stdout().iter().find_map(|l| {
            l.trim()
                .strip_prefix("one-time password:")
                .map(|p| p.trim().to_string())
        })
    }

    pub fn client(&self) -> Api {
        Api {
            base: self.url.clone(),
            client: self.client.clone(),
            token: None,
        }
    }

    /// Stops the server (SIGTERM) and waits for it to exit.
    pub fn stop(mut self) {
        self.terminate();
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    #[allow(dead_code)]
    pub fn crash(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and returns how long the process took to exit, or
    /// `None` (and kills it) when it is still running after `limit`.
    #[allow(dead_code)]
    pub fn sigterm_exit_time(&mut self, limit: Duration) -> Option<Duration> {
        let start = Instant::now();
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        while start.elapsed() < limit {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Some(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    fn terminate(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .arg(self.child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while let Ok(None) = self.child.try_wait() {
                if Instant::now() > deadline {
                    let _ = self.child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = self.child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// A JSON client with an optional bearer token.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
    pub token: Option<String>,
}

impl Api {
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (s, _, v) = self.call_full(method, path, body, &[]).await;
        (s, v)
    }

    pub async fn call_full(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request reaches the server");
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("{path}: body is not JSON: {text}"))
        };
        (status, headers, v)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }
    /// The event types of the audit entries `query` selects, newest first.
    pub async fn audit_events(&self, query: &str) -> Vec<String> {
        let (_, audit) = self.get(&format!("/api/v1/audit?{query}")).await;
        audit["items"]
            .as_array()
            .unwrap_or_else(|| panic!("no audit page: {audit}"))
            .iter()
            .filter_map(|e| e["event_type"].as_str().map(str::to_string))
            .collect()
    }
    /// The error log's entries `query` selects, newest first.
    pub async fn error_log(&self, query: &str) -> Vec<Value> {
        let (_, page) = self
            .get(&format!("/api/v1/events?limit=1000&{query}"))
            .await;
        page["items"]
            .as_array()
            .unwrap_or_else(|| panic!("no error log page: {page}"))
            .clone()
    }
    /// Waits (at most `wait`) for an entry of the error log that `query`
    /// selects and `ok` accepts; returns it.
    pub async fn wait_error_log(
        &self,
        query: &str,
        ok: impl Fn(&Value) -> bool,
        wait: Duration,
    ) -> Value {
        let deadline = std::time::Instant::now() + wait;
        loop {
            let items = self.error_log(query).await;
            if let Some(e) = items.iter().find(|e| ok(e)) {
                return e.clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no error log entry for {query} within {wait:?}: {items:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, None).await
    }

    /// Logs in; panics unless it succeeds.
    pub async fn login(&mut self, username: &str, password: &str) -> Value {
        let (s, v) = self
            .post(
                "/api/v1/auth/login",
                json!({"username": username, "password": password}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "login as {username}: {v}");
        self.token = Some(v["token"].as_str().unwrap().to_string());
        v
    }
}

/// The password the tests give the first administrator.
pub const ADMIN_PASSWORD: &str = "admin-password-0001";

/// Starts a fresh server and returns it with a client logged in as `admin`
/// whose one-time password was already changed.
pub async fn fresh(dir: &Path) -> (Server, Api) {
    fresh_with_env(dir, &[]).await
}

pub async fn fresh_with_env(dir: &Path, env: &[(&str, &str)]) -> (Server, Api) {
    let server = Server::start(dir, env).await;
    let otp = server
        .one_time_password()
        .expect("first start prints a one-time password");
    let mut api = server.client();
    api.login("admin", &otp).await;
    let (s, v) = api
        .post(
            "/api/v1/auth/password",
            json!({"current_password": otp, "new_password": ADMIN_PASSWORD}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    api.token = Some(v["token"].as_str().unwrap().to_string());
    (server, api)
}

/// Runs `turret` with `args` on `data_dir`, feeding `stdin`; returns the
/// exit code and standard output.
pub fn turret(data_dir: &Path, args: &[&str], stdin: &str) -> (i32, String, String) {
    use std::io::Write;
    let mut cmd = Command::new(BIN);
    if let Some(url) = known_database(data_dir) {
        cmd.env("TURRET_DATABASE__URL", url);
    }
    let mut child = cmd
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("TURRET_CONFIG")
        .env("TURRET_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("turret runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The tests' SQLite SQL for PostgreSQL: blob literals `x'00ff'` and
/// `hex(...)`, the two SQLite forms the tests use.
fn postgres_dialect(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(at) = rest.find("x'") {
        let before_ok = at == 0 || !rest.as_bytes()[at - 1].is_ascii_alphanumeric();
        let (head, tail) = rest.split_at(at);
        out.push_str(head);
        match tail[2..].find('\'') {
            Some(end) if before_ok && tail[2..2 + end].bytes().all(|b| b.is_ascii_hexdigit()) => {
                out.push_str(&format!("'\\x{}'::bytea", &tail[2..2 + end]));
                rest = &tail[3 + end..];
            }
            _ => {
                out.push_str("x'");
                rest = &tail[2..];
            }
        }
    }
    out.push_str(rest);
    // Functions of one plain argument.
    let out = rewrite_call(&out, "hex(", |a| format!("upper(encode({a}, 'hex'))"));
    rewrite_call(&out, "group_concat(", |a| {
        format!("string_agg({a}::text, ',')")
    })
}

/// Rewrites each call `name(arg)` (an argument without parentheses).
fn rewrite_call(sql: &str, name: &str, to: impl Fn(&str) -> String) -> String {
    let mut done = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(at) = rest.find(name) {
        let before_ok = at == 0 || !rest.as_bytes()[at - 1].is_ascii_alphanumeric();
        let (head, tail) = rest.split_at(at);
        done.push_str(head);
        let args = &tail[name.len()..];
        match args.find(')') {
            Some(end) if before_ok && !args[..end].contains('(') => {
                done.push_str(&to(&args[..end]));
                rest = &args[end + 1..];
            }
            _ => {
                done.push_str(name);
                rest = args;
            }
        }
    }
    done.push_str(rest);
    done
}

/// Runs the `sqlite3` tool on a database. Fails loudly when it is missing:
/// the README's test command installs it. When the test server of the
/// database's data directory runs on PostgreSQL (`test_database`), the
/// same SQL goes to it through `psql`, printing rows the same way.
pub fn sqlite3(db: &Path, sql: &str) -> String {
    if let Some(url) = db.parent().and_then(known_database) {
        let sql = postgres_dialect(sql);
        let out = Command::new("psql")
            .args([
                "-X",
                "-A",
                "-t",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &url,
                "-c",
                &sql,
            ])
            .output()
            .expect("psql is required (scripts/test.sh installs postgresql)");
        assert!(
            out.status.success(),
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return String::from_utf8_lossy(&out.stdout).into_owned();
    }
    // A running server may hold the write lock for a moment: wait for it.
    let out = Command::new("sqlite3")
        .args(["-cmd", ".timeout 10000"])
        .arg(db)
        .arg(sql)
        .output()
        .expect(
            "the sqlite3 tool is required (scripts/test.sh installs it: apt-get install sqlite3)",
        );
    assert!(
        out.status.success(),
        "sqlite3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits (up to 15 s) for a push of a client connection for which `pred`
/// holds, skipping others; panics naming `what` otherwise.
pub async fn wait_push(
    c: &mut openturret_server::client::conn::Connection,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no push: {what}");
        if let Some(p) = c.push(left).await
            && pred(&p)
        {
            return p;
        }
    }
}

/// A raw TLS connection to the server at `to` (trusting `cert_pem`),
/// offering `alpn`: for tests that speak below HTTP.
pub async fn tls_to(
    to: std::net::SocketAddr,
    cert_pem: &[u8],
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = tokio::net::TcpStream::connect(to).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap()
}

/// The address of a server URL (`https://127.0.0.1:port`).
pub fn socket_addr(url: &str) -> std::net::SocketAddr {
    url.trim_start_matches("https://")
        .trim_end_matches('/')
        .parse()
        .unwrap()
}
