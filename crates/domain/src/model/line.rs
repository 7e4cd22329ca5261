//! Lines: SIP accounts on the PBX, shown as line keys on profiles (SPEC §2,
//! §5). A line's password is not part of these types: it is write-only and
//! travels only as a [`crate::secret::Secret`] into storage, where it is
//! encrypted.

use super::note_change;
use crate::validate::{self, ValidationError};
use crate::{LineId, ProfileId, Timestamp};
use std::net::IpAddr;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineFields {
    /// Administrative name, unique.
    pub name: String,
    /// The SIP address of record, `sip:user@host` or `sips:user@host`.
    pub uri: String,
    /// Digest authentication username.
    pub username: String,
    /// What clients show on the line key.
    pub display_name: String,
    /// Second text clients may show on the line key.
    pub alternate_text: String,
    /// The number presented on outgoing calls.
    pub preferred_identity: String,
    /// Whether a turret answers the line's calls or they are answered at
    /// once on a speaker (intercom).
    pub answer_mode: AnswerMode,
    /// Besides the line's registrar, the addresses its PBX may send
    /// requests from (a PBX with several nodes): IP addresses or
    /// networks (`10.0.0.0/24`), normalised and comma-separated. Requests
    /// for the line from anywhere else are refused (issue 14).
    pub peers: String,
    /// Its calls ring with a distinct, faster cadence on the turrets.
    pub priority: bool,
    /// Its calls are forwarded to the voice recorders when recording is
    /// on for chosen lines (issue 18; with "all lines", every line's are).
    pub recorded: bool,
}

/// A yes/no column of an import (`true`, `yes`, `1`; `false`, `no`, `0`
/// or empty).
pub fn flag(field: &str, value: &str) -> Result<bool, ValidationError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" => Ok(true),
        "" | "false" | "no" | "0" => Ok(false),
        _ => Err(ValidationError::new(field, "must be true or false")),
    }
}

/// How a line's incoming calls are answered (issue 6).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AnswerMode {
    /// A turret answers (the default).
    #[default]
    Manual,
    /// Answered at once on a speaker, as intercom lines are.
    Automatic,
}

impl AnswerMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AnswerMode::Manual => "manual",
            AnswerMode::Automatic => "automatic",
        }
    }

    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        match s.trim() {
            "" | "manual" => Ok(AnswerMode::Manual),
            "automatic" => Ok(AnswerMode::Automatic),
            _ => Err(ValidationError::new(
                "answer_mode",
                "must be manual or automatic",
            )),
        }
    }

    pub fn is_automatic(self) -> bool {
        self == AnswerMode::Automatic
    }
}

impl LineFields {
    pub fn new(
        name: &str,
        uri: &str,
        username: &str,
        display_name: &str,
        alternate_text: &str,
        preferred_identity: &str,
    ) -> Result<Self, ValidationError> {
        let uri_v = validate::text("uri", uri, 256)?;
        let rest = uri_v
            .strip_prefix("sip:")
            .or_else(|| uri_v.strip_prefix("sips:"))
            .ok_or_else(|| ValidationError::new("uri", "must start with sip: or sips:"))?;
        if rest.is_empty() || rest.contains(char::is_whitespace) {
            return Err(ValidationError::new(
                "uri",
                "must be a SIP address such as sip:1001@pbx.example.com",
            ));
        }
        let preferred_identity = if preferred_identity.trim().is_empty() {
            String::new()
        } else {
            validate::phone_number("preferred_identity", preferred_identity)?
        };
        Ok(LineFields {
            name: validate::text("name", name, 100)?,
            uri: uri_v,
            username: validate::optional_text("username", username, 128)?,
            display_name: validate::optional_text("display_name", display_name, 100)?,
            alternate_text: validate::optional_text("alternate_text", alternate_text, 100)?,
            preferred_identity,
            answer_mode: AnswerMode::Manual,
            peers: String::new(),
            priority: false,
            recorded: false,
        })
    }

    pub fn with_priority(mut self, priority: bool) -> Self {
        self.priority = priority;
        self
    }

    pub fn with_recorded(mut self, recorded: bool) -> Self {
        self.recorded = recorded;
        self
    }

    pub fn with_answer_mode(mut self, mode: AnswerMode) -> Self {
        self.answer_mode = mode;
        self
    }

    /// Sets the trusted peer addresses (see [`LineFields::peers`]).
    pub fn with_peers(mut self, peers: &str) -> Result<Self, ValidationError> {
        self.peers = PeerNets::parse("peers", peers)?.to_string();
        Ok(self)
    }

    pub fn changed_fields(&self, current: &LineFields) -> Vec<&'static str> {
        let mut c = Vec::new();
        note_change(&mut c, "name", &Some(&self.name), &&current.name);
        note_change(&mut c, "uri", &Some(&self.uri), &&current.uri);
        note_change(
            &mut c,
            "username",
            &Some(&self.username),
            &&current.username,
        );
        note_change(
            &mut c,
            "display_name",
            &Some(&self.display_name),
            &&current.display_name,
        );
        note_change(
            &mut c,
            "alternate_text",
            &Some(&self.alternate_text),
            &&current.alternate_text,
        );
        note_change(
            &mut c,
            "preferred_identity",
            &Some(&self.preferred_identity),
            &&current.preferred_identity,
        );
        if self.answer_mode != current.answer_mode {
            c.push("answer_mode");
        }
        if self.peers != current.peers {
            c.push("peers");
        }
        if self.priority != current.priority {
            c.push("priority");
        }
        if self.recorded != current.recorded {
            c.push("recorded");
        }
        c
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub id: LineId,
    pub fields: LineFields,
    /// Whether a password is stored; the password itself never leaves storage
    /// except decrypted for the Multi-Line Controller.
    pub has_password: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A line shown as a line key on a profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineAssignment {
    pub profile_id: ProfileId,
    pub line_id: LineId,
    /// Line key position, from 1; unique per profile.
    pub position: u32,
}

/// Highest line key position.
pub const LINE_KEY_MAX_POSITION: u32 = 999;

pub fn line_key_position(position: i64) -> Result<u32, ValidationError> {
    if !(1..=LINE_KEY_MAX_POSITION as i64).contains(&position) {
        return Err(ValidationError::new(
            "position",
            format!("must be between 1 and {LINE_KEY_MAX_POSITION}"),
        ));
    }
    Ok(position as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_uri_must_be_sip() {
        assert_eq!(
            LineFields::new("L1", "http://x", "", "", "", "")
                .unwrap_err()
                .field,
            "uri"
        );
        assert!(LineFields::new("L1", "sip:1001@pbx", "1001", "Desk", "", "+44 20 1").is_ok());
        assert_eq!(
            LineFields::new("L1", "sip:1@p", "", "", "", "x")
                .unwrap_err()
                .field,
            "preferred_identity"
        );
    }
}

/// Addresses and networks a line's requests may come from, besides its
/// registrar: `192.0.2.7`, `2001:db8::1`, `10.1.0.0/16`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerNets(Vec<(IpAddr, u8)>);

/// At most this many entries per line.
pub const PEERS_MAX: usize = 32;

impl PeerNets {
    /// Parses a list separated by commas, spaces or semicolons; names the
    /// entry that is wrong.
    pub fn parse(field: &str, s: &str) -> Result<PeerNets, ValidationError> {
        let mut v = Vec::new();
        for item in s
            .split([',', ';', ' ', '\t', '\n'])
            .filter(|x| !x.is_empty())
        {
            let (addr, bits) = match item.split_once('/') {
                Some((a, b)) => (a, Some(b)),
                None => (item, None),
            };
            let ip: IpAddr = addr.parse().map_err(|_| {
                ValidationError::new(
                    field,
                    format!("{item:?} is not an IP address or network (such as 192.0.2.7 or 10.1.0.0/16)"),
                )
            })?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                None => max,
                Some(b) => b.parse::<u8>().ok().filter(|b| *b <= max).ok_or_else(|| {
                    ValidationError::new(
                        field,
                        format!("{item:?}: the prefix length must be 0 to {max}"),
                    )
                })?,
            };
            if bits == 0 {
                return Err(ValidationError::new(
                    field,
                    format!("{item:?} would trust every address"),
                ));
            }
            let net = (mask(ip, bits), bits);
            if !v.contains(&net) {
                v.push(net);
            }
        }
        if v.len() > PEERS_MAX {
            return Err(ValidationError::new(
                field,
                format!("at most {PEERS_MAX} addresses or networks"),
            ));
        }
        Ok(PeerNets(v))
    }

    /// Whether `ip` is one of the addresses or inside one of the networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.0
            .iter()
            .any(|(net, bits)| net.is_ipv4() == ip.is_ipv4() && mask(ip, *bits) == *net)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for PeerNets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (ip, bits)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            let full = if ip.is_ipv4() { 32 } else { 128 };
            if *bits == full {
                write!(f, "{ip}")?;
            } else {
                write!(f, "{ip}/{bits}")?;
            }
        }
        Ok(())
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is (a dual-stack
/// socket reports IPv4 peers so).
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn mask(ip: IpAddr, bits: u8) -> IpAddr {
    match canonical_ip(ip) {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - bits as u32).unwrap_or(0);
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = u128::MAX.checked_shl(128 - bits as u32).unwrap_or(0);
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

#[cfg(test)]
mod peer_tests {
    use super::*;

    #[test]
    fn peers_parse_normalise_and_match() {
        let p = PeerNets::parse("peers", "10.1.2.3/16, 192.0.2.7;2001:db8::1 10.1.9.9/16").unwrap();
        assert_eq!(p.to_string(), "10.1.0.0/16, 192.0.2.7, 2001:db8::1");
        assert!(p.contains("10.1.200.4".parse().unwrap()));
        assert!(p.contains("::ffff:192.0.2.7".parse().unwrap()));
        assert!(!p.contains("10.2.0.1".parse().unwrap()));
        assert!(!p.contains("192.0.2.8".parse().unwrap()));
        assert!(p.contains("2001:db8::1".parse().unwrap()));
        assert!(PeerNets::parse("peers", "").unwrap().is_empty());
        let e = PeerNets::parse("peers", "10.0.0.1, pbx.example").unwrap_err();
        assert!(e.to_string().contains("pbx.example"), "{e}");
        assert!(PeerNets::parse("peers", "0.0.0.0/0").is_err());
        assert!(PeerNets::parse("peers", "10.0.0.0/33").is_err());
    }
}
