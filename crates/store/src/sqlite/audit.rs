//! The audit log: append, filter, verify the chain.

use async_trait::async_trait;
use openturret_domain::Timestamp;
use openturret_domain::audit::*;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Sqlite};

use super::{SqliteStore, db, to32};
use crate::{AuditFilter, AuditStore, AuditVerification, Result};

fn entry(r: &SqliteRow) -> Result<AuditEntry> {
    crate::audit_entry_of_row!(r)
}

#[async_trait]
impl AuditStore for SqliteStore {
    fn observe(&self, observer: crate::ChangeObserver) {
        *self.observer.write().unwrap_or_else(|p| p.into_inner()) = Some(observer);
    }

    async fn signal(&self, _topic: &str, _notes: &[&[u8]]) -> Result<()> {
        Ok(())
    }

    async fn append_audit(&self, record: AuditRecord) -> Result<i64> {
        let mut tx = self.begin().await?;
        let seq = self.audit(&mut tx, &record).await?;
        self.commit(tx).await?;
        Ok(seq)
    }

    async fn append_audits(&self, records: Vec<AuditRecord>) -> Result<()> {
        let mut tx = self.begin().await?;
        for r in &records {
            self.audit(&mut tx, r).await?;
        }
        self.commit(tx).await
    }

    async fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let mut b: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT * FROM audit_log WHERE 1 = 1");
        if let Some(v) = &f.actor {
            b.push(" AND actor = ").push_bind(v.clone());
        }
        if let Some(v) = &f.event_type {
            b.push(" AND event_type = ").push_bind(v.clone());
        }
        if let Some(v) = &f.object_type {
            b.push(" AND object_type = ").push_bind(v.clone());
        }
        if let Some(v) = &f.object_id {
            b.push(" AND object_id = ").push_bind(v.clone());
        }
        if let Some(v) = f.from {
            b.push(" AND at >= ").push_bind(v.0);
        }
        if let Some(v) = f.to {
            b.push(" AND at < ").push_bind(v.0);
        }
        if let Some(p) = f.about_profile {
            b.push(" AND ((object_type = 'profile' AND object_id = ")
                .push_bind(p.to_string())
                .push(") OR object_id LIKE ")
                .push_bind(format!("{p}/%"))
                .push(" OR actor = ")
                .push_bind(format!("profile:{p}"))
                .push(")");
        }
        if let Some(v) = f.before_seq {
            b.push(" AND seq < ").push_bind(v);
        }
        b.push(" ORDER BY seq DESC LIMIT ").push_bind(f.limit);
        let rows = b.build().fetch_all(&self.reader).await.map_err(db)?;
        rows.iter().map(entry).collect()
    }

    async fn purge_audit_before(&self, cutoff: Timestamp, mut audit: AuditRecord) -> Result<u64> {
        let mut tx = self.begin().await?;
        let (first, max): (Option<i64>, Option<i64>) =
            sqlx::query_as("SELECT MIN(seq), MAX(seq) FROM audit_log")
                .fetch_one(&mut *tx.tx)
                .await
                .map_err(db)?;
        let (Some(first), Some(max)) = (first, max) else {
            return Ok(0);
        };
        // The first entry kept: the oldest at or after the cutoff (by
        // sequence, so the kept chain has no hole); with none, all go.
        let keep: Option<i64> = sqlx::query_scalar("SELECT MIN(seq) FROM audit_log WHERE at >= ?")
            .bind(cutoff.0)
            .fetch_one(&mut *tx.tx)
            .await
            .map_err(db)?;
        let keep = keep.unwrap_or(max + 1);
        if keep <= first {
            return Ok(0);
        }
        let prev_mac: Vec<u8> = sqlx::query_scalar("SELECT mac FROM audit_log WHERE seq = ?")
            .bind(keep - 1)
            .fetch_one(&mut *tx.tx)
            .await
            .map_err(db)?;
        let n = sqlx::query("DELETE FROM audit_log WHERE seq < ?")
            .bind(keep)
            .execute(&mut *tx.tx)
            .await
            .map_err(db)?
            .rows_affected();
        sqlx::query(
            "INSERT OR REPLACE INTO audit_anchor (id, first_seq, prev_mac) VALUES (1, ?, ?)",
        )
        .bind(keep)
        .bind(&prev_mac)
        .execute(&mut *tx.tx)
        .await
        .map_err(db)?;
        // The purge's own entry names the anchor, inside the chain: moving
        // the anchor later would need a forged entry.
        audit.object_type = "audit_log".into();
        audit.object_id = Some(keep.to_string());
        audit.changes = vec![format!("deleted:{n}")];
        self.audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(n)
    }

    async fn verify_audit(&self) -> Result<AuditVerification> {
        let anchor: Option<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT first_seq, prev_mac FROM audit_anchor WHERE id = 1")
                .fetch_optional(&self.reader)
                .await
                .map_err(db)?;
        let anchor = match anchor {
            Some((first, mac)) => Some((first, to32(&mac)?)),
            None => None,
        };
        let mut v = crate::chain::Verify::new(self.keys.audit_key(), anchor);
        loop {
            let rows = sqlx::query("SELECT * FROM audit_log WHERE seq > ? ORDER BY seq LIMIT 1000")
                .bind(v.last)
                .fetch_all(&self.reader)
                .await
                .map_err(db)?;
            if rows.is_empty() {
                break;
            }
            for r in &rows {
                if let Some(broken) = v.feed(&entry(r)?) {
                    return Ok(broken);
                }
            }
        }
        Ok(v.finish(self.head.read()?))
    }
}
