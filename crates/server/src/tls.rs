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

/// When the first certificate of a PEM chain expires, read from its DER
/// (validity's notAfter, UTCTime or GeneralizedTime); `None` if the file
/// holds no certificate that parses.
pub fn not_after(pem: &[u8]) -> Option<openturret_domain::Timestamp> {
    let der = CertificateDer::pem_slice_iter(pem).next()?.ok()?;
    not_after_der(der.as_ref())
}

/// One DER element at the start of `b`: tag, contents, rest.
fn der(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, b) = b.split_first()?;
    let (&first, mut b) = b.split_first()?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || b.len() < n {
            return None;
        }
        let len = b[..n].iter().fold(0usize, |a, x| a << 8 | *x as usize);
        b = &b[n..];
        len
    };
    (b.len() >= len).then(|| (tag, &b[..len], &b[len..]))
}

fn not_after_der(cert: &[u8]) -> Option<openturret_domain::Timestamp> {
    let (_, certificate, _) = der(cert)?;
    let (_, tbs, _) = der(certificate)?;
    let (tag, _, mut rest) = der(tbs)?;
    if tag == 0xa0 {
        // [0] version: the serial number follows.
        rest = der(rest)?.2;
    }
    let rest = der(rest)?.2; // signature algorithm
    let rest = der(rest)?.2; // issuer
    let (_, validity, _) = der(rest)?;
    let (_, _, after) = der(validity)?; // notBefore
    let (tag, time, _) = der(after)?;
    let digits = std::str::from_utf8(time).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 => {
            let y: i64 = digits.get(..2)?.parse().ok()?;
            (if y < 50 { 2000 + y } else { 1900 + y }, &digits[2..])
        }
        0x18 => (digits.get(..4)?.parse().ok()?, &digits[4..]),
        _ => return None,
    };
    let n = |i: usize| -> Option<i64> { rest.get(i..i + 2)?.parse().ok() };
    let (month, day, h, m, s) = (n(0)?, n(2)?, n(4)?, n(6)?, n(8)?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(openturret_domain::Timestamp(
        ((days * 24 + h) * 60 + m) * 60_000 + s * 1000,
    ))
}

#[cfg(test)]
mod expiry_tests {
    #[test]
    fn a_certificates_expiry_is_read_from_its_der() {
        for (year, month, day) in [(2031, 3, 9), (2049, 12, 31), (2051, 1, 1)] {
            let mut p = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
            p.not_after = rcgen::date_time_ymd(year, month, day);
            let key = rcgen::KeyPair::generate().unwrap();
            let pem = p.self_signed(&key).unwrap().pem();
            let at = super::not_after(pem.as_bytes()).unwrap();
            let want = humantime::parse_rfc3339(&format!("{year}-{month:02}-{day:02}T00:00:00Z"))
                .unwrap()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64;
            assert_eq!(at.0, want, "{year}-{month}-{day}");
        }
        assert!(super::not_after(b"not a certificate").is_none());
    }
}
