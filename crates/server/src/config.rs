//! Configuration: defaults, then a TOML file, then `TURRET_*` environment
//! variables, then command-line flags, each layer overriding the one before.
//!
//! Environment variables map onto keys by lower-casing and splitting on a
//! double underscore: `TURRET_LISTEN` sets `listen`, `TURRET_AUTH__TOKEN_TTL_SECS`
//! sets `auth.token_ttl_secs`. Unknown keys, in the file or the environment,
//! are reported as warnings, never silently ignored. Two variables are not
//! keys: `TURRET_CONFIG` names the file and `TURRET_LOG` is a log filter
//! that overrides `log.level`; `TURRET_TEST_*` belong to the test suite.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

pub use openturret_mlc::{MediaConfig, SipConfig};

/// Everything `turret` can be configured with.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct Config {
    /// Where the database, keys and generated certificate live.
    pub data_dir: PathBuf,
    /// HTTPS address of the admin API, portal and client protocol.
    pub listen: SocketAddr,
    pub tls: TlsConfig,
    pub http: HttpConfig,
    pub auth: AuthConfig,
    pub numbers: NumbersConfig,
    pub backup: BackupConfig,
    pub sip: SipConfig,
    pub media: MediaConfig,
    pub cdr: CdrConfig,
    pub components: ComponentsConfig,
    pub log: LogConfig,
    pub database: DatabaseConfig,
    pub monitor: MonitorConfig,
}

/// When the disks holding the data directory, backups and CDR files count
/// as low (a warning) or full (an error) for the error log: under a share
/// of the disk or under a number of MiB, whichever is reached first.
/// 0 and 0 switch a level off.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct MonitorConfig {
    pub disk_warn_percent: u64,
    pub disk_warn_mib: u64,
    pub disk_error_percent: u64,
    pub disk_error_mib: u64,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            disk_warn_percent: 5,
            disk_warn_mib: 1024,
            disk_error_percent: 1,
            disk_error_mib: 100,
        }
    }
}

impl MonitorConfig {
    /// Never warns or errs, whatever the disks hold (tests that count the
    /// error log's entries must not depend on the machine's free space).
    pub fn off() -> Self {
        MonitorConfig {
            disk_warn_percent: 0,
            disk_warn_mib: 0,
            disk_error_percent: 0,
            disk_error_mib: 0,
        }
    }
}

/// Where the data is kept: the embedded SQLite file in the data directory
/// (the default), or a PostgreSQL database (issue 19).
#[derive(Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct DatabaseConfig {
    /// `postgres://user@host:port/db?sslmode=verify-full&sslrootcert=/ca.pem`;
    /// unset: SQLite in the data directory.
    pub url: Option<String>,
    /// A file (mode 0600) holding the database password, so that it is in
    /// neither the URL, the command line nor the logs.
    pub password_file: Option<PathBuf>,
    /// This node's name among the nodes on one database (line leases);
    /// unset: `<host name>:<data directory>`. Must differ between nodes.
    pub node_name: Option<String>,
}

impl std::fmt::Debug for DatabaseConfig {
    /// Never the URL's password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &self.url.as_deref().map(redacted_url))
            .field("password_file", &self.password_file)
            .field("node_name", &self.node_name)
            .finish()
    }
}

/// A database URL with any password replaced by `***`.
pub fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (auth, host) = match rest.rsplit_once('@') {
        Some(x) => x,
        None => return url.to_string(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

/// Whether a database URL carries a password.
pub fn url_has_password(url: &str) -> bool {
    redacted_url(url) != url
}

/// Connections to the HTTPS listener (issue 14, point 8).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct HttpConfig {
    /// Connections open at once, in all (also kept below the process's
    /// file-descriptor limit); more are closed at once.
    pub max_connections: usize,
    /// Connections open at once from one client address.
    pub max_connections_per_address: usize,
    /// A request's headers must arrive within this many seconds of the
    /// connection (or of the previous request).
    pub header_timeout_secs: u64,
    /// A connection with nothing sent either way for this many seconds is
    /// closed (turrets are pinged every 20 s, so they never go idle).
    pub idle_timeout_secs: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_connections: 10_000,
            max_connections_per_address: 256,
            header_timeout_secs: 10,
            idle_timeout_secs: 120,
        }
    }
}

/// The component listener, where `turret mlc` processes connect over
/// mutual TLS (off unless `listen` is set).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct ComponentsConfig {
    /// Address of the component listener; also `--component-listen`.
    pub listen: Option<SocketAddr>,
    /// Extra names (DNS or IP) for the listener's certificate, beyond
    /// localhost and this host's name: the address MLCs connect to.
    pub names: Vec<String>,
    /// How long an MLC whose link dropped in the middle of calls has to
    /// come back and report them; after that the System Manager records
    /// them itself, as ended when the link was lost.
    pub lost_call_grace_secs: u64,
}

impl Default for ComponentsConfig {
    fn default() -> Self {
        ComponentsConfig {
            listen: None,
            names: Vec::new(),
            lost_call_grace_secs: 60,
        }
    }
}

/// Rolling call-data-record files (written when the CDR output and its
/// files are switched on in the settings).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct CdrConfig {
    /// The folder for offline pick-up; default `<data_dir>/cdr`.
    pub dir: Option<PathBuf>,
    /// A file is closed (renamed from `.part`) after this many minutes...
    pub roll_minutes: u64,
    /// ...or once it holds this many MiB.
    pub roll_mib: u64,
}

impl Default for CdrConfig {
    fn default() -> Self {
        CdrConfig {
            dir: None,
            roll_minutes: 60,
            roll_mib: 64,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct BackupConfig {
    /// Where backups are written and listed (a local or mounted shared
    /// folder); default `<data_dir>/backups`.
    pub dir: Option<PathBuf>,
    /// Take a backup every this many minutes (needs `passphrase_file`);
    /// unset: no scheduled backups.
    pub every_minutes: Option<u64>,
    /// Scheduled backups keep this many newest files in `dir`.
    pub keep: Option<usize>,
    /// A file (mode 0600) holding the passphrase of scheduled backups.
    pub passphrase_file: Option<PathBuf>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct TlsConfig {
    /// PEM certificate chain; when unset a self-signed one is generated in
    /// `<data_dir>/tls/` on first start.
    pub cert: Option<PathBuf>,
    /// PEM private key matching `cert`.
    pub key: Option<PathBuf>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct AuthConfig {
    /// Lifetime of an admin API token.
    pub token_ttl_secs: u64,
    /// Failed logins for one username, within the window, before it is
    /// locked out.
    pub max_failures_per_user: u32,
    /// Failed logins from one client address, within the window, before the
    /// address is locked out (higher: many users may share an address).
    pub max_failures_per_ip: u32,
    /// The window over which failures are counted.
    pub failure_window_secs: u64,
    /// How long a lockout lasts (an administrator can lift it sooner).
    pub lockout_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            token_ttl_secs: 8 * 3600,
            max_failures_per_user: 5,
            max_failures_per_ip: 50,
            failure_window_secs: 15 * 60,
            lockout_secs: 5 * 60,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct NumbersConfig {
    /// Country calling code without `+` (e.g. "44"): national numbers
    /// (leading 0) are matched as international ones.
    pub country_code: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct LogConfig {
    /// `text` for people, `json` for log collectors.
    pub format: String,
    /// A tracing filter such as `info` or `openturret_server=debug,info`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./turret-data"),
            listen: "127.0.0.1:8443".parse().expect("valid default address"),
            tls: TlsConfig::default(),
            http: HttpConfig::default(),
            auth: AuthConfig::default(),
            numbers: NumbersConfig::default(),
            backup: BackupConfig::default(),
            sip: SipConfig::default(),
            media: MediaConfig::default(),
            cdr: CdrConfig::default(),
            components: ComponentsConfig::default(),
            log: LogConfig::default(),
            database: DatabaseConfig::default(),
            monitor: MonitorConfig::default(),
        }
    }
}

/// The commented example printed by `turret config default`.
pub const DEFAULT_TOML: &str = r#"# OpenTurret configuration. Every key is optional; shown are the defaults.
# Each key can also be set from the environment: TURRET_LISTEN, TURRET_DATA_DIR,
# TURRET_AUTH__TOKEN_TTL_SECS (sections joined by a double underscore), and
# the flags of `turret serve --help` override both.

# Where the database, keys and generated certificate live.
data_dir = "./turret-data"
# HTTPS address of the admin API, the Management Portal and the client protocol.
listen = "127.0.0.1:8443"

[tls]
# A real certificate chain and key (PEM). When unset, a self-signed
# certificate is generated in <data_dir>/tls/ on first start.
# cert = "/etc/turret/cert.pem"
# key = "/etc/turret/key.pem"

[http]
# Connections at once, in all (kept below the file-descriptor limit, which
# is raised to its hard limit at start) and from one client address; more
# are closed at once.
max_connections = 10000
max_connections_per_address = 256
# Seconds for a request's headers to arrive (an HTTP/1.1 connection waiting
# for its next request is closed after as long; responses say so in
# Keep-Alive: timeout=N); seconds of silence both ways after which any
# connection is closed (turrets are pinged, never idle).
header_timeout_secs = 10
idle_timeout_secs = 120

[auth]
# Lifetime of an admin API token, in seconds.
token_ttl_secs = 28800
# Failed logins allowed per username within the window before a lockout.
max_failures_per_user = 5
# Failed logins allowed per client address within the window.
max_failures_per_ip = 50
failure_window_secs = 900
# How long a lockout lasts; an administrator can lift it sooner.
lockout_secs = 300

[numbers]
# Country calling code without "+": national numbers (leading 0) then match
# their international form in searches and caller identification.
# country_code = "44"

[backup]
# Where backups are written (a local folder or a mounted shared folder).
# Default: <data_dir>/backups
# dir = "/mnt/backups/turret"
# Scheduled backups: every N minutes, keeping the newest `keep` files, under
# the passphrase read from `passphrase_file` (mode 0600).
# every_minutes = 1440
# keep = 7
# passphrase_file = "/etc/turret/backup-passphrase"

[database]
# Unset: the embedded SQLite database in data_dir. For several System
# Manager nodes, a PostgreSQL database (also --database); TLS with
# ?sslmode=verify-full&sslrootcert=/etc/turret/db-ca.pem. The data directory
# still holds the keys and certificates of each node.
# url = "postgres://turret@db.example:5432/turret?sslmode=verify-full"
# A file (mode 0600) with the database password, never the URL or argv.
# password_file = "/etc/turret/db-password"
# This node's name among the nodes on one database (who holds which line);
# unset: "<host name>:<data directory>". It must differ between nodes.
# node_name = "sm-a"

[sip]
# The Multi-Line Controller: registers the lines and carries their calls.
enabled = true
# SIP address, UDP and TCP (also --sip-listen on `turret serve`).
listen = "0.0.0.0:5060"
# SIP over TLS, with the server's certificate. Default: the address of
# `listen` with the next port (5061).
# tls_listen = "0.0.0.0:5061"
# CA certificates (PEM) that PBX certificates must chain to, for lines over
# TLS (sips: or ;transport=tls).
# tls_ca = "/etc/turret/pbx-ca.pem"
# The IP address put in Via, Contact and SDP. Unset: the address this host
# uses to reach each PBX.
# advertise = "192.0.2.10"
# Registration lifetime asked of the PBX, in seconds.
register_expires = 300
# Each PBX is sent an OPTIONS this often; when it answers again after an
# outage, its lines re-register at once.
keepalive_secs = 5
# Before a line's first REGISTER, ask the registrar for its bindings, so
# those another MLC left are replaced in one request (never two of ours).
query_bindings = true
# Requests for a line are taken only from its registrar and from the
# addresses listed for the line (its "peers"); anyone else gets 403.
# An incoming call nobody answers ends after this many seconds (480).
ring_timeout_secs = 120
# The most calls ringing at once on one line; more are answered 486.
max_ringing_per_line = 8

[media]
# Audio of calls: RTP towards the PBX and WebRTC (DTLS-SRTP) towards the
# turrets, both from this port range (UDP, inclusive; open it in the
# firewall). 0 and 0: any port the system gives.
port_min = 10000
port_max = 20000
# The IP address media sockets bind to. Unset: the address this host uses to
# reach the PBX (RTP) or the turret (WebRTC).
# address = "0.0.0.0"
# The address peers are told to send media to, when a 1:1 NAT stands in
# front of this host.
# public_address = "203.0.113.7"

[cdr]
# Rolling call-data-record files, written when CDRs and their files are
# switched on in the settings. The file being written ends in .part; a
# pick-up job takes only the closed ones.
# Default: <data_dir>/cdr
# dir = "/var/spool/turret/cdr"
# A file is closed after this many minutes, or once it holds roll_mib MiB.
roll_minutes = 60
roll_mib = 64

[components]
# Where `turret mlc` processes connect (mutual TLS, certificates of the
# internal CA: `turret mlc enrol NAME`). Off unless set; also
# --component-listen on `turret serve`.
# listen = "0.0.0.0:8444"
# Names MLCs use to reach this server, for its component certificate
# (localhost and this host's name are always in it).
# names = ["turret.example.com", "192.0.2.10"]
# An MLC whose link drops in the middle of calls has this long to come back
# and report them (it keeps their reports meanwhile); after that this server
# records them itself, ended when the link was lost ("controller_lost").
lost_call_grace_secs = 60

[monitor]
# The disks holding the data directory, backups and CDR files are checked
# every minute; each disk is one entry of the error log when it becomes low,
# full, or fine again. Low (a warning): less than disk_warn_percent % of it
# or disk_warn_mib MiB free; full (an error): less than disk_error_percent %
# or disk_error_mib MiB. 0 and 0 switch a level off.
disk_warn_percent = 5
disk_warn_mib = 1024
disk_error_percent = 1
disk_error_mib = 100

[log]
# "text" or "json"
format = "text"
# A tracing filter, e.g. "info" or "openturret_server=debug,info"
level = "info"
"#;

/// Flags that override the file and the environment.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    /// `--database`: refused with a password in it (argv is readable by
    /// every user of the machine).
    pub database: Option<String>,
    pub listen: Option<SocketAddr>,
    pub sip_listen: Option<SocketAddr>,
    pub component_listen: Option<SocketAddr>,
}

/// A loaded configuration and the warnings met on the way (unknown keys),
/// to be logged once logging is set up.
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

/// Loads the configuration layers.
pub fn load(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &Overrides,
) -> anyhow::Result<Loaded> {
    let mut table = match file {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("while reading config file {}", p.display()))?;
            text.parse::<toml::Table>()
                .with_context(|| format!("while parsing config file {}", p.display()))?
        }
        None => toml::Table::new(),
    };
    let defaults = toml::Table::try_from(Config::default()).context("while encoding defaults")?;
    for (name, value) in env {
        let Some(rest) = name.strip_prefix("TURRET_") else {
            continue;
        };
        // TURRET_CONFIG names the file; TURRET_LOG is a tracing filter that
        // overrides log.level (like RUST_LOG); TURRET_TEST_* belong to the
        // test suite (which database a test run uses).
        if rest == "CONFIG" || rest == "LOG" || rest.starts_with("TEST_") {
            continue;
        }
        let path: Vec<String> = rest
            .to_lowercase()
            .split("__")
            .map(str::to_string)
            .collect();
        let typed = typed_env_value(&defaults, &path, &value)
            .with_context(|| format!("while reading environment variable {name}"))?;
        set_path(&mut table, &path, typed)
            .with_context(|| format!("while applying environment variable {name}"))?;
    }
    let mut warnings = Vec::new();
    let mut config: Config = serde_ignored::deserialize(toml::Value::Table(table), |path| {
        warnings.push(format!("unknown configuration key `{path}` ignored"))
    })
    .context("while reading the configuration")?;
    if let Some(d) = &overrides.data_dir {
        config.data_dir = d.clone();
    }
    if let Some(url) = &overrides.database {
        if url_has_password(url) {
            bail!(
                "--database {}: the password does not belong on the command line, where any \
                 user of the machine can read it; put it in database.password_file",
                redacted_url(url)
            );
        }
        config.database.url = Some(url.clone());
    }
    if let Some(url) = &config.database.url
        && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
    {
        bail!(
            "database.url {}: only PostgreSQL URLs (postgres://...) are supported; leave it unset for the embedded SQLite database",
            redacted_url(url)
        );
    }
    if let Some(l) = overrides.listen {
        config.listen = l;
    }
    if let Some(l) = overrides.sip_listen {
        config.sip.listen = l;
    }
    if let Some(l) = overrides.component_listen {
        config.components.listen = Some(l);
    }
    if !matches!(config.log.format.as_str(), "text" | "json") {
        bail!(
            "log.format must be \"text\" or \"json\", not {:?}",
            config.log.format
        );
    }
    if config.tls.cert.is_some() != config.tls.key.is_some() {
        bail!("tls.cert and tls.key must be set together");
    }
    if let Err(e) = config.media.check() {
        bail!("{e}");
    }
    Ok(Loaded { config, warnings })
}

/// An environment value typed like the default at the same path (integers
/// and booleans are parsed; everything else stays a string).
fn typed_env_value(
    defaults: &toml::Table,
    path: &[String],
    raw: &str,
) -> anyhow::Result<toml::Value> {
    let mut cur = defaults;
    let mut found = None;
    for (i, key) in path.iter().enumerate() {
        match cur.get(key) {
            Some(toml::Value::Table(t)) if i + 1 < path.len() => cur = t,
            Some(v) if i + 1 == path.len() => found = Some(v),
            _ => break,
        }
    }
    Ok(match found {
        Some(toml::Value::Integer(_)) => toml::Value::Integer(
            raw.trim()
                .parse()
                .with_context(|| format!("{raw:?} is not a whole number"))?,
        ),
        Some(toml::Value::Boolean(_)) => toml::Value::Boolean(match raw.trim() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => bail!("{raw:?} is not true or false"),
        }),
        Some(_) => toml::Value::String(raw.to_string()),
        // No default to go by (a key unset by default, such as
        // backup.every_minutes): the first of integer, boolean and string
        // that the configuration accepts there.
        None => {
            let fits = |v: &toml::Value| {
                let mut probe = defaults.clone();
                set_path(&mut probe, path, v.clone()).is_ok()
                    && toml::Value::Table(probe).try_into::<Config>().is_ok()
            };
            let t = raw.trim();
            let candidates = [
                t.parse::<i64>().ok().map(toml::Value::Integer),
                t.parse::<bool>().ok().map(toml::Value::Boolean),
            ];
            candidates
                .into_iter()
                .flatten()
                .find(fits)
                .unwrap_or_else(|| toml::Value::String(raw.to_string()))
        }
    })
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> anyhow::Result<()> {
    let (last, parents) = path.split_last().context("empty key")?;
    let mut cur = table;
    for key in parents {
        let entry = cur
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = match entry {
            toml::Value::Table(t) => t,
            _ => bail!("`{key}` is not a section"),
        };
    }
    cur.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_printed_example_is_the_default() {
        let parsed: Config = toml::from_str(DEFAULT_TOML).unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn layers_override_in_order_and_unknown_keys_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:1\"\nlistn = 3\n[auth]\nlockout_secs = 7\n",
        )
        .unwrap();
        let loaded = load(
            Some(&file),
            env(&[
                ("TURRET_LISTEN", "127.0.0.1:2"),
                ("TURRET_AUTH__TOKEN_TTL_SECS", "60"),
                ("TURRET_NUMBERS__COUNTRY_CODE", "44"),
                ("TURRET_BOGUS", "x"),
                ("HOME", "/root"),
                ("TURRET_LOG", "debug"),
                ("TURRET_SIP__KEEPALIVE_SECS", "9"),
                ("TURRET_BACKUP__EVERY_MINUTES", "15"),
            ]),
            &Overrides {
                data_dir: Some("/tmp/x".into()),
                database: Some("postgres://turret@db.example/turret".into()),
                listen: None,
                sip_listen: Some("127.0.0.1:5099".parse().unwrap()),
                component_listen: Some("127.0.0.1:8444".parse().unwrap()),
            },
        )
        .unwrap();
        let c = loaded.config;
        assert_eq!(c.sip.keepalive_secs, 9, "sections from the environment");
        assert_eq!(
            c.database.url.as_deref(),
            Some("postgres://turret@db.example/turret")
        );
        assert_eq!(c.sip.listen.port(), 5099, "--sip-listen beats all");
        assert_eq!(
            c.components.listen.map(|a| a.port()),
            Some(8444),
            "--component-listen"
        );
        assert_eq!(c.listen.port(), 2, "environment beats file");
        assert_eq!(c.auth.lockout_secs, 7);
        assert_eq!(c.auth.token_ttl_secs, 60);
        assert_eq!(c.numbers.country_code.as_deref(), Some("44"));
        assert_eq!(
            c.backup.every_minutes,
            Some(15),
            "a number where the default is unset"
        );
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"), "flag beats all");
        assert!(
            loaded.warnings.iter().any(|w| w.contains("listn")),
            "{:?}",
            loaded.warnings
        );
        assert!(
            loaded.warnings.iter().any(|w| w.contains("bogus")),
            "{:?}",
            loaded.warnings
        );
    }

    #[test]
    fn a_database_password_is_refused_on_the_command_line_and_never_shown() {
        let err = load(
            None,
            env(&[]),
            &Overrides {
                database: Some("postgres://turret:s3cret@db/turret".into()),
                ..Overrides::default()
            },
        )
        .err()
        .unwrap();
        let text = format!("{err:#}");
        assert!(
            text.contains("password_file") && !text.contains("s3cret"),
            "{text}"
        );
        let err = load(
            None,
            env(&[("TURRET_DATABASE__URL", "mysql://x")]),
            &Overrides::default(),
        )
        .err()
        .unwrap();
        assert!(format!("{err:#}").contains("only PostgreSQL"));
        // From the environment it is accepted, and never printed.
        let c = load(
            None,
            env(&[("TURRET_DATABASE__URL", "postgres://turret:s3cret@db/turret")]),
            &Overrides::default(),
        )
        .unwrap()
        .config;
        assert!(!format!("{c:?}").contains("s3cret"));
        assert_eq!(
            redacted_url("postgres://u:p@h:5/d?x=1"),
            "postgres://u:***@h:5/d?x=1"
        );
        assert_eq!(redacted_url("postgres://u@h/d"), "postgres://u@h/d");
    }

    #[test]
    fn a_bad_environment_value_names_the_variable() {
        let err = load(
            None,
            env(&[("TURRET_AUTH__LOCKOUT_SECS", "soon")]),
            &Overrides::default(),
        )
        .err()
        .unwrap();
        assert!(
            format!("{err:#}").contains("TURRET_AUTH__LOCKOUT_SECS"),
            "{err:#}"
        );
    }
}
