//! API keys (issue 7): stored by the SHA-256 of their token, with the scope
//! as JSON.

use async_trait::async_trait;
use openturret_domain::audit::AuditRecord;
use openturret_domain::model::{ApiKey, ApiKeyScope};
use openturret_domain::{ApiKeyId, LineId, Timestamp};
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::{PgStore, db, one_row};
use crate::{ApiKeyStore, Result, StoreError};

const SELECT: &str =
    "SELECT id, name, scope, expires_at, created_at, revoked_at, last_used_at FROM api_keys";

fn scope_json(s: &ApiKeyScope) -> String {
    json!({
        "lines": s.lines.as_ref().map(|l| l.iter().map(|x| x.0).collect::<Vec<_>>()),
        "events": s.events,
        "cdrs": s.cdrs,
    })
    .to_string()
}

fn scope_of(text: &str) -> Result<ApiKeyScope> {
    let bad = || StoreError::Integrity("an API key's scope is unreadable".into());
    let v: Value = serde_json::from_str(text).map_err(|_| bad())?;
    let lines = match &v["lines"] {
        Value::Null => None,
        Value::Array(a) => Some(a.iter().filter_map(|x| x.as_i64().map(LineId)).collect()),
        _ => return Err(bad()),
    };
    let events = v["events"]
        .as_array()
        .ok_or_else(bad)?
        .iter()
        .filter_map(|e| e.as_str().map(str::to_string))
        .collect();
    Ok(ApiKeyScope {
        lines,
        events,
        cdrs: v["cdrs"].as_bool().unwrap_or(false),
    })
}

fn key(r: &PgRow) -> Result<ApiKey> {
    Ok(ApiKey {
        id: ApiKeyId(r.get("id")),
        name: r.get("name"),
        scope: scope_of(r.get::<&str, _>("scope"))?,
        expires_at: r.get::<Option<i64>, _>("expires_at").map(Timestamp),
        created_at: Timestamp(r.get("created_at")),
        revoked_at: r.get::<Option<i64>, _>("revoked_at").map(Timestamp),
        last_used_at: r.get::<Option<i64>, _>("last_used_at").map(Timestamp),
    })
}

#[async_trait]
impl ApiKeyStore for PgStore {
    async fn create_api_key(
        &self,
        name: &str,
        scope: &ApiKeyScope,
        expires_at: Option<Timestamp>,
        token_hash: [u8; 32],
        mut audit: AuditRecord,
    ) -> Result<ApiKey> {
        let mut tx = self.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO api_keys (name, token_hash, scope, expires_at, created_at)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(name)
        .bind(&token_hash[..])
        .bind(scope_json(scope))
        .bind(expires_at.map(|t| t.0))
        .bind(Timestamp::now().0)
        .fetch_one(&mut *tx.tx)
        .await
        .map_err(db)?;
        audit.object_id = Some(super::object_id(audit.object_id.take(), id));
        self.audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        self.get_api_key(ApiKeyId(id)).await
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKey>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT} ORDER BY id DESC")))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(key).collect()
    }

    async fn get_api_key(&self, id: ApiKeyId) -> Result<ApiKey> {
        let r = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT} WHERE id = $1")))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .ok_or(StoreError::NotFound("API key"))?;
        key(&r)
    }

    async fn revoke_api_key(&self, id: ApiKeyId, audit: AuditRecord) -> Result<()> {
        let mut tx = self.begin().await?;
        let r =
            sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(Timestamp::now().0)
                .bind(id.0)
                .execute(&mut *tx.tx)
                .await
                .map_err(db)?;
        one_row(r, "API key")?;
        self.audit(&mut tx, &audit).await?;
        self.commit(tx).await
    }

    async fn api_key_by_hash(&self, token_hash: [u8; 32]) -> Result<Option<ApiKey>> {
        let r = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SELECT} WHERE token_hash = $1"
        )))
        .bind(&token_hash[..])
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        r.as_ref().map(key).transpose()
    }

    async fn touch_api_key(&self, id: ApiKeyId, at: Timestamp) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
            .bind(at.0)
            .bind(id.0)
            .execute(&mut *tx.tx)
            .await
            .map_err(db)?;
        self.commit(tx).await
    }
}
