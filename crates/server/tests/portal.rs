//! The Management Portal in real headless Chromium, against the real
//! `turret serve` over HTTPS.

mod common;

use common::browser::{Browser, signed_in};
use common::*;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn signing_in_with_the_one_time_password_forces_a_change() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let otp = server.one_time_password().unwrap();
    let b = Browser::start(&server.url).await;
    b.goto("/").await;
    assert_eq!(
        b.path().await,
        "/login",
        "signed-out visitors land on the sign-in page"
    );
    b.screenshot("login").await;

    b.fill("#login-username", "admin").await;
    b.fill("#login-password", "not-the-password").await;
    b.submit("form[action='/login'] button[type=submit]").await;
    assert!(
        b.text(".error-box")
            .await
            .contains("Wrong username or password")
    );

    b.fill("#login-username", "admin").await;
    b.fill("#login-password", &otp).await;
    b.submit("form[action='/login'] button[type=submit]").await;
    assert_eq!(b.path().await, "/password");
    assert!(b.source().await.contains("one-time password"));
    b.goto("/profiles").await;
    assert_eq!(
        b.path().await,
        "/password",
        "nothing else is reachable before the change"
    );

    b.fill("#pw-current_password", &otp).await;
    b.fill("#pw-new_password", ADMIN_PASSWORD).await;
    b.fill("#pw-confirm", "something-else-entirely").await;
    b.submit("form[action='/password'] button[type=submit]")
        .await;
    assert_eq!(
        b.client
            .find(fantoccini::Locator::Css("#pw-confirm"))
            .await
            .unwrap()
            .attr("aria-invalid")
            .await
            .unwrap()
            .as_deref(),
        Some("true")
    );

    b.fill("#pw-current_password", &otp).await;
    b.fill("#pw-new_password", ADMIN_PASSWORD).await;
    b.fill("#pw-confirm", ADMIN_PASSWORD).await;
    b.submit("form[action='/password'] button[type=submit]")
        .await;
    assert_eq!(b.path().await, "/profiles");
    assert!(b.text(".flash").await.contains("password was changed"));

    // The cookie is locked down.
    let cookie = b.client.get_named_cookie("turret_session").await.unwrap();
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.secure(), Some(true));
    assert_eq!(format!("{:?}", cookie.same_site()), "Some(Strict)");

    // Sign out, and the old session is gone.
    b.submit("form[action='/logout'] button").await;
    assert_eq!(b.path().await, "/login");
    b.goto("/profiles").await;
    assert_eq!(b.path().await, "/login");
    let mut api = server.client();
    api.login("admin", ADMIN_PASSWORD).await;
}

#[tokio::test]
async fn a_profile_gets_contacts_keys_and_a_line_key_and_line_passwords_stay_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, b, api) = signed_in(dir.path()).await;

    b.goto("/lines/new").await;
    b.fill("#line-name", "Line 1").await;
    b.fill("#line-uri", "sip:1001@pbx.example.com").await;
    b.fill("#line-username", "1001").await;
    b.fill("#line-password", "line-secret-4444").await;
    b.fill("#line-display_name", "FX Desk").await;
    b.submit("form[action='/lines/new'] button[type=submit]")
        .await;
    assert_eq!(b.path().await, "/lines");

    b.goto("/profiles/new").await;
    b.fill("#profile-name", "Ann Trader").await;
    b.fill("#profile-password", "1234").await;
    b.click("#profile-collect_call_memory").await;
    b.submit("form[action='/profiles/new'] button[type=submit]")
        .await;
    // A PIN cannot protect call memory: said beside the call-memory
    // password (issue 14, point 6).
    let said = b
        .wait_text("form[action='/profiles/new']", "12 characters")
        .await;
    assert!(said.contains("call memory"), "{said}");
    b.fill("#profile-password", "1234").await;
    b.fill("#profile-call_memory_password", "ann call memory pw")
        .await;
    // Speech units (issue 17): out of range is said beside the field.
    b.fill("#profile-speakers", "9").await;
    b.submit("form[action='/profiles/new'] button[type=submit]")
        .await;
    b.wait_text("form[action='/profiles/new']", "0 to 8").await;
    b.fill("#profile-password", "1234").await;
    b.fill("#profile-call_memory_password", "ann call memory pw")
        .await;
    b.fill("#profile-handsets", "3").await;
    b.fill("#profile-speakers", "6").await;
    b.submit("form[action='/profiles/new'] button[type=submit]")
        .await;
    let profile_path = b.path().await;
    assert!(profile_path.starts_with("/profiles/"), "{profile_path}");
    let pid: i64 = profile_path.rsplit('/').next().unwrap().parse().unwrap();
    let (_, p) = api.get(&format!("/api/v1/profiles/{pid}")).await;
    assert_eq!(
        (p["handsets"].clone(), p["speakers"].clone()),
        (json!(3), json!(6))
    );

    for (name, number) in [
        ("Bob Broker", "+44 20 7946 0001"),
        ("Cat Clerk", "020 7946 0002"),
    ] {
        b.fill("#contact-name", name).await;
        b.fill("#contact-number", number).await;
        b.submit(&format!(
            "form[action='/profiles/{pid}/contacts'] button[type=submit]"
        ))
        .await;
        assert!(b.text(".flash").await.contains("Contact added"));
    }
    for (kind, pos, name) in [
        ("DKA: direct key", "1", "Desk A"),
        ("DKM: speed dial memory", "1", "Desk M1"),
        ("DKM: speed dial memory", "2", "Desk M2"),
    ] {
        b.choose("#key-kind", kind).await;
        b.fill("#key-position", pos).await;
        b.fill("#key-name", name).await;
        b.fill("#key-number", "2001").await;
        b.submit(&format!(
            "form[action='/profiles/{pid}/speed-dials'] button[type=submit]"
        ))
        .await;
        assert!(
            b.text(".flash").await.contains("Speed dial key added"),
            "{kind} {pos}"
        );
    }
    b.choose("#linekey-line_id", "Line 1 (FX Desk)").await;
    b.fill("#linekey-position", "1").await;
    b.submit(&format!(
        "form[action='/profiles/{pid}/lines'] button[type=submit]"
    ))
    .await;
    assert!(b.text(".flash").await.contains("Line key added"));
    let page = b.source().await;
    for text in ["Bob Broker", "Cat Clerk", "Desk A", "Desk M2", "FX Desk"] {
        assert!(page.contains(text), "{text} shown on the profile page");
    }
    b.screenshot("profile").await;

    // The API sees the same.
    assert_eq!(
        api.get(&format!("/api/v1/profiles/{pid}/contacts"))
            .await
            .1
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        api.get(&format!("/api/v1/profiles/{pid}/speed-dials"))
            .await
            .1
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        api.get(&format!("/api/v1/profiles/{pid}/lines")).await.1[0]["position"],
        1
    );

    // Edit the line: its password is never sent back to the browser.
    b.goto("/lines").await;
    assert_eq!(
        b.text("td.served-by").await,
        "this server",
        "served by the MLC inside turret serve"
    );
    b.screenshot("lines").await;
    b.submit("table a").await;
    let edit = b.source().await;
    assert!(
        !edit.contains("line-secret-4444"),
        "the line page never holds the password"
    );
    let pw = b
        .client
        .find(fantoccini::Locator::Css("#line-password"))
        .await
        .unwrap();
    assert_eq!(pw.prop("value").await.unwrap().as_deref(), Some(""));
    assert!(edit.contains("A password is stored"));
    b.fill("#line-display_name", "Rates Desk").await;
    b.choose(
        "#line-priority",
        "Priority: a distinct, faster ring on the turrets",
    )
    .await;
    b.submit("form[action^='/lines/'] button[type=submit]")
        .await;
    assert_eq!(b.path().await, "/lines");
    assert!(!b.source().await.contains("line-secret-4444"));
    let (_, lines) = api.get("/api/v1/lines").await;
    assert_eq!(lines[0]["display_name"], "Rates Desk");
    assert_eq!(lines[0]["priority"], true, "the ring chosen in the form");
    assert_eq!(
        lines[0]["has_password"], true,
        "saving without a password keeps the stored one"
    );

    // Issue 14, point 17. A second line with the same SIP address and
    // user is warned about.
    b.goto("/lines/new").await;
    b.fill("#line-name", "Line 1 again").await;
    b.fill("#line-uri", "sip:1001@pbx.example.com").await;
    b.fill("#line-username", "1001").await;
    b.submit("form[action='/lines/new'] button[type=submit]")
        .await;
    let flash = b.text(".flash").await;
    assert!(
        flash.contains("Warning")
            && flash.contains("“Line 1”")
            && flash.contains("same SIP address"),
        "{flash}"
    );
    // The Lines page keeps itself live and says since when each state holds.
    assert!(b.source().await.contains("http-equiv=\"refresh\""));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        b.goto("/lines").await;
        if b.source().await.contains("line-since") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no time beside the states"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let id = lines[0]["id"].as_i64().unwrap();
    b.goto(&format!("/lines/{id}")).await;
    assert!(
        b.text(".line-state").await.contains("since"),
        "the edit page shows the state"
    );
    // Deleting asks first, naming what goes; a bare POST deletes nothing.
    b.click("a.button.danger").await;
    assert_eq!(b.path().await, format!("/lines/{id}/delete"));
    let ask = b.text("section.card").await;
    assert!(
        ask.contains("Delete the line") && ask.contains("1 profile"),
        "{ask}"
    );
    let (s, _) = api.get(&format!("/api/v1/lines/{id}")).await;
    assert_eq!(s, reqwest::StatusCode::OK);
    b.submit("form[action$='/delete'] button[type=submit]")
        .await;
    assert_eq!(b.path().await, "/lines");
    assert!(b.text(".flash").await.contains("Line deleted"));
    let (s, _) = api.get(&format!("/api/v1/lines/{id}")).await;
    assert_eq!(s, reqwest::StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn enabling_the_master_password_shows_in_the_audit_viewer() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, b, api) = signed_in(dir.path()).await;
    b.goto("/settings").await;
    assert!(
        b.text("#master .warning")
            .await
            .contains("sign in to any profile")
    );
    b.fill("#master-master_password", "master-pw-0001-ab").await;
    b.fill("#master-confirm", "master-pw-0001-ab").await;
    b.submit("form[action='/settings/master-password'] button[type=submit]")
        .await;
    assert!(
        b.text(".flash")
            .await
            .contains("master password is enabled")
    );
    b.screenshot("settings").await;
    assert_eq!(
        api.get("/api/v1/settings").await.1["master_password_enabled"],
        true
    );

    b.goto("/audit").await;
    assert!(b.text(".chain").await.contains("verified"));
    b.fill("#audit-event_type", "master_password.enabled").await;
    b.submit("form[action='/audit/filter'] button[type=submit]")
        .await;
    assert_eq!(
        b.path().await,
        "/audit",
        "the filter does not travel in the URL"
    );
    let rows = b
        .client
        .find_all(fantoccini::Locator::Css("tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let row = rows[0].text().await.unwrap();
    assert!(
        row.contains("master_password.enabled") && row.contains("admin"),
        "{row}"
    );
    b.submit("form[action='/audit/filter'] button[name=clear]")
        .await;
    assert!(
        b.client
            .find_all(fantoccini::Locator::Css("tbody tr"))
            .await
            .unwrap()
            .len()
            > 3
    );
    b.screenshot("audit").await;

    // The privacy report says so too, and where the data is, on this
    // run's backend.
    b.goto("/privacy").await;
    let page = b.text("main").await;
    assert!(
        page.contains("Master password\ton") || page.contains("Master password on"),
        "{page}"
    );
    let postgres = std::env::var("TURRET_TEST_BACKEND").as_deref() == Ok("postgres");
    let (stored, nodes) = if postgres {
        (
            "Stored in the PostgreSQL database postgres://",
            "others heard now",
        )
    } else {
        ("Stored in the SQLite database /", "one node")
    };
    assert!(page.contains(stored), "{page}");
    assert!(b.text("#privacy-nodes").await.contains(nodes), "{page}");
}

#[tokio::test]
async fn withdrawing_a_consent_erases_the_profile_and_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, b, api) = signed_in(dir.path()).await;
    let (_, p) = api
        .post(
            "/api/v1/profiles",
            json!({"name": "Dora Dealer", "password": "1234"}),
        )
        .await;
    let pid = p["id"].as_i64().unwrap();
    for n in ["1", "2"] {
        api.post(
            &format!("/api/v1/profiles/{pid}/contacts"),
            json!({"name": format!("C{n}"), "number": n}),
        )
        .await;
    }
    b.goto("/consents").await;
    b.choose("#consent-profile_id", "Dora Dealer").await;
    b.fill("#consent-purpose", "call memory collection").await;
    b.choose("#consent-channel", "E-mail").await;
    b.submit("form[action='/consents'] button[type=submit]")
        .await;
    assert!(b.text(".flash").await.contains("Consent recorded"));
    b.screenshot("consents").await;

    b.submit("a[href$='/withdraw']").await;
    let confirm = b.text("main").await;
    assert!(
        confirm.contains("Dora Dealer") && confirm.contains("Local contacts\n2")
            || confirm.contains("Local contacts 2"),
        "{confirm}"
    );
    b.screenshot("withdraw").await;
    b.submit("form[action$='/withdraw'] button[type=submit]")
        .await;
    assert!(b.text(".flash").await.contains("Consent withdrawn"));
    assert_eq!(
        api.get(&format!("/api/v1/profiles/{pid}")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.get(&format!("/api/v1/profiles/{pid}/contacts")).await.0,
        StatusCode::NOT_FOUND
    );
    b.goto("/profiles").await;
    assert!(!b.source().await.contains("Dora Dealer"));
}

#[tokio::test]
async fn bad_input_shows_its_error_beside_the_field_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, b, api) = signed_in(dir.path()).await;
    let (_, p) = api
        .post(
            "/api/v1/profiles",
            json!({"name": "Eve Exec", "password": "1234"}),
        )
        .await;
    let pid = p["id"].as_i64().unwrap();
    let audit_before = api.get("/api/v1/audit?limit=1").await.1["items"][0]["seq"].clone();

    b.goto(&format!("/profiles/{pid}")).await;
    b.fill("#contact-name", "Frank").await;
    b.fill("#contact-number", "call me").await;
    b.submit(&format!(
        "form[action='/profiles/{pid}/contacts'] button[type=submit]"
    ))
    .await;
    let number = b
        .client
        .find(fantoccini::Locator::Css("#contact-number"))
        .await
        .unwrap();
    assert_eq!(
        number.attr("aria-invalid").await.unwrap().as_deref(),
        Some("true")
    );
    let err = b.text("#contact-number-error").await;
    assert!(err.contains("Number"), "{err}");
    assert_eq!(
        b.client
            .find(fantoccini::Locator::Css("#contact-name"))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("Frank"),
        "what was typed stays"
    );
    b.screenshot("bad-input").await;

    b.goto("/profiles/new").await;
    b.fill("#profile-name", "Eve Exec").await;
    b.fill("#profile-password", "1234").await;
    b.submit("form[action='/profiles/new'] button[type=submit]")
        .await;
    assert!(
        b.text("#profile-name-error")
            .await
            .contains("already in use")
    );

    assert!(
        api.get(&format!("/api/v1/profiles/{pid}/contacts"))
            .await
            .1
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(api.get("/api/v1/profiles").await.1["total"], 1);
    assert_eq!(
        api.get("/api/v1/audit?limit=1").await.1["items"][0]["seq"],
        audit_before,
        "nothing was changed or audited"
    );
}

#[tokio::test]
async fn a_post_without_a_valid_csrf_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (server, b, api) = signed_in(dir.path()).await;
    b.goto("/profiles/new").await;
    let token = b
        .client
        .find(fantoccini::Locator::Css("input[name=_csrf]"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    let session = b.cookie("turret_session").await;
    let cert = std::fs::read(dir.path().join("tls/cert.pem")).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&cert).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let post = |body: String, extra: Option<(&'static str, &'static str)>| {
        let mut req = http
            .post(format!("{}/profiles/new", server.url))
            .header("cookie", format!("turret_session={session}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some((k, v)) = extra {
            req = req.header(k, v);
        }
        req.send()
    };
    let no_token = post("name=Mallory&password=1234".into(), None)
        .await
        .unwrap();
    assert_eq!(no_token.status(), StatusCode::FORBIDDEN);
    let wrong = post(
        format!("name=Mallory&password=1234&_csrf={}", "0".repeat(64)),
        None,
    )
    .await
    .unwrap();
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    let cross = post(
        format!("name=Mallory&password=1234&_csrf={token}"),
        Some(("sec-fetch-site", "cross-site")),
    )
    .await
    .unwrap();
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        api.get("/api/v1/profiles").await.1["total"],
        0,
        "nothing was created"
    );

    // The same request with the page's token goes through: the check is real.
    let ok = post(format!("name=Mallory&password=1234&_csrf={token}"), None)
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    assert_eq!(api.get("/api/v1/profiles").await.1["total"], 1);

    // And every page carries a strict Content-Security-Policy.
    let res = http
        .get(format!("{}/profiles", server.url))
        .header("cookie", format!("turret_session={session}"))
        .send()
        .await
        .unwrap();
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("form-action 'self'"),
        "{csp}"
    );
    b.goto("/admins").await;
    b.screenshot("admins").await;
}

#[tokio::test]
async fn administrators_are_created_disabled_and_reset_in_the_portal() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, b, api) = signed_in(dir.path()).await;
    b.goto("/admins").await;
    b.fill("#admin-username", "grace").await;
    b.fill("#admin-password", "grace-password-01").await;
    b.submit("form[action='/admins'] button[type=submit]").await;
    assert!(b.text(".flash").await.contains("Administrator created"));
    let (_, admins) = api.get("/api/v1/admins").await;
    let grace = admins
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["username"] == "grace")
        .unwrap()
        .clone();
    assert_eq!(grace["must_change_password"], true);
    let gid = grace["id"].as_i64().unwrap();
    // Each administrator's data can be exported from the list (issue 15).
    assert!(
        b.source()
            .await
            .contains(&format!("href=\"/admins/{gid}/export\"")),
        "an export link per administrator"
    );
    b.submit(&format!("form[action='/admins/{gid}/disable'] button"))
        .await;
    assert!(b.text(".flash").await.contains("disabled"));
    assert_eq!(
        api.get(&format!("/api/v1/admins/{gid}")).await.1["enabled"],
        false
    );
    b.fill(&format!("#reset-{gid}"), "short").await;
    b.submit(&format!("form[action='/admins/{gid}/password'] button"))
        .await;
    assert!(b.text(".field-error").await.contains("at least 12"));
    b.fill(&format!("#reset-{gid}"), "grace-password-02").await;
    b.submit(&format!("form[action='/admins/{gid}/password'] button"))
        .await;
    assert!(b.text(".flash").await.contains("Password reset"));
}

#[tokio::test]
async fn backups_are_taken_listed_verified_and_restored_from_the_portal() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, mut b, api) = signed_in(dir.path()).await;
    api.post(
        "/api/v1/profiles",
        json!({"name": "Olga Operator", "password": "olga-pw"}),
    )
    .await;
    b.goto("/backups").await;
    assert!(b.text("main").await.contains("No backups yet"));
    b.fill("#backup-passphrase", "portal passphrase 01").await;
    b.fill("#backup-confirm", "portal passphrase 02").await;
    b.submit("form[action='/backups'] button[type=submit]")
        .await;
    assert!(b.text("#backup-confirm-error").await.contains("differ"));
    b.fill("#backup-passphrase", "portal passphrase 01").await;
    b.fill("#backup-confirm", "portal passphrase 01").await;
    b.submit("form[action='/backups'] button[type=submit]")
        .await;
    assert!(b.text(".flash").await.contains("Backup written"));
    let (_, list) = api.get("/api/v1/backups").await;
    assert_eq!(list.as_array().unwrap().len(), 1);

    b.fill("#verify-passphrase", "not it at all").await;
    b.submit("form[action='/backups/verify'] button[type=submit]")
        .await;
    assert!(b.text("#verify-passphrase-error").await.contains("wrong"));
    b.fill("#verify-passphrase", "portal passphrase 01").await;
    b.submit("form[action='/backups/verify'] button[type=submit]")
        .await;
    assert!(b.text(".flash").await.contains("is intact"));
    b.screenshot("backups").await;
    let (_, audit) = api.get("/api/v1/audit?object_type=backup").await;
    let events: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        ["backup.verified", "backup.verified", "backup.created"]
    );

    // As a new user would: erase a profile, restore, and see that the
    // erased profile did not come back (and later data is gone).
    let (_, list) = api.get("/api/v1/profiles").await;
    let olga = list["items"][0]["id"].as_i64().unwrap();
    api.delete(&format!("/api/v1/profiles/{olga}")).await;
    api.post(
        "/api/v1/profiles",
        json!({"name": "Peter Post", "password": "peter-pw"}),
    )
    .await;
    b.goto("/backups").await;
    b.fill("#restore-passphrase", "portal passphrase 01").await;
    b.submit("form[action='/backups/restore'] button[type=submit]")
        .await;
    assert!(
        b.text("main").await.contains("tick the box"),
        "nothing happens without the confirmation"
    );
    b.fill("#restore-passphrase", "portal passphrase 01").await;
    b.click("#restore-confirm").await;
    b.submit("form[action='/backups/restore'] button[type=submit]")
        .await;
    assert!(b.text("main").await.contains("restarts now"));
    server.wait_restart().await;
    b.base = server.url.clone();
    b.goto("/login").await;
    b.fill("#login-username", "admin").await;
    b.fill("#login-password", ADMIN_PASSWORD).await;
    b.submit("form[action='/login'] button[type=submit]").await;
    b.goto("/profiles").await;
    let page = b.text("main").await;
    assert!(
        !page.contains("Olga Operator"),
        "erased after the backup, erased again: {page}"
    );
    assert!(
        !page.contains("Peter Post"),
        "the data is the backup's: {page}"
    );

    // A backup key: set up (two different passphrases refused), then a
    // backup sealed to it, taken without any passphrase.
    b.goto("/backups").await;
    assert!(!b.text("main").await.contains("Take backup with the key"));
    b.fill("#key-passphrase", "portal key pass 001").await;
    b.fill("#key-confirm", "portal key pass 002").await;
    b.submit("form[action='/backups/key'] button[type=submit]")
        .await;
    assert!(b.text("#key-confirm-error").await.contains("differ"));
    b.fill("#key-passphrase", "portal key pass 001").await;
    b.fill("#key-confirm", "portal key pass 001").await;
    b.submit("form[action='/backups/key'] button[type=submit]")
        .await;
    assert!(b.text(".flash").await.contains("Backup key"));
    b.submit("#take-with-key").await;
    assert!(b.text(".flash").await.contains("Backup written"));
    let mut api = server.client();
    api.login("admin", ADMIN_PASSWORD).await;
    let (_, key) = api.get("/api/v1/backups/key").await;
    let fingerprint = key["fingerprint"].as_str().unwrap();
    let table = b.text("table").await;
    assert!(
        table.contains(&format!("backup key {fingerprint}")),
        "{table}"
    );
    assert!(table.contains("its own passphrase"), "{table}");
}

#[tokio::test]
async fn contacts_are_exported_and_imported_back_from_the_portal() {
    let dir = tempfile::tempdir().unwrap();
    let (server, b, api) = signed_in(dir.path()).await;
    api.post(
        "/api/v1/global-contacts",
        json!({"name": "Paula Pound", "number": "+44 20 7946 0300", "field3": "FX"}),
    )
    .await;
    // Export, as the download link would fetch it with the session.
    let session = b.cookie("turret_session").await;
    let cert = std::fs::read(dir.path().join("tls/cert.pem")).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&cert).unwrap())
        .build()
        .unwrap();
    let csv = http
        .get(format!(
            "{}/data/export/global-contacts?format=csv",
            server.url
        ))
        .header("cookie", format!("turret_session={session}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        csv, "name,number,field3,field4\nPaula Pound,'+44 20 7946 0300,FX,\n",
        "a leading + leaves escaped against spreadsheet formulas"
    );

    // "Edited in a spreadsheet": one changed field, one new row, one bad row.
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        format!("{csv}Quinn Quay,+44 20 7946 0301,,\nNo Number,,,\n").replace(",FX,", ",Rates,"),
    )
    .unwrap();
    b.goto("/data").await;
    b.fill("#import-file", bad.to_str().unwrap()).await;
    b.choose("#import-on_duplicate", "Update those contacts")
        .await;
    b.submit("form[action='/data/import'] button[type=submit]")
        .await;
    let report = b.text(".error-box").await;
    assert!(
        report.contains("nothing was imported")
            && report.contains("4")
            && report.contains("number"),
        "{report}"
    );
    assert_eq!(
        api.get("/api/v1/global-contacts").await.1["items"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "nothing changed"
    );
    b.screenshot("import-errors").await;

    let good = dir.path().join("good.csv");
    std::fs::write(
        &good,
        format!("{csv}Quinn Quay,+44 20 7946 0301,,\n").replace(",FX,", ",Rates,"),
    )
    .unwrap();
    b.fill("#import-file", good.to_str().unwrap()).await;
    b.choose("#import-on_duplicate", "Update those contacts")
        .await;
    b.submit("form[action='/data/import'] button[type=submit]")
        .await;
    assert!(b.text(".flash").await.contains("1 new, 1 updated"));
    let (_, list) = api.get("/api/v1/global-contacts").await;
    let names: Vec<(&str, &str)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["field3"].as_str().unwrap()))
        .collect();
    assert_eq!(names, [("Paula Pound", "Rates"), ("Quinn Quay", "")]);
    // The portal's search finds a contact by any word of the name.
    b.goto("/global-contacts").await;
    b.fill("#search-q", "quay").await;
    b.submit("form[action='/global-contacts/search'] button[type=submit]")
        .await;
    let table = b.text("table").await;
    assert!(
        table.contains("Quinn Quay") && !table.contains("Paula Pound"),
        "{table}"
    );

    // A profile's DKM keys, chosen by kind and profile.
    let (_, p) = api
        .post(
            "/api/v1/profiles",
            json!({"name": "Rita Rates", "password": "rita-pw"}),
        )
        .await;
    let keys = dir.path().join("keys.csv");
    std::fs::write(&keys, "position,name,number\n1,Desk,2001\n").unwrap();
    b.goto("/data").await;
    b.choose("#import-kind", "DKM speed dial keys of a profile")
        .await;
    b.choose("#import-profile", "Rita Rates").await;
    b.fill("#import-file", keys.to_str().unwrap()).await;
    b.submit("form[action='/data/import'] button[type=submit]")
        .await;
    assert!(b.text(".flash").await.contains("1 new"));
    let (_, k) = api
        .get(&format!("/api/v1/profiles/{}/speed-dials", p["id"]))
        .await;
    assert_eq!(
        (k[0]["kind"].as_str(), k[0]["name"].as_str()),
        (Some("DKM"), Some("Desk"))
    );
    let dkm = http
        .get(format!(
            "{}/data/export/dkm-keys?profile_id={}&format=csv",
            server.url, p["id"]
        ))
        .header("cookie", format!("turret_session={session}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(dkm, "position,name,number\n1,Desk,2001\n");
}
