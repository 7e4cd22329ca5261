//! The admin REST API, driven over HTTPS against the real `turret serve`.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn id(v: &Value) -> i64 {
    v["id"].as_i64().unwrap_or_else(|| panic!("no id in {v}"))
}

/// Creates one of everything; returns the ids.
async fn populate(api: &Api) -> Value {
    let (s, p) = api
        .post(
            "/api/v1/profiles",
            json!({"name": "Ann Trader", "password": "profile-pw-1111",
                   "contacts_password": "contacts-pw-2222", "call_memory_password": "callmem-pw-3333",
                   "collect_call_memory": true, "call_memory_password_protected": true}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let pid = id(&p);
    for (name, number) in [
        ("Bob Broker", "+44 20 7946 0001"),
        ("Cat Clerk", "020 7946 0002"),
    ] {
        let (s, v) = api
            .post(
                &format!("/api/v1/profiles/{pid}/contacts"),
                json!({"name": name, "number": number, "field3": "desk"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    for (kind, pos) in [("DKA", 1), ("DKM", 1), ("DKM", 2)] {
        let (s, v) = api
            .post(
                &format!("/api/v1/profiles/{pid}/speed-dials"),
                json!({"kind": kind, "position": pos, "name": format!("{kind} {pos}"), "number": "2001"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let (s, l) = api
        .post(
            "/api/v1/lines",
            json!({"name": "Line 1", "uri": "sip:1001@pbx.example.com", "username": "1001",
                   "password": "line-secret-4444", "display_name": "FX Desk", "alternate_text": "FX",
                   "preferred_identity": "+44 20 7946 1000"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{l}");
    let lid = id(&l);
    let (s, v) = api
        .put(
            &format!("/api/v1/profiles/{pid}/lines/{lid}"),
            json!({"position": 3}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, g) = api
        .post(
            "/api/v1/global-contacts",
            json!({"name": "Zed Global", "number": "+1 212 555 0100"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{g}");
    let (s, c) = api
        .post(
            "/api/v1/consents",
            json!({"profile_id": pid, "purpose": "call memory", "channel": "paper", "given_at": "2026-01-02T03:04:05Z"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let (s, v) = api
        .patch(
            "/api/v1/settings",
            json!({"global_contacts_changeable": true, "cti_enabled": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    json!({"profile": pid, "line": lid, "global": id(&g), "consent": id(&c)})
}

/// Reads everything back as one JSON value (without volatile timestamps of
/// settings).
async fn snapshot(api: &Api, ids: &Value) -> Value {
    let pid = ids["profile"].as_i64().unwrap();
    let mut out = json!({});
    for (k, path) in [
        ("profile", format!("/api/v1/profiles/{pid}")),
        ("contacts", format!("/api/v1/profiles/{pid}/contacts")),
        ("keys", format!("/api/v1/profiles/{pid}/speed-dials")),
        ("line_keys", format!("/api/v1/profiles/{pid}/lines")),
        ("lines", "/api/v1/lines".to_string()),
        ("globals", "/api/v1/global-contacts".to_string()),
        ("consents", "/api/v1/consents".to_string()),
        ("settings", "/api/v1/settings".to_string()),
        ("admins", "/api/v1/admins".to_string()),
    ] {
        let (s, mut v) = api.get(&path).await;
        assert_eq!(s, StatusCode::OK, "{path}: {v}");
        // A line's registration is live state (the MLC keeps trying), not
        // stored data: left out of what must not change.
        if k == "lines" {
            for l in v.as_array_mut().unwrap() {
                let l = l.as_object_mut().unwrap();
                l.remove("registration_state");
                l.remove("registration_reason");
                l.remove("registration_since");
            }
        }
        out[k] = v;
    }
    out
}

#[tokio::test]
async fn every_resource_can_be_created_read_updated_deleted_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (server, api) = fresh(dir.path()).await;
    let ids = populate(&api).await;
    let pid = ids["profile"].as_i64().unwrap();

    let snap = snapshot(&api, &ids).await;
    assert_eq!(snap["profile"]["name"], "Ann Trader");
    assert_eq!(snap["profile"]["has_contacts_password"], true);
    assert_eq!(snap["contacts"].as_array().unwrap().len(), 2);
    assert_eq!(snap["keys"].as_array().unwrap().len(), 3);
    assert_eq!(snap["line_keys"][0]["position"], 3);
    assert_eq!(snap["line_keys"][0]["display_name"], "FX Desk");
    assert_eq!(snap["settings"]["global_contacts_changeable"], true);
    assert_eq!(
        snap["settings"]["api_enabled"], false,
        "off until switched on"
    );
    // The MLC is trying to register the line at a host that does not exist.
    let (_, lines) = api.get("/api/v1/lines").await;
    let reg = lines[0]["registration_state"].as_str().unwrap();
    assert!(matches!(reg, "registering" | "failing"), "{reg}");

    // Update.
    let (s, v) = api
        .patch(
            &format!("/api/v1/profiles/{pid}"),
            json!({"name": "Ann T.", "allow_call_memory_deletion": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["name"], "Ann T.");
    let cid = snap["contacts"][0]["id"].as_i64().unwrap();
    let (s, v) = api
        .patch(
            &format!("/api/v1/profiles/{pid}/contacts/{cid}"),
            json!({"field4": "note"}),
        )
        .await;
    assert_eq!(
        (s, v["field4"].clone(), v["name"].clone()),
        (
            StatusCode::OK,
            json!("note"),
            snap["contacts"][0]["name"].clone()
        )
    );
    let kid = snap["keys"][0]["id"].as_i64().unwrap();
    let (s, v) = api
        .patch(
            &format!("/api/v1/profiles/{pid}/speed-dials/{kid}"),
            json!({"position": 9}),
        )
        .await;
    assert_eq!((s, v["position"].clone()), (StatusCode::OK, json!(9)));
    let lid = ids["line"].as_i64().unwrap();
    let (s, v) = api
        .patch(
            &format!("/api/v1/lines/{lid}"),
            json!({"display_name": "Rates Desk"}),
        )
        .await;
    assert_eq!(
        (s, v["display_name"].clone(), v["has_password"].clone()),
        (StatusCode::OK, json!("Rates Desk"), json!(true))
    );
    let gid = ids["global"].as_i64().unwrap();
    let (s, v) = api
        .patch(
            &format!("/api/v1/global-contacts/{gid}"),
            json!({"number": "+1 212 555 0199"}),
        )
        .await;
    assert_eq!(
        (s, v["number"].clone()),
        (StatusCode::OK, json!("+1 212 555 0199"))
    );

    // Search global contacts by name and by number, in any written form.
    // A name is found by the beginning of any of its words.
    for q in [
        "name=zed",
        "number=%2B1%20212",
        "q=0012125550",
        "q=Ze",
        "q=glob",
        "q=zed%20gl",
        "name=GLOBAL",
    ] {
        let (s, v) = api.get(&format!("/api/v1/global-contacts?{q}")).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["items"].as_array().unwrap().len(), 1, "{q}: {v}");
    }
    for q in ["name=nobody", "q=lobal", "q=global%20zed"] {
        let (_, v) = api.get(&format!("/api/v1/global-contacts?{q}")).await;
        assert!(v["items"].as_array().unwrap().is_empty(), "{q}: {v}");
    }
    let (_, v) = api.get("/api/v1/profiles?q=ann").await;
    assert_eq!(v["total"], 1);

    // Delete one of each kind of child.
    let cid2 = snap["contacts"][1]["id"].as_i64().unwrap();
    assert_eq!(
        api.delete(&format!("/api/v1/profiles/{pid}/contacts/{cid2}"))
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.delete(&format!("/api/v1/profiles/{pid}/speed-dials/{kid}"))
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.delete(&format!("/api/v1/global-contacts/{gid}"))
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.get(&format!("/api/v1/global-contacts/{gid}")).await.0,
        StatusCode::NOT_FOUND
    );

    let before = snapshot(&api, &ids).await;
    server.stop();
    let server = Server::start(dir.path(), &[]).await;
    let mut api = server.client();
    api.login("admin", ADMIN_PASSWORD).await;
    let after = snapshot(&api, &ids).await;
    assert_eq!(before, after, "a restart keeps everything");

    // Unassign the line key, delete the line, delete the profile.
    assert_eq!(
        api.delete(&format!("/api/v1/profiles/{pid}/lines/{lid}"))
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.delete(&format!("/api/v1/lines/{lid}")).await.0,
        StatusCode::NO_CONTENT
    );
    let (s, v) = api
        .get(&format!("/api/v1/profiles/{pid}/erasure-preview"))
        .await;
    assert_eq!(
        (s, v["local_contacts"].clone(), v["speed_dials"].clone()),
        (StatusCode::OK, json!(1), json!(2))
    );
    let (s, v) = api.delete(&format!("/api/v1/profiles/{pid}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["erased"]["consents"], 1);
    assert_eq!(
        api.get(&format!("/api/v1/profiles/{pid}")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.get(&format!("/api/v1/profiles/{pid}/contacts")).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn withdrawing_consent_erases_the_profile_rule_8() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, api) = fresh(dir.path()).await;
    let ids = populate(&api).await;
    let (pid, consent) = (
        ids["profile"].as_i64().unwrap(),
        ids["consent"].as_i64().unwrap(),
    );
    let (s, v) = api
        .post(&format!("/api/v1/consents/{consent}/withdraw"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["erased"]["local_contacts"], 2);
    assert_eq!(v["erased"]["speed_dials"], 3);
    assert_eq!(
        api.get(&format!("/api/v1/profiles/{pid}")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.get(&format!("/api/v1/consents/{consent}")).await.0,
        StatusCode::NOT_FOUND
    );
    let (_, audit) = api.get("/api/v1/audit?event_type=consent.withdrawn").await;
    assert_eq!(audit["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn bad_input_answers_422_naming_the_field_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, api) = fresh(dir.path()).await;
    let ids = populate(&api).await;
    let pid = ids["profile"].as_i64().unwrap();
    let lid = ids["line"].as_i64().unwrap();
    let before = snapshot(&api, &ids).await;
    let (_, audit_before) = api.get("/api/v1/audit?limit=1").await;

    let cases: Vec<(Method, String, Value, &str)> = vec![
        (
            Method::POST,
            "/api/v1/profiles".into(),
            json!({"name": "", "password": "pppp"}),
            "name",
        ),
        (
            Method::POST,
            "/api/v1/profiles".into(),
            json!({"name": "X", "password": "p"}),
            "password",
        ),
        (
            Method::POST,
            "/api/v1/profiles".into(),
            json!({"name": "Ann Trader", "password": "pppp"}),
            "name",
        ),
        (
            Method::POST,
            "/api/v1/profiles".into(),
            json!({"name": "Y", "password": "pppp", "call_memory_password_protected": true}),
            "call_memory_password",
        ),
        (
            Method::POST,
            "/api/v1/profiles".into(),
            json!({"name": "Y", "password": "pppp", "colour": "red"}),
            "",
        ),
        (
            Method::PATCH,
            format!("/api/v1/profiles/{pid}"),
            json!({"collect_call_memory": "yes"}),
            "collect_call_memory",
        ),
        (
            Method::POST,
            format!("/api/v1/profiles/{pid}/contacts"),
            json!({"name": "Q", "number": "call me"}),
            "number",
        ),
        (
            Method::POST,
            format!("/api/v1/profiles/{pid}/speed-dials"),
            json!({"kind": "DKX", "position": 5, "name": "a", "number": "1"}),
            "kind",
        ),
        (
            Method::POST,
            format!("/api/v1/profiles/{pid}/speed-dials"),
            json!({"kind": "DKM", "position": 1, "name": "dup", "number": "1"}),
            "position",
        ),
        (
            Method::PATCH,
            format!("/api/v1/lines/{lid}"),
            json!({"uri": "http://nope"}),
            "uri",
        ),
        (
            Method::PUT,
            format!("/api/v1/profiles/{pid}/lines/{lid}"),
            json!({"position": 0}),
            "position",
        ),
        (
            Method::PATCH,
            "/api/v1/settings".into(),
            json!({"master_password_enabled": true}),
            "master_password",
        ),
        (
            Method::POST,
            "/api/v1/consents".into(),
            json!({"profile_id": pid, "purpose": "x", "channel": "pigeon"}),
            "channel",
        ),
        (
            Method::POST,
            "/api/v1/consents".into(),
            json!({"profile_id": pid, "purpose": "x", "channel": "paper", "given_at": "yesterday"}),
            "given_at",
        ),
        (
            Method::GET,
            "/api/v1/global-contacts?limit=0".into(),
            Value::Null,
            "limit",
        ),
    ];
    for (method, path, body, field) in cases {
        let body = (!body.is_null()).then_some(body);
        let (s, v) = api.call(method.clone(), &path, body).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{method} {path}: {v}");
        if !field.is_empty() {
            assert_eq!(v["field"], field, "{method} {path}: {v}");
        }
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        let text = v.to_string().to_lowercase();
        for leak in [
            "sqlite",
            "select",
            "insert",
            "/tmp",
            "panicked",
            "constraint",
        ] {
            assert!(!text.contains(leak), "{path} leaks {leak}: {v}");
        }
    }
    assert_eq!(before, snapshot(&api, &ids).await, "nothing changed");
    let (_, audit_after) = api.get("/api/v1/audit?limit=1").await;
    assert_eq!(
        audit_before["items"][0]["seq"], audit_after["items"][0]["seq"],
        "no change was audited"
    );
}

#[tokio::test]
async fn unknown_ids_answer_404_without_internals() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, api) = fresh(dir.path()).await;
    for path in [
        "/api/v1/profiles/999",
        "/api/v1/profiles/abc",
        "/api/v1/lines/999",
        "/api/v1/profiles/999/contacts/1",
        "/api/v1/admins/999",
        "/api/v1/consents/5",
        "/api/v1/global-contacts/77",
        "/api/v1/nothing-here",
    ] {
        let (s, v) = api.get(path).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(v["error"], "not_found", "{path}: {v}");
    }
    let (s, _) = api
        .patch("/api/v1/profiles/999", json!({"name": "x"}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = api.delete("/api/v1/profiles/999/speed-dials/4").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn lines_never_show_their_password_and_audit_names_fields_not_values() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, api) = fresh(dir.path()).await;
    let ids = populate(&api).await;
    let lid = ids["line"].as_i64().unwrap();
    let (s, v) = api
        .patch(
            &format!("/api/v1/lines/{lid}"),
            json!({"password": "line-secret-5555"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    for path in ["/api/v1/lines".to_string(), format!("/api/v1/lines/{lid}")] {
        let (_, v) = api.get(&path).await;
        let text = v.to_string();
        assert!(
            !text.contains("line-secret"),
            "{path} shows a password: {text}"
        );
        assert!(!text.contains("\"password\""), "{path}: {text}");
    }
    assert_eq!(v["has_password"], true);
    let (_, audit) = api.get("/api/v1/audit?limit=1000").await;
    let text = audit.to_string();
    for secret in [
        "line-secret",
        "profile-pw-longer",
        "contacts-pw-longer",
        "callmem-pw-longer",
        ADMIN_PASSWORD,
        "Ann Trader",
        "Bob Broker",
        "7946",
    ] {
        assert!(!text.contains(secret), "audit holds {secret}");
    }
    let line_update = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event_type"] == "line.updated")
        .unwrap();
    assert_eq!(line_update["changes"], json!(["password"]));
    assert_eq!(line_update["actor"], "admin");
    assert_eq!(line_update["client_ip"], "127.0.0.1");
    assert!(
        !line_update["server_host"].as_str().unwrap().is_empty()
            || openturret_server::host_name().is_empty()
    );
}

#[tokio::test]
async fn the_database_and_its_wal_hold_no_clear_text_password() {
    let dir = tempfile::tempdir().unwrap();
    let (server, api) = fresh(dir.path()).await;
    populate(&api).await;
    let (s, _) = api
        .patch(
            "/api/v1/settings",
            json!({"master_password": "master-pw-6666-xyz"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let secrets = [
        "profile-pw-1111",
        "contacts-pw-2222",
        "callmem-pw-3333",
        "line-secret-4444",
        "master-pw-6666-xyz",
        ADMIN_PASSWORD,
    ];
    let scan = |when: &str| {
        let mut files = 0;
        for f in std::fs::read_dir(dir.path()).unwrap() {
            let path = f.unwrap().path();
            if path.is_file() {
                files += 1;
                let bytes = std::fs::read(&path).unwrap();
                for s in secrets {
                    assert!(
                        !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
                        "{when}: {} holds {s}",
                        path.display()
                    );
                }
            }
        }
        files
    };
    assert!(
        std::fs::metadata(dir.path().join("turret.db-wal")).is_ok_and(|m| m.len() > 0),
        "the WAL is in use"
    );
    assert!(scan("while running") >= 3);
    // Everything in the data directory is the service's alone: the folder,
    // the database with its WAL, the key files, the certificate's key.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(dir.path()), 0o700);
    let mut private = 0;
    let mut stack = vec![dir.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if p.is_dir() {
                // (Reached only through the data directory, closed above.)
                stack.push(p);
            } else if name != "cert.pem" && name != "turret.url" {
                // (The certificate and the portal's address are public.)
                assert_eq!(mode(&p) & 0o077, 0, "{} is open to others", p.display());
                private += 1;
            }
        }
    }
    assert!(private >= 5, "{private} private files");
    server.stop();
    scan("after stop");
    // The data really is there: hashes of the right kind.
    let hashes = sqlite3(
        &dir.path().join("turret.db"),
        "SELECT password_hash FROM profiles UNION ALL SELECT password_hash FROM admins",
    );
    assert!(
        hashes
            .lines()
            .all(|h| h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$")),
        "{hashes}"
    );
    let journal = sqlite3(
        &dir.path().join("turret.db"),
        "PRAGMA journal_mode; PRAGMA secure_delete;",
    );
    assert!(journal.starts_with("wal"), "{journal}");
}

#[tokio::test]
async fn every_documented_operation_is_routed_and_no_route_reads_call_memory() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, api) = fresh(dir.path()).await;
    let anon = Api {
        token: None,
        ..api.clone()
    };
    let (s, doc) = anon.get("/api/openapi.json").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.0.3");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 25);
    let mut ops: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(p, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.clone(), p.clone()))
        })
        .collect();
    // Log out last: it ends the session the others use.
    ops.sort_by_key(|(_, p)| p.ends_with("/logout"));
    for (method, path) in ops {
        assert!(
            !path.contains("call-memory") && !path.contains("call_memory"),
            "{path} would expose call memory"
        );
        let concrete = path
            .replace("{id}", "999999")
            .replace("{kind}", "global-contacts")
            .replace("{contact_id}", "1")
            .replace("{key_id}", "1")
            .replace("{line_id}", "1");
        // Exports answer files; JSON lines of nothing is an empty body.
        let concrete = if concrete.starts_with("/api/v1/export/") {
            concrete + "?format=json"
        } else {
            concrete
        };
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let (s, v) = api.call(m, &concrete, Some(json!({}))).await;
        assert_ne!(s, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_ne!(
            v["message"], "resource not found",
            "{method} {path} is not routed"
        );
    }
    for path in ["/api/v1/profiles/1/call-memory", "/api/v1/call-memory"] {
        assert_eq!(api.get(path).await.0, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn health_answers_and_responses_carry_security_headers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let api = server.client();
    let (s, h, v) = api.call_full(Method::GET, "/healthz", None, &[]).await;
    assert_eq!((s, v["status"].clone()), (StatusCode::OK, json!("ok")));
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(
        h["strict-transport-security"]
            .to_str()
            .unwrap()
            .contains("max-age")
    );
    assert_eq!(h["cache-control"], "no-store");
    let res = api
        .client
        .get(format!("{}/", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    assert!(
        res.text().await.unwrap().contains("Sign in"),
        "the start page leads to the portal sign-in"
    );
}

/// Issue 14, point 12: every documented operation is called (with the ids
/// of real objects, and bodies from the document's own schemas or the
/// samples below), and every answer must be one the document lists, with
/// a body its schema accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_answers_as_the_document_says() {
    use common::schema::{example, violations};
    let dir = tempfile::tempdir().unwrap();
    // Logging everything: no secret or personal value may reach the log.
    let (server, api) = fresh_with_env(dir.path(), &[("TURRET_LOG", "debug")]).await;
    let (_, doc) = api.get("/api/openapi.json").await;
    // One of everything.
    let post = |path: &'static str, body: Value| {
        let api = api.clone();
        async move {
            let (s, v) = api.post(path, body).await;
            assert!(s.is_success(), "{path}: {v}");
            v
        }
    };
    let (_, p) = api
        .post(
            "/api/v1/profiles",
            json!({"name": "Walker", "password": "walker-pw-1-longer"}),
        )
        .await;
    let pid = p["id"].as_i64().unwrap();
    let contact = api
        .post(
            &format!("/api/v1/profiles/{pid}/contacts"),
            json!({"name": "Lc", "number": "2001"}),
        )
        .await
        .1["id"]
        .as_i64()
        .unwrap();
    let key = api
        .post(
            &format!("/api/v1/profiles/{pid}/speed-dials"),
            json!({"kind": "DKM", "position": 1, "name": "K", "number": "2002"}),
        )
        .await
        .1["id"]
        .as_i64()
        .unwrap();
    let line = post(
        "/api/v1/lines",
        json!({"name": "L", "uri": "sip:1@pbx.invalid"}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let global = post(
        "/api/v1/global-contacts",
        json!({"name": "G", "number": "2003"}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let admin = post(
        "/api/v1/admins",
        json!({"username": "walker", "password": "walker-password-01", "must_change_password": false}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    // Withdrawing a consent erases its profile: one of its own.
    let (_, other) = api
        .post(
            "/api/v1/profiles",
            json!({"name": "Withdrawer", "password": "withdraw-pw-1"}),
        )
        .await;
    let consent = post(
        "/api/v1/consents",
        json!({"profile_id": other["id"], "purpose": "call recording", "channel": "paper"}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let api_key = post(
        "/api/v1/api-keys",
        json!({"name": "walker", "events": ["calls", "lines", "phones"], "cdrs": true}),
    )
    .await;
    let token = api_key["token"].as_str().unwrap().to_string();
    let key_id = api_key["key"]["id"].as_i64().unwrap();
    let (s, v) = api
        .patch(
            "/api/v1/settings",
            json!({"api_enabled": true, "cti_enabled": true, "cdr_enabled": true}),
        )
        .await;
    assert!(s.is_success(), "{v}");
    // An entry in the error log, for its listing to have one to show.
    let (s, _) = api
        .post(
            "/api/v1/auth/login",
            json!({"username": "nobody", "password": "not the password"}),
        )
        .await;
    assert_eq!(s, 401);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while api.get("/api/v1/events").await.1["items"]
        .as_array()
        .is_none_or(|a| a.is_empty())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no entry in the error log"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // Bodies that reach the operation's success, where the schema's own
    // example would only meet validation.
    let samples: Vec<(&str, &str, Value)> = vec![
        (
            "post",
            "/api/v1/auth/login",
            json!({"username": "walker", "password": "walker-password-01"}),
        ),
        (
            "put",
            "/api/v1/profiles/{id}/lines/{line_id}",
            json!({"position": 1}),
        ),
        (
            "post",
            "/api/v1/lockouts/clear",
            json!({"username": "nobody"}),
        ),
        ("patch", "/api/v1/settings", json!({})),
        (
            "post",
            "/api/v1/backups",
            json!({"passphrase": "walker backup passphrase"}),
        ),
        (
            "put",
            "/api/v1/backups/key",
            json!({"passphrase": "walker backup passphrase"}),
        ),
    ];
    let mut ops: Vec<(String, String, Value)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, o) in item.as_object().unwrap() {
            ops.push((method.clone(), path.clone(), o.clone()));
        }
    }
    // Reads, then writes, then deletions; the session's own end last.
    let rank = |m: &str, p: &str| match (m, p) {
        (_, p) if p.ends_with("/logout") => 4,
        ("get", _) => 0,
        ("delete", _) => 2,
        (_, p) if p.ends_with("/password") || p.ends_with("/restore") => 3,
        _ => 1,
    };
    ops.sort_by_key(|(m, p, _)| (rank(m, p), p.clone()));
    let mut failures = Vec::new();
    let mut succeeded = Vec::new();
    for (method, path, o) in &ops {
        let id = match path.as_str() {
            p if p.starts_with("/api/v1/profiles/") => pid,
            p if p.starts_with("/api/v1/lines/") => line,
            p if p.starts_with("/api/v1/global-contacts/") => global,
            p if p.starts_with("/api/v1/admins/") => admin,
            p if p.starts_with("/api/v1/consents/") => consent,
            p if p.starts_with("/api/v1/api-keys/") => key_id,
            _ => 0,
        };
        let concrete = path
            .replace("{id}", &id.to_string())
            .replace("{contact_id}", &contact.to_string())
            .replace("{key_id}", &key.to_string())
            .replace("{line_id}", &line.to_string())
            .replace("{kind}", "global-contacts");
        let concrete = if concrete.starts_with("/api/v1/export/") {
            concrete + "?format=json"
        } else {
            concrete
        };
        let body = samples
            .iter()
            .find(|(m, p, _)| m == method && p == path)
            .map(|(_, _, b)| b.clone())
            .or_else(|| {
                o["requestBody"]["content"]["application/json"]["schema"]
                    .as_object()
                    .map(|s| example(&doc, &Value::Object(s.clone())))
            });
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let mut req = api.client.request(m, format!("{}{concrete}", api.base));
        req = if path.starts_with("/ext/") {
            req.bearer_auth(&token)
        } else {
            req.bearer_auth(api.token.as_ref().unwrap())
        };
        if let Some(b) = &body {
            req = req.json(b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let ctype = res
            .headers()
            .get("content-type")
            .and_then(|c| c.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let text = res.text().await.unwrap();
        if (200..300).contains(&status) {
            succeeded.push(format!("{method} {path}"));
        }
        let documented = &o["responses"][status.to_string()];
        if documented.is_null() {
            failures.push(format!(
                "{method} {path}: answered {status}, which the document does not list: {text}"
            ));
            continue;
        }
        let schema = &documented["content"]["application/json"]["schema"];
        if schema.is_null() || !ctype.starts_with("application/json") {
            continue;
        }
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        for problem in violations(&doc, schema, &v) {
            failures.push(format!("{method} {path} ({status}): {problem}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} answers break the document:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The operations the probe found drifting answered with success here,
    // so their success bodies were held to their schemas.
    for must in [
        "get /api/v1/mlc",
        "get /api/v1/settings",
        "patch /api/v1/settings",
        "post /api/v1/consents/{id}/withdraw",
        "get /ext/v1/cdrs",
        "get /ext/v1/calls",
        "post /api/v1/settings/pseudonym-key/rotate",
    ] {
        assert!(
            succeeded.iter().any(|s| s == must),
            "{must} never succeeded: {succeeded:?}"
        );
    }
    assert!(
        succeeded.len() * 10 >= ops.len() * 6,
        "{} of {} operations succeeded: {succeeded:?}",
        succeeded.len(),
        ops.len()
    );
    // A name given as a search term, a wrong password, a line password:
    // none of them, nor any password, passphrase or key above, is logged.
    // (The walk ended with its own logout: a new session.)
    let mut api = api.clone();
    api.login("admin", ADMIN_PASSWORD).await;
    for path in [
        "/api/v1/global-contacts?q=Quenberta",
        "/api/v1/profiles?q=Quenberta",
    ] {
        assert_eq!(api.get(path).await.0, StatusCode::OK, "{path}");
    }
    let guesser = api.clone();
    guesser
        .post(
            "/api/v1/auth/login",
            json!({"username": "walker", "password": "guessed-Password-42"}),
        )
        .await;
    let (s, v) = api
        .post(
            "/api/v1/lines",
            json!({"name": "Secret line", "uri": "sip:9@pbx.invalid", "password": "line-Secret-4711"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let log = server.stop_and_read_log();
    assert!(log.contains("DEBUG"), "the server logged at debug level");
    for value in [
        ADMIN_PASSWORD,
        "walker-password-01",
        "walker-pw-1-longer",
        "withdraw-pw-1",
        "walker backup passphrase",
        &token,
        "Quenberta",
        "guessed-Password-42",
        "line-Secret-4711",
    ] {
        assert!(!log.contains(value), "the server's log holds {value:?}");
    }
}

/// Every documented operation refuses a caller without a token (401), and
/// every admin operation refuses an administrator who has not yet changed
/// the one-time password (403), except the three that let them change it,
/// see who they are, and leave. Nothing is looked up, validated or changed
/// before the refusal: the ids name nothing and the bodies are examples.
#[tokio::test]
async fn every_operation_refuses_no_token_and_a_one_time_password_token() {
    use common::schema::example;
    let dir = tempfile::tempdir().unwrap();
    let (_server, api) = fresh(dir.path()).await;
    let (_, doc) = api.get("/api/openapi.json").await;
    let (s, v) = api
        .post(
            "/api/v1/admins",
            json!({"username": "newcomer", "password": "newcomer-password-01"}),
        )
        .await;
    assert!(s.is_success(), "{v}");
    let mut newcomer = api.clone();
    let me = newcomer.login("newcomer", "newcomer-password-01").await;
    assert_eq!(me["must_change_password"], true, "{me}");
    // The external interfaces on, so what refuses is the missing key, not
    // the switch (off, they answer 403 to everyone).
    let (s, v) = api
        .patch(
            "/api/v1/settings",
            json!({"api_enabled": true, "cti_enabled": true}),
        )
        .await;
    assert!(s.is_success(), "{v}");
    let audit_before = api.get("/api/v1/audit?limit=1").await.1["items"][0]["seq"].clone();

    let allowed_before_change = [
        "get /api/v1/auth/me",
        "post /api/v1/auth/password",
        "post /api/v1/auth/logout",
    ];
    let (mut walked, mut public, mut failures) = (0, Vec::new(), Vec::new());
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, o) in item.as_object().unwrap() {
            let op = format!("{method} {path}");
            if o["security"] == json!([]) {
                public.push(op);
                continue;
            }
            let mut concrete = path.clone();
            for p in ["{id}", "{contact_id}", "{key_id}", "{line_id}"] {
                concrete = concrete.replace(p, "987654");
            }
            concrete = concrete.replace("{kind}", "global-contacts");
            let body = o["requestBody"]["content"]["application/json"]["schema"]
                .as_object()
                .map(|s| example(&doc, &Value::Object(s.clone())));
            let send = |token: Option<&str>| {
                let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                let mut req = api.client.request(m, format!("{}{concrete}", api.base));
                if let Some(t) = token {
                    req = req.bearer_auth(t);
                }
                if let Some(b) = &body {
                    req = req.json(b);
                }
                async move { req.send().await.unwrap().status().as_u16() }
            };
            walked += 1;
            let anonymous = send(None).await;
            if anonymous != 401 {
                failures.push(format!("{op} without a token: {anonymous}"));
            }
            if op.ends_with("/auth/logout") {
                continue; // it would end the newcomer's session
            }
            let status = send(newcomer.token.as_deref()).await;
            let want_refusal = if path.starts_with("/ext/") {
                // An administrator's token is not an API key.
                status == 401
            } else if allowed_before_change.contains(&op.as_str()) {
                status != 401 && status != 403
            } else {
                status == 403
            };
            if !want_refusal {
                failures.push(format!("{op} with a one-time password token: {status}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} refusals missing:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(walked >= 60, "only {walked} operations in the document");
    public.sort();
    assert_eq!(public, ["get /healthz", "post /api/v1/auth/login"]);
    // The newcomer can still change the password and is then let in.
    let (s, v) = newcomer
        .post(
            "/api/v1/auth/password",
            json!({"current_password": "newcomer-password-01", "new_password": "newcomer-password-02"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    newcomer.token = Some(v["token"].as_str().unwrap().to_string());
    assert_eq!(newcomer.get("/api/v1/settings").await.0, StatusCode::OK);
    // None of the refused calls changed anything: the audit log holds only
    // the refusals of the external interface, the walk's password change
    // with an example's wrong password, and the real one.
    let (_, audit) = api.get("/api/v1/audit?limit=200").await;
    let since: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .take_while(|e| e["seq"] != audit_before)
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert!(
        since.iter().all(|e| [
            "api_key.refused",
            "admin.password_change_failed",
            "admin.password_changed"
        ]
        .contains(e)),
        "{since:?}"
    );
}
