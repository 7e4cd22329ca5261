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
        // The address says it when it can: sips:, or a transport parameter.
        let lower = uri.to_ascii_lowercase();
        if uri.starts_with("sips:") || lower.contains(";transport=tls") {
            transport = RecorderTransport::Tls;
        } else if lower.contains(";transport=tcp") {
            transport = RecorderTransport::Tcp;
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

/// The longest recording notice, in seconds.
pub const NOTICE_MAX_SECONDS: usize = 30;

/// The samples of a recording notice from its WAV file: 8 kHz, mono,
/// 16-bit PCM (what a telephone call carries; the MLC encodes it in each
/// call's G.711 law), from a fifth of a second to
/// [`NOTICE_MAX_SECONDS`]. Anything else is refused with what it is.
pub fn notice_from_wav(bytes: &[u8]) -> Result<Vec<i16>, ValidationError> {
    let bad = |why: String| Err(ValidationError::new("wav", why));
    if bytes.len() < 12 || &bytes[..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return bad("is not a WAV file (no RIFF/WAVE header)".into());
    }
    let mut at = 12;
    let mut format: Option<(u16, u16, u32, u16)> = None;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        let body = &bytes[at + 8..bytes.len().min(at + 8 + len)];
        if id == b"fmt " && body.len() >= 16 {
            let u16_at = |i: usize| u16::from_le_bytes([body[i], body[i + 1]]);
            format = Some((
                u16_at(0),
                u16_at(2),
                u32::from_le_bytes(body[4..8].try_into().unwrap()),
                u16_at(14),
            ));
        } else if id == b"data" {
            let Some((kind, channels, rate, bits)) = format else {
                return bad("has its data before its format".into());
            };
            if kind != 1 || bits != 16 {
                return bad(format!(
                    "must be 16-bit PCM (it is format {kind}, {bits}-bit)"
                ));
            }
            if channels != 1 || rate != 8000 {
                return bad(format!(
                    "must be mono at 8000 Hz (it is {channels} channel(s) at {rate} Hz)"
                ));
            }
            let samples: Vec<i16> = body
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            if samples.len() < 1600 {
                return bad("is shorter than a fifth of a second".into());
            }
            if samples.len() > NOTICE_MAX_SECONDS * 8000 {
                return bad(format!(
                    "is longer than {NOTICE_MAX_SECONDS} seconds ({} s)",
                    samples.len() / 8000
                ));
            }
            return Ok(samples);
        }
        at += 8 + len + (len & 1);
    }
    bad("has no audio data".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(channels: u16, rate: u32, samples: usize) -> Vec<u8> {
        let data = samples * 2 * channels as usize;
        let mut w = b"RIFF".to_vec();
        w.extend((36 + data as u32).to_le_bytes());
        w.extend(b"WAVEfmt ");
        w.extend(16u32.to_le_bytes());
        w.extend(1u16.to_le_bytes());
        w.extend(channels.to_le_bytes());
        w.extend(rate.to_le_bytes());
        w.extend((rate * 2 * channels as u32).to_le_bytes());
        w.extend((2 * channels).to_le_bytes());
        w.extend(16u16.to_le_bytes());
        w.extend(b"data");
        w.extend((data as u32).to_le_bytes());
        w.extend((0..data / 2).flat_map(|i| (i as i16).to_le_bytes()));
        w
    }

    #[test]
    fn a_notice_is_a_short_8_khz_mono_wav() {
        let s = notice_from_wav(&wav(1, 8000, 8000)).unwrap();
        assert_eq!((s.len(), s[5]), (8000, 5));
        let e = notice_from_wav(&wav(2, 8000, 8000)).unwrap_err();
        assert!(e.reason.contains("2 channel(s) at 8000 Hz"), "{e:?}");
        let e = notice_from_wav(&wav(1, 44_100, 44_100)).unwrap_err();
        assert!(e.reason.contains("44100 Hz"), "{e:?}");
        let e = notice_from_wav(&wav(1, 8000, 31 * 8000)).unwrap_err();
        assert!(e.reason.contains("longer than 30 seconds"), "{e:?}");
        assert!(notice_from_wav(&wav(1, 8000, 100)).is_err());
        assert_eq!(notice_from_wav(b"garbage").unwrap_err().field, "wav");
    }

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
            RecorderFields::new("SRS", "sip:srs@rec:5080;transport=TCP", "", "")
                .unwrap()
                .transport,
            RecorderTransport::Tcp,
            "so does a transport parameter"
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
