//! Call data record output (SPEC §2, rule 11; issue 7).
//!
//! When a call ends, the MLC's record writer hands its CDR here. If the
//! administrator switched CDRs on, the record is cut to the enabled fields
//! (a switched-off field is never stored or sent), kept in the database
//! (if chosen), published on the CTI stream as a `cdr` event for keys with
//! CDR access to its line, and appended to rolling files (CSV and/or JSON
//! lines) in `cdr.dir` for offline pick-up. Numbers are pseudonymised in
//! all three outputs when that option is on.
//!
//! The files belong to one task ([`Files`]): the file being written is
//! `<name>.part` and is renamed to `<name>` when it rolls (after
//! `cdr.roll_minutes` or `cdr.roll_mib`), so a pick-up job takes only whole
//! files. A `.part` left by a crash is cut back to its last whole line and
//! closed at the next start. Retention deletes closed files older than the
//! CDR limit, and erasing a profile removes its name from every file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use openturret_domain::Timestamp;
use openturret_domain::model::{Cdr, CdrField, CdrFields, CdrFiles, Event};
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::App;
use crate::config::CdrConfig;

/// A CDR as the stream, the files and the API show it: its id and line,
/// then exactly the enabled fields (a field with no value is `null`).
pub fn json(app: &App, c: &Cdr, fields: CdrFields) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(c.id.map(|i| i.0)));
    m.insert("line_id".into(), json!(c.line_id.map(|l| l.0)));
    let number = |n: &Option<String>| json!(n.as_deref().map(|n| app.pseudo.apply(n)));
    for f in fields.iter() {
        let v = match f {
            CdrField::ProfileName => json!(c.profile_name),
            CdrField::AttendantGroup => json!(c.attendant_group),
            CdrField::CalledNumber => number(&c.called_number),
            CdrField::CallingNumber => number(&c.calling_number),
            CdrField::Duration => json!(c.duration_ms),
            CdrField::CallType => json!(c.call_type.map(|t| t.as_str())),
            CdrField::Direction => json!(c.direction.map(|d| d.as_str())),
            CdrField::StartedAt => json!(c.started_at.map(Timestamp::rfc3339)),
            CdrField::EndedAt => json!(c.ended_at.map(Timestamp::rfc3339)),
        };
        m.insert(f.as_str().into(), v);
    }
    Value::Object(m)
}

/// Produces the CDRs of ended calls, as the settings say.
pub async fn produce(app: &App, cdrs: Vec<Cdr>) {
    match app.store.get_settings().await {
        Ok(s) => produce_with(app, &s, cdrs).await,
        Err(e) => {
            tracing::error!(error = %e, records = cdrs.len(), "call data records not produced: settings unreadable")
        }
    }
}

/// [`produce`], with the settings already read.
pub async fn produce_with(app: &App, s: &openturret_domain::model::Settings, mut cdrs: Vec<Cdr>) {
    if !s.cdr_enabled || cdrs.is_empty() {
        return;
    }
    for c in &mut cdrs {
        c.keep_only(s.cdr_fields);
    }
    if s.cdr_store {
        match app.store.insert_cdrs(cdrs.clone()).await {
            Ok(ids) => {
                for (c, id) in cdrs.iter_mut().zip(ids) {
                    c.id = Some(id);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, records = cdrs.len(), "call data records not stored");
                app.events.raise(
                    Event::error(
                        "cdr.store_failed",
                        "cdr",
                        "call data records could not be stored in the database",
                    )
                    .with("records", cdrs.len()),
                );
            }
        }
    }
    let rows: Vec<Value> = cdrs.iter().map(|c| json(app, c, s.cdr_fields)).collect();
    for (c, row) in cdrs.iter().zip(&rows) {
        app.cti.publish("cdr", c.line_id, row.clone());
    }
    app.cdr.write(s.cdr_fields, s.cdr_files, rows).await;
}

enum Cmd {
    Write {
        fields: CdrFields,
        files: CdrFiles,
        rows: Vec<Value>,
        done: oneshot::Sender<()>,
    },
    Scrub(String, oneshot::Sender<std::io::Result<usize>>),
    Purge(SystemTime, oneshot::Sender<std::io::Result<usize>>),
    Close(oneshot::Sender<()>),
}

/// The rolling CDR files: a handle to the task that owns them.
pub struct Files {
    tx: mpsc::Sender<Cmd>,
    dir: PathBuf,
}

impl Files {
    /// Starts the task (needs a Tokio runtime). Nothing is created on disk
    /// until the first file is written.
    pub fn start(
        config: &CdrConfig,
        data_dir: &Path,
        events: std::sync::Arc<crate::events::EventLog>,
    ) -> Files {
        let dir = config.dir.clone().unwrap_or_else(|| data_dir.join("cdr"));
        let (tx, rx) = mpsc::channel(256);
        let w = Writer {
            dir: dir.clone(),
            roll_after: Duration::from_secs(config.roll_minutes.max(1) * 60),
            roll_bytes: config.roll_mib.max(1) * 1024 * 1024,
            open: [None, None],
            events,
        };
        tokio::spawn(w.run(rx));
        Files { tx, dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    async fn ask<T>(&self, cmd: impl FnOnce(oneshot::Sender<T>) -> Cmd) -> Option<T> {
        let (done, rx) = oneshot::channel();
        self.tx.send(cmd(done)).await.ok()?;
        rx.await.ok()
    }

    /// Appends rows (closing any open file of a kind switched off);
    /// returns once they are written.
    pub async fn write(&self, fields: CdrFields, files: CdrFiles, rows: Vec<Value>) {
        self.ask(|done| Cmd::Write {
            fields,
            files,
            rows,
            done,
        })
        .await;
    }

    /// Removes `name` from the profile-name column of every file; returns
    /// how many records named it.
    pub async fn scrub_profile_name(&self, name: &str) -> std::io::Result<usize> {
        self.ask(|d| Cmd::Scrub(name.to_string(), d))
            .await
            .unwrap_or(Ok(0))
    }

    /// Deletes the closed files last written before `cutoff`.
    pub async fn purge_before(&self, cutoff: SystemTime) -> std::io::Result<usize> {
        self.ask(|d| Cmd::Purge(cutoff, d)).await.unwrap_or(Ok(0))
    }

    /// Closes the open files (at shutdown).
    pub async fn close(&self) {
        self.ask(Cmd::Close).await;
    }

    /// The closed and open files, oldest first.
    pub fn list(&self) -> Vec<PathBuf> {
        list(&self.dir)
    }
}

/// Removes an erased profile's name from this node's CDR files.
pub async fn scrub_name(app: &App, name: &str) {
    match app.cdr.scrub_profile_name(name).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(records = n, "erased profile's name removed from CDR files"),
        Err(e) => tracing::error!(error = %e, dir = %app.cdr.dir().display(),
            "erased profile's name not removed from CDR files"),
    }
}

/// On a shared database, at start: removes from this node's CDR files the
/// names of profiles erased while it was not listening (the deployment's
/// ledger keeps a mark of each erased name). In the background; a failure
/// is logged.
pub fn scrub_erased_at_start(app: &App) {
    if !app.store.is_shared() {
        return;
    }
    let app = app.clone();
    tokio::spawn(async move {
        let dir = app.cdr.dir().to_path_buf();
        let names = match tokio::task::spawn_blocking(move || names_in(&dir)).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "the CDR files could not be read for erased names");
                return;
            }
            Err(_) => return,
        };
        match app.store.erased_among(&names).await {
            Ok(erased) => {
                for name in erased {
                    scrub_name(&app, &name).await;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "erased names not looked up for the CDR files")
            }
        }
    });
}

/// The distinct profile names in the closed CDR files of `dir`.
fn names_in(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names = std::collections::BTreeSet::new();
    for p in list(dir) {
        match p.extension().and_then(|e| e.to_str()) {
            Some("jsonl") => {
                for line in std::fs::read_to_string(&p)?.lines() {
                    if let Ok(v) = serde_json::from_str::<Value>(line)
                        && let Some(n) = v["profile_name"].as_str()
                        && !n.is_empty()
                    {
                        names.insert(n.to_string());
                    }
                }
            }
            Some("csv") => {
                let mut r = csv::ReaderBuilder::new()
                    .from_path(&p)
                    .map_err(std::io::Error::other)?;
                let Some(col) = r
                    .headers()
                    .map_err(std::io::Error::other)?
                    .iter()
                    .position(|h| h == "profile_name")
                else {
                    continue;
                };
                for rec in r.records() {
                    let rec = rec.map_err(std::io::Error::other)?;
                    if let Some(n) = rec.get(col).filter(|n| !n.is_empty()) {
                        names.insert(openturret_domain::cell::unescape(n).to_string());
                    }
                }
            }
            _ => {}
        }
    }
    Ok(names.into_iter().collect())
}

/// The topic of the notes telling the other nodes of one database to
/// remove an erased profile's name from their own CDR files.
pub const TOPIC: &str = "cdr-scrub";

fn list(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("cdr-"))
        })
        .collect();
    v.sort();
    v
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Csv = 0,
    Jsonl = 1,
}

impl Kind {
    fn ext(self) -> &'static str {
        match self {
            Kind::Csv => "csv",
            Kind::Jsonl => "jsonl",
        }
    }
}

struct Open {
    part: PathBuf,
    file: std::fs::File,
    opened: SystemTime,
    bytes: u64,
    fields: CdrFields,
}

struct Writer {
    dir: PathBuf,
    roll_after: Duration,
    roll_bytes: u64,
    open: [Option<Open>; 2],
    events: std::sync::Arc<crate::events::EventLog>,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        // Finish what a crash left open.
        let dir = self.dir.clone();
        let _ = tokio::task::spawn_blocking(move || recover(&dir)).await;
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tokio::select! {
                cmd = rx.recv() => {
                    let Some(cmd) = cmd else { break };
                    let close = matches!(cmd, Cmd::Close(_));
                    // Files are small appends and renames: done in place, on
                    // a blocking thread.
                    self = tokio::task::spawn_blocking(move || { self.handle(cmd); self })
                        .await
                        .expect("CDR writer does not panic");
                    if close {
                        break;
                    }
                }
                _ = tick.tick() => {
                    self = tokio::task::spawn_blocking(move || { self.roll_aged(); self })
                        .await
                        .expect("CDR writer does not panic");
                }
            }
        }
    }

    fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Write {
                fields,
                files,
                rows,
                done,
            } => {
                for (kind, on) in [(Kind::Csv, files.csv()), (Kind::Jsonl, files.jsonl())] {
                    if !on {
                        self.close(kind);
                    } else if let Err(e) = self.append(kind, fields, &rows) {
                        tracing::error!(error = %e, dir = %self.dir.display(), kind = kind.ext(),
                            records = rows.len(), "CDR file not written");
                        self.events.raise(
                            Event::error(
                                "cdr.write_failed",
                                format!("cdr_files:{}", kind.ext()),
                                format!(
                                    "call data records could not be written to {}: {e}",
                                    self.dir.display()
                                ),
                            )
                            .with("records", rows.len()),
                        );
                    }
                }
                let _ = done.send(());
            }
            Cmd::Scrub(name, done) => {
                self.close(Kind::Csv);
                self.close(Kind::Jsonl);
                let _ = done.send(scrub(&self.dir, &name));
            }
            Cmd::Purge(cutoff, done) => {
                self.roll_aged();
                let _ = done.send(purge(&self.dir, cutoff));
            }
            Cmd::Close(done) => {
                self.close(Kind::Csv);
                self.close(Kind::Jsonl);
                let _ = done.send(());
            }
        }
    }

    fn append(&mut self, kind: Kind, fields: CdrFields, rows: &[Value]) -> std::io::Result<()> {
        let stale = self.open[kind as usize].as_ref().is_some_and(|o| {
            o.fields != fields
                || o.bytes >= self.roll_bytes
                || o.opened.elapsed().unwrap_or_default() >= self.roll_after
        });
        if stale {
            self.close(kind);
        }
        if self.open[kind as usize].is_none() {
            self.open[kind as usize] = Some(self.create(kind, fields)?);
        }
        let o = self.open[kind as usize].as_mut().expect("opened above");
        let mut buf = String::new();
        for r in rows {
            match kind {
                Kind::Csv => csv_line(&mut buf, r, fields),
                Kind::Jsonl => {
                    buf.push_str(&r.to_string());
                    buf.push('\n');
                }
            }
        }
        o.file.write_all(buf.as_bytes())?;
        o.file.sync_data()?;
        o.bytes += buf.len() as u64;
        Ok(())
    }

    fn create(&self, kind: Kind, fields: CdrFields) -> std::io::Result<Open> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        let stamp: String = Timestamp::rfc3339(Timestamp::now())
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        let mut n = 0;
        let (part, file) = loop {
            let name = if n == 0 {
                format!("cdr-{stamp}.{}", kind.ext())
            } else {
                format!("cdr-{stamp}-{n}.{}", kind.ext())
            };
            let part = self.dir.join(format!("{name}.part"));
            if !self.dir.join(&name).exists() {
                match std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&part)
                {
                    Ok(f) => break (part, f),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
            }
            n += 1;
        };
        let mut o = Open {
            part,
            file,
            opened: SystemTime::now(),
            bytes: 0,
            fields,
        };
        if kind == Kind::Csv {
            let mut header = String::from("id,line_id");
            for f in fields.iter() {
                header.push(',');
                header.push_str(f.as_str());
            }
            header.push('\n');
            o.file.write_all(header.as_bytes())?;
            o.bytes = header.len() as u64;
        }
        Ok(o)
    }

    fn close(&mut self, kind: Kind) {
        if let Some(o) = self.open[kind as usize].take()
            && let Err(e) = std::fs::rename(&o.part, o.part.with_extension(""))
        {
            tracing::error!(error = %e, file = %o.part.display(), "CDR file not closed");
        }
    }

    fn roll_aged(&mut self) {
        for kind in [Kind::Csv, Kind::Jsonl] {
            if self.open[kind as usize]
                .as_ref()
                .is_some_and(|o| o.opened.elapsed().unwrap_or_default() >= self.roll_after)
            {
                self.close(kind);
            }
        }
    }
}

fn csv_field(buf: &mut String, v: &Value) {
    let s = match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    let s = openturret_domain::cell::escape(&s);
    if s.contains([',', '"', '\n', '\r']) {
        buf.push('"');
        buf.push_str(&s.replace('"', "\"\""));
        buf.push('"');
    } else {
        buf.push_str(&s);
    }
}

fn csv_line(buf: &mut String, row: &Value, fields: CdrFields) {
    csv_field(buf, &row["id"]);
    buf.push(',');
    csv_field(buf, &row["line_id"]);
    for f in fields.iter() {
        buf.push(',');
        csv_field(buf, &row[f.as_str()]);
    }
    buf.push('\n');
}

/// Closes the `.part` files a crash left, cut back to their last whole line.
fn recover(dir: &Path) {
    for p in list(dir) {
        if p.extension().and_then(|e| e.to_str()) != Some("part") {
            continue;
        }
        let done = (|| -> std::io::Result<()> {
            let data = std::fs::read(&p)?;
            let keep = data.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            if keep < data.len() {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&p)?
                    .set_len(keep as u64)?;
            }
            std::fs::rename(&p, p.with_extension(""))
        })();
        if let Err(e) = done {
            tracing::error!(error = %e, file = %p.display(), "CDR file left by a crash not closed");
        }
    }
}

fn purge(dir: &Path, cutoff: SystemTime) -> std::io::Result<usize> {
    let mut n = 0;
    for p in list(dir) {
        if p.extension().and_then(|e| e.to_str()) == Some("part") {
            continue;
        }
        if std::fs::metadata(&p)?.modified()? < cutoff {
            std::fs::remove_file(&p)?;
            n += 1;
        }
    }
    Ok(n)
}

/// Rewrites every closed file that names `name`, with the name removed
/// (written aside, synced, then renamed over the old file).
fn scrub(dir: &Path, name: &str) -> std::io::Result<usize> {
    let mut count = 0;
    for p in list(dir) {
        let ext = p.extension().and_then(|e| e.to_str());
        let text = std::fs::read_to_string(&p)?;
        let (out, n) = match ext {
            Some("csv") => scrub_csv(&text, name)?,
            Some("jsonl") => scrub_jsonl(&text, name),
            _ => continue,
        };
        if n == 0 {
            continue;
        }
        count += n;
        let tmp = p.with_extension("scrub");
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(out.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &p)?;
    }
    Ok(count)
}

fn scrub_jsonl(text: &str, name: &str) -> (String, usize) {
    let mut out = String::with_capacity(text.len());
    let mut n = 0;
    for line in text.lines() {
        match serde_json::from_str::<Value>(line) {
            Ok(mut v) if v["profile_name"].as_str() == Some(name) => {
                v["profile_name"] = Value::Null;
                out.push_str(&v.to_string());
                n += 1;
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    (out, n)
}

fn scrub_csv(text: &str, name: &str) -> std::io::Result<(String, usize)> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes());
    let mut rows = r.records();
    let Some(header) = rows.next().transpose().map_err(std::io::Error::other)? else {
        return Ok((text.to_string(), 0));
    };
    let Some(col) = header.iter().position(|h| h == "profile_name") else {
        return Ok((text.to_string(), 0));
    };
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    w.write_record(&header).map_err(std::io::Error::other)?;
    let mut n = 0;
    for rec in rows {
        let rec = rec.map_err(std::io::Error::other)?;
        let mut fields: Vec<&str> = rec.iter().collect();
        if fields.get(col) == Some(&&*openturret_domain::cell::escape(name)) {
            fields[col] = "";
            n += 1;
        }
        w.write_record(&fields).map_err(std::io::Error::other)?;
    }
    let out = String::from_utf8(w.into_inner().map_err(std::io::Error::other)?)
        .map_err(std::io::Error::other)?;
    Ok((out, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_scrub_removes_only_the_name() {
        let text = "id,line_id,profile_name,called_number\n1,2,Ann Lee,+4930\n2,2,\"Lee, Ann\",+4931\n3,2,Bob,+4932\n";
        let (out, n) = scrub_csv(text, "Lee, Ann").unwrap();
        assert_eq!(n, 1);
        assert_eq!(
            out,
            "id,line_id,profile_name,called_number\n1,2,Ann Lee,+4930\n2,2,,+4931\n3,2,Bob,+4932\n"
        );
    }

    #[test]
    fn csv_line_quotes_what_needs_it() {
        let mut b = String::new();
        let fields = CdrFields::none()
            .with(CdrField::ProfileName)
            .with(CdrField::Duration);
        csv_line(
            &mut b,
            &json!({"id": 7, "line_id": null, "profile_name": "Lee, \"Ann\"", "duration_ms": 1500}),
            fields,
        );
        assert_eq!(b, "7,,\"Lee, \"\"Ann\"\"\",1500\n");
    }

    #[test]
    fn csv_cells_that_spreadsheets_would_run_are_escaped() {
        let mut b = String::new();
        let fields = CdrFields::none()
            .with(CdrField::CallingNumber)
            .with(CdrField::ProfileName);
        csv_line(
            &mut b,
            &json!({"id": 8, "line_id": 2, "calling_number": "+44 20 7946 0000",
                    "profile_name": "=HYPERLINK(\"x\")"}),
            fields,
        );
        assert_eq!(b, "8,2,\"'=HYPERLINK(\"\"x\"\")\",'+44 20 7946 0000\n");
        // An erased profile's name is found in its escaped form.
        let (out, n) = scrub_csv(
            &format!("id,line_id,profile_name,calling_number\n{b}"),
            "=HYPERLINK(\"x\")",
        )
        .unwrap();
        assert_eq!(n, 1);
        assert!(!out.contains("HYPERLINK"), "{out}");
    }

    #[test]
    fn jsonl_scrub_nulls_the_name() {
        let (out, n) = scrub_jsonl(
            "{\"id\":1,\"profile_name\":\"Ann\"}\n{\"id\":2,\"profile_name\":\"Bob\"}\n",
            "Ann",
        );
        assert_eq!(n, 1);
        assert!(out.starts_with("{\"id\":1,\"profile_name\":null}\n"));
        assert!(out.contains("Bob"));
    }
}
