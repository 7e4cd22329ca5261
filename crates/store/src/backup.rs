//! The backup file format: a clear manifest, then the payload (the files of
//! a data directory) encrypted under a key derived from the administrator's
//! passphrase. Without the passphrase a backup reveals nothing but its
//! manifest, which holds no personal data (times, sizes, a checksum).
//!
//! ```text
//! OPENTURRET-BACKUP-1\n
//! {manifest JSON}\n
//! STREAM(XChaCha20-Poly1305, 64 KiB chunks, manifest line as associated data)
//! ```
//!
//! The payload is a sequence of `u16 name length | name | u64 length | bytes`
//! entries. The key is argon2id(passphrase, salt); the manifest is bound to
//! every chunk as associated data, so it cannot be altered either. Both
//! writing and reading stream: a backup never needs to fit in memory.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::stream::{DecryptorBE32, EncryptorBE32};
use chacha20poly1305::aead::{KeyInit, Payload};
use openturret_domain::secret::Secret;
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::{Result, StoreError};

const MAGIC: &[u8] = b"OPENTURRET-BACKUP-1\n";
const CHUNK: usize = 64 * 1024;
const TAG: usize = 16;

/// What a backup says about itself, readable without the passphrase.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub format: u32,
    /// Unix milliseconds.
    pub created_at: i64,
    /// The newest database migration the backup contains.
    pub schema_version: i64,
    pub created_by: String,
    /// SHA-256 of the decrypted payload.
    pub payload_sha256: String,
    pub payload_len: u64,
    /// Names and sizes of the files inside.
    pub files: Vec<(String, u64)>,
    pub kdf: Kdf,
    pub cipher: String,
    pub nonce_prefix: String,
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

fn io(e: std::io::Error) -> StoreError {
    StoreError::backend(e)
}

/// The payload framing of `files`, read piece by piece.
fn payload_reader(files: &[(String, PathBuf)]) -> Result<Box<dyn Read>> {
    let mut chain: Box<dyn Read> = Box::new(std::io::empty());
    for (name, path) in files {
        let f = File::open(path).map_err(io)?;
        let len = f.metadata().map_err(io)?.len();
        let mut head = (name.len() as u16).to_be_bytes().to_vec();
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(&len.to_be_bytes());
        chain = Box::new(chain.chain(std::io::Cursor::new(head)).chain(f.take(len)));
    }
    Ok(chain)
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

/// Writes an encrypted backup of `files` (name, path) to `out`.
pub fn write(
    out: &Path,
    passphrase: &Secret,
    created_at: i64,
    schema_version: i64,
    created_by: &str,
    files: &[(String, PathBuf)],
) -> Result<Manifest> {
    // First pass: checksum and length of the payload.
    let mut hasher = Sha256::new();
    let mut payload_len = 0u64;
    let mut r = payload_reader(files)?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = fill(&mut r, &mut buf).map_err(io)?;
        hasher.update(&buf[..n]);
        payload_len += n as u64;
        if n < CHUNK {
            break;
        }
    }
    let mut salt = [0u8; 16];
    OsRng.fill_bytes(&mut salt);
    let mut nonce = [0u8; 19];
    OsRng.fill_bytes(&mut nonce);
    let mut sizes = Vec::new();
    for (name, path) in files {
        sizes.push((name.clone(), std::fs::metadata(path).map_err(io)?.len()));
    }
    let manifest = Manifest {
        format: 1,
        created_at,
        schema_version,
        created_by: created_by.to_string(),
        payload_sha256: hex(&hasher.finalize()),
        payload_len,
        files: sizes,
        kdf: Kdf {
            alg: "argon2id".into(),
            m_kib: 64 * 1024,
            t: 3,
            p: 1,
            salt: hex(&salt),
        },
        cipher: "xchacha20poly1305-stream-be32-64k".into(),
        nonce_prefix: hex(&nonce),
    };
    let line = serde_json::to_string(&manifest).expect("manifest serialises");
    let key = derive(passphrase, &manifest.kdf)?;
    let mut enc = EncryptorBE32::from_aead(
        XChaCha20Poly1305::new(key.as_slice().into()),
        nonce.as_slice().into(),
    );
    let tmp = out.with_extension("partial");
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(MAGIC).map_err(io)?;
    f.write_all(line.as_bytes()).map_err(io)?;
    f.write_all(b"\n").map_err(io)?;
    // Second pass: encrypt. One chunk is held back so the last one is known.
    let mut r = payload_reader(files)?;
    let mut cur = Zeroizing::new(vec![0u8; CHUNK]);
    let mut n = fill(&mut r, &mut cur).map_err(io)?;
    loop {
        let mut next = Zeroizing::new(vec![0u8; CHUNK]);
        let m = if n == CHUNK {
            fill(&mut r, &mut next).map_err(io)?
        } else {
            0
        };
        let aad = line.as_bytes();
        if m == 0 {
            let ct = enc
                .encrypt_last(Payload {
                    msg: &cur[..n],
                    aad,
                })
                .map_err(|_| StoreError::Integrity("backup: encryption failed".into()))?;
            f.write_all(&ct).map_err(io)?;
            break;
        }
        let ct = enc
            .encrypt_next(Payload {
                msg: &cur[..n],
                aad,
            })
            .map_err(|_| StoreError::Integrity("backup: encryption failed".into()))?;
        f.write_all(&ct).map_err(io)?;
        cur = next;
        n = m;
    }
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, out).map_err(io)?;
    Ok(manifest)
}

/// Reads a backup's manifest (no passphrase needed).
pub fn manifest(path: &Path) -> Result<Manifest> {
    let (m, _, _) = open(path)?;
    Ok(m)
}

fn open(path: &Path) -> Result<(Manifest, String, BufReader<File>)> {
    let bad = |why: &str| StoreError::Integrity(format!("{}: {why}", path.display()));
    let mut r = BufReader::new(File::open(path).map_err(io)?);
    let mut magic = vec![0u8; MAGIC.len()];
    r.read_exact(&mut magic)
        .map_err(|_| bad("not an OpenTurret backup"))?;
    if magic != MAGIC {
        return Err(bad("not an OpenTurret backup"));
    }
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
    let m: Manifest = serde_json::from_str(&line).map_err(|e| bad(&format!("manifest: {e}")))?;
    if m.format != 1 {
        return Err(bad(&format!(
            "backup format {} is newer than this turret understands",
            m.format
        )));
    }
    Ok((m, line, r))
}

/// Decrypts a backup into `dest` (a directory), checking every chunk and
/// the payload checksum. Returns the manifest and the files written.
/// Fails (writing nothing it does not remove) on a wrong passphrase or any
/// damage.
pub fn extract(
    path: &Path,
    passphrase: &Secret,
    dest: &Path,
) -> Result<(Manifest, Vec<(String, PathBuf)>)> {
    let (m, line, mut r) = open(path)?;
    let nonce = unhex(&m.nonce_prefix)
        .filter(|n| n.len() == 19)
        .ok_or_else(|| StoreError::Integrity("backup manifest: bad nonce".into()))?;
    let key = derive(passphrase, &m.kdf)?;
    let mut dec = Some(DecryptorBE32::from_aead(
        XChaCha20Poly1305::new(key.as_slice().into()),
        nonce.as_slice().into(),
    ));
    let wrong = || StoreError::Integrity("wrong passphrase, or the backup is damaged".into());
    let mut hasher = Sha256::new();
    let mut parser = Parser::new(dest);
    let mut run = || -> Result<()> {
        let mut cur = vec![0u8; CHUNK + TAG];
        let mut n = fill(&mut r, &mut cur).map_err(io)?;
        loop {
            let mut next = vec![0u8; CHUNK + TAG];
            let k = if n == CHUNK + TAG {
                fill(&mut r, &mut next).map_err(io)?
            } else {
                0
            };
            let aad = line.as_bytes();
            let pt = if k == 0 {
                let d = dec.take().ok_or_else(wrong)?;
                d.decrypt_last(Payload {
                    msg: &cur[..n],
                    aad,
                })
                .map_err(|_| wrong())?
            } else {
                dec.as_mut()
                    .ok_or_else(wrong)?
                    .decrypt_next(Payload {
                        msg: &cur[..n],
                        aad,
                    })
                    .map_err(|_| wrong())?
            };
            let pt = Zeroizing::new(pt);
            hasher.update(&pt[..]);
            parser.feed(&pt)?;
            if k == 0 {
                break;
            }
            cur = next;
            n = k;
        }
        Ok(())
    };
    let outcome = run();
    let outcome = outcome.and_then(|()| {
        if hex(&hasher.finalize()) != m.payload_sha256 {
            Err(StoreError::Integrity(
                "backup checksum does not match".into(),
            ))
        } else {
            Ok(())
        }
    });
    match outcome {
        Ok(()) => match parser.finish() {
            Ok(files) => Ok((m, files)),
            Err(e) => {
                parser.discard();
                Err(e)
            }
        },
        Err(e) => {
            parser.discard();
            Err(e)
        }
    }
}

/// Splits the decrypted payload back into files.
struct Parser {
    dest: PathBuf,
    pending: Vec<u8>,
    current: Option<(File, u64)>,
    written: Vec<(String, PathBuf)>,
}

impl Parser {
    fn new(dest: &Path) -> Self {
        Parser {
            dest: dest.to_path_buf(),
            pending: Vec::new(),
            current: None,
            written: Vec::new(),
        }
    }

    fn feed(&mut self, mut data: &[u8]) -> Result<()> {
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
        self.written.push((name, path));
        if len == 0 {
            f.sync_all().map_err(io)?;
        } else {
            self.current = Some((f, len));
        }
        // What followed the header: one level deeper per file at most.
        self.feed(&rest)
    }

    fn finish(&mut self) -> Result<Vec<(String, PathBuf)>> {
        if self.current.is_some() || !self.pending.is_empty() {
            return Err(StoreError::Integrity("backup payload is truncated".into()));
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

    #[test]
    fn a_backup_round_trips_and_refuses_a_wrong_passphrase_or_damage() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(&a, vec![7u8; 200_000]).unwrap();
        std::fs::write(&b, b"secret-value-123").unwrap();
        let out = dir.path().join("x.otb");
        let files = vec![
            ("turret.db".to_string(), a.clone()),
            ("secret.key".to_string(), b.clone()),
        ];
        let m = write(
            &out,
            &Secret::new("correct horse battery"),
            5,
            3,
            "test",
            &files,
        )
        .unwrap();
        let bytes = std::fs::read(&out).unwrap();
        assert!(!bytes.windows(16).any(|w| w == b"secret-value-123"));
        assert_eq!(manifest(&out).unwrap(), m);

        let dest = dir.path().join("d");
        std::fs::create_dir(&dest).unwrap();
        let (_, got) = extract(&out, &Secret::new("correct horse battery"), &dest).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            std::fs::read(dest.join("turret.db")).unwrap(),
            std::fs::read(&a).unwrap()
        );
        assert_eq!(
            std::fs::read(dest.join("secret.key")).unwrap(),
            b"secret-value-123"
        );

        let dest2 = dir.path().join("e");
        std::fs::create_dir(&dest2).unwrap();
        let err = extract(&out, &Secret::new("wrong"), &dest2)
            .unwrap_err()
            .to_string();
        assert!(err.contains("wrong passphrase"), "{err}");
        assert_eq!(
            std::fs::read_dir(&dest2).unwrap().count(),
            0,
            "nothing left behind"
        );
        let mut damaged = bytes.clone();
        let at = damaged.len() - 100;
        damaged[at] ^= 1;
        std::fs::write(&out, damaged).unwrap();
        assert!(extract(&out, &Secret::new("correct horse battery"), &dest2).is_err());
        assert_eq!(std::fs::read_dir(&dest2).unwrap().count(), 0);
    }
}
