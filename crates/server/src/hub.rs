//! The change pipeline: the store tells us about every committed change
//! (its audit record; on PostgreSQL also the other nodes' changes, by
//! their ids); this module keeps the caller-id index in step and pushes
//! what changed to the connected turret clients of the profiles it
//! concerns. When the store says changes may have been missed (its
//! listener reconnected), everything is read again ([`resync`]).

use std::sync::Arc;

use openturret_domain::audit::AuditRecord;
use openturret_domain::{GlobalContactId, LineId, LocalContactId, ProfileId};
use openturret_store::{Change, StoreError};
use tokio::sync::{broadcast, mpsc};

use crate::App;

/// What a connected client is told.
#[derive(Clone, Debug)]
pub enum PushKind {
    /// The profile's configuration changed; the new one, already encoded,
    /// or `None` when every client must fetch its own (a settings change).
    Config(Option<Arc<str>>),
    /// Local or global contacts changed.
    ContactsChanged,
    /// A call-memory entry was written.
    CallMemoryAdded,
    /// The session must end (profile deleted, password changed).
    SessionEnded(&'static str),
    /// A message already encoded for this profile's clients (calls, line
    /// states from the Multi-Line Controller).
    Raw(Arc<str>),
}

/// A push for the clients of `profile`, or for all clients when `None`.
#[derive(Clone, Debug)]
pub struct Push {
    pub profile: Option<ProfileId>,
    pub kind: PushKind,
}

pub struct Hub {
    tx: broadcast::Sender<Push>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            tx: broadcast::channel(4096).0,
        }
    }
}

impl Hub {
    pub fn subscribe(&self) -> broadcast::Receiver<Push> {
        self.tx.subscribe()
    }

    pub fn send(&self, profile: Option<ProfileId>, kind: PushKind) {
        // No receiver means no client is connected: nothing to do.
        let _ = self.tx.send(Push { profile, kind });
    }

    pub fn call_memory_added(&self, profile: ProfileId) {
        self.send(Some(profile), PushKind::CallMemoryAdded);
    }
}

/// What the task applies: a change, or "read everything again".
enum Applied {
    Change(AuditRecord),
    Resync,
}

/// Starts sending this node's login outcomes to the other nodes of the
/// database (nothing leaves with one node on SQLite).
fn share_throttle(app: &App) {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(1024);
    app.throttle.share_to(tx);
    let store = app.store.clone();
    tokio::spawn(async move {
        while let Some(note) = rx.recv().await {
            if let Err(e) = store.signal(crate::throttle::TOPIC, &[&note]).await {
                tracing::warn!(error = %e, "a login outcome was not shared with the other nodes");
            }
        }
    });
}

/// Registers the store observer and starts the task that applies changes.
pub fn start(app: &App) {
    let (tx, rx) = mpsc::unbounded_channel::<Applied>();
    let weak = Arc::downgrade(&app.0);
    app.store.observe(Arc::new(move |c: Change<'_>| {
        let _ = tx.send(match c {
            Change::Committed(r) => Applied::Change(r.clone()),
            Change::Missed => Applied::Resync,
            Change::Signal { topic, note } => {
                // Another node's login outcome or CTI events: at once.
                if let Some(app) = weak.upgrade() {
                    match topic {
                        crate::throttle::TOPIC => app.throttle.apply(note),
                        crate::cti::TOPIC => app.cti.heard(note),
                        crate::peers::TOPIC => app.peers.heard_note(note),
                        crate::cdr::TOPIC => {
                            // A profile erased through another node: its
                            // name leaves this node's CDR files too.
                            let name = String::from_utf8_lossy(note).into_owned();
                            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                                let app = App(app);
                                rt.spawn(async move { crate::cdr::scrub_name(&app, &name).await });
                            }
                        }
                        _ => {}
                    }
                }
                return;
            }
        });
    }));
    share_throttle(app);
    tokio::spawn(run(app.clone(), rx));
}

async fn run(app: App, mut rx: mpsc::UnboundedReceiver<Applied>) {
    while let Some(a) = rx.recv().await {
        match a {
            Applied::Change(r) => {
                if let Err(e) = apply(&app, &r).await {
                    tracing::warn!(event = %r.event_type, error = %e, "change not applied to live views");
                }
            }
            Applied::Resync => {
                if let Err(e) = resync(&app).await {
                    tracing::warn!(error = %e, "live views not read again");
                }
            }
        }
    }
}

/// Changes of other nodes may have gone unheard: the caller-id index and
/// the settings are read again, every MLC checks its lines, sessions whose
/// profile or stored session is gone end, and every connected client
/// fetches its configuration and contacts again.
pub async fn resync(app: &App) -> anyhow::Result<()> {
    app.caller_id.load(app.store.as_ref()).await?;
    let s = app.store.get_settings().await?;
    app.cti.set_enabled(s.cti_enabled);
    app.pseudo.set_mode(s.pseudonymisation);
    crate::telephony::resync_all(app);
    // Calls and line states of the other nodes, from them.
    crate::peers::ask(app);
    for (pid, reason) in app.sessions.gone(app.store.as_ref()).await? {
        app.sessions.end_profile(pid);
        app.hub.send(Some(pid), PushKind::SessionEnded(reason));
    }
    app.cti.recheck_keys(app.store.as_ref()).await?;
    app.hub.send(None, PushKind::Config(None));
    app.hub.send(None, PushKind::ContactsChanged);
    Ok(())
}

/// `"7/12"` → (7, 12); `"7/"` or `"7"` → (7, None).
fn ids(object_id: &Option<String>) -> (Option<i64>, Option<i64>) {
    let Some(s) = object_id else {
        return (None, None);
    };
    let mut parts = s.split('/');
    let a = parts.next().and_then(|p| p.parse().ok());
    let b = parts.next().and_then(|p| p.parse().ok());
    (a, b)
}

async fn apply(app: &App, r: &AuditRecord) -> anyhow::Result<()> {
    let (a, b) = ids(&r.object_id);
    match r.object_type.as_str() {
        "local_contact" => {
            let (Some(pid), Some(cid)) = (a, b) else {
                return Ok(());
            };
            let (pid, cid) = (ProfileId(pid), LocalContactId(cid));
            match app.store.get_local_contact(pid, cid).await {
                Ok(c) => app
                    .caller_id
                    .upsert_local(pid, cid, &c.fields.number, &c.fields.name),
                Err(StoreError::NotFound(_)) => app.caller_id.remove_local(pid, cid),
                Err(e) => return Err(e.into()),
            }
            app.hub.send(Some(pid), PushKind::ContactsChanged);
        }
        "global_contact" => {
            match a.map(GlobalContactId) {
                Some(id) => match app.store.get_global_contact(id).await {
                    Ok(c) => app
                        .caller_id
                        .upsert_global(id, &c.fields.number, &c.fields.name),
                    Err(StoreError::NotFound(_)) => app.caller_id.remove_global(id),
                    Err(e) => return Err(e.into()),
                },
                None => app.caller_id.reload_global(app.store.as_ref()).await?,
            }
            app.hub.send(None, PushKind::ContactsChanged);
        }
        "speed_dial" | "line_key" => {
            if let Some(pid) = a {
                push_config(app, ProfileId(pid)).await?;
            }
        }
        "line"
            if matches!(
                r.event_type.as_str(),
                "line.registered" | "line.registration_failed" | "line.unregistered"
            ) => {}
        "line" => {
            // A new line is leased at once (with several nodes).
            app.leases.wake();
            match a {
                Some(lid) => crate::telephony::line_changed(app, LineId(lid)),
                None => crate::telephony::resync_all(app),
            }
            if r.event_type == "line.deleted" {
                app.hub.send(None, PushKind::Config(None));
            } else if let Some(lid) = a {
                for pid in app.store.profiles_with_line(LineId(lid)).await? {
                    push_config(app, pid).await?;
                }
            }
        }
        "profile" => {
            let Some(pid) = a.map(ProfileId) else {
                return Ok(());
            };
            if r.event_type == "profile.deleted" {
                app.caller_id.drop_profile(pid);
                app.sessions.end_profile(pid);
                app.hub
                    .send(Some(pid), PushKind::SessionEnded("profile_deleted"));
            } else if r.event_type != "profile.created" && r.changes.iter().any(|c| c == "password")
            {
                // (A new profile names its password among the fields it
                // set; that ends nobody's session. Read late, under load,
                // it would end the first session of the new profile.)
                // (Its stored sessions went with the change itself.)
                app.sessions.end_profile(pid);
                app.hub
                    .send(Some(pid), PushKind::SessionEnded("password_changed"));
            } else {
                push_config(app, pid).await?;
            }
        }
        "consent" if r.event_type == "consent.withdrawn" => {
            if let Some(pid) = a.map(ProfileId) {
                app.caller_id.drop_profile(pid);
                app.sessions.end_profile(pid);
                app.hub
                    .send(Some(pid), PushKind::SessionEnded("profile_deleted"));
            }
        }
        "settings" => {
            let s = app.store.get_settings().await?;
            app.cti.set_enabled(s.cti_enabled);
            app.pseudo.set_mode(s.pseudonymisation);
            app.hub.send(None, PushKind::Config(None))
        }
        "api_key" if r.event_type == "api_key.revoked" => {
            if let Some(id) = a {
                app.cti.revoked(openturret_domain::ApiKeyId(id));
            }
        }
        _ => {}
    }
    Ok(())
}

async fn push_config(app: &App, pid: ProfileId) -> anyhow::Result<()> {
    match crate::client::config_json(app, pid).await {
        Ok(json) => app.hub.send(Some(pid), PushKind::Config(Some(json.into()))),
        Err(StoreError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}
