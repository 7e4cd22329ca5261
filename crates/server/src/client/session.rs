//! Client sessions: what a logged-in turret may do, kept in memory under a
//! resume token so that a dropped connection can carry on without logging
//! in again. The token itself is never stored, only its SHA-256.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openturret_domain::ProfileId;
use openturret_domain::secret::Secret;
use openturret_store::sealing::OpenKey;

/// How long a session waits for its client to come back.
pub const RESUME_WINDOW: Duration = Duration::from_secs(30 * 60);
/// The longest a session lives, connected or not.
pub const MAX_AGE: Duration = Duration::from_secs(12 * 3600);

pub struct Session {
    pub profile: ProfileId,
    /// Entered with the master password (SPEC rule 7): may only list and
    /// delete call-memory entries.
    pub master: bool,
    pub contacts_unlocked: bool,
    /// The call-memory gate is passed (its password given, or not needed).
    pub call_memory_unlocked: bool,
    /// The private call-memory key, once unwrapped.
    pub key: Option<OpenKey>,
    /// The profile password, kept only until the key can be wrapped under
    /// it again (after an administrator reset it).
    pub rewrap_profile_password: Option<Secret>,
    pub started: Instant,
    pub last_seen: Instant,
    /// A connection is attached now (connected sessions are never swept).
    pub connected: bool,
}

pub type Shared = Arc<tokio::sync::Mutex<Session>>;

#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], (ProfileId, Shared)>>,
}

impl Sessions {
    pub fn insert(&self, token_hash: [u8; 32], s: Session) -> Shared {
        let profile = s.profile;
        let shared = Arc::new(tokio::sync::Mutex::new(s));
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        // Sessions whose client never came back are dropped as new ones
        // start, so abandoned sessions cannot pile up.
        m.retain(|_, (_, s)| match s.try_lock() {
            Ok(g) => {
                g.connected
                    || (g.started.elapsed() < MAX_AGE && g.last_seen.elapsed() < RESUME_WINDOW)
            }
            Err(_) => true,
        });
        m.insert(token_hash, (profile, shared.clone()));
        shared
    }

    /// The live session of a resume token.
    pub async fn resume(&self, token_hash: &[u8; 32]) -> Option<Shared> {
        let found = self
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(token_hash)
            .map(|(_, s)| s.clone());
        let s = found?;
        let alive = {
            let g = s.lock().await;
            g.started.elapsed() < MAX_AGE && g.last_seen.elapsed() < RESUME_WINDOW
        };
        if alive {
            Some(s)
        } else {
            self.remove(token_hash);
            None
        }
    }

    pub fn remove(&self, token_hash: &[u8; 32]) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(token_hash);
    }

    /// Ends every session of a profile (deleted, password changed).
    pub fn end_profile(&self, profile: ProfileId) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, (p, _)| *p != profile);
    }

    /// After changes may have been missed (another node's): the profiles
    /// whose sessions must end, with the reason: the profile is gone, or
    /// none of its sessions here is still stored (its password changed,
    /// which deletes them). Master-password sessions are never stored.
    pub async fn gone(
        &self,
        store: &dyn openturret_store::Store,
    ) -> anyhow::Result<Vec<(ProfileId, &'static str)>> {
        let held: Vec<([u8; 32], ProfileId, Shared)> = self
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(h, (p, s))| (*h, *p, s.clone()))
            .collect();
        let mut stored: HashMap<ProfileId, bool> = HashMap::new();
        for (hash, profile, s) in held {
            if s.lock().await.master {
                continue;
            }
            let here = store.client_session(hash).await?.is_some();
            *stored.entry(profile).or_default() |= here;
        }
        let mut gone = Vec::new();
        for (profile, any_stored) in stored {
            match store.get_profile(profile).await {
                Err(openturret_store::StoreError::NotFound(_)) => {
                    gone.push((profile, "profile_deleted"))
                }
                Err(e) => return Err(e.into()),
                Ok(_) if !any_stored => gone.push((profile, "password_changed")),
                Ok(_) => {}
            }
        }
        Ok(gone)
    }

    /// The profiles with a session (logged in at some turret).
    pub fn profiles(&self) -> Vec<ProfileId> {
        let mut p: Vec<ProfileId> = self
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|(p, _)| *p)
            .collect();
        p.sort();
        p.dedup();
        p
    }

    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
