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
pub enum Protection<'a> {
    Passphrase(&'a Secret),
    Key(&'a BackupKey),
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

fn derive(passphrase: &Secret, kdf: &Kdf) -> Result<Zeroizing<[u8; 32]>> {
    let salt = unhex(&kdf.salt)
        .ok_or_else(|| StoreError::Integrity("backup manifest: bad salt".into()))?;
    let params = Params::new(kdf.m_kib, kdf.t, kdf.p, Some(32)).map_err(|_| {
        StoreError::Integrity("backup manifest: bad key derivation parameters".into())
    })?;
    let mut key = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.expose().as_bytes(), &salt, &mut key[..])
        .map_err(|_| StoreError::Integrity("backup: key derivation failed".into()))?;
    Ok(key)
}

/// A format-2 backup's own key and its key check, from the passphrase key
/// and the backup's salt.
fn backup_key(passphrase_key: &[u8; 32], salt: &[u8]) -> Result<(LessSafeKey, String)> {
    let failed = || StoreError::Integrity("backup: key expansion failed".into());
    let hk = Hkdf::<Sha256>::new(Some(salt), passphrase_key);
    let mut okm = Zeroizing::new([0u8; 32]);
    hk.expand(KEY_INFO, &mut okm[..]).map_err(|_| failed())?;
    let mut check = [0u8; 16];
    hk.expand(CHECK_INFO, &mut check).map_err(|_| failed())?;
    Ok((aes_key(&okm[..])?, hex(&check)))
}

fn aes_key(bytes: &[u8]) -> Result<LessSafeKey> {
    let key = UnboundKey::new(&AES_256_GCM, bytes)
        .map_err(|_| StoreError::Integrity("backup: bad key".into()))?;
    Ok(LessSafeKey::new(key))
}

/// The nonce of chunk `i` (the STREAM construction, big-endian counter).
fn chunk_nonce(prefix: &[u8; 7], i: u32, last: bool) -> Nonce {
    let mut n = [0u8; 12];
    n[..7].copy_from_slice(prefix);
    n[7..11].copy_from_slice(&i.to_be_bytes());
    n[11] = last as u8;
    Nonce::assume_unique_for_key(n)
}

/// The last key this process derived (see the module's documentation).
struct Cached {
    /// HMAC-SHA256 of the passphrase under [`process_key`].
    id: Vec<u8>,
    kdf: Kdf,
    key: Zeroizing<[u8; 32]>,
}

static CACHE: Mutex<Option<Cached>> = Mutex::new(None);

/// A random key made once per process and never written anywhere.
fn process_key() -> &'static Zeroizing<[u8; 32]> {
    static KEY: OnceLock<Zeroizing<[u8; 32]>> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut k = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(&mut k[..]);
        k
    })
}

fn passphrase_mac(passphrase: &Secret) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&process_key()[..])
        .expect("HMAC takes any key length");
    mac.update(passphrase.expose().as_bytes());
    mac
}

/// The cached key when it was derived from `passphrase` (and, when given,
/// with exactly `kdf`).
fn cached(passphrase: &Secret, kdf: Option<&Kdf>) -> Option<(Kdf, Zeroizing<[u8; 32]>)> {
    let cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let c = cache.as_ref()?;
    if kdf.is_some_and(|k| *k != c.kdf) {
        return None;
    }
    // Constant-time comparison of the MACs.
    passphrase_mac(passphrase).verify_slice(&c.id).ok()?;
    Some((c.kdf.clone(), c.key.clone()))
}

fn remember(passphrase: &Secret, kdf: &Kdf, key: &Zeroizing<[u8; 32]>) {
    let id = passphrase_mac(passphrase).finalize().into_bytes().to_vec();
    *CACHE.lock().unwrap_or_else(|e| e.into_inner()) = Some(Cached {
        id,
        kdf: kdf.clone(),
        key: key.clone(),
    });
}

/// The key (and its derivation) for a new backup under `passphrase`.
fn key_for_new(passphrase: &Secret) -> Result<(Kdf, Zeroizing<[u8; 32]>)> {
    if let Some(found) = cached(passphrase, None) {
        return Ok(found);
    }
    let mut salt = [0u8; 16];
    OsRng.fill_bytes(&mut salt);
    let kdf = Kdf {
        alg: "argon2id".into(),
        m_kib: 64 * 1024,
        t: 3,
        p: 1,
        salt: hex(&salt),
    };
    let key = derive(passphrase, &kdf)?;
    remember(passphrase, &kdf, &key);
    Ok((kdf, key))
}

/// Derives and keeps the key for backups under `passphrase` ahead of the
/// first one (scheduled backups, at start), so that none pays for it.
/// Returns the derivation the next backups will name.
pub fn prepare_key(passphrase: &Secret) -> Result<Kdf> {
    key_for_new(passphrase).map(|(kdf, _)| kdf)
}

/// The key of an existing backup.
fn key_for(passphrase: &Secret, kdf: &Kdf) -> Result<Zeroizing<[u8; 32]>> {
    if let Some((_, key)) = cached(passphrase, Some(kdf)) {
        return Ok(key);
    }
    derive(passphrase, kdf)
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::backend(e)
}

/// Reads until `buf` is full or the input ends; returns how much was read.
fn fill(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Writes a backup in one pass: files are announced with their length,
/// then their bytes are given in order. The file appears under its final
/// name only when [`Writer::finish`] has synced it; a writer dropped before
/// that removes what it wrote.
pub struct Writer {
    out: PathBuf,
    tmp: PathBuf,
    f: File,
    header: String,
    key: LessSafeKey,
    prefix: [u8; 7],
    /// The next chunk's number.
    chunk: u32,
    /// Plaintext not yet sealed (at most one chunk, plus room for its tag).
    buf: Zeroizing<Vec<u8>>,
    payload_len: u64,
    files: Vec<(String, u64)>,
    /// Bytes the current file still owes.
    owed: u64,
    done: bool,
}

impl Writer {
    /// Starts a backup at `out` (written as `out.partial` until finished).
    pub fn create(
        out: &Path,
        protection: Protection<'_>,
        created_at: i64,
        schema_version: i64,
        created_by: &str,
    ) -> Result<Writer> {
        let mut prefix = [0u8; 7];
        OsRng.fill_bytes(&mut prefix);
        let mut header = Header {
            format: 2,
            created_at,
            schema_version,
            created_by: created_by.to_string(),
            kdf: None,
            cipher: CIPHER.into(),
            nonce_prefix: hex(&prefix),
            recipient: None,
            key_salt: None,
            key_check: None,
        };
        let key = match protection {
            Protection::Passphrase(passphrase) => {
                let (kdf, passphrase_key) = key_for_new(passphrase)?;
                let mut key_salt = [0u8; 32];
                OsRng.fill_bytes(&mut key_salt);
                let (key, key_check) = backup_key(&passphrase_key, &key_salt)?;
                header.kdf = Some(kdf);
                header.key_salt = Some(hex(&key_salt));
                header.key_check = Some(key_check);
                key
            }
            Protection::Key(k) => {
                let mut file_key = Zeroizing::new([0u8; 32]);
                OsRng.fill_bytes(&mut file_key[..]);
                let sealed = crate::sealing::seal(&k.public_bytes()?, &file_key[..]);
                header.recipient = Some(Recipient {
                    public: k.public.clone(),
                    wrapped: k.wrapped.clone(),
                    sealed_key: hex(&sealed),
                });
                aes_key(&file_key[..])?
            }
        };
        let header = serde_json::to_string(&header).expect("header serialises");
        let tmp = out.with_extension("partial");
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        let mut head = MAGIC.to_vec();
        head.extend_from_slice(header.as_bytes());
        head.push(b'\n');
        if let Err(e) = f.write_all(&head) {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(e));
        }
        Ok(Writer {
            out: out.to_path_buf(),
            tmp,
            f,
            header,
            key,
            prefix,
            chunk: 0,
            buf: Zeroizing::new(Vec::with_capacity(CHUNK + TAG)),
            payload_len: 0,
            files: Vec::new(),
            owed: 0,
            done: false,
        })
    }

    /// Announces the next file: its name and exact length.
    pub fn begin_file(&mut self, name: &str, len: u64) -> Result<()> {
        if self.owed != 0 {
            return Err(StoreError::Integrity(format!(
                "backup: {} bytes of the previous file are missing",
                self.owed
            )));
        }
        let mut head = (name.len() as u16).to_be_bytes().to_vec();
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(&len.to_be_bytes());
        self.put(&head)?;
        self.files.push((name.to_string(), len));
        self.owed = len;
        Ok(())
    }

    /// The current file's next bytes.
    pub fn bytes(&mut self, data: &[u8]) -> Result<()> {
        if data.len() as u64 > self.owed {
            return Err(StoreError::Integrity(
                "backup: a file is longer than announced".into(),
            ));
        }
        self.owed -= data.len() as u64;
        self.put(data)
    }

    /// Adds a whole file from disk.
    pub fn add_file(&mut self, name: &str, path: &Path) -> Result<()> {
        let mut f = File::open(path).map_err(io)?;
        let len = f.metadata().map_err(io)?.len();
        self.begin_file(name, len)?;
        let mut buf = Zeroizing::new(vec![0u8; CHUNK]);
        let mut left = len;
        while left > 0 {
            let n = fill(&mut f, &mut buf[..CHUNK.min(left as usize)]).map_err(io)?;
            if n == 0 {
                return Err(StoreError::Integrity(format!(
                    "{} shrank while it was backed up",
                    path.display()
                )));
            }
            self.bytes(&buf[..n])?;
            left -= n as u64;
        }
        Ok(())
    }

    fn put(&mut self, mut data: &[u8]) -> Result<()> {
        self.payload_len += data.len() as u64;
        while !data.is_empty() {
            // A full chunk is sealed only once more data follows, so the
            // last chunk is known when `finish` seals it.
            if self.buf.len() == CHUNK {
                self.seal(false)?;
            }
            let take = (CHUNK - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        Ok(())
    }

    fn seal(&mut self, last: bool) -> Result<()> {
        let nonce = chunk_nonce(&self.prefix, self.chunk, last);
        self.chunk = self
            .chunk
            .checked_add(1)
            .ok_or_else(|| StoreError::Integrity("backup: too large".into()))?;
        let buf: &mut Vec<u8> = &mut self.buf;
        self.key
            .seal_in_place_append_tag(nonce, Aad::from(self.header.as_bytes()), buf)
            .map_err(|_| StoreError::Integrity("backup: encryption failed".into()))?;
        self.f.write_all(buf).map_err(io)?;
        buf.clear();
        Ok(())
    }

    /// Seals the last chunk, writes the trailer, syncs and moves the file
    /// to its final name.
    pub fn finish(mut self) -> Result<Manifest> {
        if self.owed != 0 {
            return Err(StoreError::Integrity(format!(
                "backup: {} bytes of the last file are missing",
                self.owed
            )));
        }
        self.seal(true)?;
        let trailer = Trailer {
            payload_len: self.payload_len,
            files: std::mem::take(&mut self.files),
        };
        let mut tail = serde_json::to_vec(&trailer).expect("trailer serialises");
        let len = tail.len() as u64;
        tail.extend_from_slice(&len.to_be_bytes());
        tail.extend_from_slice(END);
        self.f.write_all(&tail).map_err(io)?;
        self.f.sync_all().map_err(io)?;
        std::fs::rename(&self.tmp, &self.out).map_err(io)?;
        self.done = true;
        let header: Header = serde_json::from_str(&self.header).expect("own header parses");
        Ok(Manifest::new(header, trailer))
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes an encrypted backup of `files` (name, path) to `out`.
pub fn write(
    out: &Path,
    passphrase: &Secret,
    created_at: i64,
    schema_version: i64,
    created_by: &str,
    files: &[(String, PathBuf)],
) -> Result<Manifest> {
    let mut w = Writer::create(
        out,
        Protection::Passphrase(passphrase),
        created_at,
        schema_version,
        created_by,
    )?;
    for (name, path) in files {
        w.add_file(name, path)?;
    }
    w.finish()
}

/// Reads a backup's manifest (no passphrase needed).
pub fn manifest(path: &Path) -> Result<Manifest> {
    let (m, _, _) = open(path)?;
    Ok(m)
}

/// Opens a backup: its manifest, the associated data of its chunks, and a
/// reader of exactly its ciphertext.
fn open(path: &Path) -> Result<(Manifest, String, std::io::Take<BufReader<File>>)> {
    let bad = |why: &str| StoreError::Integrity(format!("{}: {why}", path.display()));
    let mut r = BufReader::new(File::open(path).map_err(io)?);
    let mut magic = vec![0u8; MAGIC.len()];
    r.read_exact(&mut magic)
        .map_err(|_| bad("not an OpenTurret backup"))?;
    let format = match &magic[..] {
        m if m == MAGIC => 2,
        m if m == MAGIC_1 => 1,
        m if m.starts_with(b"OPENTURRET-BACKUP-") => {
            return Err(bad("backup format is newer than this turret understands"));
        }
        _ => return Err(bad("not an OpenTurret backup")),
    };
    let mut line = Vec::new();
    for b in r.by_ref().bytes() {
        let b = b.map_err(io)?;
        if b == b'\n' {
            break;
        }
        line.push(b);
        if line.len() > 64 * 1024 {
            return Err(bad("manifest too long"));
        }
    }
    let line = String::from_utf8(line).map_err(|_| bad("manifest is not text"))?;
    if format == 1 {
        let m: Manifest =
            serde_json::from_str(&line).map_err(|e| bad(&format!("manifest: {e}")))?;
        if m.format != 1 {
            return Err(bad("manifest does not match the file's format"));
        }
        return Ok((m, line, r.take(u64::MAX)));
    }
    let h: Header = serde_json::from_str(&line).map_err(|e| bad(&format!("header: {e}")))?;
    if h.format != 2 {
        return Err(bad("header does not match the file's format"));
    }
    let start = (MAGIC.len() + line.len() + 1) as u64;
    let total = r.get_ref().metadata().map_err(io)?.len();
    let truncated = || bad("the backup is truncated (no trailer)");
    if total < start + 16 {
        return Err(truncated());
    }
    let mut foot = [0u8; 16];
    r.seek(SeekFrom::Start(total - 16)).map_err(io)?;
    r.read_exact(&mut foot).map_err(io)?;
    if &foot[8..] != END {
        return Err(truncated());
    }
    let tlen = u64::from_be_bytes(foot[..8].try_into().expect("8 bytes"));
    if tlen > 1 << 20 || total < start + 16 + tlen {
        return Err(bad("the trailer is damaged"));
    }
    let mut t = vec![0u8; tlen as usize];
    r.seek(SeekFrom::Start(total - 16 - tlen)).map_err(io)?;
    r.read_exact(&mut t).map_err(io)?;
    let t: Trailer = serde_json::from_slice(&t).map_err(|e| bad(&format!("trailer: {e}")))?;
    r.seek(SeekFrom::Start(start)).map_err(io)?;
    let ct = total - 16 - tlen - start;
    Ok((Manifest::new(h, t), line, r.take(ct)))
}

/// Opens a backup's chunks, in order. (One per backup read: the size of
/// its variants does not matter.)
#[allow(clippy::large_enum_variant)]
enum Opener {
    /// Format 1.
    XChaCha(Option<DecryptorBE32<XChaCha20Poly1305>>),
    /// Format 2.
    Aes {
        key: LessSafeKey,
        prefix: [u8; 7],
        chunk: u32,
    },
}

impl Opener {
    fn new(m: &Manifest, passphrase: &Secret) -> Result<Opener> {
        let bad = |what: &str| StoreError::Integrity(format!("backup manifest: bad {what}"));
        let nonce = unhex(&m.nonce_prefix).ok_or_else(|| bad("nonce"))?;
        if let Some(r) = &m.recipient {
            if m.format != 2 || m.cipher != CIPHER {
                return Err(bad("cipher"));
            }
            let public: [u8; 32] = unhex(&r.public)
                .and_then(|v| v.try_into().ok())
                .ok_or_else(|| bad("public key"))?;
            let wrapped = unhex(&r.wrapped).ok_or_else(|| bad("wrapped key"))?;
            let sealed = unhex(&r.sealed_key).ok_or_else(|| bad("sealed key"))?;
            let private = crate::sealing::OpenKey::unwrap(&wrapped, passphrase, &public).map_err(
                |e| match e {
                    crate::sealing::SealError::WrongKey => {
                        StoreError::Integrity("wrong passphrase".into())
                    }
                    crate::sealing::SealError::Malformed => bad("wrapped key"),
                },
            )?;
            let file_key = Zeroizing::new(private.open(&sealed).map_err(|_| {
                StoreError::Integrity("the backup is damaged: its key does not open".into())
            })?);
            return Ok(Opener::Aes {
                key: aes_key(&file_key)?,
                prefix: nonce.try_into().map_err(|_| bad("nonce"))?,
                chunk: 0,
            });
        }
        let kdf = m.kdf.as_ref().ok_or_else(|| bad("key derivation"))?;
        let passphrase_key = key_for(passphrase, kdf)?;
        if m.format == 1 {
            if nonce.len() != 19 {
                return Err(bad("nonce"));
            }
            return Ok(Opener::XChaCha(Some(DecryptorBE32::from_aead(
                XChaCha20Poly1305::new(passphrase_key.as_slice().into()),
                nonce.as_slice().into(),
            ))));
        }
        if m.cipher != CIPHER {
            return Err(bad("cipher"));
        }
        let salt = m
            .key_salt
            .as_deref()
            .and_then(unhex)
            .ok_or_else(|| bad("key salt"))?;
        let (key, check) = backup_key(&passphrase_key, &salt)?;
        if m.key_check.as_deref() != Some(check.as_str()) {
            return Err(StoreError::Integrity("wrong passphrase".into()));
        }
        Ok(Opener::Aes {
            key,
            prefix: nonce.try_into().map_err(|_| bad("nonce"))?,
            chunk: 0,
        })
    }

    /// Opens one chunk in place (ciphertext in, plaintext out); false when
    /// it does not authenticate.
    fn open(&mut self, aad: &[u8], buf: &mut Vec<u8>, last: bool) -> bool {
        match self {
            Opener::XChaCha(dec) if last => dec
                .take()
                .is_some_and(|d| d.decrypt_last_in_place(aad, buf).is_ok()),
            Opener::XChaCha(dec) => match dec.as_mut() {
                Some(d) => d.decrypt_next_in_place(aad, buf).is_ok(),
                None => false,
            },
            Opener::Aes { key, prefix, chunk } => {
                let nonce = chunk_nonce(prefix, *chunk, last);
                *chunk = chunk.wrapping_add(1);
                match key.open_in_place(nonce, Aad::from(aad), buf) {
                    Ok(pt) => {
                        let n = pt.len();
                        buf.truncate(n);
                        true
                    }
                    Err(_) => false,
                }
            }
        }
    }
}

/// Decrypts a backup into `dest` (a directory), checking every chunk and
/// the checksums. Returns the manifest and the files written. Fails
/// (writing nothing it does not remove) on a wrong passphrase or any
/// damage, and tells the two apart when the format allows.
pub fn extract(
    path: &Path,
    passphrase: &Secret,
    dest: &Path,
) -> Result<(Manifest, Vec<(String, PathBuf)>)> {
    let (m, line, mut r) = open(path)?;
    let mut opener = Opener::new(&m, passphrase)?;
    let mut parser = Parser::new(dest);
    let outcome =
        decrypt(&m, &line, &mut r, &mut opener, &mut parser).and_then(|()| parser.finish(&m.files));
    match outcome {
        Ok(files) => Ok((m, files)),
        Err(e) => {
            parser.discard();
            Err(e)
        }
    }
}

fn decrypt(
    m: &Manifest,
    line: &str,
    r: &mut impl Read,
    opener: &mut Opener,
    parser: &mut Parser,
) -> Result<()> {
    let mut payload_sum = Sha256::new();
    let mut cur = Zeroizing::new(vec![0u8; CHUNK + TAG]);
    let mut n = fill(r, &mut cur).map_err(io)?;
    for chunk in 0u64.. {
        let mut next = Zeroizing::new(vec![0u8; CHUNK + TAG]);
        let k = if n == CHUNK + TAG {
            fill(r, &mut next).map_err(io)?
        } else {
            0
        };
        cur.truncate(n);
        if !opener.open(line.as_bytes(), &mut cur, k == 0) {
            return Err(StoreError::Integrity(
                if m.key_check.is_some() || m.recipient.is_some() {
                    // The passphrase was checked: this is damage.
                    format!("the backup is damaged: chunk {chunk} does not authenticate")
                } else {
                    "wrong passphrase, or the backup is damaged".into()
                },
            ));
        }
        if m.payload_sha256.is_some() {
            payload_sum.update(&cur[..]);
        }
        parser.feed(&cur)?;
        if k == 0 {
            break;
        }
        cur = next;
        n = k;
    }
    let sum_matches = m
        .payload_sha256
        .as_ref()
        .is_none_or(|p| hex(&payload_sum.finalize()) == *p);
    if !sum_matches || parser.seen != m.payload_len {
        return Err(StoreError::Integrity(
            "the backup's manifest does not match its content".into(),
        ));
    }
    Ok(())
}

/// Splits the decrypted payload back into files.
struct Parser {
    dest: PathBuf,
    pending: Vec<u8>,
    current: Option<(File, u64)>,
    written: Vec<(String, PathBuf)>,
    sizes: Vec<(String, u64)>,
    /// Payload bytes fed so far.
    seen: u64,
}

impl Parser {
    fn new(dest: &Path) -> Self {
        Parser {
            dest: dest.to_path_buf(),
            pending: Vec::new(),
            current: None,
            written: Vec::new(),
            sizes: Vec::new(),
            seen: 0,
        }
    }

    fn feed(&mut self, data: &[u8]) -> Result<()> {
        self.seen += data.len() as u64;
        self.split(data)
    }

    fn split(&mut self, mut data: &[u8]) -> Result<()> {
        let bad = || StoreError::Integrity("backup payload is malformed".into());
        // Inside a file: copy its bytes.
        while let Some((f, left)) = &mut self.current {
            if data.is_empty() {
                return Ok(());
            }
            let take = (*left).min(data.len() as u64) as usize;
            f.write_all(&data[..take]).map_err(io)?;
            *left -= take as u64;
            data = &data[take..];
            if *left == 0 {
                let (f, _) = self.current.take().expect("current file");
                f.sync_all().map_err(io)?;
            }
        }
        if data.is_empty() {
            return Ok(());
        }
        // Between files: gather the next header.
        self.pending.extend_from_slice(data);
        if self.pending.len() < 2 {
            return Ok(());
        }
        let name_len = u16::from_be_bytes([self.pending[0], self.pending[1]]) as usize;
        if self.pending.len() < 2 + name_len + 8 {
            return Ok(());
        }
        let name = String::from_utf8(self.pending[2..2 + name_len].to_vec()).map_err(|_| bad())?;
        if name.contains('/') || name.starts_with('.') || name.is_empty() {
            return Err(bad());
        }
        let len = u64::from_be_bytes(
            self.pending[2 + name_len..2 + name_len + 8]
                .try_into()
                .expect("8 bytes"),
        );
        let rest = self.pending.split_off(2 + name_len + 8);
        self.pending.clear();
        let path = self.dest.join(&name);
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        self.sizes.push((name.clone(), len));
        self.written.push((name, path));
        if len == 0 {
            f.sync_all().map_err(io)?;
        } else {
            self.current = Some((f, len));
        }
        // What followed the header: one level deeper per file at most.
        self.split(&rest)
    }

    /// The files written, once the payload held exactly the `expected`
    /// files (names and sizes, from the manifest).
    fn finish(&mut self, expected: &[(String, u64)]) -> Result<Vec<(String, PathBuf)>> {
        if self.current.is_some() || !self.pending.is_empty() {
            return Err(StoreError::Integrity("backup payload is truncated".into()));
        }
        if self.sizes != expected {
            return Err(StoreError::Integrity(
                "the backup's manifest does not match its content".into(),
            ));
        }
        Ok(self.written.clone())
    }

    fn discard(self) {
        for (_, p) in &self.written {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(dir: &Path) -> Vec<(String, PathBuf)> {
        let a = dir.join("a");
        let b = dir.join("b");
        // Not a multiple of the chunk size, and over three chunks.
        std::fs::write(&a, (0..200_000u32).map(|i| i as u8).collect::<Vec<_>>()).unwrap();
        std::fs::write(&b, b"secret-value-123").unwrap();
        vec![("turret.db".to_string(), a), ("secret.key".to_string(), b)]
    }

    fn empty_dir(dir: &Path, name: &str) -> PathBuf {
        let d = dir.join(name);
        std::fs::create_dir(&d).unwrap();
        d
    }

    fn extract_err(out: &Path, pass: &str, dest: &Path) -> String {
        let e = extract(out, &Secret::new(pass), dest)
            .unwrap_err()
            .to_string();
        assert_eq!(
            std::fs::read_dir(dest).unwrap().count(),
            0,
            "nothing left behind: {e}"
        );
        e
    }

    #[test]
    fn a_backup_round_trips_and_refuses_a_wrong_passphrase_or_damage() {
        let dir = tempfile::tempdir().unwrap();
        let files = sample(dir.path());
        let out = dir.path().join("x.otb");
        let pass = "correct horse battery";
        let m = write(&out, &Secret::new(pass), 5, 3, "test", &files).unwrap();
        assert_eq!(m.format, 2);
        assert_eq!(
            m.files,
            vec![("turret.db".into(), 200_000), ("secret.key".into(), 16)]
        );
        let bytes = std::fs::read(&out).unwrap();
        assert!(!bytes.windows(16).any(|w| w == b"secret-value-123"));
        assert_eq!(manifest(&out).unwrap(), m);
        let tlen = u64::from_be_bytes(bytes[bytes.len() - 16..][..8].try_into().unwrap());
        let body = &bytes[..bytes.len() - 16 - tlen as usize];

        let dest = empty_dir(dir.path(), "d");
        let (_, got) = extract(&out, &Secret::new(pass), &dest).unwrap();
        assert_eq!(got.len(), 2);
        for (name, path) in &files {
            assert_eq!(
                std::fs::read(dest.join(name)).unwrap(),
                std::fs::read(path).unwrap()
            );
        }

        let dest2 = empty_dir(dir.path(), "e");
        let err = extract_err(&out, "wrong passphrase 1", &dest2);
        assert_eq!(err, "integrity: wrong passphrase", "{err}");
        // A flipped bit in the ciphertext: told apart from a wrong passphrase.
        let mut damaged = bytes.clone();
        damaged[body.len() - 100] ^= 1;
        std::fs::write(&out, &damaged).unwrap();
        let err = extract_err(&out, pass, &dest2);
        assert!(err.contains("damaged"), "{err}");
        // A cut-off file (no trailer), and a trailer that lies about sizes.
        std::fs::write(&out, &bytes[..bytes.len() - 20]).unwrap();
        assert!(extract_err(&out, pass, &dest2).contains("truncated"));
        let text = String::from_utf8_lossy(&bytes[body.len()..bytes.len() - 16]).into_owned();
        let lying = text.replace("200000", "200001");
        assert_eq!(lying.len(), text.len());
        let mut forged = bytes[..body.len()].to_vec();
        forged.extend_from_slice(lying.as_bytes());
        forged.extend_from_slice(&bytes[bytes.len() - 16..]);
        std::fs::write(&out, &forged).unwrap();
        assert!(extract_err(&out, pass, &dest2).contains("does not match"));
        // A header altered in the clear: every chunk refuses it.
        let mut altered = bytes.clone();
        let at = MAGIC.len() + 13;
        altered[at] = if altered[at] == b'5' { b'6' } else { b'5' };
        std::fs::write(&out, &altered).unwrap();
        assert!(extract(&out, &Secret::new(pass), &dest2).is_err());
    }

    #[test]
    fn later_backups_reuse_the_derived_key_but_never_a_backup_key() {
        let dir = tempfile::tempdir().unwrap();
        let files = sample(dir.path());
        let w = |name: &str, pass: &str| {
            write(
                &dir.path().join(name),
                &Secret::new(pass),
                1,
                1,
                "t",
                &files,
            )
            .unwrap()
        };
        let prepared = prepare_key(&Secret::new("first passphrase")).unwrap();
        let (a, b) = (
            w("a.otb", "first passphrase"),
            w("b.otb", "first passphrase"),
        );
        assert_eq!(a.kdf, Some(prepared), "the key derived ahead is used");
        assert_eq!(a.kdf, b.kdf, "one derivation for the same passphrase");
        assert_ne!(a.key_salt, b.key_salt, "each backup has its own key");
        assert_ne!(a.nonce_prefix, b.nonce_prefix);
        let c = w("c.otb", "other passphrase");
        assert_ne!(c.kdf, a.kdf, "another passphrase, another salt");
        // Each opens with its own passphrase only, cached or not.
        for (name, pass, ok) in [
            ("a.otb", "first passphrase", true),
            ("c.otb", "first passphrase", false),
            ("c.otb", "other passphrase", true),
            ("b.otb", "other passphrase", false),
        ] {
            let dest = empty_dir(dir.path(), &format!("{name}-{ok}-{}", pass.len()));
            let r = extract(&dir.path().join(name), &Secret::new(pass), &dest);
            assert_eq!(r.is_ok(), ok, "{name} with {pass}");
        }
    }

    #[test]
    fn a_backup_under_the_backup_key_needs_the_passphrase_only_to_read() {
        let dir = tempfile::tempdir().unwrap();
        let files = sample(dir.path());
        let pass = "the installation passphrase";
        let key = BackupKey::create(&Secret::new(pass), 1);
        assert!(!key.wrapped.contains(&key.public), "{key:?}");
        // Writing needs the key's public half only.
        let out = dir.path().join("k.otb");
        let mut w = Writer::create(&out, Protection::Key(&key), 2, 3, "t").unwrap();
        for (name, path) in &files {
            w.add_file(name, path).unwrap();
        }
        let m = w.finish().unwrap();
        assert_eq!(m.kdf, None);
        assert_eq!(m.key_fingerprint(), Some(key.fingerprint()));
        assert_eq!(manifest(&out).unwrap(), m);
        let bytes = std::fs::read(&out).unwrap();
        assert!(!bytes.windows(16).any(|w| w == b"secret-value-123"));
        // Each backup has its own key.
        let out2 = dir.path().join("k2.otb");
        let m2 = Writer::create(&out2, Protection::Key(&key), 2, 3, "t")
            .unwrap()
            .finish()
            .unwrap();
        assert_ne!(
            m.recipient.as_ref().unwrap().sealed_key,
            m2.recipient.as_ref().unwrap().sealed_key
        );
        // Reading: the passphrase, on any machine (nothing else is needed).
        let dest = empty_dir(dir.path(), "d");
        extract(&out, &Secret::new(pass), &dest).unwrap();
        for (name, path) in &files {
            assert_eq!(
                std::fs::read(dest.join(name)).unwrap(),
                std::fs::read(path).unwrap()
            );
        }
        let dest2 = empty_dir(dir.path(), "e");
        let err = extract_err(&out, "not the passphrase", &dest2);
        assert_eq!(err, "integrity: wrong passphrase", "{err}");
        // Another installation's key does not open it, even with the same
        // passphrase: the sealed key is swapped for one of another key.
        let other = BackupKey::create(&Secret::new(pass), 1);
        let theirs = dir.path().join("o.otb");
        let mo = Writer::create(&theirs, Protection::Key(&other), 2, 3, "t")
            .unwrap()
            .finish()
            .unwrap();
        let ours = m.recipient.as_ref().unwrap().sealed_key.as_bytes();
        let theirs = mo.recipient.as_ref().unwrap().sealed_key.as_bytes();
        assert_eq!(ours.len(), theirs.len());
        let at = bytes.windows(ours.len()).position(|w| w == ours).unwrap();
        let mut forged = bytes.clone();
        forged[at..at + theirs.len()].copy_from_slice(theirs);
        std::fs::write(&out, &forged).unwrap();
        let err = extract_err(&out, pass, &dest2);
        assert!(err.contains("its key does not open"), "{err}");
    }

    #[test]
    fn a_format_1_backup_is_still_read() {
        use chacha20poly1305::aead::Payload;
        use chacha20poly1305::aead::stream::EncryptorBE32;
        let dir = tempfile::tempdir().unwrap();
        let files = sample(dir.path());
        let mut payload = Vec::new();
        for (name, path) in &files {
            let data = std::fs::read(path).unwrap();
            payload.extend_from_slice(&(name.len() as u16).to_be_bytes());
            payload.extend_from_slice(name.as_bytes());
            payload.extend_from_slice(&(data.len() as u64).to_be_bytes());
            payload.extend_from_slice(&data);
        }
        let pass = Secret::new("an older passphrase");
        let kdf = Kdf {
            alg: "argon2id".into(),
            m_kib: 1024,
            t: 1,
            p: 1,
            salt: hex(&[9u8; 16]),
        };
        let m = Manifest {
            format: 1,
            created_at: 1,
            schema_version: 1,
            created_by: "turret 0.1".into(),
            payload_sha256: Some(hex(&Sha256::digest(&payload))),
            payload_len: payload.len() as u64,
            files: files
                .iter()
                .map(|(n, p)| (n.clone(), std::fs::metadata(p).unwrap().len()))
                .collect(),
            kdf: Some(kdf.clone()),
            cipher: "xchacha20poly1305-stream-be32-64k".into(),
            nonce_prefix: hex(&[3u8; 19]),
            recipient: None,
            key_salt: None,
            key_check: None,
        };
        let line = serde_json::to_string(&m).unwrap();
        let key = derive(&pass, &kdf).unwrap();
        let mut enc = EncryptorBE32::from_aead(
            XChaCha20Poly1305::new(key.as_slice().into()),
            [3u8; 19].as_slice().into(),
        );
        let mut file = MAGIC_1.to_vec();
        file.extend_from_slice(line.as_bytes());
        file.push(b'\n');
        let chunks: Vec<&[u8]> = payload.chunks(CHUNK).collect();
        for (i, c) in chunks.iter().enumerate() {
            let p = Payload {
                msg: c,
                aad: line.as_bytes(),
            };
            if i + 1 == chunks.len() {
                file.extend_from_slice(&enc.encrypt_last(p).unwrap());
                break;
            }
            file.extend_from_slice(&enc.encrypt_next(p).unwrap());
        }
        let out = dir.path().join("old.otb");
        std::fs::write(&out, &file).unwrap();
        assert_eq!(manifest(&out).unwrap(), m);
        let dest = empty_dir(dir.path(), "d");
        extract(&out, &pass, &dest).unwrap();
        assert_eq!(
            std::fs::read(dest.join("turret.db")).unwrap(),
            std::fs::read(&files[0].1).unwrap()
        );
        let dest2 = empty_dir(dir.path(), "e");
        assert!(extract_err(&out, "not the passphrase", &dest2).contains("wrong passphrase"));
    }
}
