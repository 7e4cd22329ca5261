//! Local contacts and speed dial keys (per profile) and global contacts.

use async_trait::async_trait;
use openturret_domain::audit::AuditRecord;
use openturret_domain::model::*;
use openturret_domain::{GlobalContactId, LocalContactId, ProfileId, SpeedDialId, Timestamp};
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};

use super::{SqliteStore, db, one_row};
use crate::{ContactStore, GlobalContactQuery, Result, StoreError};

fn fields(r: &SqliteRow) -> ContactFields {
    ContactFields {
        name: r.get("name"),
        number: r.get("number"),
        field3: r.get("field3"),
        field4: r.get("field4"),
    }
}

fn local(r: &SqliteRow) -> LocalContact {
    LocalContact {
        id: LocalContactId(r.get("id")),
        profile_id: ProfileId(r.get("profile_id")),
        fields: fields(r),
        created_at: Timestamp(r.get("created_at")),
        updated_at: Timestamp(r.get("updated_at")),
    }
}

fn global(r: &SqliteRow) -> GlobalContact {
    GlobalContact {
        id: GlobalContactId(r.get("id")),
        fields: fields(r),
        created_at: Timestamp(r.get("created_at")),
        updated_at: Timestamp(r.get("updated_at")),
    }
}

fn speed_dial(r: &SqliteRow) -> Result<SpeedDial> {
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

/// The exclusive upper bound of all strings starting with `prefix`.
fn prefix_end(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

#[async_trait]
impl ContactStore for SqliteStore {
    async fn list_local_contacts(&self, profile: ProfileId) -> Result<Vec<LocalContact>> {
        let rows = sqlx::query(
            "SELECT * FROM local_contacts WHERE profile_id = ? ORDER BY name COLLATE NOCASE, id",
        )
        .bind(profile.0)
        .fetch_all(&self.reader)
        .await
        .map_err(db)?;
        Ok(rows.iter().map(local).collect())
    }

    async fn list_all_local_contacts(&self) -> Result<Vec<LocalContact>> {
        let rows = sqlx::query("SELECT * FROM local_contacts ORDER BY profile_id, id")
            .fetch_all(&self.reader)
            .await
            .map_err(db)?;
        Ok(rows.iter().map(local).collect())
    }

    async fn get_local_contact(
        &self,
        profile: ProfileId,
        id: LocalContactId,
    ) -> Result<LocalContact> {
        sqlx::query("SELECT * FROM local_contacts WHERE profile_id = ? AND id = ?")
            .bind(profile.0)
            .bind(id.0)
            .fetch_optional(&self.reader)
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
               created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
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
            "UPDATE local_contacts SET name = ?, number = ?, number_key = ?, field3 = ?,
               field4 = ?, updated_at = ? WHERE profile_id = ? AND id = ?",
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
            "DELETE FROM local_contacts WHERE profile_id = ? AND id = ?",
            &[profile.0, id.0],
            "contact",
            &audit,
            Some(("local_contact", id.0)),
        )
        .await
    }

    async fn list_speed_dials(&self, profile: ProfileId) -> Result<Vec<SpeedDial>> {
        let rows =
            sqlx::query("SELECT * FROM speed_dials WHERE profile_id = ? ORDER BY kind, position")
                .bind(profile.0)
                .fetch_all(&self.reader)
                .await
                .map_err(db)?;
        rows.iter().map(speed_dial).collect()
    }

    async fn get_speed_dial(&self, profile: ProfileId, id: SpeedDialId) -> Result<SpeedDial> {
        let row = sqlx::query("SELECT * FROM speed_dials WHERE profile_id = ? AND id = ?")
            .bind(profile.0)
            .bind(id.0)
            .fetch_optional(&self.reader)
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
             VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
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
            "UPDATE speed_dials SET kind = ?, position = ?, name = ?, number = ?
             WHERE profile_id = ? AND id = ?",
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
            "DELETE FROM speed_dials WHERE profile_id = ? AND id = ?",
            &[profile.0, id.0],
            "speed dial",
            &audit,
            Some(("speed_dial", id.0)),
        )
        .await
    }

    async fn search_global_contacts(&self, q: &GlobalContactQuery) -> Result<Vec<GlobalContact>> {
        let (key, prefix) = match (&q.number_prefix, &q.name_prefix) {
            (Some(n), _) => ("number_key", Some(self.plan.key(n))),
            (None, Some(n)) => ("name_key", Some(n.to_lowercase())),
            (None, None) => ("name_key", None),
        };
        let mut b: QueryBuilder<Sqlite> =
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
        let rows = b.build().fetch_all(&self.reader).await.map_err(db)?;
        Ok(rows.iter().map(global).collect())
    }

    async fn get_global_contact(&self, id: GlobalContactId) -> Result<GlobalContact> {
        sqlx::query("SELECT * FROM global_contacts WHERE id = ?")
            .bind(id.0)
            .fetch_optional(&self.reader)
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
               created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&f.name)
        .bind(f.name.to_lowercase())
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
        self.get_global_contact(GlobalContactId(id)).await
    }

    async fn insert_global_contacts(
        &self,
        contacts: Vec<ContactFields>,
        audit: AuditRecord,
    ) -> Result<u64> {
        let now = Timestamp::now();
        let mut tx = self.begin().await?;
        let mut n = 0;
        for chunk in contacts.chunks(500) {
            let mut b: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO global_contacts (name, name_key, number, number_key, field3, field4,
                   created_at, updated_at) ",
            );
            b.push_values(chunk, |mut row, f| {
                row.push_bind(f.name.clone())
                    .push_bind(f.name.to_lowercase())
                    .push_bind(f.number.clone())
                    .push_bind(self.plan.key(&f.number))
                    .push_bind(f.field3.clone())
                    .push_bind(f.field4.clone())
                    .push_bind(now.0)
                    .push_bind(now.0);
            });
            n += b
                .build()
                .execute(&mut *tx.tx)
                .await
                .map_err(db)?
                .rows_affected();
        }
        self.audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(n)
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
            "UPDATE global_contacts SET name = ?, name_key = ?, number = ?, number_key = ?,
               field3 = ?, field4 = ?, updated_at = ? WHERE id = ?",
        )
        .bind(&f.name)
        .bind(f.name.to_lowercase())
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
        self.audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        self.get_global_contact(id).await
    }

    async fn delete_global_contact(&self, id: GlobalContactId, audit: AuditRecord) -> Result<()> {
        self.delete_recorded(
            "DELETE FROM global_contacts WHERE id = ?",
            &[id.0],
            "global contact",
            &audit,
            Some(("global_contact", id.0)),
        )
        .await
    }
}
