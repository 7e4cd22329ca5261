//! Writing a backup in one pass.

use super::*;

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
        protection: &Protection,
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
