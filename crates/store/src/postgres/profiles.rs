//! Profiles and their consent records.

use async_trait::async_trait;
use openturret_domain::audit::AuditRecord;
use openturret_domain::model::*;
use openturret_domain::secret::PasswordHash;
use openturret_domain::{ConsentId, ProfileId, Timestamp};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use super::{PgStore, db, one_row};
use crate::{ClientSession, Page, ProfileSort, ProfileStore, Result, StoreError};

fn profile(r: &PgRow) -> Profile {
    Profile {
        id: ProfileId(r.get("id")),
        name: r.get("name"),
        has_contacts_password: r.get("has_cp"),
        has_call_memory_password: r.get("has_cmp"),
        flags: ProfileFlags {
            collect_call_memory: r.get("collect_call_memory"),
            allow_call_memory_deletion: r.get("allow_call_memory_deletion"),
            call_memory_password_protected: r.get("call_memory_password_protected"),
            handsets: r.get::<i64, _>("handsets") as u8,
            speakers: r.get::<i64, _>("speakers") as u8,
        },
        created_at: Timestamp(r.get("created_at")),
        updated_at: Timestamp(r.get("updated_at")),
    }
}

fn consent(r: &PgRow) -> Result<Consent> {
    let channel: String = r.get("channel");
    Ok(Consent {
        id: ConsentId(r.get("id")),
        profile_id: ProfileId(r.get("profile_id")),
        purpose: r.get("purpose"),
        channel: ConsentChannel::parse(&channel)
            .map_err(|_| StoreError::Integrity(format!("consent channel {channel:?}")))?,
        given_at: Timestamp(r.get("given_at")),
        recorded_by: r.get("recorded_by"),
        created_at: Timestamp(r.get("created_at")),
    })
}

async fn erasure_counts(conn: &mut PgConnection, id: ProfileId) -> Result<ProfileErasure> {
    let row = sqlx::query(
        "SELECT
           (SELECT COUNT(*) FROM local_contacts WHERE profile_id = $1) AS lc,
           (SELECT COUNT(*) FROM speed_dials WHERE profile_id = $1) AS sd,
           (SELECT COUNT(*) FROM call_memory WHERE profile_id = $1) AS cm,
           (SELECT COUNT(*) FROM line_assignments WHERE profile_id = $1) AS la,
           (SELECT COUNT(*) FROM consents WHERE profile_id = $1) AS co,
           (SELECT COUNT(*) FROM cdrs WHERE profile_id = $1 OR (profile_id IS NULL
               AND profile_name = (SELECT name FROM profiles WHERE id = $1))) AS cdr,
           (SELECT COUNT(*) FROM profiles WHERE id = $1) AS p",
    )
    .bind(id.0)
    .fetch_one(&mut *conn)
    .await
    .map_err(db)?;
    if row.get::<i64, _>("p") == 0 {
        return Err(StoreError::NotFound("profile"));
    }
    let n = |c: &str| row.get::<i64, _>(c) as u64;
    Ok(ProfileErasure {
        local_contacts: n("lc"),
        speed_dials: n("sd"),
        call_memory_entries: n("cm"),
        line_assignments: n("la"),
        consents: n("co"),
        cdrs_named: n("cdr"),
    })
}

impl PgStore {
    /// Deletes a profile and everything it owns inside `conn`'s
    /// transaction, records the erasure in the ledger (before the commit:
    /// never resurrect) and erases the personal values of the audit entries
    /// it made (its client addresses); the chain keeps their commitments and
    /// still verifies.
    async fn erase_profile(
        &self,
        conn: &mut PgConnection,
        id: ProfileId,
    ) -> Result<ProfileErasure> {
        let counts = erasure_counts(conn, id).await?;
        let name: Option<String> = sqlx::query_scalar("SELECT name FROM profiles WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?;
        self.record_erasure(conn, "profile", id.0, name.as_deref())
            .await?;
        self.erase_profile_rows(conn, id).await?;
        Ok(counts)
    }

    /// The erasure itself, the one path of a deletion and of its re-run
    /// from the ledger after a restore: the personal values of the audit
    /// entries the profile made, its name in call data records, and the
    /// profile with everything it owns.
    async fn erase_profile_rows(&self, conn: &mut PgConnection, id: ProfileId) -> Result<()> {
        sqlx::query(
            "UPDATE audit_log SET actor = '', client_ip = '', client_host = '', pii_salt = NULL
             WHERE actor = $1",
        )
        .bind(format!("profile:{}", id.0))
        .execute(&mut *conn)
        .await
        .map_err(db)?;
        // Call data records stay (they are the business's record of the
        // calls) but no longer name the person.
        sqlx::query(
            "UPDATE cdrs SET profile_name = NULL, profile_id = NULL
             WHERE profile_id = $1
                OR (profile_id IS NULL AND profile_name = (SELECT name FROM profiles WHERE id = $1))",
        )
        .bind(id.0)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
        // The record of forwarding to recorders keeps the call, not who
        // held it.
        sqlx::query("UPDATE recording_log SET profile_id = NULL WHERE profile_id = $1")
            .bind(id.0)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        // ON DELETE CASCADE removes contacts, keys, call memory, line
        // assignments, consents and turret sessions; secure_delete
        // overwrites the pages.
        sqlx::query("DELETE FROM profiles WHERE id = $1")
            .bind(id.0)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        Ok(())
    }
}

async fn write_keys(conn: &mut PgConnection, id: ProfileId, k: &CallMemoryKeys) -> Result<()> {
    sqlx::query(
        "UPDATE profiles SET cm_public_key = $1, cm_wrap_profile = $2, cm_wrap_call_memory = $3
         WHERE id = $4",
    )
    .bind(k.public.map(|p| p.to_vec()))
    .bind(&k.wrapped_by_profile_password)
    .bind(&k.wrapped_by_call_memory_password)
    .bind(id.0)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    Ok(())
}

const SELECT: &str = "SELECT id, name, contacts_password_hash IS NOT NULL AS has_cp,
    call_memory_password_hash IS NOT NULL AS has_cmp, collect_call_memory,
    allow_call_memory_deletion, call_memory_password_protected, handsets, speakers,
    created_at, updated_at
    FROM profiles";

/// Stored turret sessions older than this are swept (a session's longest
/// life is 12 hours).
const CLIENT_SESSION_MAX_MS: i64 = 12 * 3600 * 1000;

#[async_trait]
impl ProfileStore for PgStore {
    async fn save_client_session(&self, token_hash: [u8; 32], s: ClientSession) -> Result<()> {
        let mut tx = self.begin().await?;
        // Sessions past the longest lifetime are swept as others are kept.
        sqlx::query("DELETE FROM client_sessions WHERE started_at < $1")
            .bind(s.started_at.0 - CLIENT_SESSION_MAX_MS)
            .execute(&mut *tx.tx)
            .await
            .map_err(db)?;
        sqlx::query(
            "INSERT INTO client_sessions (token_hash, profile_id, started_at, last_seen, connected)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (token_hash) DO NOTHING",
        )
        .bind(&token_hash[..])
        .bind(s.profile.0)
        .bind(s.started_at.0)
        .bind(s.last_seen.0)
        .bind(s.connected)
        .execute(&mut *tx.tx)
        .await
        .map_err(db)?;
        self.commit(tx).await
    }

    async fn touch_client_session(
        &self,
        token_hash: [u8; 32],
        last_seen: Timestamp,
        connected: bool,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE client_sessions SET last_seen = $1, connected = $2 WHERE token_hash = $3",
        )
        .bind(last_seen.0)
        .bind(connected)
        .bind(&token_hash[..])
        .execute(&mut *tx.tx)
        .await
        .map_err(db)?;
        self.commit(tx).await
    }

    async fn client_session(&self, token_hash: [u8; 32]) -> Result<Option<ClientSession>> {
        let row = sqlx::query(
            "SELECT profile_id, started_at, last_seen, connected FROM client_sessions
             WHERE token_hash = $1",
        )
        .bind(&token_hash[..])
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(row.map(|r| ClientSession {
            profile: ProfileId(r.get("profile_id")),
            started_at: Timestamp(r.get("started_at")),
            last_seen: Timestamp(r.get("last_seen")),
            connected: r.get("connected"),
        }))
    }

    async fn delete_client_session(&self, token_hash: [u8; 32]) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM client_sessions WHERE token_hash = $1")
            .bind(&token_hash[..])
            .execute(&mut *tx.tx)
            .await
            .map_err(db)?;
        self.commit(tx).await
    }

    async fn delete_client_sessions(&self, profile: ProfileId) -> Result<u64> {
        let mut tx = self.begin().await?;
        let n = sqlx::query("DELETE FROM client_sessions WHERE profile_id = $1")
            .bind(profile.0)
            .execute(&mut *tx.tx)
            .await
            .map_err(db)?
            .rows_affected();
        self.commit(tx).await?;
        Ok(n)
    }

    async fn list_profiles(
        &self,
        name_contains: Option<&str>,
        sort: ProfileSort,
        limit: i64,
        offset: i64,
    ) -> Result<Page<Profile>> {
        let filter = "WHERE ($1::TEXT IS NULL OR strpos(lower(name), lower($1)) > 0)";
        let order = match sort {
            ProfileSort::NameAsc => "lower(name), id",
            ProfileSort::NameDesc => "lower(name) DESC, id DESC",
            ProfileSort::CreatedAsc => "created_at, id",
            ProfileSort::CreatedDesc => "created_at DESC, id DESC",
        };
        let items = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SELECT} {filter} ORDER BY {order} LIMIT $2 OFFSET $3"
        )))
        .bind(name_contains)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let total = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM profiles {filter}"
        )))
        .bind(name_contains)
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        Ok(Page {
            items: items.iter().map(profile).collect(),
            total,
        })
    }

    async fn get_profile(&self, id: ProfileId) -> Result<Profile> {
        sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT} WHERE id = $1")))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .map(|r| profile(&r))
            .ok_or(StoreError::NotFound("profile"))
    }

    async fn create_profile(&self, new: NewProfile, mut audit: AuditRecord) -> Result<Profile> {
        let now = Timestamp::now();
        let mut tx = self.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO profiles (name, password_hash, contacts_password_hash,
               call_memory_password_hash, collect_call_memory, allow_call_memory_deletion,
               call_memory_password_protected, created_at, updated_at, cm_public_key,
               cm_wrap_profile, cm_wrap_call_memory, handsets, speakers)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING id",
        )
        .bind(&new.name)
        .bind(new.password.as_phc())
        .bind(new.contacts_password.as_ref().map(|h| h.as_phc()))
        .bind(new.call_memory_password.as_ref().map(|h| h.as_phc()))
        .bind(new.flags.collect_call_memory)
        .bind(new.flags.allow_call_memory_deletion)
        .bind(new.flags.call_memory_password_protected)
        .bind(now.0)
        .bind(now.0)
        .bind(new.call_memory_keys.public.map(|k| k.to_vec()))
        .bind(&new.call_memory_keys.wrapped_by_profile_password)
        .bind(&new.call_memory_keys.wrapped_by_call_memory_password)
        .bind(i64::from(new.flags.handsets))
        .bind(i64::from(new.flags.speakers))
        .fetch_one(&mut *tx.tx)
        .await
        .map_err(db)?;
        audit.object_id = Some(super::object_id(audit.object_id.take(), id));
        self.audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        self.get_profile(ProfileId(id)).await
    }

    async fn update_profile(
        &self,
        id: ProfileId,
        c: ProfileChanges,
        audit: AuditRecord,
    ) -> Result<Profile> {
        let mut tx = self.begin().await?;
        let r = sqlx::query(
            "UPDATE profiles SET
               name = COALESCE($1, name),
               password_hash = COALESCE($2, password_hash),
               contacts_password_hash = CASE WHEN $3 THEN $4 ELSE contacts_password_hash END,
               call_memory_password_hash = CASE WHEN $5 THEN $6 ELSE call_memory_password_hash END,
               collect_call_memory = COALESCE($7, collect_call_memory),
               allow_call_memory_deletion = COALESCE($8, allow_call_memory_deletion),
               call_memory_password_protected = COALESCE($9, call_memory_password_protected),
               handsets = COALESCE($10, handsets),
               speakers = COALESCE($11, speakers),
               updated_at = $12
             WHERE id = $13",
        )
        .bind(&c.name)
        .bind(c.password.as_ref().map(|h| h.as_phc()))
        .bind(c.contacts_password.is_some())
        .bind(
            c.contacts_password
                .as_ref()
                .and_then(|o| o.as_ref().map(|h| h.as_phc())),
        )
        .bind(c.call_memory_password.is_some())
        .bind(
            c.call_memory_password
                .as_ref()
                .and_then(|o| o.as_ref().map(|h| h.as_phc())),
        )
        .bind(c.collect_call_memory)
        .bind(c.allow_call_memory_deletion)
        .bind(c.call_memory_password_protected)
        .bind(c.handsets.map(i64::from))
        .bind(c.speakers.map(i64::from))
        .bind(Timestamp::now().0)
        .bind(id.0)
        .execute(&mut *tx.tx)
        .await
        .map_err(db)?;
        one_row(r, "profile")?;
        if c.password.is_some() {
            // A new password ends every session of the profile with the
            // change itself: none may resume, whatever happens next (a
            // stop right after, another node).
            sqlx::query("DELETE FROM client_sessions WHERE profile_id = $1")
                .bind(id.0)
                .execute(&mut *tx.tx)
                .await
                .map_err(db)?;
        }
        if let Some(keys) = &c.call_memory_keys {
            write_keys(&mut tx.tx, id, keys).await?;
        }
        if c.erase_call_memory {
            sqlx::query("DELETE FROM call_memory WHERE profile_id = $1")
                .bind(id.0)
                .execute(&mut *tx.tx)
                .await
                .map_err(db)?;
        }
        self.audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        self.get_profile(id).await
    }

    async fn profile_secrets(&self, id: ProfileId) -> Result<ProfileSecrets> {
        let row = sqlx::query(
            "SELECT password_hash, contacts_password_hash, call_memory_password_hash
             FROM profiles WHERE id = $1",
        )
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .ok_or(StoreError::NotFound("profile"))?;
        let hash = |c: &str| row.get::<Option<String>, _>(c).map(PasswordHash::from_phc);
        Ok(ProfileSecrets {
            password: PasswordHash::from_phc(row.get("password_hash")),
            contacts_password: hash("contacts_password_hash"),
            call_memory_password: hash("call_memory_password_hash"),
        })
    }

    async fn call_memory_keys(&self, id: ProfileId) -> Result<CallMemoryKeys> {
        let row = sqlx::query(
            "SELECT cm_public_key, cm_wrap_profile, cm_wrap_call_memory FROM profiles WHERE id = $1",
        )
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .ok_or(StoreError::NotFound("profile"))?;
        let public: Option<Vec<u8>> = row.get("cm_public_key");
        Ok(CallMemoryKeys {
            public: match public {
                Some(p) => Some(super::to32(&p)?),
                None => None,
            },
            wrapped_by_profile_password: row.get("cm_wrap_profile"),
            wrapped_by_call_memory_password: row.get("cm_wrap_call_memory"),
        })
    }

    async fn set_call_memory_keys(&self, id: ProfileId, keys: CallMemoryKeys) -> Result<()> {
        let mut tx = self.begin().await?;
        self.require_profile(&mut tx, id).await?;
        write_keys(&mut tx.tx, id, &keys).await?;
        self.commit(tx).await
    }

    async fn profile_erasure_preview(&self, id: ProfileId) -> Result<ProfileErasure> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        erasure_counts(&mut conn, id).await
    }

    async fn delete_profile(&self, id: ProfileId, audit: AuditRecord) -> Result<ProfileErasure> {
        let mut tx = self.begin().await?;
        let erased = self.erase_profile(&mut tx.tx, id).await?;
        self.audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        self.checkpoint().await?;
        Ok(erased)
    }

    async fn reapply_erasures(&self, audit: AuditRecord) -> Result<Vec<ProfileId>> {
        let mut erased = Vec::new();
        let entries = self.ledger.entries()?;
        // Single records (administrators, contacts, keys, call-memory
        // entries) in one transaction: at every start there are usually
        // many entries and nothing to do.
        let mut tx = self.begin().await?;
        let mut again = 0;
        for e in entries.iter().filter(|e| e.kind != "profile") {
            if self.erase_again(&mut tx, &e.kind, e.id, e.at_ms).await? {
                let mut r = audit.clone();
                r.object_type = e.kind.clone();
                r.object_id = Some(e.id.to_string());
                r.changes = vec![e.kind.clone()];
                self.audit(&mut tx, &r).await?;
                again += 1;
            }
        }
        if again > 0 {
            self.commit(tx).await?;
            tracing::warn!(
                count = again,
                "erased records came back and were erased again"
            );
        } else {
            // Nothing came back: the writer is given back untouched.
            drop(tx);
        }
        for e in entries.iter().filter(|e| e.kind == "profile") {
            let id = ProfileId(e.id);
            let mut tx = self.begin().await?;
            // Only the profile that was erased: SQLite gives the id of a
            // deleted newest row to the next one, so a profile made after
            // the erasure may carry the same id and must be left alone.
            let exists: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM profiles WHERE id = $1 AND created_at <= $2",
            )
            .bind(id.0)
            .bind(e.at_ms)
            .fetch_one(&mut *tx.tx)
            .await
            .map_err(db)?;
            if exists == 0 {
                continue;
            }
            self.erase_profile_rows(&mut tx.tx, id).await?;
            let mut r = audit.clone();
            r.object_id = Some(id.0.to_string());
            self.audit(&mut tx, &r).await?;
            self.commit(tx).await?;
            erased.push(id);
        }
        if !erased.is_empty() {
            self.checkpoint().await?;
        }
        Ok(erased)
    }

    fn erasure_count(&self) -> Result<usize> {
        Ok(self.ledger.entries()?.len())
    }

    async fn list_consents(&self, profile: Option<ProfileId>) -> Result<Vec<Consent>> {
        let rows = sqlx::query(
            "SELECT * FROM consents WHERE ($1::BIGINT IS NULL OR profile_id = $1) ORDER BY id",
        )
        .bind(profile.map(|p| p.0))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(consent).collect()
    }

    async fn get_consent(&self, id: ConsentId) -> Result<Consent> {
        let row = sqlx::query("SELECT * FROM consents WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .ok_or(StoreError::NotFound("consent"))?;
        consent(&row)
    }

    async fn create_consent(&self, new: NewConsent, mut audit: AuditRecord) -> Result<Consent> {
        let mut tx = self.begin().await?;
        self.require_profile(&mut tx, new.profile_id).await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO consents (profile_id, purpose, channel, given_at, recorded_by, created_at)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(new.profile_id.0)
        .bind(&new.purpose)
        .bind(new.channel.as_str())
        .bind(new.given_at.0)
        .bind(&new.recorded_by)
        .bind(Timestamp::now().0)
        .fetch_one(&mut *tx.tx)
        .await
        .map_err(db)?;
        audit.object_id = Some(super::object_id(audit.object_id.take(), id));
        self.audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        self.get_consent(ConsentId(id)).await
    }

    async fn withdraw_consent(&self, id: ConsentId, audit: AuditRecord) -> Result<ProfileErasure> {
        let mut tx = self.begin().await?;
        let profile: i64 = sqlx::query_scalar("SELECT profile_id FROM consents WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&mut *tx.tx)
            .await
            .map_err(db)?
            .ok_or(StoreError::NotFound("consent"))?;
        let erased = self.erase_profile(&mut tx.tx, ProfileId(profile)).await?;
        self.audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        self.checkpoint().await?;
        Ok(erased)
    }
}
