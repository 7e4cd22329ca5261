//! Subject access export (SPEC §4): everything held about one profile, as a
//! ZIP with a manifest, machine-readable JSON, CSV for the tables and a
//! page people can read. Call memory is included only when the profile's
//! user has unlocked it in a client session; an administrator's export
//! never holds it (they cannot open it).

use maud::{DOCTYPE, html};
use openturret_domain::model::CallMemoryEntry;
use openturret_domain::{CallMemoryId, ProfileId, Timestamp};
use openturret_store::AuditFilter;
use serde_json::{Value, json};

use crate::App;
use crate::zip::Zip;

fn csv_of(headers: &[&str], rows: &[Vec<String>]) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record(headers);
    for r in rows {
        let _ = w.write_record(
            r.iter()
                .map(|c| openturret_domain::cell::escape(c).into_owned()),
        );
    }
    w.into_inner().unwrap_or_default()
}

/// Rows as JSON objects keyed by their headers.
fn to_objects(headers: &[&str], rows: &[Vec<String>]) -> Vec<Value> {
    rows.iter()
        .map(|r| {
            Value::Object(
                headers
                    .iter()
                    .zip(r)
                    .map(|(h, v)| (h.to_string(), json!(v)))
                    .collect(),
            )
        })
        .collect()
}

/// The ZIP of an export: `files` and a `manifest.json` made of `about`
/// (who the export is of) plus the format, time, generator and file list.
fn package(
    mut about: Value,
    generated: &str,
    files: &[(String, Vec<u8>)],
) -> anyhow::Result<Vec<u8>> {
    about["format"] = json!(1);
    about["generated_at"] = json!(generated);
    about["generator"] = json!(format!("OpenTurret {}", env!("CARGO_PKG_VERSION")));
    about["files"] = files
        .iter()
        .map(|(n, d)| json!({"name": n, "bytes": d.len()}))
        .collect();
    let mut zip = Zip::default();
    zip.add("manifest.json", &serde_json::to_vec_pretty(&about)?);
    for (name, data) in files {
        zip.add(name, data);
    }
    Ok(zip.finish())
}

fn table(title: &str, headers: &[&str], rows: &[Vec<String>]) -> maud::Markup {
    html! {
        h2 { (title) " (" (rows.len()) ")" }
        @if rows.is_empty() { p { "None." } } @else {
            table {
                thead { tr { @for h in headers { th { (h) } } } }
                tbody { @for r in rows { tr { @for c in r { td { (c) } } } } }
            }
        }
    }
}

/// In an audit entry's address and computer-name cells when they are not
/// the subject's.
const WITHHELD: &str = "(an administrator's; withheld)";

/// Why some audit entries carry no address or computer name.
const AUDIT_NOTE: &str = "Each audit event's client address and computer name (as the client \
    claimed it) are given for what you did yourself, from your turret. On events an \
    administrator caused, they are the administrator's, not yours, and are withheld.";

/// Builds the export of `pid`. `call_memory`: the user's unlocked entries,
/// or `None` (never for an administrator). `contacts`: whether the local
/// contacts go in (a turret whose contacts are still locked behind the
/// contacts password gets none).
pub async fn export(
    app: &App,
    pid: ProfileId,
    call_memory: Option<Vec<(CallMemoryId, CallMemoryEntry)>>,
    contacts: bool,
) -> anyhow::Result<Vec<u8>> {
    let with_contacts = contacts;
    let p = app.store.get_profile(pid).await?;
    let contacts = if with_contacts {
        app.store.list_local_contacts(pid).await?
    } else {
        Vec::new()
    };
    let keys = app.store.list_speed_dials(pid).await?;
    let line_keys = app.store.list_profile_lines(pid).await?;
    let lines = app.store.list_lines().await?;
    let consents = app.store.list_consents(Some(pid)).await?;
    let cdrs = app
        .store
        .list_cdrs(&openturret_store::CdrFilter {
            profile: Some(pid),
            limit: 100_000,
            ..Default::default()
        })
        .await?;
    let forwarded = app
        .store
        .list_recording_log(Timestamp(0), Timestamp(i64::MAX), Some(pid), 100_000)
        .await?;
    let audit = app
        .store
        .list_audit(&AuditFilter {
            about_profile: Some(pid.0),
            limit: 100_000,
            ..Default::default()
        })
        .await?;

    let contact_rows: Vec<Vec<String>> = contacts
        .iter()
        .map(|c| {
            vec![
                c.fields.name.clone(),
                c.fields.number.clone(),
                c.fields.field3.clone(),
                c.fields.field4.clone(),
            ]
        })
        .collect();
    let key_rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            vec![
                k.fields.kind.as_str().into(),
                k.fields.position.to_string(),
                k.fields.name.clone(),
                k.fields.number.clone(),
            ]
        })
        .collect();
    let line_rows: Vec<Vec<String>> = line_keys
        .iter()
        .map(|k| {
            let l = lines.iter().find(|l| l.id == k.line_id);
            vec![
                k.position.to_string(),
                l.map(|l| l.fields.display_name.clone()).unwrap_or_default(),
                l.map(|l| l.fields.alternate_text.clone())
                    .unwrap_or_default(),
            ]
        })
        .collect();
    let consent_rows: Vec<Vec<String>> = consents
        .iter()
        .map(|c| {
            vec![
                c.purpose.clone(),
                c.channel.as_str().into(),
                c.given_at.rfc3339(),
                c.recorded_by.clone(),
            ]
        })
        .collect();
    let forwarded_rows: Vec<Vec<String>> = forwarded
        .iter()
        .map(|e| {
            let line = e
                .line_id
                .and_then(|l| lines.iter().find(|x| x.id == l))
                .map(|l| l.fields.name.clone())
                .unwrap_or_default();
            vec![
                e.at.rfc3339(),
                line,
                e.recorder_id.0.to_string(),
                e.outcome.clone(),
            ]
        })
        .collect();
    let cdr_rows: Vec<Vec<String>> = cdrs
        .iter()
        .map(|c| {
            vec![
                c.started_at.map(Timestamp::rfc3339).unwrap_or_default(),
                c.direction
                    .map(|d| d.as_str().to_string())
                    .unwrap_or_default(),
                c.calling_number.clone().unwrap_or_default(),
                c.called_number.clone().unwrap_or_default(),
                c.duration_ms
                    .map(|d| (d / 1000).to_string())
                    .unwrap_or_default(),
            ]
        })
        .collect();
    // The address and computer name of an entry are the subject's only
    // when the subject acted (a login from their turret); on an entry made
    // by an administrator they are the administrator's, and withheld.
    let own = format!("profile:{}", pid.0);
    let audit_rows: Vec<Vec<String>> = audit
        .iter()
        .map(|e| {
            let r = &e.record;
            let theirs = r.pii.actor == own;
            vec![
                r.at.rfc3339(),
                r.event_type.clone(),
                r.object_type.clone(),
                r.object_id.clone().unwrap_or_default(),
                r.changes.join(" "),
                r.pii.actor.clone(),
                if theirs {
                    r.pii.client_ip.clone()
                } else {
                    WITHHELD.into()
                },
                if theirs {
                    r.pii.client_host.clone()
                } else {
                    WITHHELD.into()
                },
            ]
        })
        .collect();
    let cm_rows: Option<Vec<Vec<String>>> = call_memory.as_ref().map(|entries| {
        entries
            .iter()
            .map(|(_, e)| {
                vec![
                    e.at.rfc3339(),
                    e.direction.as_str().into(),
                    e.number.clone(),
                    e.name.clone(),
                    match (e.answered, e.reason.is_empty()) {
                        (true, _) => "answered".into(),
                        (false, true) => "unanswered".into(),
                        (false, false) => format!("unanswered: {}", e.reason),
                    },
                    e.duration_ms
                        .map(|d| (d / 1000).to_string())
                        .unwrap_or_default(),
                    e.answered_by
                        .map(|l| l.as_str().to_string())
                        .unwrap_or_default(),
                ]
            })
            .collect()
    });

    const CONTACT: [&str; 4] = ["name", "number", "field3", "field4"];
    const KEY: [&str; 4] = ["kind", "position", "name", "number"];
    const LINE: [&str; 3] = ["position", "display_name", "alternate_text"];
    const CONSENT: [&str; 4] = ["purpose", "channel", "given_at", "recorded_by"];
    const CDR: [&str; 5] = [
        "started_at",
        "direction",
        "calling_number",
        "called_number",
        "duration_s",
    ];
    const FORWARDED: [&str; 4] = ["at", "line", "recorder_id", "outcome"];
    const AUDIT: [&str; 8] = [
        "at",
        "event",
        "object_type",
        "object_id",
        "changed_fields",
        "actor",
        "client_ip",
        "client_host_claimed",
    ];
    const CM: [&str; 7] = [
        "at",
        "direction",
        "number",
        "name",
        "result",
        "duration_s",
        "answered_by",
    ];
    let generated = Timestamp::rfc3339(Timestamp::now());
    let subject = json!({
        "profile": {
            "id": p.id.0, "name": p.name, "created_at": p.created_at.rfc3339(), "updated_at": p.updated_at.rfc3339(),
            "has_contacts_password": p.has_contacts_password, "has_call_memory_password": p.has_call_memory_password,
            "collect_call_memory": p.flags.collect_call_memory, "allow_call_memory_deletion": p.flags.allow_call_memory_deletion,
            "call_memory_password_protected": p.flags.call_memory_password_protected,
        },
        "local_contacts": with_contacts.then(|| to_objects(&CONTACT, &contact_rows)),
        "speed_dials": to_objects(&KEY, &key_rows),
        "line_keys": to_objects(&LINE, &line_rows),
        "consents": to_objects(&CONSENT, &consent_rows),
        "call_data_records": to_objects(&CDR, &cdr_rows),
        "calls_forwarded_to_recorders": to_objects(&FORWARDED, &forwarded_rows),
        "audit_events": to_objects(&AUDIT, &audit_rows),
        "call_memory": cm_rows.as_ref().map(|r| to_objects(&CM, r)),
    });
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "Data held about " (p.name) } }
            body {
                h1 { "Data held about " (p.name) }
                p { "Exported " (generated) " from OpenTurret. Passwords are held only as one-way hashes and are not included." }
                @if call_memory.is_none() {
                    p { "Call memory is sealed: only the profile's user can open it, so this export, made without their unlock, does not include it." }
                }
                @if with_contacts {
                    (table("Local contacts", &CONTACT, &contact_rows))
                } @else {
                    p { "The local contacts are behind the contacts password, which was not given in this session, so this export does not include them. Unlock the contacts and export again to include them." }
                }
                (table("Speed dial keys", &KEY, &key_rows))
                (table("Line keys", &LINE, &line_rows))
                (table("Consents", &CONSENT, &consent_rows))
                (table("Call data records", &CDR, &cdr_rows))
                (table("Calls forwarded to voice recorders", &FORWARDED, &forwarded_rows))
                @if let Some(rows) = &cm_rows { (table("Call memory", &CM, rows)) }
                (table("Audit events", &AUDIT, &audit_rows))
                p { (AUDIT_NOTE) }
            }
        }
    };
    let mut files: Vec<(String, Vec<u8>)> = vec![
        ("subject.json".into(), serde_json::to_vec_pretty(&subject)?),
        ("index.html".into(), page.into_string().into_bytes()),
        ("speed_dials.csv".into(), csv_of(&KEY, &key_rows)),
        ("line_keys.csv".into(), csv_of(&LINE, &line_rows)),
        ("consents.csv".into(), csv_of(&CONSENT, &consent_rows)),
        ("call_data_records.csv".into(), csv_of(&CDR, &cdr_rows)),
        (
            "calls_forwarded_to_recorders.csv".into(),
            csv_of(&FORWARDED, &forwarded_rows),
        ),
        ("audit_events.csv".into(), csv_of(&AUDIT, &audit_rows)),
    ];
    if with_contacts {
        files.push(("local_contacts.csv".into(), csv_of(&CONTACT, &contact_rows)));
    }
    if let Some(rows) = &cm_rows {
        files.push(("call_memory.csv".into(), csv_of(&CM, rows)));
    }
    let about = json!({
        "profile_id": p.id.0,
        "includes_call_memory": call_memory.is_some(),
        "includes_local_contacts": with_contacts,
        "audit_client_details": AUDIT_NOTE,
    });
    package(about, &generated, &files)
}

/// The export of what the system holds about an administrator (GDPR
/// Art. 15, issue 15): the account (never its password hash) and the audit
/// trail of what they did, with the client address and the computer name
/// their client claimed.
pub async fn export_admin(app: &App, id: openturret_domain::AdminId) -> anyhow::Result<Vec<u8>> {
    let a = app.store.get_admin(id).await?;
    let audit = app
        .store
        .list_audit(&AuditFilter {
            actor: Some(a.username.clone()),
            limit: 100_000,
            ..Default::default()
        })
        .await?;
    const AUDIT: [&str; 8] = [
        "at",
        "event",
        "object_type",
        "object_id",
        "changed_fields",
        "success",
        "client_ip",
        "client_host_claimed",
    ];
    let rows: Vec<Vec<String>> = audit
        .iter()
        .map(|e| {
            let r = &e.record;
            vec![
                r.at.rfc3339(),
                r.event_type.clone(),
                r.object_type.clone(),
                r.object_id.clone().unwrap_or_default(),
                r.changes.join(" "),
                r.success.to_string(),
                r.pii.client_ip.clone(),
                r.pii.client_host.clone(),
            ]
        })
        .collect();
    let generated = Timestamp::rfc3339(Timestamp::now());
    let account = json!({
        "id": a.id.0, "username": a.username, "enabled": a.enabled,
        "must_change_password": a.must_change_password,
        "created_at": a.created_at.rfc3339(), "updated_at": a.updated_at.rfc3339(),
    });
    let subject = json!({"administrator": account, "audit_events": to_objects(&AUDIT, &rows)});
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "Data held about administrator " (a.username) } }
            body {
                h1 { "Data held about administrator " (a.username) }
                p { "Exported " (generated) " from OpenTurret. The password is held only as a one-way hash and is not included. "
                    "The computer names are those the client claimed; nothing verifies them." }
                (table("Audit events (as actor)", &AUDIT, &rows))
            }
        }
    };
    let files: Vec<(String, Vec<u8>)> = vec![
        ("subject.json".into(), serde_json::to_vec_pretty(&subject)?),
        ("index.html".into(), page.into_string().into_bytes()),
        ("audit_events.csv".into(), csv_of(&AUDIT, &rows)),
    ];
    package(json!({"administrator_id": a.id.0}), &generated, &files)
}

/// Base64 (standard alphabet, padded), to carry the ZIP in the client
/// protocol's JSON.
pub fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_the_rfc_examples() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(super::base64(i.as_bytes()), o);
        }
    }
}
