//! Start-up: prepares a data directory (mode 0700, set on an existing one
//! too), opens the
//! key file and the store, loads or generates the certificate, and creates
//! the first administrator with a one-time password when there is none.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use openturret_domain::number::NumberPlan;
use openturret_domain::secret::Secret;
use openturret_store::Store;
use openturret_store::keys::Keys;
use openturret_store::ledger::Ledger;
use openturret_store::sqlite::SqliteStore;

use crate::audit::machine_record;
use crate::config::Config;
use crate::passwords;
use crate::tls::{self, CertInfo};

pub use crate::datadir::{DB_FILE, KEY_FILE, LEDGER_FILE, LEDGER_KEY_FILE};

/// Name of the lock file `turret serve` holds while it runs.
pub const LOCK_FILE: &str = "turret.lock";

/// Takes the data directory's exclusive lock (held by `turret serve` for
/// its lifetime, and by an offline restore). Fails at once when taken.
pub fn lock_data_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
    ensure_dir(dir)?;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(dir.join(LOCK_FILE))
        .with_context(|| format!("while opening the lock of {}", dir.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => {
            anyhow::bail!("another turret process is using {}", dir.display())
        }
        Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

/// Creates the data directory, or closes an existing one to everyone but
/// the service (0700): it holds the database, keys and CDR files.
fn ensure_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        // Made private from the start: a new directory is no news.
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("while creating data directory {}", dir.display()))?;
    }
    let mode = std::fs::metadata(dir)
        .with_context(|| format!("while reading data directory {}", dir.display()))?
        .permissions()
        .mode()
        & 0o777;
    if mode != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("while restricting {} to its owner", dir.display()))?;
        if mode & 0o077 != 0 {
            tracing::warn!(
                dir = %dir.display(),
                was = format!("{mode:o}"),
                "the data directory was open to others; restricted to its owner (700)"
            );
        }
    }
    Ok(())
}

/// The database URL with the password from `database.password_file`.
pub fn database_url(config: &Config, url: &str) -> anyhow::Result<String> {
    let Some(file) = &config.database.password_file else {
        return Ok(url.to_string());
    };
    let pw = std::fs::read_to_string(file)
        .with_context(|| format!("while reading database.password_file {}", file.display()))?;
    let pw = pw.trim_end_matches(['\r', '\n']);
    let (scheme, rest) = url
        .split_once("://")
        .context("database.url has no scheme")?;
    let (user, host) = rest
        .split_once('@')
        .context("database.url names no user (user@host) for the password file's password")?;
    let user = user.split(':').next().unwrap_or(user);
    let encoded: String = pw
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    Ok(format!("{scheme}://{user}:{encoded}@{host}"))
}

/// Opens the store of a data directory, creating the directory if needed:
/// the SQLite file in it, or the PostgreSQL database `database.url` names
/// (the directory then holds the keys, the ledger and the certificate).
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let dir = &config.data_dir;
    ensure_dir(dir)?;
    crate::datadir::finish_pending_restore(dir)
        .context("while completing an interrupted restore")?;
    // Clear copies left by killed backups, restores and uploads go first.
    crate::datadir::remove_abandoned(dir);
    let keys = Keys::load_or_create(&dir.join(KEY_FILE))
        .with_context(|| format!("while opening the key file in {}", dir.display()))?;
    let plan = NumberPlan {
        country_code: config.numbers.country_code.clone(),
    };
    let ledger = Ledger::open(&dir.join(LEDGER_FILE), &dir.join(LEDGER_KEY_FILE))
        .with_context(|| format!("while opening the erasure ledger in {}", dir.display()))?;
    let store: Arc<dyn Store> = match &config.database.url {
        None => Arc::new(
            SqliteStore::open(&dir.join(DB_FILE), keys, plan, ledger)
                .await
                .with_context(|| format!("while opening the database in {}", dir.display()))?,
        ),
        Some(url) => {
            let url = database_url(config, url)?;
            Arc::new(connect_pg(&url, dir, keys, plan, ledger).await?)
        }
    };
    // Whatever was erased stays erased, whatever file came back.
    let audit = machine_record(
        "system",
        &crate::host_name(),
        "erasure.reapplied",
        "profile",
        None,
        vec!["profile"],
    );
    let again = store
        .reapply_erasures(audit)
        .await
        .context("while re-applying the erasure ledger")?;
    if !again.is_empty() {
        tracing::warn!(
            count = again.len(),
            "erased profiles found in the database were erased again"
        );
    }
    Ok(store)
}

async fn connect_pg(
    url: &str,
    dir: &Path,
    keys: Keys,
    plan: NumberPlan,
    ledger: Ledger,
) -> anyhow::Result<openturret_store::postgres::PgStore> {
    let shown = crate::config::redacted_url(url);
    if !verified_or_local(url) {
        tracing::warn!(database = %shown,
            "the connection to PostgreSQL is not verified: add sslmode=verify-full&sslrootcert=<CA file> to the URL");
    }
    openturret_store::postgres::PgStore::connect(url, dir, keys, plan, ledger)
        .await
        .with_context(|| format!("while opening the PostgreSQL database {shown}"))
}

/// Whether a PostgreSQL URL asks for a verified TLS connection, or
/// reaches the database on this machine (loopback or a socket).
fn verified_or_local(url: &str) -> bool {
    let verified = url
        .split_once('?')
        .is_some_and(|(_, q)| q.split('&').any(|kv| kv == "sslmode=verify-full"));
    let host = url
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', '?']).next().unwrap_or(""))
        .map(|auth| auth.rsplit_once('@').map_or(auth, |(_, h)| h))
        .unwrap_or("");
    let host = host.trim_start_matches('[');
    let host = host.split([']', ':']).next().unwrap_or("");
    let local = host.is_empty()
        || host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    verified || local
}

/// The PostgreSQL store of `config`'s data directory at `url` (with its
/// password), as `turret migrate` fills it: its schema made, nothing else.
pub async fn open_store_pg(
    config: &Config,
    url: &str,
) -> anyhow::Result<openturret_store::postgres::PgStore> {
    let dir = &config.data_dir;
    let keys = Keys::load_or_create(&dir.join(KEY_FILE))
        .with_context(|| format!("while opening the key file in {}", dir.display()))?;
    let plan = NumberPlan {
        country_code: config.numbers.country_code.clone(),
    };
    let ledger = Ledger::open(&dir.join(LEDGER_FILE), &dir.join(LEDGER_KEY_FILE))
        .with_context(|| format!("while opening the erasure ledger in {}", dir.display()))?;
    connect_pg(url, dir, keys, plan, ledger).await
}

/// A System Manager ready to serve.
pub struct Prepared {
    /// The data directory's lock, held while serving.
    pub lock: std::fs::File,
    pub store: Arc<dyn Store>,
    pub tls: Arc<rustls::ServerConfig>,
    pub cert: CertInfo,
    /// Set only on the start that created the first administrator.
    pub first_admin_password: Option<Secret>,
}

pub async fn prepare(config: &Config, host: &str) -> anyhow::Result<Prepared> {
    let lock = lock_data_dir(&config.data_dir)?;
    let store = open_store(config).await?;
    let (tls, cert) = tls::server_config(&config.tls, &config.data_dir, host)?;
    let first_admin_password = bootstrap_admin(store.as_ref(), host).await?;
    Ok(Prepared {
        lock,
        store,
        tls,
        cert,
        first_admin_password,
    })
}

/// Creates `admin` with a random one-time password if no administrator
/// exists; returns that password, to be shown once.
pub async fn bootstrap_admin(store: &dyn Store, host: &str) -> anyhow::Result<Option<Secret>> {
    if store.count_admins().await? > 0 {
        return Ok(None);
    }
    let password = passwords::random_password();
    let hash = passwords::hash(password.clone()).await;
    let audit = machine_record(
        "system",
        host,
        "admin.created",
        "admin",
        None,
        vec!["username", "password"],
    );
    store
        .create_admin("admin", hash, true, audit)
        .await
        .context("while creating the first administrator")?;
    Ok(Some(password))
}

/// The URL administrators open, for the listen address.
/// The file in the data directory that holds the URL the running server
/// answers on, for the command-line clients.
pub const URL_FILE: &str = "turret.url";

/// The URL a client on this host uses for a server listening on `listen`.
pub fn client_url(listen: std::net::SocketAddr) -> String {
    let ip = listen.ip();
    let host = if ip.is_unspecified() {
        "127.0.0.1".to_string()
    } else if ip.is_ipv6() {
        format!("[{ip}]")
    } else {
        ip.to_string()
    };
    format!("https://{host}:{}", listen.port())
}

pub fn portal_url(listen: std::net::SocketAddr, host: &str) -> String {
    let ip = listen.ip();
    let h = if ip.is_unspecified() {
        if host.is_empty() {
            "localhost".to_string()
        } else {
            host.to_string()
        }
    } else if ip.is_ipv6() {
        format!("[{ip}]")
    } else {
        ip.to_string()
    };
    format!("https://{h}:{}/", listen.port())
}

/// True when `path` is an existing data directory with a database.
pub fn has_database(dir: &Path) -> bool {
    dir.join(DB_FILE).exists()
}

/// Whether the configuration's data lives in the data directory (SQLite)
/// rather than in a PostgreSQL database.
pub fn embedded(config: &Config) -> bool {
    config.database.url.is_none()
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_unverified_connection_to_another_machine_is_told() {
        use super::verified_or_local as ok;
        assert!(ok("postgres://turret@127.0.0.1:5432/turret"));
        assert!(ok("postgres://turret@localhost/turret"));
        assert!(ok("postgres://turret@[::1]:5432/turret"));
        assert!(ok("postgres:///turret?host=/run/postgresql"));
        assert!(ok(
            "postgres://turret@db.example/turret?sslmode=verify-full&sslrootcert=/ca.pem"
        ));
        assert!(!ok("postgres://turret@db.example/turret"));
        assert!(!ok(
            "postgres://turret:pw@10.0.0.5:5432/turret?sslmode=require"
        ));
        assert!(!ok(
            "postgres://turret@[2001:db8::5]:5432/turret?sslmode=verify-ca"
        ));
    }
}
