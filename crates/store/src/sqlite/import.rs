//! All-or-nothing import of global contacts, inside one write
//! transaction: the rows go straight into `global_contacts` (and the words
//! of their names into `global_contact_words`), a thousand at a time as one
//! JSONB parameter (SQLite's binary JSON) that SQLite walks itself, each
//! INSERT built while the one before runs. Then one indexed
//! self-join finds the new rows that match a contact that existed before;
//! rejecting rolls everything back, updating copies them onto the old rows
//! and drops the copies. New rows get ids above the largest id before the
//! import, in file order, so an id names its file line. Into a table of
//! fewer than [`REBUILD_BELOW`] rows (a first load), the tables' indexes
//! are dropped at the start and built again, sorted, before the duplicate
//! check, all inside the transaction, so a failure gets them back as they
//! were; into an empty table there is nothing to check.

use async_trait::async_trait;
use openturret_domain::Timestamp;
use openturret_domain::audit::AuditRecord;
use openturret_domain::model::ContactFields;
use openturret_domain::number::NumberPlan;
use openturret_domain::words;

use super::{SqliteStore, Tx, db};
use crate::{GlobalImport, ImportCounts, OnDuplicate, Result};

pub struct SqliteImport<'a> {
    store: &'a SqliteStore,
    tx: Tx,
    /// The largest id before the import.
    base: i64,
    /// The table's indexes (name, SQL), dropped for the import when the
    /// table was small, built again before the commit.
    dropped: Vec<(String, String)>,
    /// The file line of each new row, in id order.
    lines: Vec<u64>,
    now: i64,
    /// The next INSERT, built while the one before it ran.
    pending: Option<[Insert; 2]>,
}

impl SqliteStore {
    pub(super) async fn start_import(&self) -> Result<SqliteImport<'_>> {
        let mut tx = self.begin().await?;
        let base: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM global_contacts")
            .fetch_one(&mut *tx.tx)
            .await
            .map_err(db)?;
        // Into a small table, rows go in faster without the indexes, which
        // are then built once, sorted (all inside the transaction: a failed
        // import gets them back as they were).
        let small: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM (SELECT 1 FROM global_contacts LIMIT ?)")
                .bind(REBUILD_BELOW + 1)
                .fetch_one(&mut *tx.tx)
                .await
                .map_err(db)?;
        let mut dropped = Vec::new();
        if small <= REBUILD_BELOW {
            dropped = sqlx::query_as(
                "SELECT name, sql FROM sqlite_master
                 WHERE type = 'index' AND sql IS NOT NULL
                   AND tbl_name IN ('global_contacts', 'global_contact_words')",
            )
            .fetch_all(&mut *tx.tx)
            .await
            .map_err(db)?;
            for (name, _) in &dropped {
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP INDEX \"{name}\"")))
                    .execute(&mut *tx.tx)
                    .await
                    .map_err(db)?;
            }
        }
        Ok(SqliteImport {
            store: self,
            tx,
            base,
            dropped,
            lines: Vec::new(),
            now: Timestamp::now().0,
            pending: None,
        })
    }
}

/// Below this many rows, an import drops the table's indexes and builds
/// them again at the end.
const REBUILD_BELOW: i64 = 20_000;

/// Rows per INSERT statement (six parameters each, well under SQLite's
/// 32,766). Statements of one length are prepared once and cached.
const ROWS_PER_INSERT: usize = 1000;

pub(super) type Insert = sqlx::query::Query<'static, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>;

/// The INSERTs of `chunk` (contacts and their words), with the search keys
/// computed: the rows travel as one JSONB array of arrays (SQLite's binary
/// JSON, see [`jsonb_header`]) that SQLite walks itself, one parameter for
/// the whole chunk.
pub(super) fn insert_rows(
    plan: &NumberPlan,
    now: i64,
    first_id: i64,
    chunk: &[(u64, ContactFields)],
) -> [Insert; 2] {
    let mut rows = Vec::with_capacity(chunk.len() * 96);
    let mut row = Vec::with_capacity(256);
    let mut keys = Vec::with_capacity(chunk.len());
    for (_, f) in chunk {
        row.clear();
        let key = words::name_key(&f.name);
        for text in [
            f.name.as_str(),
            &key,
            &f.number,
            &plan.key(&f.number),
            &f.field3,
            &f.field4,
        ] {
            jsonb_text(&mut row, text);
        }
        jsonb_header(&mut rows, JSONB_ARRAY, row.len());
        rows.extend_from_slice(&row);
        keys.push(key);
    }
    // Each row's id is given (the chunk's first id plus its place in the
    // array), so the ids follow the file whatever order SQLite walks the
    // array in, without sorting it.
    let contacts = sqlx::query(
        "INSERT INTO global_contacts (id, name, name_key, number, number_key, field3, field4,
           created_at, updated_at)
         SELECT ?3 + key, value->>0, value->>1, value->>2, value->>3, value->>4, value->>5,
           ?2, ?2
         FROM jsonb_each(?1)",
    )
    .bind(jsonb_array(rows))
    .bind(now)
    .bind(first_id);
    let ids = (first_id..).zip(keys.iter().map(String::as_str));
    [contacts, insert_words(ids)]
}

/// One INSERT of the words of each (id, name key) after the first: a
/// JSONB array of `[id, word key]` pairs.
pub(super) fn insert_words<'a>(contacts: impl Iterator<Item = (i64, &'a str)>) -> Insert {
    let mut rows = Vec::new();
    let mut row = Vec::with_capacity(256);
    for (id, key) in contacts {
        let id = id.to_string();
        for word in words::word_keys(key) {
            row.clear();
            jsonb_header(&mut row, JSONB_INT, id.len());
            row.extend_from_slice(id.as_bytes());
            jsonb_text(&mut row, word);
            jsonb_header(&mut rows, JSONB_ARRAY, row.len());
            rows.extend_from_slice(&row);
        }
    }
    sqlx::query(
        "INSERT INTO global_contact_words (contact_id, key)
         SELECT value->>0, value->>1 FROM jsonb_each(?1)",
    )
    .bind(jsonb_array(rows))
}

fn jsonb_text(out: &mut Vec<u8>, text: &str) {
    jsonb_header(out, JSONB_TEXTRAW, text.len());
    out.extend_from_slice(text.as_bytes());
}

fn jsonb_array(elements: Vec<u8>) -> Vec<u8> {
    let mut blob = Vec::with_capacity(elements.len() + 9);
    jsonb_header(&mut blob, JSONB_ARRAY, elements.len());
    blob.extend_from_slice(&elements);
    blob
}

/// JSONB element types (<https://sqlite.org/jsonb.html>).
const JSONB_INT: u8 = 3;
const JSONB_TEXTRAW: u8 = 10;
const JSONB_ARRAY: u8 = 11;

/// A JSONB element header: the type in the low four bits, the payload's
/// size in the high four (up to 11) or in the 1, 2, 4 or 8 big-endian
/// bytes that follow (high bits 12, 13, 14, 15).
fn jsonb_header(out: &mut Vec<u8>, kind: u8, size: usize) {
    match size {
        0..=11 => out.push(kind | (size as u8) << 4),
        12..=0xff => out.extend_from_slice(&[kind | 0xc0, size as u8]),
        0x100..=0xffff => {
            out.push(kind | 0xd0);
            out.extend_from_slice(&(size as u16).to_be_bytes());
        }
        _ => {
            // A chunk's rows are bounded in number and length: far below.
            let size = u32::try_from(size).expect("a JSONB element under 4 GiB");
            out.push(kind | 0xe0);
            out.extend_from_slice(&size.to_be_bytes());
        }
    }
}

/// A new row (id above `base`) matching an old one.
const DUPLICATE: &str = "o.id <= ?1 AND o.name_key = n.name_key AND o.number_key = n.number_key";

#[async_trait]
impl GlobalImport for SqliteImport<'_> {
    async fn add(&mut self, rows: Vec<(u64, ContactFields)>) -> Result<()> {
        let SqliteImport {
            store,
            tx,
            base,
            lines,
            now,
            pending,
            ..
        } = self;
        let mut rows = rows.into_iter();
        let mut build = |rows: &mut std::vec::IntoIter<_>| {
            let chunk: Vec<_> = rows.take(ROWS_PER_INSERT).collect();
            let first_id = *base + 1 + lines.len() as i64;
            lines.extend(chunk.iter().map(|(line, _)| *line));
            insert_rows(&store.plan, *now, first_id, &chunk)
        };
        // Each INSERT is built while the one before runs on the
        // connection's thread; the last one waits for the next batch (or
        // the commit), so the pipeline does not drain between batches.
        while rows.len() > 0 {
            match pending.take() {
                None => *pending = Some(build(&mut rows)),
                Some([contacts, words]) => {
                    let conn = &mut *tx.tx;
                    let run = async move {
                        contacts.execute(&mut *conn).await?;
                        words.execute(&mut *conn).await
                    };
                    let (done, built) = tokio::join!(run, async { build(&mut rows) });
                    done.map_err(db)?;
                    *pending = Some(built);
                }
            }
        }
        Ok(())
    }

    async fn commit(
        self: Box<Self>,
        mode: OnDuplicate,
        audit: AuditRecord,
    ) -> Result<std::result::Result<ImportCounts, Vec<u64>>> {
        let SqliteImport {
            store,
            mut tx,
            base,
            dropped,
            lines,
            now,
            pending,
        } = *self;
        if let Some([contacts, words]) = pending {
            contacts.execute(&mut *tx.tx).await.map_err(db)?;
            words.execute(&mut *tx.tx).await.map_err(db)?;
        }
        for (_, sql) in &dropped {
            // The index's own statement, as the schema held it.
            sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .execute(&mut *tx.tx)
                .await
                .map_err(db)?;
        }
        let (mut counts, mut dropped_copies) = (ImportCounts::default(), 0);
        match mode {
            // Into an empty table no row existed before to match.
            _ if base == 0 => {}
            OnDuplicate::Reject => {
                let ids: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT n.id FROM global_contacts n
                     WHERE n.id > ?1 AND EXISTS (SELECT 1 FROM global_contacts o WHERE {DUPLICATE})
                     ORDER BY n.id LIMIT 1000"
                )))
                .bind(base)
                .fetch_all(&mut *tx.tx)
                .await
                .map_err(db)?;
                if !ids.is_empty() {
                    // Dropping the transaction rolls everything back.
                    let line = |id: i64| lines.get((id - base - 1) as usize).copied().unwrap_or(0);
                    return Ok(Err(ids.into_iter().map(line).collect()));
                }
            }
            OnDuplicate::Update => {
                let r = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE global_contacts AS o SET name = n.name, number = n.number,
                       field3 = n.field3, field4 = n.field4, updated_at = ?2
                     FROM global_contacts AS n WHERE n.id > ?1 AND {DUPLICATE}"
                )))
                .bind(base)
                .bind(now)
                .execute(&mut *tx.tx)
                .await
                .map_err(db)?;
                counts.updated = r.rows_affected();
                dropped_copies = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DELETE FROM global_contacts AS n
                     WHERE n.id > ?1 AND EXISTS (SELECT 1 FROM global_contacts o WHERE {DUPLICATE})"
                )))
                .bind(base)
                .execute(&mut *tx.tx)
                .await
                .map_err(db)?
                .rows_affected();
            }
        }
        counts.inserted = lines.len() as u64 - dropped_copies;
        let mut audit = audit;
        audit.changes = vec![
            format!("inserted:{}", counts.inserted),
            format!("updated:{}", counts.updated),
        ];
        store.audit(&mut tx, &audit).await?;
        store.commit(tx).await?;
        Ok(Ok(counts))
    }
}

type Outcome = Result<std::result::Result<ImportCounts, Vec<u64>>>;

impl SqliteStore {
    pub(super) async fn import_locals(
        &self,
        profile: openturret_domain::ProfileId,
        rows: Vec<(u64, ContactFields)>,
        mode: OnDuplicate,
        mut audit: AuditRecord,
    ) -> Outcome {
        let now = Timestamp::now().0;
        let mut tx = self.begin().await?;
        self.require_profile(&mut tx, profile).await?;
        let (mut counts, mut clashes) = (ImportCounts::default(), Vec::new());
        for (line, f) in rows {
            let key = self.plan.key(&f.number);
            let existing: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM local_contacts WHERE profile_id = ? AND number_key = ? AND lower(name) = lower(?)
                 ORDER BY id LIMIT 1",
            )
            .bind(profile.0)
            .bind(&key)
            .bind(&f.name)
            .fetch_optional(&mut *tx.tx)
            .await
            .map_err(db)?;
            match (existing, mode) {
                (Some(_), OnDuplicate::Reject) => clashes.push(line),
                (Some(id), OnDuplicate::Update) => {
                    sqlx::query("UPDATE local_contacts SET name = ?, number = ?, field3 = ?, field4 = ?, updated_at = ? WHERE id = ?")
                        .bind(&f.name).bind(&f.number).bind(&f.field3).bind(&f.field4).bind(now).bind(id)
                        .execute(&mut *tx.tx).await.map_err(db)?;
                    counts.updated += 1;
                }
                (None, _) => {
                    sqlx::query(
                        "INSERT INTO local_contacts (profile_id, name, number, number_key, field3, field4, created_at, updated_at)
                         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    )
                    .bind(profile.0).bind(&f.name).bind(&f.number).bind(&key).bind(&f.field3).bind(&f.field4).bind(now).bind(now)
                    .execute(&mut *tx.tx).await.map_err(db)?;
                    counts.inserted += 1;
                }
            }
        }
        if !clashes.is_empty() {
            return Ok(Err(clashes));
        }
        audit.changes = vec![
            format!("inserted:{}", counts.inserted),
            format!("updated:{}", counts.updated),
        ];
        self.audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(Ok(counts))
    }

    pub(super) async fn import_keys(
        &self,
        profile: openturret_domain::ProfileId,
        rows: Vec<(u64, openturret_domain::model::SpeedDialFields)>,
        mode: OnDuplicate,
        mut audit: AuditRecord,
    ) -> Outcome {
        let mut tx = self.begin().await?;
        self.require_profile(&mut tx, profile).await?;
        let (mut counts, mut clashes) = (ImportCounts::default(), Vec::new());
        for (line, k) in rows {
            let existing: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM speed_dials WHERE profile_id = ? AND kind = ? AND position = ?",
            )
            .bind(profile.0)
            .bind(k.kind.as_str())
            .bind(k.position as i64)
            .fetch_optional(&mut *tx.tx)
            .await
            .map_err(db)?;
            match (existing, mode) {
                (Some(_), OnDuplicate::Reject) => clashes.push(line),
                (Some(id), OnDuplicate::Update) => {
                    sqlx::query("UPDATE speed_dials SET name = ?, number = ? WHERE id = ?")
                        .bind(&k.name)
                        .bind(&k.number)
                        .bind(id)
                        .execute(&mut *tx.tx)
                        .await
                        .map_err(db)?;
                    counts.updated += 1;
                }
                (None, _) => {
                    sqlx::query("INSERT INTO speed_dials (profile_id, kind, position, name, number, created_at) VALUES (?, ?, ?, ?, ?, ?)")
                        .bind(profile.0).bind(k.kind.as_str()).bind(k.position as i64).bind(&k.name).bind(&k.number)
                        .bind(openturret_domain::Timestamp::now().0)
                        .execute(&mut *tx.tx).await.map_err(db)?;
                    counts.inserted += 1;
                }
            }
        }
        if !clashes.is_empty() {
            return Ok(Err(clashes));
        }
        audit.changes = vec![
            format!("inserted:{}", counts.inserted),
            format!("updated:{}", counts.updated),
        ];
        self.audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(Ok(counts))
    }
}
