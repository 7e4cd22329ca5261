//! A restart of the server costs a trader a reconnect, not a login (issue
//! 14, point 10): turret sessions outlive a graceful restart and a crash
//! of the real binary; what lived only in memory (the call-memory key, an
//! unlocked contacts gate) is asked for again; a logout or a password
//! change ends a session for good.

mod common;

use common::{Api, Server};
use openturret_server::client::conn::Connection;
use serde_json::json;

async fn turret(server: &Server) -> Connection {
    let cert = std::fs::read(server.data_dir.join("tls/cert.pem")).unwrap();
    Connection::connect(&server.url, &cert).await.unwrap()
}

async fn admin(server: &Server) -> Api {
    let mut api = server.client();
    api.login("admin", common::ADMIN_PASSWORD).await;
    api
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turret_sessions_survive_a_restart_and_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let (server, api) = common::fresh(dir.path()).await;
    let (s, v) = api
        .post(
            "/api/v1/profiles",
            json!({"name": "Ann Trader", "password": "ann-pw-123-longer", "contacts_password": "ann-contacts",
                   "collect_call_memory": true}),
        )
        .await;
    assert!(s.is_success(), "{v}");
    let pid = v["id"].as_i64().unwrap();
    let (s, v) = api
        .post(
            "/api/v1/profiles",
            json!({"name": "Bob Trader", "password": "bob-pw-123-longer"}),
        )
        .await;
    assert!(s.is_success(), "{v}");
    let bob = v["id"].as_i64().unwrap();

    let mut c = turret(&server).await;
    let login = c
        .request(json!({"op": "login", "profile_id": pid, "password": "ann-pw-123-longer"}))
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap().to_string();
    c.request(json!({"op": "unlock_contacts", "password": "ann-contacts"}))
        .await
        .unwrap();
    c.request(json!({"op": "call_memory"})).await.unwrap();
    let mut b = turret(&server).await;
    let bl = b
        .request(json!({"op": "login", "profile_id": bob, "password": "bob-pw-123-longer"}))
        .await
        .unwrap();
    let bob_token = bl["token"].as_str().unwrap().to_string();
    b.request(json!({"op": "logout"})).await.unwrap();
    drop(b);

    // 1. A graceful restart (SIGTERM, start again on the same data).
    server.stop();
    let server = Server::start(dir.path(), &[]).await;
    let mut c = turret(&server).await;
    let back = c
        .request(json!({"op": "resume", "token": token}))
        .await
        .expect("the session outlives a restart");
    assert_eq!(back["profile_id"], pid);
    assert_eq!(back["restored"], true);
    assert_eq!(back["config"]["profile"]["name"], "Ann Trader");
    // What lived only in memory is asked for again.
    let e = c.request(json!({"op": "call_memory"})).await.unwrap_err();
    assert_eq!(e.code, "call_memory_locked");
    let e = c.request(json!({"op": "contacts"})).await.unwrap_err();
    assert_eq!(e.code, "contacts_locked");
    c.request(json!({"op": "unlock_call_memory", "password": "ann-pw-123-longer"}))
        .await
        .unwrap();
    c.request(json!({"op": "call_memory"})).await.unwrap();
    // A logged-out session stays ended.
    let mut b = turret(&server).await;
    let e = b
        .request(json!({"op": "resume", "token": bob_token}))
        .await
        .unwrap_err();
    assert_eq!(e.code, "session_expired");
    let api = admin(&server).await;
    let (_, audit) = api
        .get("/api/v1/audit?event_type=client.session_restored")
        .await;
    assert_eq!(audit["items"].as_array().unwrap().len(), 1, "{audit}");

    // 2. A crash (SIGKILL) while the turret is connected.
    server.crash();
    let server = Server::start(dir.path(), &[]).await;
    let mut c = turret(&server).await;
    let back = c
        .request(json!({"op": "resume", "token": token}))
        .await
        .expect("the session outlives a crash");
    assert_eq!(back["profile_id"], pid);

    // 3. An administrator changes the password: the session ends for good.
    let api = admin(&server).await;
    let (s, v) = api
        .patch(
            &format!("/api/v1/profiles/{pid}"),
            json!({"password": "ann-pw-456-longer"}),
        )
        .await;
    assert!(s.is_success(), "{v}");
    drop(c);
    server.stop();
    let server = Server::start(dir.path(), &[]).await;
    let mut c = turret(&server).await;
    let e = c
        .request(json!({"op": "resume", "token": token}))
        .await
        .unwrap_err();
    assert_eq!(e.code, "session_expired");
    // Only hashes are kept, never the token itself.
    let db = dir.path().join("turret.db");
    let dump = common::sqlite3(&db, "SELECT hex(token_hash) FROM client_sessions");
    assert!(!dump.contains(&token), "{dump}");
    server.stop();
}
