//! What each client operation does. Every request is authorised here on
//! the server: a session reaches only its own profile's data (every store
//! call is scoped by the session's profile id), and each SPEC rule is a
//! refusal with its own error code.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use openturret_domain::audit::{AuditLevel, AuditRecord};
use openturret_domain::model::*;
use openturret_domain::number::looks_like_number;
use openturret_domain::secret::{PasswordHash, Secret};
use openturret_domain::{GlobalContactId, LocalContactId, ProfileId, SpeedDialId, Timestamp};
use openturret_store::{GlobalContactQuery, ProfileSort, StoreError};
use serde_json::{Value, json};

use super::proto::{Envelope, PROTOCOL_VERSION, ProtoError, Request, reply};
use super::session::{self, Session, Shared};
use crate::audit::AuditContext;
use crate::http::extract::token_hash;
use crate::hub::PushKind;
use crate::throttle::Realm;
use crate::{App, callmem, passwords};

mod calls;
mod memory;
use memory::Wrap;

type Res = Result<Value, ProtoError>;

pub struct Conn {
    app: App,
    ip: IpAddr,
    hello: bool,
    session: Option<([u8; 32], Shared)>,
}

fn err(code: &str, message: &str) -> ProtoError {
    ProtoError::new(code, message)
}

fn contact_json(id: i64, f: &ContactFields) -> Value {
    json!({"id": id, "name": f.name, "number": f.number, "field3": f.field3, "field4": f.field4})
}

impl Conn {
    pub fn new(app: App, ip: IpAddr) -> Self {
        Conn {
            app,
            ip,
            hello: false,
            session: None,
        }
    }

    pub async fn profile(&self) -> Option<ProfileId> {
        match &self.session {
            Some((_, s)) => Some(s.lock().await.profile),
            None => None,
        }
    }

    /// Marks the session as last seen now (the connection is closing).
    pub async fn detach(&mut self) {
        if let Some((hash, s)) = &self.session {
            let master = {
                let mut g = s.lock().await;
                g.last_seen = Instant::now();
                g.connected = false;
                g.master
            };
            if !master
                && let Err(e) = self
                    .app
                    .store
                    .touch_client_session(*hash, Timestamp::now(), false)
                    .await
            {
                tracing::warn!(error = %e, "a turret session was not saved");
            }
        }
    }

    /// Keeps a new turret session in the store, so a restart does not end
    /// it (master-password sessions are never kept).
    async fn persist_session(&self, hash: [u8; 32], profile: ProfileId) -> Result<(), ProtoError> {
        let now = Timestamp::now();
        self.app
            .store
            .save_client_session(
                hash,
                openturret_store::ClientSession {
                    profile,
                    started_at: now,
                    last_seen: now,
                    connected: true,
                },
            )
            .await?;
        Ok(())
    }

    /// A session this process does not hold, from the store: one a
    /// previous run of the server kept (a restart, a crash). Contacts and
    /// call memory are locked again; their passwords are asked anew.
    async fn restore_session(&self, hash: [u8; 32]) -> Result<Shared, ProtoError> {
        let expired = || err("session_expired", "log in again");
        let stored = self
            .app
            .store
            .client_session(hash)
            .await?
            .ok_or_else(expired)?;
        let now = Timestamp::now().0;
        let age = Duration::from_millis((now - stored.started_at.0).max(0) as u64);
        let idle = Duration::from_millis((now - stored.last_seen.0).max(0) as u64);
        if age >= session::MAX_AGE || (!stored.connected && idle >= session::RESUME_WINDOW) {
            self.app.store.delete_client_session(hash).await?;
            return Err(expired());
        }
        let profile = match self.app.store.get_profile(stored.profile).await {
            Ok(p) => p,
            Err(StoreError::NotFound(_)) => return Err(expired()),
            Err(e) => return Err(e.into()),
        };
        let started = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
        let session = Session {
            profile: profile.id,
            master: false,
            contacts_unlocked: !profile.has_contacts_password,
            call_memory_unlocked: false,
            key: None,
            rewrap_profile_password: None,
            started,
            last_seen: Instant::now(),
            connected: true,
        };
        let r = self.record(
            &format!("profile:{}", profile.id),
            "client.session_restored",
            "profile",
            Some(key_id(profile.id)),
            vec![],
        );
        self.app.store.append_audit(r).await?;
        Ok(self.app.sessions.insert(hash, session))
    }

    fn ctx(&self) -> AuditContext {
        AuditContext {
            client_ip: self.ip,
            client_host: String::new(),
            server_host: self.app.host.clone(),
        }
    }

    fn record(
        &self,
        actor: &str,
        event: &str,
        object_type: &str,
        object_id: Option<String>,
        changes: Vec<&str>,
    ) -> AuditRecord {
        self.ctx()
            .record(actor, event, object_type, object_id, changes)
    }

    fn failure(&self, actor: &str, event: &str, pid: i64) -> AuditRecord {
        let mut r = self.record(actor, event, "profile", Some(pid.to_string()), vec![]);
        r.success = false;
        r.level = AuditLevel::Warning;
        r
    }

    pub async fn handle(&mut self, text: &str) -> String {
        let env: Envelope = match serde_json::from_str(text) {
            Ok(e) => e,
            Err(e) => {
                let id = serde_json::from_str::<Value>(text)
                    .ok()
                    .and_then(|v| v["id"].as_u64())
                    .unwrap_or(0);
                return reply(
                    id,
                    Err(err(
                        "bad_request",
                        &format!("not a request this server knows: {e}"),
                    )),
                );
            }
        };
        let result = self.dispatch(env.request).await;
        match &result {
            Err(e) if e.code.as_str() == "internal" => self.app.events.raise(
                openturret_domain::model::Event::error(
                    "client.internal_error",
                    "",
                    "turret requests failed with an internal error (the server's log has the cause)",
                ),
            ),
            Err(e) if matches!(e.code.as_str(), "wrong_password" | "too_many_attempts") => {
                self.app.events.raise(
                    openturret_domain::model::Event::warning(
                        "client.login_refused",
                        "",
                        "turret logins were refused (a wrong password, or too many of them)",
                    )
                    .with("last_code", &e.code),
                )
            }
            _ => {}
        }
        if let Some((_, s)) = &self.session {
            s.lock().await.last_seen = Instant::now();
        }
        reply(env.id, result)
    }

    /// The session, unless there is none or it is a master-password one.
    async fn user(&self) -> Result<Shared, ProtoError> {
        let (_, s) = self
            .session
            .as_ref()
            .ok_or_else(|| err("not_logged_in", "log in to a profile first"))?;
        if s.lock().await.master {
            return Err(err(
                "forbidden",
                "a master-password session may only list and delete call-memory entries",
            ));
        }
        Ok(s.clone())
    }

    /// Verifies `password` against `hash`, throttled under `realm`/`key`:
    /// the attempt takes its slot first; a failure that starts a lockout
    /// is audited once, with its count.
    async fn verify(
        &self,
        realm: Realm,
        key: &str,
        password: &str,
        hash: Option<PasswordHash>,
    ) -> Result<bool, ProtoError> {
        let attempt = self.app.throttle.begin(realm, key, self.ip).map_err(|l| {
            let secs = l.retry_after.as_secs().max(1);
            ProtoError {
                retry_after_secs: Some(secs),
                ..err(
                    "too_many_attempts",
                    &format!("too many wrong passwords; try again in {secs} seconds"),
                )
            }
        })?;
        let ok = passwords::verify(Secret::new(password), hash)
            .await
            .map_err(|_| ProtoError {
                retry_after_secs: Some(1),
                ..err(
                    "busy",
                    "the server is checking many passwords at once; try again in a second",
                )
            })?;
        if ok {
            attempt.succeeded();
        } else if let Some(l) = attempt.failed() {
            let event = if l.by_address {
                "client.address_locked"
            } else {
                "client.account_locked"
            };
            let mut r = self.record(
                &format!("{}:{key}", realm.as_str()),
                event,
                "profile",
                key.rsplit(':').next().map(str::to_string),
                vec![],
            );
            // Counts, not values: how many failures, how long the lockout.
            r.changes = vec![
                format!("failures={}", l.failures),
                format!("lockout_secs={}", l.lasts.as_secs()),
            ];
            r.success = false;
            r.level = openturret_domain::audit::AuditLevel::Error;
            self.app.store.append_audit(r).await?;
            self.app
                .events
                .raise(crate::throttle::lockout_event(realm.as_str(), &l));
        }
        Ok(ok)
    }

    async fn dispatch(&mut self, r: Request) -> Res {
        if !self.hello && !matches!(r, Request::Hello { .. }) {
            return Err(err(
                "hello_required",
                "send {\"op\": \"hello\", \"version\": 1} first",
            ));
        }
        match r {
            Request::Hello { version } => {
                if version != PROTOCOL_VERSION {
                    return Err(err(
                        "unsupported_version",
                        &format!("this server speaks protocol version {PROTOCOL_VERSION}"),
                    ));
                }
                self.hello = true;
                Ok(
                    json!({"protocol": PROTOCOL_VERSION, "server": format!("OpenTurret System Manager {}", env!("CARGO_PKG_VERSION"))}),
                )
            }
            Request::Profiles => {
                let page = self
                    .app
                    .store
                    .list_profiles(None, ProfileSort::NameAsc, 100_000, 0)
                    .await?;
                Ok(json!(
                    page.items
                        .iter()
                        .map(|p| json!({"id": p.id.0, "name": p.name}))
                        .collect::<Vec<_>>()
                ))
            }
            Request::Login {
                profile_id,
                password,
            } => self.login(profile_id, password).await,
            Request::MasterLogin {
                profile_id,
                password,
            } => self.master_login(profile_id, password).await,
            Request::Resume { token } => {
                let hash = token_hash(&token);
                let (s, restored) = match self.app.sessions.resume(&hash).await {
                    // Held here, and still stored (a logout or a password
                    // change on another node deletes it there; with one
                    // node, what is held is what is stored: no query).
                    Some(s)
                        if s.lock().await.master
                            || !self.app.store.is_shared()
                            || self.app.store.client_session(hash).await?.is_some() =>
                    {
                        (s, false)
                    }
                    Some(_) => {
                        self.app.sessions.remove(&hash);
                        return Err(err("session_expired", "log in again"));
                    }
                    None => (self.restore_session(hash).await?, true),
                };
                let (pid, master) = {
                    let mut g = s.lock().await;
                    g.connected = true;
                    (g.profile, g.master)
                };
                if !master {
                    self.app
                        .store
                        .touch_client_session(hash, Timestamp::now(), true)
                        .await?;
                }
                self.session = Some((hash, s));
                let config: Value =
                    serde_json::from_str(&super::config_json(&self.app, pid).await?)
                        .unwrap_or_default();
                // After a restart the call-memory key is gone from memory:
                // the turret asks for its password again.
                Ok(json!({"profile_id": pid.0, "config": config, "restored": restored}))
            }
            Request::Logout => {
                let (hash, s) = self
                    .session
                    .take()
                    .ok_or_else(|| err("not_logged_in", "not logged in"))?;
                let pid = s.lock().await.profile;
                self.app.sessions.remove(&hash);
                self.app.store.delete_client_session(hash).await?;
                self.app.cti.publish(
                    "phone",
                    None,
                    json!({"profile_id": pid.0, "state": "logged_out"}),
                );
                let r = self.record(
                    &format!("profile:{pid}"),
                    "client.logout",
                    "profile",
                    Some(pid.to_string()),
                    vec![],
                );
                self.app.store.append_audit(r).await?;
                Ok(json!({}))
            }
            Request::Config => {
                let pid = self.user().await?.lock().await.profile;
                Ok(
                    serde_json::from_str(&super::config_json(&self.app, pid).await?)
                        .unwrap_or_default(),
                )
            }
            Request::UnlockContacts { password } => {
                let s = self.user().await?;
                let pid = s.lock().await.profile;
                let secrets = self.app.store.profile_secrets(pid).await?;
                if let Some(h) = secrets.contacts_password
                    && !self
                        .verify(
                            Realm::Profile,
                            &format!("contacts:{pid}"),
                            &password,
                            Some(h),
                        )
                        .await?
                {
                    self.app
                        .store
                        .append_audit(self.failure(
                            &format!("profile:{pid}"),
                            "client.contacts_unlock_failed",
                            pid.0,
                        ))
                        .await?;
                    return Err(err("wrong_password", "wrong contacts password"));
                }
                s.lock().await.contacts_unlocked = true;
                Ok(json!({"unlocked": true}))
            }
            Request::Contacts { search, limit } => self.contacts(search, limit).await,
            Request::CreateContact {
                name,
                number,
                field3,
                field4,
            } => {
                let pid = self.contacts_session().await?;
                let f = ContactFields::new(&name, &number, &field3, &field4)?;
                let r = self.record(
                    &format!("profile:{pid}"),
                    "local_contact.created",
                    "local_contact",
                    Some(format!("{pid}/")),
                    vec!["name", "number", "field3", "field4"],
                );
                let c = self.app.store.create_local_contact(pid, f, r).await?;
                Ok(contact_json(c.id.0, &c.fields))
            }
            Request::UpdateContact {
                contact_id: id,
                name,
                number,
                field3,
                field4,
            } => {
                let pid = self.contacts_session().await?;
                let cur = self
                    .app
                    .store
                    .get_local_contact(pid, LocalContactId(id))
                    .await?
                    .fields;
                let f = cur.patched(
                    name.as_deref(),
                    number.as_deref(),
                    field3.as_deref(),
                    field4.as_deref(),
                )?;
                let r = self.record(
                    &format!("profile:{pid}"),
                    "local_contact.updated",
                    "local_contact",
                    Some(format!("{pid}/{id}")),
                    f.changed_fields(&cur),
                );
                let c = self
                    .app
                    .store
                    .update_local_contact(pid, LocalContactId(id), f, r)
                    .await?;
                Ok(contact_json(c.id.0, &c.fields))
            }
            Request::DeleteContact { contact_id: id } => {
                let pid = self.contacts_session().await?;
                let r = self.record(
                    &format!("profile:{pid}"),
                    "local_contact.deleted",
                    "local_contact",
                    Some(format!("{pid}/{id}")),
                    vec![],
                );
                self.app
                    .store
                    .delete_local_contact(pid, LocalContactId(id), r)
                    .await?;
                Ok(json!({}))
            }
            Request::UpdateGlobalContact {
                contact_id: id,
                name,
                number,
                field3,
                field4,
            } => {
                let pid = self.contacts_session().await?;
                if !self
                    .app
                    .store
                    .get_settings()
                    .await?
                    .global_contacts_changeable
                {
                    return Err(err(
                        "forbidden",
                        "global contacts are not changeable from clients (an administrator can allow it)",
                    ));
                }
                let cur = self
                    .app
                    .store
                    .get_global_contact(GlobalContactId(id))
                    .await?
                    .fields;
                let f = cur.patched(
                    name.as_deref(),
                    number.as_deref(),
                    field3.as_deref(),
                    field4.as_deref(),
                )?;
                let r = self.record(
                    &format!("profile:{pid}"),
                    "global_contact.updated",
                    "global_contact",
                    Some(id.to_string()),
                    f.changed_fields(&cur),
                );
                let c = self
                    .app
                    .store
                    .update_global_contact(GlobalContactId(id), f, r)
                    .await?;
                Ok(contact_json(c.id.0, &c.fields))
            }
            Request::DeleteGlobalContact { .. } => {
                self.user().await?;
                Err(err(
                    "forbidden",
                    "client users may modify global contacts, never delete them (SPEC rule 4)",
                ))
            }
            Request::CreateSpeedDial {
                kind,
                position,
                name,
                number,
            } => {
                let pid = self.user().await?.lock().await.profile;
                let f = SpeedDialFields::new(&kind, position, &name, &number)?;
                let r = self.record(
                    &format!("profile:{pid}"),
                    "speed_dial.created",
                    "speed_dial",
                    Some(format!("{pid}/")),
                    vec!["kind", "position", "name", "number"],
                );
                let k = self.app.store.create_speed_dial(pid, f, r).await?;
                Ok(super::key_json(&k))
            }
            Request::UpdateSpeedDial {
                key_id: id,
                kind,
                position,
                name,
                number,
            } => {
                let pid = self.user().await?.lock().await.profile;
                let cur = self
                    .app
                    .store
                    .get_speed_dial(pid, SpeedDialId(id))
                    .await?
                    .fields;
                let f = SpeedDialFields::new(
                    kind.as_deref().unwrap_or(cur.kind.as_str()),
                    position.unwrap_or(cur.position as i64),
                    name.as_deref().unwrap_or(&cur.name),
                    number.as_deref().unwrap_or(&cur.number),
                )?;
                let r = self.record(
                    &format!("profile:{pid}"),
                    "speed_dial.updated",
                    "speed_dial",
                    Some(format!("{pid}/{id}")),
                    f.changed_fields(&cur),
                );
                let k = self
                    .app
                    .store
                    .update_speed_dial(pid, SpeedDialId(id), f, r)
                    .await?;
                Ok(super::key_json(&k))
            }
            Request::DeleteSpeedDial { key_id: id } => {
                let pid = self.user().await?.lock().await.profile;
                let r = self.record(
                    &format!("profile:{pid}"),
                    "speed_dial.deleted",
                    "speed_dial",
                    Some(format!("{pid}/{id}")),
                    vec![],
                );
                self.app
                    .store
                    .delete_speed_dial(pid, SpeedDialId(id), r)
                    .await?;
                Ok(json!({}))
            }
            Request::UnlockCallMemory { password } => self.unlock_call_memory(password).await,
            Request::CallMemory => self.call_memory().await,
            Request::DeleteCallMemory { entry_id } => self.delete_call_memory(entry_id).await,
            Request::SubjectExport => self.subject_export().await,
            Request::Calls => self.calls().await,
            Request::Call(op) => self.call_op(op).await,
            Request::Lookup { number } => {
                // Local contacts only once the contacts password is given:
                // otherwise a lookup would read them out number by number.
                let (pid, unlocked) = {
                    let s = self.user().await?;
                    let g = s.lock().await;
                    (g.profile, g.contacts_unlocked)
                };
                let name = if unlocked {
                    self.app.caller_id.lookup(pid, &number)
                } else {
                    self.app.caller_id.lookup_global(&number)
                };
                Ok(json!({"number": number, "name": name}))
            }
        }
    }

    async fn contacts_session(&self) -> Result<ProfileId, ProtoError> {
        let s = self.user().await?;
        let g = s.lock().await;
        if !g.contacts_unlocked {
            return Err(err(
                "contacts_locked",
                "give the contacts password first (unlock_contacts)",
            ));
        }
        Ok(g.profile)
    }

    async fn login(&mut self, profile_id: i64, password: String) -> Res {
        let pid = ProfileId(profile_id);
        let actor = format!("profile:{profile_id}");
        let key = profile_id.to_string();
        let secrets = match self.app.store.profile_secrets(pid).await {
            Ok(s) => Some(s),
            Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let ok = self
            .verify(
                Realm::Profile,
                &key,
                &password,
                secrets.as_ref().map(|s| s.password.clone()),
            )
            .await?;
        let Some(secrets) = secrets.filter(|_| ok) else {
            self.app
                .store
                .append_audit(self.failure(&actor, "client.login_failed", profile_id))
                .await?;
            return Err(err("wrong_password", "wrong profile or password"));
        };
        let profile = self.app.store.get_profile(pid).await?;
        let password = Secret::new(password);
        let keys = self.app.store.call_memory_keys(pid).await?;
        let strong = protects_call_memory(password.expose());
        let (key, rewrap) = match (keys.public, keys.wrapped_by_profile_password.clone()) {
            (None, _) => {
                // No key yet: made now, if this password can protect it.
                let fresh = callmem::new_keys(password.clone(), None).await;
                match (fresh.public, fresh.wrapped_by_profile_password.clone()) {
                    (Some(pk), Some(w)) => {
                        self.app
                            .store
                            .set_call_memory_keys(pid, fresh.clone())
                            .await?;
                        (callmem::unwrap(w, password.clone(), pk).await.ok(), None)
                    }
                    _ => (None, None),
                }
            }
            (Some(pk), Some(w)) => {
                let key = callmem::unwrap(w.clone(), password.clone(), pk).await.ok();
                let key = match &key {
                    Some(k) if !openturret_store::sealing::is_checked(&w) => {
                        self.upgrade_wrap(pid, Wrap::Profile, k, &password).await?
                    }
                    _ => key,
                };
                (key, None)
            }
            // Wrapped again at the next unlock, if this password can.
            (Some(_), None) => (None, strong.then(|| password.clone())),
        };
        let token = passwords::random_token(32);
        let hash = token_hash(&token);
        let session = Session {
            profile: pid,
            master: false,
            contacts_unlocked: secrets.contacts_password.is_none(),
            call_memory_unlocked: !profile.flags.call_memory_password_protected,
            key,
            rewrap_profile_password: rewrap,
            started: Instant::now(),
            last_seen: Instant::now(),
            connected: true,
        };
        self.session = Some((hash, self.app.sessions.insert(hash, session)));
        self.persist_session(hash, pid).await?;
        self.app.cti.publish(
            "phone",
            None,
            json!({"profile_id": pid.0, "state": "logged_in"}),
        );
        let r = self.record(&actor, "client.login", "profile", Some(key_id(pid)), vec![]);
        self.app.store.append_audit(r).await?;
        let config: Value =
            serde_json::from_str(&super::config_json(&self.app, pid).await?).unwrap_or_default();
        Ok(
            json!({"token": token, "profile": {"id": pid.0, "name": profile.name}, "config": config}),
        )
    }

    async fn master_login(&mut self, profile_id: i64, password: String) -> Res {
        let pid = ProfileId(profile_id);
        let actor = "master-password";
        let Some(hash) = self.app.store.master_password_hash().await? else {
            self.app
                .store
                .append_audit(self.failure(actor, "client.master_login_refused", profile_id))
                .await?;
            return Err(err("forbidden", "the master password is disabled"));
        };
        self.app.store.get_profile(pid).await?;
        if !self
            .verify(Realm::Master, &pid.0.to_string(), &password, Some(hash))
            .await?
        {
            self.app
                .store
                .append_audit(self.failure(actor, "client.master_login_failed", profile_id))
                .await?;
            return Err(err("wrong_password", "wrong master password"));
        }
        let token = passwords::random_token(32);
        let th = token_hash(&token);
        let session = Session {
            profile: pid,
            master: true,
            contacts_unlocked: false,
            call_memory_unlocked: false,
            key: None,
            rewrap_profile_password: None,
            started: Instant::now(),
            last_seen: Instant::now(),
            connected: true,
        };
        self.session = Some((th, self.app.sessions.insert(th, session)));
        let mut r = self.record(
            actor,
            "client.master_login",
            "profile",
            Some(key_id(pid)),
            vec![],
        );
        r.level = AuditLevel::Warning;
        self.app.store.append_audit(r).await?;
        Ok(json!({"token": token, "profile": {"id": pid.0}, "master": true}))
    }

    async fn contacts(&self, search: Option<String>, limit: Option<i64>) -> Res {
        let pid = self.contacts_session().await?;
        let limit = limit.unwrap_or(50).clamp(1, 200);
        let term = search
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        let plan = openturret_domain::number::NumberPlan {
            country_code: self.app.config.numbers.country_code.clone(),
        };
        let local: Vec<Value> = self
            .app
            .store
            .list_local_contacts(pid)
            .await?
            .iter()
            .filter(|c| match &term {
                None => true,
                Some(t) if looks_like_number(t) => {
                    plan.key(&c.fields.number).starts_with(&plan.key(t))
                }
                Some(t) => openturret_domain::words::name_matches(&c.fields.name, t),
            })
            .take(limit as usize)
            .map(|c| contact_json(c.id.0, &c.fields))
            .collect();
        let q = match &term {
            Some(t) if looks_like_number(t) => GlobalContactQuery {
                number_prefix: Some(t.clone()),
                limit,
                ..Default::default()
            },
            Some(t) => GlobalContactQuery {
                name: Some(t.clone()),
                limit,
                ..Default::default()
            },
            None => GlobalContactQuery {
                limit,
                ..Default::default()
            },
        };
        let global: Vec<Value> = self
            .app
            .store
            .search_global_contacts(&q)
            .await?
            .iter()
            .map(|c| contact_json(c.id.0, &c.fields))
            .collect();
        Ok(json!({"local": local, "global": global}))
    }

    /// The message for a push, and whether the connection must end.
    pub async fn push_message(
        &mut self,
        profile: ProfileId,
        kind: &PushKind,
    ) -> (Option<String>, bool) {
        let master = match &self.session {
            Some((_, s)) => s.lock().await.master,
            None => return (None, false),
        };
        match kind {
            PushKind::SessionEnded(reason) => {
                if let Some((hash, _)) = self.session.take() {
                    self.app.sessions.remove(&hash);
                }
                (
                    Some(json!({"push": "session_ended", "reason": reason}).to_string()),
                    true,
                )
            }
            PushKind::CallMemoryAdded => (
                Some(json!({"push": "call_memory_added"}).to_string()),
                false,
            ),
            _ if master => (None, false),
            PushKind::Raw(text) => (Some(text.to_string()), false),
            PushKind::ContactsChanged => {
                (Some(json!({"push": "contacts_changed"}).to_string()), false)
            }
            PushKind::Config(Some(json)) => (
                Some(format!(r#"{{"push":"config","config":{json}}}"#)),
                false,
            ),
            PushKind::Config(None) => match super::config_json(&self.app, profile).await {
                Ok(json) => (
                    Some(format!(r#"{{"push":"config","config":{json}}}"#)),
                    false,
                ),
                Err(_) => (None, false),
            },
        }
    }
}

fn key_id(pid: ProfileId) -> String {
    pid.0.to_string()
}
