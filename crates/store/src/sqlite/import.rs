//! All-or-nothing import of global contacts, inside one write
//! transaction: the rows go straight into `global_contacts` (a chunk at a
//! time, as one JSON parameter that SQLite unpacks itself), then one
//! indexed self-join finds the new rows that match a contact that existed
//! before; rejecting rolls everything back, updating copies them onto the
//! old rows and drops the copies. New rows get ids above the largest id
//! before the import, in file order, so an id names its file line. Into a
//! table of fewer than [`REBUILD_BELOW`] rows (a first load), the table's
//! indexes are dropped at the start and built again, sorted, before the
//! duplicate check: about a tenth faster for 100,000 rows, and, being
//! inside the transaction, undone with everything else by a failure.

use async_trait::async_trait;
use openturret_domain::Timestamp;
use openturret_domain::audit::AuditRecord;
use openturret_domain::model::ContactFields;

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
                 WHERE type = 'index' AND tbl_name = 'global_contacts' AND sql IS NOT NULL",
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
        })
    }
}

/// Below this many rows, an import drops the table's indexes and builds
/// them again at the end.
const REBUILD_BELOW: i64 = 20_000;

/// A new row (id above `base`) matching an old one.
const DUPLICATE: &str = "o.id <= ?1 AND o.name_key = n.name_key AND o.number_key = n.number_key";

#[async_trait]
impl GlobalImport for SqliteImport<'_> {
    async fn add(&mut self, rows: Vec<(u64, ContactFields)>) -> Result<()> {
        for chunk in rows.chunks(10_000) {
            let mut json = String::with_capacity(chunk.len() * 96);
            json.push('[');
            for (i, (line, f)) in chunk.iter().enumerate() {
                if i > 0 {
                    json.push(',');
                }
                let row = (
                    &f.name,
                    f.name.to_lowercase(),
                    &f.number,
                    self.store.plan.key(&f.number),
                    &f.field3,
                    &f.field4,
                );
                json.push_str(&serde_json::to_string(&row).expect("strings encode"));
                self.lines.push(*line);
            }
            json.push(']');
            sqlx::query(
                "INSERT INTO global_contacts (name, name_key, number, number_key, field3, field4,
                   created_at, updated_at)
                 SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5, ?2, ?2
                 FROM json_each(?1) ORDER BY key",
            )
            .bind(json)
            .bind(self.now)
            .execute(&mut *self.tx.tx)
            .await
            .map_err(db)?;
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
        } = *self;
        for (_, sql) in &dropped {
            // The index's own statement, as the schema held it.
            sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .execute(&mut *tx.tx)
                .await
                .map_err(db)?;
        }
        let mut counts = ImportCounts::default();
        match mode {
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
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DELETE FROM global_contacts AS n
                     WHERE n.id > ?1 AND EXISTS (SELECT 1 FROM global_contacts o WHERE {DUPLICATE})"
                )))
                .bind(base)
                .execute(&mut *tx.tx)
                .await
                .map_err(db)?;
            }
        }
        counts.inserted =
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM global_contacts WHERE id > ?")
                .bind(base)
                .fetch_one(&mut *tx.tx)
                .await
                .map_err(db)? as u64;
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
                    sqlx::query("INSERT INTO speed_dials (profile_id, kind, position, name, number) VALUES (?, ?, ?, ?, ?)")
                        .bind(profile.0).bind(k.kind.as_str()).bind(k.position as i64).bind(&k.name).bind(&k.number)
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
