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
