//! `turret`: the OpenTurret command line. Thin glue over `openturret_server`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use openturret_server::config::{self, Config, Overrides};
use openturret_server::{App, cli, host_name, serve, startup};

/// OpenTurret: multiline voice communication for trading floors.
///
/// Configuration comes from defaults, then the TOML file given with
/// --config (or TURRET_CONFIG), then TURRET_* environment variables
/// (TURRET_LISTEN, TURRET_AUTH__TOKEN_TTL_SECS, ...), then flags.
#[derive(Parser)]
#[command(name = "turret", version, about, long_about)]
struct Cli {
    /// TOML configuration file (`turret config default` prints an example).
    #[arg(long, global = true, env = "TURRET_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory: database, keys, certificate [default: ./turret-data]
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// A PostgreSQL database instead of the embedded SQLite one:
    /// postgres://user@host:port/db (the password in database.password_file,
    /// never here) [default: database.url, else SQLite in the data directory]
    #[arg(long, global = true, value_name = "URL")]
    database: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the System Manager: admin API and portal over HTTPS.
    Serve {
        /// Address to listen on [default: 127.0.0.1:8443]
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// SIP address of the Multi-Line Controller, UDP and TCP [default: 0.0.0.0:5060]
        #[arg(long, value_name = "ADDR")]
        sip_listen: Option<SocketAddr>,
        /// Where `turret mlc` processes connect, over mutual TLS [default: off]
        #[arg(long, value_name = "ADDR")]
        component_listen: Option<SocketAddr>,
    },
    /// A Multi-Line Controller in its own process (or host): serves the
    /// lines the System Manager gives it, over mutual TLS.
    ///
    /// On the System Manager's host, `turret mlc enrol NAME --out DIR`
    /// issues its certificate; copy DIR to the MLC's host, then run
    /// `turret mlc --manager https://SM:8444 --cert DIR/NAME.pem --key DIR/NAME.key --ca DIR/ca.pem`.
    /// The System Manager needs `--component-listen` (or components.listen).
    #[command(args_conflicts_with_subcommands = true)]
    Mlc {
        #[command(subcommand)]
        command: Option<MlcCommand>,
        /// The System Manager's component address, https://host:port
        #[arg(long, value_name = "URL")]
        manager: Option<String>,
        /// This MLC's certificate (PEM), from `turret mlc enrol`
        #[arg(long, value_name = "FILE")]
        cert: Option<PathBuf>,
        /// Its private key (PEM)
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// The System Manager's component CA (PEM)
        #[arg(long, value_name = "FILE")]
        ca: Option<PathBuf>,
        /// SIP address, UDP and TCP [default: 0.0.0.0:5060]
        #[arg(long, value_name = "ADDR")]
        sip_listen: Option<SocketAddr>,
    },
    /// Manage administrator accounts on the data directory.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Import data from CSV or JSON lines (all or nothing).
    Import {
        /// What to import: global-contacts, local-contacts, dkm-keys or lines.
        kind: String,
        /// The profile, for local-contacts and dkm-keys.
        #[arg(long)]
        profile: Option<String>,
        /// The file to read.
        file: PathBuf,
        /// csv (with a header row) or json (one object per line) [default: from the file name]
        #[arg(long)]
        format: Option<String>,
        /// What to do with rows matching an existing contact: reject or update.
        #[arg(long, default_value = "reject")]
        on_duplicate: String,
    },
    /// Export data as CSV or JSON lines (line passwords never).
    Export {
        /// What to export: global-contacts, local-contacts, dkm-keys or lines.
        kind: String,
        /// The profile, for local-contacts and dkm-keys.
        #[arg(long)]
        profile: Option<String>,
        /// csv or json [default: csv]
        #[arg(long, default_value = "csv")]
        format: String,
        /// Write here instead of standard output.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Encrypted backups: create, list, verify, restore.
    Backup {
        #[command(subcommand)]
        command: BackupCommand,
    },
    /// Work with the audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Move this SQLite deployment into an empty PostgreSQL database:
    /// every table, the audit chain, the erasure ledger's effects, sealed
    /// call memory and encrypted line passwords, as they are. Stop the
    /// server first. Then start it with `--database URL`.
    Migrate {
        /// postgres://user@host:port/db (the password in
        /// database.password_file, never here)
        #[arg(long, value_name = "URL")]
        to: String,
    },
    /// Show the error log: what the components (this System Manager, its
    /// MLCs) reported, oldest first, identical events folded with a count.
    ///
    /// Examples: `turret events --level warning --since 1d`;
    /// `turret events --follow` (runs until interrupted).
    Events(cli::EventsArgs),
    /// A scriptable turret client speaking the client protocol.
    ///
    /// COMMAND is one of: profiles, config, contacts [SEARCH], lookup NUMBER,
    /// call-memory, delete-call-memory ENTRY_ID, watch [SECONDS], calls, dial NUMBER,
    /// answer|reject|hold|retrieve|hangup CALL_ID. Passwords come from standard input: the
    /// profile password on the first line, then (optional) the contacts or
    /// call-memory password.
    Client {
        /// System Manager URL [default: https://<listen address>]
        #[arg(long, value_name = "URL")]
        server: Option<String>,
        /// Certificate (PEM) to trust [default: <data-dir>/tls/cert.pem]
        #[arg(long, value_name = "FILE")]
        ca: Option<PathBuf>,
        /// Profile name to log in to.
        #[arg(long)]
        profile: Option<String>,
        /// Read the password(s) from standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Log in with the master password (SPEC rule 7: only call-memory
        /// and delete-call-memory; every use is audited).
        #[arg(long)]
        master: bool,
        command: String,
        arg: Option<String>,
    },
    /// Follow the CTI event stream as an external application would:
    /// prints every message as one JSON line (see docs/cti.md).
    Cti {
        /// System Manager URL [default: https://<listen address>]
        #[arg(long, value_name = "URL")]
        server: Option<String>,
        /// Certificate (PEM) to trust [default: <data-dir>/tls/cert.pem]
        #[arg(long, value_name = "FILE")]
        ca: Option<PathBuf>,
        /// A file holding the API key (`-`: standard input); never on the
        /// command line, where other users could read it.
        #[arg(long, value_name = "FILE")]
        key_file: PathBuf,
        /// Resume after this sequence number.
        #[arg(long, value_name = "SEQ")]
        since: Option<u64>,
        /// Stop after this many seconds [default: run until closed]
        #[arg(long)]
        seconds: Option<u64>,
    },
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum MlcCommand {
    /// Issue a certificate for an MLC named NAME (run on the System
    /// Manager's host): writes NAME.pem, NAME.key (mode 0600) and ca.pem.
    Enrol {
        name: String,
        /// The folder to write them to.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Refuse an MLC's certificate from now on (its link ends).
    Revoke { name: String },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an administrator; the password is read from standard input.
    Create {
        #[arg(long)]
        username: String,
        /// Read the password from the first line of standard input.
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Set a new password for an administrator (and re-enable the account).
    ResetPassword {
        #[arg(long)]
        username: String,
        /// Read the password from the first line of standard input.
        #[arg(long, required = true)]
        password_stdin: bool,
    },
}

#[derive(Subcommand)]
enum BackupCommand {
    /// Take an online backup (the server may be running).
    Create {
        /// Folder to write to [default: backup.dir, or <data-dir>/backups]
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Read the passphrase from the first line of standard input.
        #[arg(
            long,
            required_unless_present = "with_key",
            conflicts_with = "with_key"
        )]
        passphrase_stdin: bool,
        /// Seal it to the installation's backup key (`turret backup key`):
        /// no passphrase needed.
        #[arg(long)]
        with_key: bool,
    },
    /// Set up (or replace) the installation's backup key under a passphrase:
    /// backups can then be taken without it (`create --with-key`, the API
    /// without a passphrase, scheduled backups); verify and restore need it.
    Key {
        /// Read the passphrase from the first line of standard input.
        #[arg(long, required = true)]
        passphrase_stdin: bool,
    },
    /// List the backups in a folder, newest first.
    List {
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Check a backup without restoring it.
    Verify {
        file: PathBuf,
        #[arg(long, required = true)]
        passphrase_stdin: bool,
    },
    /// Restore a backup (stop the server first); erasures recorded since the
    /// backup are applied again.
    Restore {
        file: PathBuf,
        #[arg(long, required = true)]
        passphrase_stdin: bool,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the audit hash chain; exits 1 naming the first bad entry.
    Verify,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print a commented example configuration with every default.
    Default,
}

fn command_args(c: BackupCommand) -> cli::BackupArgs {
    match c {
        BackupCommand::Create { dir, with_key, .. } => cli::BackupArgs::Create { dir, with_key },
        BackupCommand::Key { .. } => cli::BackupArgs::Key,
        BackupCommand::List { dir } => cli::BackupArgs::List { dir },
        BackupCommand::Verify { file, .. } => cli::BackupArgs::Verify { file },
        BackupCommand::Restore { file, .. } => cli::BackupArgs::Restore { file },
    }
}

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    // PostgreSQL's notices ("relation already exists, skipping" at every
    // start) are not news: shown from warnings up unless asked for.
    let filter = EnvFilter::try_from_env("TURRET_LOG").unwrap_or_else(|_| {
        EnvFilter::new(format!("{},sqlx::postgres::notice=warn", config.log.level))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if config.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// The System Manager's URL (default: this configuration's listen
/// address) and the certificate to trust (default: the generated one).
fn server_and_ca(
    config: &openturret_server::config::Config,
    server: Option<String>,
    ca: Option<PathBuf>,
) -> anyhow::Result<(String, Vec<u8>)> {
    // The address the server in this data directory said it listens on
    // (it writes it at start), else the configured one.
    let url = server
        .or_else(|| {
            std::fs::read_to_string(config.data_dir.join(startup::URL_FILE))
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| s.starts_with("https://"))
        })
        .unwrap_or_else(|| startup::client_url(config.listen));
    let ca = ca.unwrap_or_else(|| config.data_dir.join("tls/cert.pem"));
    let pem = std::fs::read(&ca)
        .with_context(|| format!("while reading the certificate {}", ca.display()))?;
    Ok((url, pem))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler installs");
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutting down");
}

async fn run_serve(config: Config) -> anyhow::Result<()> {
    let host = host_name();
    let prepared = startup::prepare(&config, &host).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("while binding {}", config.listen))?;
    let bound = listener.local_addr()?;
    // For `turret client` and `turret cti` on this data directory.
    if let Err(e) = std::fs::write(
        config.data_dir.join(startup::URL_FILE),
        format!("{}\n", startup::client_url(bound)),
    ) {
        tracing::warn!(error = %e, "cannot record the server's address in the data directory");
    }
    println!("OpenTurret System Manager {}", env!("CARGO_PKG_VERSION"));
    println!("  portal:      {}", startup::portal_url(bound, &host));
    println!("  data:        {}", config.data_dir.display());
    match &config.database.url {
        None => println!("  database:    SQLite in the data directory"),
        Some(url) => println!(
            "  database:    PostgreSQL {}",
            openturret_server::config::redacted_url(url)
        ),
    }
    println!(
        "  certificate: {}{}",
        prepared.cert.cert_path.display(),
        if prepared.cert.generated {
            " (self-signed, generated now)"
        } else {
            ""
        }
    );
    if let Some(pw) = &prepared.first_admin_password {
        println!("  first administrator: admin");
        println!("  one-time password:   {}", pw.expose());
        println!("  (shown once; you must change it at first login)");
    }
    use std::io::Write;
    std::io::stdout().flush().ok();
    let store = prepared.store.clone();
    let _lock = prepared.lock;
    let sip = config.sip.clone();
    let app = App::start(prepared.store, config, host).await?;
    if sip.enabled {
        let at = openturret_server::telephony::start_local(&app, sip).await?;
        println!("  SIP (MLC):   {at} (UDP and TCP)");
        if let Some(tls) = app.mlc.tls_addr() {
            println!("  SIP TLS:     {tls}");
        }
    } else {
        println!("  SIP (MLC):   off (sip.enabled = false)");
    }
    if let Some(listen) = app.config.components.listen {
        let at = openturret_server::component::serve(&app, listen).await?;
        println!("  components:  {at} (mutual TLS, for turret mlc)");
    }
    std::io::stdout().flush().ok();
    tracing::info!(%bound, "serving");
    let restart_app = app.clone();
    let stop = async move {
        tokio::select! {
            _ = shutdown_signal() => {}
            _ = restart_app.restart.wait() => tracing::info!("restarting"),
        }
    };
    let restart = app.clone();
    serve(app, listener, prepared.tls, stop).await?;
    openturret_server::telephony::shutdown(&restart).await;
    // The lines are unbound: another node may take them at once.
    openturret_server::lease::release(&restart).await;
    restart.cdr.close().await;
    store.close().await;
    if restart.restart.requested() {
        drop(_lock);
        // The same program with the same arguments, in this process: the
        // start completes the staged restore before opening the database.
        use std::os::unix::process::CommandExt;
        let exe = std::env::current_exe()?;
        let err = std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .exec();
        anyhow::bail!("could not restart: {err}");
    }
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let (listen, sip_listen, component_listen) = match &cli.command {
        Command::Serve {
            listen,
            sip_listen,
            component_listen,
        } => (*listen, *sip_listen, *component_listen),
        Command::Mlc { sip_listen, .. } => (None, *sip_listen, None),
        _ => (None, None, None),
    };
    let overrides = Overrides {
        data_dir: cli.data_dir.clone(),
        database: cli.database.clone(),
        listen,
        sip_listen,
        component_listen,
    };
    let loaded = config::load(cli.config.as_deref(), std::env::vars(), &overrides)?;
    let config = loaded.config;
    init_logging(&config);
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    match cli.command {
        Command::Serve { .. } => run_serve(config).await?,
        Command::Admin { command } => match command {
            AdminCommand::Create { username, .. } => {
                let pw = cli::read_password(std::io::stdin().lock())?;
                cli::admin_create(&config, &username, pw).await?
            }
            AdminCommand::ResetPassword { username, .. } => {
                let pw = cli::read_password(std::io::stdin().lock())?;
                cli::admin_reset_password(&config, &username, pw).await?
            }
        },
        Command::Import {
            kind,
            profile,
            file,
            format,
            on_duplicate,
        } => {
            if !cli::import(
                &config,
                &kind,
                profile.as_deref(),
                &file,
                format.as_deref(),
                &on_duplicate,
            )
            .await?
            {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Export {
            kind,
            profile,
            format,
            output,
        } => {
            cli::export(
                &config,
                &kind,
                profile.as_deref(),
                &format,
                output.as_deref(),
            )
            .await?
        }
        Command::Backup { command } => cli::backup(&config, command_args(command)).await?,
        Command::Audit {
            command: AuditCommand::Verify,
        } => {
            if !cli::audit_verify(&config).await? {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Events(args) => cli::events(&config, args).await?,
        Command::Migrate { to } => cli::migrate(&config, &to).await?,
        Command::Config {
            command: ConfigCommand::Default,
        } => print!("{}", config::DEFAULT_TOML),
        Command::Mlc {
            command: Some(MlcCommand::Enrol { name, out }),
            ..
        } => {
            let files = openturret_server::component::enrol(&config.data_dir, &name, &out)?;
            cli::audit_component(&config, "mlc.enrolled", &name).await?;
            println!("MLC {name} enrolled; copy these to its host (the key stays secret):");
            for f in files {
                println!("  {}", f.display());
            }
        }
        Command::Mlc {
            command: Some(MlcCommand::Revoke { name }),
            ..
        } => {
            openturret_server::component::revoke(&config.data_dir, &name)?;
            cli::audit_component(&config, "mlc.revoked", &name).await?;
            println!("MLC {name} revoked: its certificate is refused from now on.");
        }
        Command::Mlc {
            command: None,
            manager,
            cert,
            key,
            ca,
            ..
        } => {
            let need = |v: Option<PathBuf>, flag: &str| {
                v.ok_or_else(|| anyhow::anyhow!("turret mlc needs {flag} (see turret mlc --help)"))
            };
            let opts = openturret_server::component::MlcOptions {
                manager: manager.ok_or_else(|| {
                    anyhow::anyhow!(
                        "turret mlc needs --manager https://HOST:PORT (see turret mlc --help)"
                    )
                })?,
                cert: need(cert, "--cert")?,
                key: need(key, "--key")?,
                ca: need(ca, "--ca")?,
                media: config.media.clone(),
            };
            let host = host_name();
            std::fs::create_dir_all(&config.data_dir)?;
            let (server, _) =
                openturret_server::tls::server_config(&config.tls, &config.data_dir, &host)?;
            let tls = openturret_server::mlc::tls_setup(&server, &config.sip)?;
            println!(
                "OpenTurret Multi-Line Controller {}",
                env!("CARGO_PKG_VERSION")
            );
            println!("  manager:     {}", opts.manager);
            println!("  SIP:         {} (UDP and TCP)", config.sip.listen);
            std::io::Write::flush(&mut std::io::stdout()).ok();
            openturret_server::component::run_mlc(
                opts,
                config.sip.clone(),
                Some(tls),
                shutdown_signal(),
            )
            .await?;
        }
        Command::Cti {
            server,
            ca,
            key_file,
            since,
            seconds,
        } => {
            let (url, pem) = server_and_ca(&config, server, ca)?;
            let key = if key_file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&key_file)
                    .with_context(|| format!("while reading the key file {}", key_file.display()))?
            };
            let key = key.trim();
            if key.is_empty() {
                anyhow::bail!("the key file {} is empty", key_file.display());
            }
            openturret_server::cti::watch(&url, &pem, key, since, seconds, &mut std::io::stdout())
                .await?;
        }
        Command::Client {
            server,
            ca,
            profile,
            password_stdin,
            master,
            command,
            arg,
        } => {
            let (url, pem) = server_and_ca(&config, server, ca)?;
            let passwords: Vec<String> = if password_stdin {
                std::io::read_to_string(std::io::stdin())?
                    .lines()
                    .map(str::to_string)
                    .filter(|l| !l.is_empty())
                    .collect()
            } else {
                Vec::new()
            };
            openturret_server::client::conn::run_cli(
                &url,
                &pem,
                profile.as_deref(),
                master,
                &passwords,
                &command,
                arg.as_deref(),
            )
            .await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
