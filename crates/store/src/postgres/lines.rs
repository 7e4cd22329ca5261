//! Lines (with their encrypted passwords) and line assignments.

use async_trait::async_trait;
use openturret_domain::audit::AuditRecord;
use openturret_domain::model::*;
use openturret_domain::secret::Secret;
use openturret_domain::{LineId, ProfileId, Timestamp};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::{PgStore, Tx, db, one_row};
use crate::{LineStore, Result, StoreError};

const SELECT: &str = "SELECT id, name, uri, username, display_name, alternate_text,
    preferred_identity, answer_mode, peers, priority, recorded, password_sealed IS NOT NULL AS has_password, created_at, updated_at
    FROM lines";

fn line(r: &PgRow) -> Line {
    Line {
        id: LineId(r.get("id")),
        fields: LineFields {
            name: r.get("name"),
            uri: r.get("uri"),
            username: r.get("username"),
            display_name: r.get("display_name"),
            alternate_text: r.get("alternate_text"),
            preferred_identity: r.get("preferred_identity"),
            answer_mode: AnswerMode::parse(r.get("answer_mode")).unwrap_or_default(),
            peers: r.get("peers"),
            priority: r.get("priority"),
            recorded: r.get("recorded"),
        },
        has_password: r.get("has_password"),
        created_at: Timestamp(r.get("created_at")),
        updated_at: Timestamp(r.get("updated_at")),
    }
}

impl PgStore {
    async fn set_line_password(&self, tx: &mut Tx, id: LineId, password: &Secret) -> Result<()> {
        let sealed = self.keys.seal_line_password(id, password);
        sqlx::query("UPDATE lines SET password_sealed = $1 WHERE id = $2")
            .bind(sealed)
            .bind(id.0)
            .execute(&mut *tx.tx)
            .await
            .map_err(db)?;
        Ok(())
    }
}

#[async_trait]
impl LineStore for PgStore {
    async fn list_lines(&self) -> Result<Vec<Line>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT} ORDER BY name, id")))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(rows.iter().map(line).collect())
    }

    async fn get_line(&self, id: LineId) -> Result<Line> {
        sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT} WHERE id = $1")))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .map(|r| line(&r))
            .ok_or(StoreError::NotFound("line"))
    }

    async fn create_line(
        &self,
        f: LineFields,
        password: Option<Secret>,
        mut audit: AuditRecord,
    ) -> Result<Line> {
        let now = Timestamp::now();
        let mut tx = self.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO lines (name, uri, username, display_name, alternate_text,
               preferred_identity, answer_mode, peers, priority, recorded, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
        )
        .bind(&f.name)
        .bind(&f.uri)
        .bind(&f.username)
        .bind(&f.display_name)
        .bind(&f.alternate_text)
        .bind(&f.preferred_identity)
        .bind(f.answer_mode.as_str())
        .bind(&f.peers)
        .bind(f.priority)
        .bind(f.recorded)
        .bind(now.0)
        .bind(now.0)
        .fetch_one(&mut *tx.tx)
        .await
        .map_err(db)?;
        if let Some(p) = &password {
            self.set_line_password(&mut tx, LineId(id), p).await?;
        }
        audit.object_id = Some(super::object_id(audit.object_id.take(), id));
        self.audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        self.get_line(LineId(id)).await
    }

    async fn update_line(
        &self,
        id: LineId,
        f: LineFields,
        password: Option<Secret>,
        audit: AuditRecord,
    ) -> Result<Line> {
        let mut tx = self.begin().await?;
        let r = sqlx::query(
            "UPDATE lines SET name = $1, uri = $2, username = $3, display_name = $4,
               alternate_text = $5, preferred_identity = $6, answer_mode = $7, peers = $8, priority = $9,
               recorded = $10, updated_at = $11
             WHERE id = $12",
        )
        .bind(&f.name)
        .bind(&f.uri)
        .bind(&f.username)
        .bind(&f.display_name)
        .bind(&f.alternate_text)
        .bind(&f.preferred_identity)
        .bind(f.answer_mode.as_str())
        .bind(&f.peers)
        .bind(f.priority)
        .bind(f.recorded)
        .bind(Timestamp::now().0)
        .bind(id.0)
        .execute(&mut *tx.tx)
        .await
        .map_err(db)?;
        one_row(r, "line")?;
        if let Some(p) = &password {
            self.set_line_password(&mut tx, id, p).await?;
        }
        self.audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        self.get_line(id).await
    }

    async fn delete_line(&self, id: LineId, audit: AuditRecord) -> Result<()> {
        self.delete_audited("DELETE FROM lines WHERE id = $1", &[id.0], "line", &audit)
            .await
    }

    async fn line_password(&self, id: LineId) -> Result<Option<Secret>> {
        let sealed: Option<Option<Vec<u8>>> =
            sqlx::query_scalar("SELECT password_sealed FROM lines WHERE id = $1")
                .bind(id.0)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        match sealed.ok_or(StoreError::NotFound("line"))? {
            Some(s) => Ok(Some(self.keys.open_line_password(id, &s)?)),
            None => Ok(None),
        }
    }

    async fn line_passwords(&self) -> Result<Vec<(LineId, Secret)>> {
        let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT id, password_sealed FROM lines WHERE password_sealed IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.into_iter()
            .map(|(id, sealed)| {
                Ok((
                    LineId(id),
                    self.keys.open_line_password(LineId(id), &sealed)?,
                ))
            })
            .collect()
    }

    async fn list_profile_lines(&self, profile: ProfileId) -> Result<Vec<LineAssignment>> {
        let rows = sqlx::query(
            "SELECT profile_id, line_id, position FROM line_assignments
             WHERE profile_id = $1 ORDER BY position",
        )
        .bind(profile.0)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows
            .iter()
            .map(|r| LineAssignment {
                profile_id: ProfileId(r.get("profile_id")),
                line_id: LineId(r.get("line_id")),
                position: r.get::<i64, _>("position") as u32,
            })
            .collect())
    }

    async fn import_lines(
        &self,
        rows: Vec<(u64, LineFields, Option<Secret>)>,
        mode: crate::OnDuplicate,
        mut audit: AuditRecord,
    ) -> Result<std::result::Result<crate::ImportCounts, Vec<u64>>> {
        let now = Timestamp::now().0;
        let mut tx = self.begin().await?;
        let (mut counts, mut clashes) = (crate::ImportCounts::default(), Vec::new());
        for (line, f, password) in rows {
            let existing: Option<i64> = sqlx::query_scalar("SELECT id FROM lines WHERE name = $1")
                .bind(&f.name)
                .fetch_optional(&mut *tx.tx)
                .await
                .map_err(db)?;
            let id = match (existing, mode) {
                (Some(_), crate::OnDuplicate::Reject) => {
                    clashes.push(line);
                    continue;
                }
                (Some(id), crate::OnDuplicate::Update) => {
                    sqlx::query(
                        "UPDATE lines SET uri = $1, username = $2, display_name = $3, alternate_text = $4,
                           preferred_identity = $5, answer_mode = $6, peers = $7, priority = $8, recorded = $9, updated_at = $10 WHERE id = $11",
                    )
                    .bind(&f.uri).bind(&f.username).bind(&f.display_name).bind(&f.alternate_text)
                    .bind(&f.preferred_identity).bind(f.answer_mode.as_str()).bind(&f.peers).bind(f.priority).bind(f.recorded).bind(now).bind(id)
                    .execute(&mut *tx.tx).await.map_err(db)?;
                    counts.updated += 1;
                    id
                }
                (None, _) => {
                    let id: i64 = sqlx::query_scalar(
                        "INSERT INTO lines (name, uri, username, display_name, alternate_text, preferred_identity,
                           answer_mode, peers, priority, recorded, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
                    )
                    .bind(&f.name).bind(&f.uri).bind(&f.username).bind(&f.display_name).bind(&f.alternate_text)
                    .bind(&f.preferred_identity).bind(f.answer_mode.as_str()).bind(&f.peers).bind(f.priority).bind(f.recorded).bind(now).bind(now)
                    .fetch_one(&mut *tx.tx).await.map_err(db)?;
                    counts.inserted += 1;
                    id
                }
            };
            if let Some(p) = &password {
                self.set_line_password(&mut tx, LineId(id), p).await?;
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

    async fn profiles_with_line(&self, line: LineId) -> Result<Vec<ProfileId>> {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT profile_id FROM line_assignments WHERE line_id = $1 ORDER BY profile_id",
        )
        .bind(line.0)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(ids.into_iter().map(ProfileId).collect())
    }

    async fn assign_line(&self, a: LineAssignment, audit: AuditRecord) -> Result<LineAssignment> {
        let mut tx = self.begin().await?;
        self.require_profile(&mut tx, a.profile_id).await?;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM lines WHERE id = $1")
            .bind(a.line_id.0)
            .fetch_one(&mut *tx.tx)
            .await
            .map_err(db)?;
        if n == 0 {
            return Err(StoreError::NotFound("line"));
        }
        sqlx::query(
            "INSERT INTO line_assignments (profile_id, line_id, position) VALUES ($1, $2, $3)
             ON CONFLICT (profile_id, line_id) DO UPDATE SET position = excluded.position",
        )
        .bind(a.profile_id.0)
        .bind(a.line_id.0)
        .bind(a.position as i64)
        .execute(&mut *tx.tx)
        .await
        .map_err(db)?;
        self.audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(a)
    }

    async fn unassign_line(
        &self,
        profile: ProfileId,
        line: LineId,
        audit: AuditRecord,
    ) -> Result<()> {
        self.delete_audited(
            "DELETE FROM line_assignments WHERE profile_id = $1 AND line_id = $2",
            &[profile.0, line.0],
            "line key",
            &audit,
        )
        .await
    }
}
