//! Backups of a data directory (SPEC rule 10, §4): online snapshots,
//! encrypted under the administrator's passphrase; verification without
//! restoring; restore that builds the new database aside, re-applies the
//! erasure ledger, and only then swaps it in.
//!
//! A backup holds the database and the master key file (so line passwords
//! and the audit chain survive a move to a new machine). It never holds the
//! erasure ledger: the ledger belongs to the installation and outlives
//! every backup.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use openturret_domain::Timestamp;
use openturret_domain::secret::Secret;
pub use openturret_store::backup::Protection;
use openturret_store::backup::{self as format, BackupKey, Manifest};
use openturret_store::keys::Keys;
use openturret_store::ledger::Ledger;
use openturret_store::sqlite::{SqliteStore, latest_schema_version};
use openturret_store::{AdminStore, AuditStore, ImageSink, MaintenanceStore, ProfileStore, Store};

use crate::config::Config;
use crate::datadir::{
    DB_FILE, KEY_FILE, LEDGER_FILE, LEDGER_KEY_FILE, claim, finish_pending_restore, mark_pending,
    restore_pending, scratch,
};

/// Minimum passphrase length.
pub const PASSPHRASE_MIN: usize = 12;

/// Where backups go: `backup.dir`, or `<data_dir>/backups`.
pub fn backup_dir(config: &Config) -> PathBuf {
    config
        .backup
        .dir
        .clone()
        .unwrap_or_else(|| config.data_dir.join("backups"))
}

fn private_dir(path: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .with_context(|| format!("while creating {}", path.display()))
}

/// The installation's backup key (public key and passphrase-wrapped
/// private key; nothing secret in the clear), beside the data.
pub const BACKUP_KEY_FILE: &str = "backup-key.json";

/// The installation's backup key, if one was set up.
pub fn load_key(data_dir: &Path) -> anyhow::Result<Option<BackupKey>> {
    let path = data_dir.join(BACKUP_KEY_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
                format!("{} is damaged", path.display())
            })?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("while reading {}", path.display())),
    }
}

/// Sets up (or replaces) the installation's backup key under `passphrase`.
/// Backups made before keep their own key and passphrase.
pub async fn set_key(data_dir: &Path, passphrase: Secret) -> anyhow::Result<BackupKey> {
    check_passphrase(&passphrase)?;
    let now = Timestamp::now().0;
    let key = tokio::task::spawn_blocking(move || BackupKey::create(&passphrase, now))
        .await
        .context("the key derivation stopped")?;
    // An atomic replace of the old key.
    let path = data_dir.join(BACKUP_KEY_FILE);
    let json = serde_json::to_vec_pretty(&key).expect("key serialises");
    openturret_store::keys::replace_private(&path, &json)
        .with_context(|| format!("while writing {}", path.display()))?;
    Ok(key)
}

pub fn check_passphrase(p: &Secret) -> anyhow::Result<()> {
    if p.expose().chars().count() < PASSPHRASE_MIN {
        bail!("the backup passphrase must be at least {PASSPHRASE_MIN} characters");
    }
    Ok(())
}

/// Takes an online backup of the running store into `out_dir`.
///
/// One pass: the database's pages are read from one read transaction and
/// encrypted and written as they come, so no clear copy of the
/// database ever touches the disk. This runs on a thread of its own at a
/// lower priority (the reading connection is made there, so its thread
/// inherits it): the API and the turrets keep their latency while a backup
/// runs, and the scheduler gives the backup what they leave.
pub async fn create(
    store: std::sync::Arc<dyn Store>,
    data_dir: &Path,
    out_dir: &Path,
    protect: Protection,
) -> anyhow::Result<(PathBuf, Manifest)> {
    if let Protection::Passphrase(p) = &protect {
        check_passphrase(p)?;
    }
    private_dir(out_dir)?;
    // The image is a SQLite database whatever the backend (PostgreSQL's is
    // made at this build's SQLite schema).
    let schema = if store.is_shared() {
        latest_schema_version()
    } else {
        store.schema_version().await?
    };
    let now = Timestamp::now();
    let stamp = now.rfc3339().replace([':', '-'], "").replace('.', "_");
    let out = out_dir.join(format!("turret-backup-{stamp}.otb"));
    let key_file = data_dir.join(KEY_FILE);
    let by = format!("turret {}", env!("CARGO_PKG_VERSION"));
    let out2 = out.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("backup".into())
        .spawn(move || {
            lower_priority();
            let r = (|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let mut w = format::Writer::create(&out2, &protect, now.0, schema, &by)
                    .context("while starting the backup file")?;
                rt.block_on(store.image(&mut DatabaseEntry(&mut w)))
                    .context("while reading the database")?;
                w.add_file(KEY_FILE, &key_file)
                    .context("while adding the key file")?;
                w.finish().context("while finishing the backup file")
            })();
            let _ = tx.send(r);
        })
        .context("while starting the backup thread")?;
    let manifest = rx.await.context("the backup thread stopped")??;
    Ok((out, manifest))
}

/// Feeds the database image into a backup as its database file.
struct DatabaseEntry<'a>(&'a mut format::Writer);

impl ImageSink for DatabaseEntry<'_> {
    fn begin(&mut self, len: u64) -> openturret_store::Result<()> {
        self.0.begin_file(DB_FILE, len)
    }
    fn bytes(&mut self, data: &[u8]) -> openturret_store::Result<()> {
        self.0.bytes(data)
    }
}

/// Lowers the calling thread's scheduling priority (nice 10), for work
/// that should yield to requests. Best effort.
fn lower_priority() {
    // On Linux a thread id names just this thread.
    let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 10);
}

/// Backups in `dir`, newest first, with their manifests.
pub fn list(dir: &Path) -> anyhow::Result<Vec<(PathBuf, Manifest)>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("while listing {}", dir.display())),
    };
    for e in entries {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "otb")
            && let Ok(m) = format::manifest(&p)
        {
            out.push((p, m));
        }
    }
    out.sort_by_key(|(_, m)| std::cmp::Reverse(m.created_at));
    Ok(out)
}

/// A decrypted backup in a private scratch directory, removed on drop
/// unless it was staged for the next start.
struct Unpacked {
    dir: PathBuf,
    manifest: Manifest,
    keep: bool,
}

impl Drop for Unpacked {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

async fn unpack(file: &Path, passphrase: Secret, data_dir: &Path) -> anyhow::Result<Unpacked> {
    let dir = scratch(data_dir, "restore");
    private_dir(&dir)?;
    claim(&dir)?;
    let (f, d) = (file.to_path_buf(), dir.clone());
    let res = tokio::task::spawn_blocking(move || format::extract(&f, &passphrase, &d))
        .await
        .expect("backup reader does not panic");
    let manifest = match res {
        Ok((m, _)) => m,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e).with_context(|| format!("while reading {}", file.display()));
        }
    };
    let u = Unpacked {
        dir,
        manifest,
        keep: false,
    };
    for needed in [DB_FILE, KEY_FILE] {
        if !u.dir.join(needed).exists() {
            bail!("{}: the backup holds no {needed}", file.display());
        }
    }
    if u.manifest.schema_version > latest_schema_version() {
        bail!(
            "{}: made by a newer turret (schema {}, this one knows {})",
            file.display(),
            u.manifest.schema_version,
            latest_schema_version()
        );
    }
    Ok(u)
}

/// Opens an unpacked database as a store (with the backup's key and this
/// installation's ledger), bringing its schema up to date.
async fn open_unpacked(u: &Unpacked, config: &Config) -> anyhow::Result<SqliteStore> {
    let keys = Keys::load_or_create(&u.dir.join(KEY_FILE))?;
    let ledger = Ledger::open(
        &config.data_dir.join(LEDGER_FILE),
        &config.data_dir.join(LEDGER_KEY_FILE),
    )?;
    let plan = openturret_domain::number::NumberPlan {
        country_code: config.numbers.country_code.clone(),
    };
    Ok(SqliteStore::open(&u.dir.join(DB_FILE), keys, plan, ledger).await?)
}

/// What a verification found.
pub struct Verified {
    pub manifest: Manifest,
    pub integrity: String,
    pub audit_entries: i64,
}

/// Checks a backup without restoring it: decrypts every chunk, checks the
/// checksum, the database's integrity and its audit chain.
pub async fn verify(file: &Path, passphrase: Secret, config: &Config) -> anyhow::Result<Verified> {
    let u = unpack(file, passphrase, &config.data_dir).await?;
    let store = open_unpacked(&u, config).await?;
    let integrity = store.integrity_check().await?;
    let chain = store.verify_audit().await?;
    store.close().await;
    if integrity != "ok" {
        bail!(
            "{}: database integrity check failed: {integrity}",
            file.display()
        );
    }
    if let Some(b) = chain.broken {
        bail!(
            "{}: the audit chain inside is broken at entry {}: {}",
            file.display(),
            b.seq,
            b.reason
        );
    }
    Ok(Verified {
        manifest: u.manifest.clone(),
        integrity,
        audit_entries: chain.verified,
    })
}

/// What a restore did.
pub struct Restored {
    pub manifest: Manifest,
    /// Profiles erased since the backup was taken, erased again.
    pub erased_again: usize,
}

fn system_record(event: &str) -> openturret_store::AuditRecord {
    crate::audit::local_record(event, "backup", None, vec![])
}

/// Restores a backup into the (stopped) data directory. Everything is
/// prepared aside; the running data is replaced only at the end, file by
/// file with atomic renames, under a marker that the next start completes
/// if the process dies half-way. A failed restore leaves the data as it was.
pub async fn restore(file: &Path, passphrase: Secret, config: &Config) -> anyhow::Result<Restored> {
    if !crate::startup::embedded(config) {
        return restore_shared(file, passphrase, config).await;
    }
    let data = &config.data_dir;
    let _lock = crate::startup::lock_data_dir(data)
        .context("stop the System Manager before restoring (the data directory is in use)")?;
    let u = unpack(file, passphrase, data).await?;
    let mut done = system_record("backup.restored");
    done.changes = vec!["database".into()];
    let erased = prepare(&u, file, config, done).await?;

    // Empty the current database's WAL so no old frame can be replayed onto
    // the new file, then swap.
    if data.join(DB_FILE).exists() {
        let current = crate::startup::open_store(config).await?;
        current.close().await;
    }
    mark_pending(&u.dir, data)?;
    finish_pending_restore(data)?;
    Ok(Restored {
        manifest: u.manifest.clone(),
        erased_again: erased,
    })
}

/// Restores a backup (of either backend) into a PostgreSQL deployment,
/// with every node stopped (a node serving from the database, seen by its
/// change listener or a live line lease, refuses it). The backup is checked
/// and prepared aside exactly as for SQLite (erasures re-applied, sessions
/// ended, the restore audited), then copied over every table in one
/// transaction: a failure anywhere leaves the database as it was. The
/// backup must carry this deployment's master key, which every node holds.
/// The restore names a new epoch, so each node's anchor of the audit head
/// takes the restored chain when the node starts.
async fn restore_shared(
    file: &Path,
    passphrase: Secret,
    config: &Config,
) -> anyhow::Result<Restored> {
    use crate::config::redacted_url;
    let data = &config.data_dir;
    let _lock = crate::startup::lock_data_dir(data)
        .context("stop the System Manager before restoring (the data directory is in use)")?;
    let url = config.database.url.as_deref().unwrap_or_default();
    let shown = redacted_url(url);
    let pg =
        crate::startup::open_store_pg(config, &crate::startup::database_url(config, url)?).await?;
    let serving = pg.nodes_serving().await?;
    if !serving.is_empty() {
        pg.close().await;
        bail!(
            "stop every System Manager node on {shown} before restoring; still serving: {}",
            serving.join(", ")
        );
    }
    let u = unpack(file, passphrase, data).await?;
    let ours = Keys::read_master(&data.join(KEY_FILE))?;
    let theirs = Keys::read_master(&u.dir.join(KEY_FILE))?;
    if *ours != *theirs {
        pg.close().await;
        bail!(
            "{}: made under another master key than this deployment's ({}): its sealed data \
             would not open here. Restore it into a SQLite deployment (another --data-dir, \
             without database.url), which takes its key, and move that with turret migrate --to",
            file.display(),
            data.join(KEY_FILE).display()
        );
    }
    let epoch = (Timestamp::now().0.max(0) as u64)
        .max(pg.anchor_epoch()? + 1)
        .max(pg.restore_epoch().await? + 1);
    let mut done = system_record("backup.restored");
    done.changes = vec!["database".into(), format!("epoch:{epoch}")];
    let erased = prepare(&u, file, config, done).await?;
    let db = u.dir.join(DB_FILE);
    let bar = indicatif::ProgressBar::new(openturret_store::postgres::rows_to_copy(&db).await?);
    bar.set_style(
        indicatif::ProgressStyle::with_template("restoring [{bar:30}] {pos}/{len} rows ({eta})")
            .expect("valid template"),
    );
    let copied = pg
        .replace_from_sqlite(&db, epoch, &|n| bar.inc(n))
        .await
        .with_context(|| format!("while restoring into {shown} (nothing there changed)"));
    bar.finish_and_clear();
    if let Err(e) = copied {
        pg.close().await;
        return Err(e);
    }
    let chain = pg.verify_audit().await?;
    pg.close().await;
    if let Some(b) = chain.broken {
        bail!(
            "the audit chain does not verify on {shown} after the restore: entry {}: {}",
            b.seq,
            b.reason
        );
    }
    Ok(Restored {
        manifest: u.manifest.clone(),
        erased_again: erased,
    })
}

/// Restoring through the running server is for the embedded database:
/// on PostgreSQL every node must stop first (`turret backup restore`).
/// Refused before anything is unpacked or changed.
fn embedded_only(config: &Config) -> anyhow::Result<()> {
    if !crate::startup::embedded(config) {
        bail!(
            "a PostgreSQL deployment is restored with every node stopped: stop them all, run \
             turret backup restore FILE on one of them, then start them again"
        );
    }
    Ok(())
}

/// Restore while the System Manager runs (portal and API): the backup is
/// checked and the new database built aside exactly as `restore` does,
/// then left under the restore-pending marker. Nothing of the running data
/// changes until the server restarts, which completes the swap before it
/// opens the database (`App::restart` restarts it at once). `done` is the
/// audit entry written into the restored database.
pub async fn stage_restore(
    file: &Path,
    passphrase: Secret,
    config: &Config,
    done: openturret_store::AuditRecord,
) -> anyhow::Result<Restored> {
    embedded_only(config)?;
    let data = &config.data_dir;
    if restore_pending(data) {
        bail!("a restore is already waiting for the restart");
    }
    let mut u = unpack(file, passphrase, data).await?;
    let erased = prepare(&u, file, config, done).await?;
    mark_pending(&u.dir, data)?;
    u.keep = true;
    Ok(Restored {
        manifest: u.manifest.clone(),
        erased_again: erased,
    })
}

/// Checks an unpacked backup, re-applies the erasure ledger to it and
/// audits the restore in it. Returns how many profiles were erased again.
async fn prepare(
    u: &Unpacked,
    file: &Path,
    config: &Config,
    done: openturret_store::AuditRecord,
) -> anyhow::Result<usize> {
    let store = open_unpacked(u, config).await?;
    let integrity = store.integrity_check().await?;
    if integrity != "ok" {
        store.close().await;
        bail!(
            "{}: database integrity check failed: {integrity}",
            file.display()
        );
    }
    let chain = store.verify_audit().await?;
    if let Some(b) = chain.broken {
        store.close().await;
        bail!(
            "{}: the audit chain inside is broken at entry {}: {}",
            file.display(),
            b.seq,
            b.reason
        );
    }
    let mut again = system_record("erasure.reapplied");
    again.object_type = "profile".into();
    let erased = store.reapply_erasures(again).await?;
    // Sessions of backup time must not come back to life.
    store.end_all_sessions().await?;
    store.append_audit(done).await?;
    store.close().await;
    Ok(erased.len())
}

/// Deletes all but the newest `keep` backups in `dir`; returns the files
/// removed.
pub fn rotate(dir: &Path, keep: usize) -> anyhow::Result<Vec<PathBuf>> {
    let list = list(dir)?;
    let mut removed = Vec::new();
    for (path, _) in list.into_iter().skip(keep.max(1)) {
        std::fs::remove_file(&path)
            .with_context(|| format!("while removing {}", path.display()))?;
        removed.push(path);
    }
    Ok(removed)
}

/// The passphrase of scheduled backups, from `backup.passphrase_file`.
fn scheduled_passphrase(config: &Config) -> anyhow::Result<Secret> {
    let file = config
        .backup
        .passphrase_file
        .as_ref()
        .context("backup.passphrase_file is not set")?;
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("while reading {}", file.display()))?;
    Ok(Secret::new(text.trim_end_matches(['\r', '\n'])))
}

/// One scheduled run: a backup under the configured passphrase, then
/// rotation. Both audited as the system.
pub async fn scheduled_once(app: &crate::App) -> anyhow::Result<PathBuf> {
    // The installation's backup key when there is one: then no passphrase
    // needs to be on this machine at all.
    let protect = match load_key(&app.config.data_dir)? {
        Some(k) => Protection::Key(k),
        None => Protection::Passphrase(scheduled_passphrase(&app.config)?),
    };
    let dir = backup_dir(&app.config);
    let (path, _) = create(app.store.clone(), &app.config.data_dir, &dir, protect).await?;
    let mut r = system_record("backup.created");
    r.pii.actor = "system".into();
    r.object_id = path.file_name().map(|f| f.to_string_lossy().into_owned());
    app.store.append_audit(r).await?;
    let removed = rotate(&dir, app.config.backup.keep.unwrap_or(7))?;
    if !removed.is_empty() {
        let mut r = system_record("backup.rotated");
        r.pii.actor = "system".into();
        r.changes = vec![format!("removed:{}", removed.len())];
        app.store.append_audit(r).await?;
    }
    Ok(path)
}

/// Starts scheduled backups when configured.
pub fn start_schedule(app: &crate::App) {
    let Some(minutes) = app.config.backup.every_minutes.filter(|m| *m > 0) else {
        return;
    };
    // Without a backup key, the passphrase key is derived now, at low
    // priority, so that no scheduled backup waits for it.
    let keyed = matches!(load_key(&app.config.data_dir), Ok(Some(_)));
    if let (false, Ok(passphrase)) = (keyed, scheduled_passphrase(&app.config)) {
        let _ = std::thread::Builder::new()
            .name("backup-key".into())
            .spawn(move || {
                lower_priority();
                if let Err(e) = format::prepare_key(&passphrase) {
                    tracing::warn!(error = %e, "could not derive the backup key ahead");
                }
            });
    }
    check_schedule(app, keyed);
    let app = app.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(minutes * 60)).await;
            // One backup per period for the deployment, whichever node
            // asks first (ten seconds' slack for the nodes' timers).
            let period = (minutes * 60_000) as i64 - 10_000;
            match app
                .store
                .claim_job(
                    "backup",
                    period,
                    openturret_domain::Timestamp::now(),
                    app.events.component(),
                )
                .await
            {
                Ok(true) => scheduled_run(&app).await,
                Ok(false) => {
                    tracing::info!("the scheduled backup of this period is another node's")
                }
                Err(e) => tracing::error!(error = %e, "the scheduled backup could not be claimed"),
            }
        }
    });
}

/// Tells the error log at once, rather than at the first scheduled run,
/// when scheduled backups cannot work: no passphrase to protect them
/// with, or a folder that cannot be written.
fn check_schedule(app: &crate::App, keyed: bool) {
    use openturret_domain::model::Event;
    if !keyed && let Err(e) = scheduled_passphrase(&app.config) {
        app.events.raise(Event::error(
            "backup.misconfigured",
            "backup",
            format!(
                "scheduled backups cannot run: no backup key and no passphrase ({e:#}); \
                 set backup.passphrase_file or create a backup key"
            ),
        ));
    }
    let dir = backup_dir(&app.config);
    let probe = dir.join(format!(".turret-probe-{}", std::process::id()));
    let written = std::fs::create_dir_all(&dir)
        .and_then(|_| std::fs::write(&probe, b""))
        .and_then(|_| std::fs::remove_file(&probe));
    if let Err(e) = written {
        app.events.raise(Event::error(
            "backup.failed",
            "backup",
            format!(
                "scheduled backups cannot be written into {}: {e}",
                dir.display()
            ),
        ));
    }
}

/// One run of the schedule, its outcome logged and told to the error log.
pub async fn scheduled_run(app: &crate::App) {
    use openturret_domain::model::Event;
    let dir = backup_dir(&app.config);
    match scheduled_once(app).await {
        Ok(p) => {
            tracing::info!(file = %p.display(), "scheduled backup written");
            let file = p.file_name().map(|f| f.to_string_lossy().into_owned());
            app.events.raise(
                Event::info(
                    "backup.written",
                    "backup",
                    format!("a scheduled backup was written to {}", dir.display()),
                )
                .with("file", file.unwrap_or_default()),
            );
        }
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "scheduled backup failed");
            app.events.raise(Event::error(
                "backup.failed",
                "backup",
                format!("the scheduled backup into {} failed: {e:#}", dir.display()),
            ));
        }
    }
}
