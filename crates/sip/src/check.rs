//! What a SIP endpoint checks before it acts on a request (RFC 3261 §8.2),
//! in the order that gives each RFC 4475 message the answer its README
//! expects: method, CSeq, Request-URI scheme, REGISTER's To, extensions,
//! body type, Accept.

use crate::message::Message;

/// Methods the MLC acts on.
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, NOTIFY, INFO";
/// Standard methods we recognise but do not serve (answered 405).
const KNOWN_UNSERVED: &[&str] = &[
    "REGISTER",
    "SUBSCRIBE",
    "MESSAGE",
    "PUBLISH",
    "UPDATE",
    "PRACK",
    "REFER",
];

/// A refusal: status, reason phrase and extra headers for the answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub code: u16,
    pub reason: &'static str,
    pub headers: Vec<(&'static str, String)>,
}

impl Refusal {
    fn new(code: u16, reason: &'static str) -> Refusal {
        Refusal {
            code,
            reason,
            headers: Vec::new(),
        }
    }

    fn with(mut self, name: &'static str, value: impl Into<String>) -> Refusal {
        self.headers.push((name, value.into()));
        self
    }
}

fn served(method: &str) -> bool {
    ALLOW.split(", ").any(|m| m == method)
}

/// `None` when the request may go on to its method's handler.
pub fn check_request(m: &Message) -> Option<Refusal> {
    let method = m.method()?;
    if !served(method) {
        return Some(if KNOWN_UNSERVED.contains(&method) {
            if method == "REGISTER" && !m.to.uri.is_sip() {
                // A REGISTER's To is an address of record: sip or sips.
                return Some(Refusal::new(400, "Bad Request"));
            }
            Refusal::new(405, "Method Not Allowed").with("Allow", ALLOW)
        } else {
            Refusal::new(501, "Not Implemented").with("Allow", ALLOW)
        });
    }
    if m.cseq.method != method {
        return Some(Refusal::new(400, "Bad Request"));
    }
    let uri = m.request_uri()?;
    if !matches!(uri.scheme.as_str(), "sip" | "sips" | "tel") {
        return Some(Refusal::new(416, "Unsupported URI Scheme"));
    }
    if method == "ACK" || method == "CANCEL" {
        return None;
    }
    let required = m.header_values("require");
    if !required.is_empty() {
        return Some(Refusal::new(420, "Bad Extension").with("Unsupported", required.join(", ")));
    }
    if method == "INVITE" {
        if !m.body.is_empty() && m.content_type().as_deref() != Some("application/sdp") {
            return Some(
                Refusal::new(415, "Unsupported Media Type").with("Accept", "application/sdp"),
            );
        }
        if let Some(enc) = m.header("content-encoding")
            && !enc.eq_ignore_ascii_case("identity")
        {
            return Some(
                Refusal::new(415, "Unsupported Media Type").with("Accept-Encoding", "identity"),
            );
        }
        let accept = m.header_values("accept");
        if !accept.is_empty()
            && !accept.iter().any(|a| {
                let t = a
                    .split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase();
                matches!(t.as_str(), "application/sdp" | "application/*" | "*/*")
            })
        {
            return Some(Refusal::new(406, "Not Acceptable").with("Accept", "application/sdp"));
        }
    }
    None
}
