//! The RFC 7865 metadata of a recording: who took part, which stream is
//! whose, when it began and ended, in the `complete` data mode.

use base64::Engine;
use openturret_domain::Timestamp;
use openturret_sip::message;

use crate::host::Recording;

/// The identifiers of one recorded call's metadata (RFC 7865 §6: 128-bit
/// values, base64): the call as a communication session, its two
/// participants and its two streams.
#[derive(Clone)]
pub(super) struct Ids {
    session: String,
    /// The line's side (the trader) and the far end.
    trader: String,
    far: String,
    /// Label 1, what the far end says; label 2, what the trader says.
    far_stream: String,
    trader_stream: String,
}

impl Ids {
    pub(super) fn new() -> Ids {
        let id = || {
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&message::random_u64().to_be_bytes());
            b[8..].copy_from_slice(&message::random_u64().to_be_bytes());
            base64::engine::general_purpose::STANDARD.encode(b)
        };
        Ids {
            session: id(),
            trader: id(),
            far: id(),
            far_stream: id(),
            trader_stream: id(),
        }
    }
}

/// What a recording's metadata says of its call.
#[derive(Clone)]
pub(super) struct Meta {
    pub(super) rec: Recording,
    pub(super) ids: Ids,
    pub(super) start: Timestamp,
    pub(super) held: bool,
    pub(super) transferred: bool,
    pub(super) incoming: bool,
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

impl Meta {
    /// The RFC 7865 document (`complete` data mode: every element each
    /// time), with stop times when `stopped`.
    pub(super) fn xml(&self, stopped: Option<Timestamp>) -> Vec<u8> {
        let i = &self.ids;
        let r = &self.rec;
        let start = self.start.rfc3339();
        let stop = |indent: &str, tag: &str| {
            stopped
                .map(|t| format!("{indent}<{tag}>{}</{tag}>\n", t.rfc3339()))
                .unwrap_or_default()
        };
        let far_aor = if r.remote_number.contains(':') {
            r.remote_number.clone()
        } else {
            let domain = r.line_aor.rsplit('@').next().unwrap_or("invalid");
            format!("sip:{}@{domain}", r.remote_number)
        };
        let trader_name = if r.profile_name.is_empty() {
            r.line_name.clone()
        } else {
            format!("{} ({})", r.line_name, r.profile_name)
        };
        let participant = |id: &str, aor: &str, name: &str| {
            format!(
                "  <participant participant_id=\"{id}\">\n    <nameID aor=\"{}\">\n      <name xml:lang=\"en\">{}</name>\n    </nameID>\n  </participant>\n",
                xml_escape(aor),
                xml_escape(name)
            )
        };
        let assoc = |id: &str| {
            format!(
                "  <participantsessionassoc participant_id=\"{id}\" session_id=\"{}\">\n    <associate-time>{start}</associate-time>\n{}  </participantsessionassoc>\n",
                i.session,
                stop("    ", "disassociate-time")
            )
        };
        let mut x = String::from(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<recording xmlns=\"urn:ietf:params:xml:ns:recording:1\">\n  <datamode>complete</datamode>\n",
        );
        x += &format!(
            "  <session session_id=\"{}\">\n    <start-time>{start}</start-time>\n{}    <ot:state xmlns:ot=\"urn:openturret:params:xml:ns:recording\">{}</ot:state>\n    <ot:direction xmlns:ot=\"urn:openturret:params:xml:ns:recording\">{}</ot:direction>\n  </session>\n",
            i.session,
            stop("    ", "stop-time"),
            if self.transferred {
                "transferred"
            } else if stopped.is_some() {
                "ended"
            } else if self.held {
                "held"
            } else {
                "connected"
            },
            if self.incoming {
                "incoming"
            } else {
                "outgoing"
            },
        );
        x += &participant(&i.trader, &r.line_aor, &trader_name);
        x += &participant(&i.far, &far_aor, &r.remote_name);
        for (id, label) in [(&i.far_stream, 1), (&i.trader_stream, 2)] {
            x += &format!(
                "  <stream stream_id=\"{id}\" session_id=\"{}\">\n    <label>{label}</label>\n  </stream>\n",
                i.session
            );
        }
        x += &format!(
            "  <sessionrecordingassoc session_id=\"{}\">\n    <associate-time>{start}</associate-time>\n{}  </sessionrecordingassoc>\n",
            i.session,
            stop("    ", "disassociate-time")
        );
        x += &assoc(&i.trader);
        x += &assoc(&i.far);
        // Each party sends its own stream and receives the other's.
        for (p, send, recv) in [
            (&i.far, &i.far_stream, &i.trader_stream),
            (&i.trader, &i.trader_stream, &i.far_stream),
        ] {
            x += &format!(
                "  <participantstreamassoc participant_id=\"{p}\">\n    <send>{send}</send>\n    <recv>{recv}</recv>\n  </participantstreamassoc>\n"
            );
        }
        x += "</recording>\n";
        x.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta {
            rec: Recording {
                recorders: Vec::new(),
                line_aor: "sip:1001@pbx.example".into(),
                line_name: "FX <Desk>".into(),
                profile_name: "Alice & Co".into(),
                remote_number: "+442079460001".into(),
                remote_name: "Bob".into(),
                notice: None,
            },
            ids: Ids::new(),
            start: Timestamp(1_700_000_000_000),
            held: false,
            transferred: false,
            incoming: true,
        }
    }

    #[test]
    fn the_metadata_names_both_parties_and_ties_each_stream_to_its_sender() {
        let m = meta();
        let x = String::from_utf8(m.xml(None)).unwrap();
        assert!(
            x.contains("xmlns=\"urn:ietf:params:xml:ns:recording:1\""),
            "{x}"
        );
        assert!(
            x.contains("<name xml:lang=\"en\">FX &lt;Desk&gt; (Alice &amp; Co)</name>"),
            "{x}"
        );
        assert!(x.contains("aor=\"sip:+442079460001@pbx.example\""), "{x}");
        assert!(
            x.contains("<label>1</label>") && x.contains("<label>2</label>"),
            "{x}"
        );
        let far_send = format!(
            "<participantstreamassoc participant_id=\"{}\">\n    <send>{}</send>",
            m.ids.far, m.ids.far_stream
        );
        assert!(x.contains(&far_send), "{x}");
        assert!(!x.contains("stop-time"), "{x}");
        let ended = String::from_utf8(m.xml(Some(Timestamp(1_700_000_060_000)))).unwrap();
        assert!(
            ended.contains("<stop-time>") && ended.contains(">ended<"),
            "{ended}"
        );
    }
}
