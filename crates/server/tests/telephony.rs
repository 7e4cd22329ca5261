//! Telephony (issue 6) against real peers: Kamailio as the PBX, baresip as
//! the far end, turret clients over the client protocol.

mod common;

use std::time::{Duration, Instant};

use common::inproc::InProc;
use common::sip::{Baresip, Kamailio, PBX_PASSWORD};
use openturret_server::client::conn::Connection;
use serde_json::{Value, json};

async fn server() -> InProc {
    InProc::start_with(|c, _| {
        c.sip.enabled = true;
        c.sip.keepalive_secs = 1;
        c.sip.register_expires = 120;
    })
    .await
}

/// Creates a line on the test PBX; returns its id.
async fn line(s: &InProc, user: &str, pbx_port: u16, password: &str) -> i64 {
    let (st, v) = s
        .api
        .post(
            "/api/v1/lines",
            json!({"name": format!("Line {user}"), "uri": format!("sip:{user}@127.0.0.1:{pbx_port}"),
                   "username": user, "password": password, "display_name": format!("Desk {user}")}),
        )
        .await;
    assert_eq!(st, reqwest::StatusCode::CREATED, "{v}");
    v["id"].as_i64().unwrap()
}

async fn line_state(s: &InProc, id: i64) -> Value {
    let (_, v) = s.api.get(&format!("/api/v1/lines/{id}")).await;
    v
}

/// Polls the admin API until every line is `state` or the time is up.
async fn wait_lines(s: &InProc, ids: &[i64], state: &str, wait: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let (_, all) = s.api.get("/api/v1/lines").await;
        let done = ids.iter().all(|id| {
            all.as_array()
                .unwrap()
                .iter()
                .any(|l| l["id"] == json!(id) && l["registration_state"] == json!(state))
        });
        if done {
            return start.elapsed();
        }
        if start.elapsed() > wait {
            let other: Vec<String> = all
                .as_array()
                .unwrap()
                .iter()
                .filter(|l| {
                    ids.contains(&l["id"].as_i64().unwrap())
                        && l["registration_state"] != json!(state)
                })
                .map(|l| {
                    format!(
                        "{} {} {}",
                        l["name"], l["registration_state"], l["registration_reason"]
                    )
                })
                .collect();
            panic!("lines not all {state} after {wait:?}: {other:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_lines_register_a_wrong_password_fails_and_all_return_after_a_pbx_restart() {
    let mut pbx = Kamailio::start("MD5", false);
    let s = server().await;
    let mut ids = Vec::new();
    for i in 0..50 {
        ids.push(line(&s, &format!("{}", 1000 + i), pbx.port, PBX_PASSWORD).await);
    }
    let bad = line(&s, "1999", pbx.port, "not-the-password").await;
    let took = wait_lines(&s, &ids, "registered", Duration::from_secs(20)).await;
    eprintln!("50 lines registered in {took:?}");
    wait_lines(&s, &[bad], "failing", Duration::from_secs(20)).await;
    let v = line_state(&s, bad).await;
    assert!(
        v["registration_reason"]
            .as_str()
            .unwrap()
            .contains("wrong username or password"),
        "{v}"
    );
    // The audit log has the state changes.
    let (_, audit) = s.api.get("/api/v1/audit?event_type=line.registered").await;
    let audited = audit["items"].as_array().unwrap().len();
    assert_eq!(audited, 50, "one line.registered audit entry per line");

    // The PBX dies: the lines are shown failing.
    pbx.kill();
    assert!(!common::sip::options_ok(pbx.port), "the PBX is down");
    wait_lines(&s, &ids, "failing", Duration::from_secs(15)).await;
    // It comes back without any registration: all lines return within 30 s.
    pbx.restart();
    let back = wait_lines(&s, &ids, "registered", Duration::from_secs(30)).await;
    eprintln!("50 lines re-registered {back:?} after the PBX returned");
}
