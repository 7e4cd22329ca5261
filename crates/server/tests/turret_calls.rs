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
        .profile(
            json!({"name": "Ann Trader", "password": "ann-pw-longer", "collect_call_memory": true}),
        )
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
    b.turret_login("Ann Trader", "ann-pw-longer").await;
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
    assert!(row.contains("answered here"), "{row}");
    assert!(!row.contains("null"), "{row}");

    // Issue 14, points 13–15: what the trader sees when a call fails.
    // A number the PBX does not know: the reason stays beside the call.
    b.fill("#dial-number", "9999").await;
    b.click("#dial").await;
    let failed = b
        .wait_text("li.call[data-state=failed]", "number not found")
        .await;
    assert!(failed.contains("404"), "{failed}");
    b.screenshot("turret-call-failed").await;
    // A number the server refuses: said beside the dial form, nowhere else.
    b.fill("#dial-number", "call me").await;
    b.click("#dial").await;
    let said = b.wait_text("#dial-error", "number").await;
    assert_eq!(
        b.text("body").await.matches(said.trim()).count(),
        1,
        "the error is said once, beside its control"
    );
    // An answered outgoing call, then the entries: result, duration,
    // 24-hour time, and a call-back that places the call again.
    let far = Baresip::start("3000", pbx.port, true);
    b.fill("#dial-number", "3000").await;
    b.click("#dial").await;
    let (_, seen) = far.wait_event("CALL_ESTABLISHED", 0, Duration::from_secs(10));
    b.wait_text("li.call[data-state=connected]", "3000").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    b.click("li.call[data-state=connected] [data-op=hangup]")
        .await;
    far.wait_event("CALL_CLOSED", seen, Duration::from_secs(10));
    b.click("#tab-contacts").await;
    b.click("#tab-call-memory").await;
    let table = b
        .wait_text("#call-memory", "failed: number not found")
        .await;
    for line in table.lines().filter(|l| l.contains("3000")) {
        assert!(
            line.contains("answered") && !line.contains("null"),
            "{line}"
        );
        assert!(
            line.contains("0:01") || line.contains("0:02"),
            "a duration: {line}"
        );
    }
    assert!(
        !table.contains(" AM") && !table.contains(" PM"),
        "24-hour times: {table}"
    );
    let seen = far.event_count();
    b.click("[aria-label='Call back 3000']").await;
    far.wait_event("CALL_ESTABLISHED", seen, Duration::from_secs(10));
    b.wait_text("li.call[data-state=connected]", "3000").await;
    b.screenshot("turret-call-back").await;
    b.click("li.call[data-state=connected] [data-op=hangup]")
        .await;

    // A line that cannot register says why on its key.
    let (_, bad) = s
        .api
        .post(
            "/api/v1/lines",
            json!({"name": "Bad", "uri": format!("sip:1009@127.0.0.1:{}", pbx.port), "username": "1009",
                   "password": "not-the-password", "display_name": "Bad Line"}),
        )
        .await;
    s.api
        .put(
            &format!("/api/v1/profiles/{pid}/lines/{}", bad["id"]),
            json!({"position": 2}),
        )
        .await;
    let key = b
        .wait_text(
            "[data-line][data-registration=failing]",
            "wrong username or password",
        )
        .await;
    assert!(key.contains("Bad Line"), "{key}");
}
