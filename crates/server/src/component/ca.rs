//! The internal CA: certificates for MLCs and for the component listener,
//! and the list of enrolled MLCs.

use super::*;

pub(super) fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("components")
}

/// Replaces `path` with a file of `text` readable by its owner only.
pub(super) fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    openturret_store::keys::replace_private(path, text.as_bytes())
        .with_context(|| format!("while writing {}", path.display()))
}

pub(super) fn ca_params() -> anyhow::Result<rcgen::CertificateParams> {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "OpenTurret component CA");
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    Ok(p)
}

/// The CA's certificate (PEM) and signing key, made on first use.
pub(super) fn ensure_ca(data_dir: &Path) -> anyhow::Result<(String, rcgen::KeyPair)> {
    let d = dir(data_dir);
    let (cert, key) = (d.join("ca.pem"), d.join("ca.key"));
    if !cert.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&d)
            .with_context(|| format!("while creating {}", d.display()))?;
        let k = rcgen::KeyPair::generate()?;
        let c = ca_params()?.self_signed(&k)?;
        write_private(&key, &k.serialize_pem())?;
        std::fs::write(&cert, c.pem())?;
    }
    let pem = std::fs::read_to_string(&cert)?;
    let k = rcgen::KeyPair::from_pem(&std::fs::read_to_string(&key)?)
        .context("the component CA key is unreadable")?;
    Ok((pem, k))
}

/// A certificate and key issued by the CA: for an MLC (`client`) or for
/// the System Manager's component listener (`names` as its SANs).
pub(super) fn issue(
    data_dir: &Path,
    common_name: &str,
    names: Vec<String>,
    client: bool,
) -> anyhow::Result<(String, String)> {
    let (_, ca_key) = ensure_ca(data_dir)?;
    let issuer = rcgen::Issuer::new(ca_params()?, ca_key);
    let mut p = rcgen::CertificateParams::new(names)?;
    p.distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    p.extended_key_usages = vec![if client {
        rcgen::ExtendedKeyUsagePurpose::ClientAuth
    } else {
        rcgen::ExtendedKeyUsagePurpose::ServerAuth
    }];
    let k = rcgen::KeyPair::generate()?;
    let c = p.signed_by(&k, &issuer)?;
    Ok((c.pem(), k.serialize_pem()))
}

pub(super) fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(super) fn enrolled_path(data_dir: &Path) -> PathBuf {
    dir(data_dir).join("enrolled.json")
}

/// The enrolled MLCs: name → certificate fingerprint.
pub fn enrolled(data_dir: &Path) -> anyhow::Result<HashMap<String, String>> {
    match std::fs::read_to_string(enrolled_path(data_dir)) {
        Ok(t) => Ok(serde_json::from_str(&t).context("components/enrolled.json is corrupt")?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HashMap::new()),
        Err(e) => Err(e.into()),
    }
}

pub(super) fn save_enrolled(data_dir: &Path, e: &HashMap<String, String>) -> anyhow::Result<()> {
    write_private(&enrolled_path(data_dir), &serde_json::to_string_pretty(e)?)
}

/// `turret mlc enrol NAME --out DIR`: issues an MLC's certificate and key
/// (and copies the CA certificate) into `out`; returns the files written.
pub fn enrol(data_dir: &Path, name: &str, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if name.is_empty()
        || name.len() > 64
        || name == telephony::LOCAL_NAME
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        bail!(
            "{name:?}: an MLC name is 1 to 64 letters, digits, '-', '_' or '.', and not \"local\""
        );
    }
    let mut all = enrolled(data_dir)?;
    if all.contains_key(name) {
        bail!("an MLC named {name} is enrolled already (revoke it first to issue a new one)");
    }
    let (cert, key) = issue(data_dir, name, vec![name.to_string()], true)?;
    let (ca, _) = ensure_ca(data_dir)?;
    std::fs::create_dir_all(out).with_context(|| format!("while creating {}", out.display()))?;
    let files = vec![
        out.join(format!("{name}.pem")),
        out.join(format!("{name}.key")),
        out.join("ca.pem"),
    ];
    std::fs::write(&files[0], &cert)?;
    write_private(&files[1], &key)?;
    std::fs::write(&files[2], ca)?;
    let der = CertificateDer::from_pem_slice(cert.as_bytes())?;
    all.insert(name.to_string(), fingerprint(&der));
    save_enrolled(data_dir, &all)?;
    Ok(files)
}

/// `turret mlc revoke NAME`: its certificate is refused from now on (and
/// its connection, if any, ends at its next message).
pub fn revoke(data_dir: &Path, name: &str) -> anyhow::Result<()> {
    let mut all = enrolled(data_dir)?;
    if all.remove(name).is_none() {
        bail!("no MLC named {name} is enrolled");
    }
    save_enrolled(data_dir, &all)
}
