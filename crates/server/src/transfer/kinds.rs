//! Import and export of the smaller lists: a profile's local contacts and
//! DKM keys, and lines. Read in one pass (they are small), checked row by
//! row like global contacts, and applied in one transaction.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use openturret_domain::model::ContactFields;
use openturret_domain::number::NumberPlan;
use openturret_store::{AuditRecord, ImportCounts, OnDuplicate, Store};

use super::{
    CONTACT_COLUMNS, Fields, Format, ImportError, MAX_REPORTED, RowError, Rows,
    export_global_contacts, fields, get, import_global_contacts,
};

/// What can be imported and exported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    GlobalContacts,
    /// A profile's local contacts.
    LocalContacts(openturret_domain::ProfileId),
    /// A profile's DKM speed dial keys (position, name, number).
    DkmKeys(openturret_domain::ProfileId),
    /// Lines; a password column is accepted on import (encrypted at once)
    /// and never written on export.
    Lines,
}

const KEY_COLUMNS: &[&str] = &["position", "name", "number"];
const LINE_COLUMNS: &[&str] = &[
    "name",
    "uri",
    "username",
    "password",
    "display_name",
    "alternate_text",
    "preferred_identity",
    "answer_mode",
    "peers",
    "priority",
    "recorded",
];
const LINE_EXPORT: &[&str] = &[
    "name",
    "uri",
    "username",
    "display_name",
    "alternate_text",
    "preferred_identity",
    "answer_mode",
    "peers",
    "priority",
    "recorded",
];

impl Kind {
    /// `global-contacts`, `local-contacts`, `dkm-keys` or `lines`; the
    /// profile ones need `profile`.
    pub fn parse(
        name: &str,
        profile: Option<openturret_domain::ProfileId>,
    ) -> anyhow::Result<Kind> {
        let need = || profile.context("this kind belongs to a profile: name it");
        Ok(match name {
            "global-contacts" => Kind::GlobalContacts,
            "local-contacts" => Kind::LocalContacts(need()?),
            "dkm-keys" => Kind::DkmKeys(need()?),
            "lines" => Kind::Lines,
            other => bail!(
                "unknown kind {other:?}: use global-contacts, local-contacts, dkm-keys or lines"
            ),
        })
    }

    /// The audit object of an import or export.
    pub fn object(&self) -> (&'static str, Option<String>) {
        match self {
            Kind::GlobalContacts => ("global_contact", None),
            Kind::LocalContacts(p) => ("local_contact", Some(format!("{p}/"))),
            Kind::DkmKeys(p) => ("speed_dial", Some(format!("{p}/"))),
            Kind::Lines => ("line", None),
        }
    }

    pub fn file_stem(&self) -> &'static str {
        match self {
            Kind::GlobalContacts => "global-contacts",
            Kind::LocalContacts(_) => "local-contacts",
            Kind::DkmKeys(_) => "dkm-keys",
            Kind::Lines => "lines",
        }
    }
}

enum Parsed {
    Contact(ContactFields),
    Key(openturret_domain::model::SpeedDialFields),
    Line(
        openturret_domain::model::LineFields,
        Option<openturret_domain::secret::Secret>,
    ),
}

fn parse_row(kind: Kind, row: &Fields) -> Result<Parsed, (String, String)> {
    let v = |e: openturret_domain::ValidationError| (e.field, e.reason);
    match kind {
        Kind::GlobalContacts | Kind::LocalContacts(_) => fields(row).map(Parsed::Contact),
        Kind::DkmKeys(_) => {
            let pos: i64 = get(row, "position")
                .trim()
                .parse()
                .map_err(|_| ("position".to_string(), "must be a whole number".to_string()))?;
            openturret_domain::model::SpeedDialFields::new(
                "DKM",
                pos,
                get(row, "name"),
                get(row, "number"),
            )
            .map(Parsed::Key)
            .map_err(v)
        }
        Kind::Lines => {
            let f = openturret_domain::model::LineFields::new(
                get(row, "name"),
                get(row, "uri"),
                get(row, "username"),
                get(row, "display_name"),
                get(row, "alternate_text"),
                get(row, "preferred_identity"),
            )
            .and_then(|f| {
                f.with_answer_mode(openturret_domain::model::AnswerMode::parse(get(
                    row,
                    "answer_mode",
                ))?)
                .with_peers(get(row, "peers"))
                .and_then(|f| {
                    Ok(f.with_priority(openturret_domain::model::flag(
                        "priority",
                        get(row, "priority"),
                    )?)
                    .with_recorded(openturret_domain::model::flag(
                        "recorded",
                        get(row, "recorded"),
                    )?))
                })
            })
            .map_err(v)?;
            let pw = Some(get(row, "password"))
                .filter(|p| !p.is_empty())
                .map(openturret_domain::secret::Secret::new);
            Ok(Parsed::Line(f, pw))
        }
    }
}

/// The duplicate key of a parsed row, and the column it is reported on.
fn dup_key(plan: &NumberPlan, p: &Parsed) -> (String, &'static str) {
    match p {
        Parsed::Contact(f) => (
            format!("{}\u{0}{}", f.name.to_lowercase(), plan.key(&f.number)),
            "number",
        ),
        Parsed::Key(k) => (k.position.to_string(), "position"),
        Parsed::Line(f, _) => (f.name.clone(), "name"),
    }
}

/// How to read an import file and treat its duplicates.
#[derive(Clone, Copy, Debug)]
pub struct ImportOptions {
    pub format: Format,
    pub mode: OnDuplicate,
}

/// Rows read and checked, and the column duplicates are reported on.
type Checked = (Vec<(u64, Parsed)>, &'static str);

/// Imports `path` as `kind`: all or nothing, every bad row named.
pub async fn import(
    store: &dyn Store,
    plan: &NumberPlan,
    kind: Kind,
    path: &Path,
    ImportOptions { format, mode }: ImportOptions,
    audit: AuditRecord,
    progress: impl FnMut(u64) + Send + 'static,
) -> Result<ImportCounts, ImportError> {
    if kind == Kind::GlobalContacts {
        return import_global_contacts(store, plan, path, format, mode, audit, progress).await;
    }
    // Per-profile lists and lines are small: one pass, rows kept.
    let (p, plan2, k) = (path.to_path_buf(), plan.clone(), kind);
    let (rows, column) = tokio::task::spawn_blocking(move || -> Result<Checked, ImportError> {
        let file =
            std::fs::File::open(&p).with_context(|| format!("while opening {}", p.display()))?;
        let (required, known): (&[&str], &'static [&'static str]) = match k {
            Kind::DkmKeys(_) => (&["position", "name", "number"], KEY_COLUMNS),
            Kind::Lines => (&["name", "uri"], LINE_COLUMNS),
            _ => (&["name", "number"], CONTACT_COLUMNS),
        };
        let reader = Rows::new(file, format, required, known).map_err(|e| ImportError::Rows {
            errors: vec![e],
            more: 0,
        })?;
        let (mut rows, mut errors, mut seen) =
            (Vec::new(), Vec::new(), std::collections::HashMap::new());
        let mut column = "name";
        for r in reader {
            match r {
                Err(e) => errors.push(e),
                Ok((line, f)) => match parse_row(k, &f) {
                    Err((column, reason)) => errors.push(RowError {
                        line,
                        column,
                        reason,
                    }),
                    Ok(parsed) => {
                        let (key, col) = dup_key(&plan2, &parsed);
                        column = col;
                        if let Some(first) = seen.insert(key, line) {
                            errors.push(RowError {
                                line,
                                column: col.into(),
                                reason: format!("repeats line {first}"),
                            });
                        }
                        rows.push((line, parsed));
                    }
                },
            }
        }
        if !errors.is_empty() {
            let more = errors.len().saturating_sub(MAX_REPORTED) as u64;
            errors.truncate(MAX_REPORTED);
            return Err(ImportError::Rows { errors, more });
        }
        Ok((rows, column))
    })
    .await
    .expect("reading does not panic")?;
    let outcome = match kind {
        Kind::LocalContacts(pid) => {
            let rows = rows
                .into_iter()
                .filter_map(|(l, p)| {
                    if let Parsed::Contact(f) = p {
                        Some((l, f))
                    } else {
                        None
                    }
                })
                .collect();
            store.import_local_contacts(pid, rows, mode, audit).await
        }
        Kind::DkmKeys(pid) => {
            let rows = rows
                .into_iter()
                .filter_map(|(l, p)| {
                    if let Parsed::Key(f) = p {
                        Some((l, f))
                    } else {
                        None
                    }
                })
                .collect();
            store.import_speed_dials(pid, rows, mode, audit).await
        }
        Kind::Lines => {
            let rows = rows
                .into_iter()
                .filter_map(|(l, p)| {
                    if let Parsed::Line(f, pw) = p {
                        Some((l, f, pw))
                    } else {
                        None
                    }
                })
                .collect();
            store.import_lines(rows, mode, audit).await
        }
        Kind::GlobalContacts => unreachable!("handled above"),
    }
    .map_err(|e| ImportError::Other(e.into()))?;
    outcome.map_err(|lines| ImportError::Rows {
        errors: lines
            .into_iter()
            .map(|line| RowError {
                line,
                column: column.into(),
                reason: "matches an existing entry (import with updates to change it)".into(),
            })
            .collect(),
        more: 0,
    })
}

fn write_rows(
    format: Format,
    headers: &[&str],
    rows: &[Vec<String>],
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    match format {
        Format::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(headers)?;
            for r in rows {
                for c in r {
                    w.write_field(openturret_domain::cell::escape(c).as_bytes())?;
                }
                w.write_record(None::<&[u8]>)?;
            }
            out.write_all(&w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?)?;
        }
        Format::JsonLines => {
            for r in rows {
                let obj: serde_json::Map<String, serde_json::Value> = headers
                    .iter()
                    .zip(r)
                    .map(|(h, v)| (h.to_string(), serde_json::Value::String(v.clone())))
                    .collect();
                serde_json::to_writer(&mut *out, &obj)?;
                out.write_all(b"\n")?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// Exports `kind`; returns how many rows were written.
pub async fn export(
    store: &dyn Store,
    kind: Kind,
    format: Format,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<u64> {
    let (headers, rows): (&[&str], Vec<Vec<String>>) = match kind {
        Kind::GlobalContacts => return export_global_contacts(store, format, out).await,
        Kind::LocalContacts(pid) => (
            CONTACT_COLUMNS,
            store
                .list_local_contacts(pid)
                .await?
                .into_iter()
                .map(|c| {
                    vec![
                        c.fields.name,
                        c.fields.number,
                        c.fields.field3,
                        c.fields.field4,
                    ]
                })
                .collect(),
        ),
        Kind::DkmKeys(pid) => (
            KEY_COLUMNS,
            store
                .list_speed_dials(pid)
                .await?
                .into_iter()
                .filter(|k| k.fields.kind == openturret_domain::model::SpeedDialKind::Dkm)
                .map(|k| {
                    vec![
                        k.fields.position.to_string(),
                        k.fields.name,
                        k.fields.number,
                    ]
                })
                .collect(),
        ),
        Kind::Lines => (
            LINE_EXPORT,
            store
                .list_lines()
                .await?
                .into_iter()
                .map(|l| {
                    let f = l.fields;
                    vec![
                        f.name,
                        f.uri,
                        f.username,
                        f.display_name,
                        f.alternate_text,
                        f.preferred_identity,
                        f.answer_mode.as_str().to_string(),
                        f.peers,
                        f.priority.to_string(),
                        f.recorded.to_string(),
                    ]
                })
                .collect(),
        ),
    };
    write_rows(format, headers, &rows, out)?;
    Ok(rows.len() as u64)
}
