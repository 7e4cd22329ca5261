//! The live privacy report (SPEC §4): the reference's GDPR whitepaper,
//! generated from this deployment — every data category of SPEC §2 with
//! its record count, where it is stored, who can read it and how it is
//! protected; which collection features and interfaces are on; retention;
//! encryption; backups; the erasure ledger. Usable as the deployment's
//! record of processing.

use serde_json::{Value, json};

use crate::App;

/// Where the table of promises and the tests that prove them is published.
pub const PROOF_DOCUMENT: &str = "docs/privacy.md in the OpenTurret source of this version";

fn category(
    name: &str,
    fields: &str,
    records: i64,
    stored: &str,
    readers: &str,
    protection: &str,
) -> Value {
    json!({"category": name, "fields": fields, "records": records, "stored": stored, "readers": readers, "protection": protection})
}

pub async fn report(app: &App) -> anyhow::Result<Value> {
    let c = app.store.counts().await?;
    let s = app.store.get_settings().await?;
    let ledger = app.store.erasure_count()?;
    let chain = app.store.verify_audit().await?;
    let backup_dir = crate::backup::backup_dir(&app.config);
    let backups = crate::backup::list(&backup_dir).unwrap_or_default();
    let db_where = match &app.config.database.url {
        Some(url) => format!("PostgreSQL database {}", crate::config::redacted_url(url)),
        None => format!(
            "SQLite database {}",
            app.config.data_dir.join(crate::startup::DB_FILE).display()
        ),
    };
    let cdr_files = app.cdr.list().len();
    let cdr_where = match (s.cdr_enabled, s.cdr_store, s.cdr_files.as_str()) {
        (false, _, _) => format!("not produced (switched off); older records in {db_where}"),
        (true, true, "off") => db_where.clone(),
        (true, true, f) => format!("{db_where}; {f} files in {}", app.cdr.dir().display()),
        (true, false, "off") => "not kept: CTI stream only".to_string(),
        (true, false, f) => format!("{f} files in {}", app.cdr.dir().display()),
    };
    let categories = vec![
        category(
            "Administrators",
            "username, password",
            c.admins,
            &db_where,
            "administrators",
            "passwords as argon2id hashes",
        ),
        category(
            "Profiles",
            "profile name, profile / contacts / call-memory passwords, flags",
            c.profiles,
            &db_where,
            "names: every client (the login list); the rest: administrators",
            "passwords as argon2id hashes",
        ),
        category(
            "Local contacts",
            "name, number, field 3, field 4",
            c.local_contacts,
            &db_where,
            "the profile's user (behind the contacts password), administrators",
            "server-side authorisation per profile",
        ),
        category(
            "Speed dial keys",
            "kind, position, name, number",
            c.speed_dials,
            &db_where,
            "the profile's user, administrators",
            "server-side authorisation per profile",
        ),
        category(
            "Global contacts",
            "name, number, field 3, field 4",
            c.global_contacts,
            &db_where,
            "every client user, administrators",
            "TLS in transit",
        ),
        category(
            "Lines",
            "name, URI, username, password, display name, alternate text, preferred identity",
            c.lines,
            &db_where,
            "the Multi-Line Controller; clients see display name and alternate text only",
            "passwords encrypted (XChaCha20-Poly1305, key outside the database), never shown back",
        ),
        category(
            "Line keys",
            "profile, line, position",
            c.line_assignments,
            &db_where,
            "the profile's user, administrators",
            "",
        ),
        category(
            "Call memory",
            "number, party name, time, direction, answered, answered by",
            c.call_memory_entries,
            &db_where,
            "only the profile's user, behind the call-memory password; never administrators",
            "sealed per profile (X25519 + XChaCha20-Poly1305); the key wrapped under the user's passwords",
        ),
        category(
            "Call data records",
            &format!(
                "only the enabled fields: {}",
                s.cdr_fields.to_list().replace(',', ", ")
            ),
            c.cdrs,
            &cdr_where,
            "external applications whose API key has CDR access (stream and API), and whoever picks up the files",
            "TLS in transit; files mode 0600",
        ),
        category(
            "Record of forwarding to voice recorders",
            "call, line, profile holding the call, recorder, time, outcome (no number, no name)",
            c.recording_log,
            &db_where,
            "administrators (GET /api/v1/recordings); kept as long as CDRs; the profile is removed when its person is erased",
            "",
        ),
        category(
            "Audit log",
            "user account, client address, computer name, time, level, event, object, changed fields",
            c.audit_entries,
            &db_where,
            "administrators",
            "hash-chained (HMAC-SHA-256); personal values erasable without breaking the chain",
        ),
        category(
            "Consent records",
            "profile, purpose, channel, date, recorded by",
            c.consents,
            &db_where,
            "administrators",
            "",
        ),
    ];
    let retention = |days: Option<u32>, oldest: Option<i64>| json!({"max_age_days": days, "oldest_record": oldest.map(|t| openturret_domain::Timestamp(t).rfc3339())});
    Ok(json!({
        "generated_at": openturret_domain::Timestamp::now().rfc3339(),
        "deployment": {"host": app.host, "version": env!("CARGO_PKG_VERSION"), "data_directory": app.config.data_dir.display().to_string()},
        "categories": categories,
        "collection": {
            "profiles_collecting_call_memory": c.profiles_collecting_call_memory,
            "master_password_enabled": s.master_password_enabled,
            "global_contacts_changeable_by_clients": s.global_contacts_changeable,
        },
        "pseudonymisation": s.pseudonymisation.as_str(),
        "cdr_output": {
            "enabled": s.cdr_enabled,
            "kept_in_database": s.cdr_store,
            "fields": s.cdr_fields.iter().map(|f| f.as_str()).collect::<Vec<_>>(),
            "files": s.cdr_files.as_str(),
            "files_directory": app.cdr.dir().display().to_string(),
            "files_present": cdr_files,
            "stream": "CTI events of kind cdr, for API keys with CDR access",
        },
        "interfaces": {"cti": s.cti_enabled, "api": s.api_enabled, "recorder_forwarding": s.recorder_forwarding_enabled,
            "api_keys_active": app.store.list_api_keys().await?.iter().filter(|k| k.is_active(openturret_domain::Timestamp::now())).count()},
        "between_nodes": between_nodes(app),
        "telephony": {
            "mlc_running": crate::telephony::running(app),
            "sip_listen": app.mlc.local_addr().map(|a| a.to_string()),
            "controllers": crate::telephony::members(app).iter().map(|m| m.json()).collect::<Vec<_>>(),
            "component_link": "turret mlc processes connect over mutual TLS (certificates of the internal CA), and receive the passwords of the lines they serve",
            "signalling": "SIP to each PBX over the transport its line names: TLS for sips: or ;transport=tls lines; over UDP or TCP, numbers and names travel unencrypted on that network",
            "media": "RTP (G.711) anchored at the MLC: SRTP (AES_CM_128_HMAC_SHA1_80, SDES keys per call) on lines over TLS whose PBX takes it, plain RTP otherwise",
        },
        "recording": recording_section(app, &s).await?,
        "voice": {
            "audio_stored": false,
            "what": "the system never stores audio: the MLC relays each call's G.711 packets between the PBX and the browser of the turret that holds the call, and keeps no frame beyond its jitter buffer (at most a second, in memory)",
            "turret_media": "WebRTC: ICE, then DTLS-SRTP (str0m, aws-lc-rs); each call's session has its own DTLS certificate and so its own SRTP keys, made when the turret attaches and dropped when the call ends; nothing of them is written anywhere",
            "media_ports": format!("UDP {}-{}", app.config.media.port_min, app.config.media.port_max),
            "sessions_now": app.mlc.voice_sessions(),
            "dtmf": "digits typed on a speech unit's keypad go to the far end as RFC 4733 telephone events and are not recorded",
        },
        "retention": {
            "call_memory": retention(s.retention_call_memory_days, c.oldest_call_memory),
            "cdrs": retention(s.retention_cdr_days, c.oldest_cdr),
            "audit": retention(s.retention_audit_days, None),
            "error_log": retention(s.retention_audit_days, None),
            "call_memory_fifo_per_profile": openturret_domain::model::CALL_MEMORY_CAPACITY,
        },
        "encryption": {
            "transport": "TLS 1.3 only (rustls)",
            "passwords": "argon2id (m=19 MiB, t=2, p=1)",
            "line_passwords": "XChaCha20-Poly1305 under a key file outside the database",
            "call_memory": "sealed per profile (X25519, HKDF-SHA-256, XChaCha20-Poly1305)",
            "backups": "AES-256-GCM STREAM in 64 KiB chunks; each backup's key from HKDF-SHA-256 of argon2id (64 MiB, t=3) of its passphrase, or sealed (X25519) to the installation's backup key, whose private half is wrapped under its passphrase (argon2id, 64 MiB, t=3)",
            "erased_rows": erased_rows(app),
        },
        "backups": {
            "directory": backup_dir.display().to_string(),
            "count": backups.len(),
            "latest": backups.first().map(|(_, m)| openturret_domain::Timestamp(m.created_at).rfc3339()),
            "backup_key": crate::backup::load_key(&app.config.data_dir).ok().flatten().map(|k| k.fingerprint()),
        },
        "erasure_ledger": {"entries": ledger, "kept_outside_backups": true},
        "audit": {"entries": c.audit_entries, "chain_intact": chain.broken.is_none()},
        "error_log": {
            "what": "what the components report (failed backups, PBXs unreachable, lines refused, links lost, disk space, refusals in aggregate), at a level, identical events folded with a count",
            "personal_data": false,
            "why_none": "events name lines by id, PBXs by address, MLCs and API keys by name; never a number, a person, a client address or a secret (docs/error-log.md)",
            "kept": "as long as audit entries (the log retention), by last occurrence",
        },
        "proof": {
            "document": PROOF_DOCUMENT,
            "what": "for each item of personal data and each property (protected at rest, access rule enforced, exportable to the subject, erasable with backups included, retention enforced), the test that fails if it breaks",
        },
    }))
}

/// What becomes of an erased row's bytes, on this deployment's backend.
fn erased_rows(app: &App) -> &'static str {
    if app.store.is_shared() {
        "gone for every query at once; on PostgreSQL the bytes stay in the table's dead tuples until the next (auto)vacuum and in the cluster's WAL until it is recycled"
    } else {
        "secure_delete on; WAL truncated after each erasure"
    }
}

/// What several nodes on one database tell each other (issue 19).
fn between_nodes(app: &App) -> Value {
    if !app.store.is_shared() {
        return json!({"shared": false, "what": "one node: nothing leaves this process but through its interfaces"});
    }
    json!({
        "shared": true,
        "this_node": app.node,
        "other_nodes": app.peers.nodes(),
        "notifications": "event types, object ids and the names of changed fields, in clear through PostgreSQL",
        "notes": "login outcomes (name tried, client address) for the shared limits; CTI events; erased names to take out of each node's CDR files; calls (caller's number and name) and line states; turrets' operations on calls another node carries and their answers",
        "protection": "notes sealed (XChaCha20-Poly1305) under a key derived from the master key, which only the nodes hold; PostgreSQL relays ciphertext",
        "stored": false,
    })
}

/// Recorder forwarding (issue 18): whether calls go to voice recorders,
/// which lines' calls, to which recorders, since when.
async fn recording_section(
    app: &App,
    s: &openturret_domain::model::Settings,
) -> anyhow::Result<serde_json::Value> {
    let lines = app.store.list_lines().await?;
    let recorders = app.store.list_recorders().await?;
    // When forwarding was last switched on or off: the newest settings
    // change that names it.
    let switched = app
        .store
        .list_audit(&openturret_store::AuditFilter {
            object_type: Some("settings".into()),
            limit: 1000,
            ..Default::default()
        })
        .await?
        .into_iter()
        .find(|e| {
            e.record
                .changes
                .iter()
                .any(|c| c == "recorder_forwarding_enabled")
        })
        .map(|e| e.record.at.rfc3339());
    Ok(json!({
        "enabled": s.recorder_forwarding_enabled,
        "since": switched,
        "scope": if s.recording_all_lines { "all lines" } else { "lines marked recorded" },
        "lines": lines.iter().filter(|l| s.records(l.fields.recorded))
            .map(|l| json!({"id": l.id.0, "name": l.fields.name})).collect::<Vec<_>>(),
        "recorders": recorders.iter().map(|r| json!({"name": r.fields.name, "uri": r.fields.uri,
            "transport": r.fields.transport.as_str(), "since": r.created_at.rfc3339()})).collect::<Vec<_>>(),
        "what": "each recorded call's audio, both directions as separate streams, and its metadata (the line, the profile holding the call, the far end's number and name, start and stop times) go to every recorder over SIPREC (RFC 7866); numbers are pseudonymised there when pseudonymisation is on. The system itself keeps no audio",
        "protocol": "SIP to each recorder over its transport (UDP, TCP or TLS); media as RTP, or as SRTP (SDES keys per stream and session) to a recorder over TLS",
    }))
}
