//! The client protocol over real TLS: every rule of SPEC §3 that a turret
//! meets, including the refusals.

mod common;

use std::time::{Duration, Instant};

use common::inproc::InProc;
use common::*;
use openturret_domain::model::Direction;
use openturret_domain::{LineId, ProfileId, Timestamp};
use openturret_server::callmem::{CallEvent, record_call};
use serde_json::{Value, json};

fn code(r: Result<Value, openturret_server::client::proto::ProtoError>) -> String {
    match r {
        Ok(v) => panic!("expected a refusal, got {v}"),
        Err(e) => e.code,
    }
}

#[tokio::test]
async fn profile_names_are_public_and_everything_else_needs_a_login_rule_2() {
    let s = InProc::start().await;
    s.profile(json!({"name": "Ann", "password": "ann-pw-longer"}))
        .await;
    s.profile(json!({"name": "Bob", "password": "bob-pw-longer"}))
        .await;
    let mut c = s.connect().await;
    let names = c.request(json!({"op": "profiles"})).await.unwrap();
    let names: Vec<&str> = names
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Ann", "Bob"]);
    for op in ["config", "contacts", "call_memory"] {
        assert_eq!(
            code(c.request(json!({"op": op})).await),
            "not_logged_in",
            "{op}"
        );
    }
    let r = c.request(json!({"op": "hello", "version": 99})).await;
    assert_eq!(code(r), "unsupported_version");
}

#[tokio::test]
async fn logins_need_the_profile_password_and_are_throttled_and_audited() {
    let s = InProc::start().await;
    let ann = s
        .profile(json!({"name": "Ann", "password": "ann-pw-longer"}))
        .await;
    let bob = s
        .profile(json!({"name": "Bob", "password": "bob-pw-longer"}))
        .await;
    let mut c = s.connect().await;
    for _ in 0..5 {
        let r = c
            .request(json!({"op": "login", "profile_id": ann, "password": "guess"}))
            .await;
        assert_eq!(code(r), "wrong_password");
    }
    let r = c
        .request(json!({"op": "login", "profile_id": ann, "password": "ann-pw-longer"}))
        .await;
    let e = r.err().unwrap();
    assert_eq!(e.code, "too_many_attempts");
    assert!(e.retry_after_secs.unwrap() > 0);
    // Another profile is not affected.
    let v = c
        .request(json!({"op": "login", "profile_id": bob, "password": "bob-pw-longer"}))
        .await
        .unwrap();
    assert_eq!(v["profile"]["name"], "Bob");
    assert!(v["token"].as_str().unwrap().len() >= 32);
    let (_, audit) = s
        .api
        .get("/api/v1/audit?event_type=client.login_failed")
        .await;
    assert_eq!(audit["items"].as_array().unwrap().len(), 5);
    let (_, audit) = s.api.get("/api/v1/audit?event_type=client.login").await;
    assert_eq!(audit["items"][0]["object_id"], bob.to_string());
}

#[tokio::test]
async fn a_session_never_reaches_another_profiles_data() {
    let s = InProc::start().await;
    let ann = s
        .profile(json!({"name": "Ann", "password": "ann-pw-longer"}))
        .await;
    let bob = s
        .profile(json!({"name": "Bob", "password": "bob-pw-longer"}))
        .await;
    let (_, bc) = s
        .api
        .post(
            &format!("/api/v1/profiles/{bob}/contacts"),
            json!({"name": "Bob's", "number": "1"}),
        )
        .await;
    let (_, bk) = s
        .api
        .post(
            &format!("/api/v1/profiles/{bob}/speed-dials"),
            json!({"kind": "DKM", "position": 1, "name": "k", "number": "1"}),
        )
        .await;
    let (mut c, _) = s.login(ann, "ann-pw-longer").await;
    let (cid, kid) = (bc["id"].as_i64().unwrap(), bk["id"].as_i64().unwrap());
    assert_eq!(
        code(
            c.request(json!({"op": "update_contact", "contact_id": cid, "name": "mine"}))
                .await
        ),
        "not_found"
    );
    assert_eq!(
        code(
            c.request(json!({"op": "delete_contact", "contact_id": cid}))
                .await
        ),
        "not_found"
    );
    assert_eq!(
        code(
            c.request(json!({"op": "delete_speed_dial", "key_id": kid}))
                .await
        ),
        "not_found"
    );
    assert_eq!(
        code(
            c.request(json!({"op": "update_speed_dial", "key_id": kid, "name": "x"}))
                .await
        ),
        "not_found"
    );
    let contacts = c.request(json!({"op": "contacts"})).await.unwrap();
    assert!(
        contacts["local"].as_array().unwrap().is_empty(),
        "Ann sees none of Bob's contacts"
    );
    let (_, still) = s.api.get(&format!("/api/v1/profiles/{bob}/contacts")).await;
    assert_eq!(still[0]["name"], "Bob's");
}

#[tokio::test]
async fn contacts_are_gated_and_global_contacts_are_never_deleted_rules_3_to_5() {
    let s = InProc::start().await;
    let ann = s
        .profile(json!({"name": "Ann", "password": "ann-pw-longer", "contacts_password": "ann-contacts"}))
        .await;
    let (_, g) = s
        .api
        .post(
            "/api/v1/global-contacts",
            json!({"name": "Zed Global", "number": "+1 212 555 0100"}),
        )
        .await;
    let gid = g["id"].as_i64().unwrap();
    let (mut c, login) = s.login(ann, "ann-pw-longer").await;
    assert_eq!(login["config"]["profile"]["has_contacts_password"], true);
    assert_eq!(
        code(c.request(json!({"op": "contacts"})).await),
        "contacts_locked"
    );
    assert_eq!(
        code(
            c.request(json!({"op": "create_contact", "name": "X", "number": "1"}))
                .await
        ),
        "contacts_locked"
    );
    assert_eq!(
        code(
            c.request(json!({"op": "unlock_contacts", "password": "nope"}))
                .await
        ),
        "wrong_password"
    );
    c.request(json!({"op": "unlock_contacts", "password": "ann-contacts"}))
        .await
        .unwrap();

    // Rule 5: own local contacts, create / modify / delete.
    let new = c
        .request(json!({"op": "create_contact", "name": "Bob Broker", "number": "020 7946 0001"}))
        .await
        .unwrap();
    let id = new["id"].as_i64().unwrap();
    let bad = c
        .request(json!({"op": "create_contact", "name": "Q", "number": "call me"}))
        .await
        .err()
        .unwrap();
    assert_eq!(
        (bad.code.as_str(), bad.field.as_deref()),
        ("invalid", Some("number"))
    );
    c.request(json!({"op": "update_contact", "contact_id": id, "field3": "desk"}))
        .await
        .unwrap();
    let found = c
        .request(json!({"op": "contacts", "search": "bob"}))
        .await
        .unwrap();
    assert_eq!(found["local"][0]["field3"], "desk");
    // Both lists are searched by the beginning of any word of the name.
    let found = c
        .request(json!({"op": "contacts", "search": "BROK"}))
        .await
        .unwrap();
    assert_eq!(found["local"][0]["name"], "Bob Broker");
    let found = c
        .request(json!({"op": "contacts", "search": "global"}))
        .await
        .unwrap();
    assert_eq!(found["global"][0]["name"], "Zed Global");
    let found = c
        .request(json!({"op": "contacts", "search": "roker"}))
        .await
        .unwrap();
    assert_eq!(found["local"].as_array().map(Vec::len), Some(0));
    let found = c
        .request(json!({"op": "contacts", "search": "+1 212"}))
        .await
        .unwrap();
    assert_eq!(found["global"][0]["name"], "Zed Global");
    c.request(json!({"op": "delete_contact", "contact_id": id}))
        .await
        .unwrap();

    // Rule 4: global contacts changeable only when switched on; never deleted.
    assert_eq!(
        code(
            c.request(json!({"op": "update_global_contact", "contact_id": gid, "field3": "x"}))
                .await
        ),
        "forbidden"
    );
    s.api
        .patch(
            "/api/v1/settings",
            json!({"global_contacts_changeable": true}),
        )
        .await;
    c.request(json!({"op": "update_global_contact", "contact_id": gid, "field3": "x"}))
        .await
        .unwrap();
    assert_eq!(
        code(
            c.request(json!({"op": "delete_global_contact", "contact_id": gid}))
                .await
        ),
        "forbidden"
    );
    assert_eq!(
        s.api.get(&format!("/api/v1/global-contacts/{gid}")).await.1["field3"],
        "x"
    );

    // Own speed dial keys.
    let k = c.request(json!({"op": "create_speed_dial", "kind": "DKM", "position": 4, "name": "Desk", "number": "2001"})).await.unwrap();
    c.request(json!({"op": "update_speed_dial", "key_id": k["id"], "position": 5}))
        .await
        .unwrap();
    let (_, keys) = s
        .api
        .get(&format!("/api/v1/profiles/{ann}/speed-dials"))
        .await;
    assert_eq!(keys[0]["position"], 5);
    c.request(json!({"op": "delete_speed_dial", "key_id": k["id"]}))
        .await
        .unwrap();
    let (_, audit) = s
        .api
        .get(&format!("/api/v1/audit?actor=profile:{ann}"))
        .await;
    assert!(
        audit["items"].as_array().unwrap().len() >= 6,
        "client changes are audited"
    );
}

static LINES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);

/// A line shown on `profiles`, and `n` incoming calls from `number` on it.
async fn calls(
    s: &InProc,
    profiles: &[i64],
    n: usize,
    number: &str,
    answered_by: Option<i64>,
) -> i64 {
    let (_, l) = s.api.post("/api/v1/lines", json!({"name": format!("Line {}", LINES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)), "uri": "sip:1@pbx"})).await;
    let lid = l["id"].as_i64().unwrap();
    for p in profiles {
        let (st, v) = s
            .api
            .put(
                &format!("/api/v1/profiles/{p}/lines/{lid}"),
                json!({"position": lid}),
            )
            .await;
        assert_eq!(st, reqwest::StatusCode::OK, "{v}");
    }
    for i in 0..n {
        let ev = CallEvent {
            line: LineId(lid),
            direction: Direction::Incoming,
            remote_number: number.to_string(),
            at: Timestamp(1_700_000_000_000 + i as i64),
            answered_by: answered_by.map(ProfileId),
            answered: answered_by.is_some(),
            placed_by: None,
            duration_ms: None,
            reason: String::new(),
        };
        record_call(&s.app, &ev).await.unwrap();
    }
    lid
}

#[tokio::test]
async fn call_memory_is_sealed_gated_a_fifo_of_100_and_deleted_only_when_allowed() {
    let s = InProc::start().await;
    let ann = s
        .profile(
            json!({"name": "Ann", "password": "ann-pw-longer", "call_memory_password": "ann-callmem-longer",
                        "collect_call_memory": true, "call_memory_password_protected": true}),
        )
        .await;
    let other = s
        .profile(
            json!({"name": "Oscar", "password": "oscar-pw-longer", "collect_call_memory": true}),
        )
        .await;
    let off = s
        .profile(json!({"name": "Nina", "password": "nina-pw-longer"}))
        .await;
    s.api
        .post(
            &format!("/api/v1/profiles/{ann}/contacts"),
            json!({"name": "Veronica Vega", "number": "+44 20 7946 0999"}),
        )
        .await;
    // Let the caller-id index catch up with the new contact.
    let deadline = Instant::now() + Duration::from_secs(5);
    while s
        .app
        .caller_id
        .lookup(ProfileId(ann), "020 7946 0999")
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "caller id never learned the contact"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    calls(&s, &[ann, other, off], 101, "020 7946 0999", Some(other)).await;
    // A caller in no contact list: its number exists nowhere but in the
    // sealed call memory.
    calls(&s, &[ann], 1, "+44 20 7000 4242", None).await;

    let (mut c, _) = s.login(ann, "ann-pw-longer").await;
    assert_eq!(
        code(c.request(json!({"op": "call_memory"})).await),
        "call_memory_locked"
    );
    assert_eq!(
        code(
            c.request(json!({"op": "unlock_call_memory", "password": "ann-pw-longer"}))
                .await
        ),
        "wrong_password"
    );
    c.request(json!({"op": "unlock_call_memory", "password": "ann-callmem-longer"}))
        .await
        .unwrap();
    let cm = c.request(json!({"op": "call_memory"})).await.unwrap();
    let entries = cm["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 100, "the 101st entry dropped the oldest");
    assert_eq!(entries[0]["number"], "+44 20 7000 4242", "newest first");
    assert_eq!(entries[0]["answered"], false);
    assert_eq!(
        entries[1]["name"], "Veronica Vega",
        "caller identified from local contacts"
    );
    assert_eq!(
        entries[1]["answered_by"], "remote",
        "answered at another turret"
    );
    assert_eq!(entries[1]["at"], "2023-11-14T22:13:20.100Z");
    assert_eq!(
        entries[99]["at"], "2023-11-14T22:13:20.002Z",
        "the two oldest are gone"
    );
    let (mut o, _) = s.login(other, "oscar-pw-longer").await;
    let ocm = o.request(json!({"op": "call_memory"})).await.unwrap();
    assert_eq!(ocm["entries"][0]["answered_by"], "local");
    assert_eq!(ocm["entries"][0]["name"], "", "Oscar has no such contact");
    let (mut n, _) = s.login(off, "nina-pw-longer").await;
    assert!(
        n.request(json!({"op": "call_memory"})).await.unwrap()["entries"]
            .as_array()
            .unwrap()
            .is_empty(),
        "not collected"
    );

    // Rule 6: deletion only when the admin allows it.
    let first = entries[0]["id"].as_i64().unwrap();
    assert_eq!(
        code(
            c.request(json!({"op": "delete_call_memory", "entry_id": first}))
                .await
        ),
        "forbidden"
    );
    s.api
        .patch(
            &format!("/api/v1/profiles/{ann}"),
            json!({"allow_call_memory_deletion": true}),
        )
        .await;
    c.request(json!({"op": "delete_call_memory", "entry_id": first}))
        .await
        .unwrap();
    assert_eq!(
        c.request(json!({"op": "call_memory"})).await.unwrap()["entries"]
            .as_array()
            .unwrap()
            .len(),
        99
    );

    // Sealed: not in the database, its WAL, nor a backup copy of them.
    let db = s.dir.path().join("turret.db");
    if common::known_database(s.dir.path()).is_some() {
        // On PostgreSQL: not in the rows as the server stores them.
        let rows = sqlite3(&db, "SELECT encode(sealed, 'escape') FROM call_memory");
        assert!(rows.lines().count() >= 99, "{rows}");
        for needle in ["7000 4242", "70004242", "answered_by"] {
            assert!(!rows.contains(needle), "the stored rows hold {needle}");
        }
        return;
    }
    let copy = s.dir.path().join("copy.db");
    sqlite3(&db, &format!(".backup '{}'", copy.display()));
    for f in ["turret.db", "turret.db-wal", "copy.db"] {
        let bytes = std::fs::read(s.dir.path().join(f)).unwrap_or_default();
        for needle in ["7000 4242", "70004242", "answered_by"] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{f} holds {needle}"
            );
        }
    }
    assert!(std::fs::metadata(&copy).unwrap().len() > 0);
}

#[tokio::test]
async fn the_master_password_opens_any_profile_only_to_delete_call_memory_rule_7() {
    let s = InProc::start().await;
    let ann = s
        .profile(json!({"name": "Ann", "password": "ann-pw-longer", "collect_call_memory": true}))
        .await;
    calls(&s, &[ann], 2, "+44 20 7946 0001", None).await;
    let mut c = s.connect().await;
    let r = c
        .request(json!({"op": "master_login", "profile_id": ann, "password": "master-pw-0001-ab"}))
        .await;
    assert_eq!(code(r), "forbidden", "disabled by default");
    s.api
        .patch(
            "/api/v1/settings",
            json!({"master_password": "master-pw-0001-ab"}),
        )
        .await;
    let r = c
        .request(json!({"op": "master_login", "profile_id": ann, "password": "wrong-wrong-wrong"}))
        .await;
    assert_eq!(code(r), "wrong_password");
    c.request(json!({"op": "master_login", "profile_id": ann, "password": "master-pw-0001-ab"}))
        .await
        .unwrap();
    assert_eq!(code(c.request(json!({"op": "config"})).await), "forbidden");
    assert_eq!(
        code(c.request(json!({"op": "contacts"})).await),
        "forbidden"
    );
    let cm = c.request(json!({"op": "call_memory"})).await.unwrap();
    let entries = cm["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert!(
        !cm.to_string().contains("7946"),
        "a master session never sees the content: {cm}"
    );
    c.request(json!({"op": "delete_call_memory", "entry_id": entries[0]["id"]}))
        .await
        .unwrap();
    let (_, audit) = s.api.get("/api/v1/audit?actor=master-password").await;
    let events: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        [
            "call_memory.deleted_with_master_password",
            "client.master_login",
            "client.master_login_failed",
            "client.master_login_refused"
        ]
    );
}

#[tokio::test]
async fn an_admin_edit_reaches_a_connected_client_within_a_second() {
    let s = InProc::start().await;
    let ann = s
        .profile(json!({"name": "Ann", "password": "ann-pw-longer"}))
        .await;
    let (mut c, _) = s.login(ann, "ann-pw-longer").await;
    let t = Instant::now();
    let (st, _) = s
        .api
        .post(
            &format!("/api/v1/profiles/{ann}/speed-dials"),
            json!({"kind": "DKA", "position": 3, "name": "Fresh key", "number": "2001"}),
        )
        .await;
    assert_eq!(st, reqwest::StatusCode::CREATED);
    // Earlier changes may still be in flight: wait for the one with the key.
    let push = loop {
        let p = c
            .push(Duration::from_secs(5))
            .await
            .expect("a push arrives");
        if p["push"] == "config" && p["config"]["speed_dials"][0]["name"] == "Fresh key" {
            break p;
        }
    };
    let took = t.elapsed();
    assert_eq!(push["config"]["speed_dials"].as_array().unwrap().len(), 1);
    assert!(took < Duration::from_secs(1), "took {took:?}");
    eprintln!("admin edit reached the client in {took:?}");

    // A changed profile password ends the session at once, resume too.
    let (mut c2, login) = s.login(ann, "ann-pw-longer").await;
    let token = login["token"].as_str().unwrap().to_string();
    s.api
        .patch(
            &format!("/api/v1/profiles/{ann}"),
            json!({"password": "ann-pw-2-longer"}),
        )
        .await;
    let mut ended = None;
    while let Some(p) = c2.push(Duration::from_secs(5)).await {
        if p["push"] == "session_ended" {
            ended = Some(p);
            break;
        }
    }
    assert_eq!(ended.expect("session ended")["reason"], "password_changed");
    let mut c3 = s.connect().await;
    assert_eq!(
        code(c3.request(json!({"op": "resume", "token": token})).await),
        "session_expired"
    );
}

#[tokio::test]
async fn a_dropped_connection_resumes_without_logging_in_again() {
    let s = InProc::start().await;
    let ann = s
        .profile(json!({"name": "Ann", "password": "ann-pw-longer", "contacts_password": "cpw1-longerx"}))
        .await;
    let (mut c, login) = s.login(ann, "ann-pw-longer").await;
    c.request(json!({"op": "unlock_contacts", "password": "cpw1-longerx"}))
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap().to_string();
    c.close().await;
    let mut again = s.connect().await;
    let v = again
        .request(json!({"op": "resume", "token": token}))
        .await
        .unwrap();
    assert_eq!(v["config"]["profile"]["name"], "Ann");
    again
        .request(json!({"op": "contacts"}))
        .await
        .expect("the unlocked contacts stay unlocked");
    assert_eq!(
        code(
            again
                .request(json!({"op": "resume", "token": "0".repeat(64)}))
                .await
        ),
        "session_expired"
    );
    // Deleting the profile ends its sessions.
    s.api.delete(&format!("/api/v1/profiles/{ann}")).await;
    // (A config push may come first: on PostgreSQL the listener's first
    // connection resyncs every client.)
    let mut p = again.push(Duration::from_secs(5)).await.unwrap();
    while p["push"] == "config" {
        p = again.push(Duration::from_secs(5)).await.unwrap();
    }
    assert_eq!(
        (p["push"].as_str(), p["reason"].as_str()),
        (Some("session_ended"), Some("profile_deleted"))
    );
}

#[tokio::test]
async fn caller_id_matches_local_contacts_first_then_global_in_any_number_form() {
    let s = InProc::start().await;
    let ann = s
        .profile(json!({"name": "Ann", "password": "ann-pw-longer"}))
        .await;
    let bob = s
        .profile(json!({"name": "Bob", "password": "bob-pw-longer"}))
        .await;
    s.api
        .post(
            "/api/v1/global-contacts",
            json!({"name": "Global Gail", "number": "+44 20 7946 0001"}),
        )
        .await;
    s.api
        .post(
            &format!("/api/v1/profiles/{ann}/contacts"),
            json!({"name": "Ann's Gail", "number": "020 7946 0001"}),
        )
        .await;
    let (mut a, _) = s.login(ann, "ann-pw-longer").await;
    let (mut b, _) = s.login(bob, "bob-pw-longer").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let va = a
            .request(json!({"op": "lookup", "number": "0044 20 7946 0001"}))
            .await
            .unwrap();
        let vb = b
            .request(json!({"op": "lookup", "number": "+44 (20) 7946-0001"}))
            .await
            .unwrap();
        if va["name"] == "Ann's Gail" && vb["name"] == "Global Gail" {
            break;
        }
        assert!(Instant::now() < deadline, "caller id: {va} {vb}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let none = b
        .request(json!({"op": "lookup", "number": "+1 555 0000"}))
        .await
        .unwrap();
    assert!(none["name"].is_null());
}

#[tokio::test]
async fn an_admin_password_reset_never_opens_call_memory_as_documented() {
    let s = InProc::start().await;
    let ann = s
        .profile(json!({"name": "Ann", "password": "ann-pw-longer", "call_memory_password": "cm-pw-longer", "collect_call_memory": true}))
        .await;
    calls(&s, &[ann], 3, "+44 20 7946 0001", None).await;
    // The profile password is reset: the call-memory password still opens.
    s.api
        .patch(
            &format!("/api/v1/profiles/{ann}"),
            json!({"password": "ann-pw-2-longer"}),
        )
        .await;
    let (mut c, _) = s.login(ann, "ann-pw-2-longer").await;
    assert_eq!(
        code(c.request(json!({"op": "call_memory"})).await),
        "call_memory_locked"
    );
    c.request(json!({"op": "unlock_call_memory", "password": "cm-pw-longer"}))
        .await
        .unwrap();
    assert_eq!(
        c.request(json!({"op": "call_memory"})).await.unwrap()["entries"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    c.close().await;
    // Now both are reset: nothing can open the old entries; they are erased.
    s.api
        .patch(
            &format!("/api/v1/profiles/{ann}"),
            json!({"password": "ann-pw-3-longer", "call_memory_password": "cm-pw-3-longer"}),
        )
        .await;
    let (mut c, _) = s.login(ann, "ann-pw-3-longer").await;
    c.request(json!({"op": "unlock_call_memory", "password": "cm-pw-3-longer"}))
        .await
        .unwrap();
    assert!(
        c.request(json!({"op": "call_memory"})).await.unwrap()["entries"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let (_, audit) = s
        .api
        .get(&format!(
            "/api/v1/audit?event_type=profile.updated&object_id={ann}"
        ))
        .await;
    assert!(
        audit["items"][0]["changes"]
            .as_array()
            .unwrap()
            .contains(&json!("call_memory")),
        "the erasure is audited"
    );
    // New entries are sealed to the new key and readable.
    calls(&s, &[ann], 1, "+44 20 7946 0002", None).await;
    assert_eq!(
        c.request(json!({"op": "call_memory"})).await.unwrap()["entries"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_client_speaks_the_same_protocol() {
    let s = InProc::start().await;
    let ann = s
        .profile(json!({"name": "Ann Trader", "password": "ann-pw-longer"}))
        .await;
    s.api
        .post(
            &format!("/api/v1/profiles/{ann}/speed-dials"),
            json!({"kind": "DKM", "position": 1, "name": "Desk", "number": "2001"}),
        )
        .await;
    let cert = s.dir.path().join("tls/cert.pem");
    let run = |args: Vec<&str>, stdin: &str| {
        use std::io::Write;
        let mut child = std::process::Command::new(BIN)
            .arg("client")
            .args(["--server", &s.url, "--ca", cert.to_str().unwrap()])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = tokio::task::block_in_place(|| run(vec!["profiles"], ""));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("Ann Trader"));
    let (code, out, err) = tokio::task::block_in_place(|| {
        run(
            vec!["--profile", "Ann Trader", "--password-stdin", "config"],
            "ann-pw-longer\n",
        )
    });
    assert_eq!(code, Some(0), "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["speed_dials"][0]["name"], "Desk");
    let (code, _, err) = tokio::task::block_in_place(|| {
        run(
            vec!["--profile", "Ann Trader", "--password-stdin", "config"],
            "wrong\n",
        )
    });
    assert_eq!(code, Some(2));
    assert!(err.contains("wrong_password"), "{err}");

    // The master password, from the CLI: call memory only, and audited.
    s.api
        .patch(
            "/api/v1/settings",
            json!({"master_password": "master-pw-0001-ab"}),
        )
        .await;
    let master = |cmd: &'static str| {
        tokio::task::block_in_place(|| {
            run(
                vec![
                    "--profile",
                    "Ann Trader",
                    "--master",
                    "--password-stdin",
                    cmd,
                ],
                "master-pw-0001-ab\n",
            )
        })
    };
    let (code, _, err) = master("config");
    assert_eq!(code, Some(2));
    assert!(err.contains("only call-memory"), "{err}");
    let (code, out, err) = master("call-memory");
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("entries"), "{out}");
    let (_, audit) = s
        .api
        .get("/api/v1/audit?event_type=client.master_login")
        .await;
    assert_eq!(
        audit["items"].as_array().unwrap().len(),
        2,
        "every use is audited"
    );
}

/// Standard base64, decoded (the client protocol carries ZIPs so).
fn unbase64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let mut out = Vec::new();
    for chunk in s.as_bytes().chunks(4) {
        let n = chunk
            .iter()
            .take_while(|c| **c != b'=')
            .fold((0u32, 0u32), |(acc, k), c| {
                (acc | (val(*c) as u32) << (18 - 6 * k), k + 1)
            });
        for i in 0..n.1.saturating_sub(1) {
            out.push((n.0 >> (16 - 8 * i)) as u8);
        }
    }
    out
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Issue 14, point 5: no path returns local contacts while they are
/// locked behind the contacts password: not the subject export, not a
/// caller-ID lookup.
#[tokio::test]
async fn locked_contacts_stay_out_of_the_subject_export_and_lookups() {
    let s = InProc::start().await;
    let ann = s
        .profile(json!({"name": "Ann", "password": "ann-pw-longer", "contacts_password": "ann-contacts"}))
        .await;
    let (st, v) = s
        .api
        .post(
            &format!("/api/v1/profiles/{ann}/contacts"),
            json!({"name": "Secret Sam", "number": "020 7946 0555"}),
        )
        .await;
    assert!(st.is_success(), "{v}");
    let (mut c, _) = s.login(ann, "ann-pw-longer").await;

    let locked = c.request(json!({"op": "subject_export"})).await.unwrap();
    assert_eq!(locked["includes_local_contacts"], false);
    let zip = unbase64(locked["zip_base64"].as_str().unwrap());
    assert!(holds(&zip, "subject.json"), "a real export");
    assert!(
        !holds(&zip, "Secret Sam"),
        "the locked contacts are in the export"
    );
    assert!(
        !holds(&zip, "7946 0555"),
        "a locked contact's number is in the export"
    );
    let name = c
        .request(json!({"op": "lookup", "number": "020 7946 0555"}))
        .await
        .unwrap();
    assert_eq!(name["name"], Value::Null, "a lookup reads a locked contact");

    c.request(json!({"op": "unlock_contacts", "password": "ann-contacts"}))
        .await
        .unwrap();
    let open = c.request(json!({"op": "subject_export"})).await.unwrap();
    assert_eq!(open["includes_local_contacts"], true);
    assert!(holds(
        &unbase64(open["zip_base64"].as_str().unwrap()),
        "Secret Sam"
    ));
    let name = c
        .request(json!({"op": "lookup", "number": "020 7946 0555"}))
        .await
        .unwrap();
    assert_eq!(name["name"], "Secret Sam");
}

/// Issue 14, point 6: a PIN opens the turret but never call memory; call
/// memory is protected only by passwords of 12 characters or more, and an
/// older wrap under a short password is retired at the next login.
#[tokio::test]
async fn call_memory_is_protected_only_by_passwords_that_resist_offline_guessing() {
    use openturret_domain::model::CallMemoryKeys;
    use openturret_domain::secret::Secret;
    use openturret_store::sealing::{OpenKey, is_checked};
    let s = InProc::start().await;
    // A PIN alone cannot protect call memory: refused, naming the field.
    let (st, v) = s
        .api
        .post(
            "/api/v1/profiles",
            json!({"name": "Pin", "password": "1234", "collect_call_memory": true}),
        )
        .await;
    assert_eq!(st, reqwest::StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["field"], "call_memory_password");
    assert!(v["message"].as_str().unwrap().contains("12"), "{v}");
    // With a long call-memory password it is: the PIN wraps nothing.
    let pid = s
        .profile(
            json!({"name": "Pin", "password": "1234", "collect_call_memory": true,
                        "call_memory_password": "long call memory pw"}),
        )
        .await;
    let keys = s.app.store.call_memory_keys(ProfileId(pid)).await.unwrap();
    assert!(
        keys.wrapped_by_profile_password.is_none(),
        "a PIN never wraps the key"
    );
    assert!(is_checked(
        keys.wrapped_by_call_memory_password.as_ref().unwrap()
    ));
    let (mut c, _) = s.login(pid, "1234").await;
    let e = c.request(json!({"op": "call_memory"})).await.unwrap_err();
    assert_eq!(e.code, "call_memory_locked");
    c.request(json!({"op": "unlock_call_memory", "password": "long call memory pw"}))
        .await
        .unwrap();
    c.request(json!({"op": "call_memory"})).await.unwrap();
    // An administrator cannot weaken it: a PIN as the only password while
    // collecting is refused.
    let (st, v) = s
        .api
        .patch(
            &format!("/api/v1/profiles/{pid}"),
            json!({"call_memory_password": null}),
        )
        .await;
    assert_eq!(st, reqwest::StatusCode::UNPROCESSABLE_ENTITY, "{v}");

    // Older wraps (made before the minimum) are upgraded or retired at the
    // next login: under a long password, made again; under a PIN, removed,
    // and with it the entries nobody could protect.
    for (name, password, keeps) in [
        ("Old long", "an old long password", true),
        ("Old pin", "4321", false),
    ] {
        let id = s.profile(json!({"name": name, "password": password})).await;
        let key = OpenKey::generate();
        let legacy = CallMemoryKeys {
            public: Some(key.public()),
            wrapped_by_profile_password: Some(key.wrap_unchecked(&Secret::new(password))),
            wrapped_by_call_memory_password: None,
        };
        s.app
            .store
            .set_call_memory_keys(ProfileId(id), legacy)
            .await
            .unwrap();
        let entry = openturret_server::callmem::seal_entry(
            &key.public(),
            &openturret_domain::model::CallMemoryEntry {
                number: "2000".into(),
                name: String::new(),
                at: Timestamp(1),
                direction: Direction::Incoming,
                answered: true,
                answered_by: None,
                duration_ms: None,
                reason: String::new(),
            },
        );
        s.app
            .store
            .push_call_memory(ProfileId(id), Timestamp(1), entry)
            .await
            .unwrap();
        let (mut c, _) = s.login(id, password).await;
        let after = s.app.store.call_memory_keys(ProfileId(id)).await.unwrap();
        let left = s
            .app
            .store
            .list_call_memory(ProfileId(id))
            .await
            .unwrap()
            .len();
        if keeps {
            assert!(
                is_checked(after.wrapped_by_profile_password.as_ref().unwrap()),
                "{name}"
            );
            assert_eq!(left, 1, "{name}: the entry stays");
            let v = c.request(json!({"op": "call_memory"})).await.unwrap();
            assert_eq!(v["entries"][0]["number"], "2000");
        } else {
            assert_eq!(
                after,
                CallMemoryKeys::default(),
                "{name}: the weak wrap is gone"
            );
            assert_eq!(left, 0, "{name}: entries no one could protect are erased");
            let (_, audit) = s
                .api
                .get("/api/v1/audit?event_type=call_memory.erased_weak_password")
                .await;
            assert_eq!(audit["items"].as_array().unwrap().len(), 1, "{audit}");
        }
    }
}

/// The hub reads committed audit records after the fact, sometimes late
/// (under load). A profile's creation names its password among the fields
/// it set; read after the profile's first login it must end nothing. A
/// password change does end the profile's sessions.
#[tokio::test]
async fn a_profiles_creation_read_late_ends_no_session_but_a_password_change_does() {
    let s = InProc::start().await;
    let pid = s
        .profile(json!({"name": "Late Reader", "password": "late-pw-longer"}))
        .await;
    let (mut c, _) = s.login(pid, "late-pw-longer").await;
    // The creation's record once more, as a late hub would read it.
    let mut created = s
        .app
        .system_record("profile.created", "profile", Some(pid.to_string()));
    created.changes = vec!["name".into(), "password".into()];
    s.app.store.append_audit(created).await.unwrap();
    // A change read after it reaches the session, which is still there.
    s.api
        .post(
            &format!("/api/v1/profiles/{pid}/speed-dials"),
            json!({"kind": "DKM", "position": 1, "name": "Desk", "number": "2001"}),
        )
        .await;
    wait_push(&mut c, "the configuration after the late record", |p| {
        assert_ne!(
            p["push"], "session_ended",
            "the creation ended the session: {p}"
        );
        p["push"] == "config"
    })
    .await;
    c.request(json!({"op": "config"})).await.unwrap();
    // A password change ends it.
    let (st, v) = s
        .api
        .patch(
            &format!("/api/v1/profiles/{pid}"),
            json!({"password": "late-pw-changed"}),
        )
        .await;
    assert!(st.is_success(), "{v}");
    let ended = wait_push(&mut c, "the end after a password change", |p| {
        p["push"] == "session_ended"
    })
    .await;
    assert_eq!(ended["reason"], "password_changed");
}

/// Issue 17: how many handsets and speaker channels a turret has is set per
/// profile, checked, audited by name, and what the turret is told and
/// allowed to use.
#[tokio::test]
async fn a_profiles_speech_units_are_set_by_the_administrator() {
    let s = InProc::start_with(|c, _| c.sip.enabled = true).await;
    let (st, p) = s
        .api
        .post(
            "/api/v1/profiles",
            json!({"name": "Units", "password": "pw-123456", "handsets": 3, "speakers": 6}),
        )
        .await;
    assert_eq!(st, reqwest::StatusCode::CREATED, "{p}");
    assert_eq!(
        (p["handsets"].clone(), p["speakers"].clone()),
        (json!(3), json!(6))
    );
    let pid = p["id"].as_i64().unwrap();
    let (_c, v) = s.login(pid, "pw-123456").await;
    let units: Vec<&str> = v["config"]["speech_units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        units,
        [
            "handset-1",
            "handset-2",
            "handset-3",
            "speaker-1",
            "speaker-2",
            "speaker-3",
            "speaker-4",
            "speaker-5",
            "speaker-6"
        ]
    );
    // Defaults: two handsets, four speaker channels.
    let (_, d) = s
        .api
        .post(
            "/api/v1/profiles",
            json!({"name": "Plain", "password": "pw-123456"}),
        )
        .await;
    assert_eq!(
        (d["handsets"].clone(), d["speakers"].clone()),
        (json!(2), json!(4))
    );
    // Out of range: refused, naming the field; nothing changes.
    for (field, bad) in [
        ("handsets", 0),
        ("handsets", 5),
        ("speakers", 9),
        ("speakers", -1),
    ] {
        let (st, e) = s
            .api
            .patch(&format!("/api/v1/profiles/{pid}"), json!({field: bad}))
            .await;
        assert_eq!(
            st,
            reqwest::StatusCode::UNPROCESSABLE_ENTITY,
            "{field} {bad}: {e}"
        );
        assert!(e.to_string().contains(field), "{e}");
    }
    let (_, now) = s.api.get(&format!("/api/v1/profiles/{pid}")).await;
    assert_eq!(now["speakers"], 6);
    let (st, _) = s
        .api
        .patch(&format!("/api/v1/profiles/{pid}"), json!({"speakers": 1}))
        .await;
    assert_eq!(st, reqwest::StatusCode::OK);
    let (_, audit) = s.api.get("/api/v1/audit?event_type=profile.updated").await;
    assert!(audit.to_string().contains("speakers"), "{audit}");
    // The turret now has one speaker channel: a call cannot be answered on
    // a second one.
    let (mut c, v) = s.login(pid, "pw-123456").await;
    assert_eq!(v["config"]["speech_units"].as_array().unwrap().len(), 4);
    let no_unit = c
        .request(json!({"op": "answer", "call_id": 1, "speech_unit": "speaker-2"}))
        .await
        .unwrap_err();
    assert_eq!(no_unit.code, "invalid", "{no_unit:?}");
    assert!(no_unit.message.contains("speaker-2"), "{no_unit:?}");
    let unit_ok = c
        .request(json!({"op": "answer", "call_id": 1, "speech_unit": "speaker-1"}))
        .await
        .unwrap_err();
    assert_eq!(unit_ok.code, "not_found", "{unit_ok:?}");
}
