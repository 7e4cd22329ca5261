//! Several System Manager nodes on one PostgreSQL database (issue 19):
//! real `turret serve` processes, a real PostgreSQL (the test cluster of
//! `TURRET_TEST_POSTGRES_URL`), Kamailio as the PBX.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::sip::{Kamailio, PBX_PASSWORD};
use common::*;
use openturret_server::client::conn::Connection;
use serde_json::json;

/// Node A, fresh on a new PostgreSQL database, with an administrator.
async fn first_node(dir: &Path) -> (Server, Api) {
    postgres_database(dir).await;
    fresh(dir).await
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
    let a_dir = tempfile::tempdir().unwrap();
    let (a, api) = first_node(a_dir.path()).await;
    let b_dir = second_node_dir(a_dir.path());
    let b = Server::start(b_dir.path(), &[]).await;
    // B knows the administrator A made: one database.
    let mut api_b = b.client();
    api_b.login("admin", ADMIN_PASSWORD).await;

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
    let a_dir = tempfile::tempdir().unwrap();
    let (a, api) = first_node(a_dir.path()).await;
    let b_dir = second_node_dir(a_dir.path());
    let b = Server::start(b_dir.path(), &[]).await;
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
