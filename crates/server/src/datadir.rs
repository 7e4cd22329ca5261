//! The data directory's files, and what keeps it whole across a crash:
//! the names of its files, the scratch places of backups, restores and
//! uploads (claimed by their process, removed when it is gone), and the
//! marker of a restore whose files are being swapped in (completed by the
//! next start). Both start-up and backups use it; it uses neither.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Name of the database file in the data directory.
pub const DB_FILE: &str = "turret.db";
/// Name of the master key file in the data directory.
pub const KEY_FILE: &str = "secret.key";
/// The erasure ledger and its key: outside the database, never in a backup.
pub const LEDGER_FILE: &str = "erasure-ledger";
pub const LEDGER_KEY_FILE: &str = "ledger.key";

/// Marks a restore whose files are being swapped in (see [`finish_pending_restore`]).
const PENDING: &str = "restore-pending";

/// Whether a restore is staged and waits for the next start.
pub fn restore_pending(data: &Path) -> bool {
    data.join(PENDING).exists()
}

/// A new scratch place in `data_dir` for `what` (`backup`, `restore`).
pub(crate) fn scratch(data_dir: &Path, what: &str) -> PathBuf {
    data_dir.join(format!("{what}-{}", crate::passwords::random_token(6)))
}

/// Marks a scratch directory with the process that owns it, so that one
/// left behind by a killed process can be recognised and removed.
pub(crate) fn claim(dir: &Path) -> anyhow::Result<()> {
    std::fs::write(dir.join("owner.pid"), std::process::id().to_string())?;
    Ok(())
}

/// Removes scratch directories (clear snapshots, unpacked backups) and
/// files (import uploads) left in `data` by processes that no longer run.
pub fn remove_abandoned(data: &Path) {
    let Ok(entries) = std::fs::read_dir(data) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        let alive = |pid: &str| Path::new("/proc").join(pid.trim()).exists();
        if p.is_dir() && (name.starts_with("backup-") || name.starts_with("restore-")) {
            if data.join(PENDING).exists() {
                continue;
            }
            let owner = std::fs::read_to_string(p.join("owner.pid")).unwrap_or_default();
            if owner.is_empty() || !alive(&owner) {
                let _ = std::fs::remove_dir_all(&p);
            }
        } else if p.is_file() && name.starts_with("import-") {
            let owner = name.split('-').nth(1).unwrap_or("");
            if owner.is_empty() || !alive(owner) {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
}

/// Writes the marker naming the staged files (synced: from here on, the
/// next start completes the restore).
pub(crate) fn mark_pending(staged_dir: &Path, data: &Path) -> anyhow::Result<()> {
    let staged = staged_dir
        .file_name()
        .expect("scratch dir has a name")
        .to_string_lossy()
        .to_string();
    let mut marker = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(data.join(PENDING))?;
    marker.write_all(staged.as_bytes())?;
    marker.sync_all()?;
    Ok(())
}

/// Completes a restore that was interrupted while swapping files (called
/// at every start, before the database is opened). Idempotent.
pub fn finish_pending_restore(data: &Path) -> anyhow::Result<()> {
    let marker = data.join(PENDING);
    let Ok(staged) = std::fs::read_to_string(&marker) else {
        return Ok(());
    };
    let staged = data.join(staged.trim());
    for name in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(data.join(format!("{DB_FILE}{name}")));
    }
    for name in [
        DB_FILE.to_string(),
        format!("{DB_FILE}.audit-head"),
        KEY_FILE.to_string(),
    ] {
        let from = staged.join(&name);
        if from.exists() {
            std::fs::rename(&from, data.join(&name))
                .with_context(|| format!("while moving {name} into place"))?;
        }
    }
    std::fs::remove_file(&marker)?;
    let _ = std::fs::remove_dir_all(&staged);
    Ok(())
}
