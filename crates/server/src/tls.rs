//! TLS for every connection (SPEC rule 12): the certificate (configured, or
//! generated on first start) and the server configuration (TLS 1.3 only).
//! The listener that completes handshakes is `net::TlsListener`.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsConfig;

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

/// The client's address, available to handlers as `ConnectInfo<ClientAddr>`.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);
