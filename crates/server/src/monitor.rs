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
use crate::config::MonitorConfig;

const DISK_EVERY: Duration = Duration::from_secs(60);
const CERT_EVERY: Duration = Duration::from_secs(6 * 3600);
/// A certificate this close to its end is reported.
pub const CERT_WARN_DAYS: i64 = 30;
const MIB: u64 = 1 << 20;

/// How bad `free` of `total` bytes is under the configured limits: an
/// error under `disk_error_percent` % or `disk_error_mib` MiB, a warning
/// under `disk_warn_percent` % or `disk_warn_mib` MiB, else nothing.
pub fn disk_level(free: u64, total: u64, limits: &MonitorConfig) -> Option<EventLevel> {
    let under = |percent: u64, mib: u64| {
        (percent > 0 && (free as u128) * 100 < (total as u128) * percent as u128)
            || free < mib.saturating_mul(MIB)
    };
    if under(limits.disk_error_percent, limits.disk_error_mib) {
        Some(EventLevel::Error)
    } else if under(limits.disk_warn_percent, limits.disk_warn_mib) {
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

/// A watched disk: its device, free and total bytes, found from `path` (or
/// its nearest existing parent).
struct Disk {
    device: u64,
    free: u64,
    total: u64,
}

fn disk_of(path: &Path) -> Option<Disk> {
    let mut p = path;
    loop {
        if let (Ok(s), Ok(st)) = (rustix::fs::statvfs(p), rustix::fs::stat(p)) {
            return Some(Disk {
                device: st.st_dev,
                free: s.f_bavail * s.f_frsize,
                total: s.f_blocks * s.f_frsize,
            });
        }
        p = p.parent()?;
    }
}

/// Checks the disks once; `states` holds the last level of each, by the
/// first watched folder on it. Folders on one disk make one entry.
pub fn check_disks(app: &App, states: &mut HashMap<PathBuf, Option<EventLevel>>) {
    let mut seen = Vec::new();
    for path in watched(app) {
        let Some(disk) = disk_of(&path) else {
            continue;
        };
        if seen.contains(&disk.device) {
            continue;
        }
        seen.push(disk.device);
        let (free, total) = (disk.free, disk.total);
        let level = disk_level(free, total, &app.config.monitor);
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

    const GIB: u64 = 1 << 30;

    #[test]
    fn disk_levels_follow_the_share_and_the_bytes_left() {
        let d = MonitorConfig::default();
        let t = 1000 * GIB;
        assert_eq!(disk_level(t / 2, t, &d), None);
        assert_eq!(disk_level(t / 25, t, &d), Some(EventLevel::Warning)); // 4 %
        assert_eq!(disk_level(t / 200, t, &d), Some(EventLevel::Error)); // 0.5 %
        // A small disk: bytes decide.
        assert_eq!(
            disk_level(900 * MIB, 2 * GIB, &d),
            Some(EventLevel::Warning)
        );
        assert_eq!(disk_level(50 * MIB, 2 * GIB, &d), Some(EventLevel::Error));
        assert_eq!(disk_level(0, 0, &d), Some(EventLevel::Error));
        // Limits of one's own: a big disk warned at 10 %, only bytes for
        // errors; switched off, even an empty disk is quiet.
        let own = MonitorConfig {
            disk_warn_percent: 10,
            disk_warn_mib: 0,
            disk_error_percent: 0,
            disk_error_mib: 500,
        };
        assert_eq!(disk_level(t / 11, t, &own), Some(EventLevel::Warning));
        assert_eq!(disk_level(t / 9, t, &own), None);
        assert_eq!(disk_level(400 * MIB, t, &own), Some(EventLevel::Error));
        assert_eq!(disk_level(0, t, &MonitorConfig::off()), None);
    }
}
