//! Call memory around the store: key pairs that follow the profile's
//! passwords, sealing entries as call events arrive, opening them for the
//! profile's user.
//!
//! What a password change by an administrator does (also in
//! `docs/call-memory.md`): the private key is wrapped under the profile
//! password and under the call-memory password. An administrator who sets
//! one of them does not know the private key, so the wrap under that
//! password is dropped; the other password still opens call memory, and the
//! next time the user unlocks with it, the key is wrapped again under the
//! password the user logged in with. When no wrap is left, nothing can open
//! the stored entries any more: they are erased, and a new key pair is made
//! under the new password(s). An administrator can therefore never read call
//! memory by resetting a password.

use openturret_domain::model::{CallMemoryEntry, CallMemoryKeys, Direction, Locality};
use openturret_domain::secret::Secret;
use openturret_domain::{LineId, ProfileId, Timestamp};
use openturret_store::sealing::{OpenKey, SealError, seal};
use serde::{Deserialize, Serialize};

use crate::App;

/// Makes the key pair of a new profile, wrapped under its passwords.
/// Only a password of at least `CALL_MEMORY_PASSWORD_MIN` characters
/// wraps the key; with none, there is no key and no call memory is kept.
fn strong(p: Option<Secret>) -> Option<Secret> {
    p.filter(|p| openturret_domain::model::protects_call_memory(p.expose()))
}

pub async fn new_keys(password: Secret, call_memory_password: Option<Secret>) -> CallMemoryKeys {
    let (password, cm) = (strong(Some(password)), strong(call_memory_password));
    if password.is_none() && cm.is_none() {
        return CallMemoryKeys::default();
    }
    tokio::task::spawn_blocking(move || {
        let key = OpenKey::generate();
        CallMemoryKeys {
            public: Some(key.public()),
            wrapped_by_profile_password: password.as_ref().map(|p| key.wrap(p)),
            wrapped_by_call_memory_password: cm.as_ref().map(|p| key.wrap(p)),
        }
    })
    .await
    .expect("key generation does not panic")
}

/// The keys after an administrator sets the profile password
/// (`password`) and/or the call-memory password (`call_memory`: `Some(None)`
/// removes it). Returns the new keys and whether the stored entries must be
/// erased, or `None` when nothing changes.
pub async fn rekey(
    current: CallMemoryKeys,
    password: Option<Secret>,
    call_memory: Option<Option<Secret>>,
) -> Option<(CallMemoryKeys, bool)> {
    if password.is_none() && call_memory.is_none() {
        return None;
    }
    let mut keys = current.clone();
    if password.is_some() {
        keys.wrapped_by_profile_password = None;
    }
    if call_memory.is_some() {
        keys.wrapped_by_call_memory_password = None;
    }
    // Passwords too short to protect call memory never wrap its key.
    let password = strong(password);
    let call_memory = call_memory.map(strong);
    let still_open = keys.public.is_some()
        && (keys.wrapped_by_profile_password.is_some()
            || keys.wrapped_by_call_memory_password.is_some());
    if still_open {
        return Some((keys, false));
    }
    let fresh = tokio::task::spawn_blocking(move || {
        let key = OpenKey::generate();
        CallMemoryKeys {
            public: Some(key.public()),
            wrapped_by_profile_password: password.as_ref().map(|p| key.wrap(p)),
            wrapped_by_call_memory_password: call_memory.flatten().as_ref().map(|p| key.wrap(p)),
        }
    })
    .await
    .expect("key generation does not panic");
    let has_wrap = fresh.wrapped_by_profile_password.is_some()
        || fresh.wrapped_by_call_memory_password.is_some();
    let fresh = if has_wrap {
        fresh
    } else {
        CallMemoryKeys::default()
    };
    Some((fresh, current.public.is_some()))
}

/// Unwraps a key on the blocking pool.
pub async fn unwrap(
    wrapped: Vec<u8>,
    password: Secret,
    public: [u8; 32],
) -> Result<OpenKey, SealError> {
    tokio::task::spawn_blocking(move || OpenKey::unwrap(&wrapped, &password, &public))
        .await
        .expect("unwrapping does not panic")
}

/// Wraps a key on the blocking pool.
pub async fn wrap(key: OpenKey, password: Secret) -> Vec<u8> {
    tokio::task::spawn_blocking(move || key.wrap(&password))
        .await
        .expect("wrapping does not panic")
}

/// The sealed plaintext of an entry: internal, versioned.
#[derive(Serialize, Deserialize)]
struct Plain {
    v: u8,
    number: String,
    name: String,
    at: i64,
    direction: String,
    answered: bool,
    answered_by: Option<String>,
    /// Added later: absent from older entries.
    #[serde(default)]
    duration_ms: Option<i64>,
    #[serde(default)]
    reason: String,
}

pub fn seal_entry(public: &[u8; 32], e: &CallMemoryEntry) -> Vec<u8> {
    let plain = Plain {
        v: 1,
        number: e.number.clone(),
        name: e.name.clone(),
        at: e.at.0,
        direction: e.direction.as_str().into(),
        answered: e.answered,
        answered_by: e.answered_by.map(|l| l.as_str().to_string()),
        duration_ms: e.duration_ms,
        reason: e.reason.clone(),
    };
    seal(
        public,
        &serde_json::to_vec(&plain).expect("entry serialises"),
    )
}

pub fn open_entry(key: &OpenKey, sealed: &[u8]) -> Result<CallMemoryEntry, SealError> {
    let bytes = zeroize::Zeroizing::new(key.open(sealed)?);
    let p: Plain = serde_json::from_slice(&bytes).map_err(|_| SealError::Malformed)?;
    Ok(CallMemoryEntry {
        number: p.number,
        name: p.name,
        at: Timestamp(p.at),
        direction: Direction::parse(&p.direction).ok_or(SealError::Malformed)?,
        answered: p.answered,
        answered_by: p.answered_by.as_deref().and_then(Locality::parse),
        duration_ms: p.duration_ms,
        reason: p.reason,
    })
}

/// A finished call on a line, as the Multi-Line Controller reports it
/// (`mlc::call::end`). There is no HTTP route for it.
#[derive(Clone, Debug)]
pub struct CallEvent {
    pub line: LineId,
    pub direction: Direction,
    pub remote_number: String,
    pub at: Timestamp,
    /// Incoming: the profile that answered, if a turret answered.
    pub answered_by: Option<ProfileId>,
    /// Whether the call was answered (by a turret, by the line itself in
    /// automatic answer mode, or by the far end of an outgoing call).
    pub answered: bool,
    /// Outgoing: the profile that placed the call; only it gets an entry.
    pub placed_by: Option<ProfileId>,
    /// How long the call was connected.
    pub duration_ms: Option<i64>,
    /// Why an unanswered call ended (the SIP answer, `no_answer`, ...).
    pub reason: String,
}

/// Writes a call-memory entry for every profile showing the line that
/// collects call memory (for an outgoing call, the profile that placed
/// it), with the caller identified from its contacts. Returns how many
/// entries were written.
pub async fn record_call(app: &App, event: &CallEvent) -> anyhow::Result<usize> {
    let mut written = 0;
    let profiles = match event.placed_by {
        Some(p) => vec![p],
        None => app.store.profiles_with_line(event.line).await?,
    };
    for pid in profiles {
        let profile = app.store.get_profile(pid).await?;
        if !profile.flags.collect_call_memory {
            continue;
        }
        let Some(public) = app.store.call_memory_keys(pid).await?.public else {
            continue;
        };
        let entry = CallMemoryEntry {
            number: event.remote_number.clone(),
            name: app
                .caller_id
                .lookup(pid, &event.remote_number)
                .unwrap_or_default(),
            at: event.at,
            direction: event.direction,
            answered: event.answered,
            answered_by: event.answered_by.map(|by| {
                if by == pid {
                    Locality::Local
                } else {
                    Locality::Remote
                }
            }),
            duration_ms: event.duration_ms,
            reason: event.reason.clone(),
        };
        app.store
            .push_call_memory(pid, event.at, seal_entry(&public, &entry))
            .await?;
        app.hub.call_memory_added(pid);
        written += 1;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_admin_reset_keeps_entries_while_another_password_still_opens_them() {
        let keys = new_keys(
            Secret::new("profile-pw-one"),
            Some(Secret::new("call-mem-pw-one")),
        )
        .await;
        let (after, erase) = rekey(keys.clone(), Some(Secret::new("profile-pw-two")), None)
            .await
            .unwrap();
        assert!(!erase);
        assert_eq!(after.public, keys.public);
        assert!(after.wrapped_by_profile_password.is_none());
        let k = unwrap(
            after.wrapped_by_call_memory_password.unwrap(),
            Secret::new("call-mem-pw-one"),
            after.public.unwrap(),
        )
        .await;
        assert!(k.is_ok());
    }

    #[tokio::test]
    async fn when_no_password_can_open_the_key_entries_are_erased_and_a_new_key_made() {
        let keys = new_keys(Secret::new("profile-pw-one"), None).await;
        let (after, erase) = rekey(keys.clone(), Some(Secret::new("profile-pw-two")), None)
            .await
            .unwrap();
        assert!(erase, "the old entries can no longer be opened");
        assert_ne!(after.public, keys.public);
        let k = unwrap(
            after.wrapped_by_profile_password.unwrap(),
            Secret::new("profile-pw-two"),
            after.public.unwrap(),
        )
        .await;
        assert!(k.is_ok(), "the new password opens the new key");
    }

    /// Issue 14, point 6: the cost of one offline guess at a wrapped key,
    /// measured, times the smallest keyspace a password that may wrap it
    /// has (12 digits), is centuries of one core's time.
    #[test]
    fn guessing_the_weakest_accepted_password_offline_takes_centuries() {
        use openturret_domain::model::{CALL_MEMORY_PASSWORD_MIN, protects_call_memory};
        assert!(
            !protects_call_memory("12345678901"),
            "11 characters are refused"
        );
        assert!(!protects_call_memory("1234"), "a PIN is refused");
        assert!(protects_call_memory("123456789012"));
        let key = OpenKey::generate();
        let wrapped = key.wrap(&Secret::new("123456789012"));
        let guesses = 4;
        let start = std::time::Instant::now();
        for g in 0..guesses {
            let guess = Secret::new(format!("{g:012}"));
            assert!(OpenKey::unwrap(&wrapped, &guess, &key.public()).is_err());
        }
        let per_guess = start.elapsed().as_secs_f64() / guesses as f64;
        let keyspace = 10f64.powi(CALL_MEMORY_PASSWORD_MIN as i32);
        let years = keyspace * per_guess / (365.25 * 24.0 * 3600.0);
        eprintln!(
            "one offline guess: {:.1} ms; the smallest accepted keyspace (10^{CALL_MEMORY_PASSWORD_MIN}): {years:.0} years of one core",
            per_guess * 1000.0
        );
        assert!(years > 100.0, "{years:.1} years");
        // A 4-digit PIN, for comparison: minutes.
        let pin_minutes = 1e4 * per_guess / 60.0;
        assert!(pin_minutes < 60.0, "{pin_minutes}");
    }

    #[tokio::test]
    async fn no_password_too_short_ever_wraps_the_key() {
        let none = new_keys(Secret::new("1234"), None).await;
        assert_eq!(none, CallMemoryKeys::default(), "no key: nothing kept");
        let cm_only = new_keys(Secret::new("1234"), Some(Secret::new("a long cm password"))).await;
        assert!(cm_only.wrapped_by_profile_password.is_none());
        assert!(cm_only.wrapped_by_call_memory_password.is_some());
        let (after, erase) = rekey(cm_only.clone(), Some(Secret::new("9876")), None)
            .await
            .unwrap();
        assert!(!erase && after.wrapped_by_profile_password.is_none());
    }

    #[test]
    fn entries_round_trip_sealed() {
        let key = OpenKey::generate();
        let e = CallMemoryEntry {
            number: "+44 20 7946 0001".into(),
            name: "Bob".into(),
            at: Timestamp(5),
            direction: Direction::Incoming,
            answered: true,
            answered_by: Some(Locality::Remote),
            duration_ms: Some(61_500),
            reason: String::new(),
        };
        let sealed = seal_entry(&key.public(), &e);
        assert_eq!(open_entry(&key, &sealed).unwrap(), e);
    }
}
