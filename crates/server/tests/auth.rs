//! Authentication over the admin API, against the real `turret serve`:
//! the one-time password, tokens and their expiry, login throttling, the
//! master password's audit trail, administrator accounts.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn id(v: &Value) -> i64 {
    v["id"].as_i64().unwrap_or_else(|| panic!("no id in {v}"))
}

#[tokio::test]
async fn first_start_prints_a_one_time_password_that_must_be_changed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let otp = server
        .one_time_password()
        .expect("one-time password printed");
    assert!(otp.len() >= 16);
    let mut api = server.client();
    let v = api.login("admin", &otp).await;
    assert_eq!(v["must_change_password"], true);
    let (s, v) = api.get("/api/v1/profiles").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"], "password_change_required");

    let (s, v) = api
        .post(
            "/api/v1/auth/password",
            json!({"current_password": otp, "new_password": "short"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["field"], "new_password");
    let (s, v) = api
        .post(
            "/api/v1/auth/password",
            json!({"current_password": otp, "new_password": ADMIN_PASSWORD}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["must_change_password"], false);
    let (s, _) = api.get("/api/v1/profiles").await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "the old session ended with the change"
    );
    api.token = Some(v["token"].as_str().unwrap().into());
    let (s, _) = api.get("/api/v1/profiles").await;
    assert_eq!(s, StatusCode::OK);

    // The one-time password is printed once: a restart prints none.
    server.stop();
    let again = Server::start(dir.path(), &[]).await;
    assert_eq!(again.one_time_password(), None);
    let mut api = again.client();
    api.login("admin", ADMIN_PASSWORD).await;
}

#[tokio::test]
async fn requests_without_a_token_or_with_an_expired_one_get_401() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, mut api) =
        fresh_with_env(dir.path(), &[("TURRET_AUTH__TOKEN_TTL_SECS", "2")]).await;
    let anon = Api {
        token: None,
        ..api.clone()
    };
    for path in [
        "/api/v1/profiles",
        "/api/v1/audit",
        "/api/v1/settings",
        "/api/v1/lines",
    ] {
        let (s, _, v) = anon.call_full(Method::GET, path, None, &[]).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}: {v}");
    }
    let forged = Api {
        token: Some("0".repeat(64)),
        ..api.clone()
    };
    assert_eq!(
        forged.get("/api/v1/profiles").await.0,
        StatusCode::UNAUTHORIZED
    );

    api.login("admin", ADMIN_PASSWORD).await;
    assert_eq!(api.get("/api/v1/profiles").await.0, StatusCode::OK);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (s, h, _) = api
            .call_full(Method::GET, "/api/v1/profiles", None, &[])
            .await;
        if s == StatusCode::UNAUTHORIZED {
            assert_eq!(h["www-authenticate"], "Bearer");
            break;
        }
        assert_eq!(s, StatusCode::OK);
        assert!(std::time::Instant::now() < deadline, "token never expired");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Logout ends a session at once.
    api.login("admin", ADMIN_PASSWORD).await;
    assert_eq!(
        api.post("/api/v1/auth/logout", json!({})).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.get("/api/v1/profiles").await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn repeated_wrong_passwords_are_throttled_audited_and_spare_other_users() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, admin) = fresh(dir.path()).await;
    let (s, _) = admin
        .post("/api/v1/admins", json!({"username": "bob", "password": "bob-password-0001", "must_change_password": false}))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let anon = Api {
        token: None,
        ..admin.clone()
    };
    for _ in 0..5 {
        let (s, _) = anon
            .post(
                "/api/v1/auth/login",
                json!({"username": "bob", "password": "guess"}),
            )
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let (s, h, v) = anon
        .call_full(
            Method::POST,
            "/api/v1/auth/login",
            Some(json!({"username": "bob", "password": "bob-password-0001"})),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= 300);
    assert!(
        v["message"].as_str().unwrap().contains("try again in"),
        "{v}"
    );

    // Another user from the same address is not affected.
    let mut other = anon.clone();
    other.login("admin", ADMIN_PASSWORD).await;

    let (_, audit) = admin.get("/api/v1/audit?actor=bob").await;
    let events: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        events.iter().filter(|e| **e == "auth.login_failed").count(),
        5,
        "{events:?}"
    );
    assert!(events.contains(&"auth.account_locked"), "{events:?}");
    // Refusals while locked are counted with the lockout, not audited one
    // by one (issue 14, point 4).
    assert!(!events.contains(&"auth.login_throttled"), "{events:?}");

    let (_, locks) = admin.get("/api/v1/lockouts").await;
    assert_eq!(locks[0]["username"], "bob");
    assert_eq!(locks[0]["refused"], 1, "{locks}");
    let (s, v) = admin
        .post("/api/v1/lockouts/clear", json!({"username": "bob"}))
        .await;
    assert_eq!((s, v["cleared"].clone()), (StatusCode::OK, json!(true)));
    let mut bob = anon.clone();
    bob.login("bob", "bob-password-0001").await;
}

#[tokio::test]
async fn master_password_changes_are_audited_under_their_own_events() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, api) = fresh(dir.path()).await;
    let (s, v) = api
        .patch(
            "/api/v1/settings",
            json!({"master_password_enabled": true, "master_password": "master-pw-0001-ab"}),
        )
        .await;
    assert_eq!(
        (s, v["master_password_enabled"].clone()),
        (StatusCode::OK, json!(true)),
        "{v}"
    );
    let (s, v) = api
        .patch(
            "/api/v1/settings",
            json!({"master_password_enabled": false}),
        )
        .await;
    assert_eq!(
        (s, v["master_password_enabled"].clone()),
        (StatusCode::OK, json!(false))
    );
    let (_, a) = api.get("/api/v1/audit?object_type=settings").await;
    let events: Vec<&str> = a["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        vec!["master_password.disabled", "master_password.enabled"]
    );
}

#[tokio::test]
async fn admins_can_be_disabled_reset_and_never_all_locked_out() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, admin) = fresh(dir.path()).await;
    let me = admin.get("/api/v1/auth/me").await.1;
    let (_, bob) = admin
        .post(
            "/api/v1/admins",
            json!({"username": "bob", "password": "bob-password-0001"}),
        )
        .await;
    let bid = id(&bob);
    assert_eq!(
        bob["must_change_password"], true,
        "a new admin chooses their own password"
    );
    let mut bob_api = Api {
        token: None,
        ..admin.clone()
    };
    bob_api.login("bob", "bob-password-0001").await;
    let (s, v) = admin
        .patch(&format!("/api/v1/admins/{bid}"), json!({"enabled": false}))
        .await;
    assert_eq!((s, v["enabled"].clone()), (StatusCode::OK, json!(false)));
    assert_eq!(
        bob_api.get("/api/v1/auth/me").await.0,
        StatusCode::UNAUTHORIZED,
        "disabling ends sessions"
    );
    let (s, _) = Api {
        token: None,
        ..admin.clone()
    }
    .post(
        "/api/v1/auth/login",
        json!({"username": "bob", "password": "bob-password-0001"}),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, v) = admin
        .patch(
            &format!("/api/v1/admins/{}", id(&me)),
            json!({"enabled": false}),
        )
        .await;
    assert_eq!(
        (s, v["field"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("enabled"))
    );
    let (s, _) = admin
        .patch(&format!("/api/v1/admins/{bid}"), json!({"enabled": true}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = admin
        .post(
            &format!("/api/v1/admins/{bid}/password"),
            json!({"password": "bob-password-0002"}),
        )
        .await;
    assert_eq!(
        (s, v["must_change_password"].clone()),
        (StatusCode::OK, json!(true))
    );
    bob_api.login("bob", "bob-password-0002").await;
    assert_eq!(
        admin.delete(&format!("/api/v1/admins/{bid}")).await.0,
        StatusCode::NO_CONTENT
    );
}

/// Issue 14, point 7: the computer name a client sends is recorded as a
/// bounded claim, never as markup or bulk text.
#[tokio::test]
async fn the_client_host_header_is_recorded_as_a_bounded_claim() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, admin) = fresh(dir.path()).await;
    let long = "A".repeat(10_000);
    let cases = [
        ("DESK-12.floor3", "DESK-12.floor3"),
        ("<script>alert(1)</script>", "invalid"),
        ("desk 12, admin=root", "invalid"),
        (long.as_str(), "invalid"),
    ];
    for (i, (sent, _)) in cases.iter().enumerate() {
        let (s, _, v) = admin
            .call_full(
                Method::POST,
                "/api/v1/global-contacts",
                Some(json!({"name": format!("Host case {i}"), "number": format!("55500{i}")})),
                &[("X-Client-Host", sent)],
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let (_, audit) = admin
        .get("/api/v1/audit?event_type=global_contact.created&limit=10")
        .await;
    let mut hosts: Vec<String> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["client_host"].as_str().unwrap().to_string())
        .collect();
    hosts.reverse();
    let expected: Vec<&str> = cases.iter().map(|(_, r)| *r).collect();
    assert_eq!(hosts, expected);
}

/// Issue 15: an administrator's subject access export holds their account
/// and their own audit trail (with the client address and the computer
/// name their client claimed), never the password hash, nor what others
/// did.
#[tokio::test]
async fn an_administrator_can_be_given_everything_held_about_them() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, admin) = fresh(dir.path()).await;
    let (s, v) = admin
        .post("/api/v1/admins", json!({"username": "carol", "password": "carol-password-01", "must_change_password": false}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let carol_id = v["id"].as_i64().unwrap();
    let mut carol = Api {
        token: None,
        ..admin.clone()
    };
    carol.login("carol", "carol-password-01").await;
    let (s, _, _) = carol
        .call_full(
            Method::POST,
            "/api/v1/global-contacts",
            Some(json!({"name": "Carol's Contact", "number": "5551234"})),
            &[("X-Client-Host", "CAROL-DESK")],
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let res = admin
        .client
        .get(format!(
            "{}/api/v1/admins/{carol_id}/subject-export",
            admin.base
        ))
        .bearer_auth(admin.token.as_ref().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/zip");
    let zip = res.bytes().await.unwrap();
    let holds = |needle: &str| zip.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(holds("subject.json") && holds("audit_events.csv"));
    assert!(holds("\"username\": \"carol\""), "the account");
    assert!(
        holds("global_contact.created") && holds("CAROL-DESK") && holds("127.0.0.1"),
        "the trail"
    );
    assert!(!holds("$argon2"), "never the password hash");
    assert!(
        !holds("admin.created"),
        "what another administrator did is not in it"
    );
    let (_, audit) = admin
        .get("/api/v1/audit?event_type=admin.subject_exported")
        .await;
    assert_eq!(audit["items"][0]["object_id"], carol_id.to_string());
}
