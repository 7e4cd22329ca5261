//! Keys kept outside the database.
//!
//! One 32-byte master key lives in a file of the data directory, created
//! with mode 0600 on first start and never stored in the database, so a copy
//! of the database alone reveals no line password and cannot forge the audit
//! chain. Purpose keys are derived from it with HMAC-SHA-256 and a label.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use openturret_domain::secret::Secret;
use openturret_domain::{LineId, RecorderId};
use rand_core::{OsRng, RngCore};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::{Result, StoreError};

const KEY_LEN: usize = 32;
/// First byte of every line-password ciphertext: the format version.
const LINE_CIPHER_V1: u8 = 1;

/// The keys derived from the master key file.
#[derive(Clone)]
pub struct Keys {
    line: Zeroizing<[u8; KEY_LEN]>,
    audit: Zeroizing<[u8; KEY_LEN]>,
    /// Seals the notes the nodes of one deployment send each other.
    cluster: Zeroizing<[u8; KEY_LEN]>,
    /// Marks the names of erased profiles in the deployment's ledger.
    erased: Zeroizing<[u8; KEY_LEN]>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys([redacted])")
    }
}

impl Keys {
    /// Reads the master key at `path`, creating it (mode 0600) if absent.
    pub fn load_or_create(path: &Path) -> Result<Keys> {
        Ok(Keys::derive(&key_file(path)?))
    }

    /// The master key bytes themselves, for a backup (encrypted there).
    pub fn read_master(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
        key_file(path)
    }

    fn derive(master: &[u8]) -> Keys {
        let sub = |label: &[u8]| {
            let mut m = <Hmac<Sha256> as Mac>::new_from_slice(master).expect("any key length");
            m.update(label);
            let out: [u8; KEY_LEN] = m.finalize().into_bytes().into();
            Zeroizing::new(out)
        };
        Keys {
            line: sub(b"openturret line-password v1"),
            audit: sub(b"openturret audit-chain v1"),
            cluster: sub(b"openturret cluster-notes v1"),
            erased: sub(b"openturret erased-name v1"),
        }
    }

    /// The mark of an erased profile's name (HMAC-SHA-256 under a key of
    /// its own): what the deployment's ledger keeps so that a node which
    /// was down at the erasure finds the name in its own CDR files, without
    /// the name itself being kept anywhere.
    pub fn erased_name_mark(&self, name: &str) -> [u8; 32] {
        let mut m =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.erased[..]).expect("any key length");
        m.update(name.as_bytes());
        m.finalize().into_bytes().into()
    }

    /// The key of the audit hash chain.
    pub fn audit_key(&self) -> &[u8] {
        &self.audit[..]
    }

    fn line_aad(id: LineId) -> Vec<u8> {
        format!("openturret line password v1; line {}", id.0).into_bytes()
    }

    fn recorder_aad(id: RecorderId) -> Vec<u8> {
        format!("openturret recorder password v1; recorder {}", id.0).into_bytes()
    }

    /// Encrypts a line password, bound to the line's id so a ciphertext
    /// copied onto another line does not decrypt.
    pub fn seal_line_password(&self, id: LineId, password: &Secret) -> Vec<u8> {
        self.seal(&Self::line_aad(id), password)
    }

    pub fn open_line_password(&self, id: LineId, sealed: &[u8]) -> Result<Secret> {
        self.open(&Self::line_aad(id), sealed).ok_or_else(|| {
            StoreError::Integrity(format!("line {id}: stored password does not decrypt"))
        })
    }

    /// A recorder's digest password, sealed like a line's (same key,
    /// bound to the recorder's id).
    pub fn seal_recorder_password(&self, id: RecorderId, password: &Secret) -> Vec<u8> {
        self.seal(&Self::recorder_aad(id), password)
    }

    pub fn open_recorder_password(&self, id: RecorderId, sealed: &[u8]) -> Result<Secret> {
        self.open(&Self::recorder_aad(id), sealed).ok_or_else(|| {
            StoreError::Integrity(format!("recorder {id}: stored password does not decrypt"))
        })
    }

    /// Seals a note between the nodes of one deployment (they share the
    /// master key; the database between them sees only this), bound to
    /// its topic.
    pub fn seal_note(&self, topic: &str, note: &[u8]) -> Vec<u8> {
        seal_with(&self.cluster, &Self::note_aad(topic), note)
    }

    /// Opens a note of `topic`; `None` if it was not sealed by a node of
    /// this deployment for that topic.
    pub fn open_note(&self, topic: &str, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        open_with(&self.cluster, &Self::note_aad(topic), sealed)
    }

    fn note_aad(topic: &str) -> Vec<u8> {
        format!("openturret cluster note v1; {topic}").into_bytes()
    }

    fn seal(&self, aad: &[u8], password: &Secret) -> Vec<u8> {
        seal_with(&self.line, aad, password.expose().as_bytes())
    }

    fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Secret> {
        let pt = open_with(&self.line, aad, sealed)?;
        std::str::from_utf8(&pt).ok().map(Secret::new)
    }
}

fn seal_with(key: &[u8; KEY_LEN], aad: &[u8], msg: &[u8]) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new(key.into());
    let mut nonce = [0u8; 24];
    OsRng.fill_bytes(&mut nonce);
    let ct = cipher
        .encrypt(XNonce::from_slice(&nonce), Payload { msg, aad })
        .expect("XChaCha20-Poly1305 encryption does not fail for small messages");
    let mut out = Vec::with_capacity(1 + nonce.len() + ct.len());
    out.push(LINE_CIPHER_V1);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

fn open_with(key: &[u8; KEY_LEN], aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if sealed.len() < 1 + 24 + 16 || sealed[0] != LINE_CIPHER_V1 {
        return None;
    }
    let cipher = XChaCha20Poly1305::new(key.into());
    cipher
        .decrypt(
            XNonce::from_slice(&sealed[1..25]),
            Payload {
                msg: &sealed[25..],
                aad,
            },
        )
        .ok()
        .map(Zeroizing::new)
}

/// Reads a 32-byte key file, creating it (mode 0600, random) if absent and
/// tightening its mode if others could read it.
pub fn key_file(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    let key = match fs::read(path) {
        Ok(bytes) => {
            let mode = fs::metadata(path)
                .map_err(StoreError::backend)?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777),
                    "key file is readable by group or others; setting mode 0600");
                fs::set_permissions(path, fs::Permissions::from_mode(0o600))
                    .map_err(StoreError::backend)?;
            }
            Zeroizing::new(bytes)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = Zeroizing::new(vec![0u8; KEY_LEN]);
            OsRng.fill_bytes(&mut key);
            write_private(path, &key)?;
            key
        }
        Err(e) => return Err(StoreError::backend(e)),
    };
    if key.len() != KEY_LEN {
        return Err(StoreError::Integrity(format!(
            "key file {} holds {} bytes, expected {KEY_LEN}",
            path.display(),
            key.len()
        )));
    }
    Ok(key)
}

/// Replaces `path` at once with a file of `bytes` readable by its owner
/// only: a new private file beside it (`<path>.new`), synced, renamed over
/// the old one. A reader sees the old file or the new one, never part of
/// either, and an old file's wider mode never carries over.
pub fn replace_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".new");
    let tmp = std::path::PathBuf::from(tmp);
    // Left by an interrupted replace, if any.
    let _ = fs::remove_file(&tmp);
    write_private(&tmp, bytes)?;
    fs::rename(&tmp, path).map_err(StoreError::backend)
}

/// Writes a new file readable by its owner only, synced to disk; fails if
/// it exists.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(StoreError::backend)?;
    f.write_all(bytes).map_err(StoreError::backend)?;
    f.sync_all().map_err(StoreError::backend)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_file_is_private_whatever_it_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("enrolled.json");
        fs::write(&p, b"old").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        // A leftover of an interrupted replace does not stand in the way.
        fs::write(dir.path().join("enrolled.json.new"), b"half").unwrap();
        replace_private(&p, b"new").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(!dir.path().join("enrolled.json.new").exists());
    }

    #[test]
    fn key_file_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secret.key");
        let k1 = Keys::load_or_create(&p).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let k2 = Keys::load_or_create(&p).unwrap();
        assert_eq!(k1.audit_key(), k2.audit_key());
    }

    #[test]
    fn line_passwords_are_bound_to_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let k = Keys::load_or_create(&dir.path().join("k")).unwrap();
        let sealed = k.seal_line_password(LineId(1), &Secret::new("sip-pass"));
        assert!(!sealed.windows(8).any(|w| w == b"sip-pass"));
        assert_eq!(
            k.open_line_password(LineId(1), &sealed).unwrap().expose(),
            "sip-pass"
        );
        assert!(k.open_line_password(LineId(2), &sealed).is_err());
    }

    #[test]
    fn a_short_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        fs::write(&p, b"short").unwrap();
        assert!(matches!(
            Keys::load_or_create(&p),
            Err(StoreError::Integrity(_))
        ));
    }
}
