//! Reading a backup: its manifest, and its files after every check.

use super::*;

/// Reads a backup's manifest (no passphrase needed).
pub fn manifest(path: &Path) -> Result<Manifest> {
    let (m, _, _) = open(path)?;
    Ok(m)
}

/// Opens a backup: its manifest, the associated data of its chunks, and a
/// reader of exactly its ciphertext.
pub(super) fn open(path: &Path) -> Result<(Manifest, String, std::io::Take<BufReader<File>>)> {
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
pub(super) enum Opener {
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

pub(super) fn decrypt(
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
pub(super) struct Parser {
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
