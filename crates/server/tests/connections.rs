//! Slow and idle clients (issue 14, point 8), against the real binary: a
//! half-sent request and a silent connection are closed after their
//! timeouts, and one address cannot take more than its share of
//! connections while others are served.

mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long until the server closes `s` (reads until end or error).
async fn closed_after(
    mut s: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    limit: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit.saturating_sub(start.elapsed()), s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_closed_and_one_address_gets_its_share() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::Server::start(
        dir.path(),
        &[
            ("TURRET_HTTP__HEADER_TIMEOUT_SECS", "2"),
            ("TURRET_HTTP__IDLE_TIMEOUT_SECS", "3"),
            ("TURRET_HTTP__MAX_CONNECTIONS_PER_ADDRESS", "20"),
        ],
    )
    .await;
    let to = common::socket_addr(&server.url);
    let cert = std::fs::read(dir.path().join("tls/cert.pem")).unwrap();

    // 1. Half a request's headers, then nothing: closed after the header
    // timeout.
    let mut half = common::tls_to(to, &cert, b"http/1.1").await;
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .unwrap();
    half.flush().await.unwrap();
    let took = closed_after(half, Duration::from_secs(15)).await;
    let took = took.expect("a half-sent request was still open after 15 s");
    assert!(took >= Duration::from_secs(1), "closed too early: {took:?}");

    // 1b. A whole request is answered, saying how long the connection is
    // kept waiting for the next (the header timeout), and it is closed
    // after about as long.
    let mut kept = common::tls_to(to, &cert, b"http/1.1").await;
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    kept.flush().await.unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = kept.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before answering");
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.contains("keep-alive: timeout=2"), "{head}");
    let took = closed_after(kept, Duration::from_secs(15))
        .await
        .expect("an idle HTTP/1.1 connection was still open after 15 s");
    assert!(took >= Duration::from_secs(1), "closed too early: {took:?}");

    // 2. An HTTP/2 connection that never speaks: closed after the idle
    // timeout.
    let silent = common::tls_to(to, &cert, b"h2").await;
    let took = closed_after(silent, Duration::from_secs(15)).await;
    assert!(
        took.is_some(),
        "a silent connection was still open after 15 s"
    );

    // 3. One address opens 30 connections (and never handshakes): 20 are
    // held, 10 are closed at once; another address is served meanwhile.
    let mut held: Vec<TcpStream> = Vec::new();
    for _ in 0..30 {
        let s = connect_from("127.0.0.2", to).await;
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        held.push(s);
    }
    // Read each until 10 are closed (the ones over the limit are closed at
    // once; the others wait for a handshake that never comes, for 10 s).
    let closed = tokio::task::spawn_blocking(move || {
        let (mut n, mut open) = (0, held);
        let deadline = Instant::now() + Duration::from_secs(5);
        while n < 10 && Instant::now() < deadline {
            let mut kept = Vec::new();
            for mut s in open {
                let mut b = [0u8; 16];
                match s.read(&mut b) {
                    Ok(0) => n += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => n += 1,
                    _ => kept.push(s),
                }
            }
            open = kept;
        }
        (n, open)
    })
    .await
    .unwrap();
    assert_eq!(closed.0, 10, "connections over the per-address limit");
    let api = server.client();
    let (s, _) = api.get("/healthz").await;
    assert!(s.is_success(), "another address is served: {s}");
    drop(closed.1);
    server.stop();
}

/// A TCP connection to `to` from the local address `from` (blocking).
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap();
    let s = sock.connect(to).await.unwrap().into_std().unwrap();
    s.set_nonblocking(false).unwrap();
    s
}
