//! Call memory (sealed, FIFO of 100 per profile) and call data records.

use async_trait::async_trait;
use openturret_domain::audit::AuditRecord;
use openturret_domain::model::*;
use openturret_domain::{CallMemoryId, CdrId, LineId, ProfileId, Timestamp};
use sqlx::Row;

use super::{PgStore, Tx, db};
use crate::{CallStore, CdrFilter, Result};

impl PgStore {
    pub(super) async fn purge(
        &self,
        sql: &'static str,
        cutoff: Timestamp,
        mut audit: AuditRecord,
    ) -> Result<u64> {
        let mut tx = self.begin().await?;
        let n = sqlx::query(sql)
            .bind(cutoff.0)
            .execute(&mut *tx.tx)
            .await
            .map_err(db)?
            .rows_affected();
        if n == 0 {
            return Ok(0);
        }
        audit.changes = vec![format!("deleted:{n}")];
        self.audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(n)
    }
}

#[async_trait]
impl CallStore for PgStore {
    async fn push_call_memory(
        &self,
        profile: ProfileId,
        at: Timestamp,
        sealed: Vec<u8>,
    ) -> Result<CallMemoryId> {
        let mut tx = self.begin().await?;
        self.require_profile(&mut tx, profile).await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO call_memory (profile_id, created_at, sealed) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(profile.0)
        .bind(at.0)
        .bind(sealed)
        .fetch_one(&mut *tx.tx)
        .await
        .map_err(db)?;
        // FIFO: keep the newest CALL_MEMORY_CAPACITY entries of this profile.
        sqlx::query(
            "DELETE FROM call_memory WHERE profile_id = $1 AND id NOT IN
               (SELECT id FROM call_memory WHERE profile_id = $1 ORDER BY id DESC LIMIT $2)",
        )
        .bind(profile.0)
        .bind(CALL_MEMORY_CAPACITY as i64)
        .execute(&mut *tx.tx)
        .await
        .map_err(db)?;
        self.commit(tx).await?;
        Ok(CallMemoryId(id))
    }

    async fn list_call_memory(&self, profile: ProfileId) -> Result<Vec<CallMemoryRecord>> {
        let rows = sqlx::query(
            "SELECT id, profile_id, created_at, sealed FROM call_memory
             WHERE profile_id = $1 ORDER BY id",
        )
        .bind(profile.0)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows
            .iter()
            .map(|r| CallMemoryRecord {
                id: CallMemoryId(r.get("id")),
                profile_id: ProfileId(r.get("profile_id")),
                created_at: Timestamp(r.get("created_at")),
                sealed: r.get("sealed"),
            })
            .collect())
    }

    async fn delete_call_memory(
        &self,
        profile: ProfileId,
        id: CallMemoryId,
        audit: AuditRecord,
    ) -> Result<()> {
        self.delete_recorded(
            "DELETE FROM call_memory WHERE profile_id = $1 AND id = $2",
            &[profile.0, id.0],
            "call memory entry",
            &audit,
            Some(("call_memory", id.0)),
        )
        .await
    }

    async fn purge_call_memory_before(&self, cutoff: Timestamp, audit: AuditRecord) -> Result<u64> {
        self.purge(
            "DELETE FROM call_memory WHERE created_at < $1",
            cutoff,
            audit,
        )
        .await
    }

    async fn purge_cdrs_before(&self, cutoff: Timestamp, audit: AuditRecord) -> Result<u64> {
        self.purge("DELETE FROM cdrs WHERE recorded_at < $1", cutoff, audit)
            .await
    }

    async fn insert_cdr(&self, c: Cdr) -> Result<CdrId> {
        let mut tx = self.begin().await?;
        let id = insert_cdr(&mut tx, &c).await?;
        self.commit(tx).await?;
        Ok(id)
    }

    async fn insert_cdrs(&self, cdrs: Vec<Cdr>) -> Result<Vec<CdrId>> {
        let mut tx = self.begin().await?;
        let mut ids = Vec::with_capacity(cdrs.len());
        for c in &cdrs {
            ids.push(insert_cdr(&mut tx, c).await?);
        }
        self.commit(tx).await?;
        Ok(ids)
    }

    async fn list_cdrs(&self, f: &CdrFilter) -> Result<Vec<Cdr>> {
        let lines = f
            .lines
            .as_ref()
            .map(|l| l.iter().map(|x| x.0).collect::<Vec<i64>>());
        let rows = sqlx::query(
            "SELECT * FROM cdrs WHERE recorded_at >= $1 AND recorded_at < $2
               AND ($3::BIGINT[] IS NULL OR line_id = ANY($3))
               AND ($4::BIGINT IS NULL OR profile_id = $4 OR (profile_id IS NULL
                    AND profile_name = (SELECT name FROM profiles WHERE id = $4)))
             ORDER BY recorded_at, id LIMIT $5",
        )
        .bind(f.from.0)
        .bind(f.to.0)
        .bind(lines)
        .bind(f.profile.map(|p| p.0))
        .bind(f.limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows
            .iter()
            .map(|r| Cdr {
                id: Some(CdrId(r.get("id"))),
                line_id: r.get::<Option<i64>, _>("line_id").map(LineId),
                profile_id: r.get::<Option<i64>, _>("profile_id").map(ProfileId),
                recorded_at: Some(Timestamp(r.get("recorded_at"))),
                profile_name: r.get("profile_name"),
                attendant_group: r.get("attendant_group"),
                called_number: r.get("called_number"),
                calling_number: r.get("calling_number"),
                duration_ms: r.get("duration_ms"),
                call_type: r
                    .get::<Option<String>, _>("call_type")
                    .and_then(|s| Locality::parse(&s)),
                direction: r
                    .get::<Option<String>, _>("direction")
                    .and_then(|s| Direction::parse(&s)),
                started_at: r.get::<Option<i64>, _>("started_at").map(Timestamp),
                ended_at: r.get::<Option<i64>, _>("ended_at").map(Timestamp),
            })
            .collect())
    }
}

async fn insert_cdr(tx: &mut Tx, c: &Cdr) -> Result<CdrId> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO cdrs (line_id, profile_id, profile_name, attendant_group, called_number,
               calling_number, duration_ms, call_type, direction, started_at, ended_at,
               recorded_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
    )
    .bind(c.line_id.map(|l| l.0))
    .bind(c.profile_id.map(|p| p.0))
    .bind(&c.profile_name)
    .bind(&c.attendant_group)
    .bind(&c.called_number)
    .bind(&c.calling_number)
    .bind(c.duration_ms)
    .bind(c.call_type.map(|t| t.as_str()))
    .bind(c.direction.map(|d| d.as_str()))
    .bind(c.started_at.map(|t| t.0))
    .bind(c.ended_at.map(|t| t.0))
    .bind(c.recorded_at.unwrap_or_else(Timestamp::now).0)
    .fetch_one(&mut *tx.tx)
    .await
    .map_err(db)?;
    Ok(CdrId(id))
}
