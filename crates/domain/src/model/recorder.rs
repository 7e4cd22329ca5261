//! Voice recorders (SPEC §1, rule 11; issue 18): the Session Recording
//! Servers the MLC forwards recorded calls to with SIPREC (RFC 7866). A
//! recorder's password is not part of these types: like a line's, it is
//! write-only and travels only as a [`crate::secret::Secret`] into storage,
//! where it is encrypted.

use crate::validate::{self, ValidationError};
use crate::{RecorderId, Timestamp};

/// At most this many recorders at once (2N recording: each call to both).
pub const MAX_RECORDERS: usize = 2;

/// How the MLC reaches a recorder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecorderTransport {
    #[default]
    Udp,
    Tcp,
    Tls,
}

impl RecorderTransport {
    pub fn as_str(self) -> &'static str {
        match self {
            RecorderTransport::Udp => "udp",
            RecorderTransport::Tcp => "tcp",
            RecorderTransport::Tls => "tls",
        }
    }

    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "udp" => Ok(RecorderTransport::Udp),
            "tcp" => Ok(RecorderTransport::Tcp),
            "tls" => Ok(RecorderTransport::Tls),
            _ => Err(ValidationError::new("transport", "must be udp, tcp or tls")),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecorderFields {
    /// Administrative name, unique.
    pub name: String,
    /// The Session Recording Server, `sip:srs@host[:port]` (or `sips:`).
    pub uri: String,
    pub transport: RecorderTransport,
    /// Digest username, when the recorder asks for one.
    pub username: String,
}

impl RecorderFields {
    pub fn new(
        name: &str,
        uri: &str,
        transport: &str,
        username: &str,
    ) -> Result<Self, ValidationError> {
        let uri = validate::text("uri", uri, 256)?;
        let rest = uri
            .strip_prefix("sip:")
            .or_else(|| uri.strip_prefix("sips:"))
            .ok_or_else(|| ValidationError::new("uri", "must start with sip: or sips:"))?;
        let host = rest.rsplit('@').next().unwrap_or_default();
        if host.is_empty() || rest.contains(char::is_whitespace) {
            return Err(ValidationError::new(
                "uri",
                "must be a SIP address such as sip:srs@recorder.example.com:5060",
            ));
        }
        let mut transport = RecorderTransport::parse(transport)?;
        if uri.starts_with("sips:") {
            transport = RecorderTransport::Tls;
        }
        Ok(RecorderFields {
            name: validate::text("name", name, 100)?,
            uri,
            transport,
            username: validate::optional_text("username", username, 128)?,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorder {
    pub id: RecorderId,
    pub fields: RecorderFields,
    pub has_password: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// One line of the system's own record of forwarding: a recorder took a
/// call (`recording`) or failed to (`failed`, and why). No number, no
/// name: the call, its line, the profile holding it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordingLogEntry {
    pub at: Timestamp,
    pub call_id: i64,
    pub line_id: Option<crate::LineId>,
    /// `None` once the person was erased.
    pub profile_id: Option<crate::ProfileId>,
    pub recorder_id: RecorderId,
    pub outcome: String,
    pub reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorder_needs_a_sip_address_and_a_known_transport() {
        let r = RecorderFields::new("SRS A", "sip:srs@10.0.0.9:5070", "TCP", "").unwrap();
        assert_eq!(r.transport, RecorderTransport::Tcp);
        assert_eq!(
            RecorderFields::new("SRS", "sips:srs@rec.example", "udp", "")
                .unwrap()
                .transport,
            RecorderTransport::Tls,
            "sips: means TLS"
        );
        assert_eq!(
            RecorderFields::new("SRS", "http://rec", "udp", "")
                .unwrap_err()
                .field,
            "uri"
        );
        assert_eq!(
            RecorderFields::new("SRS", "sip:srs@rec", "sctp", "")
                .unwrap_err()
                .field,
            "transport"
        );
        assert_eq!(
            RecorderFields::new(" ", "sip:a@b", "", "")
                .unwrap_err()
                .field,
            "name"
        );
    }
}
