//! Voice recorders (issue 18), with their encrypted digest passwords.

use async_trait::async_trait;
use openturret_domain::audit::AuditRecord;
use openturret_domain::model::*;
use openturret_domain::secret::Secret;
use openturret_domain::{RecorderId, Timestamp};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::{PgStore, Tx, db, one_row};
use crate::{RecorderStore, Result, StoreError};

const SELECT: &str = "SELECT id, name, uri, transport, username,
    password_sealed IS NOT NULL AS has_password, created_at, updated_at FROM recorders";

fn recorder(r: &PgRow) -> Recorder {
    Recorder {
        id: RecorderId(r.get("id")),
        fields: RecorderFields {
            name: r.get("name"),
            uri: r.get("uri"),
            transport: RecorderTransport::parse(r.get("transport")).unwrap_or_default(),
            username: r.get("username"),
        },
        has_password: r.get("has_password"),
        created_at: Timestamp(r.get("created_at")),
        updated_at: Timestamp(r.get("updated_at")),
    }
}

impl PgStore {
    async fn set_recorder_password(&self, tx: &mut Tx, id: RecorderId, p: &Secret) -> Result<()> {
        let sealed = (!p.expose().is_empty()).then(|| self.keys.seal_recorder_password(id, p));
        sqlx::query("UPDATE recorders SET password_sealed = $1 WHERE id = $2")
            .bind(sealed)
            .bind(id.0)
            .execute(&mut *tx.tx)
            .await
            .map_err(db)?;
        Ok(())
    }
}

#[async_trait]
impl RecorderStore for PgStore {
    async fn list_recorders(&self) -> Result<Vec<Recorder>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT} ORDER BY id")))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(rows.iter().map(recorder).collect())
    }

    async fn get_recorder(&self, id: RecorderId) -> Result<Recorder> {
        sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT} WHERE id = $1")))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .map(|r| recorder(&r))
            .ok_or(StoreError::NotFound("recorder"))
    }

    async fn create_recorder(
        &self,
        f: RecorderFields,
        password: Option<Secret>,
        mut audit: AuditRecord,
    ) -> Result<Recorder> {
        let now = Timestamp::now().0;
        let mut tx = self.begin().await?;
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM recorders")
            .fetch_one(&mut *tx.tx)
            .await
            .map_err(db)?;
        if count as usize >= MAX_RECORDERS {
            return Err(StoreError::Invalid(
                openturret_domain::ValidationError::new(
                    "recorders",
                    format!(
                        "at most {MAX_RECORDERS} recorders (each recorded call goes to every one): remove one first"
                    ),
                ),
            ));
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO recorders (name, uri, transport, username, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(&f.name)
        .bind(&f.uri)
        .bind(f.transport.as_str())
        .bind(&f.username)
        .bind(now)
        .bind(now)
        .fetch_one(&mut *tx.tx)
        .await
        .map_err(db)?;
        let id = RecorderId(id);
        if let Some(p) = &password {
            self.set_recorder_password(&mut tx, id, p).await?;
        }
        audit.object_id = Some(super::object_id(audit.object_id.take(), id.0));
        self.audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        self.get_recorder(id).await
    }

    async fn update_recorder(
        &self,
        id: RecorderId,
        f: RecorderFields,
        password: Option<Secret>,
        audit: AuditRecord,
    ) -> Result<Recorder> {
        let mut tx = self.begin().await?;
        let r = sqlx::query(
            "UPDATE recorders SET name = $1, uri = $2, transport = $3, username = $4, updated_at = $5
             WHERE id = $6",
        )
        .bind(&f.name)
        .bind(&f.uri)
        .bind(f.transport.as_str())
        .bind(&f.username)
        .bind(Timestamp::now().0)
        .bind(id.0)
        .execute(&mut *tx.tx)
        .await
        .map_err(db)?;
        one_row(r, "recorder")?;
        if let Some(p) = &password {
            self.set_recorder_password(&mut tx, id, p).await?;
        }
        self.audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        self.get_recorder(id).await
    }

    async fn delete_recorder(&self, id: RecorderId, audit: AuditRecord) -> Result<()> {
        self.delete_audited(
            "DELETE FROM recorders WHERE id = $1",
            &[id.0],
            "recorder",
            &audit,
        )
        .await
    }

    async fn recorders_with_passwords(&self) -> Result<Vec<(Recorder, Option<Secret>)>> {
        let rows = sqlx::query(
            "SELECT id, name, uri, transport, username, password_sealed,
               password_sealed IS NOT NULL AS has_password, created_at, updated_at
             FROM recorders ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                let rec = recorder(r);
                let sealed: Option<Vec<u8>> = r.get("password_sealed");
                let pw = match sealed {
                    Some(s) => Some(self.keys.open_recorder_password(rec.id, &s)?),
                    None => None,
                };
                Ok((rec, pw))
            })
            .collect()
    }

    async fn log_recordings(&self, entries: Vec<RecordingLogEntry>) -> Result<()> {
        let mut tx = self.begin().await?;
        for e in &entries {
            sqlx::query(
                "INSERT INTO recording_log (at, call_id, line_id, profile_id, recorder_id, outcome, reason)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(e.at.0)
            .bind(e.call_id)
            .bind(e.line_id.map(|l| l.0))
            .bind(e.profile_id.map(|p| p.0))
            .bind(e.recorder_id.0)
            .bind(&e.outcome)
            .bind(&e.reason)
            .execute(&mut *tx.tx)
            .await
            .map_err(db)?;
        }
        self.commit(tx).await
    }

    async fn list_recording_log(
        &self,
        from: Timestamp,
        to: Timestamp,
        profile: Option<openturret_domain::ProfileId>,
        limit: i64,
    ) -> Result<Vec<RecordingLogEntry>> {
        let rows = sqlx::query(
            "SELECT * FROM recording_log WHERE at >= $1 AND at < $2 AND ($3::BIGINT IS NULL OR profile_id = $3)
             ORDER BY at DESC, id DESC LIMIT $4",
        )
        .bind(from.0)
        .bind(to.0)
        .bind(profile.map(|p| p.0))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows
            .iter()
            .map(|r| RecordingLogEntry {
                at: Timestamp(r.get("at")),
                call_id: r.get("call_id"),
                line_id: r
                    .get::<Option<i64>, _>("line_id")
                    .map(openturret_domain::LineId),
                profile_id: r
                    .get::<Option<i64>, _>("profile_id")
                    .map(openturret_domain::ProfileId),
                recorder_id: RecorderId(r.get("recorder_id")),
                outcome: r.get("outcome"),
                reason: r.get("reason"),
            })
            .collect())
    }

    async fn purge_recording_log_before(
        &self,
        cutoff: Timestamp,
        audit: AuditRecord,
    ) -> Result<u64> {
        self.purge("DELETE FROM recording_log WHERE at < $1", cutoff, audit)
            .await
    }

    async fn set_recording_notice(
        &self,
        samples: Option<Vec<i16>>,
        audit: AuditRecord,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        match samples {
            Some(s) => {
                let bytes: Vec<u8> = s.iter().flat_map(|x| x.to_le_bytes()).collect();
                sqlx::query(
                    "INSERT INTO recording_notice (id, samples, uploaded_at) VALUES (1, $1, $2)
                     ON CONFLICT (id) DO UPDATE SET samples = excluded.samples,
                       uploaded_at = excluded.uploaded_at",
                )
                .bind(bytes)
                .bind(Timestamp::now().0)
                .execute(&mut *tx.tx)
                .await
                .map_err(db)?;
            }
            None => {
                sqlx::query("DELETE FROM recording_notice")
                    .execute(&mut *tx.tx)
                    .await
                    .map_err(db)?;
            }
        }
        self.audit(&mut tx, &audit).await?;
        self.commit(tx).await
    }

    async fn recording_notice(&self) -> Result<Option<(Vec<i16>, Timestamp)>> {
        let row: Option<(Vec<u8>, i64)> =
            sqlx::query_as("SELECT samples, uploaded_at FROM recording_notice WHERE id = 1")
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        Ok(row.map(|(b, at)| {
            (
                b.chunks_exact(2)
                    .map(|c| i16::from_le_bytes([c[0], c[1]]))
                    .collect(),
                Timestamp(at),
            )
        }))
    }
}
