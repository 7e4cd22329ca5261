//! The web turret carrying a real call, as a new user would try it: a line
//! on a PBX (Kamailio), a softphone (baresip) calls it, the trader answers
//! in headless Chromium, hangs up, and finds the call in call memory.

mod common;

use std::time::Duration;

use common::browser::Browser;
use common::inproc::InProc;
use common::sip::{Baresip, Kamailio, PBX_PASSWORD};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trader_answers_a_softphone_call_in_the_browser_and_finds_it_in_call_memory() {
    let pbx = Kamailio::start("MD5", true);
    let s = InProc::start_with(|c, _| {
        c.sip.enabled = true;
        c.sip.keepalive_secs = 1;
    })
    .await;
    let (_, l) = s
        .api
        .post(
            "/api/v1/lines",
            json!({"name": "FX", "uri": format!("sip:1001@127.0.0.1:{}", pbx.port), "username": "1001",
                   "password": PBX_PASSWORD, "display_name": "FX Desk"}),
        )
        .await;
    let pid = s
        .profile(json!({"name": "Ann Trader", "password": "ann-pw", "collect_call_memory": true}))
        .await;
    s.api
        .put(
            &format!("/api/v1/profiles/{pid}/lines/{}", l["id"]),
            json!({"position": 1}),
        )
        .await;
    s.api
        .post(
            "/api/v1/global-contacts",
            json!({"name": "Bob Broker", "number": "2000"}),
        )
        .await;

    let b = Browser::start(&s.url).await;
    b.goto("/turret").await;
    b.wait_text(".profiles", "Ann Trader").await;
    b.click("[data-profile]").await;
    b.fill("#password", "ann-pw").await;
    b.click("#login").await;
    b.wait_text("#who", "Ann Trader").await;
    // The line registers (digest with qop=auth) and the key says so.
    b.wait_text("[data-line][data-registration=registered]", "FX Desk")
        .await;

    let mut phone = Baresip::start("2000", pbx.port, false);
    phone.command("dial", &format!("sip:1001@127.0.0.1:{}", pbx.port));
    b.wait_text("li.call[data-state=ringing]", "Bob Broker")
        .await;
    b.wait_text("[data-line][data-activity=ringing]", "ringing")
        .await;
    b.screenshot("turret-ringing").await;
    b.click("li.call [data-op=answer]").await;
    let (_, seen) = phone.wait_event("CALL_ESTABLISHED", 0, Duration::from_secs(10));
    b.wait_text("li.call[data-state=connected]", "connected")
        .await;
    b.wait_text("#monitor", "Bob Broker").await;
    b.click("li.call [data-op=hangup]").await;
    phone.wait_event("CALL_CLOSED", seen, Duration::from_secs(10));
    b.wait_text("#queue", "No calls.").await;

    b.click("#tab-call-memory").await;
    let row = b.wait_text("#call-memory", "Bob Broker").await;
    assert!(row.contains("answered (local)"), "{row}");
}
