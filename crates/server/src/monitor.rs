//! What fails slowly, watched for the error log (issue 20): the disks
//! holding the data directory, backups and CDR files (every minute), and
//! the server certificate's expiry (at start, then every six hours).
//! Each is reported when its state changes — low, full, fine again — and a
//! certificate near its end at every check, which folds into one entry.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use openturret_domain::Timestamp;
use openturret_domain::model::{Event, EventLevel};

use crate::App;

const DISK_EVERY: Duration = Duration::from_secs(60);
const CERT_EVERY: Duration = Duration::from_secs(6 * 3600);
/// A certificate this close to its end is reported.
pub const CERT_WARN_DAYS: i64 = 30;
const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// How bad `free` of `total` bytes is: an error under 1 % or 100 MiB,
/// a warning under 5 % or 1 GiB, else nothing.
pub fn disk_level(free: u64, total: u64) -> Option<EventLevel> {
    let pct = |p: u64| total / 100 * p;
    if free < pct(1) || free < 100 * MIB {
        Some(EventLevel::Error)
    } else if free < pct(5) || free < GIB {
        Some(EventLevel::Warning)
    } else {
        None
    }
}

/// The folders whose disks are watched: data, backups, CDR files.
fn watched(app: &App) -> Vec<PathBuf> {
    let mut v = vec![
        app.config.data_dir.clone(),
        crate::backup::backup_dir(&app.config),
        app.cdr.dir().to_path_buf(),
    ];
    v.dedup();
    v
}

/// Free and total bytes of the disk holding `path` (or its nearest
/// existing parent).
fn space(path: &Path) -> Option<(u64, u64)> {
    let mut p = path;
    loop {
        if let Ok(s) = rustix::fs::statvfs(p) {
            return Some((s.f_bavail * s.f_frsize, s.f_blocks * s.f_frsize));
        }
        p = p.parent()?;
    }
}

/// Checks the disks once; `states` holds the last level of each.
pub fn check_disks(app: &App, states: &mut HashMap<PathBuf, Option<EventLevel>>) {
    for path in watched(app) {
        let Some((free, total)) = space(&path) else {
            continue;
        };
        let level = disk_level(free, total);
        let before = states.insert(path.clone(), level).flatten();
        if before == level {
            continue;
        }
        let object = format!("disk:{}", path.display());
        let e = match level {
            Some(EventLevel::Error) => Event::error(
                "disk.full",
                object,
                format!(
                    "the disk holding {} is full or nearly: writes (database, backups, CDR files) will fail",
                    path.display()
                ),
            ),
            Some(_) => Event::warning(
                "disk.low",
                object,
                format!(
                    "the disk holding {} is running out of space",
                    path.display()
                ),
            ),
            None => Event::info(
                "disk.ok",
                object,
                format!("the disk holding {} has enough space again", path.display()),
            ),
        };
        app.events.raise(
            e.with("free_mib", free / MIB)
                .with("total_mib", total / MIB),
        );
    }
}

/// Checks the server certificate's expiry once, as of `now`.
pub fn check_certificate(app: &App, now: Timestamp) {
    let path = app
        .config
        .tls
        .cert
        .clone()
        .unwrap_or_else(|| app.config.data_dir.join("tls/cert.pem"));
    let Some(end) = std::fs::read(&path)
        .ok()
        .and_then(|pem| crate::tls::not_after(&pem))
    else {
        return;
    };
    let days = (end.0 - now.0).div_euclid(86_400_000);
    let object = "certificate:server";
    let e = if end.0 <= now.0 {
        Event::error(
            "certificate.expired",
            object,
            format!(
                "the server certificate {} has expired: browsers, turrets and CTI applications refuse it",
                path.display()
            ),
        )
    } else if days < CERT_WARN_DAYS {
        Event::warning(
            "certificate.expiring",
            object,
            format!(
                "the server certificate {} expires within {CERT_WARN_DAYS} days: replace it",
                path.display()
            ),
        )
        .with("days_left", days)
    } else {
        return;
    };
    app.events.raise(e.with("expires", end.rfc3339()));
}

/// Starts the watch.
pub fn start(app: &App) {
    let app = app.clone();
    tokio::spawn(async move {
        let mut states = HashMap::new();
        let mut cert_due = tokio::time::Instant::now();
        loop {
            check_disks(&app, &mut states);
            if tokio::time::Instant::now() >= cert_due {
                check_certificate(&app, Timestamp::now());
                cert_due += CERT_EVERY;
            }
            tokio::time::sleep(DISK_EVERY).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_levels_follow_the_share_and_the_bytes_left() {
        let t = 1000 * GIB;
        assert_eq!(disk_level(t / 2, t), None);
        assert_eq!(disk_level(t / 25, t), Some(EventLevel::Warning)); // 4 %
        assert_eq!(disk_level(t / 200, t), Some(EventLevel::Error)); // 0.5 %
        // A small disk: bytes decide.
        assert_eq!(disk_level(900 * MIB, 2 * GIB), Some(EventLevel::Warning));
        assert_eq!(disk_level(50 * MIB, 2 * GIB), Some(EventLevel::Error));
        assert_eq!(disk_level(0, 0), Some(EventLevel::Error));
    }
}
