//! Local contacts and speed dial keys (per profile) and global contacts.

use async_trait::async_trait;
use openturret_domain::audit::AuditRecord;
use openturret_domain::model::*;
use openturret_domain::words;
use openturret_domain::{GlobalContactId, LocalContactId, ProfileId, SpeedDialId, Timestamp};
use sqlx::postgres::PgRow;
use sqlx::{Postgres, QueryBuilder, Row};

use super::import::{insert_chunk, insert_words};
use super::{PgStore, db, one_row};
use crate::{ContactStore, GlobalContactQuery, Result, StoreError};

fn fields(r: &PgRow) -> ContactFields {
    ContactFields {
        name: r.get("name"),
        number: r.get("number"),
        field3: r.get("field3"),
        field4: r.get("field4"),
    }
}

fn local(r: &PgRow) -> LocalContact {
    LocalContact {
        id: LocalContactId(r.get("id")),
        profile_id: ProfileId(r.get("profile_id")),
        fields: fields(r),
        created_at: Timestamp(r.get("created_at")),
        updated_at: Timestamp(r.get("updated_at")),
    }
}

fn global(r: &PgRow) -> GlobalContact {
    GlobalContact {
        id: GlobalContactId(r.get("id")),
        fields: fields(r),
        created_at: Timestamp(r.get("created_at")),
        updated_at: Timestamp(r.get("updated_at")),
    }
}

fn speed_dial(r: &PgRow) -> Result<SpeedDial> {
    let kind: String = r.get("kind");
    Ok(SpeedDial {
        id: SpeedDialId(r.get("id")),
        profile_id: ProfileId(r.get("profile_id")),
        fields: SpeedDialFields {
            kind: SpeedDialKind::parse(&kind)
                .map_err(|_| StoreError::Integrity(format!("speed dial kind {kind:?}")))?,
            position: r.get::<i64, _>("position") as u32,
            name: r.get("name"),
            number: r.get("number"),
        },
    })
}

/// Contacts whose name has a word beginning with `query`, in the order of
/// their smallest matching key (`domain::words`): two ordered index range
/// scans, the names' keys and the later words' keys, merged by SQLite and
/// cut at the page's length. A name matching at two words comes up twice
/// and is kept at its smallest key only; a page short of such duplicates
/// reads on.
/// (Each side is cut at the page on its own, so PostgreSQL merges two
/// short ordered index scans instead of sorting every match; and the
/// row bound is never below the prefix, where PostgreSQL would start the
/// scan — both measured in `benches/cluster.rs`.)
const WORD_SEARCH: &str = "
    SELECT c.*, m.k AS match_key FROM (
        (SELECT name_key AS k, id FROM global_contacts
         WHERE name_key >= $1 AND name_key < $2 AND (name_key, id) > ($3, $4)
         ORDER BY name_key, id LIMIT $5)
        UNION ALL
        (SELECT key, contact_id FROM global_contact_words
         WHERE key >= $1 AND key < $2 AND (key, contact_id) > ($3, $4)
         ORDER BY key, contact_id LIMIT $5)
        ORDER BY 1, 2 LIMIT $5
    ) AS m JOIN global_contacts AS c ON c.id = m.id
    ORDER BY m.k, m.id";

impl PgStore {
    async fn search_by_words(
        &self,
        query: &str,
        q: &GlobalContactQuery,
    ) -> Result<Vec<GlobalContact>> {
        // Where the page starts: after the cursor contact's place.
        let mut from = match q.after {
            None => (query.to_string(), i64::MIN),
            Some(after) => {
                let key: Option<String> =
                    sqlx::query_scalar("SELECT name_key FROM global_contacts WHERE id = $1")
                        .bind(after.0)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(db)?;
                // A cursor contact gone or renamed since: nothing follows it.
                match key.as_deref().and_then(|k| words::match_key(k, query)) {
                    Some(k) => (k.to_string(), after.0),
                    None => return Ok(Vec::new()),
                }
            }
        };
        let mut found = Vec::new();
        while (found.len() as i64) < q.limit {
            let want = q.limit - found.len() as i64;
            let rows = sqlx::query(WORD_SEARCH)
                .bind(query)
                .bind(prefix_end(query))
                .bind(&from.0)
                .bind(from.1)
                .bind(want)
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
            let last = rows.len() as i64 == want;
            for r in &rows {
                let k: String = r.get("match_key");
                let name_key: String = r.get("name_key");
                if words::match_key(&name_key, query) == Some(k.as_str()) {
                    found.push(global(r));
                }
                from = (k, r.get("id"));
            }
            if !last {
                break;
            }
        }
        Ok(found)
    }
}

/// The exclusive upper bound of all strings starting with `prefix`.
fn prefix_end(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

#[async_trait]
impl ContactStore for PgStore {
    async fn list_local_contacts(&self, profile: ProfileId) -> Result<Vec<LocalContact>> {
        let rows = sqlx::query(
            "SELECT * FROM local_contacts WHERE profile_id = $1 ORDER BY lower(name), id",
        )
        .bind(profile.0)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows.iter().map(local).collect())
    }

    async fn list_all_local_contacts(&self) -> Result<Vec<LocalContact>> {
        let rows = sqlx::query("SELECT * FROM local_contacts ORDER BY profile_id, id")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(rows.iter().map(local).collect())
    }

    async fn get_local_contact(
        &self,
        profile: ProfileId,
        id: LocalContactId,
    ) -> Result<LocalContact> {
        sqlx::query("SELECT * FROM local_contacts WHERE profile_id = $1 AND id = $2")
            .bind(profile.0)
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .map(|r| local(&r))
            .ok_or(StoreError::NotFound("contact"))
    }

    async fn create_local_contact(
        &self,
        profile: ProfileId,
        f: ContactFields,
        mut audit: AuditRecord,
    ) -> Result<LocalContact> {
        let now = Timestamp::now();
        let mut tx = self.begin().await?;
        self.require_profile(&mut tx, profile).await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO local_contacts (profile_id, name, number, number_key, field3, field4,
               created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(profile.0)
        .bind(&f.name)
        .bind(&f.number)
        .bind(self.plan.key(&f.number))
        .bind(&f.field3)
        .bind(&f.field4)
        .bind(now.0)
        .bind(now.0)
        .fetch_one(&mut *tx.tx)
        .await
        .map_err(db)?;
        audit.object_id = Some(super::object_id(audit.object_id.take(), id));
        self.audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        self.get_local_contact(profile, LocalContactId(id)).await
    }

    async fn update_local_contact(
        &self,
        profile: ProfileId,
        id: LocalContactId,
        f: ContactFields,
        audit: AuditRecord,
    ) -> Result<LocalContact> {
        let mut tx = self.begin().await?;
        let r = sqlx::query(
            "UPDATE local_contacts SET name = $1, number = $2, number_key = $3, field3 = $4,
               field4 = $5, updated_at = $6 WHERE profile_id = $7 AND id = $8",
        )
        .bind(&f.name)
        .bind(&f.number)
        .bind(self.plan.key(&f.number))
        .bind(&f.field3)
        .bind(&f.field4)
        .bind(Timestamp::now().0)
        .bind(profile.0)
        .bind(id.0)
        .execute(&mut *tx.tx)
        .await
        .map_err(db)?;
        one_row(r, "contact")?;
        self.audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        self.get_local_contact(profile, id).await
    }

    async fn delete_local_contact(
        &self,
        profile: ProfileId,
        id: LocalContactId,
        audit: AuditRecord,
    ) -> Result<()> {
        self.delete_recorded(
            "DELETE FROM local_contacts WHERE profile_id = $1 AND id = $2",
            &[profile.0, id.0],
            "contact",
            &audit,
            Some(("local_contact", id.0)),
        )
        .await
    }

    async fn list_speed_dials(&self, profile: ProfileId) -> Result<Vec<SpeedDial>> {
        let rows =
            sqlx::query("SELECT * FROM speed_dials WHERE profile_id = $1 ORDER BY kind, position")
                .bind(profile.0)
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
        rows.iter().map(speed_dial).collect()
    }

    async fn get_speed_dial(&self, profile: ProfileId, id: SpeedDialId) -> Result<SpeedDial> {
        let row = sqlx::query("SELECT * FROM speed_dials WHERE profile_id = $1 AND id = $2")
            .bind(profile.0)
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .ok_or(StoreError::NotFound("speed dial"))?;
        speed_dial(&row)
    }

    async fn create_speed_dial(
        &self,
        profile: ProfileId,
        f: SpeedDialFields,
        mut audit: AuditRecord,
    ) -> Result<SpeedDial> {
        let mut tx = self.begin().await?;
        self.require_profile(&mut tx, profile).await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO speed_dials (profile_id, kind, position, name, number, created_at)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(profile.0)
        .bind(f.kind.as_str())
        .bind(f.position as i64)
        .bind(&f.name)
        .bind(&f.number)
        .bind(openturret_domain::Timestamp::now().0)
        .fetch_one(&mut *tx.tx)
        .await
        .map_err(db)?;
        audit.object_id = Some(super::object_id(audit.object_id.take(), id));
        self.audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        self.get_speed_dial(profile, SpeedDialId(id)).await
    }

    async fn update_speed_dial(
        &self,
        profile: ProfileId,
        id: SpeedDialId,
        f: SpeedDialFields,
        audit: AuditRecord,
    ) -> Result<SpeedDial> {
        let mut tx = self.begin().await?;
        let r = sqlx::query(
            "UPDATE speed_dials SET kind = $1, position = $2, name = $3, number = $4
             WHERE profile_id = $5 AND id = $6",
        )
        .bind(f.kind.as_str())
        .bind(f.position as i64)
        .bind(&f.name)
        .bind(&f.number)
        .bind(profile.0)
        .bind(id.0)
        .execute(&mut *tx.tx)
        .await
        .map_err(db)?;
        one_row(r, "speed dial")?;
        self.audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        self.get_speed_dial(profile, id).await
    }

    async fn delete_speed_dial(
        &self,
        profile: ProfileId,
        id: SpeedDialId,
        audit: AuditRecord,
    ) -> Result<()> {
        self.delete_recorded(
            "DELETE FROM speed_dials WHERE profile_id = $1 AND id = $2",
            &[profile.0, id.0],
            "speed dial",
            &audit,
            Some(("speed_dial", id.0)),
        )
        .await
    }

    async fn search_global_contacts(&self, q: &GlobalContactQuery) -> Result<Vec<GlobalContact>> {
        let key = match (&q.number_prefix, &q.name) {
            (Some(_), _) => "number_key",
            (None, Some(name)) => return self.search_by_words(&words::query_key(name), q).await,
            (None, None) => "name_key",
        };
        let prefix = q.number_prefix.as_ref().map(|n| self.plan.key(n));
        let mut b: QueryBuilder<Postgres> =
            QueryBuilder::new("SELECT * FROM global_contacts WHERE 1 = 1");
        if let Some(p) = &prefix {
            b.push(format!(" AND {key} >= ")).push_bind(p.clone());
            b.push(format!(" AND {key} < ")).push_bind(prefix_end(p));
        }
        if let Some(after) = q.after {
            // Keyset paging: continue after the cursor contact's (key, id).
            b.push(format!(
                " AND ({key}, id) > ((SELECT {key} FROM global_contacts WHERE id = "
            ))
            .push_bind(after.0)
            .push("), ")
            .push_bind(after.0)
            .push(")");
        }
        b.push(format!(" ORDER BY {key}, id LIMIT "))
            .push_bind(q.limit);
        let rows = b.build().fetch_all(&self.pool).await.map_err(db)?;
        Ok(rows.iter().map(global).collect())
    }

    async fn get_global_contact(&self, id: GlobalContactId) -> Result<GlobalContact> {
        sqlx::query("SELECT * FROM global_contacts WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .map(|r| global(&r))
            .ok_or(StoreError::NotFound("global contact"))
    }

    async fn create_global_contact(
        &self,
        f: ContactFields,
        mut audit: AuditRecord,
    ) -> Result<GlobalContact> {
        let now = Timestamp::now();
        let mut tx = self.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO global_contacts (name, name_key, number, number_key, field3, field4,
               created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(&f.name)
        .bind(words::name_key(&f.name))
        .bind(&f.number)
        .bind(self.plan.key(&f.number))
        .bind(&f.field3)
        .bind(&f.field4)
        .bind(now.0)
        .bind(now.0)
        .fetch_one(&mut *tx.tx)
        .await
        .map_err(db)?;
        insert_words(&mut tx, id, &words::name_key(&f.name)).await?;
        audit.object_id = Some(super::object_id(audit.object_id.take(), id));
        self.audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        self.get_global_contact(GlobalContactId(id)).await
    }

    async fn insert_global_contacts(
        &self,
        contacts: Vec<ContactFields>,
        audit: AuditRecord,
    ) -> Result<u64> {
        let now = Timestamp::now();
        let mut tx = self.begin().await?;
        sqlx::query("LOCK TABLE global_contacts IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx.tx)
            .await
            .map_err(db)?;
        let base: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM global_contacts")
            .fetch_one(&mut *tx.tx)
            .await
            .map_err(db)?;
        let rows: Vec<(u64, ContactFields)> = contacts.into_iter().map(|f| (0, f)).collect();
        for (i, chunk) in rows.chunks(1000).enumerate() {
            insert_chunk(self, &mut tx, now.0, base + 1 + i as i64 * 1000, chunk).await?;
        }
        super::import::move_identity(&mut tx).await?;
        self.audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(rows.len() as u64)
    }

    async fn import_local_contacts(
        &self,
        profile: ProfileId,
        rows: Vec<(u64, ContactFields)>,
        mode: crate::OnDuplicate,
        audit: AuditRecord,
    ) -> Result<std::result::Result<crate::ImportCounts, Vec<u64>>> {
        self.import_locals(profile, rows, mode, audit).await
    }

    async fn import_speed_dials(
        &self,
        profile: ProfileId,
        rows: Vec<(u64, SpeedDialFields)>,
        mode: crate::OnDuplicate,
        audit: AuditRecord,
    ) -> Result<std::result::Result<crate::ImportCounts, Vec<u64>>> {
        self.import_keys(profile, rows, mode, audit).await
    }

    async fn begin_global_import(&self) -> Result<Box<dyn crate::GlobalImport + '_>> {
        Ok(Box::new(self.start_import().await?))
    }

    async fn update_global_contact(
        &self,
        id: GlobalContactId,
        f: ContactFields,
        audit: AuditRecord,
    ) -> Result<GlobalContact> {
        let mut tx = self.begin().await?;
        let r = sqlx::query(
            "UPDATE global_contacts SET name = $1, name_key = $2, number = $3, number_key = $4,
               field3 = $5, field4 = $6, updated_at = $7 WHERE id = $8",
        )
        .bind(&f.name)
        .bind(words::name_key(&f.name))
        .bind(&f.number)
        .bind(self.plan.key(&f.number))
        .bind(&f.field3)
        .bind(&f.field4)
        .bind(Timestamp::now().0)
        .bind(id.0)
        .execute(&mut *tx.tx)
        .await
        .map_err(db)?;
        one_row(r, "global contact")?;
        sqlx::query("DELETE FROM global_contact_words WHERE contact_id = $1")
            .bind(id.0)
            .execute(&mut *tx.tx)
            .await
            .map_err(db)?;
        insert_words(&mut tx, id.0, &words::name_key(&f.name)).await?;
        self.audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        self.get_global_contact(id).await
    }

    async fn delete_global_contact(&self, id: GlobalContactId, audit: AuditRecord) -> Result<()> {
        self.delete_recorded(
            "DELETE FROM global_contacts WHERE id = $1",
            &[id.0],
            "global contact",
            &audit,
            Some(("global_contact", id.0)),
        )
        .await
    }
}
