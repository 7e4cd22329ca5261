//! The HTTPS listener's connections (issue 14, points 8 and 9): how many
//! may be open (in all, below the file-descriptor limit, and per client
//! address), how long headers may take and a connection may sit idle, and
//! a shutdown that ends within a bound whatever the clients do.
//!
//! - [`Limits`] counts connections from accept (before the TLS handshake)
//!   to close; one over a limit is closed at once.
//! - [`Conn`] is a connection's stream: it holds its [`Slot`] and closes
//!   itself after `idle_timeout_secs` with nothing read or written.
//! - [`run`] serves each connection with hyper (HTTP/1.1 with a header
//!   timeout, HTTP/2 with keep-alive pings and extended CONNECT for
//!   WebSockets) and, once shutdown begins, asks each to finish and
//!   drops what is left after [`crate::SHUTDOWN_GRACE`].

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tower::ServiceExt;

use crate::config::HttpConfig;
use crate::tls::ClientAddr;

/// File descriptors kept for everything but client connections (the
/// database, SIP, log files, outgoing connections).
const FD_RESERVE: u64 = 512;

/// Connections open now, in all and per address.
pub struct Limits {
    max_total: usize,
    max_per_address: usize,
    total: AtomicUsize,
    per_address: Mutex<HashMap<IpAddr, usize>>,
    refused: AtomicU64,
    last_notice: Mutex<Option<Instant>>,
    /// Where refusals and failed handshakes are reported (the error log).
    events: Option<Arc<crate::events::EventLog>>,
}

impl Limits {
    /// The limits of `http`, with the total kept below the file-descriptor
    /// limit (whose soft value is first raised to the hard one).
    pub fn new(http: &HttpConfig) -> Limits {
        let fds = raise_fd_limit();
        let below_fds = fds.map_or(usize::MAX, |n| {
            n.saturating_sub(FD_RESERVE).max(64) as usize
        });
        let max_total = http.max_connections.max(1).min(below_fds);
        if max_total < http.max_connections {
            tracing::warn!(
                max_connections = max_total,
                configured = http.max_connections,
                "fewer connections allowed than configured: the file-descriptor limit is lower"
            );
        }
        Limits {
            max_total,
            max_per_address: http.max_connections_per_address.max(1),
            total: AtomicUsize::new(0),
            per_address: Mutex::new(HashMap::new()),
            refused: AtomicU64::new(0),
            last_notice: Mutex::new(None),
            events: None,
        }
    }

    /// Reports refusals and failed TLS handshakes to `events`.
    pub fn with_events(mut self, events: Option<Arc<crate::events::EventLog>>) -> Limits {
        self.events = events;
        self
    }

    fn raise(&self, e: openturret_domain::model::Event) {
        if let Some(ev) = &self.events {
            ev.raise(e);
        }
    }

    /// A slot for a connection from `ip`, or `None` when a limit is reached.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let mut per = self.per_address.lock().unwrap_or_else(|p| p.into_inner());
        let n = per.get(&ip).copied().unwrap_or(0);
        let over_total = self.total.load(Ordering::SeqCst) >= self.max_total;
        if over_total || n >= self.max_per_address {
            drop(per);
            self.refused(ip, over_total);
            return None;
        }
        per.insert(ip, n + 1);
        self.total.fetch_add(1, Ordering::SeqCst);
        Some(Slot {
            limits: self.clone(),
            ip,
        })
    }

    /// Counts a refused connection; logs at most every 10 s.
    fn refused(&self, ip: IpAddr, over_total: bool) {
        let n = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        self.raise(openturret_domain::model::Event::warning(
            "connections.refused",
            "",
            if over_total {
                "connections were closed at once: the server has as many open as it allows"
            } else {
                "connections were closed at once: one address has as many open as it may"
            },
        ));
        let mut last = self.last_notice.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            *last = Some(Instant::now());
            tracing::warn!(
                address = %ip,
                limit = if over_total { "in all" } else { "per address" },
                refused_in_all = n,
                "connection closed at once: too many open"
            );
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }
}

/// A connection's place under the limits, given back when dropped.
pub struct Slot {
    limits: Arc<Limits>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.limits.total.fetch_sub(1, Ordering::SeqCst);
        let mut per = self
            .limits
            .per_address
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = per.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per.remove(&self.ip);
            }
        }
    }
}

/// Raises the soft file-descriptor limit to the hard one; returns the
/// limit in force.
fn raise_fd_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut l = getrlimit(Resource::Nofile);
    if let (Some(cur), Some(max)) = (l.current, l.maximum)
        && cur < max
    {
        l.current = Some(max);
        if setrlimit(Resource::Nofile, l.clone()).is_ok() {
            tracing::debug!(from = cur, to = max, "file-descriptor limit raised");
        }
    }
    getrlimit(Resource::Nofile).current
}

/// A connection's stream: its slot under the limits and an idle timer
/// (nothing read or written for `idle`: the stream fails, and hyper closes
/// the connection). Reads and writes only note the time; the timer is
/// moved on when it fires, not at every operation.
pub struct Conn<S> {
    inner: S,
    _slot: Slot,
    idle: Duration,
    last: tokio::time::Instant,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl<S> Conn<S> {
    pub fn new(inner: S, slot: Slot, idle: Duration) -> Conn<S> {
        Conn {
            inner,
            _slot: slot,
            idle,
            last: tokio::time::Instant::now(),
            timer: Box::pin(tokio::time::sleep(idle)),
        }
    }

    /// The outcome of an operation on the inner stream: a ready one marks
    /// the connection active; a pending one fails once the connection has
    /// been idle too long (and otherwise leaves the timer armed).
    fn settle<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if r.is_ready() {
            self.last = tokio::time::Instant::now();
            return r;
        }
        while self.timer.as_mut().poll(cx).is_ready() {
            let due = self.last + self.idle;
            if due <= tokio::time::Instant::now() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle too long",
                )));
            }
            self.timer.as_mut().reset(due);
        }
        Poll::Pending
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Conn<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.settle(cx, r)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Conn<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.settle(cx, r)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.settle(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A listener that yields TLS streams whose handshake has completed, each
/// counted under the connection limits from accept on (so a flood of
/// handshakes is bounded too) and closed when idle too long.
pub struct TlsListener {
    rx: mpsc::Receiver<(Conn<TlsStream<TcpStream>>, SocketAddr)>,
}

impl TlsListener {
    pub fn new(
        tcp: TcpListener,
        config: Arc<rustls::ServerConfig>,
        limits: Arc<Limits>,
        idle: Duration,
    ) -> std::io::Result<Self> {
        let acceptor = TlsAcceptor::from(config);
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(10);
            loop {
                let (sock, peer) = tokio::select! {
                    r = tcp.accept() => match r {
                        Ok(x) => x,
                        Err(e) => {
                            // Out of file descriptors and the like: wait
                            // longer each time, never spin.
                            tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "accept failed");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(1));
                            continue;
                        }
                    },
                    _ = tx.closed() => break,
                };
                backoff = Duration::from_millis(10);
                // Over a limit: closed at once (dropping the socket).
                let Some(slot) = limits.admit(peer.ip()) else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let sender = tx.clone();
                let limits = limits.clone();
                tokio::spawn(async move {
                    use openturret_domain::model::Event;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(sock)).await {
                        Ok(Ok(stream)) => {
                            let _ = sender.send((Conn::new(stream, slot, idle), peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            limits.raise(
                                Event::warning(
                                    "tls.handshake_failed",
                                    "",
                                    "TLS handshakes with the System Manager failed \
                                     (clients without TLS 1.3, or not speaking TLS)",
                                )
                                .with("last_error", e.kind()),
                            );
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            limits.raise(Event::warning(
                                "tls.handshake_timeout",
                                "",
                                "TLS handshakes with the System Manager timed out",
                            ));
                        }
                    }
                });
            }
        });
        Ok(TlsListener { rx })
    }

    /// The next connection, its handshake done.
    pub async fn next(&mut self) -> (Conn<TlsStream<TcpStream>>, SocketAddr) {
        match self.rx.recv().await {
            Some(x) => x,
            // The accept task only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }
}

/// Serves `router` on `listener` over TLS under the limits of `http` until
/// `shutdown`; then runs `on_stop`, asks every connection to finish and
/// returns within [`crate::SHUTDOWN_GRACE`].
pub async fn serve_router(
    router: axum::Router,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    http: &HttpConfig,
    events: Option<Arc<crate::events::EventLog>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_stop: impl FnOnce(),
) -> io::Result<()> {
    let limits = Arc::new(Limits::new(http).with_events(events));
    let idle = Duration::from_secs(http.idle_timeout_secs.max(1));
    let mut incoming = TlsListener::new(listener, tls, limits, idle)?;
    // Dropped at shutdown: every connection task sees it and finishes.
    let (stop_tx, stop_rx) = watch::channel(());
    // Each connection task holds a receiver; all gone = all closed.
    let (closed_tx, closed_rx) = watch::channel(());
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(http.header_timeout_secs.max(1)));
    builder
        .http2()
        .timer(TokioTimer::new())
        .enable_connect_protocol()
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20));
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            c = incoming.next() => c,
            _ = &mut shutdown => break,
        };
        let router = router.clone();
        let builder = builder.clone();
        let mut stop = stop_rx.clone();
        let closed = closed_rx.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut()
                        .insert(axum::extract::ConnectInfo(ClientAddr(peer)));
                    router.clone().oneshot(req.map(axum::body::Body::new))
                },
            );
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let mut stopping = false;
            loop {
                tokio::select! {
                    r = conn.as_mut() => {
                        if let Err(e) = r {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    _ = stop.changed(), if !stopping => {
                        stopping = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(closed);
        });
    }
    drop(incoming);
    on_stop();
    drop(stop_tx);
    drop(closed_rx);
    let all_closed = closed_tx.closed();
    if tokio::time::timeout(crate::SHUTDOWN_GRACE, all_closed)
        .await
        .is_err()
    {
        tracing::warn!(
            "connections still open {} s after the shutdown began; closing them",
            crate::SHUTDOWN_GRACE.as_secs()
        );
    }
    Ok(())
}
