//! Import and export (SPEC rule 9), starting with global contacts: CSV with
//! a header row (`name,number,field3,field4`; the last two optional) or
//! JSON lines (one object with the same keys per line). Both directions
//! stream: a million-row file never has to fit in memory.
//!
//! Import is all-or-nothing. A first pass reads the whole file and checks
//! every row (validation, duplicates within the file); any bad row and
//! nothing changes, and the report names each bad row's line, column and
//! reason. A second pass stages the rows in one transaction, where
//! duplicates of existing contacts are rejected or update them, as asked.

use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use anyhow::{Context, bail};
use openturret_domain::model::ContactFields;
use openturret_domain::number::NumberPlan;
use openturret_store::{AuditRecord, GlobalContactQuery, ImportCounts, OnDuplicate, Store};
use serde::{Deserialize, Serialize};

/// The two file formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    JsonLines,
}

impl Format {
    pub fn parse(s: &str) -> anyhow::Result<Format> {
        match s {
            "csv" => Ok(Format::Csv),
            "json" | "jsonl" | "ndjson" => Ok(Format::JsonLines),
            other => bail!("unknown format {other:?}: use csv or json"),
        }
    }
}

/// One bad row of an import.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RowError {
    pub line: u64,
    pub column: String,
    pub reason: String,
}

/// Why an import changed nothing.
#[derive(Debug)]
pub enum ImportError {
    /// Bad rows (at most [`MAX_REPORTED`] are listed; `more` counts the rest).
    Rows {
        errors: Vec<RowError>,
        more: u64,
    },
    Other(anyhow::Error),
}

impl From<anyhow::Error> for ImportError {
    fn from(e: anyhow::Error) -> Self {
        ImportError::Other(e)
    }
}

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImportError::Rows { errors, more } => {
                writeln!(
                    f,
                    "the import changed nothing: {} bad row(s)",
                    errors.len() as u64 + more
                )?;
                for e in errors {
                    writeln!(f, "  line {}, column {}: {}", e.line, e.column, e.reason)?;
                }
                if *more > 0 {
                    writeln!(f, "  … and {more} more")?;
                }
                Ok(())
            }
            ImportError::Other(e) => write!(f, "{e:#}"),
        }
    }
}

/// Most bad rows listed in a report.
pub const MAX_REPORTED: usize = 1000;
/// Rows handed to the store per batch: small, so the database starts
/// working as soon as the first rows are read.
const BATCH: usize = 2_000;

#[derive(Deserialize, Serialize)]
struct Row {
    name: String,
    number: String,
    #[serde(default)]
    field3: String,
    #[serde(default)]
    field4: String,
}

/// A row as read: its column names (one list shared by every row of a CSV
/// file) and its values in the same order.
struct Fields {
    names: std::sync::Arc<[String]>,
    values: csv::StringRecord,
}

/// Reads rows one at a time with their line numbers.
struct Rows<R: Read> {
    inner: RowsInner<R>,
    known: &'static [&'static str],
}

enum RowsInner<R: Read> {
    /// The reader, the column names, the longest row's bytes so far.
    Csv(csv::Reader<R>, std::sync::Arc<[String]>, usize),
    Json(std::io::Lines<BufReader<R>>, u64),
}

type RowResult = Result<(u64, Fields), RowError>;

impl<R: Read> Rows<R> {
    /// `required` columns must be present; others must be among `known`.
    fn new(
        r: R,
        format: Format,
        required: &[&str],
        known: &'static [&'static str],
    ) -> Result<Rows<R>, RowError> {
        let header_err = |reason: String| RowError {
            line: 1,
            column: "header".into(),
            reason,
        };
        match format {
            Format::Csv => {
                let mut rd = csv::ReaderBuilder::new()
                    .has_headers(true)
                    .flexible(false)
                    .from_reader(r);
                let headers = rd
                    .headers()
                    .map_err(|e| header_err(format!("unreadable header row: {e}")))?
                    .clone();
                for needed in required {
                    if !headers.iter().any(|h| h.trim() == *needed) {
                        return Err(header_err(format!(
                            "the header row must name the column {needed:?}"
                        )));
                    }
                }
                if let Some(extra) = headers.iter().find(|h| !known.contains(&h.trim())) {
                    return Err(header_err(format!(
                        "unknown column {extra:?} (known: {})",
                        known.join(", ")
                    )));
                }
                let names: std::sync::Arc<[String]> =
                    headers.iter().map(|h| h.trim().to_string()).collect();
                if let Some((i, twice)) = names
                    .iter()
                    .enumerate()
                    .find(|(i, n)| names[..*i].contains(n))
                {
                    return Err(header_err(format!(
                        "the column {twice:?} appears twice (columns {} and {})",
                        names.iter().position(|n| n == twice).unwrap_or(0) + 1,
                        i + 1
                    )));
                }
                Ok(Rows {
                    inner: RowsInner::Csv(rd, names, 0),
                    known,
                })
            }
            Format::JsonLines => Ok(Rows {
                inner: RowsInner::Json(BufReader::new(r).lines(), 0),
                known,
            }),
        }
    }
}

impl<R: Read> Iterator for Rows<R> {
    type Item = RowResult;

    fn next(&mut self) -> Option<RowResult> {
        let known = self.known;
        match &mut self.inner {
            RowsInner::Csv(rd, names, size) => {
                // Read into a record of the previous row's size: no
                // reallocation as the fields come in.
                let mut values = csv::StringRecord::with_capacity(*size, names.len());
                match rd.read_record(&mut values) {
                    Ok(false) => None,
                    Ok(true) => {
                        let line = values.position().map(|p| p.line()).unwrap_or(0);
                        // Cells we wrote with a `'` against formula
                        // injection come back as they were.
                        if values.iter().any(|c| c.starts_with('\'')) {
                            let mut plain = csv::StringRecord::with_capacity(*size, names.len());
                            for c in values.iter() {
                                plain.push_field(openturret_domain::cell::unescape(c));
                            }
                            plain.set_position(values.position().cloned());
                            values = plain;
                        }
                        *size = values.as_slice().len().max(*size);
                        let names = names.clone();
                        Some(Ok((line, Fields { names, values })))
                    }
                    Err(e) => {
                        let line = e.position().map(|p| p.line()).unwrap_or(0);
                        Some(Err(RowError {
                            line,
                            column: "row".into(),
                            reason: e.to_string(),
                        }))
                    }
                }
            }
            RowsInner::Json(lines, n) => loop {
                *n += 1;
                let line = match lines.next()? {
                    Ok(l) => l,
                    Err(e) => {
                        return Some(Err(RowError {
                            line: *n,
                            column: "row".into(),
                            reason: e.to_string(),
                        }));
                    }
                };
                if line.trim().is_empty() {
                    continue;
                }
                let bad = |reason: String| RowError {
                    line: *n,
                    column: "row".into(),
                    reason,
                };
                let obj: serde_json::Map<String, serde_json::Value> =
                    match serde_json::from_str(&line) {
                        Ok(o) => o,
                        Err(e) => return Some(Err(bad(e.to_string()))),
                    };
                let (mut names, mut values) = (Vec::new(), csv::StringRecord::new());
                for (k, v) in obj {
                    if !known.contains(&k.as_str()) {
                        return Some(Err(RowError {
                            line: *n,
                            column: k.clone(),
                            reason: format!("unknown key (known: {})", known.join(", ")),
                        }));
                    }
                    let text = match v {
                        serde_json::Value::String(t) => t,
                        serde_json::Value::Null => String::new(),
                        other => other.to_string(),
                    };
                    names.push(k);
                    values.push_field(&text);
                }
                let names = names.into();
                return Some(Ok((*n, Fields { names, values })));
            },
        }
    }
}

fn get<'a>(f: &'a Fields, k: &str) -> &'a str {
    let i = f.names.iter().position(|n| n == k);
    i.and_then(|i| f.values.get(i)).unwrap_or("")
}

const CONTACT_COLUMNS: &[&str] = &["name", "number", "field3", "field4"];

fn fields(row: &Fields) -> Result<ContactFields, (String, String)> {
    ContactFields::new(
        get(row, "name"),
        get(row, "number"),
        get(row, "field3"),
        get(row, "field4"),
    )
    .map_err(|e| (e.field, e.reason))
}

fn key_hash(plan: &NumberPlan, f: &ContactFields) -> u128 {
    let key = (f.name.to_lowercase(), plan.key(&f.number));
    let mut a = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut a);
    let mut b = std::collections::hash_map::DefaultHasher::new();
    ("salt", key).hash(&mut b);
    ((a.finish() as u128) << 64) | b.finish() as u128
}

/// Counts bytes read, for the progress bar.
struct Counting<R, F: FnMut(u64)> {
    inner: R,
    progress: F,
}

impl<R: Read, F: FnMut(u64)> Read for Counting<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.progress)(n as u64);
        Ok(n)
    }
}

/// Checks every row of `rows`: each bad one is reported (the first
/// `MAX_REPORTED`, then counted), and the good ones are handed to `good`
/// until the first bad one. Returns how many rows there were.
fn check_rows<R: Read>(
    rows: Rows<R>,
    plan: &NumberPlan,
    mut good: impl FnMut(u64, ContactFields) -> bool,
) -> Result<u64, ImportError> {
    // Each (name, number) key seen, with the line it was first seen on.
    let mut seen: std::collections::HashMap<u128, u64> = Default::default();
    let (mut errors, mut more, mut count) = (Vec::new(), 0u64, 0u64);
    for r in rows {
        let bad = match r {
            Err(e) => Some(e),
            Ok((line, row)) => match fields(&row) {
                Err((column, reason)) => Some(RowError {
                    line,
                    column,
                    reason,
                }),
                Ok(f) => {
                    let k = key_hash(plan, &f);
                    count += 1;
                    if let Some(&first) = seen.get(&k) {
                        Some(RowError {
                            line,
                            column: "number".into(),
                            reason: format!("repeats the name and number of line {first}"),
                        })
                    } else {
                        seen.insert(k, line);
                        if errors.is_empty() && !good(line, f) {
                            return Ok(count);
                        }
                        None
                    }
                }
            },
        };
        if let Some(e) = bad {
            if errors.len() < MAX_REPORTED {
                errors.push(e);
            } else {
                more += 1;
            }
        }
    }
    if errors.is_empty() {
        Ok(count)
    } else {
        Err(ImportError::Rows { errors, more })
    }
}

fn open_rows<R: Read>(reader: R, format: Format) -> Result<Rows<R>, ImportError> {
    Rows::new(reader, format, &["name", "number"], CONTACT_COLUMNS).map_err(|e| ImportError::Rows {
        errors: vec![e],
        more: 0,
    })
}

/// Every row of `path` checked, nothing written.
#[cfg(test)]
fn check(path: &Path, format: Format, plan: &NumberPlan) -> Result<u64, ImportError> {
    let file =
        std::fs::File::open(path).with_context(|| format!("while opening {}", path.display()))?;
    check_rows(open_rows(file, format)?, plan, |_, _| true)
}

/// Imports global contacts from `path` in one pass: a reader thread parses
/// and checks every row (reporting every bad one) and hands the good ones,
/// in batches, to the store's staging; after one bad row nothing more is
/// staged, and the transaction is dropped at the end, so nothing changes.
/// `progress` is told how many bytes of the file were read.
pub async fn import_global_contacts(
    store: &dyn Store,
    plan: &NumberPlan,
    path: &Path,
    format: Format,
    mode: OnDuplicate,
    audit: AuditRecord,
    mut progress: impl FnMut(u64) + Send + 'static,
) -> Result<ImportCounts, ImportError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<(u64, ContactFields)>>(4);
    let (plan2, path2) = (plan.clone(), path.to_path_buf());
    let reader = tokio::task::spawn_blocking(move || -> Result<u64, ImportError> {
        let file = std::fs::File::open(&path2)
            .with_context(|| format!("while opening {}", path2.display()))?;
        let counting = Counting {
            inner: file,
            progress: &mut progress,
        };
        let mut batch = Vec::with_capacity(BATCH);
        let mut open = true;
        let count = check_rows(open_rows(counting, format)?, &plan2, |line, f| {
            batch.push((line, f));
            if batch.len() == BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                open = tx.blocking_send(full).is_ok();
            }
            open
        })?;
        if !batch.is_empty() {
            let _ = tx.blocking_send(batch);
        }
        Ok(count)
    });
    let mut session = store
        .begin_global_import()
        .await
        .context("while starting the import")?;
    while let Some(batch) = rx.recv().await {
        session.add(batch).await.context("while staging rows")?;
    }
    // Bad rows: dropping the session rolls the staging back.
    reader.await.expect("reader does not panic")?;
    match session.commit(mode, audit).await.context("while applying the import")? {
        Ok(counts) => Ok(counts),
        Err(lines) => Err(ImportError::Rows {
            errors: lines
                .into_iter()
                .map(|line| RowError {
                    line,
                    column: "number".into(),
                    reason: "a global contact with this name and number exists (import with updates to change it)".into(),
                })
                .collect(),
            more: 0,
        }),
    }
}

/// Writes every global contact to `out`, a page at a time; returns how
/// many were written.
pub async fn export_global_contacts(
    store: &dyn Store,
    format: Format,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<u64> {
    let mut q = GlobalContactQuery {
        limit: 10_000,
        ..Default::default()
    };
    let mut n = 0u64;
    if format == Format::Csv {
        out.write_all(b"name,number,field3,field4\n")?;
    }
    loop {
        let page = store.search_global_contacts(&q).await?;
        let mut buf = Vec::with_capacity(page.len() * 64);
        if format == Format::Csv {
            let mut w = csv::WriterBuilder::new()
                .has_headers(false)
                .from_writer(&mut buf);
            for c in &page {
                for v in [
                    &c.fields.name,
                    &c.fields.number,
                    &c.fields.field3,
                    &c.fields.field4,
                ] {
                    w.write_field(openturret_domain::cell::escape(v).as_bytes())?;
                }
                w.write_record(None::<&[u8]>)?;
            }
            w.flush()?;
        } else {
            for c in &page {
                let row = Row {
                    name: c.fields.name.clone(),
                    number: c.fields.number.clone(),
                    field3: c.fields.field3.clone(),
                    field4: c.fields.field4.clone(),
                };
                serde_json::to_writer(&mut buf, &row)?;
                buf.push(b'\n');
            }
        }
        out.write_all(&buf)?;
        n += page.len() as u64;
        match page.last() {
            Some(last) if page.len() as i64 == q.limit => q.after = Some(last.id),
            _ => break,
        }
    }
    out.flush()?;
    Ok(n)
}

mod kinds;
pub use kinds::*;

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> std::path::PathBuf {
        let p = dir.join("in.csv");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn every_bad_row_is_named_with_line_column_and_reason() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "name,number,field3\nAnn,+44 20 1,desk\n,123,\nBob,call me,\nAnn,+44 20 1,again\n",
        );
        let Err(ImportError::Rows { errors, more }) =
            check(&p, Format::Csv, &NumberPlan::default())
        else {
            panic!("expected row errors")
        };
        assert_eq!(more, 0);
        let got: Vec<(u64, &str)> = errors.iter().map(|e| (e.line, e.column.as_str())).collect();
        assert_eq!(got, [(3, "name"), (4, "number"), (5, "number")]);
        assert!(errors[2].reason.contains("line 2"), "{:?}", errors[2]);
    }

    #[test]
    fn headers_are_required_and_checked() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "Ann,+44 20 1\n");
        let Err(ImportError::Rows { errors, .. }) = check(&p, Format::Csv, &NumberPlan::default())
        else {
            panic!()
        };
        assert_eq!((errors[0].line, errors[0].column.as_str()), (1, "header"));
        let p = write(d.path(), "name,number,colour\nAnn,1,red\n");
        assert!(check(&p, Format::Csv, &NumberPlan::default()).is_err());
        // A column twice would leave one of its values unread.
        let p = write(d.path(), "name,number,name\nAnn,1,Bob\n");
        let Err(ImportError::Rows { errors, .. }) = check(&p, Format::Csv, &NumberPlan::default())
        else {
            panic!()
        };
        assert_eq!((errors[0].line, errors[0].column.as_str()), (1, "header"));
        assert!(
            errors[0]
                .reason
                .contains("\"name\" appears twice (columns 1 and 3)"),
            "{}",
            errors[0].reason
        );
    }

    #[test]
    fn json_lines_are_read_with_their_line_numbers() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("in.jsonl");
        std::fs::write(
            &p,
            "{\"name\":\"Ann\",\"number\":\"1\"}\n\n{\"name\":\"Bob\"}\n",
        )
        .unwrap();
        let Err(ImportError::Rows { errors, .. }) =
            check(&p, Format::JsonLines, &NumberPlan::default())
        else {
            panic!()
        };
        assert_eq!(errors[0].line, 3);
        assert_eq!(errors[0].column, "number");
    }
}
