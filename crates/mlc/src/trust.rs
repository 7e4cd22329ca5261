//! Who may talk to the MLC: only a line's PBX (its registrar's resolved
//! addresses or the peers listed for it) rings a trader; strangers are
//! refused, counted and logged at a bounded rate, and answers to them name
//! no product.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use openturret_domain::LineId;
use openturret_sip::message::Builder;

use crate::transport::Peer;
use crate::{Mlc, register};

/// How stale the trust index may be: a line registered this long ago at
/// most is not yet in it (its own requests are checked against the line
/// itself, [`Mlc::trusted_for`], which never waits on this).
const TRUST_INDEX_AGE: Duration = Duration::from_secs(1);

/// The registrars' addresses and the peers listed, over all lines.
pub(crate) struct TrustIndex {
    built: Instant,
    registrars: HashSet<IpAddr>,
    peers: Vec<openturret_domain::model::PeerNets>,
}

impl TrustIndex {
    fn build(lines: &HashMap<LineId, register::LineRuntime>) -> TrustIndex {
        TrustIndex {
            built: Instant::now(),
            registrars: lines
                .values()
                .filter_map(|l| l.registrar.map(|p| p.addr.ip()))
                .collect(),
            peers: lines
                .values()
                .filter(|l| !l.peers.is_empty())
                .map(|l| l.peers.clone())
                .collect(),
        }
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.registrars.contains(&ip) || self.peers.iter().any(|p| p.contains(ip))
    }
}

/// At most one log line per this long about refused strangers.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

impl Mlc {
    /// Whether `ip` may send requests for `line`: its registrar's resolved
    /// address or one of the peers listed for the line.
    pub(crate) fn trusted_for(&self, line: LineId, ip: IpAddr) -> bool {
        let lines = self.lines.lock().unwrap();
        lines.get(&line).is_some_and(|l| l.trusts(ip))
    }

    /// Whether `ip` is the PBX of any line (answers to it may name the
    /// product and its version).
    pub(crate) fn trusted(&self, ip: IpAddr) -> bool {
        let ip = openturret_domain::model::canonical_ip(ip);
        let mut index = self.trust_index.lock().unwrap();
        let fresh = index
            .as_ref()
            .is_some_and(|t| t.built.elapsed() < TRUST_INDEX_AGE);
        if !fresh {
            *index = Some(TrustIndex::build(&self.lines.lock().unwrap()));
        }
        index.as_ref().expect("built above").trusts(ip)
    }

    /// Requests refused so far because their sender is no line's PBX.
    pub fn refused_requests(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Counts a request refused from a stranger; logs at a bounded rate.
    pub(crate) fn note_stranger(&self, peer: Peer, what: &str) {
        let n = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        self.raise(
            openturret_domain::model::Event::warning(
                "sip.stranger_refused",
                "",
                "SIP requests from an address that is not a line's PBX were refused (403)",
            )
            .with("request", what),
        );
        let mut last = self.refusal_log.lock().unwrap();
        let now = Instant::now();
        let due = last.is_none_or(|(at, _)| now.duration_since(at) >= REFUSAL_LOG_EVERY);
        if due {
            let since = n - last.map_or(0, |(_, c)| c);
            *last = Some((now, n));
            drop(last);
            tracing::warn!(
                from = %peer.addr,
                request = what,
                refused_since_last_notice = since,
                refused_in_all = n,
                "SIP request refused: the sender is not the PBX of the line (403)"
            );
        }
    }

    /// The User-Agent of an answer to `peer`: the product and version for
    /// a line's PBX, nothing for anyone else.
    fn user_agent_for(&self, peer: Peer) -> Option<&str> {
        self.trusted(peer.addr.ip())
            .then_some(self.user_agent.as_str())
    }

    /// Adds our User-Agent to an answer, for a line's PBX only.
    pub(crate) fn with_user_agent(&self, b: Builder, peer: Peer) -> Builder {
        match self.user_agent_for(peer) {
            Some(ua) => b.header("User-Agent", ua),
            None => b,
        }
    }
}
