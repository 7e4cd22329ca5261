//! Shutdown within a bound (issue 14, point 9): a web turret connected
//! over HTTP/2 from real Chromium, and a half-sent request, do not keep a
//! stopping server alive; the turret is told and shows it at once.

mod common;

use std::time::{Duration, Instant};

use common::browser::Browser;
use serde_json::json;
use tokio::io::AsyncWriteExt;

/// A TLS connection to the server that sends half a request and stops.
async fn half_sent_request(
    url: &str,
    cert_pem: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut tls = common::tls_to(common::socket_addr(url), cert_pem, b"http/1.1").await;
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .unwrap();
    tls.flush().await.unwrap();
    // Held open (not read, not closed) by the caller.
    tls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_the_server_within_a_bound_and_the_turret_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, api) = common::fresh(dir.path()).await;
    let (s, v) = api
        .post(
            "/api/v1/profiles",
            json!({"name": "Ann Trader", "password": "ann-pw-123"}),
        )
        .await;
    assert!(s.is_success(), "{v}");

    let b = Browser::start(&server.url).await;
    b.goto("/turret").await;
    b.wait_text(".profiles", "Ann Trader").await;
    b.click(".profiles button").await;
    b.fill("#password", "ann-pw-123").await;
    b.click("#login").await;
    b.wait_text("#who", "Ann Trader").await;
    assert_eq!(b.text("#link").await, "connected");
    // Chromium speaks HTTP/2 to the server (and its WebSocket rides on it).
    let proto = b
        .client
        .execute(
            "return performance.getEntriesByType('navigation')[0].nextHopProtocol",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(proto, json!("h2"), "the browser's connection is HTTP/2");
    let cert = std::fs::read(dir.path().join("tls/cert.pem")).unwrap();
    let held = half_sent_request(&server.url, &cert).await;

    let took = tokio::task::block_in_place(|| server.sigterm_exit_time(Duration::from_secs(20)));
    let took = took.expect("the server still ran 20 s after SIGTERM");
    eprintln!("the server stopped {took:?} after SIGTERM");
    assert!(
        took <= openturret_server::SHUTDOWN_GRACE + Duration::from_secs(5),
        "stopping took {took:?}"
    );
    // The turret was told (close code 1012) and shows it.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let link = b.text("#link").await;
        if link.contains("restarting") {
            break;
        }
        assert!(Instant::now() < deadline, "the turret shows {link:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(held);
}
