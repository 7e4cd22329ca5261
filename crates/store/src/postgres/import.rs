//! All-or-nothing import of global contacts on PostgreSQL, inside one
//! transaction that locks the table against other writers (another node's
//! import or edits): rows go in a thousand at a time as column arrays
//! (`UNNEST`), with ids above the largest before the import, in file
//! order, so an id names its file line; then one self-join finds the new
//! rows that match a contact that existed before, as on SQLite. The
//! identity sequence is moved past the given ids at the end.

use async_trait::async_trait;
use openturret_domain::Timestamp;
use openturret_domain::audit::AuditRecord;
use openturret_domain::model::ContactFields;
use openturret_domain::words;

use super::{PgStore, Tx, db};
use crate::{GlobalImport, ImportCounts, OnDuplicate, Result};

pub struct PgImport<'a> {
    store: &'a PgStore,
    tx: Tx,
    /// The largest id before the import.
    base: i64,
    /// The file line of each new row, in id order.
    lines: Vec<u64>,
    now: i64,
}

/// Rows per INSERT statement.
const ROWS_PER_INSERT: usize = 1000;

impl PgStore {
    pub(super) async fn start_import(&self) -> Result<PgImport<'_>> {
        let mut tx = self.begin().await?;
        sqlx::query("LOCK TABLE global_contacts IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx.tx)
            .await
            .map_err(db)?;
        let base: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM global_contacts")
            .fetch_one(&mut *tx.tx)
            .await
            .map_err(db)?;
        Ok(PgImport {
            store: self,
            tx,
            base,
            lines: Vec::new(),
            now: Timestamp::now().0,
        })
    }
}

/// Inserts the words of a contact's name key (after the first).
pub(super) async fn insert_words(tx: &mut Tx, id: i64, key: &str) -> Result<()> {
    let keys: Vec<String> = words::word_keys(key).map(str::to_string).collect();
    sqlx::query(
        "INSERT INTO global_contact_words (contact_id, key)
         SELECT $1, k FROM UNNEST($2::TEXT[]) AS k ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(&keys)
    .execute(&mut *tx.tx)
    .await
    .map_err(db)?;
    Ok(())
}

/// Moves the identity sequence of `global_contacts` past the ids given.
pub(super) async fn move_identity(tx: &mut Tx) -> Result<()> {
    sqlx::query(
        "SELECT setval(pg_get_serial_sequence('global_contacts', 'id'),
           GREATEST((SELECT MAX(id) FROM global_contacts), 1))",
    )
    .execute(&mut *tx.tx)
    .await
    .map_err(db)?;
    Ok(())
}

/// Inserts contacts with the given first id, and the words of their names.
pub(super) async fn insert_chunk(
    store: &PgStore,
    tx: &mut Tx,
    now: i64,
    first_id: i64,
    chunk: &[(u64, ContactFields)],
) -> Result<()> {
    let n = chunk.len();
    let mut cols: [Vec<String>; 6] = Default::default();
    let ids: Vec<i64> = (first_id..first_id + n as i64).collect();
    let (mut word_ids, mut word_keys) = (Vec::new(), Vec::new());
    for ((_, f), id) in chunk.iter().zip(&ids) {
        let key = words::name_key(&f.name);
        for w in words::word_keys(&key) {
            word_ids.push(*id);
            word_keys.push(w.to_string());
        }
        for (c, v) in cols.iter_mut().zip([
            f.name.clone(),
            key,
            f.number.clone(),
            store.plan.key(&f.number),
            f.field3.clone(),
            f.field4.clone(),
        ]) {
            c.push(v);
        }
    }
    let [names, name_keys, numbers, number_keys, f3, f4] = cols;
    sqlx::query(
        "INSERT INTO global_contacts (id, name, name_key, number, number_key, field3, field4,
           created_at, updated_at)
         SELECT t.*, $8, $8 FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[],
           $5::TEXT[], $6::TEXT[], $7::TEXT[]) AS t",
    )
    .bind(&ids)
    .bind(&names)
    .bind(&name_keys)
    .bind(&numbers)
    .bind(&number_keys)
    .bind(&f3)
    .bind(&f4)
    .bind(now)
    .execute(&mut *tx.tx)
    .await
    .map_err(db)?;
    sqlx::query(
        "INSERT INTO global_contact_words (contact_id, key)
         SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[]) ON CONFLICT DO NOTHING",
    )
    .bind(&word_ids)
    .bind(&word_keys)
    .execute(&mut *tx.tx)
    .await
    .map_err(db)?;
    Ok(())
}

/// A new row (id above `base`) matching an old one.
const DUPLICATE: &str = "o.id <= $1 AND o.name_key = n.name_key AND o.number_key = n.number_key";

#[async_trait]
impl GlobalImport for PgImport<'_> {
    async fn add(&mut self, rows: Vec<(u64, ContactFields)>) -> Result<()> {
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let first_id = self.base + 1 + self.lines.len() as i64;
            insert_chunk(self.store, &mut self.tx, self.now, first_id, chunk).await?;
            self.lines.extend(chunk.iter().map(|(line, _)| *line));
        }
        Ok(())
    }

    async fn commit(
        self: Box<Self>,
        mode: OnDuplicate,
        audit: AuditRecord,
    ) -> Result<std::result::Result<ImportCounts, Vec<u64>>> {
        let PgImport {
            store,
            mut tx,
            base,
            lines,
            now,
        } = *self;
        let (mut counts, mut dropped_copies) = (ImportCounts::default(), 0);
        match mode {
            _ if base == 0 => {}
            OnDuplicate::Reject => {
                let ids: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT n.id FROM global_contacts n
                     WHERE n.id > $1 AND EXISTS (SELECT 1 FROM global_contacts o WHERE {DUPLICATE})
                     ORDER BY n.id LIMIT 1000"
                )))
                .bind(base)
                .fetch_all(&mut *tx.tx)
                .await
                .map_err(db)?;
                if !ids.is_empty() {
                    let line = |id: i64| lines.get((id - base - 1) as usize).copied().unwrap_or(0);
                    return Ok(Err(ids.into_iter().map(line).collect()));
                }
            }
            OnDuplicate::Update => {
                let r = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE global_contacts AS o SET name = n.name, number = n.number,
                       field3 = n.field3, field4 = n.field4, updated_at = $2
                     FROM global_contacts AS n WHERE n.id > $1 AND {DUPLICATE}"
                )))
                .bind(base)
                .bind(now)
                .execute(&mut *tx.tx)
                .await
                .map_err(db)?;
                counts.updated = r.rows_affected();
                dropped_copies = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DELETE FROM global_contacts AS n
                     WHERE n.id > $1 AND EXISTS (SELECT 1 FROM global_contacts o WHERE {DUPLICATE})"
                )))
                .bind(base)
                .execute(&mut *tx.tx)
                .await
                .map_err(db)?
                .rows_affected();
            }
        }
        // New rows made later by the identity start above the given ids.
        move_identity(&mut tx).await?;
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

impl PgStore {
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
                "SELECT id FROM local_contacts WHERE profile_id = $1 AND number_key = $2 AND lower(name) = lower($3)
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
                    sqlx::query("UPDATE local_contacts SET name = $1, number = $2, field3 = $3, field4 = $4, updated_at = $5 WHERE id = $6")
                        .bind(&f.name).bind(&f.number).bind(&f.field3).bind(&f.field4).bind(now).bind(id)
                        .execute(&mut *tx.tx).await.map_err(db)?;
                    counts.updated += 1;
                }
                (None, _) => {
                    sqlx::query(
                        "INSERT INTO local_contacts (profile_id, name, number, number_key, field3, field4, created_at, updated_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
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
                "SELECT id FROM speed_dials WHERE profile_id = $1 AND kind = $2 AND position = $3",
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
                    sqlx::query("UPDATE speed_dials SET name = $1, number = $2 WHERE id = $3")
                        .bind(&k.name)
                        .bind(&k.number)
                        .bind(id)
                        .execute(&mut *tx.tx)
                        .await
                        .map_err(db)?;
                    counts.updated += 1;
                }
                (None, _) => {
                    sqlx::query("INSERT INTO speed_dials (profile_id, kind, position, name, number, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
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
