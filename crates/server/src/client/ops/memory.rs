//! The call-memory operations of a client session: unlock (re-wrapping the
//! key under passwords an administrator reset), list, delete as SPEC rules
//! 6 and 7 allow, and the subject access export.

use openturret_domain::model::{CallMemoryKeys, ProfileChanges, protects_call_memory};
use openturret_domain::secret::Secret;
use openturret_domain::{CallMemoryId, ProfileId};
use openturret_store::sealing::OpenKey;
use serde_json::{Value, json};

use super::{Conn, Res, err};
use crate::callmem;
use crate::client::proto::ProtoError;

/// Which password a wrap of the call-memory key is under.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Wrap {
    Profile,
    CallMemory,
}

impl Conn {
    /// A wrap of the old kind (under a password of unknown length) was
    /// just opened with `password`: it is made again if the password can
    /// protect call memory, else removed; when no wrap is left, the entries
    /// no one could open safely are erased and collection stops until an
    /// administrator sets a long enough password. Returns the key, unless
    /// it went with the entries.
    pub(super) async fn upgrade_wrap(
        &self,
        pid: ProfileId,
        which: Wrap,
        key: &OpenKey,
        password: &Secret,
    ) -> Result<Option<OpenKey>, ProtoError> {
        let mut keys = self.app.store.call_memory_keys(pid).await?;
        let slot = match which {
            Wrap::Profile => &mut keys.wrapped_by_profile_password,
            Wrap::CallMemory => &mut keys.wrapped_by_call_memory_password,
        };
        if protects_call_memory(password.expose()) {
            *slot = Some(callmem::wrap(key.clone(), password.clone()).await);
            self.app.store.set_call_memory_keys(pid, keys).await?;
            return Ok(Some(key.clone()));
        }
        *slot = None;
        if keys.wrapped_by_profile_password.is_some()
            || keys.wrapped_by_call_memory_password.is_some()
        {
            self.app.store.set_call_memory_keys(pid, keys).await?;
            return Ok(Some(key.clone()));
        }
        let mut r = self.record(
            &format!("profile:{pid}"),
            "call_memory.erased_weak_password",
            "profile",
            Some(pid.0.to_string()),
            vec!["call_memory"],
        );
        r.level = openturret_domain::audit::AuditLevel::Warning;
        let changes = ProfileChanges {
            call_memory_keys: Some(CallMemoryKeys::default()),
            erase_call_memory: true,
            ..Default::default()
        };
        self.app.store.update_profile(pid, changes, r).await?;
        Ok(None)
    }

    pub(super) async fn unlock_call_memory(&self, password: String) -> Res {
        let s = self.user().await?;
        let pid = s.lock().await.profile;
        let secrets = self.app.store.profile_secrets(pid).await?;
        let (hash, by_cm) = match secrets.call_memory_password {
            Some(h) => (h, true),
            None => (secrets.password, false),
        };
        if !self
            .verify(
                crate::throttle::Realm::Profile,
                &format!("cm:{pid}"),
                &password,
                Some(hash),
            )
            .await?
        {
            self.app
                .store
                .append_audit(self.failure(
                    &format!("profile:{pid}"),
                    "client.call_memory_unlock_failed",
                    pid.0,
                ))
                .await?;
            return Err(err("wrong_password", "wrong call-memory password"));
        }
        let password = Secret::new(password);
        let mut keys = self.app.store.call_memory_keys(pid).await?;
        let mut g = s.lock().await;
        g.call_memory_unlocked = true;
        let Some(public) = keys.public else {
            return Ok(json!({"unlocked": true}));
        };
        let wrap = if by_cm {
            keys.wrapped_by_call_memory_password.clone()
        } else {
            keys.wrapped_by_profile_password.clone()
        };
        if g.key.is_none()
            && let Some(w) = &wrap
        {
            g.key = callmem::unwrap(w.clone(), password.clone(), public)
                .await
                .ok();
        }
        // A wrap of the old kind that this password opens: made again, or
        // removed if the password is too short to protect call memory.
        if let (Some(w), Some(key)) = (&wrap, g.key.clone())
            && !openturret_store::sealing::is_checked(w)
            && callmem::unwrap(w.clone(), password.clone(), public)
                .await
                .is_ok()
        {
            let which = if by_cm {
                Wrap::CallMemory
            } else {
                Wrap::Profile
            };
            g.key = self.upgrade_wrap(pid, which, &key, &password).await?;
            keys = self.app.store.call_memory_keys(pid).await?;
        }
        // Wrap the key again under any password that lost its wrap (and
        // can protect it).
        let mut changed = false;
        if let Some(key) = g.key.clone() {
            if by_cm
                && keys.wrapped_by_call_memory_password.is_none()
                && protects_call_memory(password.expose())
            {
                keys.wrapped_by_call_memory_password =
                    Some(callmem::wrap(key.clone(), password.clone()).await);
                changed = true;
            }
            if let Some(pw) = g.rewrap_profile_password.take()
                && protects_call_memory(pw.expose())
            {
                keys.wrapped_by_profile_password = Some(callmem::wrap(key, pw).await);
                changed = true;
            }
        }
        drop(g);
        if changed {
            self.app.store.set_call_memory_keys(pid, keys).await?;
        }
        Ok(json!({"unlocked": true}))
    }

    pub(super) async fn call_memory(&self) -> Res {
        let (_, s) = self
            .session
            .as_ref()
            .ok_or_else(|| err("not_logged_in", "log in to a profile first"))?;
        let g = s.lock().await;
        let records = self.app.store.list_call_memory(g.profile).await?;
        if g.master {
            // Rule 7: enough to delete entries; sealed, so never readable here.
            let items: Vec<Value> = records
                .iter()
                .map(|r| json!({"id": r.id.0, "at": r.created_at.rfc3339(), "sealed": true}))
                .collect();
            return Ok(json!({"entries": items}));
        }
        if !g.call_memory_unlocked {
            return Err(err(
                "call_memory_locked",
                "give the call-memory password first (unlock_call_memory)",
            ));
        }
        let key = g.key.clone().ok_or_else(|| {
            err(
                "call_memory_locked",
                "unlock call memory with its password (unlock_call_memory)",
            )
        })?;
        drop(g);
        let mut items = Vec::with_capacity(records.len());
        let mut unreadable = 0;
        for r in records.iter().rev() {
            match callmem::open_entry(&key, &r.sealed) {
                Ok(e) => items.push(json!({
                    "id": r.id.0, "number": e.number, "name": e.name, "at": e.at.rfc3339(),
                    "direction": e.direction.as_str(), "answered": e.answered,
                    "answered_by": e.answered_by.map(|l| l.as_str()),
                    "duration_ms": e.duration_ms, "reason": e.reason,
                })),
                Err(_) => unreadable += 1,
            }
        }
        Ok(json!({"entries": items, "unreadable": unreadable}))
    }

    /// Everything held about the session's profile, with the call memory
    /// when the user has unlocked it.
    pub(super) async fn subject_export(&self) -> Res {
        let s = self.user().await?;
        let (pid, key, unlocked, contacts) = {
            let g = s.lock().await;
            (
                g.profile,
                g.key.clone(),
                g.call_memory_unlocked,
                g.contacts_unlocked,
            )
        };
        let call_memory = match (key, unlocked) {
            (Some(key), true) => {
                let records = self.app.store.list_call_memory(pid).await?;
                Some(
                    records
                        .iter()
                        .rev()
                        .filter_map(|r| {
                            callmem::open_entry(&key, &r.sealed).ok().map(|e| (r.id, e))
                        })
                        .collect::<Vec<_>>(),
                )
            }
            _ => None,
        };
        let included = call_memory.is_some();
        let zip = crate::subject::export(&self.app, pid, call_memory, contacts)
            .await
            .map_err(|e| ProtoError::from(crate::http::error::ApiError::Internal(e)))?;
        let r = self.record(
            &format!("profile:{pid}"),
            "profile.subject_exported",
            "profile",
            Some(pid.0.to_string()),
            vec![],
        );
        self.app.store.append_audit(r).await?;
        Ok(
            json!({"zip_base64": crate::subject::base64(&zip), "includes_call_memory": included,
                   "includes_local_contacts": contacts}),
        )
    }

    pub(super) async fn delete_call_memory(&self, id: i64) -> Res {
        let (_, s) = self
            .session
            .as_ref()
            .ok_or_else(|| err("not_logged_in", "log in to a profile first"))?;
        let (pid, master) = {
            let g = s.lock().await;
            (g.profile, g.master)
        };
        let (actor, event) = if master {
            (
                "master-password".to_string(),
                "call_memory.deleted_with_master_password",
            )
        } else {
            if !self
                .app
                .store
                .get_profile(pid)
                .await?
                .flags
                .allow_call_memory_deletion
            {
                return Err(err(
                    "forbidden",
                    "deleting call-memory entries is not allowed for this profile",
                ));
            }
            if !s.lock().await.call_memory_unlocked {
                return Err(err(
                    "call_memory_locked",
                    "give the call-memory password first (unlock_call_memory)",
                ));
            }
            (format!("profile:{pid}"), "call_memory.deleted")
        };
        let r = self.record(
            &actor,
            event,
            "call_memory",
            Some(format!("{pid}/{id}")),
            vec![],
        );
        self.app
            .store
            .delete_call_memory(pid, CallMemoryId(id), r)
            .await?;
        Ok(json!({}))
    }
}
