//! The web turret in real headless Chromium, against an in-process System
//! Manager (so that calls can be fed through the internal event API).

mod common;

use std::time::Instant;

use common::browser::Browser;
use common::inproc::InProc;
use openturret_domain::model::Direction;
use openturret_domain::{LineId, ProfileId, Timestamp};
use openturret_server::callmem::{CallEvent, record_call};
use serde_json::json;

#[tokio::test]
async fn a_trader_sees_keys_and_an_admin_change_arrives_without_a_reload() {
    let s = InProc::start().await;
    let pid = s
        .profile(json!({"name": "Ann Trader", "password": "ann-pw-longer"}))
        .await;
    let (_, l) = s.api.post("/api/v1/lines", json!({"name": "L1", "uri": "sip:1001@pbx", "password": "line-secret", "display_name": "FX Desk", "alternate_text": "FX"})).await;
    s.api
        .put(
            &format!("/api/v1/profiles/{pid}/lines/{}", l["id"]),
            json!({"position": 1}),
        )
        .await;
    for (kind, pos, name) in [
        ("DKA", 1, "Broker A"),
        ("DKM", 1, "Desk M1"),
        ("DKM", 2, "Desk M2"),
    ] {
        s.api
            .post(
                &format!("/api/v1/profiles/{pid}/speed-dials"),
                json!({"kind": kind, "position": pos, "name": name, "number": "2001"}),
            )
            .await;
    }
    let b = Browser::start(&s.url).await;
    b.goto("/turret").await;
    b.wait_text(".profiles", "Ann Trader").await;
    b.screenshot("turret-login").await;
    b.turret_login("Ann Trader", "ann-pw-longer").await;
    b.wait_text("[aria-label='Line keys']", "FX Desk").await;
    b.wait_text("[aria-label='DKA keys']", "Broker A").await;
    b.wait_text("[aria-label='DKM keys']", "Desk M2").await;
    assert!(
        !b.source().await.contains("line-secret"),
        "a client never sees a line password"
    );
    assert!(
        !b.source().await.contains("sip:1001"),
        "nor its SIP address (SPEC §2)"
    );

    let t = Instant::now();
    s.api
        .post(
            &format!("/api/v1/profiles/{pid}/speed-dials"),
            json!({"kind": "DKM", "position": 3, "name": "Pushed key", "number": "2002"}),
        )
        .await;
    b.wait_text("[aria-label='DKM keys']", "Pushed key").await;
    eprintln!("admin change shown in the browser after {:?}", t.elapsed());
    b.screenshot("turret").await;

    // The trader adds and removes their own keys (SPEC rule 5).
    // Position 1 of DKM is taken: the server refuses, the form says why.
    b.fill("#key-position", "1").await;
    b.fill("#key-name", "Bad key").await;
    b.fill("#key-number", "2003").await;
    b.click("#add-key").await;
    b.wait_text("#key-error", "position").await;
    b.fill("#key-position", "7").await;
    b.click("#add-key").await;
    b.wait_text("[aria-label='DKM keys']", "Bad key").await;
    let (_, keys) = s
        .api
        .get(&format!("/api/v1/profiles/{pid}/speed-dials"))
        .await;
    assert!(
        keys.as_array()
            .unwrap()
            .iter()
            .any(|k| k["name"] == "Bad key" && k["position"] == 7)
    );
    b.click("[aria-label='Remove key Bad key']").await;
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while b.text("[aria-label='DKM keys']").await.contains("Bad key") {
        assert!(Instant::now() < deadline, "the removed key stays on screen");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn contacts_and_call_memory_unlock_list_add_and_delete_in_the_browser() {
    let s = InProc::start().await;
    let pid = s
        .profile(json!({"name": "Bea Broker", "password": "bea-pw-longer", "contacts_password": "bea-contacts",
                        "call_memory_password": "bea-callmem-longer", "collect_call_memory": true,
                        "call_memory_password_protected": true, "allow_call_memory_deletion": true}))
        .await;
    s.api
        .post(
            &format!("/api/v1/profiles/{pid}/contacts"),
            json!({"name": "Carl Client", "number": "+44 20 7946 0101"}),
        )
        .await;
    let (_, l) = s
        .api
        .post("/api/v1/lines", json!({"name": "L1", "uri": "sip:1@pbx"}))
        .await;
    let lid = l["id"].as_i64().unwrap();
    s.api
        .put(
            &format!("/api/v1/profiles/{pid}/lines/{lid}"),
            json!({"position": 1}),
        )
        .await;
    while s
        .app
        .caller_id
        .lookup(ProfileId(pid), "+44 20 7946 0101")
        .is_none()
    {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    for (i, number) in ["+44 20 7946 0101", "+44 20 7000 0002"].iter().enumerate() {
        let ev = CallEvent {
            line: LineId(lid),
            direction: Direction::Incoming,
            remote_number: number.to_string(),
            at: Timestamp(1_790_000_000_000 + i as i64),
            answered_by: Some(ProfileId(pid)),
            answered: true,
            placed_by: None,
            duration_ms: None,
            reason: String::new(),
        };
        record_call(&s.app, &ev).await.unwrap();
    }

    let b = Browser::start(&s.url).await;
    b.turret_login("Bea Broker", "bea-pw-longer").await;
    // Contacts: locked until the contacts password is given.
    b.wait_text("#tab-body", "Contacts password").await;
    b.fill("#unlock-unlock_contacts", "wrong").await;
    b.click("#tab-body button[type=submit]").await;
    b.wait_text("#error", "wrong contacts password").await;
    b.fill("#unlock-unlock_contacts", "bea-contacts").await;
    b.click("#tab-body button[type=submit]").await;
    b.wait_text("#contacts", "Carl Client").await;
    b.fill("#new-contact-name", "Dina Dealer").await;
    b.fill("#new-contact-number", "+44 20 7946 0202").await;
    b.click("#add-contact").await;
    b.wait_text("#contacts", "Dina Dealer").await;
    let (_, contacts) = s.api.get(&format!("/api/v1/profiles/{pid}/contacts")).await;
    assert_eq!(contacts.as_array().unwrap().len(), 2);

    // Call memory: locked behind its password, then listed and deletable.
    b.click("#tab-call-memory").await;
    b.wait_text("#tab-body", "Call-memory password").await;
    b.fill("#unlock-unlock_call_memory", "bea-callmem-longer")
        .await;
    b.click("#tab-body button[type=submit]").await;
    let table = b.wait_text("#call-memory", "Carl Client").await;
    assert!(
        table.contains("+44 20 7000 0002") && table.contains("answered here"),
        "{table}"
    );
    b.screenshot("turret-call-memory").await;
    b.click("#call-memory [aria-label='Delete entry']").await;
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while s
        .app
        .store
        .list_call_memory(ProfileId(pid))
        .await
        .unwrap()
        .len()
        != 1
    {
        assert!(Instant::now() < deadline, "the entry was never deleted");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}
