//! The Management Portal's pages for external interfaces (API keys, the
//! CDR output) in real headless Chromium, against the real `turret serve`.

mod common;

use common::browser::signed_in;
use serde_json::json;

#[tokio::test]
async fn an_api_key_is_shown_once_and_revoked_from_the_portal() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, b, api) = signed_in(dir.path()).await;
    b.goto("/api-keys").await;
    assert!(b.text("main").await.contains("No API keys yet"));
    b.fill("#key-name", "Voice recorder").await;
    b.fill("#key-expires_in_days", "30").await;
    b.submit("form[action='/api-keys'] button[type=submit]")
        .await;
    let token = b.text("#new-key").await;
    assert!(token.starts_with("otk_") && token.len() > 60, "{token}");
    b.screenshot("api-keys").await;
    // Never again: not on the page, not in the API.
    b.goto("/api-keys").await;
    let page = b.source().await;
    assert!(!page.contains(&token));
    let (_, list) = api.get("/api/v1/api-keys").await;
    assert!(!list.to_string().contains(&token));
    assert_eq!(list[0]["name"], "Voice recorder");
    assert_eq!(list[0]["events"], json!(["calls"]));
    assert_eq!(list[0]["active"], true);
    b.submit("form[action$='/revoke'] button[type=submit]")
        .await;
    assert!(b.text(".flash").await.contains("revoked"));
    let (_, list) = api.get("/api/v1/api-keys").await;
    assert_eq!(list[0]["active"], false);

    // The CDR output: off until switched on; fields and files chosen on
    // the settings page.
    assert_eq!(api.get("/api/v1/settings").await.1["cdr_enabled"], false);
    b.goto("/settings").await;
    assert!(b.text("#cdr").await.contains("Off until switched on"));
    b.click("input[name='cdr_enabled']").await;
    b.click("input[name='field.profile_name']").await;
    b.click("input[name='field.attendant_group']").await;
    b.choose("#cdr-cdr_files", "JSON lines").await;
    b.submit("form[action='/settings/cdr'] button[type=submit]")
        .await;
    assert!(
        b.text(".flash")
            .await
            .contains("Call data record output saved")
    );
    b.screenshot("settings-cdr").await;
    let (_, st) = api.get("/api/v1/settings").await;
    assert_eq!(st["cdr_enabled"], true);
    assert_eq!(st["cdr_files"], "jsonl");
    assert_eq!(
        st["cdr_fields"],
        json!([
            "called_number",
            "calling_number",
            "duration_ms",
            "call_type",
            "direction",
            "started_at",
            "ended_at"
        ])
    );
    let (_, report) = api.get("/api/v1/privacy-report").await;
    assert_eq!(report["cdr_output"]["files"], "jsonl");
}

/// Voice recorders in the portal (issue 18): added with an error beside a
/// wrong field and nothing kept, listed with their state, passwords never
/// shown, at most two, removed; the Settings switch and a line's
/// Recording choice say which calls go to them.
#[tokio::test]
async fn recorders_are_added_listed_and_removed_in_the_portal() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, b, api) = signed_in(dir.path()).await;
    b.goto("/recorders").await;
    let main = b.text("main").await;
    assert!(
        main.contains("No recorders yet") && main.contains("no call is recorded"),
        "{main}"
    );
    b.fill("#recorder-name", "Recorder A").await;
    b.fill("#recorder-uri", "http://recorder").await;
    b.submit("form[action='/recorders'] button[type=submit]")
        .await;
    let err = b.text("#recorder-uri-error").await;
    assert!(err.contains("sip:"), "{err}");
    assert_eq!(
        b.eval("return document.querySelector('#recorder-name').value;")
            .await,
        "Recorder A"
    );
    assert_eq!(api.get("/api/v1/recorders").await.1, json!([]));
    b.fill("#recorder-uri", "sip:srs@192.0.2.7:5070").await;
    b.choose("#recorder-transport", "TCP").await;
    b.fill("#recorder-username", "src").await;
    b.fill("#recorder-password", "recorder-secret").await;
    b.submit("form[action='/recorders'] button[type=submit]")
        .await;
    assert!(b.text(".flash").await.contains("Recorder added"));
    let row = b.text("#recorders tbody tr").await;
    assert!(
        row.contains("Recorder A") && row.contains("tcp") && row.contains("no call yet"),
        "{row}"
    );
    assert!(!b.source().await.contains("recorder-secret"));
    let (_, list) = api.get("/api/v1/recorders").await;
    assert_eq!(list[0]["transport"], "tcp");
    assert_eq!(list[0]["has_password"], true);
    assert!(!list.to_string().contains("recorder-secret"));

    // Recording switched on for every line: the page says so.
    b.goto("/settings").await;
    b.click("#switches-recorder_forwarding_enabled").await;
    b.click("#switches-recording_all_lines").await;
    b.submit("form[action='/settings'] button[type=submit]")
        .await;
    let (_, s) = api.get("/api/v1/settings").await;
    assert_eq!(
        (
            s["recorder_forwarding_enabled"].clone(),
            s["recording_all_lines"].clone()
        ),
        (json!(true), json!(true))
    );
    b.goto("/recorders").await;
    assert!(
        b.text("main")
            .await
            .contains("every line's calls are recorded")
    );

    // The recording notice: a file that is not 8 kHz mono is refused
    // beside the form; a good one is kept and can be removed.
    let wavs = tempfile::tempdir().unwrap();
    let (bad, good) = (wavs.path().join("bad.wav"), wavs.path().join("good.wav"));
    common::sip::sine_wav(&bad, 1000.0, 44_100, 1);
    common::sip::sine_wav(&good, 1000.0, 8000, 3);
    b.fill("#notice-file", bad.to_str().unwrap()).await;
    b.submit("form[action='/recorders/notice'] button[type=submit]")
        .await;
    let err = b.text("#notice-error").await;
    assert!(err.contains("44100 Hz"), "{err}");
    assert_eq!(
        api.get("/api/v1/recording-notice").await.1["present"],
        false
    );
    b.fill("#notice-file", good.to_str().unwrap()).await;
    b.submit("form[action='/recorders/notice'] button[type=submit]")
        .await;
    assert!(b.text(".flash").await.contains("Recording notice set"));
    assert!(b.text("#notice").await.contains("3.0 s"));
    assert_eq!(api.get("/api/v1/recording-notice").await.1["seconds"], 3.0);
    b.screenshot("recorders").await;
    b.submit("form[action='/recorders/notice/delete'] button[type=submit]")
        .await;
    assert!(b.text(".flash").await.contains("Recording notice removed"));
    assert_eq!(
        api.get("/api/v1/recording-notice").await.1["present"],
        false
    );

    // Changed on its own page: a wrong address is refused beside the
    // field; the password left empty is kept.
    b.click("#recorders tbody tr a").await;
    b.fill("#recorder-uri", "ftp://x").await;
    b.submit("form[action^='/recorders/'] button[type=submit]")
        .await;
    assert!(b.text("#recorder-uri-error").await.contains("sip:"));
    b.fill("#recorder-name", "Recorder B").await;
    b.fill("#recorder-uri", "sips:srs@192.0.2.8").await;
    b.submit("form[action^='/recorders/'] button[type=submit]")
        .await;
    assert!(b.text(".flash").await.contains("Recorder saved"));
    let (_, list) = api.get("/api/v1/recorders").await;
    assert_eq!(
        (
            list[0]["name"].clone(),
            list[0]["transport"].clone(),
            list[0]["has_password"].clone()
        ),
        (json!("Recorder B"), json!("tls"), json!(true))
    );

    b.submit("form[action$='/delete'] button[type=submit]")
        .await;
    assert!(b.text(".flash").await.contains("Recorder removed"));
    assert_eq!(api.get("/api/v1/recorders").await.1, json!([]));
    let events = api.audit_events("object_type=recorder").await;
    assert_eq!(
        events,
        ["recorder.deleted", "recorder.updated", "recorder.created"],
        "{events:?}"
    );
}
