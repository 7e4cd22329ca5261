//! The MLC's side of the component link between the System Manager and
//! `turret mlc` processes (SPEC §1: mutual TLS between server
//! components), and the link's message codec, which both sides use. The
//! System Manager's side (the listener, enrolment and the internal CA) is
//! the server's.
//!
//! **Protocol.** One WebSocket per MLC, JSON text messages with a type
//! `t`. The MLC says `hello` and gets `welcome` (its name and the base of
//! its call ids). It asks for its `lines` (with their passwords: it must
//! register them) and for one `line` when told `line_changed`, and it
//! `resync`s when told to (lines moving between MLCs). It reports
//! `line_state`, `call` (changed or ended), `rejected_here` and
//! `transferred`, in order, asks `flush` before it stops, and asks
//! `recording` for a call that connects (whether and where it is
//! recorded). It sends `events` for the error log (folded, without
//! its own name, which the System Manager takes from the link) and says
//! `stopping` before a planned stop. The System
//! Manager sends `op` (dial, answer, reject, hangup, hold, retrieve,
//! transfer) and the MLC answers with `result`.

use std::sync::Arc;

use anyhow::Context;
use openturret_domain::model::{AnswerMode, Event, EventLevel, Folded, Line, LineFields};
use openturret_domain::secret::Secret;
use openturret_domain::{LineId, Timestamp};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};

use crate::LineState;

pub mod remote;

pub use remote::{MlcOptions, run_mlc};

/// The link protocol's version.
pub const VERSION: u64 = 1;

/// Each side of the link says `{"t": "beat"}` this often...
pub const BEAT: std::time::Duration = std::time::Duration::from_secs(1);
/// ...and takes the link for lost after this long without a word from the
/// other: a half-open link (a cut network closes nothing) is noticed, so a
/// `turret mlc` whose System Manager is gone stops serving its lines well
/// before another node's MLC takes them (a lease lapses after 15 s).
pub const SILENT: std::time::Duration = std::time::Duration::from_secs(5);

/// The one cryptographic provider of the link (TLS 1.3, ring).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The trust anchors of the internal CA, from its PEM certificate.
pub fn roots(ca_pem: &[u8]) -> anyhow::Result<Arc<rustls::RootCertStore>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(c.context("while reading the CA certificate")?)?;
    }
    Ok(Arc::new(roots))
}

/// The codes a call operation can fail with (they travel as text).
pub fn known_code(c: &str) -> &'static str {
    const CODES: &[&str] = &[
        "not_found",
        "not_ringing",
        "not_answered",
        "forbidden",
        "invalid",
        "line_down",
        "no_line",
        "refused",
        "no_answer",
        "unavailable",
        "internal",
    ];
    CODES.iter().find(|x| **x == c).copied().unwrap_or("failed")
}

pub fn state_json(s: &LineState) -> Value {
    json!({"state": s.name(), "reason": s.reason()})
}

pub fn state_of(v: &Value) -> LineState {
    match v["state"].as_str().unwrap_or_default() {
        "registered" => LineState::Registered,
        "registering" => LineState::Registering,
        "failing" => LineState::Failing(v["reason"].as_str().unwrap_or_default().to_string()),
        "unknown" => LineState::Unknown,
        _ => LineState::Unregistered,
    }
}

pub fn line_json((l, password): &(Line, Option<Secret>)) -> Value {
    let f = &l.fields;
    json!({"id": l.id.0, "name": f.name, "uri": f.uri, "username": f.username,
        "display_name": f.display_name, "alternate_text": f.alternate_text,
        "preferred_identity": f.preferred_identity, "answer_mode": f.answer_mode.as_str(),
        "peers": f.peers, "created_at": l.created_at.0, "updated_at": l.updated_at.0,
        "password": password.as_ref().map(|p| p.expose().to_string())})
}

pub fn line_of_json(v: &Value) -> Option<(Line, Option<Secret>)> {
    let s = |k: &str| v[k].as_str().unwrap_or_default();
    let fields = LineFields::new(
        s("name"),
        s("uri"),
        s("username"),
        s("display_name"),
        s("alternate_text"),
        s("preferred_identity"),
    )
    .ok()?
    .with_answer_mode(AnswerMode::parse(s("answer_mode")).unwrap_or(AnswerMode::Manual))
    .with_peers(s("peers"))
    .ok()?;
    Some((
        Line {
            id: LineId(v["id"].as_i64()?),
            fields,
            has_password: v["password"].is_string(),
            created_at: Timestamp(v["created_at"].as_i64().unwrap_or_default()),
            updated_at: Timestamp(v["updated_at"].as_i64().unwrap_or_default()),
        },
        v["password"].as_str().map(Secret::new),
    ))
}

/// A call's recording (issue 18) as it travels, recorders' passwords
/// included (the link is mutual TLS, as for line passwords).
pub fn recording_json(r: &crate::Recording) -> Value {
    json!({"line_aor": r.line_aor, "line_name": r.line_name, "profile_name": r.profile_name,
        "remote_number": r.remote_number, "remote_name": r.remote_name,
        "notice": r.notice.as_ref().map(|n| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .encode(n.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>())
        }),
        "recorders": r.recorders.iter().map(|t| json!({"id": t.id, "name": t.name, "uri": t.uri,
            "transport": t.transport, "username": t.username,
            "password": t.password.as_ref().map(|p| p.expose().to_string())})).collect::<Vec<_>>()})
}

pub fn recording_of_json(v: &Value) -> Option<crate::Recording> {
    let s = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
    Some(crate::Recording {
        recorders: v["recorders"]
            .as_array()?
            .iter()
            .map(|t| crate::RecorderTarget {
                id: t["id"].as_i64().unwrap_or_default(),
                name: s(t, "name"),
                uri: s(t, "uri"),
                transport: s(t, "transport"),
                username: s(t, "username"),
                password: t["password"].as_str().map(Secret::new),
            })
            .collect(),
        line_aor: s(v, "line_aor"),
        line_name: s(v, "line_name"),
        profile_name: s(v, "profile_name"),
        remote_number: s(v, "remote_number"),
        remote_name: s(v, "remote_name"),
        notice: v["notice"].as_str().and_then(|b| {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD.decode(b).ok()?;
            Some(std::sync::Arc::new(
                bytes
                    .chunks_exact(2)
                    .map(|c| i16::from_le_bytes([c[0], c[1]]))
                    .collect(),
            ))
        }),
    })
}

/// Most events one `events` message carries, and takes.
pub const MAX_EVENTS: usize = 1024;

/// Events for the error log as they travel (the component is left out:
/// the System Manager names the MLC from its link).
pub fn events_json(events: &[Folded]) -> Value {
    Value::Array(
        events
            .iter()
            .take(MAX_EVENTS)
            .map(|f| {
                json!({"level": f.event.level.as_str(), "type": f.event.event_type,
                    "object": f.event.object, "message": f.event.message,
                    "properties": f.event.properties, "count": f.count,
                    "first_at": f.first_at.0, "last_at": f.last_at.0})
            })
            .collect(),
    )
}

/// Events from an MLC, bounded as [`Event`] bounds them; what is not an
/// event is skipped.
pub fn events_of_json(v: &Value) -> Vec<Folded> {
    let Some(items) = v.as_array() else {
        return Vec::new();
    };
    items
        .iter()
        .take(MAX_EVENTS)
        .filter_map(|e| {
            let level = EventLevel::parse(e["level"].as_str()?)?;
            let mut event = Event::new(
                level,
                e["type"].as_str()?,
                e["object"].as_str().unwrap_or_default(),
                e["message"].as_str()?,
            );
            for (k, p) in e["properties"].as_object().into_iter().flatten() {
                if let Some(p) = p.as_str() {
                    event = event.with(k, p);
                }
            }
            let first_at = Timestamp(e["first_at"].as_i64()?);
            Some(Folded {
                event,
                count: e["count"].as_u64()?.max(1),
                first_at,
                last_at: Timestamp(e["last_at"].as_i64()?.max(first_at.0)),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CallView;
    use crate::call::CallState;
    use openturret_domain::ProfileId;
    use openturret_domain::model::Direction;

    /// Version 1 of the link, as deployed MLCs speak it: these texts may
    /// not change without a new version.
    #[test]
    fn the_link_codec_keeps_version_1_to_the_byte() {
        let fields = LineFields::new(
            "Rates",
            "sip:1001@pbx.example",
            "1001",
            "Rates desk",
            "RATES",
            "",
        )
        .unwrap()
        .with_answer_mode(AnswerMode::Automatic)
        .with_peers("10.0.0.0/8")
        .unwrap();
        let line = (
            Line {
                id: LineId(7),
                fields,
                has_password: true,
                created_at: Timestamp(1),
                updated_at: Timestamp(2),
            },
            Some(Secret::new("pw")),
        );
        let text = line_json(&line).to_string();
        assert_eq!(
            text,
            r#"{"alternate_text":"RATES","answer_mode":"automatic","created_at":1,"display_name":"Rates desk","id":7,"name":"Rates","password":"pw","peers":"10.0.0.0/8","preferred_identity":"","updated_at":2,"uri":"sip:1001@pbx.example","username":"1001"}"#
        );
        let (back, pw) = line_of_json(&serde_json::from_str(&text).unwrap()).unwrap();
        assert_eq!(
            (back.id, back.fields, pw.unwrap().expose()),
            (line.0.id, line.0.fields, "pw")
        );

        let view = CallView {
            id: 1 << 40 | 3,
            line: LineId(7),
            direction: Direction::Incoming,
            state: CallState::Connected,
            remote_number: "2000".into(),
            remote_display: "Alice".into(),
            owner: Some(ProfileId(4)),
            speech_unit: "handset-1".into(),
            end_reason: String::new(),
            started: Timestamp(10),
            connected_at: Some(Timestamp(11)),
            line_number: "1001".into(),
            ended_at: None,
            early_media: false,
            recording: None,
        };
        let text = view.to_json().to_string();
        assert_eq!(
            text,
            r#"{"connected_at":11,"direction":"in","end_reason":"","ended_at":null,"id":1099511627779,"line":7,"line_number":"1001","owner":4,"remote_display":"Alice","remote_number":"2000","speech_unit":"handset-1","started":10,"state":"connected"}"#
        );
        let back = CallView::from_json(&serde_json::from_str(&text).unwrap()).unwrap();
        assert_eq!(back.to_json().to_string(), text);
        assert!(!back.early_media);
        // Early media is added only when there is some, so the bytes
        // above are what a version-1 peer sends and reads.
        let early = CallView {
            state: CallState::Alerting,
            early_media: true,
            ..back
        };
        let text = early.to_json().to_string();
        assert!(text.ends_with(r#""state":"alerting"}"#) && text.contains(r#""early_media":true"#));
        assert!(
            CallView::from_json(&serde_json::from_str(&text).unwrap())
                .unwrap()
                .early_media
        );

        let failing = LineState::Failing("403 Forbidden".into());
        assert_eq!(
            state_json(&failing).to_string(),
            r#"{"reason":"403 Forbidden","state":"failing"}"#
        );
        assert_eq!(state_of(&state_json(&failing)), failing);
        let ev = Folded {
            event: Event::warning("pbx.unreachable", "pbx:10.0.0.1:5060", "no answer")
                .from_component("mlc:forged")
                .with("lines", 3),
            count: 12,
            first_at: Timestamp(5),
            last_at: Timestamp(9),
        };
        let text = events_json(std::slice::from_ref(&ev)).to_string();
        assert_eq!(
            text,
            r#"[{"count":12,"first_at":5,"last_at":9,"level":"warning","message":"no answer","object":"pbx:10.0.0.1:5060","properties":{"lines":"3"},"type":"pbx.unreachable"}]"#
        );
        let back = events_of_json(&serde_json::from_str(&text).unwrap());
        assert_eq!(back[0].event.component, "");
        assert_eq!(
            (back[0].count, back[0].event.properties["lines"].as_str()),
            (12, "3")
        );
        assert!(
            events_of_json(&json!([{"level": "fatal", "type": "x", "message": "m"}])).is_empty()
        );
        assert_eq!(known_code("not_ringing"), "not_ringing");
        assert_eq!(known_code("<script>"), "failed");
        assert_eq!(VERSION, 1);
    }
}
