//! Several System Manager nodes on one PostgreSQL database (issue 19):
//! real `turret serve` processes, a real PostgreSQL (the test cluster of
//! `TURRET_TEST_POSTGRES_URL`), Kamailio as the PBX.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::sip::{Kamailio, PBX_PASSWORD};
use common::*;
use openturret_server::client::conn::Connection;
use serde_json::{Value, json};

/// Node A, fresh on a new PostgreSQL database, with an administrator.
async fn first_node(dir: &Path) -> (Server, Api) {
    postgres_database(dir).await;
    fresh(dir).await
}

/// Two nodes on one new database: A fresh (its administrator signed in,
/// `api`), then B with A's keys (`api_b`, signed in too).
struct TwoNodes {
    a_dir: tempfile::TempDir,
    b_dir: tempfile::TempDir,
    a: Server,
    b: Server,
    api: Api,
    api_b: Api,
}

async fn two_nodes() -> TwoNodes {
    let a_dir = tempfile::tempdir().unwrap();
    let (a, api) = first_node(a_dir.path()).await;
    let b_dir = second_node_dir(a_dir.path());
    let b = Server::start(b_dir.path(), &[]).await;
    // B knows the administrator A made: one database.
    let mut api_b = b.client();
    api_b.login("admin", ADMIN_PASSWORD).await;
    TwoNodes {
        a_dir,
        b_dir,
        a,
        b,
        api,
        api_b,
    }
}

/// `turret backup create` on `dir` under `passphrase`; the file it wrote.
fn backup_create(dir: &Path, passphrase: &str) -> String {
    let (code, out, err) = turret(
        dir,
        &["backup", "create", "--passphrase-stdin"],
        &format!("{passphrase}\n"),
    );
    assert_eq!(code, 0, "{out}{err}");
    out.split_whitespace()
        .find(|w| w.ends_with(".otb"))
        .expect("the backup file is named")
        .to_string()
}

async fn client_of(server: &Server) -> Connection {
    let cert = std::fs::read(server.data_dir.join("tls/cert.pem")).unwrap();
    Connection::connect(&server.url, &cert).await.unwrap()
}

/// The next `config` push whose speed dials include `name`.
async fn config_with_key(c: &mut Connection, name: &str, within: Duration) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < within {
        let Some(p) = c.push(within - t.elapsed()).await else {
            break;
        };
        if p["push"] == "config"
            && p["config"]["speed_dials"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k["name"] == name))
        {
            return Some(t.elapsed());
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_on_one_node_reaches_a_client_of_the_other_and_a_session_moves_between_them() {
    let TwoNodes {
        a_dir,
        b_dir,
        a,
        b,
        api,
        api_b: _api_b,
    } = two_nodes().await;

    let (st, v) = api
        .post(
            "/api/v1/profiles",
            json!({"name": "Ann Trader", "password": "ann-pw-longer"}),
        )
        .await;
    assert!(st.is_success(), "{v}");
    let ann = v["id"].as_i64().unwrap();

    // A session opened on A resumes on B (its connection moved).
    let mut on_a = client_of(&a).await;
    let login = on_a
        .request(json!({"op": "login", "profile_id": ann, "password": "ann-pw-longer"}))
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap().to_string();
    on_a.close().await;
    let mut on_b = client_of(&b).await;
    let resumed = on_b
        .request(json!({"op": "resume", "token": token}))
        .await
        .expect("the session opened on A resumes on B");
    assert_eq!(resumed["config"]["profile"]["name"], "Ann Trader");

    // An administrator's edit on A reaches the client on B within a second.
    let (st, _) = api
        .post(
            &format!("/api/v1/profiles/{ann}/speed-dials"),
            json!({"kind": "DKA", "position": 1, "name": "Edited on A", "number": "2001"}),
        )
        .await;
    assert_eq!(st, reqwest::StatusCode::CREATED);
    let took = config_with_key(&mut on_b, "Edited on A", Duration::from_secs(5))
        .await
        .expect("the edit made on A is pushed to the client on B");
    eprintln!("an edit on A reached a client on B in {took:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");

    // PostgreSQL ends the listening connections (a failover, a network
    // cut), and an edit is made at once on A: B may hear nothing of it,
    // but resyncs once it listens again.
    let url = known_database(a_dir.path()).unwrap();
    let ended = psql(
        &url,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE application_name = 'openturret-listener' AND datname = current_database()",
    );
    assert_eq!(ended.trim(), "2", "one listener per node");
    let (st, _) = api
        .post(
            &format!("/api/v1/profiles/{ann}/speed-dials"),
            json!({"kind": "DKA", "position": 2, "name": "While away", "number": "2002"}),
        )
        .await;
    assert_eq!(st, reqwest::StatusCode::CREATED);
    let took = config_with_key(&mut on_b, "While away", Duration::from_secs(10))
        .await
        .expect("B's client gets the change made while B's listener was cut off");
    eprintln!("after the listener was cut off, the change reached B's client in {took:?}");

    // A password change on A ends the session on B, and it cannot resume.
    api.patch(
        &format!("/api/v1/profiles/{ann}"),
        json!({"password": "ann-pw-2-longer"}),
    )
    .await;
    let ended = wait_push(&mut on_b, "session ended on B", |p| {
        p["push"] == "session_ended"
    })
    .await;
    assert_eq!(ended["reason"], "password_changed");
    let mut again = client_of(&a).await;
    let r = again.request(json!({"op": "resume", "token": token})).await;
    assert_eq!(r.err().map(|e| e.code).as_deref(), Some("session_expired"));

    // One audit chain, written by both nodes.
    let (code, out, err) = turret(b_dir.path(), &["audit", "verify"], "");
    assert_eq!(code, 0, "{out}{err}");
}

/// Runs `sql` with psql against `url`; returns its unaligned output.
fn psql(url: &str, sql: &str) -> String {
    let out = std::process::Command::new("psql")
        .args([url, "-tA", "-c", sql])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The contacts of `aor` in Kamailio's location table.
fn contacts_of<'a>(table: &'a [(String, Vec<String>)], aor: &str) -> &'a [String] {
    table
        .iter()
        .find(|(a, _)| a == aor)
        .map(|(_, c)| c.as_slice())
        .unwrap_or(&[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lines_of_a_killed_node_are_registered_by_the_other_within_30_s_never_twice() {
    let pbx = Kamailio::start("MD5", false);
    let a_dir = tempfile::tempdir().unwrap();
    let (a, api) = first_node(a_dir.path()).await;
    let users = ["4101", "4102", "4103", "4104"];
    for u in users {
        let (st, v) = api
            .post(
                "/api/v1/lines",
                json!({"name": format!("Desk {u}"), "uri": format!("sip:{u}@127.0.0.1:{}", pbx.port),
                       "username": u, "password": PBX_PASSWORD}),
            )
            .await;
        assert!(st.is_success(), "{v}");
    }
    // A registers every line (one contact each).
    let deadline = Instant::now() + Duration::from_secs(20);
    let a_contacts = loop {
        let t = pbx.location();
        if users.iter().all(|u| contacts_of(&t, u).len() == 1) {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "A did not register its lines: {t:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let a_contact = contacts_of(&a_contacts, users[0])[0].clone();
    // B joins: A keeps its lines.
    let b_dir = second_node_dir(a_dir.path());
    let b = Server::start(b_dir.path(), &[]).await;
    let mut api_b = b.client();
    api_b.login("admin", ADMIN_PASSWORD).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let t = pbx.location();
    for u in users {
        assert_eq!(contacts_of(&t, u).len(), 1, "{t:?}");
    }
    let port_of = |c: &str| c.rsplit(':').next().unwrap().to_string();
    let a_port = port_of(&a_contact);
    assert!(
        users
            .iter()
            .all(|u| port_of(&contacts_of(&t, u)[0]) == a_port),
        "B took a line A holds: {t:?}"
    );

    // kill -9 of A; the location table sampled throughout.
    let killed = Instant::now();
    a.crash();
    let mut samples = 0;
    let moved = loop {
        let t = pbx.location();
        samples += 1;
        for u in users {
            let c = contacts_of(&t, u);
            assert!(c.len() <= 1, "two of our contacts for line {u}: {c:?}");
        }
        if users.iter().all(|u| {
            contacts_of(&t, u)
                .first()
                .is_some_and(|c| port_of(c) != a_port)
        }) {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "B did not take A's lines within 30 s: {t:?}"
        );
        // As often as kamcmd answers (a few ms), far more than every
        // 100 ms: a takeover in two requests leaves two contacts for
        // only a few milliseconds.
        tokio::task::yield_now().await;
    };
    eprintln!("A's lines were registered through B {moved:?} after kill -9 ({samples} samples)");
    // B's API shows them registered; the leases moved to B, epoch 2.
    let (_, lines) = api_b.get("/api/v1/lines").await;
    let states: Vec<&str> = lines
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["registration_state"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(states, ["registered"; 4], "{lines}");
    let url = known_database(a_dir.path()).unwrap();
    let leases = psql(
        &url,
        "SELECT holder, epoch FROM line_leases ORDER BY line_id",
    );
    let b_name = format!(
        "{}:{}",
        openturret_server::host_name(),
        std::fs::canonicalize(b_dir.path()).unwrap().display()
    );
    for row in leases.lines() {
        assert_eq!(row, format!("{b_name}|2"), "{leases}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guesses_spread_over_two_nodes_meet_one_limit() {
    let TwoNodes {
        a_dir: _a_dir,
        b_dir: _b_dir,
        a,
        b,
        api,
        api_b: _api_b,
    } = two_nodes().await;
    let (st, v) = api
        .post(
            "/api/v1/profiles",
            json!({"name": "Bob Trader", "password": "bob-pw-longer"}),
        )
        .await;
    assert!(st.is_success(), "{v}");
    let bob = v["id"].as_i64().unwrap();
    // Five wrong guesses (the limit), three on A and two on B.
    let mut on_a = client_of(&a).await;
    let mut on_b = client_of(&b).await;
    for i in 0..5 {
        let c = if i % 2 == 0 { &mut on_a } else { &mut on_b };
        let r = c
            .request(json!({"op": "login", "profile_id": bob, "password": format!("guess-{i}")}))
            .await;
        assert_eq!(r.err().map(|e| e.code).as_deref(), Some("wrong_password"));
        // (The outcome reaches the other node in milliseconds.)
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Locked on both nodes, even to the right password.
    for c in [&mut on_a, &mut on_b] {
        let r = c
            .request(json!({"op": "login", "profile_id": bob, "password": "bob-pw-longer"}))
            .await;
        assert_eq!(
            r.err().map(|e| e.code).as_deref(),
            Some("too_many_attempts")
        );
    }
}

/// A CA and a server certificate it signed for `names` (PEM: CA, cert, key).
fn ca_and_server(names: &[&str]) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "test database CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

/// Turns TLS on in the throwaway test cluster with `cert` and `key`, and
/// returns once new connections get it (checked against its `ca`).
fn cluster_tls(url: &str, ca: &str, cert: &str, key: &str) {
    assert_eq!(
        std::env::var("TURRET_TEST_POSTGRES_THROWAWAY").as_deref(),
        Ok("1"),
        "this test changes the cluster's TLS settings: it runs on the throwaway cluster \
         scripts/test.sh starts (which sets TURRET_TEST_POSTGRES_THROWAWAY=1)"
    );
    // Written as root (the tests run as root, as the test command does),
    // the key readable by the postgres group only, as PostgreSQL asks.
    let dir = psql(url, "SHOW data_directory");
    let dir = Path::new(dir.trim());
    let gid = std::process::Command::new("id")
        .args(["-g", "postgres"])
        .output()
        .expect("id runs");
    let gid: u32 = String::from_utf8_lossy(&gid.stdout)
        .trim()
        .parse()
        .expect("a postgres group");
    for (name, pem, mode) in [
        ("ot-test-server.crt", cert, 0o644),
        ("ot-test-server.key", key, 0o640),
    ] {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, pem).expect("the cluster's directory is writable (run as root)");
        std::os::unix::fs::chown(&path, Some(0), Some(gid)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    psql(url, "ALTER SYSTEM SET ssl_cert_file = 'ot-test-server.crt'");
    psql(url, "ALTER SYSTEM SET ssl_key_file = 'ot-test-server.key'");
    psql(url, "ALTER SYSTEM SET ssl = on");
    psql(url, "SELECT pg_reload_conf()");
    let scratch = tempfile::tempdir().unwrap();
    let ca_file = scratch.path().join("ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let check = format!("{url}?sslmode=verify-ca&sslrootcert={}", ca_file.display());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::process::Command::new("psql")
        .args([check.as_str(), "-tA", "-c", "SELECT 1"])
        .output()
        .expect("psql runs")
        .status
        .success()
    {
        assert!(
            Instant::now() < deadline,
            "the test cluster does not serve the new certificate"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_reaches_postgresql_over_verified_tls_and_refuses_a_wrong_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let url = postgres_database(dir.path()).await;
    let (ca, cert, key) = ca_and_server(&["127.0.0.1"]);
    cluster_tls(&url, &ca, &cert, &key);
    let ca_file = dir.path().join("db-ca.pem");
    std::fs::write(&ca_file, &ca).unwrap();
    let verified = format!(
        "{url}?sslmode=verify-full&sslrootcert={}",
        ca_file.display()
    );
    let server = Server::start(dir.path(), &[("TURRET_DATABASE__URL", &verified)]).await;
    let mut api = server.client();
    let otp = server.one_time_password().expect("a first administrator");
    api.login("admin", &otp).await;
    // Every connection of the node (pool and listener) is TLS.
    let deadline = Instant::now() + Duration::from_secs(10);
    let rows = loop {
        let rows = psql(
            &url,
            "SELECT a.application_name || ':' || s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a \
             USING (pid) WHERE a.datname = current_database() \
             AND a.application_name LIKE 'openturret%' ORDER BY 1",
        );
        if rows.contains("openturret-listener") || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(rows.contains("openturret:true"), "{rows}");
    assert!(rows.contains("openturret-listener:true"), "{rows}");
    assert!(!rows.contains(":false"), "a connection without TLS: {rows}");
    server.stop();

    // A server certificate the CA did not sign, or for another name, is
    // refused before anything is sent; the error says why.
    let (other_ca, _, _) = ca_and_server(&["127.0.0.1"]);
    let wrong_ca = dir.path().join("other-ca.pem");
    std::fs::write(&wrong_ca, &other_ca).unwrap();
    let localhost_ca = dir.path().join("named-ca.pem");
    let (named_ca, named_cert, named_key) = ca_and_server(&["db.example"]);
    std::fs::write(&localhost_ca, &named_ca).unwrap();
    for (ca, why) in [(&wrong_ca, "another CA"), (&localhost_ca, "another name")] {
        if why == "another name" {
            cluster_tls(&url, &named_ca, &named_cert, &named_key);
        }
        let out = std::process::Command::new(BIN)
            .args(["audit", "verify", "--data-dir"])
            .arg(dir.path())
            .env(
                "TURRET_DATABASE__URL",
                format!("{url}?sslmode=verify-full&sslrootcert={}", ca.display()),
            )
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{why}: connected anyway");
        assert!(
            err.to_lowercase().contains("certificate"),
            "{why}: the error names the certificate: {err}"
        );
    }
    // The first certificate back (the cluster stays on TLS).
    cluster_tls(&url, &ca, &cert, &key);
}

/// Logs profile `pid` in (and out) at `server`: a `phone` CTI event each.
async fn log_in_and_out(server: &Server, pid: i64) {
    let mut c = client_of(server).await;
    c.request(json!({"op": "login", "profile_id": pid, "password": "eve-pw-longer"}))
        .await
        .unwrap();
    c.request(json!({"op": "logout"})).await.unwrap();
}

/// The next `phone` events of `ws` (as many as `n`).
async fn phone_events(ws: &mut common::cti::Ws, n: usize) -> Vec<(u64, String)> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < n {
        assert!(Instant::now() < deadline, "only {got:?}");
        if let Ok(Some(e)) = common::cti::next(ws, Duration::from_secs(1)).await
            && e["kind"] == "phone"
        {
            got.push((
                e["seq"].as_u64().unwrap(),
                e["event"]["state"].as_str().unwrap().to_string(),
            ));
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cti_events_of_two_nodes_carry_one_series_and_resume_on_either() {
    let TwoNodes {
        a_dir,
        b_dir,
        a,
        b,
        api,
        api_b: _api_b,
    } = two_nodes().await;
    let (st, _) = api
        .patch("/api/v1/settings", json!({"cti_enabled": true}))
        .await;
    assert!(st.is_success());
    let (_, key) = api
        .post(
            "/api/v1/api-keys",
            json!({"name": "crm", "events": ["phones"]}),
        )
        .await;
    let token = key["token"].as_str().unwrap().to_string();
    let (_, v) = api
        .post(
            "/api/v1/profiles",
            json!({"name": "Eve Trader", "password": "eve-pw-longer"}),
        )
        .await;
    let eve = v["id"].as_i64().unwrap();
    let cert_a = std::fs::read(a_dir.path().join("tls/cert.pem")).unwrap();
    let cert_b = std::fs::read(b_dir.path().join("tls/cert.pem")).unwrap();
    // An application on B hears what happens on A, and on B, in one series.
    // (B hears of the switch made on A within moments.)
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut app_b = loop {
        match common::cti::cti_at(&b.url, &cert_b, &token, None).await {
            Ok(ws) => break ws,
            Err(code) => assert!(Instant::now() < deadline, "CTI on B: {code}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    log_in_and_out(&a, eve).await;
    let on_a = phone_events(&mut app_b, 2).await;
    log_in_and_out(&b, eve).await;
    let on_b = phone_events(&mut app_b, 2).await;
    let seqs: Vec<u64> = on_a.iter().chain(&on_b).map(|e| e.0).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(
        [&on_a[..], &on_b[..]]
            .concat()
            .iter()
            .map(|e| e.1.as_str())
            .collect::<Vec<_>>(),
        ["logged_in", "logged_out", "logged_in", "logged_out"]
    );
    // The application goes away; events happen on both nodes; it comes
    // back to A with ?since= and gets exactly what it missed, in order.
    drop(app_b);
    let seen = *seqs.last().unwrap();
    log_in_and_out(&b, eve).await;
    log_in_and_out(&a, eve).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut app_a = common::cti::cti_at(&a.url, &cert_a, &token, Some(seen))
        .await
        .unwrap();
    let missed = phone_events(&mut app_a, 4).await;
    let s: Vec<u64> = missed.iter().map(|e| e.0).collect();
    assert!(
        s[0] > seen && s.windows(2).all(|w| w[0] < w[1]),
        "{s:?} after {seen}"
    );
    // Nothing twice: no fifth phone event follows.
    assert!(
        phone_events_within(&mut app_a, Duration::from_secs(1))
            .await
            .is_empty(),
        "an event came twice"
    );
}

async fn phone_events_within(ws: &mut common::cti::Ws, wait: Duration) -> Vec<Value> {
    common::cti::drain(ws, wait)
        .await
        .into_iter()
        .filter(|e| e["kind"] == "phone")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_loses_no_acknowledged_write_and_the_chain_verifies_on_the_other_nodes() {
    let TwoNodes {
        a_dir: _a_dir,
        b_dir,
        a,
        b: _b,
        api,
        api_b,
    } = two_nodes().await;
    // Four writers on A, and one on B, until A is killed.
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<i64>::new()));
    let mut writers = Vec::new();
    for (w, api) in [&api, &api, &api, &api, &api_b].into_iter().enumerate() {
        let api = api.clone();
        let acked = acknowledged.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..400 {
                let req = api
                    .client
                    .post(format!("{}/api/v1/global-contacts", api.base))
                    .bearer_auth(api.token.as_ref().unwrap())
                    .json(&json!({"name": format!("Writer {w} {i}"),
                                  "number": format!("+1 212 555 {:04}", w * 1000 + i)}));
                match req.send().await {
                    Ok(r) if r.status() == reqwest::StatusCode::CREATED => {
                        let v: Value = r.json().await.unwrap();
                        acked.lock().unwrap().push(v["id"].as_i64().unwrap());
                    }
                    // A is gone (or the request died with it): not acknowledged.
                    _ => return,
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while acknowledged.lock().unwrap().len() < 200 {
        assert!(Instant::now() < deadline, "the writers are too slow");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    a.crash();
    for w in writers {
        let _ = w.await;
    }
    let acked = acknowledged.lock().unwrap().clone();
    eprintln!(
        "{} writes acknowledged before and after kill -9 of A",
        acked.len()
    );
    // Every acknowledged write is there, read through B.
    for id in &acked {
        let (st, _) = api_b.get(&format!("/api/v1/global-contacts/{id}")).await;
        assert_eq!(
            st,
            reqwest::StatusCode::OK,
            "global contact {id} was acknowledged"
        );
    }
    // The one chain both nodes wrote verifies.
    let (code, out, err) = turret(b_dir.path(), &["audit", "verify"], "");
    assert_eq!(code, 0, "{out}{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_on_postgresql_backs_up_online_and_the_backup_restores_into_sqlite_and_back() {
    const PASSPHRASE: &str = "a backup passphrase of some length";
    let a_dir = tempfile::tempdir().unwrap();
    let (server, api) = first_node(a_dir.path()).await;
    let (_, p) = api
        .post(
            "/api/v1/profiles",
            json!({"name": "Gil Backed", "password": "gil-pw-longer"}),
        )
        .await;
    let gil = p["id"].as_i64().unwrap();
    let (st, _) = api
        .post(
            "/api/v1/global-contacts",
            json!({"name": "Hana Kept", "number": "+44 20 7946 0018"}),
        )
        .await;
    assert!(st.is_success());
    let (st, v) = api
        .post(
            "/api/v1/lines",
            json!({"name": "Desk 77", "uri": "sip:7701@pbx.example", "password": "line-secret-77"}),
        )
        .await;
    assert!(st.is_success(), "{v}");
    // An online backup of the PostgreSQL deployment, by the CLI as by a
    // schedule: the same encrypted format as SQLite's.
    let file = backup_create(a_dir.path(), PASSPHRASE);
    let (code, out, err) = turret(
        a_dir.path(),
        &["backup", "verify", &file, "--passphrase-stdin"],
        &format!("{PASSPHRASE}\n"),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("integrity ok"), "{out}");
    for secret in ["gil-pw-longer", "line-secret-77", "Hana Kept"] {
        let bytes = std::fs::read(
            a_dir
                .path()
                .join("backups")
                .join(std::path::Path::new(&file).file_name().unwrap()),
        )
        .unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} in clear in the backup"
        );
    }
    server.stop();

    // Into a SQLite deployment it restores: same passwords, same data,
    // the chain verified.
    let s_dir = tempfile::tempdir().unwrap();
    let backup = s_dir.path().join("from-postgres.otb");
    std::fs::copy(&file, &backup).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["backup", "restore"])
        .arg(&backup)
        .arg("--passphrase-stdin")
        .arg("--data-dir")
        .arg(s_dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .unwrap()
                .write_all(format!("{PASSPHRASE}\n").as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, out, err) = turret(s_dir.path(), &["audit", "verify"], "");
    assert_eq!(code, 0, "{out}{err}");
    let restored = Server::start(s_dir.path(), &[]).await;
    let mut api_s = restored.client();
    api_s.login("admin", ADMIN_PASSWORD).await;
    let (_, found) = api_s.get("/api/v1/global-contacts?q=hana").await;
    assert_eq!(found["items"][0]["name"], "Hana Kept", "{found}");
    let mut c = client_of(&restored).await;
    let v = c
        .request(json!({"op": "login", "profile_id": gil, "password": "gil-pw-longer"}))
        .await
        .expect("the profile logs in with its password on the restored SQLite");
    assert_eq!(v["profile"]["name"], "Gil Backed");
    let (_, lines) = api_s.get("/api/v1/lines").await;
    assert_eq!(lines[0]["has_password"], true, "{lines}");

    // And back: a backup of that SQLite deployment (which took the
    // deployment's key with the restore) restores into PostgreSQL.
    let (st, _) = api_s
        .post(
            "/api/v1/global-contacts",
            json!({"name": "Jo From Sqlite", "number": "+44 20 7946 0019"}),
        )
        .await;
    assert!(st.is_success());
    c.close().await;
    restored.stop();
    let from_sqlite = backup_create(s_dir.path(), PASSPHRASE);
    let (code, out, err) = turret(
        a_dir.path(),
        &["backup", "restore", &from_sqlite, "--passphrase-stdin"],
        &format!("{PASSPHRASE}\n"),
    );
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = turret(a_dir.path(), &["audit", "verify"], "");
    assert_eq!(code, 0, "{out}{err}");
    let again = Server::start(a_dir.path(), &[]).await;
    let mut api_a = again.client();
    api_a.login("admin", ADMIN_PASSWORD).await;
    let (_, found) = api_a.get("/api/v1/global-contacts?q=jo").await;
    assert_eq!(found["items"][0]["name"], "Jo From Sqlite", "{found}");
    let mut c = client_of(&again).await;
    c.request(json!({"op": "login", "profile_id": gil, "password": "gil-pw-longer"}))
        .await
        .expect("the profile logs in with its password on PostgreSQL again");
}

/// Restoring into PostgreSQL (issue 19): refused while any node serves
/// from the database; with every node stopped, a backup replaces the data
/// in one go. What was written after it is gone, a profile erased through
/// the other node after it stays erased (the ledger is the deployment's),
/// no id is given out twice, and each node's anchor of the audit head takes
/// the restored chain (audit verify passes on both). (On the way: a
/// profile erased through one node leaves the other's CDR files.) A backup made under
/// another master key is refused and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restores_into_postgresql_with_every_node_stopped_and_erasures_stay() {
    const PASSPHRASE: &str = "a backup passphrase of some length";
    let TwoNodes {
        a_dir,
        b_dir,
        a,
        b,
        api,
        api_b,
    } = two_nodes().await;
    let (_, p) = api
        .post(
            "/api/v1/profiles",
            json!({"name": "Gil Erased", "password": "gil-pw-longer"}),
        )
        .await;
    let gil = p["id"].as_i64().unwrap();
    let (st, _) = api
        .post(
            "/api/v1/global-contacts",
            json!({"name": "Hana Kept", "number": "+44 20 7946 0018"}),
        )
        .await;
    assert!(st.is_success());
    let file = backup_create(a_dir.path(), PASSPHRASE);

    // After the backup, through B: a new contact, and Gil erased.
    let (st, v) = api_b
        .post(
            "/api/v1/global-contacts",
            json!({"name": "Ivo Later", "number": "+44 20 7946 0020"}),
        )
        .await;
    assert!(st.is_success(), "{v}");
    let ivo = v["id"].as_i64().unwrap();
    // A CDR file of A's names Gil (A carried a call of his).
    let a_cdr = a_dir.path().join("cdr");
    std::fs::create_dir_all(&a_cdr).unwrap();
    let cdr_file = a_cdr.join("cdr-20261204T000000000Z.jsonl");
    std::fs::write(
        &cdr_file,
        "{\"id\":1,\"profile_name\":\"Gil Erased\"}\n{\"id\":2,\"profile_name\":\"Someone Else\"}\n",
    )
    .unwrap();
    let (st, v) = api_b.delete(&format!("/api/v1/profiles/{gil}")).await;
    assert!(st.is_success(), "{v}");
    // Erased through B, his name leaves A's CDR files too.
    let t = Instant::now();
    loop {
        let text = std::fs::read_to_string(&cdr_file).unwrap();
        if !text.contains("Gil Erased") {
            assert!(text.contains("Someone Else"), "{text}");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "Gil's name is still in A's CDR file: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A stopped, B serving: refused, naming what serves; nothing changed.
    a.stop();
    let restore = |file: &str| {
        turret(
            a_dir.path(),
            &["backup", "restore", file, "--passphrase-stdin"],
            &format!("{PASSPHRASE}\n"),
        )
    };
    let (code, _, err) = restore(&file);
    assert_ne!(code, 0);
    assert!(err.contains("stop every System Manager node"), "{err}");
    let (_, found) = api_b.get("/api/v1/global-contacts?q=ivo").await;
    assert_eq!(found["items"][0]["name"], "Ivo Later", "{found}");
    b.stop();

    // A backup of another deployment (another master key): refused.
    let other = tempfile::tempdir().unwrap();
    let (o, _) = fresh(other.path()).await;
    o.stop();
    let foreign = backup_create(other.path(), PASSPHRASE);
    let (code, _, err) = restore(&foreign);
    assert_ne!(code, 0);
    assert!(err.contains("another master key"), "{err}");

    // Every node stopped: restored, and Gil, erased through B, erased again.
    let (code, out, err) = restore(&file);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("1 profile(s) erased since then were erased again"),
        "{out}"
    );
    // B's anchor names entries the restore replaced; it takes the restored
    // chain, and the chain verifies from either node.
    for dir in [a_dir.path(), b_dir.path()] {
        let (code, out, err) = turret(dir, &["audit", "verify"], "");
        assert_eq!(code, 0, "{out}{err}");
    }
    let a = Server::start(a_dir.path(), &[]).await;
    let b = Server::start(b_dir.path(), &[]).await;
    let mut api_a = a.client();
    api_a.login("admin", ADMIN_PASSWORD).await;
    let mut api_b = b.client();
    api_b.login("admin", ADMIN_PASSWORD).await;
    let (_, found) = api_a.get("/api/v1/global-contacts?q=hana").await;
    assert_eq!(found["items"][0]["name"], "Hana Kept", "{found}");
    let (_, found) = api_b.get("/api/v1/global-contacts?q=ivo").await;
    assert_eq!(
        found["items"],
        json!([]),
        "written after the backup: {found}"
    );
    let (st, _) = api_b.get(&format!("/api/v1/profiles/{gil}")).await;
    assert_eq!(st, reqwest::StatusCode::NOT_FOUND, "Gil stays erased");
    // No id given out twice: a new contact never takes Ivo's.
    let (_, v) = api_b
        .post(
            "/api/v1/global-contacts",
            json!({"name": "Kai New", "number": "+44 20 7946 0021"}),
        )
        .await;
    assert!(v["id"].as_i64().unwrap() > ivo, "{v}");
    let (_, audit) = api_a.get("/api/v1/audit?event_type=backup.restored").await;
    assert_eq!(audit["items"].as_array().unwrap().len(), 1, "{audit}");
    // A profile erased while B is down leaves B's CDR files when B starts
    // (the ledger keeps a mark of the name, never the name).
    let (_, p) = api_a
        .post(
            "/api/v1/profiles",
            json!({"name": "Lu Gone", "password": "lu-pw-longer"}),
        )
        .await;
    let lu = p["id"].as_i64().unwrap();
    b.stop();
    let b_cdr = b_dir.path().join("cdr");
    std::fs::create_dir_all(&b_cdr).unwrap();
    let files = [
        (
            b_cdr.join("cdr-20261204T000000000Z.jsonl"),
            "{\"id\":1,\"profile_name\":\"Lu Gone\"}\n{\"id\":2,\"profile_name\":\"Someone Else\"}\n",
        ),
        (
            b_cdr.join("cdr-20261204T000000000Z.csv"),
            "id,line_id,profile_name\n1,2,Lu Gone\n2,2,Someone Else\n",
        ),
    ];
    for (f, text) in &files {
        std::fs::write(f, text).unwrap();
    }
    let (st, v) = api_a.delete(&format!("/api/v1/profiles/{lu}")).await;
    assert!(st.is_success(), "{v}");
    let url = known_database(a_dir.path()).unwrap();
    let marks = psql(
        &url,
        "SELECT COUNT(name_mark) FROM erasure_ledger WHERE kind = 'profile'",
    );
    assert_eq!(marks.trim(), "2", "Gil's and Lu's marks");
    let b = Server::start(b_dir.path(), &[]).await;
    let t = Instant::now();
    for (f, _) in &files {
        loop {
            let text = std::fs::read_to_string(f).unwrap();
            if !text.contains("Lu Gone") {
                assert!(text.contains("Someone Else"), "{text}");
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "Lu's name is still in B's CDR file after its start: {text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    drop((a, b));
    for dir in [a_dir.path(), b_dir.path()] {
        let (code, out, err) = turret(dir, &["audit", "verify"], "");
        assert_eq!(code, 0, "{out}{err}");
    }
}

/// The portal's view state follows an administrator's session from node to
/// node (a load balancer may send each request to either): a filter set
/// through A lists on B, a message left by A is shown once by B. It is
/// kept sealed (PostgreSQL holds no clear name) and goes with the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portals_filters_and_messages_follow_a_session_between_nodes() {
    let TwoNodes {
        a_dir,
        b_dir,
        a,
        b,
        api,
        api_b: _api_b,
    } = two_nodes().await;
    for name in ["Ann Filtered", "Bob Other"] {
        let (st, v) = api
            .post(
                "/api/v1/profiles",
                json!({"name": name, "password": "a-pw-longer"}),
            )
            .await;
        assert!(st.is_success(), "{v}");
    }
    let session = api.token.clone().unwrap();
    // (Each node has its own certificate.)
    let mut http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
    for dir in [a_dir.path(), b_dir.path()] {
        let cert = std::fs::read(dir.join("tls/cert.pem")).unwrap();
        http = http.add_root_certificate(reqwest::Certificate::from_pem(&cert).unwrap());
    }
    let http = http.build().unwrap();
    let cookie = format!("turret_session={session}");
    let get = |base: &str, path: &str| {
        let req = http
            .get(format!("{base}{path}"))
            .header("cookie", &cookie)
            .send();
        async move {
            let res = req.await.unwrap();
            assert_eq!(res.status(), reqwest::StatusCode::OK);
            res.text().await.unwrap()
        }
    };
    let post = |base: &str, path: &str, body: String| {
        let req = http
            .post(format!("{base}{path}"))
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send();
        async move {
            let res = req.await.unwrap();
            assert_eq!(res.status(), reqwest::StatusCode::SEE_OTHER);
            res.headers()["location"].to_str().unwrap().to_string()
        }
    };
    let page = get(&a.url, "/profiles").await;
    let csrf = page
        .split("name=\"_csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a form with its token")
        .to_string();

    // A filter set through A lists through B.
    post(&a.url, "/profiles/search", format!("q=Ann&_csrf={csrf}")).await;
    let on_b = get(&b.url, "/profiles").await;
    assert!(
        on_b.contains("Ann Filtered") && !on_b.contains("Bob Other"),
        "{on_b}"
    );
    // A message left by A (after creating a profile) is shown by B, once.
    let to = post(
        &a.url,
        "/profiles/new",
        format!("name=Cy+New&password=cy-pw-longer&_csrf={csrf}"),
    )
    .await;
    assert!(get(&b.url, &to).await.contains("Profile created."));
    assert!(!get(&b.url, &to).await.contains("Profile created."));

    // The backups page says how a shared deployment is restored, and
    // offers no restore through a running node.
    let backups = get(&b.url, "/backups").await;
    assert!(
        backups.contains("Stop every node") && !backups.contains("action=\"/backups/restore\""),
        "{backups}"
    );

    // PostgreSQL holds the filter sealed, and forgets it with the session.
    let url = known_database(a_dir.path()).unwrap();
    let held = psql(
        &url,
        "SELECT slot || ' ' || encode(value, 'escape') FROM portal_memory",
    );
    assert!(held.contains("filter:profiles"), "{held}");
    assert!(!held.contains("Ann"), "the filter in clear: {held}");
    post(&b.url, "/logout", format!("_csrf={csrf}")).await;
    assert_eq!(psql(&url, "SELECT COUNT(*) FROM portal_memory").trim(), "0");
}

fn call_push(state: &'static str) -> impl Fn(&Value) -> bool {
    move |p: &Value| p["push"] == "call" && p["call"]["state"] == state
}

/// The state of `line` in the `calls` answer of a turret.
async fn turret_line_state(c: &mut Connection, line: i64) -> String {
    let v = c.request(json!({"op": "calls"})).await.unwrap();
    v["lines"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["line_id"] == line))
        .map(|l| l["state"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

async fn wait_turret_line(c: &mut Connection, line: i64, state: &str, within: Duration) {
    let t = Instant::now();
    loop {
        let now = turret_line_state(c, line).await;
        if now == state {
            return;
        }
        assert!(
            t.elapsed() < within,
            "the turret shows line {line} {now:?}, not {state:?}, after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turret_on_either_of_two_nodes_works_the_calls_the_other_carries_and_survives_its_end() {
    use common::sip::Baresip;
    let pbx = Kamailio::start("MD5", false);
    let TwoNodes {
        a_dir,
        b_dir,
        a,
        b,
        api,
        api_b,
    } = two_nodes().await;
    let (st, v) = api
        .patch("/api/v1/settings", json!({"cdr_enabled": true}))
        .await;
    assert!(st.is_success(), "{v}");
    let (st, v) = api
        .post(
            "/api/v1/lines",
            json!({"name": "Desk 1001", "uri": format!("sip:1001@127.0.0.1:{}", pbx.port),
                   "username": "1001", "password": PBX_PASSWORD}),
        )
        .await;
    assert!(st.is_success(), "{v}");
    let line = v["id"].as_i64().unwrap();
    let (st, v) = api
        .post(
            "/api/v1/global-contacts",
            json!({"name": "Alice Caller", "number": "2000"}),
        )
        .await;
    assert!(st.is_success(), "{v}");
    let mut pids = Vec::new();
    for name in ["Ann Trader", "Bob Trader"] {
        let (st, v) = api
            .post(
                "/api/v1/profiles",
                json!({"name": name, "password": "trader-pw-longer", "collect_call_memory": true}),
            )
            .await;
        assert!(st.is_success(), "{v}");
        let pid = v["id"].as_i64().unwrap();
        let (st, v) = api
            .put(
                &format!("/api/v1/profiles/{pid}/lines/{line}"),
                json!({"position": 1}),
            )
            .await;
        assert!(st.is_success(), "{v}");
        pids.push(pid);
    }

    // Whichever node takes the line's lease carries its calls; Ann's
    // turret is on the other one, Bob's on the carrier.
    let url = known_database(a_dir.path()).unwrap();
    let name_of = |d: &Path| {
        format!(
            "{}:{}",
            openturret_server::host_name(),
            std::fs::canonicalize(d).unwrap().display()
        )
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let holder = loop {
        let h = psql(&url, "SELECT holder FROM line_leases")
            .trim()
            .to_string();
        if !h.is_empty() {
            break h;
        }
        assert!(Instant::now() < deadline, "no node took the line");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (carrier, other, other_api) = if holder == name_of(a_dir.path()) {
        (a, b, &api_b)
    } else {
        assert_eq!(holder, name_of(b_dir.path()));
        (b, a, &api)
    };
    let mut ann = client_of(&other).await;
    ann.request(json!({"op": "login", "profile_id": pids[0], "password": "trader-pw-longer"}))
        .await
        .unwrap();
    let mut bob = client_of(&carrier).await;
    bob.request(json!({"op": "login", "profile_id": pids[1], "password": "trader-pw-longer"}))
        .await
        .unwrap();
    // The line registers through the carrier; Ann's turret shows it so.
    wait_turret_line(&mut ann, line, "registered", Duration::from_secs(20)).await;
    // Her node's record of processing names the node it hears calls from.
    let (_, r) = other_api.get("/api/v1/privacy-report").await;
    assert_eq!(r["between_nodes"]["other_nodes"], json!([holder]), "{r:#}");
    assert_eq!(r["between_nodes"]["stored"], false);

    // 1. A call to the line rings on both turrets, the caller named from
    //    the phonebook on each node; Ann answers through her node.
    let mut phone = Baresip::start("2000", pbx.port, false);
    let target = format!("sip:1001@127.0.0.1:{}", pbx.port);
    phone.command("dial", &target);
    let ring = wait_push(
        &mut ann,
        "ringing at Ann (other node)",
        call_push("ringing"),
    )
    .await;
    assert_eq!(ring["call"]["remote_name"], "Alice Caller");
    assert_eq!(ring["call"]["line_id"], line);
    let call = ring["call"]["id"].as_u64().unwrap();
    let ring_b = wait_push(&mut bob, "ringing at Bob (carrier)", call_push("ringing")).await;
    assert_eq!(ring_b["call"]["id"], call);
    let (_, seen) = phone.wait_event("CALL_RINGING", 0, Duration::from_secs(10));
    ann.request(json!({"op": "answer", "call_id": call}))
        .await
        .expect("Ann answers a call the other node carries");
    let up = wait_push(&mut ann, "connected at Ann", call_push("connected")).await;
    assert_eq!(up["call"]["here"], true);
    wait_push(
        &mut bob,
        "answered elsewhere at Bob",
        call_push("answered_elsewhere"),
    )
    .await;
    let (_, seen) = phone.wait_event("CALL_ESTABLISHED", seen, Duration::from_secs(10));
    // Bob may not take it, nor hang it up: refused on the carrier.
    let e = bob
        .request(json!({"op": "answer", "call_id": call}))
        .await
        .unwrap_err();
    assert_eq!(e.code, "not_ringing");
    // Hold and retrieve from Ann's node.
    ann.request(json!({"op": "hold", "call_id": call}))
        .await
        .unwrap();
    wait_push(&mut ann, "held at Ann", call_push("held")).await;
    ann.request(json!({"op": "retrieve", "call_id": call}))
        .await
        .unwrap();
    wait_push(&mut ann, "connected again at Ann", call_push("connected")).await;
    // A call id that no node carries reads as unknown.
    let e = ann
        .request(json!({"op": "hangup", "call_id": call + 1_000_000}))
        .await
        .unwrap_err();
    assert_eq!(e.code, "not_found");
    ann.request(json!({"op": "hangup", "call_id": call}))
        .await
        .unwrap();
    let (_, seen) = phone.wait_event("CALL_CLOSED", seen, Duration::from_secs(10));
    wait_push(&mut ann, "ended at Ann", call_push("ended")).await;
    wait_push(&mut bob, "ended at Bob", call_push("ended")).await;

    // Recorded once, by the carrier: one CDR, one call-memory entry each.
    let deadline = Instant::now() + Duration::from_secs(10);
    while psql(&url, "SELECT count(*) FROM call_memory").trim() != "2" {
        assert!(Instant::now() < deadline, "call memory not written");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(psql(&url, "SELECT count(*) FROM cdrs").trim(), "1");
    ann.request(json!({"op": "unlock_call_memory", "password": "trader-pw-longer"}))
        .await
        .unwrap();
    let mem = ann.request(json!({"op": "call_memory"})).await.unwrap();
    let mem = mem["entries"].as_array().cloned().unwrap_or_default();
    assert_eq!(mem.len(), 1, "{mem:?}");
    assert_eq!(mem[0]["answered_by"], "local");
    assert_eq!(mem[0]["name"], "Alice Caller");

    // 2. Ann dials out from her node: the carrier places the call.
    let far = Baresip::start("3000", pbx.port, true);
    let v = ann
        .request(json!({"op": "dial", "number": "3000"}))
        .await
        .expect("Ann dials on a line the other node carries");
    let out = v["call_id"].as_u64().unwrap();
    let up = wait_push(
        &mut ann,
        "outgoing connected at Ann",
        call_push("connected"),
    )
    .await;
    assert_eq!(up["call"]["id"], out);
    assert_eq!(up["call"]["direction"], "out");
    let (_, far_seen) = far.wait_event("CALL_ESTABLISHED", 0, Duration::from_secs(10));
    ann.request(json!({"op": "hangup", "call_id": out}))
        .await
        .unwrap();
    far.wait_event("CALL_CLOSED", far_seen, Duration::from_secs(10));
    wait_push(&mut ann, "outgoing ended at Ann", call_push("ended")).await;

    // 3. kill -9 of the carrier while a call rings: Ann's turret is told
    //    the call is gone, and the line comes back through her own node.
    phone.command("dial", &target);
    wait_push(&mut ann, "ringing again at Ann", call_push("ringing")).await;
    let killed = Instant::now();
    carrier.crash();
    let gone = wait_push(&mut ann, "lost at Ann", call_push("ended")).await;
    assert_eq!(gone["call"]["reason"], "controller_lost");
    eprintln!(
        "the ringing call ended at Ann {:?} after the carrier's kill -9",
        killed.elapsed()
    );
    phone.command("hangup", "");
    let survivor = name_of(if holder == name_of(a_dir.path()) {
        b_dir.path()
    } else {
        a_dir.path()
    });
    while psql(&url, "SELECT holder FROM line_leases").trim() != survivor {
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "the survivor did not take the line"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_turret_line(&mut ann, line, "registered", Duration::from_secs(30)).await;
    eprintln!(
        "the line was registered through Ann's node {:?} after the kill",
        killed.elapsed()
    );
    let (_, seen) = phone.wait_event("CALL_CLOSED", seen, Duration::from_secs(35));
    phone.command("dial", &target);
    let ring = wait_push(&mut ann, "ringing on the survivor", call_push("ringing")).await;
    assert_ne!(
        ring["call"]["id"], call,
        "call ids are not reused across nodes"
    );
    phone.wait_event("CALL_RINGING", seen, Duration::from_secs(10));
    phone.command("hangup", "");
    wait_push(&mut ann, "ended on the survivor", call_push("ended")).await;
    drop(other);
}
