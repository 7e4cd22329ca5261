//! The data lifecycle against the real binary: backup, restore, erasure
//! that survives restore, and erasure that leaves no trace.

mod common;

use common::*;
use openturret_server::client::conn::Connection;
use reqwest::StatusCode;
use serde_json::json;

const PASSPHRASE: &str = "backup passphrase 0001";

/// Files under `dir` (recursively) that contain any of `needles`.
/// Takes a backup through the API; returns its file name.
async fn take_backup(api: &Api) -> String {
    let (code, b) = api
        .post("/api/v1/backups", json!({"passphrase": PASSPHRASE}))
        .await;
    assert_eq!(code, StatusCode::CREATED, "{b}");
    b["file"].as_str().unwrap().to_string()
}

fn holders(dir: &std::path::Path, needles: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let bytes = std::fs::read(&p).unwrap_or_default();
            for n in needles {
                if bytes.windows(n.len()).any(|w| w == n.as_bytes()) {
                    found.push(format!("{} holds {n}", p.display()));
                }
            }
        }
    }
    found
}

#[tokio::test]
async fn a_restore_gives_back_the_backed_up_data_and_erased_people_stay_erased() {
    let dir = tempfile::tempdir().unwrap();
    let (server, api) = fresh(dir.path()).await;
    let (_, erin) = api
        .post(
            "/api/v1/profiles",
            json!({"name": "Erin Erased", "password": "erin-secret-77"}),
        )
        .await;
    let erin = erin["id"].as_i64().unwrap();
    api.post(
        &format!("/api/v1/profiles/{erin}/contacts"),
        json!({"name": "Zelda Zonk", "number": "+44 20 7555 0101"}),
    )
    .await;
    let (_, karl) = api
        .post(
            "/api/v1/profiles",
            json!({"name": "Kept Karl", "password": "karl-secret-88"}),
        )
        .await;
    let (_, line) = api
        .post(
            "/api/v1/lines",
            json!({"name": "L1", "uri": "sip:1@pbx", "password": "line-secret-99"}),
        )
        .await;
    api.post(
        "/api/v1/global-contacts",
        json!({"name": "Gloria Global", "number": "+1 212 555 0142"}),
    )
    .await;
    // Erin works at her turret (an audit entry with her address) and a
    // call of hers is recorded (a CDR naming her).
    let cert = std::fs::read(dir.path().join("tls/cert.pem")).unwrap();
    let mut c = Connection::connect(&server.url, &cert).await.unwrap();
    c.request(json!({"op": "login", "profile_id": erin, "password": "erin-secret-77"}))
        .await
        .unwrap();
    drop(c);
    let (st, v) = api
        .post(
            "/api/v1/consents",
            json!({"profile_id": erin, "purpose": "call memory", "channel": "paper"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let db = dir.path().join("turret.db");
    sqlite3(
        &db,
        &format!(
            "INSERT INTO cdrs (profile_name, profile_id, calling_number, started_at, recorded_at)
             VALUES ('Erin Erased', {erin}, '+44 20 7946 0999', 1, {})",
            openturret_domain::Timestamp::now().0
        ),
    );
    let traces = || {
        sqlite3(
            &db,
            &format!(
                "SELECT (SELECT COUNT(*) FROM cdrs WHERE profile_name IS NOT NULL OR profile_id IS NOT NULL)
                  || '/' || (SELECT COUNT(*) FROM cdrs)
                  || '/' || (SELECT COUNT(*) FROM audit_log
                             WHERE actor = 'profile:{erin}' OR (event_type = 'client.login' AND client_ip <> ''))
                  || '/' || (SELECT COUNT(*) FROM consents)"
            ),
        )
        .trim()
        .to_string()
    };
    assert_eq!(
        traces(),
        "1/1/1/1",
        "the CDR names Erin; her login has her address; her consent"
    );

    // An online backup while the server runs.
    let (code, out, err) = turret(
        dir.path(),
        &["backup", "create", "--passphrase-stdin"],
        &format!("{PASSPHRASE}\n"),
    );
    assert_eq!(code, 0, "{out}{err}");
    let file = out
        .split_whitespace()
        .find(|w| w.ends_with(".otb"))
        .expect("the backup file is named")
        .to_string();
    let leaks = holders(
        &dir.path().join("backups"),
        &[
            "Erin Erased",
            "Zelda",
            "7555 0101",
            "Gloria",
            "erin-secret",
            "line-secret",
            ADMIN_PASSWORD,
        ],
    );
    assert!(leaks.is_empty(), "{leaks:?}");
    let (code, out, _) = turret(dir.path(), &["backup", "list"], "");
    assert_eq!(code, 0);
    assert!(out.contains(".otb"));

    // After the backup: a new profile, and Erin is erased.
    api.post(
        "/api/v1/profiles",
        json!({"name": "After Backup", "password": "after-pw-longer"}),
    )
    .await;
    assert_eq!(
        api.delete(&format!("/api/v1/profiles/{erin}")).await.0,
        StatusCode::OK
    );

    // A restore refuses to run under a live server.
    let (code, _, err) = turret(
        dir.path(),
        &["backup", "restore", &file, "--passphrase-stdin"],
        &format!("{PASSPHRASE}\n"),
    );
    assert_eq!(code, 2);
    assert!(err.contains("stop the System Manager"), "{err}");
    server.stop();

    let (code, _, err) = turret(
        dir.path(),
        &["backup", "verify", &file, "--passphrase-stdin"],
        "not the passphrase\n",
    );
    assert_eq!(code, 2);
    assert!(err.contains("wrong passphrase"), "{err}");
    let (code, out, err) = turret(
        dir.path(),
        &["backup", "verify", &file, "--passphrase-stdin"],
        &format!("{PASSPHRASE}\n"),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("integrity ok"), "{out}");

    let (code, out, err) = turret(
        dir.path(),
        &["backup", "restore", &file, "--passphrase-stdin"],
        &format!("{PASSPHRASE}\n"),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("1 profile(s) erased since then were erased again"),
        "{out}"
    );

    // The whole erasure came back with the restore: the CDR stays, naming
    // no one; the audit entry stays, with no address; her consent is gone;
    // and no file of the
    // data directory holds her name or her contacts.
    assert_eq!(traces(), "0/1/0/0");
    let leaks = holders(dir.path(), &["Erin Erased", "Zelda", "7555 0101"]);
    assert!(leaks.is_empty(), "{leaks:?}");

    let server = Server::start(dir.path(), &[]).await;
    let mut api = server.client();
    api.login("admin", ADMIN_PASSWORD).await;
    let (_, profiles) = api.get("/api/v1/profiles").await;
    let names: Vec<&str> = profiles["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["Kept Karl"],
        "the backup's data, minus the erased person"
    );
    assert_eq!(
        api.get(&format!("/api/v1/profiles/{}", karl["id"])).await.0,
        StatusCode::OK
    );
    assert_eq!(
        api.get(&format!("/api/v1/lines/{}", line["id"])).await.1["has_password"],
        true
    );
    let (_, g) = api.get("/api/v1/global-contacts?name=glo").await;
    assert_eq!(g["items"][0]["name"], "Gloria Global");
    let (_, audit) = api.get("/api/v1/audit?event_type=backup.restored").await;
    assert_eq!(audit["items"].as_array().unwrap().len(), 1);
    let (_, v) = api.get("/api/v1/audit/verify").await;
    assert_eq!(v["ok"], true, "{v}");
    // Karl can still log in with his password from the backup.
    let mut c = Connection::connect(&server.url, &cert).await.unwrap();
    c.request(json!({"op": "login", "profile_id": karl["id"], "password": "karl-secret-88"}))
        .await
        .unwrap();
    server.stop();
    let (code, out, _) = turret(dir.path(), &["audit", "verify"], "");
    assert_eq!(code, 0, "{out}");
}

#[tokio::test]
async fn an_erased_profile_leaves_no_trace_in_the_database_its_wal_or_the_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    let (server, api) = fresh(dir.path()).await;
    let (_, p) = api
        .post("/api/v1/profiles", json!({"name": "Xavier Xylophone", "password": "xavier-pw-longer", "collect_call_memory": true}))
        .await;
    let pid = p["id"].as_i64().unwrap();
    api.post(
        &format!("/api/v1/profiles/{pid}/contacts"),
        json!({"name": "Yolanda Yew", "number": "+44 20 7555 0199"}),
    )
    .await;
    api.post(&format!("/api/v1/profiles/{pid}/speed-dials"), json!({"kind": "DKM", "position": 1, "name": "Quentin Quill", "number": "+44 20 7555 0177"})).await;
    api.post(
        "/api/v1/consents",
        json!({"profile_id": pid, "purpose": "call memory for Xavier", "channel": "paper"}),
    )
    .await;
    // The trader logs in from a client: the audit log records the address.
    let cert = std::fs::read(dir.path().join("tls/cert.pem")).unwrap();
    let mut c = Connection::connect(&server.url, &cert).await.unwrap();
    c.request(json!({"op": "login", "profile_id": pid, "password": "xavier-pw-longer"}))
        .await
        .unwrap();
    c.close().await;
    let (_, before) = api.get(&format!("/api/v1/audit?actor=profile:{pid}")).await;
    assert_eq!(before["items"][0]["client_ip"], "127.0.0.1");

    assert!(
        !holders(dir.path(), &["Xylophone", "7555 0199"]).is_empty(),
        "the search finds the data before the erasure"
    );
    let (s, v) = api.delete(&format!("/api/v1/profiles/{pid}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let needles = [
        "Xavier",
        "Xylophone",
        "Yolanda",
        "7555 0199",
        "75550199",
        "Quentin",
        "7555 0177",
        "call memory for Xavier",
    ];
    let leaks = holders(dir.path(), &needles);
    assert!(leaks.is_empty(), "while running: {leaks:?}");
    api.post(
        "/api/v1/global-contacts",
        json!({"name": "Walter Whitlock", "number": "+44 20 7946 0321"}),
    )
    .await;
    // A backup taken now is a page image of the database: it holds none
    // of it either, once decrypted.
    let unpacked = tempfile::tempdir().unwrap();
    let file = dir.path().join("backups").join(take_backup(&api).await);
    let (_, files) = openturret_store::backup::extract(
        &file,
        &openturret_store::Secret::new(PASSPHRASE),
        unpacked.path(),
    )
    .unwrap();
    assert!(
        files.iter().any(|(name, _)| name == "turret.db"),
        "{files:?}"
    );
    let leaks = holders(unpacked.path(), &needles);
    assert!(leaks.is_empty(), "in the backup: {leaks:?}");
    assert!(
        !holders(unpacked.path(), &["Walter Whitlock"]).is_empty(),
        "the search finds what the backup does hold"
    );
    let (_, after) = api.get(&format!("/api/v1/audit?object_id={pid}")).await;
    for e in after["items"].as_array().unwrap() {
        assert!(
            e["actor"] != format!("profile:{pid}") || e["client_ip"] == "",
            "{e}"
        );
    }
    let (_, v) = api.get("/api/v1/audit/verify").await;
    assert_eq!(v["ok"], true, "the chain verifies after the erasure: {v}");
    server.stop();
    let leaks = holders(dir.path(), &needles);
    assert!(leaks.is_empty(), "after stop: {leaks:?}");
    let ledger = std::fs::read_to_string(dir.path().join("erasure-ledger")).unwrap();
    assert!(ledger.contains(&format!("\tprofile\t{pid}\t")), "{ledger}");
}

fn contacts_csv(n: usize, bad: Option<usize>) -> String {
    let mut s = String::from("name,number,field3,field4\n");
    for i in 0..n {
        let number = if Some(i) == bad {
            "call me maybe".to_string()
        } else {
            format!("+44 20 7{i:07}")
        };
        // Names with commas, quotes and accents exercise the CSV quoting.
        s.push_str(&format!(
            "\"Zoë \"\"Z\"\" {i}, Ltd\",{number},desk {},\n",
            i % 9
        ));
    }
    s
}

#[tokio::test]
async fn an_import_with_one_bad_row_among_10000_changes_nothing_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let (server, api) = fresh(dir.path()).await;
    let file = dir.path().join("bad.csv");
    std::fs::write(&file, contacts_csv(10_000, Some(4_999))).unwrap();
    let (code, _, err) = turret(
        dir.path(),
        &["import", "global-contacts", file.to_str().unwrap()],
        "",
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("line 5001, column number"), "{err}");
    assert!(err.contains("1 bad row"), "{err}");
    let (_, list) = api.get("/api/v1/global-contacts").await;
    assert!(
        list["items"].as_array().unwrap().is_empty(),
        "nothing changed"
    );

    // The same through the API.
    let res = api
        .client
        .post(format!("{}/api/v1/import/global-contacts", api.base))
        .bearer_auth(api.token.as_ref().unwrap())
        .header("content-type", "text/csv")
        .body(std::fs::read(&file).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(v["rows"][0]["line"], 5001);
    assert_eq!(v["rows"][0]["column"], "number");
    assert!(
        api.get("/api/v1/global-contacts").await.1["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    server.stop();
}

#[tokio::test]
async fn a_100000_row_import_and_export_round_trip_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (server, api) = fresh(dir.path()).await;
    let file = dir.path().join("in.csv");
    let text = contacts_csv(100_000, None);
    std::fs::write(&file, &text).unwrap();
    let (code, out, err) = turret(
        dir.path(),
        &["import", "global-contacts", file.to_str().unwrap()],
        "",
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("100000 new"), "{out}");
    let exported = dir.path().join("out.csv");
    let (code, _, err) = turret(
        dir.path(),
        &[
            "export",
            "global-contacts",
            "--output",
            exported.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(code, 0, "{err}");
    let sorted = |t: &str| {
        let mut v: Vec<String> = t.lines().map(str::to_string).collect();
        v.sort();
        v
    };
    // Numbers starting with + leave with a ' before them (a spreadsheet
    // would take them for formulas); otherwise the export is the import,
    // row for row.
    let out_text = std::fs::read_to_string(&exported).unwrap();
    assert_eq!(out_text.matches(",'+44").count(), 100_000);
    let (a, b) = (sorted(&out_text.replace(",'+44", ",+44")), sorted(&text));
    let first_diff = a.iter().zip(&b).position(|(x, y)| x != y);
    assert!(
        a.len() == b.len() && first_diff.is_none(),
        "the export is the import, row for row: {} vs {} rows, first difference {:?}",
        a.len(),
        b.len(),
        first_diff.map(|i| (&a[i], &b[i]))
    );

    // The API exports the same file.
    let res = api
        .client
        .get(format!("{}/api/v1/export/global-contacts", api.base))
        .bearer_auth(api.token.as_ref().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "text/csv; charset=utf-8");
    assert!(
        sorted(&res.text().await.unwrap()) == sorted(&out_text),
        "the API's export differs from the CLI's"
    );

    // Importing it again: duplicates are refused, or update, as asked.
    let small = dir.path().join("small.csv");
    std::fs::write(&small, "name,number,field3\n\"Zoë \"\"Z\"\" 7, Ltd\",+44 20 7000 0007,moved\nNew Person,+44 20 9999 0000,\n").unwrap();
    let (code, _, err) = turret(
        dir.path(),
        &["import", "global-contacts", small.to_str().unwrap()],
        "",
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("line 2, column number") && err.contains("exists"),
        "{err}"
    );
    let (code, out, err) = turret(
        dir.path(),
        &[
            "import",
            "global-contacts",
            small.to_str().unwrap(),
            "--on-duplicate",
            "update",
        ],
        "",
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 new, 1 updated"), "{out}");
    let (_, g) = api
        .get("/api/v1/global-contacts?number=%2B44%2020%207000%200007")
        .await;
    assert_eq!(g["items"][0]["field3"], "moved");
    server.stop();
}

#[tokio::test]
async fn local_contacts_dkm_keys_and_lines_round_trip_and_line_passwords_never_leave() {
    let dir = tempfile::tempdir().unwrap();
    let (server, api) = fresh(dir.path()).await;
    let (_, p) = api
        .post(
            "/api/v1/profiles",
            json!({"name": "Ivy Import", "password": "ivy-pw-longer"}),
        )
        .await;
    let pid = p["id"].as_i64().unwrap();
    let d = dir.path();
    let path = |n: &str| d.join(n).to_str().unwrap().to_string();

    std::fs::write(
        d.join("lc.csv"),
        "name,number,field3\nAl,+44 20 1,desk\nBea,+44 20 2,\n",
    )
    .unwrap();
    let (code, out, err) = turret(
        d,
        &[
            "import",
            "local-contacts",
            &path("lc.csv"),
            "--profile",
            "Ivy Import",
        ],
        "",
    );
    assert_eq!(code, 0, "{out}{err}");
    std::fs::write(
        d.join("dkm.csv"),
        "position,name,number\n1,Desk A,2001\n2,Desk B,2002\n1,Again,2003\n",
    )
    .unwrap();
    let (code, _, err) = turret(
        d,
        &[
            "import",
            "dkm-keys",
            &path("dkm.csv"),
            "--profile",
            "Ivy Import",
        ],
        "",
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("line 4, column position: repeats line 2"),
        "{err}"
    );
    std::fs::write(
        d.join("dkm.csv"),
        "position,name,number\n1,Desk A,2001\n2,Desk B,2002\n",
    )
    .unwrap();
    let (code, _, err) = turret(
        d,
        &[
            "import",
            "dkm-keys",
            &path("dkm.csv"),
            "--profile",
            "Ivy Import",
        ],
        "",
    );
    assert_eq!(code, 0, "{err}");
    std::fs::write(
        d.join("lines.csv"),
        "name,uri,username,password,display_name,priority,recorded\nL1,sip:1001@pbx,1001,imported-secret-42,FX,yes,yes\n",
    )
    .unwrap();
    let (code, _, err) = turret(d, &["import", "lines", &path("lines.csv")], "");
    assert_eq!(code, 0, "{err}");

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
            .1[1]["name"],
        "Desk B"
    );
    let (_, lines) = api.get("/api/v1/lines").await;
    assert_eq!(
        (
            lines[0]["name"].as_str(),
            lines[0]["has_password"].as_bool()
        ),
        (Some("L1"), Some(true))
    );
    assert_eq!(lines[0]["priority"], true, "the priority column was read");
    assert_eq!(lines[0]["recorded"], true, "the recorded column was read");

    // Exports: the same rows back; never a line password.
    let (code, _, _) = turret(
        d,
        &[
            "export",
            "local-contacts",
            "--profile",
            "Ivy Import",
            "--output",
            &path("lc-out.csv"),
        ],
        "",
    );
    assert_eq!(code, 0);
    assert_eq!(
        std::fs::read_to_string(d.join("lc-out.csv")).unwrap(),
        "name,number,field3,field4\nAl,'+44 20 1,desk,\nBea,'+44 20 2,,\n",
        "a leading + is escaped against spreadsheet formulas"
    );
    let res = api
        .client
        .get(format!(
            "{}/api/v1/export/dkm-keys?profile_id={pid}",
            api.base
        ))
        .bearer_auth(api.token.as_ref().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.text().await.unwrap(),
        "position,name,number\n1,Desk A,2001\n2,Desk B,2002\n"
    );
    let res = api
        .client
        .get(format!("{}/api/v1/export/lines?format=json", api.base))
        .bearer_auth(api.token.as_ref().unwrap())
        .send()
        .await
        .unwrap();
    let text = res.text().await.unwrap();
    assert!(
        text.contains("\"uri\":\"sip:1001@pbx\"")
            && text.contains("\"priority\":\"true\"")
            && text.contains("\"recorded\":\"true\"")
            && !text.contains("imported-secret")
            && !text.contains("password"),
        "{text}"
    );
    // The API names what is missing.
    let (s, v) = api.get("/api/v1/export/local-contacts").await;
    assert_eq!(
        (s, v["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("profile_id"))
    );
    assert_eq!(
        api.get("/api/v1/export/nothing").await.0,
        StatusCode::NOT_FOUND
    );
    server.stop();
}

#[tokio::test]
async fn a_restore_from_the_api_swaps_the_data_in_by_restarting_and_erased_people_stay_erased() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, api) = fresh(dir.path()).await;
    let (_, erin) = api
        .post(
            "/api/v1/profiles",
            json!({"name": "Erin Erased", "password": "erin-secret-77"}),
        )
        .await;
    let erin = erin["id"].as_i64().unwrap();
    api.post(
        "/api/v1/global-contacts",
        json!({"name": "Gloria Global", "number": "+1 212 555 0142"}),
    )
    .await;
    let file = take_backup(&api).await;

    // After the backup: a new profile, and Erin is erased.
    api.post(
        "/api/v1/profiles",
        json!({"name": "Late Larry", "password": "larry-secret-1"}),
    )
    .await;
    let (code, _) = api.delete(&format!("/api/v1/profiles/{erin}")).await;
    assert!(code.is_success());

    // A wrong passphrase changes nothing, and the server keeps serving.
    let (code, v) = api
        .post(
            "/api/v1/backups/restore",
            json!({"file": file, "passphrase": "not the passphrase"}),
        )
        .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["field"], "passphrase");
    let (_, list) = api.get("/api/v1/profiles").await;
    assert!(list.to_string().contains("Late Larry"));

    // The right one: checked, staged, and the server restarts itself.
    let (code, v) = api
        .post(
            "/api/v1/backups/restore",
            json!({"file": file, "passphrase": PASSPHRASE}),
        )
        .await;
    assert_eq!(code, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["restarting"], true);
    assert_eq!(v["erased_again"], 1);
    server.wait_restart().await;
    let mut api = server.client();
    api.login("admin", ADMIN_PASSWORD).await;
    let (_, list) = api.get("/api/v1/profiles").await;
    let names = list.to_string();
    assert!(
        !names.contains("Late Larry"),
        "the data is the backup's: {names}"
    );
    assert!(
        !names.contains("Erin Erased"),
        "erased after the backup, erased again: {names}"
    );
    let (_, globals) = api.get("/api/v1/global-contacts").await;
    assert!(globals.to_string().contains("Gloria Global"));
    let (_, audit) = api.get("/api/v1/audit?event_type=backup.restored").await;
    assert_eq!(audit["items"].as_array().unwrap().len(), 1, "{audit}");
    assert_eq!(audit["items"][0]["actor"], "admin");
    let (code, out, err) = turret(dir.path(), &["audit", "verify"], "");
    assert_eq!(code, 0, "{out}{err}");
    server.stop();
}

#[tokio::test]
async fn backups_sealed_to_the_backup_key_need_no_passphrase_to_make_and_only_it_to_read() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, api) = fresh(dir.path()).await;
    const KEY_PASS: &str = "installation key passphrase";
    // No key yet: a backup without a passphrase is refused, naming why.
    let (code, _) = api.get("/api/v1/backups/key").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, v) = api.post("/api/v1/backups", json!({})).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v.to_string().contains("no backup key"), "{v}");
    let (code, v) = api
        .put("/api/v1/backups/key", json!({"passphrase": "short"}))
        .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{v}");

    let (code, key) = api
        .put("/api/v1/backups/key", json!({"passphrase": KEY_PASS}))
        .await;
    assert_eq!(code, StatusCode::OK, "{key}");
    let fingerprint = key["fingerprint"].as_str().unwrap().to_string();
    assert_eq!(api.get("/api/v1/backups/key").await.1, key);
    // The key file holds the public key and the wrapped private key only.
    let file = dir.path().join("backup-key.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let stored: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let mut fields: Vec<_> = stored.as_object().unwrap().keys().cloned().collect();
    fields.sort();
    assert_eq!(fields, ["created_at", "public", "wrapped"]);

    api.post(
        "/api/v1/global-contacts",
        json!({"name": "Keyed Kim", "number": "+44 20 7946 0555"}),
    )
    .await;
    // From the API and the CLI, no passphrase: sealed to the key.
    let (code, b) = api.post("/api/v1/backups", json!({})).await;
    assert_eq!(code, StatusCode::CREATED, "{b}");
    assert_eq!(b["backup_key"], fingerprint.as_str());
    let (code, out, err) = turret(dir.path(), &["backup", "create", "--with-key"], "");
    assert_eq!(code, 0, "{out}{err}");
    let by_cli = out
        .split_whitespace()
        .find(|w| w.ends_with(".otb"))
        .expect("the backup file is named")
        .to_string();
    assert!(holders(&dir.path().join("backups"), &["Keyed Kim", "7946 0555"]).is_empty());
    // Reading one needs the key's passphrase, and nothing else.
    let (code, v) = api
        .post(
            "/api/v1/backups/verify",
            json!({"file": b["file"], "passphrase": KEY_PASS}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{v}");
    let (code, v) = api
        .post(
            "/api/v1/backups/verify",
            json!({"file": b["file"], "passphrase": "not the key passphrase"}),
        )
        .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v.to_string().contains("passphrase"), "{v}");
    let (code, out, err) = turret(
        dir.path(),
        &["backup", "verify", &by_cli, "--passphrase-stdin"],
        &format!("{KEY_PASS}\n"),
    );
    assert_eq!(code, 0, "{out}{err}");
    // A backup under a passphrase of its own is still possible.
    let (code, b) = api
        .post("/api/v1/backups", json!({"passphrase": PASSPHRASE}))
        .await;
    assert_eq!(code, StatusCode::CREATED, "{b}");
    assert!(b["backup_key"].is_null(), "{b}");
    let (_, audit) = api.get("/api/v1/audit?event_type=backup.key_set").await;
    assert_eq!(
        audit["items"][0]["object_id"],
        fingerprint.as_str(),
        "{audit}"
    );
}

/// Issue 14, point 11: cells a spreadsheet would run as formulas leave in
/// every CSV with a `'` before them, and an exported file imports back
/// exactly.
#[tokio::test]
async fn csv_exports_defuse_formulas_and_still_round_trip_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (server, api) = fresh(dir.path()).await;
    let d = dir.path();
    let path = |n: &str| d.join(n).to_str().unwrap().to_string();
    let mut pids = Vec::new();
    for name in ["Planter", "Receiver"] {
        let (_, p) = api
            .post(
                "/api/v1/profiles",
                json!({"name": name, "password": "pw-123456-longer"}),
            )
            .await;
        pids.push(p["id"].as_i64().unwrap());
    }
    // A trader plants formulas in local contacts (as the turret allows).
    let planted = [
        (
            "=HYPERLINK(\"http://evil.example\",\"Click\")",
            "020 7946 0001",
            "@SUM(A1:A9)",
            "-2+3",
        ),
        ("'=already quoted", "+44 20 7946 0002", "@@handle", "''=two"),
        ("Plain Name", "020 7946 0003", "+cmd|' /C calc'!A0", "=1+1"),
    ];
    for (name, number, f3, f4) in planted {
        let (s, v) = api
            .post(
                &format!("/api/v1/profiles/{}/contacts", pids[0]),
                json!({"name": name, "number": number, "field3": f3, "field4": f4}),
            )
            .await;
        assert!(s.is_success(), "{v}");
    }
    let (code, out, err) = turret(
        d,
        &[
            "export",
            "local-contacts",
            "--profile",
            "Planter",
            "--output",
            &path("planted.csv"),
        ],
        "",
    );
    assert_eq!(code, 0, "{out}{err}");
    let csv = std::fs::read_to_string(d.join("planted.csv")).unwrap();
    // No cell of the file starts a formula.
    let mut rd = csv::ReaderBuilder::new().from_reader(csv.as_bytes());
    for rec in rd.records() {
        for cell in rec.unwrap().iter() {
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "a formula cell left the system: {cell:?} in {csv}"
            );
        }
    }
    // Imported into another profile, the values are exactly the planted ones.
    let (code, out, err) = turret(
        d,
        &[
            "import",
            "local-contacts",
            &path("planted.csv"),
            "--profile",
            "Receiver",
        ],
        "",
    );
    assert_eq!(code, 0, "{out}{err}");
    let (_, back) = api
        .get(&format!("/api/v1/profiles/{}/contacts", pids[1]))
        .await;
    let mut got: Vec<(String, String, String, String)> = back
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let f = |k: &str| c[k].as_str().unwrap().to_string();
            (f("name"), f("number"), f("field3"), f("field4"))
        })
        .collect();
    let mut want: Vec<(String, String, String, String)> = planted
        .iter()
        .map(|(a, b, c, e)| (a.to_string(), b.to_string(), c.to_string(), e.to_string()))
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    server.stop();
}
