//! The System Manager (SPEC §1): the admin REST API over HTTPS, audit,
//! login throttling, configuration and start-up. The `turret` binary
//! (`main.rs`) is thin glue over this library.
//!
//! Map of the modules:
//! - [`config`]: layered configuration (defaults, TOML, `TURRET_*`, flags).
//! - [`startup`]: data directory, keys, store, certificate, first admin.
//! - [`tls`]: certificate handling and the TLS listener.
//! - [`http`]: the router, the error type, extractors and one module per
//!   resource; [`openapi`] documents it.
//! - [`passwords`]: argon2id hashing off the async runtime; random secrets.
//! - [`throttle`]: brute-force limits for every login.
//! - [`cli`]: the subcommands that work on a data directory directly.
//!
//! Architecture invariant: handlers reach data only through
//! `openturret_store::Store`; nothing here knows which database is behind it.
#![forbid(unsafe_code)]
#![recursion_limit = "256"]

/// The process's allocator: mimalloc. Imports, backups and the hub hand
/// buffers from one thread to another; glibc's allocator pays heavily for
/// a block freed on another thread than the one that allocated it (a
/// 100,000-row import spent half its parsing time there). Set here so the
/// `turret` binary, the tests and the benches all run on the same one.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod audit;
pub mod backup;
pub mod callerid;
pub mod callmem;
pub mod cdr;
pub mod cli;
pub mod client;
pub mod component;
pub mod config;
pub mod cti;
pub mod datadir;
pub mod events;
pub mod http;
pub mod hub;
pub mod lease;
pub mod monitor;
pub mod net;
pub mod openapi;
pub mod passwords;
pub mod peers;
pub mod portal;
pub mod privacy;
pub mod pseudo;
pub mod recording;
pub mod report;
pub mod retention;
pub mod startup;
pub mod subject;
pub mod telephony;
pub mod throttle;
pub mod tls;
pub mod transfer;
pub mod turret;
pub mod zip;

/// The Multi-Line Controller, a crate of its own (`openturret-mlc`).
pub use openturret_mlc as mlc;

use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;

use openturret_store::Store;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::throttle::Throttle;

/// What every request handler shares.
pub struct AppInner {
    pub store: Arc<dyn Store>,
    pub throttle: Throttle,
    pub config: Config,
    /// This server's host name, recorded in audit entries.
    pub host: String,
    /// Per-session view state of the Management Portal.
    pub portal: portal::Memory,
    /// Caller identification: numbers to names, in memory.
    pub caller_id: callerid::CallerId,
    /// Pushes to connected turret clients.
    pub hub: hub::Hub,
    /// Logged-in turret client sessions.
    pub sessions: client::session::Sessions,
    /// The Multi-Line Controller in this process (idle until started).
    pub mlc: mlc::Mlc,
    /// Set when the server must restart itself (a staged restore).
    pub restart: Restart,
    /// Set when the server has begun to stop: connections are closed with
    /// "restarting" and no new call is accepted.
    pub stopping: Stopping,
    /// Live events for external applications.
    pub cti: cti::Cti,
    /// Numbers as external applications may see them.
    pub pseudo: pseudo::Pseudonymiser,
    /// How each voice recorder has been doing since the start (issue 18).
    pub recorder_status: recording::Status,
    /// Rolling CDR files.
    pub cdr: cdr::Files,
    /// The system's MLCs, line ownership, call routing and reports.
    pub telephony: telephony::Telephony,
    /// The error log: what the components report (issue 20).
    pub events: Arc<events::EventLog>,
    /// This node's name among the nodes of one database (line leases).
    pub node: String,
    /// The lines this node may serve (issue 19).
    pub leases: lease::Leases,
    /// The calls and line states the other nodes carry (issue 19).
    pub peers: peers::Peers,
}

/// A request for the server to stop and start again in place (`turret
/// serve` re-executes itself; see `main.rs`).
#[derive(Default)]
pub struct Restart {
    requested: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
}

impl Restart {
    pub fn request(&self) {
        self.requested
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.notify.notify_one();
    }

    pub fn requested(&self) -> bool {
        self.requested.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Completes when a restart is requested.
    pub async fn wait(&self) {
        self.notify.notified().await
    }
}

/// The server has begun to stop (SIGTERM, a restart).
pub struct Stopping(tokio::sync::watch::Sender<bool>);

impl Default for Stopping {
    fn default() -> Self {
        Stopping(tokio::sync::watch::channel(false).0)
    }
}

impl Stopping {
    pub fn begin(&self) {
        self.0.send_replace(true);
    }

    pub fn is_stopping(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes once the server has begun to stop.
    pub async fn wait(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }
}

/// Cheap-to-clone handle on [`AppInner`].
#[derive(Clone)]
pub struct App(pub Arc<AppInner>);

impl Deref for App {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

impl App {
    /// Builds the shared state, loads the caller-id index from the store
    /// and starts the change pipeline (needs a Tokio runtime).
    pub async fn start(store: Arc<dyn Store>, config: Config, host: String) -> anyhow::Result<App> {
        let plan = openturret_domain::number::NumberPlan {
            country_code: config.numbers.country_code.clone(),
        };
        let data_dir = config.data_dir.clone();
        let events = Arc::new(events::EventLog::new(&host));
        let cdr = cdr::Files::start(&config.cdr, &data_dir, events.clone());
        let node = config.database.node_name.clone().unwrap_or_else(|| {
            // Distinct for two nodes on one machine (each has its own data
            // directory), the same after a restart.
            let dir = std::fs::canonicalize(&data_dir).unwrap_or_else(|_| data_dir.clone());
            format!("{host}:{}", dir.display())
        });
        let portal = portal::Memory::for_store(&store);
        let app = App(Arc::new(AppInner {
            store,
            throttle: Throttle::new(config.auth.clone()),
            config,
            host,
            portal,
            caller_id: callerid::CallerId::new(plan.clone()),
            hub: hub::Hub::default(),
            sessions: client::session::Sessions::default(),
            mlc: mlc::Mlc::new(),
            restart: Restart::default(),
            stopping: Stopping::default(),
            cti: cti::Cti::default(),
            pseudo: pseudo::Pseudonymiser::new(&data_dir, plan.clone()),
            recorder_status: recording::Status::default(),
            cdr,
            telephony: telephony::Telephony::default(),
            events,
            node,
            leases: lease::Leases::default(),
            peers: peers::Peers::default(),
        }));
        let settings = app.store.get_settings().await?;
        app.cti.set_enabled(settings.cti_enabled);
        app.pseudo.set_mode(settings.pseudonymisation);
        app.caller_id.load(app.store.as_ref()).await?;
        events::start(&app);
        cti::start_shared(&app);
        hub::start(&app);
        telephony::start(&app);
        peers::start(&app);
        lease::start(&app);
        retention::start(&app);
        backup::start_schedule(&app);
        monitor::start(&app);
        cdr::scrub_erased_at_start(&app);
        Ok(app)
    }
}

impl App {
    /// An audit record of something the system did by itself (retention,
    /// line registration), with no client address.
    pub fn system_record(
        &self,
        event: &str,
        object: &str,
        object_id: Option<String>,
    ) -> openturret_store::AuditRecord {
        audit::machine_record("system", &self.host, event, object, object_id, vec![])
    }
}

/// Serves the System Manager on `listener` over TLS until `shutdown`
/// completes, then asks every connection to finish and returns within
/// [`SHUTDOWN_GRACE`].
pub async fn serve(
    app: App,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = http::router(app.clone());
    let limits = app.config.http.clone();
    let stopping = app.clone();
    let served = net::serve_router(
        router,
        listener,
        tls,
        &limits,
        Some(app.events.clone()),
        shutdown,
        move || {
            // Turrets and CTI applications are told "restarting" and close;
            // new calls are refused from now on.
            stopping.stopping.begin();
            stopping.mlc.stop_accepting();
        },
    )
    .await;
    // What the components reported last reaches the error log.
    app.events.flush(&app).await;
    served
}

/// The longest a stopping server waits for its connections to close.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// This machine's host name (empty if it cannot be read).
pub fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
