//! `turret migrate --to` (issue 19): a SQLite deployment with data in
//! every kind of table moves into an empty PostgreSQL database; the
//! audit chain verifies there, and people log in, open their sealed call
//! memory and find their contacts with the same passwords. Needs the
//! cluster `TURRET_TEST_POSTGRES_URL` names (scripts/test.sh starts one).

mod common;

use common::inproc::InProc;
use common::{ADMIN_PASSWORD, Server};
use openturret_domain::model::Direction;
use openturret_domain::{LineId, ProfileId, Timestamp};
use openturret_server::callmem::{CallEvent, record_call};
use openturret_server::client::conn::Connection;
use serde_json::json;

/// An empty database in the test cluster; its URL.
async fn empty_database() -> String {
    let admin = std::env::var("TURRET_TEST_POSTGRES_URL").expect(
        "TURRET_TEST_POSTGRES_URL is not set: scripts/test.sh starts a throwaway PostgreSQL cluster",
    );
    let name = format!("mig_{}", std::process::id());
    let pool = sqlx::PgPool::connect(&admin).await.unwrap();
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
    format!("{}/{name}", admin.rsplit_once('/').unwrap().0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_deployment_migrates_to_postgres_and_everyone_logs_in_as_before() {
    let s = InProc::start().await;
    assert!(
        common::known_database(s.dir.path()).is_none(),
        "the source is SQLite"
    );
    let api = &s.api;
    let ann = s
        .profile(
            json!({"name": "Ann Trader", "password": "ann-pw-longer", "collect_call_memory": true,
            "call_memory_password_protected": false}),
        )
        .await;
    let bob = s
        .profile(json!({"name": "Bob", "password": "bob-pw-longer"}))
        .await;
    let (st, v) = api
        .post(
            &format!("/api/v1/profiles/{ann}/contacts"),
            json!({"name": "Local Lee", "number": "+44 20 7946 0100"}),
        )
        .await;
    assert!(st.is_success(), "{v}");
    api.post(
        &format!("/api/v1/profiles/{ann}/speed-dials"),
        json!({"kind": "DKM", "position": 1, "name": "Desk", "number": "2002"}),
    )
    .await;
    for n in ["North Alpha Capital", "John Smith"] {
        api.post(
            "/api/v1/global-contacts",
            json!({"name": n, "number": "+44 20 7000 0001"}),
        )
        .await;
    }
    let line = s
        .line(json!({"name": "Rates", "uri": "sip:1001@pbx.invalid", "password": "line-secret-1"}))
        .await;
    api.put(
        &format!("/api/v1/profiles/{ann}/lines/{line}"),
        json!({"position": 1}),
    )
    .await;
    api.post(
        "/api/v1/consents",
        json!({"profile_id": bob, "purpose": "call recording", "channel": "paper"}),
    )
    .await;
    api.post(
        "/api/v1/api-keys",
        json!({"name": "crm", "events": ["calls"]}),
    )
    .await;
    api.post(
        "/api/v1/recorders",
        json!({"name": "Rec A", "uri": "sip:srs@192.0.2.7", "password": "rec-secret"}),
    )
    .await;
    api.patch(
        "/api/v1/settings",
        json!({"cdr_enabled": true, "cti_enabled": true}),
    )
    .await;
    for i in 0..3 {
        record_call(
            &s.app,
            &CallEvent {
                line: LineId(line),
                direction: Direction::Incoming,
                remote_number: "+44 20 7946 0100".into(),
                at: Timestamp(Timestamp::now().0 - 1000 + i),
                answered_by: Some(ProfileId(ann)),
                answered: true,
                placed_by: None,
                duration_ms: Some(1000),
                reason: String::new(),
            },
        )
        .await
        .unwrap();
    }
    // An erased profile, and an entry of the error log.
    let gone = s
        .profile(json!({"name": "Gone", "password": "gone-pw-longer"}))
        .await;
    api.delete(&format!("/api/v1/profiles/{gone}")).await;
    api.post(
        "/api/v1/auth/login",
        json!({"username": "nobody", "password": "wrong password"}),
    )
    .await;
    api.wait_error_log(
        "type=admin.login_refused",
        |_| true,
        std::time::Duration::from_secs(10),
    )
    .await;
    let dir = s.dir.path().to_path_buf();
    let url = empty_database().await;

    // A password on the command line is refused; the migration runs.
    let bad = url.replacen("postgres@", "postgres:secret@", 1);
    let (code, _, err) = common::turret(&dir, &["migrate", "--to", &bad], "");
    assert_ne!(code, 0);
    assert!(
        err.contains("password_file") && !err.contains("secret"),
        "{err}"
    );
    let (code, out, err) = common::turret(&dir, &["migrate", "--to", &url], "");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("audit chain verified on PostgreSQL"), "{out}");
    for t in [
        "profiles",
        "call_memory",
        "global_contact_words",
        "recorders",
        "event_log",
    ] {
        assert!(
            out.lines().any(|l| l.trim_start().starts_with(t)),
            "{t}: {out}"
        );
    }
    // Into a database that is no longer empty: refused.
    let (code, _, err) = common::turret(&dir, &["migrate", "--to", &url], "");
    assert_ne!(code, 0);
    assert!(err.contains("not empty"), "{err}");

    // The deployment on PostgreSQL: the same passwords open everything.
    let server = Server::start(&dir, &[("TURRET_DATABASE__URL", &url)]).await;
    let mut admin = server.client();
    admin.login("admin", ADMIN_PASSWORD).await;
    let (_, lines) = admin.get("/api/v1/lines").await;
    assert_eq!(lines[0]["has_password"], true, "{lines}");
    let (_, found) = admin.get("/api/v1/global-contacts?name=alp").await;
    assert!(found.to_string().contains("North Alpha Capital"), "{found}");
    let (_, profiles) = admin.get("/api/v1/profiles").await;
    assert_eq!(
        profiles["total"], 2,
        "the erased one stays erased: {profiles}"
    );
    let cert = std::fs::read(dir.join("tls/cert.pem")).unwrap();
    let mut c = Connection::connect(&server.url, &cert).await.unwrap();
    c.request(json!({"op": "login", "profile_id": ann, "password": "ann-pw-longer"}))
        .await
        .unwrap();
    c.request(json!({"op": "unlock_call_memory", "password": "ann-pw-longer"}))
        .await
        .unwrap();
    let cm = c.request(json!({"op": "call_memory"})).await.unwrap();
    assert_eq!(cm["entries"].as_array().unwrap().len(), 3, "{cm}");
    let (code, out, err) = common::turret(&dir, &["audit", "verify", "--database", &url], "");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("intact"), "{out}");
    server.stop();
}
