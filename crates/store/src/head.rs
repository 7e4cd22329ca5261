//! The audit chain's head anchored outside the database: a file holding
//! the newest sequence number and MAC this installation (or node) wrote,
//! so removing the newest audit rows from the database is detected too.
//! Each store keeps one: the SQLite store beside its database file, a
//! PostgreSQL node in its data directory.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use crate::{Result, StoreError};

pub struct HeadFile {
    path: PathBuf,
    /// Serialises updates within this process.
    lock: std::sync::Mutex<()>,
}

impl HeadFile {
    pub fn new(path: PathBuf) -> HeadFile {
        HeadFile {
            path,
            lock: std::sync::Mutex::new(()),
        }
    }

    /// Records `(seq, mac)` unless a newer head is there already.
    pub fn write(&self, (seq, mac): (i64, [u8; 32])) -> Result<()> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((old, _)) = self.read()?
            && old >= seq
        {
            return Ok(());
        }
        let tmp = self.path.with_extension("audit-head.tmp");
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(StoreError::backend)?;
        std::io::Write::write_all(&mut f, format!("{seq} {}\n", hex(&mac)).as_bytes())
            .map_err(StoreError::backend)?;
        std::fs::rename(&tmp, &self.path).map_err(StoreError::backend)?;
        Ok(())
    }

    pub fn read(&self) -> Result<Option<(i64, [u8; 32])>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::backend(e)),
        };
        let bad = || StoreError::Integrity(format!("{} is malformed", self.path.display()));
        let (s, m) = text.trim().split_once(' ').ok_or_else(bad)?;
        let seq = s.parse().map_err(|_| bad())?;
        let mac = unhex(m).ok_or_else(bad)?;
        Ok(Some((seq, mac.try_into().map_err(|_| bad())?)))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}
