//! SIP transports of the MLC: one UDP socket and one TCP listener on
//! `sip.listen`, a TLS listener on `sip.tls_listen`, plus outgoing TCP and
//! TLS connections to PBXs. Behind the
//! [`SipTransport`] trait so the call and registration logic never touches
//! sockets (and a TLS or WebSocket transport can be added beside these).
//!
//! Bounds: a datagram is read into a fixed 64 KiB buffer; a stream buffers
//! at most one message of [`MAX_MESSAGE`] bytes and is closed when a peer
//! sends more or sends garbage (RFC 4475 `ncl` over TCP); connections are
//! capped at [`MAX_CONNECTIONS`] and idle ones closed after five minutes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openturret_sip::message::{self, Framing, MAX_MESSAGE, Message, ParseError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

pub const MAX_CONNECTIONS: usize = 4096;
const IDLE: Duration = Duration::from_secs(300);
const HANDSHAKE: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    Udp,
    Tcp,
    Tls,
}

impl Proto {
    pub fn via_name(self) -> &'static str {
        match self {
            Proto::Udp => "UDP",
            Proto::Tcp => "TCP",
            Proto::Tls => "TLS",
        }
    }
}

/// Where a message goes or came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Peer {
    pub proto: Proto,
    pub addr: SocketAddr,
}

/// What the transports hand to the MLC.
pub enum Inbound {
    Message(Box<Message>, Peer),
    /// A request that failed to parse but can be answered (400, 505...).
    Refused(ParseError, Peer),
}

/// Sending SIP; receiving arrives on the channel given at bind time.
#[async_trait::async_trait]
pub trait SipTransport: Send + Sync {
    async fn send(&self, to: Peer, bytes: &[u8]) -> std::io::Result<()>;
    /// The address this transport listens on (UDP and TCP).
    fn local_addr(&self) -> SocketAddr;
    /// The TLS listener's address, if there is one.
    fn tls_addr(&self) -> Option<SocketAddr>;
    /// The name to check in the certificate of the TLS peer at `addr`.
    fn set_tls_name(&self, addr: SocketAddr, name: &str);
}

/// Where the writer task of a connection takes bytes to send.
type Outgoing = mpsc::Sender<Vec<u8>>;

/// TLS for SIP: how we accept (our certificate) and connect (the CAs we
/// trust for PBXs, and the name to check for each address).
pub struct TlsSetup {
    pub listen: SocketAddr,
    pub server: Arc<rustls::ServerConfig>,
    pub client: Option<Arc<rustls::ClientConfig>>,
}

pub struct NetTransport {
    udp: Arc<UdpSocket>,
    local: SocketAddr,
    tls_local: Option<SocketAddr>,
    client_tls: Option<tokio_rustls::TlsConnector>,
    /// The host name to verify for a TLS peer's certificate.
    tls_names: Mutex<HashMap<SocketAddr, String>>,
    streams: Arc<Mutex<HashMap<(Proto, SocketAddr), Outgoing>>>,
    inbound: mpsc::Sender<Inbound>,
}

impl NetTransport {
    /// Binds UDP and TCP on `listen` (port 0 picks one port free for both)
    /// and starts the receive loops.
    pub async fn bind(
        listen: SocketAddr,
        tls: Option<TlsSetup>,
        inbound: mpsc::Sender<Inbound>,
    ) -> std::io::Result<Arc<NetTransport>> {
        // Same port number for UDP and TCP: with port 0, take the UDP one.
        let mut tries = 0;
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind(listen).await?;
            let port = udp.local_addr()?.port();
            match TcpListener::bind(SocketAddr::new(listen.ip(), port)).await {
                Ok(t) => break (udp, t),
                Err(e) if listen.port() != 0 || tries > 20 => return Err(e),
                Err(_) => tries += 1,
            }
        };
        let local = udp.local_addr()?;
        let (tls_listener, acceptor, client_tls) = match tls {
            Some(setup) => {
                let l = TcpListener::bind(setup.listen).await?;
                (
                    Some(l),
                    Some(tokio_rustls::TlsAcceptor::from(setup.server)),
                    setup.client.map(tokio_rustls::TlsConnector::from),
                )
            }
            None => (None, None, None),
        };
        let tls_local = match &tls_listener {
            Some(l) => Some(l.local_addr()?),
            None => None,
        };
        let t = Arc::new(NetTransport {
            udp: Arc::new(udp),
            local,
            tls_local,
            client_tls,
            tls_names: Default::default(),
            streams: Default::default(),
            inbound,
        });
        tokio::spawn(udp_loop(t.clone()));
        tokio::spawn(accept_loop(t.clone(), tcp, None));
        if let (Some(l), Some(a)) = (tls_listener, acceptor) {
            tokio::spawn(accept_loop(t.clone(), l, Some(a)));
        }
        Ok(t)
    }

    fn deliver(&self, bytes: &[u8], peer: Peer, framing: Framing) -> bool {
        match message::parse(bytes, framing) {
            Ok(m) => {
                let _ = self.inbound.try_send(Inbound::Message(Box::new(m), peer));
                true
            }
            Err(e @ ParseError::Reject { .. }) => {
                tracing::debug!(peer = %peer.addr, reason = e.detail(), "refusing a malformed SIP request");
                let _ = self.inbound.try_send(Inbound::Refused(e, peer));
                true
            }
            Err(e) => {
                tracing::debug!(peer = %peer.addr, reason = e.detail(), "discarding a SIP message");
                false
            }
        }
    }

    fn stream<S>(self: &Arc<Self>, s: S, proto: Proto, peer: SocketAddr) -> mpsc::Sender<Vec<u8>>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    {
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(256);
        let (mut rd, mut wr) = tokio::io::split(s);
        tokio::spawn(async move {
            while let Some(b) = rx.recv().await {
                if wr.write_all(&b).await.is_err() {
                    break;
                }
            }
        });
        let me = self.clone();
        let tx2 = tx.clone();
        self.streams
            .lock()
            .unwrap()
            .insert((proto, peer), tx.clone());
        tokio::spawn(async move {
            let mut buf: Vec<u8> = Vec::with_capacity(4096);
            let mut chunk = [0u8; 8192];
            'conn: loop {
                let n = match tokio::time::timeout(IDLE, rd.read(&mut chunk)).await {
                    Ok(Ok(n)) if n > 0 => n,
                    _ => break,
                };
                buf.extend_from_slice(&chunk[..n]);
                loop {
                    // CRLF keep-alives (RFC 5626) between messages.
                    let skip = buf
                        .iter()
                        .take_while(|b| **b == b'\r' || **b == b'\n')
                        .count();
                    buf.drain(..skip);
                    if buf.is_empty() {
                        break;
                    }
                    match message::stream_message_len(&buf) {
                        Ok(len) => {
                            let msg: Vec<u8> = buf.drain(..len).collect();
                            if !me.deliver(&msg, Peer { proto, addr: peer }, Framing::Stream) {
                                break 'conn;
                            }
                        }
                        Err(ParseError::Incomplete) => break,
                        Err(_) => break 'conn,
                    }
                }
                if buf.len() > MAX_MESSAGE {
                    break;
                }
            }
            let mut map = me.streams.lock().unwrap();
            if map
                .get(&(proto, peer))
                .is_some_and(|s| s.same_channel(&tx2))
            {
                map.remove(&(proto, peer));
            }
        });
        tx
    }
}

async fn udp_loop(t: Arc<NetTransport>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        match t.udp.recv_from(&mut buf).await {
            Ok((n, from)) => {
                let bytes = &buf[..n];
                // Keep-alive pings (CRLF) carry nothing.
                if bytes.iter().all(|b| b.is_ascii_whitespace()) {
                    continue;
                }
                t.deliver(
                    bytes,
                    Peer {
                        proto: Proto::Udp,
                        addr: from,
                    },
                    Framing::Datagram,
                );
            }
            Err(e) => {
                // ICMP errors surface here on some systems; keep serving.
                tracing::debug!(error = %e, "UDP receive error");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}

async fn accept_loop(
    t: Arc<NetTransport>,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    loop {
        match listener.accept().await {
            Ok((s, peer)) => {
                if t.streams.lock().unwrap().len() >= MAX_CONNECTIONS {
                    tracing::warn!(peer = %peer, "too many SIP connections; refusing one");
                    continue;
                }
                let _ = s.set_nodelay(true);
                match &tls {
                    None => {
                        t.stream(s, Proto::Tcp, peer);
                    }
                    Some(acceptor) => {
                        // The handshake in a task of its own, with a limit,
                        // so a silent peer holds nothing up.
                        let (t, acceptor) = (t.clone(), acceptor.clone());
                        tokio::spawn(async move {
                            match tokio::time::timeout(HANDSHAKE, acceptor.accept(s)).await {
                                Ok(Ok(tls)) => {
                                    t.stream(tls, Proto::Tls, peer);
                                }
                                _ => tracing::debug!(peer = %peer, "SIP TLS handshake failed"),
                            }
                        });
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "SIP TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

fn io_error(kind: std::io::ErrorKind, what: &str) -> std::io::Error {
    std::io::Error::new(kind, what.to_string())
}

#[async_trait::async_trait]
impl SipTransport for Arc<NetTransport> {
    async fn send(&self, to: Peer, bytes: &[u8]) -> std::io::Result<()> {
        if to.proto == Proto::Udp {
            return self.udp.send_to(bytes, to.addr).await.map(|_| ());
        }
        let existing = self
            .streams
            .lock()
            .unwrap()
            .get(&(to.proto, to.addr))
            .cloned();
        let tx = match existing {
            Some(tx) if !tx.is_closed() => tx,
            _ => {
                let s = tokio::time::timeout(HANDSHAKE, TcpStream::connect(to.addr))
                    .await
                    .map_err(|_| io_error(std::io::ErrorKind::TimedOut, "connect timed out"))??;
                let _ = s.set_nodelay(true);
                if to.proto == Proto::Tls {
                    let connector = self.client_tls.clone().ok_or_else(|| {
                        io_error(
                            std::io::ErrorKind::Unsupported,
                            "sip.tls_ca is not set: no CA to check PBX certificates",
                        )
                    })?;
                    let name = self
                        .tls_names
                        .lock()
                        .unwrap()
                        .get(&to.addr)
                        .cloned()
                        .unwrap_or_else(|| to.addr.ip().to_string());
                    let server_name =
                        rustls::pki_types::ServerName::try_from(name).map_err(|_| {
                            io_error(std::io::ErrorKind::InvalidInput, "bad TLS server name")
                        })?;
                    let tls = tokio::time::timeout(HANDSHAKE, connector.connect(server_name, s))
                        .await
                        .map_err(|_| {
                            io_error(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
                        })??;
                    self.stream(tls, Proto::Tls, to.addr)
                } else {
                    self.stream(s, Proto::Tcp, to.addr)
                }
            }
        };
        tx.send(bytes.to_vec())
            .await
            .map_err(|_| io_error(std::io::ErrorKind::BrokenPipe, "connection closed"))
    }

    fn local_addr(&self) -> SocketAddr {
        self.local
    }

    fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_local
    }

    fn set_tls_name(&self, addr: SocketAddr, name: &str) {
        let mut names = self.tls_names.lock().unwrap();
        if names.len() < MAX_CONNECTIONS {
            names.insert(addr, name.to_string());
        }
    }
}
