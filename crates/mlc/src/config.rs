//! The MLC's configuration: the `[sip]` section of `turret.toml` (and its
//! `TURRET_SIP_*` overrides), the same for `turret serve` and `turret mlc`.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct SipConfig {
    /// Run the Multi-Line Controller inside `turret serve`.
    pub enabled: bool,
    /// The MLC's SIP address, UDP and TCP.
    pub listen: SocketAddr,
    /// SIP over TLS; unset: the address of `listen` with the next port
    /// (5061 by default).
    pub tls_listen: Option<SocketAddr>,
    /// CA certificates (PEM) that PBX certificates must chain to, for lines
    /// over TLS (`sips:` or `;transport=tls`).
    pub tls_ca: Option<PathBuf>,
    /// The IP address put in Via, Contact and SDP; unset: the address this
    /// host uses to reach each PBX.
    pub advertise: Option<std::net::IpAddr>,
    /// Registration lifetime asked of the PBX, in seconds.
    pub register_expires: u32,
    /// Every this many seconds each PBX is sent an OPTIONS; when it answers
    /// again after an outage, its lines re-register at once.
    pub keepalive_secs: u64,
    /// An incoming call nobody answers ends by itself after this many
    /// seconds (the caller hears 480).
    pub ring_timeout_secs: u64,
    /// The most calls ringing at once on one line; more get 486.
    pub max_ringing_per_line: usize,
    /// Before a line's first REGISTER, ask the registrar for the line's
    /// bindings (a REGISTER without Contact, RFC 3261 §10.2.3), so that
    /// bindings another MLC left (one that died, or served the line
    /// before) go in the same request that adds ours: the registrar never
    /// holds two of our contacts for a line. Off only for a registrar that
    /// refuses such a query.
    pub query_bindings: bool,
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            enabled: true,
            listen: "0.0.0.0:5060".parse().expect("valid default address"),
            tls_listen: None,
            tls_ca: None,
            advertise: None,
            register_expires: 300,
            keepalive_secs: 5,
            ring_timeout_secs: 120,
            max_ringing_per_line: 8,
            query_bindings: true,
        }
    }
}

/// Where the MLC's media goes: the `[media]` section of `turret.toml` (and
/// its `TURRET_MEDIA_*` overrides), the same for `turret serve` and
/// `turret mlc`. Both the RTP towards the PBX and the WebRTC towards the
/// turrets use it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct MediaConfig {
    /// The IP address media sockets bind to; unset: the address this host
    /// uses to reach the PBX (RTP) or the turret (WebRTC).
    pub address: Option<std::net::IpAddr>,
    /// The address peers are told to send to, when it is not the one bound
    /// (a 1:1 NAT in front of the MLC); unset: the bound address.
    pub public_address: Option<std::net::IpAddr>,
    /// The UDP ports media may use (inclusive); `0` and `0`: any the system
    /// gives. Each call takes one for the PBX and one per turret hearing it.
    pub port_min: u16,
    pub port_max: u16,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            address: None,
            public_address: None,
            port_min: 10_000,
            port_max: 20_000,
        }
    }
}

impl MediaConfig {
    /// The port range, or why it is not one.
    pub fn check(&self) -> Result<(), String> {
        if (self.port_min == 0) != (self.port_max == 0) || self.port_max < self.port_min {
            return Err(format!(
                "media.port_min ({}) and media.port_max ({}) must both be 0 (any port) or form a range",
                self.port_min, self.port_max
            ));
        }
        if self.port_min != 0 && self.port_max - self.port_min < 3 {
            return Err("media.port_min..media.port_max must hold at least 4 ports".into());
        }
        Ok(())
    }
}
