//! Subcommands that work on a data directory directly, without a running
//! server: administrator accounts and audit verification (each action
//! audited as actor `cli:<os user>`), and reading the error log.

use std::io::{BufRead, Read};
use std::path::Path;

use anyhow::{Context, bail};
use openturret_domain::model::{ADMIN_PASSWORD_MIN, admin_username};
use openturret_domain::secret::Secret;
use openturret_domain::validate;
use openturret_store::{AdminChanges, AuditStore};

use crate::audit;
use crate::config::Config;
use crate::{passwords, startup};

fn record(
    event: &str,
    object_id: Option<String>,
    changes: Vec<&str>,
) -> openturret_store::AuditRecord {
    audit::local_record(event, "admin", object_id, changes)
}

/// Reads a password from the first line of `input`.
pub fn read_password(input: impl BufRead) -> anyhow::Result<Secret> {
    let mut line = String::new();
    input
        .take(1024)
        .read_line(&mut line)
        .context("while reading the password from standard input")?;
    let pw = line.trim_end_matches(['\r', '\n']);
    validate::new_password("password", pw, ADMIN_PASSWORD_MIN)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Secret::new(pw))
}

async fn existing_store(
    config: &Config,
) -> anyhow::Result<std::sync::Arc<dyn openturret_store::Store>> {
    if startup::embedded(config) && !startup::has_database(&config.data_dir) {
        bail!(
            "no OpenTurret database in {} (start `turret serve --data-dir {}` once, or pass the right --data-dir)",
            config.data_dir.display(),
            config.data_dir.display()
        );
    }
    startup::open_store(config).await
}

pub async fn admin_create(config: &Config, username: &str, password: Secret) -> anyhow::Result<()> {
    let username = admin_username(username).map_err(|e| anyhow::anyhow!("{e}"))?;
    let store = startup::open_store(config).await?;
    let hash = passwords::hash(password).await;
    let r = record("admin.created", None, vec!["username", "password"]);
    let result = store.create_admin(&username, hash, false, r).await;
    store.close().await;
    match result {
        Ok(a) => {
            println!("administrator {} created (id {})", a.username, a.id);
            Ok(())
        }
        Err(openturret_store::StoreError::Conflict { .. }) => {
            bail!("an administrator named {username} already exists")
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn admin_reset_password(
    config: &Config,
    username: &str,
    password: Secret,
) -> anyhow::Result<()> {
    let store = existing_store(config).await?;
    let Some((admin, _)) = store.admin_credentials(username.trim()).await? else {
        store.close().await;
        bail!("no administrator named {}", username.trim());
    };
    let hash = passwords::hash(password).await;
    let r = record(
        "admin.password_reset",
        Some(admin.id.to_string()),
        vec!["password"],
    );
    let changes = AdminChanges {
        password: Some((hash, false)),
        enabled: Some(true),
    };
    store.update_admin(admin.id, changes, r).await?;
    store.close().await;
    println!(
        "password of {} reset; their sessions have ended",
        admin.username
    );
    Ok(())
}

/// Verifies the audit chain; `Ok(false)` when it is broken.
pub async fn audit_verify(config: &Config) -> anyhow::Result<bool> {
    let store = existing_store(config).await?;
    let v = store.verify_audit().await?;
    let ok = v.broken.is_none();
    match &v.broken {
        None => println!("audit log intact: {} entries verified", v.verified),
        Some(b) => println!(
            "audit log BROKEN at entry {}: {} ({} entries verified before it)",
            b.seq, b.reason, v.verified
        ),
    }
    let mut r = record("audit.verified", None, vec![]);
    r.object_type = "audit".into();
    r.success = ok;
    store.append_audit(r).await?;
    store.close().await;
    Ok(ok)
}

/// `turret migrate --to URL`: copies this data directory's SQLite database
/// into the empty PostgreSQL database at `url` and verifies the copy.
pub async fn migrate(config: &Config, url: &str) -> anyhow::Result<()> {
    use crate::config::{redacted_url, url_has_password};
    if url_has_password(url) {
        bail!(
            "--to {}: the password does not belong on the command line; put it in database.password_file",
            redacted_url(url)
        );
    }
    if !startup::embedded(config) {
        bail!("this deployment is on PostgreSQL already (database.url is set)");
    }
    if !startup::has_database(&config.data_dir) {
        bail!(
            "no OpenTurret database in {} to migrate",
            config.data_dir.display()
        );
    }
    let shown = redacted_url(url);
    let _lock = startup::lock_data_dir(&config.data_dir)
        .context("stop the System Manager before migrating (the data directory is in use)")?;
    // Opened once as a store: pending work done, erasures re-applied.
    let sqlite = startup::open_store(config).await?;
    sqlite.close().await;
    let mut target = config.clone();
    target.database.url = Some(url.to_string());
    let full_url = startup::database_url(&target, url)?;
    if !openturret_store::postgres::database_is_empty(&full_url)
        .await
        .with_context(|| format!("while connecting to {shown}"))?
    {
        bail!("{shown} is not empty: migrate into a new, empty database");
    }
    let pg = startup::open_store_pg(&target, &full_url).await?;
    let db = config.data_dir.join(startup::DB_FILE);
    let total = openturret_store::postgres::rows_to_copy(&db).await?;
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("copying [{bar:30}] {pos}/{len} rows ({eta})")
            .expect("valid template"),
    );
    let counts = pg
        .copy_from_sqlite(&db, &|n| bar.inc(n))
        .await
        .with_context(|| format!("while copying into {shown} (nothing was kept there)"))?;
    bar.finish_and_clear();
    let head = openturret_store::head::HeadFile::new({
        let mut p = db.as_os_str().to_owned();
        p.push(".audit-head");
        p.into()
    })
    .read()?;
    if let Some(h) = head {
        pg.anchor_head(h)?;
    }
    let v = pg.verify_audit().await?;
    if let Some(b) = &v.broken {
        bail!(
            "the audit chain does not verify on {shown}: entry {}: {}",
            b.seq,
            b.reason
        );
    }
    let rows: u64 = counts.iter().map(|(_, n)| n).sum();
    let mut r = audit::local_record("database.migrated", "database", None, vec![]);
    r.changes = vec![format!("rows:{rows}"), format!("tables:{}", counts.len())];
    pg.append_audit(r).await?;
    pg.close().await;
    println!("copied {rows} rows in {} tables to {shown}", counts.len());
    for (t, n) in counts.iter().filter(|(_, n)| *n > 0) {
        println!("  {t:<22} {n}");
    }
    println!(
        "audit chain verified on PostgreSQL: {} entries. Start with: turret serve --database '{shown}'",
        v.verified
    );
    Ok(())
}

/// What `turret events` shows.
#[derive(clap::Args)]
pub struct EventsArgs {
    /// Only entries at least this bad: error, warning or info.
    #[arg(long)]
    pub level: Option<String>,
    /// Only this component, such as sm:turret1 or mlc:desk-a.
    #[arg(long)]
    pub component: Option<String>,
    /// Only this event type, such as pbx.unreachable.
    #[arg(long = "type", value_name = "TYPE")]
    pub event_type: Option<String>,
    /// Only this object, such as line:7 or backup.
    #[arg(long)]
    pub object: Option<String>,
    /// Only entries last seen within this long (1h, 2d) or since this
    /// RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// At most this many entries (the newest).
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
    /// Keep running and print entries as they are written (a folded
    /// entry again, with its new count).
    #[arg(long)]
    pub follow: bool,
    /// One JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `turret events`: the error log, oldest first; with `follow`, then
/// every entry written (or folded into) as it comes, until interrupted.
pub async fn events(config: &Config, a: EventsArgs) -> anyhow::Result<()> {
    use openturret_domain::Timestamp;
    use openturret_domain::model::{EventFilter, EventLevel};
    let at_least = a
        .level
        .as_deref()
        .map(|l| {
            EventLevel::parse(l)
                .with_context(|| format!("--level {l}: give error, warning or info"))
        })
        .transpose()?;
    let from = a
        .since
        .as_deref()
        .map(|s| -> anyhow::Result<Timestamp> {
            if let Ok(d) = humantime::parse_duration(s) {
                return Ok(Timestamp(Timestamp::now().0 - d.as_millis() as i64));
            }
            let t = humantime::parse_rfc3339_weak(s).with_context(|| {
                format!("--since {s}: give a duration such as 1h or 2d, or an RFC 3339 time")
            })?;
            Ok(Timestamp(
                t.duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis() as i64,
            ))
        })
        .transpose()?;
    if !(1..=10_000).contains(&a.limit) {
        bail!("--limit {}: give 1 to 10000", a.limit);
    }
    let store = existing_store(config).await?;
    let mut filter = EventFilter {
        at_least,
        component: a.component,
        event_type: a.event_type,
        object: a.object,
        from,
        limit: a.limit,
        ..Default::default()
    };
    let mut shown = store.list_events(&filter).await?;
    shown.reverse();
    let mut last = shown.iter().map(|e| e.seq).max().unwrap_or(0);
    if !a.follow {
        for e in &shown {
            print_event(e, a.json);
        }
        store.close().await;
        return Ok(());
    }
    if shown.is_empty() {
        // Nothing matched: follow from what is there now.
        last = store
            .list_events(&EventFilter {
                limit: 1,
                ..Default::default()
            })
            .await?
            .first()
            .map_or(0, |e| e.seq);
    }
    for e in &shown {
        print_event(e, a.json);
    }
    filter.limit = 1000;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
        filter.after_seq = Some(last);
        for e in store.list_events(&filter).await? {
            last = last.max(e.seq);
            print_event(&e, a.json);
        }
        // Entries that no longer match the filter still move the mark.
        let newest = store
            .list_events(&EventFilter {
                limit: 1,
                ..Default::default()
            })
            .await?;
        last = last.max(newest.first().map_or(0, |e| e.seq));
    }
    store.close().await;
    Ok(())
}

fn print_event(e: &openturret_domain::model::EventEntry, json: bool) {
    use std::io::Write;
    let line = if json {
        crate::events::entry_json(e).to_string()
    } else {
        let times = if e.count > 1 {
            format!(" (×{} until {})", e.count, e.last_at.rfc3339())
        } else {
            String::new()
        };
        let props: Vec<String> = e
            .event
            .properties
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!(
            "{}  {:<7}  {}  {}{}  {}{}{}",
            e.first_at.rfc3339(),
            e.event.level.as_str().to_uppercase(),
            e.event.component,
            e.event.event_type,
            if e.event.object.is_empty() {
                String::new()
            } else {
                format!(" [{}]", e.event.object)
            },
            e.event.message,
            times,
            if props.is_empty() {
                String::new()
            } else {
                format!("  ({})", props.join(", "))
            }
        )
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// True when `dir` looks like a data directory.
pub fn is_data_dir(dir: &Path) -> bool {
    startup::has_database(dir)
}

/// The `turret backup` subcommands.
pub enum BackupArgs {
    /// `with_key`: sealed to the installation's backup key, no passphrase.
    Create {
        dir: Option<std::path::PathBuf>,
        with_key: bool,
    },
    /// Sets up (or replaces) the installation's backup key.
    Key,
    List {
        dir: Option<std::path::PathBuf>,
    },
    Verify {
        file: std::path::PathBuf,
    },
    Restore {
        file: std::path::PathBuf,
    },
}

fn read_passphrase() -> anyhow::Result<Secret> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .take(4096)
        .read_line(&mut line)
        .context("while reading the passphrase from standard input")?;
    let p = Secret::new(line.trim_end_matches(['\r', '\n']));
    crate::backup::check_passphrase(&p)?;
    Ok(p)
}

fn when(ms: i64) -> String {
    openturret_domain::Timestamp(ms).rfc3339()
}

pub async fn backup(config: &Config, args: BackupArgs) -> anyhow::Result<()> {
    match args {
        BackupArgs::Key => {
            let passphrase = read_passphrase()?;
            eprintln!("deriving the key from the passphrase (argon2id, about a second) ...");
            let k = crate::backup::set_key(&config.data_dir, passphrase).await?;
            let store = existing_store(config).await?;
            let mut r = record("backup.key_set", None, vec![]);
            r.object_type = "backup_key".into();
            r.object_id = Some(k.fingerprint());
            store.append_audit(r).await?;
            store.close().await;
            println!(
                "backup key {} set up: backups can now be taken without the passphrase \
                 (`turret backup create --with-key`, the API without one, scheduled backups); \
                 verifying or restoring one needs it",
                k.fingerprint()
            );
        }
        BackupArgs::Create { dir, with_key } => {
            let protect = if with_key {
                crate::backup::Protection::Key(crate::backup::load_key(&config.data_dir)?.context(
                    "no backup key is set up: run `turret backup key --passphrase-stdin` first",
                )?)
            } else {
                crate::backup::Protection::Passphrase(read_passphrase()?)
            };
            let store = existing_store(config).await?;
            let out_dir = dir.unwrap_or_else(|| crate::backup::backup_dir(config));
            eprintln!(
                "taking a snapshot and encrypting it into {} ...",
                out_dir.display()
            );
            let (path, m) =
                crate::backup::create(store.clone(), &config.data_dir, &out_dir, protect).await?;
            let mut r = record("backup.created", None, vec![]);
            r.object_type = "backup".into();
            store.append_audit(r).await?;
            store.close().await;
            println!(
                "backup written: {} ({} bytes of data, schema {})",
                path.display(),
                m.payload_len,
                m.schema_version
            );
        }
        BackupArgs::List { dir } => {
            let dir = dir.unwrap_or_else(|| crate::backup::backup_dir(config));
            let list = crate::backup::list(&dir)?;
            if list.is_empty() {
                println!("no backups in {}", dir.display());
            }
            for (p, m) in list {
                println!(
                    "{}  {}  {} bytes  schema {}",
                    when(m.created_at),
                    p.display(),
                    m.payload_len,
                    m.schema_version
                );
            }
        }
        BackupArgs::Verify { file } => {
            let passphrase = read_passphrase()?;
            let v = crate::backup::verify(&file, passphrase, config).await?;
            println!(
                "backup intact: taken {}, schema {}, database integrity {}, {} audit entries verified",
                when(v.manifest.created_at),
                v.manifest.schema_version,
                v.integrity,
                v.audit_entries
            );
        }
        BackupArgs::Restore { file } => {
            let passphrase = read_passphrase()?;
            let r = crate::backup::restore(&file, passphrase, config).await?;
            println!(
                "restored the backup taken {}; {} profile(s) erased since then were erased again",
                when(r.manifest.created_at),
                r.erased_again
            );
        }
    }
    Ok(())
}

/// The kind named on the command line, with its profile looked up by name.
async fn kind_of(
    store: &dyn openturret_store::Store,
    kind: &str,
    profile: Option<&str>,
) -> anyhow::Result<crate::transfer::Kind> {
    let pid = match profile {
        Some(name) => {
            let page = store
                .list_profiles(Some(name), openturret_store::ProfileSort::NameAsc, 1000, 0)
                .await?;
            let p = page
                .items
                .iter()
                .find(|p| p.name == name)
                .with_context(|| format!("no profile named {name}"))?;
            Some(p.id)
        }
        None => None,
    };
    crate::transfer::Kind::parse(kind, pid)
}

/// `turret import`: `Ok(false)` when the file had bad rows (nothing changed).
pub async fn import(
    config: &Config,
    kind: &str,
    profile: Option<&str>,
    file: &Path,
    format: Option<&str>,
    on_duplicate: &str,
) -> anyhow::Result<bool> {
    use crate::transfer::{Format, ImportError};
    let format = match format {
        Some(f) => Format::parse(f)?,
        None if file
            .extension()
            .is_some_and(|e| e == "json" || e == "jsonl" || e == "ndjson") =>
        {
            Format::JsonLines
        }
        None => Format::Csv,
    };
    let mode = match on_duplicate {
        "reject" => openturret_store::OnDuplicate::Reject,
        "update" => openturret_store::OnDuplicate::Update,
        other => bail!("--on-duplicate must be reject or update, not {other:?}"),
    };
    let size = std::fs::metadata(file)
        .with_context(|| format!("while opening {}", file.display()))?
        .len();
    let store = existing_store(config).await?;
    let kind = kind_of(store.as_ref(), kind, profile).await?;
    let bar = indicatif::ProgressBar::new(size);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} ({eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message("importing");
    let b2 = bar.clone();
    let (object_type, object_id) = kind.object();
    let mut r = record(&format!("{object_type}.imported"), object_id, vec![]);
    r.object_type = object_type.into();
    let plan = openturret_domain::number::NumberPlan {
        country_code: config.numbers.country_code.clone(),
    };
    let result = crate::transfer::import(
        store.as_ref(),
        &plan,
        kind,
        file,
        crate::transfer::ImportOptions { format, mode },
        r,
        move |n| b2.inc(n),
    )
    .await;
    bar.finish_and_clear();
    store.close().await;
    match result {
        Ok(c) => {
            println!(
                "imported {}: {} new, {} updated",
                file.display(),
                c.inserted,
                c.updated
            );
            Ok(true)
        }
        Err(e @ ImportError::Rows { .. }) => {
            eprint!("{e}");
            Ok(false)
        }
        Err(ImportError::Other(e)) => Err(e),
    }
}

/// `turret export`.
pub async fn export(
    config: &Config,
    kind: &str,
    profile: Option<&str>,
    format: &str,
    output: Option<&Path>,
) -> anyhow::Result<()> {
    let format = crate::transfer::Format::parse(format)?;
    let store = existing_store(config).await?;
    let kind = kind_of(store.as_ref(), kind, profile).await?;
    let n = match output {
        Some(p) => {
            let mut f = std::io::BufWriter::new(
                std::fs::File::create(p)
                    .with_context(|| format!("while creating {}", p.display()))?,
            );
            crate::transfer::export(store.as_ref(), kind, format, &mut f).await?
        }
        None => {
            let mut out = std::io::BufWriter::new(std::io::stdout());
            crate::transfer::export(store.as_ref(), kind, format, &mut out).await?
        }
    };
    let (object_type, object_id) = kind.object();
    let mut r = record(&format!("{object_type}.exported"), object_id, vec![]);
    r.object_type = object_type.into();
    store.append_audit(r).await?;
    store.close().await;
    eprintln!("exported {n} rows");
    Ok(())
}

/// Audits a CLI action on a component (`mlc.enrolled`, `mlc.revoked`).
pub async fn audit_component(config: &Config, event: &str, name: &str) -> anyhow::Result<()> {
    let store = existing_store(config).await?;
    let r = audit::local_record(event, "mlc", Some(name.to_string()), vec![]);
    let result = store.append_audit(r).await;
    store.close().await;
    result?;
    Ok(())
}
