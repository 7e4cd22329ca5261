//! One behaviour suite for the storage traits (STYLE habit 7). It runs on
//! the SQLite store, and the suites of the traits the PostgreSQL store
//! implements so far (audit, settings, error log) run on both: the
//! PostgreSQL ones on a fresh database of the cluster that
//! `TURRET_TEST_POSTGRES_URL` names (scripts/test.sh starts a throwaway
//! one); without it they fail, saying so.

#[path = "support/relay.rs"]
#[allow(dead_code)]
mod relay;
use relay::Relay;

use openturret_domain::audit::{AuditLevel, AuditPii, AuditRecord};
use openturret_domain::model::*;
use openturret_domain::number::NumberPlan;
use openturret_domain::secret::{PasswordHash, Secret};
use openturret_domain::*;
use openturret_store::keys::Keys;
use openturret_store::sqlite::SqliteStore;
use openturret_store::*;

async fn sqlite() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = reopen(&dir).await;
    (dir, store)
}

/// Opens (again) the store of `dir`.
async fn reopen(dir: &tempfile::TempDir) -> SqliteStore {
    let keys = Keys::load_or_create(&dir.path().join("secret.key")).unwrap();
    let plan = NumberPlan {
        country_code: Some("44".into()),
    };
    let ledger = openturret_store::ledger::Ledger::open(
        &dir.path().join("ledger"),
        &dir.path().join("ledger.key"),
    )
    .unwrap();
    SqliteStore::open(&dir.path().join("t.db"), keys, plan, ledger)
        .await
        .unwrap()
}

/// A PostgreSQL store on a database of its own (created for the test) in
/// the cluster `TURRET_TEST_POSTGRES_URL` names, and its data directory.
async fn postgres() -> (
    tempfile::TempDir,
    openturret_store::postgres::PgStore,
    String,
) {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_postgres_database().await;
    let store = pg_node(&dir, &url).await;
    (dir, store, url)
}

/// Creates an empty database in the test cluster; returns its URL.
async fn fresh_postgres_database() -> String {
    let admin = std::env::var("TURRET_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "TURRET_TEST_POSTGRES_URL is not set: scripts/test.sh starts a throwaway PostgreSQL \
             cluster and sets it (postgres://postgres@127.0.0.1:<port>/postgres)"
        )
    });
    let mut b = [0u8; 8];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    let name = format!(
        "t_{}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    );
    let pool = sqlx::PgPool::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("the test cluster at TURRET_TEST_POSTGRES_URL: {e}"));
    // The name is ours, made of hex digits.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let (base, _) = admin.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

/// A node on the database at `url` whose data directory is `dir` (the key
/// file is the installation's, shared by every node).
async fn pg_node(dir: &tempfile::TempDir, url: &str) -> openturret_store::postgres::PgStore {
    let keys = Keys::load_or_create(&dir.path().join("secret.key")).unwrap();
    let plan = NumberPlan {
        country_code: Some("44".into()),
    };
    let ledger = openturret_store::ledger::Ledger::open(
        &dir.path().join("ledger"),
        &dir.path().join("ledger.key"),
    )
    .unwrap();
    openturret_store::postgres::PgStore::connect(url, dir.path(), keys, plan, ledger)
        .await
        .unwrap()
}

fn audit(event: &str) -> AuditRecord {
    AuditRecord {
        at: Timestamp::now(),
        level: AuditLevel::Info,
        event_type: event.into(),
        object_type: "test".into(),
        object_id: None,
        changes: vec![],
        success: true,
        server_host: "test-host".into(),
        pii: AuditPii {
            actor: "tester".into(),
            client_ip: "127.0.0.1".into(),
            client_host: String::new(),
        },
    }
}

fn hash(s: &str) -> PasswordHash {
    PasswordHash::from_phc(format!("$test${s}"))
}

async fn profile(s: &impl Store, name: &str) -> Profile {
    s.create_profile(
        NewProfile {
            name: name.into(),
            password: hash("p"),
            contacts_password: None,
            call_memory_password: Some(hash("cm")),
            flags: ProfileFlags {
                collect_call_memory: true,
                ..Default::default()
            },
            call_memory_keys: CallMemoryKeys::default(),
        },
        audit("profile.created"),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn call_memory_is_a_fifo_of_100_per_profile_rule_6() {
    let (_d, s) = sqlite().await;
    call_memory_is_a_fifo_of_100_per_profile_rule_6_suite(s).await;
}

#[tokio::test]
async fn call_memory_is_a_fifo_of_100_per_profile_rule_6_on_postgres() {
    let (_d, s, _) = postgres().await;
    call_memory_is_a_fifo_of_100_per_profile_rule_6_suite(s).await;
}

async fn call_memory_is_a_fifo_of_100_per_profile_rule_6_suite(s: impl Store) {
    let a = profile(&s, "Ann").await;
    let b = profile(&s, "Bob").await;
    s.push_call_memory(b.id, Timestamp(1), vec![9])
        .await
        .unwrap();
    for i in 0..101u8 {
        s.push_call_memory(a.id, Timestamp(i as i64), vec![i])
            .await
            .unwrap();
    }
    let entries = s.list_call_memory(a.id).await.unwrap();
    assert_eq!(entries.len(), CALL_MEMORY_CAPACITY);
    assert_eq!(entries[0].sealed, vec![1], "the oldest entry went first");
    assert_eq!(entries[99].sealed, vec![100]);
    assert_eq!(
        s.list_call_memory(b.id).await.unwrap().len(),
        1,
        "other profile untouched"
    );
}

#[tokio::test]
async fn deleting_a_profile_erases_everything_it_owns_rule_8() {
    let (_d, s) = sqlite().await;
    deleting_a_profile_erases_everything_it_owns_rule_8_suite(s).await;
}

#[tokio::test]
async fn deleting_a_profile_erases_everything_it_owns_rule_8_on_postgres() {
    let (_d, s, _) = postgres().await;
    deleting_a_profile_erases_everything_it_owns_rule_8_suite(s).await;
}

async fn deleting_a_profile_erases_everything_it_owns_rule_8_suite(s: impl Store) {
    let p = profile(&s, "Ann").await;
    let f = ContactFields::new("Bob", "+44 20 1", "", "").unwrap();
    s.create_local_contact(p.id, f, audit("c")).await.unwrap();
    let k = SpeedDialFields::new("DKM", 1, "Desk", "2001").unwrap();
    s.create_speed_dial(p.id, k, audit("k")).await.unwrap();
    s.push_call_memory(p.id, Timestamp(1), vec![1])
        .await
        .unwrap();
    let l = LineFields::new("L1", "sip:1@pbx", "1", "", "", "").unwrap();
    let line = s.create_line(l, None, audit("l")).await.unwrap();
    let a = LineAssignment {
        profile_id: p.id,
        line_id: line.id,
        position: 1,
    };
    s.assign_line(a, audit("a")).await.unwrap();
    let consent = NewConsent {
        profile_id: p.id,
        purpose: "recording".into(),
        channel: ConsentChannel::Paper,
        given_at: Timestamp(5),
        recorded_by: "admin".into(),
    };
    s.create_consent(consent, audit("consent")).await.unwrap();
    let cdr = |pid: Option<ProfileId>, name: &str| Cdr {
        line_id: Some(line.id),
        profile_id: pid,
        profile_name: Some(name.into()),
        called_number: Some("+44 20 1".into()),
        started_at: Some(Timestamp(10)),
        ..Default::default()
    };
    // One record by id, one older one by name only, one of someone else.
    s.insert_cdrs(vec![
        cdr(Some(p.id), "Ann"),
        cdr(None, "Ann"),
        cdr(None, "Bob"),
    ])
    .await
    .unwrap();
    // The record of forwarding to voice recorders: one line of the call.
    s.log_recordings(vec![RecordingLogEntry {
        at: Timestamp(10),
        call_id: 7,
        line_id: Some(line.id),
        profile_id: Some(p.id),
        recorder_id: RecorderId(1),
        outcome: "recording".into(),
        reason: None,
    }])
    .await
    .unwrap();

    let preview = s.profile_erasure_preview(p.id).await.unwrap();
    let erased = s
        .delete_profile(p.id, audit("profile.deleted"))
        .await
        .unwrap();
    assert_eq!(preview, erased);
    assert_eq!(
        erased,
        ProfileErasure {
            local_contacts: 1,
            speed_dials: 1,
            call_memory_entries: 1,
            line_assignments: 1,
            consents: 1,
            cdrs_named: 2,
        }
    );
    let cdrs = s.list_cdrs(&CdrFilter::default()).await.unwrap();
    let names: Vec<_> = cdrs.iter().map(|c| c.profile_name.as_deref()).collect();
    assert_eq!(
        names,
        [None, None, Some("Bob")],
        "the records stay, unnamed"
    );
    assert!(cdrs.iter().all(|c| c.called_number.is_some()));
    let log = s
        .list_recording_log(Timestamp(0), Timestamp(100), None, 10)
        .await
        .unwrap();
    assert_eq!(
        (log.len(), log[0].profile_id, log[0].line_id),
        (1, None, Some(line.id)),
        "the record of forwarding stays, without the person"
    );
    assert!(matches!(
        s.get_profile(p.id).await,
        Err(StoreError::NotFound("profile"))
    ));
    assert!(s.list_local_contacts(p.id).await.unwrap().is_empty());
    assert!(s.list_call_memory(p.id).await.unwrap().is_empty());
    assert!(s.list_consents(Some(p.id)).await.unwrap().is_empty());
    assert_eq!(
        s.list_lines().await.unwrap().len(),
        1,
        "the line itself stays"
    );
}

#[tokio::test]
async fn unique_clashes_name_the_field() {
    let (_d, s) = sqlite().await;
    unique_clashes_name_the_field_suite(s).await;
}

#[tokio::test]
async fn unique_clashes_name_the_field_on_postgres() {
    let (_d, s, _) = postgres().await;
    unique_clashes_name_the_field_suite(s).await;
}

async fn unique_clashes_name_the_field_suite(s: impl Store) {
    let p = profile(&s, "Ann").await;
    let new = NewProfile {
        name: "Ann".into(),
        password: hash("x"),
        contacts_password: None,
        call_memory_password: None,
        flags: ProfileFlags::default(),
        call_memory_keys: CallMemoryKeys::default(),
    };
    match s.create_profile(new, audit("x")).await {
        Err(StoreError::Conflict { field, .. }) => assert_eq!(field, "name"),
        other => panic!("expected conflict, got {other:?}"),
    }
    let k = SpeedDialFields::new("DKA", 4, "A", "1").unwrap();
    s.create_speed_dial(p.id, k.clone(), audit("k"))
        .await
        .unwrap();
    match s.create_speed_dial(p.id, k, audit("k")).await {
        Err(StoreError::Conflict { field, .. }) => assert_eq!(field, "position"),
        other => panic!("expected conflict, got {other:?}"),
    }
}

#[tokio::test]
async fn a_failed_change_writes_no_audit_entry() {
    let (_d, s) = sqlite().await;
    a_failed_change_writes_no_audit_entry_suite(s).await;
}

#[tokio::test]
async fn a_failed_change_writes_no_audit_entry_on_postgres() {
    let (_d, s, _) = postgres().await;
    a_failed_change_writes_no_audit_entry_suite(s).await;
}

async fn a_failed_change_writes_no_audit_entry_suite(s: impl Store) {
    let before = s.verify_audit().await.unwrap().verified;
    let l = LineFields::new("L1", "sip:1@pbx", "", "", "", "").unwrap();
    assert!(
        s.update_line(LineId(99), l, None, audit("line.updated"))
            .await
            .is_err()
    );
    assert_eq!(s.verify_audit().await.unwrap().verified, before);
}

#[tokio::test]
async fn global_contacts_search_by_prefix_and_page_by_cursor() {
    let (_d, s) = sqlite().await;
    global_contacts_search_by_prefix_and_page_by_cursor_suite(s).await;
}

#[tokio::test]
async fn global_contacts_search_by_prefix_and_page_by_cursor_on_postgres() {
    let (_d, s, _) = postgres().await;
    global_contacts_search_by_prefix_and_page_by_cursor_suite(s).await;
}

async fn global_contacts_search_by_prefix_and_page_by_cursor_suite(s: impl Store) {
    let contacts = (0..30)
        .map(|i| {
            ContactFields::new(
                &format!("Smith {i:02}"),
                &format!("020 7946 {i:04}"),
                "",
                "",
            )
            .unwrap()
        })
        .chain([ContactFields::new("Jones", "+1 212 555", "", "").unwrap()])
        .collect();
    assert_eq!(
        s.insert_global_contacts(contacts, audit("import"))
            .await
            .unwrap(),
        31
    );

    let mut q = GlobalContactQuery {
        name: Some("SMI".into()),
        limit: 20,
        ..Default::default()
    };
    let page1 = s.search_global_contacts(&q).await.unwrap();
    assert_eq!(page1.len(), 20);
    q.after = Some(page1.last().unwrap().id);
    let page2 = s.search_global_contacts(&q).await.unwrap();
    assert_eq!(page2.len(), 10);
    assert_eq!(page2[0].fields.name, "Smith 20");

    // National and international forms meet under the number key.
    let q = GlobalContactQuery {
        number_prefix: Some("+44 20 7946 001".into()),
        limit: 50,
        ..Default::default()
    };
    let hits = s.search_global_contacts(&q).await.unwrap();
    assert_eq!(hits.len(), 10, "0010..0019");
}

/// The names a word search for `term` finds, page after page of `limit`.
async fn word_search(s: &impl Store, term: &str, limit: i64) -> Vec<String> {
    let mut q = GlobalContactQuery {
        name: Some(term.into()),
        limit,
        ..Default::default()
    };
    let mut names = Vec::new();
    loop {
        let page = s.search_global_contacts(&q).await.unwrap();
        names.extend(page.iter().map(|c| c.fields.name.clone()));
        if (page.len() as i64) < limit {
            return names;
        }
        q.after = Some(page.last().unwrap().id);
    }
}

async fn word_search_suite(s: &impl Store) {
    let new = |n: &str, number: &str| ContactFields::new(n, number, "", "").unwrap();
    let mut ids = std::collections::HashMap::new();
    for (name, number) in [
        ("North Alpha Capital", "+44 20 7000 0001"),
        ("John Smith", "+44 20 7000 0002"),
        ("Smithers", "+44 20 7000 0003"),
        ("Old Trader", "+44 20 7000 0004"),
    ] {
        let c = s
            .create_global_contact(new(name, number), audit("c"))
            .await
            .unwrap();
        ids.insert(name, c.id);
    }
    // Thirty names that match "an" at two words each, in a batch.
    let batch = (0..30)
        .map(|i| new(&format!("An{i:02} Ant"), "+44 20 7100 0000"))
        .collect();
    s.insert_global_contacts(batch, audit("b")).await.unwrap();
    // An import that updates one contact (its copy is dropped) and adds one.
    let rows = vec![
        (2, new("OLD TRADER", "+44 20 7000 0004")),
        (3, new("Jean-Luc O'Brien", "+44 20 7000 0005")),
    ];
    let c = import(s, [rows], OnDuplicate::Update).await.unwrap();
    assert_eq!((c.inserted, c.updated), (1, 1));

    assert_eq!(word_search(s, "Alpha", 50).await, ["North Alpha Capital"]);
    assert_eq!(
        word_search(s, "alpha cap", 50).await,
        ["North Alpha Capital"]
    );
    assert_eq!(
        word_search(s, " CAPITAL", 50).await,
        ["North Alpha Capital"]
    );
    assert!(word_search(s, "pha", 50).await.is_empty());
    assert!(word_search(s, "capital north", 50).await.is_empty());
    assert_eq!(word_search(s, "smi", 50).await, ["John Smith", "Smithers"]);
    assert_eq!(word_search(s, "trader", 50).await, ["OLD TRADER"]);
    assert_eq!(word_search(s, "brien", 50).await, ["Jean-Luc O'Brien"]);
    assert_eq!(word_search(s, "luc", 50).await, ["Jean-Luc O'Brien"]);
    // Each of the thirty once, in order, over pages that meet duplicates.
    let an = word_search(s, "an", 7).await;
    let want: Vec<String> = (0..30).map(|i| format!("An{i:02} Ant")).collect();
    assert_eq!(an, want);
    assert_eq!(word_search(s, "ant", 4).await, want);

    // A renamed contact is found by its new words only; a deleted one not
    // at all, and leaves no words behind.
    let john = ids["John Smith"];
    s.update_global_contact(john, new("John Doe", "+44 20 7000 0002"), audit("u"))
        .await
        .unwrap();
    assert_eq!(word_search(s, "smi", 50).await, ["Smithers"]);
    assert_eq!(word_search(s, "doe", 50).await, ["John Doe"]);
    s.delete_global_contact(ids["North Alpha Capital"], audit("d"))
        .await
        .unwrap();
    assert!(word_search(s, "alpha", 50).await.is_empty());
}

#[tokio::test]
async fn global_contacts_are_found_by_any_word_of_the_name_through_every_write_path_on_postgres() {
    let (_d, s, url) = postgres().await;
    word_search_suite(&s).await;
    let raw = sqlx::PgPool::connect(&url).await.unwrap();
    let orphans: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM global_contact_words
         WHERE contact_id NOT IN (SELECT id FROM global_contacts)",
    )
    .fetch_one(&raw)
    .await
    .unwrap();
    assert_eq!(orphans, 0, "no word outlives its contact");
    // Ids given by the import moved the identity past them.
    let c = s
        .create_global_contact(ContactFields::new("Late", "1", "", "").unwrap(), audit("c"))
        .await
        .unwrap();
    assert!(c.id.0 > 36, "{:?}", c.id);
}

#[tokio::test]
async fn global_contacts_are_found_by_any_word_of_the_name_through_every_write_path() {
    let (d, s) = sqlite().await;
    word_search_suite(&s).await;
    let raw = open_raw(&d.path().join("t.db")).await;
    let orphans: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM global_contact_words
         WHERE contact_id NOT IN (SELECT id FROM global_contacts)",
    )
    .fetch_one(&raw)
    .await
    .unwrap();
    assert_eq!(orphans, 0, "no word outlives its contact");
    let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(
        "EXPLAIN QUERY PLAN SELECT contact_id FROM global_contact_words
         WHERE key >= 'a' AND key < 'b' ORDER BY key, contact_id",
    )
    .fetch_all(&raw)
    .await
    .unwrap();
    assert!(
        plan.iter()
            .any(|r| r.3.contains("global_contact_words_key"))
            && !plan.iter().any(|r| r.3.contains("TEMP B-TREE")),
        "{plan:?}"
    );

    // A database from before the words were kept: the store splits the
    // names at its next start, once.
    sqlx::query("DELETE FROM global_contact_words")
        .execute(&raw)
        .await
        .unwrap();
    sqlx::query("INSERT INTO store_backfills (name) VALUES ('global_contact_words')")
        .execute(&raw)
        .await
        .unwrap();
    raw.close().await;
    s.close().await;
    let s = reopen(&d).await;
    assert_eq!(word_search(&s, "trader", 50).await, ["OLD TRADER"]);
    assert_eq!(word_search(&s, "ant", 50).await.len(), 30);
    let raw = open_raw(&d.path().join("t.db")).await;
    let marks: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM store_backfills")
        .fetch_one(&raw)
        .await
        .unwrap();
    assert_eq!(marks, 0);
}

#[tokio::test]
async fn line_passwords_are_encrypted_and_readable_only_through_line_password() {
    let (d, s) = sqlite().await;
    let l = LineFields::new("L1", "sip:1@pbx", "1", "", "", "").unwrap();
    let line = s
        .create_line(l.clone(), Some(Secret::new("sip-secret-77")), audit("l"))
        .await
        .unwrap();
    assert!(line.has_password);
    assert_eq!(
        s.line_password(line.id).await.unwrap().unwrap().expose(),
        "sip-secret-77"
    );
    // Updating other fields keeps the password.
    s.update_line(line.id, l, None, audit("l")).await.unwrap();
    assert_eq!(
        s.line_password(line.id).await.unwrap().unwrap().expose(),
        "sip-secret-77"
    );
    s.close().await;
    for f in std::fs::read_dir(d.path()).unwrap() {
        let bytes = std::fs::read(f.unwrap().path()).unwrap();
        assert!(!bytes.windows(13).any(|w| w == b"sip-secret-77"));
    }
}

#[tokio::test]
async fn the_audit_chain_verifies_after_every_kind_of_change() {
    let (_d, s) = sqlite().await;
    the_audit_chain_verifies_after_every_kind_of_change_suite(s).await;
}

#[tokio::test]
async fn the_audit_chain_verifies_after_every_kind_of_change_on_postgres() {
    let (_d, s, _) = postgres().await;
    the_audit_chain_verifies_after_every_kind_of_change_suite(s).await;
}

async fn the_audit_chain_verifies_after_every_kind_of_change_suite(s: impl Store) {
    let p = profile(&s, "Ann").await;
    s.update_profile(
        p.id,
        ProfileChanges {
            name: Some("Anne".into()),
            ..Default::default()
        },
        audit("u"),
    )
    .await
    .unwrap();
    let ch = SettingsChanges {
        master_password: Some(Some(hash("m"))),
        ..Default::default()
    };
    let st = s.update_settings(ch, audit("settings")).await.unwrap();
    assert!(st.master_password_enabled);
    assert!(s.master_password_hash().await.unwrap().is_some());
    let ch = SettingsChanges {
        master_password: Some(None),
        ..Default::default()
    };
    assert!(
        !s.update_settings(ch, audit("settings"))
            .await
            .unwrap()
            .master_password_enabled
    );
    assert!(s.master_password_hash().await.unwrap().is_none());
    s.append_audit(audit("auth.login")).await.unwrap();
    let v = s.verify_audit().await.unwrap();
    assert_eq!(v.broken, None);
    assert_eq!(v.verified, 5);
    let f = AuditFilter {
        event_type: Some("settings".into()),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(s.list_audit(&f).await.unwrap().len(), 2);
    assert_eq!(
        s.list_audit(&AuditFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()[4]
            .record
            .object_id
            .as_deref(),
        Some(p.id.to_string().as_str()),
        "a create records the new object's id"
    );
}

#[tokio::test]
async fn call_memory_keys_are_stored_and_a_rekey_can_erase_entries() {
    let (_d, s) = sqlite().await;
    call_memory_keys_are_stored_and_a_rekey_can_erase_entries_suite(s).await;
}

#[tokio::test]
async fn call_memory_keys_are_stored_and_a_rekey_can_erase_entries_on_postgres() {
    let (_d, s, _) = postgres().await;
    call_memory_keys_are_stored_and_a_rekey_can_erase_entries_suite(s).await;
}

async fn call_memory_keys_are_stored_and_a_rekey_can_erase_entries_suite(s: impl Store) {
    let p = profile(&s, "Ann").await;
    assert_eq!(
        s.call_memory_keys(p.id).await.unwrap(),
        CallMemoryKeys::default()
    );
    let keys = CallMemoryKeys {
        public: Some([7; 32]),
        wrapped_by_profile_password: Some(vec![1, 2, 3]),
        wrapped_by_call_memory_password: None,
    };
    s.set_call_memory_keys(p.id, keys.clone()).await.unwrap();
    assert_eq!(s.call_memory_keys(p.id).await.unwrap(), keys);
    s.push_call_memory(p.id, Timestamp(1), vec![1])
        .await
        .unwrap();
    let rekey = ProfileChanges {
        call_memory_keys: Some(CallMemoryKeys {
            public: Some([8; 32]),
            ..Default::default()
        }),
        erase_call_memory: true,
        ..Default::default()
    };
    s.update_profile(p.id, rekey, audit("profile.updated"))
        .await
        .unwrap();
    assert!(s.list_call_memory(p.id).await.unwrap().is_empty());
    assert_eq!(
        s.call_memory_keys(p.id).await.unwrap().public,
        Some([8; 32])
    );
}

#[tokio::test]
async fn the_observer_hears_each_committed_change_and_no_failed_one() {
    let (_d, s) = sqlite().await;
    the_observer_hears_each_committed_change_and_no_failed_one_suite(s).await;
}

#[tokio::test]
async fn the_observer_hears_each_committed_change_and_no_failed_one_on_postgres() {
    let (_d, s, _) = postgres().await;
    the_observer_hears_each_committed_change_and_no_failed_one_suite(s).await;
}

async fn the_observer_hears_each_committed_change_and_no_failed_one_suite(s: impl Store) {
    let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let h = heard.clone();
    s.observe(std::sync::Arc::new(move |c: Change<'_>| {
        if let Change::Committed(r) = c {
            h.lock().unwrap().push(r.event_type.clone())
        }
    }));
    profile(&s, "Ann").await;
    let _ = s.delete_line(LineId(42), audit("line.deleted")).await;
    assert_eq!(*heard.lock().unwrap(), vec!["profile.created".to_string()]);
}

#[tokio::test]
async fn an_erased_profile_is_erased_again_when_it_comes_back() {
    let (d, s) = sqlite().await;
    let p = profile(&s, "Ann").await;
    // Keep a copy of the database from before the erasure (a "backup").
    s.append_audit(audit("checkpoint")).await.unwrap();
    sqlx::query("VACUUM INTO ?")
        .bind(d.path().join("before.db").to_str().unwrap())
        .execute(&open_raw(&d.path().join("t.db")).await)
        .await
        .unwrap();
    s.delete_profile(p.id, audit("profile.deleted"))
        .await
        .unwrap();
    assert_eq!(s.erasure_count().unwrap(), 1);
    s.close().await;
    // "Restore" the old file: the profile is back until the ledger is applied.
    std::fs::rename(d.path().join("before.db"), d.path().join("t.db")).unwrap();
    let _ = std::fs::remove_file(d.path().join("t.db-wal"));
    let _ = std::fs::remove_file(d.path().join("t.db-shm"));
    let keys = Keys::load_or_create(&d.path().join("secret.key")).unwrap();
    let ledger = openturret_store::ledger::Ledger::open(
        &d.path().join("ledger"),
        &d.path().join("ledger.key"),
    )
    .unwrap();
    let s = SqliteStore::open(&d.path().join("t.db"), keys, NumberPlan::default(), ledger)
        .await
        .unwrap();
    assert!(s.get_profile(p.id).await.is_ok());
    assert_eq!(
        s.reapply_erasures(audit("erasure.reapplied"))
            .await
            .unwrap(),
        vec![p.id]
    );
    assert!(matches!(
        s.get_profile(p.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(
        s.reapply_erasures(audit("erasure.reapplied"))
            .await
            .unwrap()
            .is_empty(),
        "idempotent"
    );
}

/// Waits until the clock has moved on by a millisecond (the resolution of
/// stored times), so what is made next is later than what came before.
fn next_millisecond() {
    let now = Timestamp::now();
    while Timestamp::now() <= now {
        std::hint::spin_loop();
    }
}

async fn open_raw(path: &std::path::Path) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(&format!("sqlite:{}", path.display()))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_burst_of_audit_entries_goes_in_one_transaction_and_the_chain_holds() {
    let (_d, s) = sqlite().await;
    audit_burst_suite(&s).await;
}

#[tokio::test]
async fn a_burst_of_audit_entries_goes_in_one_transaction_and_the_chain_holds_on_postgres() {
    let (_d, s, _) = postgres().await;
    audit_burst_suite(&s).await;
}

async fn audit_burst_suite(s: &impl AuditStore) {
    let heard = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h = heard.clone();
    s.observe(std::sync::Arc::new(move |c: Change<'_>| {
        if let Change::Committed(_) = c {
            h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }));
    let batch: Vec<AuditRecord> = (0..250).map(|_| audit("line.registered")).collect();
    s.append_audits(batch).await.unwrap();
    let v = s.verify_audit().await.unwrap();
    assert_eq!(v.broken, None);
    assert_eq!(v.verified, 250);
    assert_eq!(
        heard.load(std::sync::atomic::Ordering::SeqCst),
        250,
        "the observer hears each"
    );
}

async fn audit_purge_suite(s: &impl AuditStore) {
    for i in 0..10 {
        let mut r = audit("old");
        r.at = Timestamp(1_000 + i);
        s.append_audit(r).await.unwrap();
    }
    for _ in 0..5 {
        s.append_audit(audit("recent")).await.unwrap();
    }
    let n = s
        .purge_audit_before(Timestamp(1_000_000), audit("retention.purged"))
        .await
        .unwrap();
    assert_eq!(n, 10);
    let v = s.verify_audit().await.unwrap();
    assert_eq!(v.broken, None, "the kept chain verifies from its anchor");
    assert_eq!(v.verified, 16, "15 entries and the purge's own");
    // Nothing more to purge: no new entry.
    assert_eq!(
        s.purge_audit_before(Timestamp(1_000_000), audit("retention.purged"))
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn purging_old_audit_entries_re_anchors_the_chain_and_a_moved_anchor_is_caught_on_postgres() {
    let (_d, s, url) = postgres().await;
    audit_purge_suite(&s).await;
    // Someone deletes two more entries and moves the anchor past them.
    let raw = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query("DELETE FROM audit_log WHERE seq IN (11, 12)")
        .execute(&raw)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE audit_anchor SET first_seq = 13, prev_mac = (SELECT prev_mac FROM audit_log WHERE seq = 13)",
    )
    .execute(&raw)
    .await
    .unwrap();
    let brk = s
        .verify_audit()
        .await
        .unwrap()
        .broken
        .expect("a moved anchor breaks the chain");
    assert!(brk.reason.contains("start was moved"), "{}", brk.reason);
    // And the newest entries removed: this node's anchored head says so.
    sqlx::query("DELETE FROM audit_log WHERE seq = (SELECT MAX(seq) FROM audit_log)")
        .execute(&raw)
        .await
        .unwrap();
    sqlx::query("DELETE FROM audit_anchor")
        .execute(&raw)
        .await
        .unwrap();
    let v = s.verify_audit().await.unwrap();
    assert!(v.broken.is_some(), "{v:?}");
}

#[tokio::test]
async fn purging_old_audit_entries_re_anchors_the_chain_and_a_moved_anchor_is_caught() {
    let (d, s) = sqlite().await;
    audit_purge_suite(&s).await;

    // Someone deletes two more entries and moves the anchor past them.
    s.close().await;
    let db = d.path().join("t.db");
    let out = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg(
            "DELETE FROM audit_log WHERE seq IN (11, 12); \
             UPDATE audit_anchor SET first_seq = 13, prev_mac = (SELECT prev_mac FROM audit_log WHERE seq = 13);",
        )
        .output()
        .expect("the sqlite3 tool is installed (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = reopen(&d).await;
    let v = s.verify_audit().await.unwrap();
    let brk = v.broken.expect("a moved anchor breaks the chain");
    assert!(brk.reason.contains("start was moved"), "{}", brk.reason);
}

/// The names of `global_contacts`' indexes, and whether contact search
/// uses the name index.
async fn contact_indexes(path: &std::path::Path) -> (Vec<String>, bool) {
    let raw = open_raw(path).await;
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'global_contacts'
         AND sql IS NOT NULL ORDER BY name",
    )
    .fetch_all(&raw)
    .await
    .unwrap();
    let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(
        "EXPLAIN QUERY PLAN SELECT id FROM global_contacts WHERE name_key >= 'a' AND name_key < 'b'",
    )
    .fetch_all(&raw)
    .await
    .unwrap();
    raw.close().await;
    (
        names,
        plan.iter().any(|r| r.3.contains("global_contacts_name")),
    )
}

/// One import of `batches`, committed under `mode`: the counts, or the
/// lines refused.
async fn import(
    s: &impl Store,
    batches: impl IntoIterator<Item = Vec<(u64, ContactFields)>>,
    mode: OnDuplicate,
) -> std::result::Result<ImportCounts, Vec<u64>> {
    let mut imp = s.begin_global_import().await.unwrap();
    for batch in batches {
        imp.add(batch).await.unwrap();
    }
    imp.commit(mode, audit("import")).await.unwrap()
}

#[tokio::test]
async fn an_import_into_a_small_table_rebuilds_its_indexes_and_a_failed_one_keeps_them() {
    let (d, s) = sqlite().await;
    let db = d.path().join("t.db");
    let want = vec![
        "global_contacts_name".to_string(),
        "global_contacts_number".to_string(),
    ];
    assert_eq!(contact_indexes(&db).await, (want.clone(), true));
    let rows = |names: &[&str]| -> Vec<(u64, ContactFields)> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let number = format!("+44 20 7946 {:04}", i);
                (
                    i as u64 + 2,
                    ContactFields::new(n, &number, "", "").unwrap(),
                )
            })
            .collect()
    };
    // An import that succeeds: the rows are there, found by the index.
    let c = import(
        &s,
        [rows(&["Anna Alder", "Bert Birch"])],
        OnDuplicate::Reject,
    )
    .await
    .unwrap();
    assert_eq!(c.inserted, 2);
    assert_eq!(contact_indexes(&db).await, (want.clone(), true));
    // One that is refused (a duplicate), and one abandoned half-way: the
    // indexes are as they were, and so are the rows.
    let refused = import(
        &s,
        [rows(&["Anna Alder", "Cleo Cedar"])],
        OnDuplicate::Reject,
    )
    .await;
    assert_eq!(refused.unwrap_err(), vec![2]);
    let mut imp = s.begin_global_import().await.unwrap();
    imp.add(rows(&["Dora Dogwood"])).await.unwrap();
    drop(imp);
    assert_eq!(contact_indexes(&db).await, (want, true));
    let page = s
        .search_global_contacts(&GlobalContactQuery {
            limit: 20,
            ..Default::default()
        })
        .await
        .unwrap();
    let names: Vec<_> = page.iter().map(|c| c.fields.name.clone()).collect();
    assert_eq!(names, ["Anna Alder", "Bert Birch"]);
    assert_eq!(s.integrity_check().await.unwrap(), "ok");
}

#[tokio::test]
async fn a_large_import_names_duplicates_by_line_across_chunks_and_batches() {
    let (_d, s) = sqlite().await;
    a_large_import_names_duplicates_by_line_across_chunks_and_batches_suite(s).await;
}

#[tokio::test]
async fn a_large_import_names_duplicates_by_line_across_chunks_and_batches_on_postgres() {
    let (_d, s, _) = postgres().await;
    a_large_import_names_duplicates_by_line_across_chunks_and_batches_suite(s).await;
}

async fn a_large_import_names_duplicates_by_line_across_chunks_and_batches_suite(s: impl Store) {
    // Two contacts exist before (so the duplicate check runs); the file
    // repeats them at lines 2,346 and 4,999, far past the first INSERT.
    for (name, number) in [
        ("Old \"One\"", "+44 20 7946 2344"),
        ("Ölaf Ünder", "0049 30 4998"),
    ] {
        s.create_global_contact(
            ContactFields::new(name, number, "", "").unwrap(),
            audit("c"),
        )
        .await
        .unwrap();
    }
    let rows = || -> Vec<(u64, ContactFields)> {
        (0..5_000u64)
            .map(|i| {
                let line = i + 2;
                let (name, number) = match line {
                    2_346 => ("OLD \"one\"".to_string(), "+44 20 7946 2344".to_string()),
                    4_999 => ("ölaf ünder".to_string(), "+49 30 4998".to_string()),
                    // Quotes, backslashes and accents travel unchanged.
                    _ => (format!("Zoë \\ \"{i}\""), format!("+44 20 7{i:07}")),
                };
                // One long row: 400 bytes of accents in one field.
                let field3 = if line == 3_000 {
                    "é".repeat(200)
                } else {
                    "desk".into()
                };
                (
                    line,
                    ContactFields::new(&name, &number, &field3, "").unwrap(),
                )
            })
            .collect()
    };
    // Batches of odd sizes: chunk edges and batch edges fall apart.
    let batches = || rows().chunks(777).map(<[_]>::to_vec).collect::<Vec<_>>();
    assert_eq!(
        import(&s, batches(), OnDuplicate::Reject)
            .await
            .unwrap_err(),
        vec![2_346, 4_999]
    );
    let all = || async {
        let q = GlobalContactQuery {
            limit: 10_000,
            ..Default::default()
        };
        s.search_global_contacts(&q).await
    };
    assert_eq!(
        all().await.unwrap().len(),
        2,
        "a refused import changes nothing"
    );
    let c = import(&s, batches(), OnDuplicate::Update).await.unwrap();
    assert_eq!((c.inserted, c.updated), (4_998, 2));
    let after = all().await.unwrap();
    assert_eq!(after.len(), 5_000);
    let by_name = |n: &str| after.iter().find(|c| c.fields.name == n).cloned();
    assert_eq!(
        by_name("OLD \"one\"").unwrap().fields.field3,
        "desk",
        "updated in place"
    );
    assert!(by_name("Old \"One\"").is_none());
    let long = by_name("Zoë \\ \"2998\"").unwrap();
    assert_eq!(long.fields.field3, "é".repeat(200));
    let z = by_name("Zoë \\ \"4996\"").unwrap();
    assert_eq!(z.fields.number, "+44 20 70004996");
    // Found by the rebuilt indexes, by name and by number key.
    let s = &s;
    let search = |name: Option<&str>, number: Option<&str>| {
        let q = GlobalContactQuery {
            name: name.map(str::to_string),
            number_prefix: number.map(str::to_string),
            limit: 5,
            ..Default::default()
        };
        async move { s.search_global_contacts(&q).await }
    };
    let found = search(Some("zoë \\ \"4996"), None).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, z.id);
    let found = search(None, Some("49304998")).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].fields.name, "ölaf ünder");
    assert_eq!(s.integrity_check().await.unwrap(), "ok");
}

#[tokio::test]
async fn commits_are_checkpointed_in_the_background() {
    let (d, s) = sqlite().await;
    let db = d.path().join("t.db");
    let wal = d.path().join("t.db-wal");
    let before = std::fs::metadata(&db).unwrap().len();
    let rows = (0..5_000u64)
        .map(|i| {
            let f = ContactFields::new(&format!("Person {i}"), &format!("+44 20 7{i:07}"), "", "");
            (i + 2, f.unwrap())
        })
        .collect();
    let c = import(&s, [rows], OnDuplicate::Reject).await.unwrap();
    assert_eq!(c.inserted, 5_000);
    assert!(
        std::fs::metadata(&wal).unwrap().len() > 300_000,
        "the commit went to the WAL"
    );
    // Nothing else writes: only the store's checkpointer can move the
    // rows into the database file.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let now = std::fs::metadata(&db).unwrap().len();
        if now > before + 300_000 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint after 20 s: the database file is {now} bytes, {before} before"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(s.integrity_check().await.unwrap(), "ok");
}

#[tokio::test]
async fn turret_sessions_are_kept_touched_ended_and_erased_with_their_profile() {
    let (d, s) = sqlite().await;
    let p = profile(&s, "Ann").await;
    let q = profile(&s, "Bob").await;
    let at = |ms| ClientSession {
        profile: p.id,
        started_at: Timestamp(ms),
        last_seen: Timestamp(ms),
        connected: true,
    };
    let now = Timestamp::now().0;
    s.save_client_session([1; 32], at(now)).await.unwrap();
    // A second save of the same token changes nothing.
    s.save_client_session([1; 32], at(now + 5)).await.unwrap();
    s.save_client_session(
        [2; 32],
        ClientSession {
            profile: q.id,
            ..at(now)
        },
    )
    .await
    .unwrap();
    s.touch_client_session([1; 32], Timestamp(now + 9), false)
        .await
        .unwrap();
    let s = reopen(&d).await;
    assert_eq!(
        s.client_session([1; 32]).await.unwrap(),
        Some(ClientSession {
            last_seen: Timestamp(now + 9),
            connected: false,
            ..at(now)
        })
    );
    // Touching an ended session does not bring it back.
    s.delete_client_session([1; 32]).await.unwrap();
    s.touch_client_session([1; 32], Timestamp(now + 10), true)
        .await
        .unwrap();
    assert_eq!(s.client_session([1; 32]).await.unwrap(), None);
    // Sessions older than a session's longest life are swept.
    s.save_client_session([3; 32], at(now - 13 * 3600 * 1000))
        .await
        .unwrap();
    s.save_client_session([4; 32], at(now)).await.unwrap();
    assert_eq!(s.client_session([3; 32]).await.unwrap(), None);
    assert_eq!(s.delete_client_sessions(p.id).await.unwrap(), 1);
    // A profile's erasure takes its sessions with it.
    s.delete_profile(q.id, audit("profile.deleted"))
        .await
        .unwrap();
    assert_eq!(s.client_session([2; 32]).await.unwrap(), None);
}

/// A new password ends the profile's stored turret sessions in the same
/// transaction (not later, by whoever hears of the change): a stop right
/// after it, or another node, can never resume one.
#[tokio::test]
async fn a_new_password_ends_the_stored_sessions_with_the_change() {
    let (_d, s) = sqlite().await;
    a_new_password_ends_the_stored_sessions_with_the_change_suite(s).await;
}

#[tokio::test]
async fn a_new_password_ends_the_stored_sessions_with_the_change_on_postgres() {
    let (_d, s, _) = postgres().await;
    a_new_password_ends_the_stored_sessions_with_the_change_suite(s).await;
}

async fn a_new_password_ends_the_stored_sessions_with_the_change_suite(s: impl Store) {
    let p = profile(&s, "Ann").await;
    let q = profile(&s, "Bob").await;
    let now = Timestamp::now();
    for (token, profile) in [([1; 32], p.id), ([2; 32], p.id), ([3; 32], q.id)] {
        s.save_client_session(
            token,
            ClientSession {
                profile,
                started_at: now,
                last_seen: now,
                connected: true,
            },
        )
        .await
        .unwrap();
    }
    // Another change keeps them.
    s.update_profile(
        p.id,
        ProfileChanges {
            name: Some("Anne".into()),
            ..Default::default()
        },
        audit("profile.updated"),
    )
    .await
    .unwrap();
    assert!(s.client_session([1; 32]).await.unwrap().is_some());
    s.update_profile(
        p.id,
        ProfileChanges {
            password: Some(hash("new-password")),
            ..Default::default()
        },
        audit("profile.updated"),
    )
    .await
    .unwrap();
    assert_eq!(s.client_session([1; 32]).await.unwrap(), None);
    assert_eq!(s.client_session([2; 32]).await.unwrap(), None);
    assert!(
        s.client_session([3; 32]).await.unwrap().is_some(),
        "another profile's session stays"
    );
}

/// SQLite gives a deleted row's id to the next row when it was the
/// highest: a profile made after an erasure may carry the erased one's
/// id, and the ledger must never take it for the erased person.
#[tokio::test]
async fn a_new_profile_that_reuses_an_erased_id_survives_the_ledger() {
    let (_d, s) = sqlite().await;
    a_new_profile_that_reuses_an_erased_id_survives_the_ledger_suite(s, true).await;
}

#[tokio::test]
async fn a_new_profile_that_reuses_an_erased_id_survives_the_ledger_on_postgres() {
    let (_d, s, _) = postgres().await;
    a_new_profile_that_reuses_an_erased_id_survives_the_ledger_suite(s, false).await;
}

/// `reuses_ids`: SQLite gives the id of the newest row deleted to the next
/// one; PostgreSQL never does. Either way the newcomer stays.
async fn a_new_profile_that_reuses_an_erased_id_survives_the_ledger_suite(
    s: impl Store,
    reuses_ids: bool,
) {
    let _first = profile(&s, "Ann").await;
    let gone = profile(&s, "Bob").await;
    s.delete_profile(gone.id, audit("profile.deleted"))
        .await
        .unwrap();
    next_millisecond();
    let newcomer = profile(&s, "Cid").await;
    assert_eq!(
        newcomer.id == gone.id,
        reuses_ids,
        "the id is reused, or not"
    );
    let again = s
        .reapply_erasures(audit("erasure.reapplied"))
        .await
        .unwrap();
    assert!(
        again.is_empty(),
        "the newcomer was taken for the erased profile"
    );
    assert_eq!(s.get_profile(newcomer.id).await.unwrap().name, "Cid");
}

/// Issue 15: deleting an administrator, a global or local contact, a
/// speed dial key or a call-memory entry goes into the erasure ledger, so a restored older copy of the
/// database does not bring them back (an administrator, with the old
/// password, able to log in); a later row that reuses the id stays.
#[tokio::test]
async fn deleted_admins_and_contacts_stay_deleted_after_a_restore() {
    let (d, s) = sqlite().await;
    let p = profile(&s, "Ann").await;
    let admin = s
        .create_admin(
            "old-admin",
            hash("old-admin-password"),
            false,
            audit("admin.created"),
        )
        .await
        .unwrap();
    let _keeper = s
        .create_admin(
            "keeper",
            hash("keeper-password-1"),
            false,
            audit("admin.created"),
        )
        .await
        .unwrap();
    let global = s
        .create_global_contact(
            ContactFields::new("Gone Global", "2001", "", "").unwrap(),
            audit("g"),
        )
        .await
        .unwrap();
    let local = s
        .create_local_contact(
            p.id,
            ContactFields::new("Gone Local", "2002", "", "").unwrap(),
            audit("l"),
        )
        .await
        .unwrap();
    let key = s
        .create_speed_dial(
            p.id,
            SpeedDialFields::new("DKM", 1, "Gone Key", "2004").unwrap(),
            audit("k"),
        )
        .await
        .unwrap();
    s.push_call_memory(p.id, Timestamp(1), vec![7])
        .await
        .unwrap();
    let entry = s.list_call_memory(p.id).await.unwrap()[0].id;
    sqlx::query("VACUUM INTO ?")
        .bind(d.path().join("before.db").to_str().unwrap())
        .execute(&open_raw(&d.path().join("t.db")).await)
        .await
        .unwrap();
    s.delete_speed_dial(p.id, key.id, audit("speed_dial.deleted"))
        .await
        .unwrap();
    s.delete_call_memory(p.id, entry, audit("call_memory.deleted"))
        .await
        .unwrap();
    s.delete_admin(admin.id, audit("admin.deleted"))
        .await
        .unwrap();
    s.delete_global_contact(global.id, audit("global_contact.deleted"))
        .await
        .unwrap();
    s.delete_local_contact(p.id, local.id, audit("contact.deleted"))
        .await
        .unwrap();
    assert_eq!(s.erasure_count().unwrap(), 5);
    s.close().await;
    std::fs::rename(d.path().join("before.db"), d.path().join("t.db")).unwrap();
    let _ = std::fs::remove_file(d.path().join("t.db-wal"));
    let _ = std::fs::remove_file(d.path().join("t.db-shm"));
    let s = reopen(&d).await;
    assert!(
        s.admin_credentials("old-admin").await.unwrap().is_some(),
        "the copy holds them"
    );
    s.reapply_erasures(audit("erasure.reapplied"))
        .await
        .unwrap();
    assert!(
        s.admin_credentials("old-admin").await.unwrap().is_none(),
        "the admin came back"
    );
    assert!(s.admin_credentials("keeper").await.unwrap().is_some());
    assert!(matches!(
        s.get_global_contact(global.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.get_local_contact(p.id, local.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(
        s.list_speed_dials(p.id).await.unwrap().is_empty(),
        "the key came back"
    );
    assert!(
        s.list_call_memory(p.id).await.unwrap().is_empty(),
        "the entry came back"
    );
    // A contact made later with the same id is not taken for the erased one.
    next_millisecond();
    let newer = s
        .create_global_contact(
            ContactFields::new("New Global", "2003", "", "").unwrap(),
            audit("g"),
        )
        .await
        .unwrap();
    assert_eq!(newer.id, global.id, "SQLite reused the id");
    s.reapply_erasures(audit("erasure.reapplied"))
        .await
        .unwrap();
    assert_eq!(
        s.get_global_contact(newer.id).await.unwrap().fields.name,
        "New Global"
    );
}

#[tokio::test]
async fn the_error_log_folds_filters_follows_and_purges() {
    let (_d, s) = sqlite().await;
    error_log_suite(&s).await;
}

#[tokio::test]
async fn the_error_log_folds_filters_follows_and_purges_on_postgres() {
    let (_d, s, _) = postgres().await;
    error_log_suite(&s).await;
}

async fn error_log_suite(s: &(impl EventStore + AuditStore)) {
    let f = |e: Event, n: u64, first: i64, last: i64| Folded {
        event: e,
        count: n,
        first_at: Timestamp(first),
        last_at: Timestamp(last),
    };
    let down = Event::warning("pbx.unreachable", "pbx:10.0.0.1:5060", "no answer")
        .from_component("mlc:a")
        .with("lines", 3);
    let written = s
        .write_events(vec![
            (None, f(down.clone(), 2, 1_000, 2_000)),
            (
                None,
                f(
                    Event::error("backup.failed", "backup", "cannot write").from_component("sm:h"),
                    1,
                    1_500,
                    1_500,
                ),
            ),
        ])
        .await
        .unwrap();
    assert_eq!(written.len(), 2);
    assert!(written[1].seq > written[0].seq);
    let first = written[0].clone();
    // A fold adds the count, moves the last time and the seq, keeps the id.
    let folded = s
        .write_events(vec![(
            Some(first.id),
            f(down.with("lines", 4), 5, 3_000, 4_000),
        )])
        .await
        .unwrap();
    assert_eq!(folded[0].id, first.id);
    assert_eq!(folded[0].count, 7);
    assert_eq!((folded[0].first_at.0, folded[0].last_at.0), (1_000, 4_000));
    assert_eq!(folded[0].event.properties["lines"], "4");
    assert!(folded[0].seq > written[1].seq);
    // A fold into an entry that is gone starts a new one.
    let again = s
        .write_events(vec![(
            Some(9_999),
            f(
                Event::info("pbx.reachable", "pbx:10.0.0.1:5060", "answers")
                    .from_component("mlc:a"),
                1,
                5_000,
                5_000,
            ),
        )])
        .await
        .unwrap();
    assert_ne!(again[0].id, 9_999);

    let all = s
        .list_events(&EventFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let types: Vec<&str> = all.iter().map(|e| e.event.event_type.as_str()).collect();
    assert_eq!(types, ["pbx.reachable", "pbx.unreachable", "backup.failed"]);
    let bad = s
        .list_events(&EventFilter {
            at_least: Some(EventLevel::Warning),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(bad.len(), 2);
    let of = |filter: EventFilter| {
        let s = &s;
        async move { s.list_events(&filter).await.unwrap().len() }
    };
    assert_eq!(
        of(EventFilter {
            level: Some(EventLevel::Error),
            limit: 10,
            ..Default::default()
        })
        .await,
        1
    );
    assert_eq!(
        of(EventFilter {
            component: Some("mlc:a".into()),
            limit: 10,
            ..Default::default()
        })
        .await,
        2
    );
    assert_eq!(
        of(EventFilter {
            object: Some("backup".into()),
            limit: 10,
            ..Default::default()
        })
        .await,
        1
    );
    assert_eq!(
        of(EventFilter {
            event_type: Some("pbx.reachable".into()),
            limit: 10,
            ..Default::default()
        })
        .await,
        1
    );
    assert_eq!(
        of(EventFilter {
            from: Some(Timestamp(3_000)),
            limit: 10,
            ..Default::default()
        })
        .await,
        2
    );
    assert_eq!(
        of(EventFilter {
            to: Some(Timestamp(3_000)),
            limit: 10,
            ..Default::default()
        })
        .await,
        1
    );
    // Paging backwards and following forwards.
    let page = s
        .list_events(&EventFilter {
            before_seq: Some(all[0].seq),
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page[0].event.event_type, "pbx.unreachable");
    let after = s
        .list_events(&EventFilter {
            after_seq: Some(written[1].seq),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let types: Vec<&str> = after.iter().map(|e| e.event.event_type.as_str()).collect();
    assert_eq!(types, ["pbx.unreachable", "pbx.reachable"]);

    assert_eq!(
        s.count_events(EventLevel::Warning, Timestamp(0))
            .await
            .unwrap(),
        (1, 7)
    );
    assert_eq!(
        s.count_events(EventLevel::Error, Timestamp(2_000))
            .await
            .unwrap(),
        (0, 0)
    );

    let n = s
        .purge_events_before(Timestamp(4_500), audit("retention.purged"))
        .await
        .unwrap();
    assert_eq!(n, 2);
    let left = s
        .list_events(&EventFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(left.len(), 1);
    let trail = s
        .list_audit(&AuditFilter {
            event_type: Some("retention.purged".into()),
            limit: 5,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(trail[0].record.changes, ["deleted:2"]);
}

async fn settings_suite(s: &(impl SettingsStore + AuditStore)) {
    let st = s.get_settings().await.unwrap();
    assert!(!st.cti_enabled && !st.master_password_enabled);
    assert_eq!(
        (
            st.retention_call_memory_days,
            st.retention_cdr_days,
            st.retention_audit_days
        ),
        (Some(90), Some(365), Some(2557))
    );
    let st = s
        .update_settings(
            SettingsChanges {
                master_password: Some(Some(hash("m"))),
                cti_enabled: Some(true),
                retention_cdr_days: Some(None),
                retention_audit_days: Some(Some(30)),
                cdr_files: Some(CdrFiles::parse("both").unwrap()),
                ..Default::default()
            },
            audit("settings.updated"),
        )
        .await
        .unwrap();
    assert!(st.master_password_enabled && st.cti_enabled);
    assert_eq!(
        (st.retention_cdr_days, st.retention_audit_days),
        (None, Some(30))
    );
    assert_eq!(st.retention_call_memory_days, Some(90), "untouched");
    assert_eq!(st.cdr_files.as_str(), "both");
    assert_eq!(
        s.master_password_hash()
            .await
            .unwrap()
            .map(|h| h.as_phc().to_string()),
        Some("$test$m".to_string())
    );
    let st = s
        .update_settings(
            SettingsChanges {
                master_password: Some(None),
                ..Default::default()
            },
            audit("settings.updated"),
        )
        .await
        .unwrap();
    assert!(!st.master_password_enabled && st.cti_enabled);
    assert!(s.master_password_hash().await.unwrap().is_none());
    let v = s.verify_audit().await.unwrap();
    assert_eq!((v.broken, v.verified), (None, 2));
}

#[tokio::test]
async fn settings_change_field_by_field_and_are_audited() {
    let (_d, s) = sqlite().await;
    settings_suite(&s).await;
}

#[tokio::test]
async fn settings_change_field_by_field_and_are_audited_on_postgres() {
    let (_d, s, _) = postgres().await;
    settings_suite(&s).await;
}

/// Issue 19: two System Manager nodes append to one audit chain at once;
/// the appends are serialised across nodes and the chain verifies on
/// both, every entry in one unbroken sequence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_appending_at_once_keep_one_audit_chain_on_postgres() {
    let (a_dir, a, url) = postgres().await;
    let b_dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        a_dir.path().join("secret.key"),
        b_dir.path().join("secret.key"),
    )
    .unwrap();
    let b = pg_node(&b_dir, &url).await;
    let (a, b) = (std::sync::Arc::new(a), std::sync::Arc::new(b));
    let mut tasks = Vec::new();
    for node in [a.clone(), b.clone()] {
        for _ in 0..4 {
            let node = node.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..50 {
                    node.append_audit(audit("line.registered")).await.unwrap();
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    for node in [&a, &b] {
        let v = node.verify_audit().await.unwrap();
        assert_eq!((v.broken, v.verified), (None, 400));
    }
    let seqs: Vec<i64> = a
        .list_audit(&AuditFilter {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(
        seqs,
        (1..=400).rev().collect::<Vec<_>>(),
        "no gap, no repeat"
    );
    // Error-log writers on both nodes never take the same seq.
    let f = |n: u64| Folded {
        event: Event::info("t", "", "m").from_component(&format!("sm:{n}")),
        count: 1,
        first_at: Timestamp(n as i64),
        last_at: Timestamp(n as i64),
    };
    let (wa, wb) = tokio::join!(
        a.write_events((0..50).map(|n| (None, f(n))).collect()),
        b.write_events((50..100).map(|n| (None, f(n))).collect())
    );
    let mut all: Vec<i64> = wa
        .unwrap()
        .iter()
        .chain(&wb.unwrap())
        .map(|e| e.seq)
        .collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 100);
}

async fn jobs_suite(a: &impl Store, b: &impl Store) {
    let t = |ms: i64| Timestamp(1_000_000 + ms);
    let hour = 3_600_000;
    // The first to ask runs it; another node, within the period, not.
    assert!(a.claim_job("retention", hour, t(0), "a").await.unwrap());
    assert!(!b.claim_job("retention", hour, t(1_000), "b").await.unwrap());
    // The node that ran it may again (it restarted).
    assert!(a.claim_job("retention", hour, t(2_000), "a").await.unwrap());
    // A period later, whoever asks first; then not the other.
    assert!(
        b.claim_job("retention", hour, t(2_000 + hour), "b")
            .await
            .unwrap()
    );
    assert!(
        !a.claim_job("retention", hour, t(3_000 + hour), "a")
            .await
            .unwrap()
    );
    // Jobs are apart.
    assert!(a.claim_job("backup", 60_000, t(10), "a").await.unwrap());
}

#[tokio::test]
async fn a_cluster_job_is_claimed_once_per_period() {
    let (_d, s) = sqlite().await;
    // One store, two node names: the rule is the database's.
    jobs_suite(&s, &s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_job_is_claimed_once_per_period_by_one_of_two_nodes_on_postgres() {
    let (a_dir, a, url) = postgres().await;
    let b_dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        a_dir.path().join("secret.key"),
        b_dir.path().join("secret.key"),
    )
    .unwrap();
    let b = pg_node(&b_dir, &url).await;
    jobs_suite(&a, &b).await;
    // Asked at the same moment by both: one wins.
    let (x, y) = tokio::join!(
        a.claim_job("race", 60_000, Timestamp(5), "a"),
        b.claim_job("race", 60_000, Timestamp(5), "b")
    );
    assert!(x.unwrap() ^ y.unwrap(), "exactly one node runs it");
}

/// A second node on the database of `a_dir`/`url` (the same key file).
async fn second_node(
    a_dir: &tempfile::TempDir,
    url: &str,
) -> (tempfile::TempDir, openturret_store::postgres::PgStore) {
    let b_dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        a_dir.path().join("secret.key"),
        b_dir.path().join("secret.key"),
    )
    .unwrap();
    let b = pg_node(&b_dir, url).await;
    (b_dir, b)
}

/// What an observer heard: committed changes as (event, object, id,
/// changes, actor), and how many times it was told changes were missed.
#[derive(Default)]
struct Heard {
    changes: Vec<(String, String, Option<String>, Vec<String>, String)>,
    missed: usize,
    notes: Vec<(String, Vec<u8>)>,
}

fn listen(s: &impl AuditStore) -> std::sync::Arc<std::sync::Mutex<Heard>> {
    let heard = std::sync::Arc::new(std::sync::Mutex::new(Heard::default()));
    let h = heard.clone();
    s.observe(std::sync::Arc::new(move |c: Change<'_>| {
        let mut h = h.lock().unwrap();
        match c {
            Change::Committed(r) => h.changes.push((
                r.event_type.clone(),
                r.object_type.clone(),
                r.object_id.clone(),
                r.changes.clone(),
                r.pii.actor.clone(),
            )),
            Change::Missed => h.missed += 1,
            Change::Signal { topic, note } => h.notes.push((topic.to_string(), note.to_vec())),
        }
    }));
    heard
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_change_on_one_node_is_heard_on_the_other_by_its_ids_only_on_postgres() {
    let (a_dir, a, url) = postgres().await;
    let (_b_dir, b) = second_node(&a_dir, &url).await;
    let on_a = listen(&a);
    let on_b = listen(&b);
    // Each listener starts by asking for a resync (it may have missed
    // what came before it listened).
    until("both listeners listen", || {
        on_a.lock().unwrap().missed == 1 && on_b.lock().unwrap().missed == 1
    })
    .await;
    let p = profile(&a, "Ann Example").await;
    let mut changed = audit("profile.updated");
    changed.object_type = "profile".into();
    changed.object_id = Some(p.id.0.to_string());
    changed.changes = vec!["password".into(), "name".into()];
    a.append_audit(changed).await.unwrap();
    until("B hears both of A's changes", || {
        on_b.lock().unwrap().changes.len() == 2
    })
    .await;
    let b_heard = on_b.lock().unwrap().changes.clone();
    assert_eq!(b_heard[0].0, "profile.created");
    assert_eq!(
        b_heard[1],
        (
            "profile.updated".to_string(),
            "profile".to_string(),
            Some(p.id.0.to_string()),
            vec!["password".to_string(), "name".to_string()],
            String::new(),
        ),
        "the ids and field names, no personal value (no actor, no address)"
    );
    // A heard its own changes once each, from its own commits.
    assert_eq!(on_a.lock().unwrap().changes.len(), 2);
    assert_eq!(on_a.lock().unwrap().changes[1].4, "tester");
    // A failed change is heard by nobody.
    let _ = a.delete_line(LineId(4242), audit("line.deleted")).await;
    // (PostgreSQL delivers notifications in commit order: a change A
    // commits after it is the next thing B hears.)
    a.append_audit(audit("marker")).await.unwrap();
    until("B hears A's change after the failed one", || {
        on_b.lock().unwrap().changes.len() >= 3
    })
    .await;
    {
        let heard = &on_b.lock().unwrap().changes;
        assert_eq!(heard.len(), 3);
        assert_eq!(heard[2].0, "marker", "{heard:?}");
    }
    // A burst larger than one notification's payload arrives whole.
    let burst: Vec<AuditRecord> = (0..400)
        .map(|i| {
            let mut r = audit("line.registered");
            r.object_type = "line".into();
            r.object_id = Some(i.to_string());
            r
        })
        .collect();
    b.append_audits(burst).await.unwrap();
    until("A hears the whole burst", || {
        on_a.lock().unwrap().changes.len() == 403
    })
    .await;
    assert_eq!(on_b.lock().unwrap().changes.len(), 403);
    // A note reaches the other node opened, and crossed the database
    // sealed (a listener of our own on the channel reads ciphertext).
    let mut spy = sqlx::postgres::PgListener::connect(&url).await.unwrap();
    spy.listen(openturret_store::postgres::notify::CHANNEL)
        .await
        .unwrap();
    a.signal("throttle", &[b"ann@10.0.0.7"]).await.unwrap();
    until("B hears A's note", || {
        !on_b.lock().unwrap().notes.is_empty()
    })
    .await;
    assert_eq!(
        on_b.lock().unwrap().notes,
        vec![("throttle".to_string(), b"ann@10.0.0.7".to_vec())]
    );
    assert!(
        on_a.lock().unwrap().notes.is_empty(),
        "not told to its sender"
    );
    let seen = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            let n = spy.recv().await.unwrap();
            if n.payload().contains("throttle") {
                return n.payload().to_string();
            }
        }
    })
    .await
    .unwrap();
    assert!(
        !seen.contains("ann") && !seen.contains("10.0.0.7"),
        "{seen}"
    );
}

#[tokio::test]
async fn a_listener_cut_off_by_the_server_resyncs_and_hears_again_on_postgres() {
    let (a_dir, a, url) = postgres().await;
    let (_b_dir, b) = second_node(&a_dir, &url).await;
    let on_b = listen(&b);
    until("B listens", || on_b.lock().unwrap().missed == 1).await;
    // The server ends B's listening connection (an administrator, a
    // failover, a network cut).
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    let ended: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE application_name = $1 AND datname = current_database()",
    )
    .bind(openturret_store::postgres::notify::LISTENER_NAME)
    .fetch_all(&admin)
    .await
    .unwrap();
    assert_eq!(ended, vec![true], "exactly one listener connection");
    // A change made while B may not be listening: B is told to re-read
    // everything once it listens again, then hears what follows.
    profile(&a, "Made While Away").await;
    until("B resyncs after listening again", || {
        on_b.lock().unwrap().missed == 2
    })
    .await;
    profile(&a, "Made After").await;
    until("B hears changes again", || {
        on_b.lock()
            .unwrap()
            .changes
            .iter()
            .filter(|c| c.0 == "profile.created")
            .count()
            >= 1
    })
    .await;
    admin.close().await;
}

#[tokio::test]
async fn a_line_is_leased_to_one_node_and_taken_over_when_its_lease_lapses_on_postgres() {
    let (a_dir, a, url) = postgres().await;
    let (_b_dir, b) = second_node(&a_dir, &url).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let l =
            LineFields::new(&format!("L{i}"), &format!("sip:{i}@pbx"), "1", "", "", "").unwrap();
        ids.push(a.create_line(l, None, audit("l")).await.unwrap().id);
    }
    let held = |v: &[LineLease]| v.iter().map(|l| (l.line, l.epoch)).collect::<Vec<_>>();
    // A asks first: every line is its own, at epoch 1; B gets none.
    let on_a = a.lease_lines("node-a", 1_500).await.unwrap();
    assert_eq!(held(&on_a), ids.iter().map(|i| (*i, 1)).collect::<Vec<_>>());
    assert!(
        on_a.iter()
            .all(|l| l.holder == "node-a" && l.remaining_ms > 1_000)
    );
    assert!(b.lease_lines("node-b", 1_500).await.unwrap().is_empty());
    // A new line goes to the active node, even when B asks first.
    let l = LineFields::new("L3", "sip:3@pbx", "1", "", "", "").unwrap();
    let fourth = a.create_line(l, None, audit("l")).await.unwrap().id;
    assert!(b.lease_lines("node-b", 1_500).await.unwrap().is_empty());
    let on_a = a.lease_lines("node-a", 1_500).await.unwrap();
    let mut want: Vec<(LineId, i64)> = ids.iter().map(|i| (*i, 1)).collect();
    want.push((fourth, 1));
    assert_eq!(held(&on_a), want, "renewing keeps the epoch");
    // A stops renewing: once its leases lapse, B takes them all, epoch 2.
    tokio::time::sleep(std::time::Duration::from_millis(1_700)).await;
    let on_b = b.lease_lines("node-b", 1_500).await.unwrap();
    let want: Vec<(LineId, i64)> = want.iter().map(|(i, _)| (*i, 2)).collect();
    assert_eq!(held(&on_b), want);
    // A comes back: it holds nothing.
    assert!(a.lease_lines("node-a", 1_500).await.unwrap().is_empty());
    // Both racing for lapsed leases: one takes every line, the other none.
    tokio::time::sleep(std::time::Duration::from_millis(1_700)).await;
    let (x, y) = tokio::join!(
        a.lease_lines("node-a", 1_500),
        b.lease_lines("node-b", 1_500)
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert!(
        (x.len(), y.len()) == (4, 0) || (x.len(), y.len()) == (0, 4),
        "{x:?} {y:?}"
    );
    // The holder gives up what it holds (it stops): the other takes it
    // at once.
    let ((holder, holder_name), (other, other_name)) = if x.is_empty() {
        ((&b, "node-b"), (&a, "node-a"))
    } else {
        ((&a, "node-a"), (&b, "node-b"))
    };
    holder.release_lines(holder_name).await.unwrap();
    assert_eq!(other.lease_lines(other_name, 1_500).await.unwrap().len(), 4);
    assert_eq!(a.line_leases().await.unwrap().len(), 4);
    // A deleted line loses its lease with it.
    a.delete_line(fourth, audit("line.deleted")).await.unwrap();
    assert_eq!(a.line_leases().await.unwrap().len(), 3);
}

#[tokio::test]
async fn one_sqlite_node_holds_every_line_and_keeps_no_lease() {
    let (_d, s) = sqlite().await;
    let l = LineFields::new("L1", "sip:1@pbx", "1", "", "", "").unwrap();
    let id = s.create_line(l, None, audit("l")).await.unwrap().id;
    let held = s.lease_lines("me", 15_000).await.unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!((held[0].line, held[0].holder.as_str()), (id, "me"));
    assert!(s.line_leases().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_half_open_listener_is_noticed_by_its_heartbeat_and_made_again_on_postgres() {
    let (a_dir, a, url) = postgres().await;
    // Node B reaches the database through a relay that can go silent.
    let (host_port, rest) = url.split_once('@').unwrap().1.split_once('/').unwrap();
    let relay = Relay::start(host_port.to_string()).await;
    let via = format!("postgres://postgres@{}/{rest}", relay.addr);
    let (_b_dir, b) = second_node(&a_dir, &via).await;
    let on_b = listen(&b);
    until("B listens", || on_b.lock().unwrap().missed == 1).await;
    // Every connection B has goes silent, none closes: B's listener hears
    // nothing more and is not told so.
    relay.silence();
    let t = std::time::Instant::now();
    profile(&a, "Made While Deaf").await;
    // Its own heartbeat does not come back: the listener is made again (a
    // new connection), and B resyncs.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    while on_b.lock().unwrap().missed < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the half-open listener was never noticed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let took = t.elapsed();
    eprintln!("a half-open listener was made again after {took:?}");
    // (Issue 19: within 30 s; by design 15 s of silence, checked every 5 s.)
    assert!(
        took < std::time::Duration::from_secs(30),
        "noticed after {took:?}"
    );
    profile(&a, "Made After").await;
    until("B hears changes again", || {
        on_b.lock()
            .unwrap()
            .changes
            .iter()
            .any(|c| c.0 == "profile.created")
    })
    .await;
}
