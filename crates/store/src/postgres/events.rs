//! The error log on PostgreSQL: `seq` from a sequence, so writers on
//! several nodes never take the same one.

use async_trait::async_trait;
use openturret_domain::Timestamp;
use openturret_domain::audit::AuditRecord;
use openturret_domain::model::{EventEntry, EventFilter, EventLevel, Folded};
use sqlx::postgres::PgRow;
use sqlx::{Postgres, QueryBuilder};

use super::{PgStore, db};
use crate::{EventStore, Result, StoreError};

fn entry(r: &PgRow) -> Result<EventEntry> {
    crate::event_entry_of_row!(r)
}

#[async_trait]
impl EventStore for PgStore {
    async fn write_events(&self, writes: Vec<(Option<i64>, Folded)>) -> Result<Vec<EventEntry>> {
        let mut tx = self.begin().await?;
        let mut written = Vec::with_capacity(writes.len());
        for (into, f) in writes {
            let props = serde_json::to_string(&f.event.properties)
                .map_err(|e| StoreError::Integrity(e.to_string()))?;
            let count = i64::try_from(f.count).unwrap_or(i64::MAX);
            let folded = match into {
                Some(id) => sqlx::query(
                    "UPDATE event_log SET seq = nextval('event_log_seq'), count = count + $1,
                     last_at = GREATEST(last_at, $2), first_at = LEAST(first_at, $3),
                     properties = $4 WHERE id = $5 RETURNING *",
                )
                .bind(count)
                .bind(f.last_at.0)
                .bind(f.first_at.0)
                .bind(&props)
                .bind(id)
                .fetch_optional(&mut *tx.tx)
                .await
                .map_err(db)?,
                None => None,
            };
            let row = match folded {
                Some(r) => r,
                None => sqlx::query(
                    "INSERT INTO event_log (seq, component, level, event_type, object, message,
                     properties, count, first_at, last_at)
                     VALUES (nextval('event_log_seq'), $1, $2, $3, $4, $5, $6, $7, $8, $9)
                     RETURNING *",
                )
                .bind(&f.event.component)
                .bind(f.event.level.as_str())
                .bind(&f.event.event_type)
                .bind(&f.event.object)
                .bind(&f.event.message)
                .bind(&props)
                .bind(count)
                .bind(f.first_at.0)
                .bind(f.last_at.0)
                .fetch_one(&mut *tx.tx)
                .await
                .map_err(db)?,
            };
            written.push(entry(&row)?);
        }
        self.commit(tx).await?;
        Ok(written)
    }

    async fn list_events(&self, f: &EventFilter) -> Result<Vec<EventEntry>> {
        let mut b: QueryBuilder<Postgres> = QueryBuilder::new("SELECT * FROM event_log WHERE TRUE");
        if let Some(l) = f.level {
            b.push(" AND level = ").push_bind(l.as_str());
        }
        if let Some(l) = f.at_least {
            let levels: Vec<String> = EventLevel::ALL
                .into_iter()
                .filter(|x| *x <= l)
                .map(|x| x.as_str().to_string())
                .collect();
            b.push(" AND level = ANY(").push_bind(levels).push(")");
        }
        if let Some(v) = &f.component {
            b.push(" AND component = ").push_bind(v.clone());
        }
        if let Some(v) = &f.event_type {
            b.push(" AND event_type = ").push_bind(v.clone());
        }
        if let Some(v) = &f.object {
            b.push(" AND object = ").push_bind(v.clone());
        }
        if let Some(v) = f.from {
            b.push(" AND last_at >= ").push_bind(v.0);
        }
        if let Some(v) = f.to {
            b.push(" AND last_at < ").push_bind(v.0);
        }
        if let Some(v) = f.before_seq {
            b.push(" AND seq < ").push_bind(v);
        }
        match f.after_seq {
            Some(v) => b.push(" AND seq > ").push_bind(v).push(" ORDER BY seq ASC"),
            None => b.push(" ORDER BY seq DESC"),
        };
        b.push(" LIMIT ").push_bind(f.limit);
        let rows = b.build().fetch_all(&self.pool).await.map_err(db)?;
        rows.iter().map(entry).collect()
    }

    async fn count_events(&self, level: EventLevel, since: Timestamp) -> Result<(u64, u64)> {
        let (entries, times): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COALESCE(SUM(count), 0)::BIGINT FROM event_log
             WHERE level = $1 AND last_at >= $2",
        )
        .bind(level.as_str())
        .bind(since.0)
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        Ok((entries as u64, times as u64))
    }

    async fn purge_events_before(&self, cutoff: Timestamp, audit: AuditRecord) -> Result<u64> {
        self.purge("DELETE FROM event_log WHERE last_at < $1", cutoff, audit)
            .await
    }
}
