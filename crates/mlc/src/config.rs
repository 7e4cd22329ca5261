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
        }
    }
}
