//! TLS for every connection (SPEC rule 12): the certificate (configured, or
//! generated on first start) and a listener that hands axum only completed
//! TLS 1.3 handshakes.
//!
//! Handshakes run in their own tasks with a timeout, so a slow or silent
//! client cannot hold up anyone else's connection.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::config::TlsConfig;
use crate::net::{Conn, Limits};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the certificate in use lives, and whether it was generated now.
#[derive(Debug)]
pub struct CertInfo {
    pub cert_path: PathBuf,
    pub generated: bool,
}

/// Builds the server's TLS configuration, generating a self-signed
/// certificate into `<data_dir>/tls/` when none is configured and none was
/// generated before.
pub fn server_config(
    tls: &TlsConfig,
    data_dir: &Path,
    host_name: &str,
) -> anyhow::Result<(Arc<rustls::ServerConfig>, CertInfo)> {
    let (cert_path, key_path, generated) = match (&tls.cert, &tls.key) {
        (Some(c), Some(k)) => (c.clone(), k.clone(), false),
        _ => {
            let dir = data_dir.join("tls");
            let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
            let generated = !c.exists();
            if generated {
                generate(&dir, &c, &k, host_name)?;
            }
            (c, k, generated)
        }
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .with_context(|| format!("while opening certificate {}", cert_path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("while reading certificate {}", cert_path.display()))?;
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .with_context(|| format!("while reading private key {}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("while selecting TLS 1.3")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("while loading the certificate and key (do they match?)")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((
        Arc::new(config),
        CertInfo {
            cert_path,
            generated,
        },
    ))
}

fn generate(dir: &Path, cert: &Path, key: &Path, host_name: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("while creating {}", dir.display()))?;
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if !host_name.is_empty() && host_name != "localhost" {
        names.push(host_name.to_string());
    }
    let mut params = rcgen::CertificateParams::new(names).context("while preparing certificate")?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "OpenTurret System Manager");
    let signing_key = rcgen::KeyPair::generate().context("while generating a key")?;
    let certificate = params
        .self_signed(&signing_key)
        .context("while signing certificate")?;
    let mut kf = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(key)
        .with_context(|| format!("while creating {}", key.display()))?;
    kf.write_all(signing_key.serialize_pem().as_bytes())?;
    std::fs::write(cert, certificate.pem())
        .with_context(|| format!("while writing {}", cert.display()))?;
    Ok(())
}

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
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(sock)).await {
                        Ok(Ok(stream)) => {
                            let _ = sender.send((Conn::new(stream, slot, idle), peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
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

/// The client's address, available to handlers as `ConnectInfo<ClientAddr>`.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);
