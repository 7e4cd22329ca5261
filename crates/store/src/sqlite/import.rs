//! All-or-nothing import of global contacts: rows are staged in a
//! temporary table inside one write transaction, checked against the
//! existing contacts set-wise, and applied in two statements.

use async_trait::async_trait;
use openturret_domain::Timestamp;
use openturret_domain::audit::AuditRecord;
use openturret_domain::model::ContactFields;
use sqlx::{QueryBuilder, Sqlite};

use super::{SqliteStore, Tx, db};
use crate::{GlobalImport, ImportCounts, OnDuplicate, Result};

pub struct SqliteImport<'a> {
    store: &'a SqliteStore,
    tx: Tx,
}

impl SqliteStore {
    pub(super) async fn start_import(&self) -> Result<SqliteImport<'_>> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "CREATE TEMP TABLE import_stage (line INTEGER NOT NULL, name TEXT NOT NULL,
               name_key TEXT NOT NULL, number TEXT NOT NULL, number_key TEXT NOT NULL,
               field3 TEXT NOT NULL, field4 TEXT NOT NULL)",
        )
        .execute(&mut *tx.tx)
        .await
        .map_err(db)?;
        Ok(SqliteImport { store: self, tx })
    }
}

const MATCH: &str = "g.name_key = s.name_key AND g.number_key = s.number_key";

#[async_trait]
impl GlobalImport for SqliteImport<'_> {
    async fn add(&mut self, rows: Vec<(u64, ContactFields)>) -> Result<()> {
        for chunk in rows.chunks(4000) {
            let mut b: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO import_stage (line, name, name_key, number, number_key, field3, field4) ",
            );
            b.push_values(chunk, |mut r, (line, f)| {
                r.push_bind(*line as i64)
                    .push_bind(f.name.clone())
                    .push_bind(f.name.to_lowercase())
                    .push_bind(f.number.clone())
                    .push_bind(self.store.plan.key(&f.number))
                    .push_bind(f.field3.clone())
                    .push_bind(f.field4.clone());
            });
            b.build().execute(&mut *self.tx.tx).await.map_err(db)?;
        }
        Ok(())
    }

    async fn commit(
        self: Box<Self>,
        mode: OnDuplicate,
        audit: AuditRecord,
    ) -> Result<std::result::Result<ImportCounts, Vec<u64>>> {
        let SqliteImport { store, mut tx } = *self;
        let now = Timestamp::now().0;
        sqlx::query("CREATE INDEX temp.import_stage_key ON import_stage(name_key, number_key)")
            .execute(&mut *tx.tx)
            .await
            .map_err(db)?;
        let mut counts = ImportCounts::default();
        match mode {
            OnDuplicate::Reject => {
                let lines: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT s.line FROM import_stage s JOIN global_contacts g ON {MATCH}
                     ORDER BY s.line LIMIT 1000"
                )))
                .fetch_all(&mut *tx.tx)
                .await
                .map_err(db)?;
                if !lines.is_empty() {
                    // Dropping the transaction rolls everything back.
                    return Ok(Err(lines.into_iter().map(|l| l as u64).collect()));
                }
            }
            OnDuplicate::Update => {
                let r = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE global_contacts AS g SET name = s.name, number = s.number,
                       field3 = s.field3, field4 = s.field4, updated_at = ?
                     FROM import_stage AS s WHERE {MATCH}"
                )))
                .bind(now)
                .execute(&mut *tx.tx)
                .await
                .map_err(db)?;
                counts.updated = r.rows_affected();
            }
        }
        let r = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO global_contacts (name, name_key, number, number_key, field3, field4,
               created_at, updated_at)
             SELECT s.name, s.name_key, s.number, s.number_key, s.field3, s.field4, ?, ?
             FROM import_stage s
             WHERE NOT EXISTS (SELECT 1 FROM global_contacts g WHERE {MATCH})
             ORDER BY s.line"
        )))
        .bind(now)
        .bind(now)
        .execute(&mut *tx.tx)
        .await
        .map_err(db)?;
        counts.inserted = r.rows_affected();
        sqlx::query("DROP TABLE temp.import_stage")
            .execute(&mut *tx.tx)
            .await
            .map_err(db)?;
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
