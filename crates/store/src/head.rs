//! The audit chain's head anchored outside the database: a file holding
//! the newest sequence number and MAC this installation (or node) wrote,
//! so removing the newest audit rows from the database is detected too.
//! Each store keeps one: the SQLite store beside its database file, a
//! PostgreSQL node in its data directory.
//!
//! A PostgreSQL node's file also holds a restore epoch: a restore into the
//! shared database starts the chain again from the backup's head, and writes
//! an audit entry (`backup.restored`, MAC'd like every entry) naming a new,
//! larger epoch. A node whose anchor has a smaller epoch anchored a chain
//! that was replaced on purpose, and takes the restored chain's head
//! instead (`reset`). Deleting entries back past the restore lowers the
//! epoch seen in the database, so the anchor still catches it.

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

    /// Records `(seq, mac)` unless a newer head is there already (the
    /// epoch stays).
    pub fn write(&self, (seq, mac): (i64, [u8; 32])) -> Result<()> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut epoch = 0;
        if let Some((old, _, e)) = self.read_all()? {
            if old >= seq {
                return Ok(());
            }
            epoch = e;
        }
        self.put(seq, mac, epoch)
    }

    /// Records `(seq, mac)` under `epoch`, whatever was there: the anchor
    /// of a chain restored on purpose.
    pub fn reset(&self, (seq, mac): (i64, [u8; 32]), epoch: u64) -> Result<()> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.put(seq, mac, epoch)
    }

    /// The restore epoch of the anchored head (0 when none was recorded).
    pub fn epoch(&self) -> Result<u64> {
        Ok(self.read_all()?.map_or(0, |(_, _, e)| e))
    }

    fn put(&self, seq: i64, mac: [u8; 32], epoch: u64) -> Result<()> {
        let tmp = self.path.with_extension("audit-head.tmp");
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(StoreError::backend)?;
        let line = match epoch {
            0 => format!("{seq} {}\n", hex(&mac)),
            e => format!("{seq} {} {e}\n", hex(&mac)),
        };
        std::io::Write::write_all(&mut f, line.as_bytes()).map_err(StoreError::backend)?;
        f.sync_all().map_err(StoreError::backend)?;
        std::fs::rename(&tmp, &self.path).map_err(StoreError::backend)?;
        Ok(())
    }

    pub fn read(&self) -> Result<Option<(i64, [u8; 32])>> {
        Ok(self.read_all()?.map(|(seq, mac, _)| (seq, mac)))
    }

    fn read_all(&self) -> Result<Option<(i64, [u8; 32], u64)>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::backend(e)),
        };
        let bad = || StoreError::Integrity(format!("{} is malformed", self.path.display()));
        let mut fields = text.split_whitespace();
        let (Some(s), Some(m)) = (fields.next(), fields.next()) else {
            return Err(bad());
        };
        let seq = s.parse().map_err(|_| bad())?;
        let mac = unhex(m).ok_or_else(bad)?;
        let epoch = match fields.next() {
            Some(e) => e.parse().map_err(|_| bad())?,
            None => 0,
        };
        if fields.next().is_some() {
            return Err(bad());
        }
        Ok(Some((seq, mac.try_into().map_err(|_| bad())?, epoch)))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_epoch_stays_with_newer_heads_and_only_a_reset_goes_back() {
        let dir = tempfile::tempdir().unwrap();
        let h = HeadFile::new(dir.path().join("h"));
        assert_eq!((h.read().unwrap(), h.epoch().unwrap()), (None, 0));
        h.write((5, [1; 32])).unwrap();
        assert_eq!(
            (h.read().unwrap(), h.epoch().unwrap()),
            (Some((5, [1; 32])), 0)
        );
        h.reset((3, [2; 32]), 7).unwrap();
        h.write((2, [3; 32])).unwrap(); // older: kept out
        h.write((4, [4; 32])).unwrap();
        assert_eq!(
            (h.read().unwrap(), h.epoch().unwrap()),
            (Some((4, [4; 32])), 7)
        );
        std::fs::write(dir.path().join("h"), "4 00 7 8\n").unwrap();
        assert!(h.read().is_err());
    }
}
