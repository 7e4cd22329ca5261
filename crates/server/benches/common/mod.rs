//! Helpers every benchmark shares (included with `#[path]`).
#![allow(dead_code)]

pub mod turret;

use std::time::Duration;

use openturret_domain::Timestamp;
use openturret_domain::audit::{AuditLevel, AuditPii, AuditRecord};

/// A small deterministic generator (xorshift64*), so every run uses the
/// same data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

pub const SYLLABLES: [&str; 16] = [
    "ka", "ri", "mo", "tan", "le", "su", "vor", "en", "bi", "sha", "ol", "pe", "dra", "ni", "gu",
    "ast",
];

/// A made-up name of `n` syllables, capitalised (the contacts of the
/// search benchmarks).
pub fn word(rng: &mut Rng, n: usize) -> String {
    let mut w: String = (0..n)
        .map(|_| SYLLABLES[(rng.next_u64() % 16) as usize])
        .collect();
    w[..1].make_ascii_uppercase();
    w
}

/// A duration in milliseconds, for printing.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// An audit record for bulk writes made by a benchmark.
pub fn audit() -> AuditRecord {
    AuditRecord {
        at: Timestamp::now(),
        level: AuditLevel::Info,
        event_type: "bench".into(),
        object_type: "global_contact".into(),
        object_id: None,
        changes: vec![],
        success: true,
        server_host: "bench".into(),
        pii: AuditPii::default(),
    }
}

/// The `p` quantile of sorted durations.
pub fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// A PostgreSQL cluster for a benchmark: the one `TURRET_TEST_POSTGRES_URL`
/// names, or a throwaway one made here (initdb and pg_ctl as the postgres
/// user, on a free port, removed when dropped).
pub struct Postgres {
    pub url: String,
    owned: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl Postgres {
    pub fn start() -> Postgres {
        if let Ok(url) = std::env::var("TURRET_TEST_POSTGRES_URL") {
            return Postgres { url, owned: None };
        }
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL is installed (scripts/test-packages.txt)")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("initdb").exists())
            .max()
            .expect("an initdb");
        let dir = std::env::temp_dir().join(format!("turret-bench-pg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let as_pg = |cmd: &std::path::Path| {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(cmd);
            c
        };
        assert!(
            std::process::Command::new("chown")
                .args(["postgres:"])
                .arg(&dir)
                .status()
                .unwrap()
                .success()
        );
        let port = (55600..55700)
            .find(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_err())
            .unwrap();
        assert!(
            as_pg(&bin.join("initdb"))
                .arg("-D")
                .arg(&dir)
                .args(["-A", "trust", "-U", "postgres"])
                .stdout(std::process::Stdio::null())
                .status()
                .unwrap()
                .success()
        );
        assert!(
            as_pg(&bin.join("pg_ctl"))
                .arg("-D")
                .arg(&dir)
                .arg("-o")
                .arg(format!(
                    "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300",
                    dir.display()
                ))
                .arg("-l")
                .arg(dir.join("server.log"))
                .args(["-w", "start"])
                .stdout(std::process::Stdio::null())
                .status()
                .unwrap()
                .success()
        );
        Postgres {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            owned: Some((bin, dir)),
        }
    }

    /// A new empty database; its URL.
    pub fn database(&self, name: &str) -> String {
        let out = std::process::Command::new("psql")
            .args([self.url.as_str(), "-c", &format!("CREATE DATABASE {name}")])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        format!("{}/{name}", self.url.rsplit_once('/').unwrap().0)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some((bin, dir)) = &self.owned {
            let _ = std::process::Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(bin.join("pg_ctl"))
                .arg("-D")
                .arg(dir)
                .args(["-m", "immediate", "stop"])
                .stdout(std::process::Stdio::null())
                .status();
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
