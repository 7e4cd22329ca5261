//! The backup file format: a clear header, the payload (the files of a
//! data directory) encrypted under a key derived from the administrator's
//! passphrase, then a clear trailer. Without the passphrase a backup
//! reveals nothing but its manifest (header and trailer), which holds no
//! personal data (times, sizes, a checksum).
//!
//! ```text
//! OPENTURRET-BACKUP-2\n
//! {header JSON}\n
//! STREAM(AES-256-GCM, 64 KiB chunks, header line as associated data)
//! {trailer JSON} | u64 trailer length | "OTB2-END"
//! ```
//!
//! The payload is a sequence of `u16 name length | name | u64 length | bytes`
//! entries. The passphrase key is argon2id(passphrase, salt); each backup's
//! own key is HKDF-SHA256 of it with a random salt of that backup. Chunk
//! `i` is sealed under the nonce `prefix(7) | i (u32 BE) | last (1 byte)`
//! (the STREAM construction), with the header as associated data: each
//! chunk's tag is its checksum, and no chunk can be altered, reordered,
//! dropped or cut off, nor the header. The header also holds a key check
//! (another HKDF output), so a wrong passphrase is told at once and apart
//! from damage. The trailer is written last, so a backup is made in one
//! pass: the payload's length and its files' sizes, each checked against
//! the authenticated payload when the backup is read. Writing and reading
//! stream: a backup never needs to fit in memory.
//!
//! A backup is protected one of two ways. Under a passphrase: the key is
//! as above. Under the installation's backup key ([`BackupKey`]): each
//! backup's key is random, sealed (X25519) to the installation's public
//! key, and the header carries that sealed key, the public key and the
//! private key wrapped under the passphrase (argon2id, 64 MiB, 3 passes).
//! Making such a backup needs no passphrase and no derivation at all;
//! reading one needs the passphrase only, on any machine.
//!
//! Format 1 (still read) sealed with XChaCha20-Poly1305 and had no trailer:
//! its single manifest line held a checksum of the payload, which took a
//! first pass to compute.
//!
//! Key derivation costs about 0.3 s and 64 MiB by design (the price of an
//! offline attack on the passphrase). A process keeps the last key it
//! derived, found again by a MAC of the passphrase under a key that never
//! leaves the process: later backups under the same passphrase reuse that
//! key and its salt (each still gets its own key through HKDF), so
//! scheduled backups pay for the derivation once per process.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::KeyInit;
use chacha20poly1305::aead::stream::DecryptorBE32;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use openturret_domain::secret::Secret;
use rand_core::{OsRng, RngCore};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::{Result, StoreError};

// `keys`: the passphrase key and each backup's own key; `write`: making a
// backup in one pass; `read`: its manifest, and its files after every check.
mod keys;
mod read;
#[cfg(test)]
mod tests;
mod write;

pub use keys::prepare_key;
use keys::*;
pub use read::{extract, manifest};
pub use write::Writer;

const MAGIC_1: &[u8] = b"OPENTURRET-BACKUP-1\n";
const MAGIC: &[u8] = b"OPENTURRET-BACKUP-2\n";
const END: &[u8] = b"OTB2-END";
const CHUNK: usize = 64 * 1024;
const TAG: usize = 16;
const CIPHER: &str = "aes256gcm-stream-be32-64k";
/// HKDF's `info` for a backup's own key, and for its key check.
const KEY_INFO: &[u8] = b"openturret backup 2";
const CHECK_INFO: &[u8] = b"openturret backup 2 key check";

/// What a backup says about itself, readable without the passphrase.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub format: u32,
    /// Unix milliseconds.
    pub created_at: i64,
    /// The newest database migration the backup contains.
    pub schema_version: i64,
    pub created_by: String,
    /// Format 1: SHA-256 of the decrypted payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_sha256: Option<String>,
    pub payload_len: u64,
    /// Names and sizes of the files inside.
    pub files: Vec<(String, u64)>,
    /// The passphrase's key derivation (absent under a backup key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kdf: Option<Kdf>,
    pub cipher: String,
    pub nonce_prefix: String,
    /// Under a backup key: the sealed key of this backup and the key pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<Recipient>,
    /// Format 2: the HKDF salt of this backup's own key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_salt: Option<String>,
    /// Format 2: tells whether a passphrase is the right one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_check: Option<String>,
}

/// The part of the manifest written before the payload (and bound to it).
#[derive(Serialize, Deserialize)]
struct Header {
    format: u32,
    created_at: i64,
    schema_version: i64,
    created_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kdf: Option<Kdf>,
    cipher: String,
    nonce_prefix: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    recipient: Option<Recipient>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_salt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_check: Option<String>,
}

/// How a backup made under a backup key names its key (all hex).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Recipient {
    /// The installation's public key.
    pub public: String,
    /// Its private key, wrapped under the passphrase.
    pub wrapped: String,
    /// This backup's own key, sealed to the public key.
    pub sealed_key: String,
}

/// An installation's backup key: backups are sealed to its public half,
/// so making one needs no passphrase; its private half, wrapped under the
/// passphrase, travels in every backup, so reading one needs only the
/// passphrase. Holds nothing secret in the clear.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackupKey {
    pub public: String,
    pub wrapped: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

impl BackupKey {
    /// A new key pair, its private half wrapped under `passphrase` (slow:
    /// argon2id, about 0.3 s).
    pub fn create(passphrase: &Secret, created_at: i64) -> BackupKey {
        let k = crate::sealing::OpenKey::generate();
        BackupKey {
            public: hex(&k.public()),
            wrapped: hex(&k.wrap_strong(passphrase)),
            created_at,
        }
    }

    /// A short name of the key (SHA-256 of the public key, 16 hex digits).
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.public)
    }

    fn public_bytes(&self) -> Result<[u8; 32]> {
        unhex(&self.public)
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| StoreError::Integrity("backup key: bad public key".into()))
    }
}

fn fingerprint(public_hex: &str) -> String {
    hex(&Sha256::digest(public_hex.as_bytes()))[..16].to_string()
}

/// What protects a new backup.
pub enum Protection {
    /// A passphrase (derived with argon2id, kept for later backups).
    Passphrase(Secret),
    /// The installation's backup key: no passphrase needed to make one.
    Key(BackupKey),
}

/// The part of the manifest written after the payload.
#[derive(Serialize, Deserialize)]
struct Trailer {
    payload_len: u64,
    files: Vec<(String, u64)>,
}

impl Manifest {
    /// The fingerprint of the backup key protecting this backup, if one does.
    pub fn key_fingerprint(&self) -> Option<String> {
        self.recipient.as_ref().map(|r| fingerprint(&r.public))
    }

    fn new(h: Header, t: Trailer) -> Self {
        Manifest {
            format: h.format,
            created_at: h.created_at,
            schema_version: h.schema_version,
            created_by: h.created_by,
            payload_sha256: None,
            payload_len: t.payload_len,
            files: t.files,
            kdf: h.kdf,
            cipher: h.cipher,
            nonce_prefix: h.nonce_prefix,
            recipient: h.recipient,
            key_salt: h.key_salt,
            key_check: h.key_check,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Kdf {
    pub alg: String,
    pub m_kib: u32,
    pub t: u32,
    pub p: u32,
    pub salt: String,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

pub(super) fn io(e: std::io::Error) -> StoreError {
    StoreError::backend(e)
}

/// Reads until `buf` is full or the input ends; returns how much was read.
pub(super) fn fill(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
