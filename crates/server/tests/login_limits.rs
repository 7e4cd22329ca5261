//! Login limits under load and as a lever (issue 14, points 3 and 4),
//! against the real binary, with clients on several loopback addresses
//! (127.0.0.2, .3, .4: other hosts to the server).

mod common;

use std::net::IpAddr;

use common::{ADMIN_PASSWORD, Api, Server, fresh_with_env};
use openturret_server::client::conn::Connection;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// An API client whose connections come from `from`.
fn client_from(server: &Server, dir: &std::path::Path, from: &str) -> Api {
    let cert = std::fs::read(dir.join("tls/cert.pem")).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&cert).unwrap())
        .local_address(from.parse::<IpAddr>().unwrap())
        .build()
        .unwrap();
    Api {
        client,
        ..server.client()
    }
}

async fn turret_from(api: &Api, dir: &std::path::Path, from: &str) -> Connection {
    let cert = std::fs::read(dir.join("tls/cert.pem")).unwrap();
    Connection::connect_from(&api.base, &cert, Some(from.parse().unwrap()))
        .await
        .unwrap()
}

async fn login_status(api: &Api, user: &str, password: &str) -> StatusCode {
    api.post(
        "/api/v1/auth/login",
        json!({"username": user, "password": password}),
    )
    .await
    .0
}

async fn audit_events(admin: &Api, query: &str) -> Vec<Value> {
    let (_, v) = admin.get(&format!("/api/v1/audit?{query}")).await;
    v["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guesses_get_no_more_checks_than_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (server, admin) = fresh_with_env(dir.path(), &[]).await;
    let (s, v) = admin
        .post("/api/v1/admins", json!({"username": "bob", "password": "bob-password-0001", "must_change_password": false}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = admin
        .post(
            "/api/v1/profiles",
            json!({"name": "Desk", "password": "desk-pw-123"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let pid = v["id"].as_i64().unwrap();

    // 48 admin guesses at the same moment: at most 5 are checked.
    let anon = server.client();
    let guesses = (0..48).map(|i| {
        let a = anon.clone();
        async move { login_status(&a, "bob", &format!("guess-{i}")).await }
    });
    let answers = futures_util::future::join_all(guesses).await;
    let checked = answers
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let refused = answers
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert!(
        checked <= 5,
        "{checked} of 48 parallel guesses were checked"
    );
    assert_eq!(checked + refused, 48, "{answers:?}");

    // 32 profile guesses at the same moment, each on its own connection.
    let mut conns = Vec::new();
    for _ in 0..32 {
        conns.push(turret_from(&anon, dir.path(), "127.0.0.1").await);
    }
    let tries = conns.into_iter().enumerate().map(|(i, mut c)| async move {
        c.request(json!({"op": "login", "profile_id": pid, "password": format!("guess-{i}")}))
            .await
            .unwrap_err()
            .code
    });
    let codes = futures_util::future::join_all(tries).await;
    let checked = codes.iter().filter(|c| *c == "wrong_password").count();
    assert!(
        checked <= 5,
        "{checked} of 32 parallel profile guesses were checked: {codes:?}"
    );
    assert!(
        codes
            .iter()
            .all(|c| c == "wrong_password" || c == "too_many_attempts"),
        "{codes:?}"
    );

    // Each lockout is audited once, with its count.
    let locked = audit_events(&admin, "event_type=auth.account_locked").await;
    assert_eq!(locked.len(), 1, "{locked:?}");
    assert!(
        locked[0]["changes"].to_string().contains("failures=5"),
        "{locked:?}"
    );
    let client_locked = audit_events(&admin, "event_type=client.account_locked").await;
    assert_eq!(client_locked.len(), 1, "{client_locked:?}");
    // The admin API still answers at once.
    let (s, _) = admin.get("/api/v1/auth/me").await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_cannot_lock_the_owner_out() {
    let dir = tempfile::tempdir().unwrap();
    let (server, admin) =
        fresh_with_env(dir.path(), &[("TURRET_AUTH__MAX_FAILURES_PER_IP", "8")]).await;
    let (s, _) = admin
        .post("/api/v1/admins", json!({"username": "bob", "password": "bob-password-0001", "must_change_password": false}))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let mut pids = Vec::new();
    for name in ["Desk A", "Desk B"] {
        let (s, v) = admin
            .post(
                "/api/v1/profiles",
                json!({"name": name, "password": "desk-pw-123"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        pids.push(v["id"].as_i64().unwrap());
    }
    let (s, v) = admin
        .patch(
            "/api/v1/settings",
            json!({"master_password_enabled": true, "master_password": "master-pw-0001-ab"}),
        )
        .await;
    assert!(s.is_success(), "{v}");
    let owner = client_from(&server, dir.path(), "127.0.0.1");
    let stranger = client_from(&server, dir.path(), "127.0.0.2");

    // bob works from 127.0.0.1; a stranger guesses from 127.0.0.2 until
    // locked, even with the right password after.
    assert_eq!(
        login_status(&owner, "bob", "bob-password-0001").await,
        StatusCode::OK
    );
    for i in 0..5 {
        assert_eq!(
            login_status(&stranger, "bob", &format!("guess-{i}")).await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        login_status(&stranger, "bob", "bob-password-0001").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Five more requests every few minutes keep nobody out but the guesser.
    assert_eq!(
        login_status(&owner, "bob", "bob-password-0001").await,
        StatusCode::OK
    );
    assert_eq!(
        login_status(&owner, "admin", ADMIN_PASSWORD).await,
        StatusCode::OK
    );

    // A trader: five guesses from the stranger's host lock the guesser
    // out of that profile, not the trader at their own desk.
    let mut desk = turret_from(&owner, dir.path(), "127.0.0.1").await;
    desk.request(json!({"op": "login", "profile_id": pids[0], "password": "desk-pw-123"}))
        .await
        .unwrap();
    let mut guesser = turret_from(&stranger, dir.path(), "127.0.0.2").await;
    for i in 0..5 {
        let e = guesser
            .request(json!({"op": "login", "profile_id": pids[0], "password": format!("g{i}")}))
            .await
            .unwrap_err();
        assert_eq!(e.code, "wrong_password");
    }
    let e = guesser
        .request(json!({"op": "login", "profile_id": pids[0], "password": "desk-pw-123"}))
        .await
        .unwrap_err();
    assert_eq!(e.code, "too_many_attempts");
    let mut desk2 = turret_from(&owner, dir.path(), "127.0.0.1").await;
    desk2
        .request(json!({"op": "login", "profile_id": pids[0], "password": "desk-pw-123"}))
        .await
        .expect("the trader logs in at their desk");

    // The master password is locked per profile: guessing it for one
    // profile leaves it usable for another.
    let mut m = turret_from(&stranger, dir.path(), "127.0.0.2").await;
    for i in 0..5 {
        let e = m
            .request(
                json!({"op": "master_login", "profile_id": pids[0], "password": format!("m{i}")}),
            )
            .await
            .unwrap_err();
        assert_eq!(e.code, "wrong_password", "{e:?}");
    }
    let e = m
        .request(
            json!({"op": "master_login", "profile_id": pids[0], "password": "master-pw-0001-ab"}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, "too_many_attempts");
    let mut m2 = turret_from(&stranger, dir.path(), "127.0.0.2").await;
    m2.request(
        json!({"op": "master_login", "profile_id": pids[1], "password": "master-pw-0001-ab"}),
    )
    .await
    .expect("the master password still opens another profile");

    // An admin brute force from a shared address locks that address for
    // admin logins only: traders there still log in.
    let shared = client_from(&server, dir.path(), "127.0.0.3");
    for i in 0..8 {
        assert_eq!(
            login_status(&shared, &format!("nobody-{i}"), "x").await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        login_status(&shared, "admin", ADMIN_PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    let mut trader = turret_from(&shared, dir.path(), "127.0.0.3").await;
    trader
        .request(json!({"op": "login", "profile_id": pids[1], "password": "desk-pw-123"}))
        .await
        .expect("a trader logs in from the address locked for admin logins");

    // Audited in aggregate: one entry per lockout, none per refusal.
    let all = audit_events(&admin, "limit=500").await;
    let count = |t: &str| all.iter().filter(|e| e["event_type"] == t).count();
    assert_eq!(count("auth.account_locked"), 1, "{all:?}");
    assert_eq!(count("auth.address_locked"), 1);
    assert_eq!(
        count("client.account_locked"),
        2,
        "the profile and its master password"
    );
    assert_eq!(count("auth.login_throttled"), 0);
    let (_, locks) = admin.get("/api/v1/lockouts").await;
    let locks = locks.as_array().unwrap();
    assert!(
        locks.iter().any(|l| l["realm"] == "admin"
            && l["username"] == "bob"
            && l["address"] == "127.0.0.2"),
        "{locks:?}"
    );
    assert!(
        locks
            .iter()
            .any(|l| l["realm"] == "master" && l["username"] == pids[0].to_string()),
        "{locks:?}"
    );
}
