//! The erasure ledger (SPEC §4, "erasure that survives restore"): every
//! erasure of a person is recorded here, outside the database and outside
//! every backup, as identifiers and a time only (no personal data). Every
//! restore, and every start, re-applies it, so a person erased after a
//! backup was taken stays erased.
//!
//! Format: one line per erasure, `seq<TAB>unix-ms<TAB>kind<TAB>id<TAB>mac`,
//! where `mac` is HMAC-SHA-256 over the previous line's mac and this line's
//! fields, under a key of its own (`ledger.key`, never in a backup). Editing,
//! inserting or removing a line breaks the chain from there on.
//!
//! An entry is written (and synced) before the erasure commits: if the
//! commit then fails, the ledger may name a profile that still exists, and
//! the next start erases it. The bias is deliberate: never resurrect.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::{Result, StoreError};

/// One recorded erasure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Erasure {
    pub seq: u64,
    pub at_ms: i64,
    /// What was erased: `profile`, `admin`, `global_contact`,
    /// `local_contact`, `speed_dial`, `call_memory`.
    pub kind: String,
    pub id: i64,
}

pub struct Ledger {
    path: PathBuf,
    key: Zeroizing<Vec<u8>>,
    /// Serialises appends (sequence numbers and the chain).
    append: Mutex<()>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn mac(key: &[u8], prev: &str, seq: u64, at: i64, kind: &str, id: i64) -> String {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    m.update(format!("openturret-ledger-v1\n{prev}\n{seq}\n{at}\n{kind}\n{id}").as_bytes());
    m.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Ledger {
    /// Opens the ledger at `path` with the key in `key_path` (created if
    /// absent).
    pub fn open(path: &Path, key_path: &Path) -> Result<Ledger> {
        Ok(Ledger {
            path: path.to_path_buf(),
            key: crate::keys::key_file(key_path)?,
            append: Mutex::new(()),
        })
    }

    /// Every entry, after checking the whole chain; an error names the first
    /// line that does not verify.
    pub fn entries(&self) -> Result<Vec<Erasure>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::backend(e)),
        };
        let mut out = Vec::new();
        let mut prev = String::new();
        for (n, line) in text.lines().enumerate() {
            let bad =
                |why: &str| StoreError::Integrity(format!("erasure ledger line {}: {why}", n + 1));
            let f: Vec<&str> = line.split('\t').collect();
            let [seq, at, kind, id, m] = f[..] else {
                return Err(bad("malformed"));
            };
            let seq: u64 = seq.parse().map_err(|_| bad("bad sequence number"))?;
            let at: i64 = at.parse().map_err(|_| bad("bad time"))?;
            let id: i64 = id.parse().map_err(|_| bad("bad id"))?;
            if seq != n as u64 + 1 {
                return Err(bad("a line is missing or out of order"));
            }
            if mac(&self.key, &prev, seq, at, kind, id) != m {
                return Err(bad("altered"));
            }
            prev = m.to_string();
            out.push(Erasure {
                seq,
                at_ms: at,
                kind: kind.to_string(),
                id,
            });
        }
        Ok(out)
    }

    /// Appends an erasure and syncs it to disk.
    pub fn record(&self, kind: &str, id: i64, at_ms: i64) -> Result<Erasure> {
        let _g = self.append.lock().unwrap_or_else(|p| p.into_inner());
        let existing = self.entries()?;
        let seq = existing.len() as u64 + 1;
        let prev = std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|t| {
                t.lines()
                    .last()
                    .and_then(|l| l.rsplit('\t').next())
                    .map(str::to_string)
            })
            .unwrap_or_default();
        let line = format!(
            "{seq}\t{at_ms}\t{kind}\t{id}\t{}\n",
            mac(&self.key, &prev, seq, at_ms, kind, id)
        );
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(StoreError::backend)?;
        f.write_all(line.as_bytes()).map_err(StoreError::backend)?;
        f.sync_all().map_err(StoreError::backend)?;
        Ok(Erasure {
            seq,
            at_ms,
            kind: kind.to_string(),
            id,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_chain_and_any_edit_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(&dir.path().join("ledger"), &dir.path().join("ledger.key")).unwrap();
        l.record("profile", 7, 100).unwrap();
        l.record("profile", 9, 200).unwrap();
        assert_eq!(
            l.entries()
                .unwrap()
                .iter()
                .map(|e| e.id)
                .collect::<Vec<_>>(),
            [7, 9]
        );
        let text = std::fs::read_to_string(l.path()).unwrap();
        std::fs::write(l.path(), text.replacen("\t9\t", "\t8\t", 1)).unwrap();
        let err = l.entries().unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("altered"), "{err}");
        let first = text.lines().next().unwrap().to_string() + "\n";
        let second = text.lines().nth(1).unwrap().to_string() + "\n";
        std::fs::write(l.path(), second).unwrap();
        assert!(l.entries().unwrap_err().to_string().contains("line 1"));
        std::fs::write(l.path(), first).unwrap();
        assert_eq!(l.entries().unwrap().len(), 1);
    }
}
