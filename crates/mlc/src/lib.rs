//! The Multi-Line Controller (SPEC §1, §5): registers every configured line
//! with its PBX, carries the calls on them to and from the turrets and
//! anchors their RTP. What it needs or tells goes through [`Host`]: the
//! System Manager implements it inside `turret serve`, the component link
//! in `turret mlc`; call memory, call data records, the turrets and the
//! database are the System Manager's, never this crate's (it cannot reach
//! them: it depends on no store, web or server crate).
//!
//! Layers, bottom up:
//! - `transport`: UDP and TCP sockets behind the `SipTransport` trait;
//! - `txn`: client transactions with their retransmission timers (RFC 3261
//!   §17.1), final answers repeated until their ACK, and the answer cache
//!   that absorbs retransmitted requests (§17.2);
//! - `trust`: only a line's PBX is listened to; strangers are refused,
//!   counted and logged at a bounded rate;
//! - this module: dispatch of what arrives, and the line table;
//! - `register`: one registration task per line, plus a keep-alive per
//!   PBX that re-registers its lines the moment it answers again;
//! - [`call`]: call state, dialogs, the client operations (answer, dial,
//!   hang up, hold, transfer) and the records a finished call leaves;
//! - `rtp`: one media anchor per call leg, whose audio an [`Endpoint`]
//!   gives and takes;
//! - `media`: the endpoint, address and ports of each new leg, and a
//!   turret's offer for a call's audio ([`Mlc::attach_voice`]);
//! - [`voice`]: each leg's endpoint by default, a bridge to the turret that
//!   holds the call, over WebRTC (str0m), with a jitter buffer towards the
//!   PBX.
//!
//! Messages are parsed by `openturret_sip`; nothing here trusts a field it
//! did not parse, and every table is bounded.
//!
//! **Public face** (all the System Manager and `turret mlc` use): [`Mlc`]
//! (start, stop, line states, statistics, [`Mlc::set_media`]); [`Host`]
//! with the types it speaks, [`CallView`] and [`LineState`]; the `[sip]`
//! configuration [`SipConfig`], the `[media]` one [`MediaConfig`], and SIP over TLS ([`tls_setup`],
//! [`TlsSetup`]); the call operations of [`call`] (dial, answer, reject,
//! hang up, hold, transfer, `run_op`, `ongoing`, `end_all`); the media seam
//! ([`Endpoint`], [`Endpoints`], [`Leg`], [`Silence`]); a turret's audio
//! ([`Mlc::attach_voice`]); and the component
//! link's MLC side and codec ([`link`]). Transports, transactions,
//! registration and the RTP anchor are the crate's own.

pub mod call;
mod config;
mod events;
mod host;
pub mod link;
mod media;
mod record;
mod register;
mod rtp;
mod srtp;
mod transport;
mod trust;
mod txn;
pub mod voice;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use openturret_domain::LineId;
use openturret_sip::check::{self, ALLOW};
use openturret_sip::message::{self, Message, ParseError};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};

pub use call::CallView;
pub use config::{MediaConfig, SipConfig};
pub use host::{Host, RecorderTarget, Recording};
pub use rtp::{Endpoint, Endpoints, Leg, Packet, Silence, parse as parse_rtp};
pub use transport::TlsSetup;
use transport::{Inbound, NetTransport, Peer, Proto, SipTransport};

/// RFC 3261 timer T1 (round-trip estimate) and T2 (maximum retransmit
/// interval); a transaction gives up after 64·T1.
pub const T1: Duration = Duration::from_millis(500);
pub const T2: Duration = Duration::from_secs(4);
pub const TXN_TIMEOUT: Duration = Duration::from_secs(32);

/// REGISTER transactions in flight at once, over all lines.
const REGISTERS_IN_FLIGHT: usize = 256;

/// The permits for REGISTERs in flight.
pub(crate) struct InFlight(tokio::sync::Semaphore);

impl Default for InFlight {
    fn default() -> Self {
        InFlight(tokio::sync::Semaphore::new(REGISTERS_IN_FLIGHT))
    }
}

impl InFlight {
    pub(crate) async fn acquire(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.0.acquire().await.ok()
    }
}

/// A line's registration state, as the portal, the clients and the audit
/// log see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LineState {
    /// No Multi-Line Controller runs in this process to say.
    Unknown,
    Unregistered,
    Registering,
    Registered,
    Failing(String),
}

impl LineState {
    pub fn name(&self) -> &'static str {
        match self {
            LineState::Unknown => "unknown",
            LineState::Unregistered => "unregistered",
            LineState::Registering => "registering",
            LineState::Registered => "registered",
            LineState::Failing(_) => "failing",
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            LineState::Failing(r) => Some(r),
            _ => None,
        }
    }

    pub fn json(&self) -> Value {
        json!({"state": self.name(), "reason": self.reason()})
    }
}

/// A Multi-Line Controller: inside the System Manager, or in `turret mlc`.
/// Cheap to clone.
#[derive(Clone, Default)]
pub struct Mlc(Arc<Inner>);

#[derive(Default)]
pub struct Inner {
    host: OnceLock<Arc<dyn Host>>,
    transport: OnceLock<Arc<dyn SipTransport>>,
    config: OnceLock<SipConfig>,
    user_agent: String,
    /// Why a client transaction's request could not be sent, by branch.
    send_errors: Mutex<HashMap<String, String>>,
    /// Open client transactions, by Via branch.
    client_txns: Mutex<HashMap<String, mpsc::Sender<Box<Message>>>>,
    /// Answers already sent, for retransmitted requests.
    answers: Mutex<txn::AnswerCache>,
    /// ACKs awaited for final answers to INVITEs, by "Call-ID CSeq".
    awaiting_ack: Mutex<HashMap<String, Arc<Notify>>>,
    pub(crate) lines: Mutex<HashMap<LineId, register::LineRuntime>>,
    /// Held while the line table is brought in step with the host (a
    /// start, a restart, a resync), so two of them never both find a line
    /// missing and both start it (it would register twice).
    pub(crate) reconcile: tokio::sync::Mutex<()>,
    pub(crate) calls: call::Calls,
    /// Bounds the REGISTERs in flight (see `register::run`).
    pub(crate) registering: InFlight,
    /// Our address towards each peer, when `sip.listen` is unspecified.
    routes: Mutex<HashMap<IpAddr, IpAddr>>,
    seq: AtomicU64,
    /// Makes each new call leg's media endpoint (unset: a voice bridge).
    endpoints: Mutex<Option<rtp::Endpoints>>,
    /// Every call's voice bridge to the turret that holds it.
    pub(crate) voices: voice::Voices,
    /// The recording sessions of recorded calls (issue 18).
    pub(crate) recordings: record::Recordings,
    /// Where media sockets bind and what they advertise.
    media: Mutex<config::MediaConfig>,
    /// Requests refused because their sender is not a line's PBX.
    refused: AtomicU64,
    /// When a refusal was last logged, and the count then (one log line
    /// per `REFUSAL_LOG_EVERY` at most, whatever the flood).
    refusal_log: Mutex<Option<(Instant, u64)>>,
    /// The server is stopping: new calls get 503.
    closing: std::sync::atomic::AtomicBool,
    /// Every line's PBX addresses, for [`Mlc::trusted`] on every answer
    /// without a walk over all lines each time.
    trust_index: Mutex<Option<trust::TrustIndex>>,
    /// What is to be told to the error log (issue 20).
    events: events::Events,
    /// PBXs (their registrars' addresses) that stopped answering, until
    /// they answer again.
    pub(crate) pbx_down: Mutex<std::collections::HashSet<SocketAddr>>,
}

impl std::ops::Deref for Mlc {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Mlc {
    pub fn new() -> Mlc {
        Mlc(Arc::new(Inner {
            user_agent: format!("OpenTurret MLC {}", env!("CARGO_PKG_VERSION")),
            ..Inner::default()
        }))
    }

    /// Binds the SIP addresses and starts serving the lines `host` gives.
    /// Returns the bound address.
    pub async fn start(
        &self,
        host: Arc<dyn Host>,
        config: SipConfig,
        tls: Option<transport::TlsSetup>,
    ) -> anyhow::Result<SocketAddr> {
        let (tx, rx) = mpsc::channel::<Inbound>(4096);
        let t = NetTransport::bind(config.listen, tls, tx)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "while binding the SIP addresses {} (and TLS): {e}",
                    config.listen
                )
            })?;
        let local = t.local_addr();
        self.run(host, config, Arc::new(t), rx).await?;
        tracing::info!(%local, "Multi-Line Controller listening (SIP over UDP and TCP)");
        Ok(local)
    }

    /// Serves the lines `host` gives over `transport`, whose arrivals come
    /// on `inbound` (the network's in [`Self::start`], a fake in tests).
    async fn run(
        &self,
        host: Arc<dyn Host>,
        config: SipConfig,
        transport: Arc<dyn SipTransport>,
        inbound: mpsc::Receiver<Inbound>,
    ) -> anyhow::Result<()> {
        let _ = self.host.set(host);
        let _ = self.transport.set(transport);
        let _ = self.config.set(config);
        tokio::spawn(self.clone().dispatch(inbound));
        tokio::spawn(events::run(self.clone()));
        register::start_all(self).await
    }

    pub fn is_running(&self) -> bool {
        self.transport.get().is_some()
    }

    pub(crate) fn host(&self) -> Option<&Arc<dyn Host>> {
        self.host.get()
    }

    /// Makes call ids start above `base` (each MLC of a system gets its own
    /// range, so a call id names one call system-wide).
    pub fn set_call_id_base(&self, base: u64) {
        self.calls.next.fetch_max(base, Ordering::SeqCst);
    }

    pub(crate) fn config(&self) -> SipConfig {
        self.config.get().cloned().unwrap_or_default()
    }

    /// The SIP address the MLC listens on (UDP and TCP), once started.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.transport.get().map(|t| t.local_addr())
    }

    /// The SIP over TLS address, once started.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.transport.get().and_then(|t| t.tls_addr())
    }

    /// The name to check in the certificate of the TLS peer at `addr`.
    pub(crate) fn set_tls_name(&self, addr: SocketAddr, name: &str) {
        if let Some(t) = self.transport.get() {
            t.set_tls_name(addr, name);
        }
    }

    pub(crate) fn user_agent(&self) -> &str {
        &self.user_agent
    }

    /// Our IP as seen from `dest`: the configured one, the bound one, or
    /// the one the kernel routes to `dest` from.
    pub(crate) fn advertised_ip(&self, dest: SocketAddr) -> IpAddr {
        if let Some(ip) = self.config.get().and_then(|c| c.advertise) {
            return ip;
        }
        let local = self.local_addr().map(|a| a.ip());
        if let Some(ip) = local.filter(|ip| !ip.is_unspecified()) {
            return ip;
        }
        if let Some(ip) = self.routes.lock().unwrap().get(&dest.ip()) {
            return *ip;
        }
        let bind: SocketAddr = if dest.is_ipv6() {
            "[::]:0".parse().expect("valid")
        } else {
            "0.0.0.0:0".parse().expect("valid")
        };
        let found = std::net::UdpSocket::bind(bind)
            .and_then(|s| {
                s.connect(dest)?;
                s.local_addr()
            })
            .map(|a| a.ip());
        match found {
            Ok(ip) => {
                let mut routes = self.routes.lock().unwrap();
                if routes.len() < 4096 {
                    routes.insert(dest.ip(), ip);
                }
                ip
            }
            Err(_) => bind.ip(),
        }
    }

    /// `host:port` for our Via and Contact towards `peer` (the TLS
    /// listener's port for TLS).
    pub(crate) fn sent_by(&self, peer: Peer) -> String {
        let ip = self.advertised_ip(peer.addr);
        let port = match peer.proto {
            Proto::Tls => self.tls_addr().map_or(5061, |a| a.port()),
            _ => self.local_addr().map_or(5060, |a| a.port()),
        };
        match ip {
            IpAddr::V6(v6) => format!("[{v6}]:{port}"),
            IpAddr::V4(v4) => format!("{v4}:{port}"),
        }
    }

    /// From now on, new incoming calls are refused (503): the server is
    /// stopping and its calls are about to end.
    pub fn stop_accepting(&self) {
        self.closing.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// Tells the host about a call (see [`Host::call`]).
    pub(crate) async fn report(&self, view: CallView, ended: bool) {
        if let Some(h) = self.host() {
            h.call(view, ended).await;
        }
    }

    /// Our Via towards `peer` for a request of transaction `branch`.
    pub(crate) fn via(&self, peer: Peer, branch: &str) -> String {
        format!(
            "SIP/2.0/{} {};branch={branch};rport",
            peer.proto.via_name(),
            self.sent_by(peer)
        )
    }

    pub(crate) fn token(&self) -> String {
        format!(
            "{}{:x}",
            message::random_token(),
            self.seq.fetch_add(1, Ordering::Relaxed)
        )
    }

    pub(crate) fn branch(&self) -> String {
        format!("z9hG4bK{}", self.token())
    }

    /// A Call-ID of our own (no vendor domain in it).
    pub(crate) fn call_id(&self) -> String {
        format!("{}@openturret", self.token())
    }

    pub(crate) async fn send(&self, peer: Peer, bytes: &[u8]) {
        let Some(t) = self.transport.get() else {
            return;
        };
        if let Err(e) = t.send(peer, bytes).await {
            tracing::debug!(peer = %peer.addr, error = %e, "SIP send failed");
        }
    }

    /// Where to answer a request: the source address (rport behaviour,
    /// RFC 3581), never the sent-by of the Via (which may be anything,
    /// even a broadcast address: RFC 4475 `bcast`).
    fn reply_peer(peer: Peer) -> Peer {
        peer
    }

    async fn dispatch(self, mut rx: mpsc::Receiver<Inbound>) {
        while let Some(inbound) = rx.recv().await {
            match inbound {
                Inbound::Refused(
                    ParseError::Reject {
                        code,
                        reason,
                        detail,
                        headers,
                    },
                    peer,
                ) => {
                    let b = message::response_to(&headers, code, reason, Some(&self.token()))
                        .header("Warning", format!("399 openturret \"{detail}\""));
                    let b = self.with_user_agent(b, peer);
                    self.send(Self::reply_peer(peer), &b.build()).await;
                }
                Inbound::Refused(..) => {}
                Inbound::Message(m, peer) => {
                    if m.method().is_some() {
                        self.on_request(*m, Self::reply_peer(peer)).await;
                    } else {
                        self.on_response(m).await;
                    }
                }
            }
        }
    }

    async fn on_response(&self, m: Box<Message>) {
        let key = format!(
            "{} {}",
            m.vias[0].branch().unwrap_or_default(),
            m.cseq.method
        );
        let txn = self.client_txns.lock().unwrap().get(&key).cloned();
        match txn {
            Some(tx) => {
                let _ = tx.try_send(m);
            }
            // A 2xx to an INVITE after its transaction ended: the far end
            // did not get our ACK; the call module sends it again.
            None if m.cseq.method == "INVITE"
                && m.code().is_some_and(|c| (200..300).contains(&c)) =>
            {
                call::on_stray_2xx(self, &m).await;
            }
            None => {}
        }
    }

    async fn on_request(&self, m: Message, peer: Peer) {
        let method = m.method().unwrap_or_default().to_string();
        if method == "ACK" {
            let key = format!("{} {}", m.call_id, m.cseq.number);
            if let Some(n) = self.awaiting_ack.lock().unwrap().get(&key) {
                n.notify_one();
            }
            call::on_ack(self, &m).await;
            return;
        }
        // A retransmission: send the same answer again.
        let cached = self
            .answers
            .lock()
            .unwrap()
            .map
            .get(&txn::txn_key(&m, &method))
            .cloned();
        if let Some((bytes, _)) = cached {
            self.send(peer, &bytes).await;
            return;
        }
        if let Some(r) = check::check_request(&m) {
            let mut b = message::response_to(&m.headers, r.code, r.reason, Some(&self.token()));
            for (k, v) in &r.headers {
                b = b.header(k, v);
            }
            if method == "INVITE" {
                self.answer_invite_finally(&m, peer, b).await;
            } else {
                self.answer(&m, peer, b).await;
            }
            return;
        }
        match method.as_str() {
            "OPTIONS" => {
                let b = message::response_to(&m.headers, 200, "OK", Some(&self.token()))
                    .header("Allow", ALLOW)
                    .header("Accept", "application/sdp")
                    .header("Supported", "");
                self.answer(&m, peer, b).await;
            }
            "INVITE" => call::on_invite(self, m, peer).await,
            "CANCEL" => call::on_cancel(self, m, peer).await,
            "BYE" => call::on_bye(self, m, peer).await,
            "NOTIFY" => call::on_notify(self, m, peer).await,
            "INFO" => {
                let b = message::response_to(&m.headers, 200, "OK", None);
                self.answer(&m, peer, b).await;
            }
            _ => {
                let b =
                    message::response_to(&m.headers, 501, "Not Implemented", Some(&self.token()))
                        .header("Allow", ALLOW);
                self.answer(&m, peer, b).await;
            }
        }
    }

    /// RTP packets sent and received for a call so far.
    pub fn media_stats(&self, call: u64) -> Option<(u64, u64)> {
        call::media_stats(self, call)
    }

    /// Calls now carried.
    pub fn calls_in_progress(&self) -> usize {
        self.calls.len()
    }

    /// Line states for the API, portal and clients.
    pub fn line_state(&self, id: LineId) -> LineState {
        match self.lines.lock().unwrap().get(&id) {
            Some(l) => l.state.clone(),
            None if self.is_running() => LineState::Unregistered,
            None => LineState::Unknown,
        }
    }

    pub fn line_states(&self) -> HashMap<LineId, LineState> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (*k, v.state.clone()))
            .collect()
    }

    /// A line was created, changed or deleted: (re)start or stop its
    /// registration without a restart.
    pub fn line_changed(&self, id: LineId) {
        // (Stopping: the lines are about to be unbound, none is started.)
        if !self.is_running() || self.is_closing() {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move { register::restart(&me, id).await });
    }

    /// The server is stopping: ends the calls, then unbinds every line at
    /// its PBX (a few seconds at most), so nothing waits for expiries.
    pub async fn shutdown(&self) {
        if !self.is_running() {
            return;
        }
        self.stop_accepting();
        call::end_all(self, Duration::from_secs(3)).await;
        register::shutdown(self, Duration::from_secs(3)).await;
        // Every call's records written before the store closes.
        if let Some(h) = self.host() {
            let _ = tokio::time::timeout(Duration::from_secs(10), h.flush()).await;
        }
    }

    /// Lines changed in bulk (an import): bring the line table in step.
    pub fn lines_changed(&self) {
        if !self.is_running() || self.is_closing() {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move { register::resync(&me).await });
    }
}

/// SIP over TLS: `server` (the System Manager's certificate, or one
/// generated in its data directory) for the listener, and the CAs of
/// `sip.tls_ca` to check PBXs we connect to.
pub fn tls_setup(
    server: &rustls::ServerConfig,
    config: &SipConfig,
) -> anyhow::Result<transport::TlsSetup> {
    let mut server = server.clone();
    server.alpn_protocols.clear();
    let listen = config.tls_listen.unwrap_or_else(|| {
        let port = match config.listen.port() {
            0 => 0,
            p => p.saturating_add(1),
        };
        SocketAddr::new(config.listen.ip(), port)
    });
    let client = match &config.tls_ca {
        None => None,
        Some(path) => {
            use rustls::pki_types::pem::PemObject;
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls::pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| anyhow::anyhow!("while reading sip.tls_ca {}: {e}", path.display()))?
            {
                roots
                    .add(cert.map_err(|e| anyhow::anyhow!("sip.tls_ca {}: {e}", path.display()))?)
                    .map_err(|e| anyhow::anyhow!("sip.tls_ca {}: {e}", path.display()))?;
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let c = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Some(Arc::new(c))
        }
    };
    Ok(transport::TlsSetup {
        listen,
        server: Arc::new(server),
        client,
    })
}
