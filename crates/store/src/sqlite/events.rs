//! The error log: folded component events, outside the audit chain.

use async_trait::async_trait;
use openturret_domain::Timestamp;
use openturret_domain::audit::AuditRecord;
use openturret_domain::model::{EventEntry, EventFilter, EventLevel, Folded};
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Sqlite};

use super::{SqliteStore, db};
use crate::{EventStore, Result, StoreError};

fn entry(r: &SqliteRow) -> Result<EventEntry> {
    crate::event_entry_of_row!(r)
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn write_events(&self, writes: Vec<(Option<i64>, Folded)>) -> Result<Vec<EventEntry>> {
        let mut tx = self.begin().await?;
        let mut seq: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM event_log")
            .fetch_one(&mut *tx.tx)
            .await
            .map_err(db)?;
        let mut written = Vec::with_capacity(writes.len());
        for (into, f) in writes {
            seq += 1;
            let props = serde_json::to_string(&f.event.properties)
                .map_err(|e| StoreError::Integrity(e.to_string()))?;
            let count = i64::try_from(f.count).unwrap_or(i64::MAX);
            let folded = match into {
                Some(id) => sqlx::query(
                    "UPDATE event_log SET seq = ?, count = count + ?, last_at = MAX(last_at, ?),
                     first_at = MIN(first_at, ?), properties = ? WHERE id = ? RETURNING *",
                )
                .bind(seq)
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
                     properties, count, first_at, last_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                     RETURNING *",
                )
                .bind(seq)
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
        let mut b: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT * FROM event_log WHERE 1 = 1");
        if let Some(l) = f.level {
            b.push(" AND level = ").push_bind(l.as_str());
        }
        if let Some(l) = f.at_least {
            let levels: Vec<&str> = EventLevel::ALL
                .into_iter()
                .filter(|x| *x <= l)
                .map(EventLevel::as_str)
                .collect();
            b.push(" AND level IN (");
            let mut sep = b.separated(", ");
            for l in levels {
                sep.push_bind(l);
            }
            b.push(")");
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
        let rows = b.build().fetch_all(&self.reader).await.map_err(db)?;
        rows.iter().map(entry).collect()
    }

    async fn count_events(&self, level: EventLevel, since: Timestamp) -> Result<(u64, u64)> {
        let (entries, times): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COALESCE(SUM(count), 0) FROM event_log WHERE level = ? AND last_at >= ?",
        )
        .bind(level.as_str())
        .bind(since.0)
        .fetch_one(&self.reader)
        .await
        .map_err(db)?;
        Ok((entries as u64, times as u64))
    }

    async fn purge_events_before(&self, cutoff: Timestamp, audit: AuditRecord) -> Result<u64> {
        self.purge("DELETE FROM event_log WHERE last_at < ?", cutoff, audit)
            .await
    }
}
