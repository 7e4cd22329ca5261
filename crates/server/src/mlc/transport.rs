//! SIP transports of the MLC: one UDP socket and one TCP listener on
//! `sip.listen`, plus outgoing TCP connections to PBXs. Behind the
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
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

pub const MAX_CONNECTIONS: usize = 4096;
const IDLE: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    Udp,
    Tcp,
}

impl Proto {
    pub fn via_name(self) -> &'static str {
        match self {
            Proto::Udp => "UDP",
            Proto::Tcp => "TCP",
        }
    }

    pub fn uri_param(self) -> &'static str {
        match self {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
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
    /// The address this transport listens on.
    fn local_addr(&self) -> SocketAddr;
}

pub struct NetTransport {
    udp: Arc<UdpSocket>,
    local: SocketAddr,
    tcp: Arc<Mutex<HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>>>,
    inbound: mpsc::Sender<Inbound>,
}

impl NetTransport {
    /// Binds UDP and TCP on `listen` (port 0 picks one port free for both)
    /// and starts the receive loops.
    pub async fn bind(
        listen: SocketAddr,
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
        let t = Arc::new(NetTransport {
            udp: Arc::new(udp),
            local,
            tcp: Default::default(),
            inbound,
        });
        tokio::spawn(udp_loop(t.clone()));
        tokio::spawn(accept_loop(t.clone(), tcp));
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

    fn stream(self: &Arc<Self>, s: TcpStream, peer: SocketAddr) -> mpsc::Sender<Vec<u8>> {
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(256);
        let _ = s.set_nodelay(true);
        let (mut rd, mut wr): (_, OwnedWriteHalf) = s.into_split();
        tokio::spawn(async move {
            while let Some(b) = rx.recv().await {
                if wr.write_all(&b).await.is_err() {
                    break;
                }
            }
        });
        let me = self.clone();
        let tx2 = tx.clone();
        self.tcp.lock().unwrap().insert(peer, tx.clone());
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
                            if !me.deliver(
                                &msg,
                                Peer {
                                    proto: Proto::Tcp,
                                    addr: peer,
                                },
                                Framing::Stream,
                            ) {
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
            let mut map = me.tcp.lock().unwrap();
            if map.get(&peer).is_some_and(|s| s.same_channel(&tx2)) {
                map.remove(&peer);
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

async fn accept_loop(t: Arc<NetTransport>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((s, peer)) => {
                if t.tcp.lock().unwrap().len() >= MAX_CONNECTIONS {
                    tracing::warn!(peer = %peer, "too many SIP connections; refusing one");
                    continue;
                }
                t.stream(s, peer);
            }
            Err(e) => {
                tracing::warn!(error = %e, "SIP TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[async_trait::async_trait]
impl SipTransport for Arc<NetTransport> {
    async fn send(&self, to: Peer, bytes: &[u8]) -> std::io::Result<()> {
        match to.proto {
            Proto::Udp => self.udp.send_to(bytes, to.addr).await.map(|_| ()),
            Proto::Tcp => {
                let existing = self.tcp.lock().unwrap().get(&to.addr).cloned();
                let tx = match existing {
                    Some(tx) if !tx.is_closed() => tx,
                    _ => {
                        let s = tokio::time::timeout(
                            Duration::from_secs(5),
                            TcpStream::connect(to.addr),
                        )
                        .await
                        .map_err(|_| {
                            std::io::Error::new(
                                std::io::ErrorKind::TimedOut,
                                "TCP connect timed out",
                            )
                        })??;
                        self.stream(s, to.addr)
                    }
                };
                tx.send(bytes.to_vec()).await.map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::BrokenPipe, "connection closed")
                })
            }
        }
    }

    fn local_addr(&self) -> SocketAddr {
        self.local
    }
}
