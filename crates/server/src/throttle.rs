//! Brute-force protection for every login: the admin API and portal, a
//! profile's turret login, each profile's contacts and call-memory
//! passwords, and the master password per profile (issue 14, points 3–4).
//!
//! What it guarantees:
//! - **A slot before the check.** An attempt takes its slot under the lock
//!   before the password is verified ([`Throttle::begin`]); failures plus
//!   attempts in flight never exceed the limit, so a burst of parallel
//!   guesses gets no more checks than a patient guesser.
//! - **Guessing is locked, not the owner.** Failures lock the pair
//!   (account, client address) after `max_failures_per_user`, and an
//!   address after `max_failures_per_ip` within its realm (so an admin
//!   brute force from a shared address does not lock traders out there).
//!   Across addresses, an account being guessed slows down: after the
//!   limit, attempts from addresses that never logged in to it are spaced
//!   by a delay that doubles with each failure (up to the lockout time). An
//!   address that logged in to the account successfully keeps its own
//!   limit only, so a stranger cannot lock the owner out.
//! - **Realms are apart**: admin usernames, profiles, each profile's
//!   contacts and call-memory passwords, the master password per profile.
//!
//! - **Shared by the nodes of one database**: every failure, success and
//!   lifted lockout is sent to the other nodes ([`Throttle::share_to`],
//!   a note sealed under the deployment's key), which count it as their
//!   own ([`Throttle::apply`]); so guesses spread over nodes meet the same
//!   limits, a few milliseconds late. (Slots taken for attempts in
//!   flight stay per node: with N nodes, at most N times the limit are
//!   being checked at one instant.)
//!
//! State is in memory: a restart lifts every lockout.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::AuthConfig;

mod shared;
pub use shared::{Outcome, TOPIC};

/// Which login a username belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Realm {
    Admin,
    /// A profile's turret login, and its contacts and call-memory
    /// passwords (keyed `contacts:<id>`, `cm:<id>`).
    Profile,
    /// The master password, per profile (keyed by the profile id).
    Master,
}

impl Realm {
    pub fn as_str(self) -> &'static str {
        match self {
            Realm::Admin => "admin",
            Realm::Profile => "profile",
            Realm::Master => "master",
        }
    }

    pub fn parse(s: &str) -> Option<Realm> {
        [Realm::Admin, Realm::Profile, Realm::Master]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

#[derive(Clone, Copy, Debug)]
struct Counter {
    failures: u32,
    /// Attempts that hold a slot and are being checked now.
    in_flight: u32,
    window_start: Instant,
    locked_until: Option<Instant>,
    /// Attempts refused while locked (shown to administrators).
    refused: u64,
}

impl Counter {
    fn new(now: Instant) -> Counter {
        Counter {
            failures: 0,
            in_flight: 0,
            window_start: now,
            locked_until: None,
            refused: 0,
        }
    }

    fn locked(&self, now: Instant) -> Option<Duration> {
        self.locked_until
            .and_then(|t| t.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    fn roll(&mut self, now: Instant, window: Duration) {
        if self.locked(now).is_none() && now.duration_since(self.window_start) > window {
            self.failures = 0;
            self.window_start = now;
            self.locked_until = None;
        }
    }

    fn idle(&self, now: Instant, window: Duration) -> bool {
        self.in_flight == 0
            && self.locked(now).is_none()
            && now.duration_since(self.window_start) > window
    }
}

/// An account's state across addresses.
#[derive(Clone, Debug)]
struct Account {
    failures: u32,
    last_failure: Instant,
    /// Attempts from unknown addresses being checked now.
    in_flight: u32,
    /// Addresses that logged in to the account (newest last, at most 8).
    known: Vec<IpAddr>,
}

impl Account {
    fn new(now: Instant) -> Account {
        Account {
            failures: 0,
            last_failure: now,
            in_flight: 0,
            known: Vec::new(),
        }
    }
}

/// At most this many addresses are remembered per account.
const KNOWN_PER_ACCOUNT: usize = 8;

/// A refusal: retry after this long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Locked {
    pub retry_after: Duration,
    /// `true` when the client address is locked, `false` for the account
    /// (from this address, or being guessed from many).
    pub by_address: bool,
}

/// A lockout that a failure has just started: audited once, with the
/// failures that led to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockoutStarted {
    pub by_address: bool,
    pub failures: u32,
    pub lasts: Duration,
}

/// A lockout in force, as listed to administrators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lockout {
    pub realm: Realm,
    pub username: Option<String>,
    pub address: IpAddr,
    pub remaining: Duration,
    /// Attempts refused since it began.
    pub refused: u64,
}

type Key = (Realm, String);

#[derive(Default)]
struct State {
    pairs: HashMap<(Realm, String, IpAddr), Counter>,
    addresses: HashMap<(Realm, IpAddr), Counter>,
    accounts: HashMap<Key, Account>,
}

pub struct Throttle {
    policy: AuthConfig,
    state: Mutex<State>,
    /// Where outcomes go for the other nodes, once sharing started.
    outbox: std::sync::OnceLock<tokio::sync::mpsc::Sender<Vec<u8>>>,
}

/// Above this many tracked keys, idle entries are swept.
const SWEEP_ABOVE: usize = 10_000;

/// A login attempt holding its slot. Say how it ended with
/// [`Attempt::succeeded`] or [`Attempt::failed`]; dropped without either
/// (an error while checking), it gives the slot back uncounted.
pub struct Attempt<'a> {
    t: &'a Throttle,
    realm: Realm,
    user: String,
    addr: IpAddr,
    known: bool,
    done: bool,
}

impl Throttle {
    pub fn new(policy: AuthConfig) -> Self {
        Throttle {
            policy,
            state: Mutex::new(State::default()),
            outbox: std::sync::OnceLock::new(),
        }
    }

    /// Counts one failure of `user` from `addr` (`create`: making the
    /// entries a local attempt would have made in [`Throttle::begin`]).
    /// Returns the lockout it started.
    fn count_failure(
        &self,
        st: &mut State,
        realm: Realm,
        user: &str,
        addr: IpAddr,
        now: Instant,
        create: bool,
    ) -> Option<LockoutStarted> {
        let lasts = self.lockout();
        let window = self.window();
        let mut started = None;
        let mut bump = |c: &mut Counter, limit: u32, by_address: bool| {
            c.roll(now, window);
            c.failures += 1;
            if c.failures >= limit && c.locked(now).is_none() {
                started = Some(LockoutStarted {
                    by_address,
                    failures: c.failures,
                    lasts,
                });
                c.locked_until = Some(now + lasts);
                c.failures = 0;
                c.refused = 0;
                c.window_start = now;
            }
        };
        let pair_key = (realm, user.to_string(), addr);
        if create {
            st.pairs
                .entry(pair_key.clone())
                .or_insert_with(|| Counter::new(now));
            st.addresses
                .entry((realm, addr))
                .or_insert_with(|| Counter::new(now));
            st.accounts
                .entry((realm, user.to_string()))
                .or_insert_with(|| Account::new(now));
        }
        if let Some(p) = st.pairs.get_mut(&pair_key) {
            bump(p, self.policy.max_failures_per_user.max(1), false);
        }
        if let Some(a) = st.addresses.get_mut(&(realm, addr)) {
            bump(a, self.policy.max_failures_per_ip.max(1), true);
        }
        if let Some(acc) = st.accounts.get_mut(&(realm, user.to_string())) {
            if now.duration_since(acc.last_failure) > window {
                acc.failures = 0;
            }
            acc.failures += 1;
            acc.last_failure = now;
        }
        started
    }

    fn window(&self) -> Duration {
        Duration::from_secs(self.policy.failure_window_secs)
    }

    fn lockout(&self) -> Duration {
        Duration::from_secs(self.policy.lockout_secs)
    }

    /// Takes a slot for one attempt at `realm`/`username` from `addr`, or
    /// says how long to wait.
    pub fn begin(&self, realm: Realm, username: &str, addr: IpAddr) -> Result<Attempt<'_>, Locked> {
        let now = Instant::now();
        let window = self.window();
        let (per_user, per_ip) = (
            self.policy.max_failures_per_user.max(1),
            self.policy.max_failures_per_ip.max(1),
        );
        let mut st = lock(&self.state);
        sweep(&mut st, now, window);
        let st = &mut *st;
        let a = st
            .addresses
            .entry((realm, addr))
            .or_insert_with(|| Counter::new(now));
        a.roll(now, window);
        if let Some(d) = a.locked(now) {
            a.refused += 1;
            return Err(Locked {
                retry_after: d,
                by_address: true,
            });
        }
        if a.failures + a.in_flight >= per_ip {
            return Err(Locked {
                retry_after: Duration::from_secs(1),
                by_address: true,
            });
        }
        let p = st
            .pairs
            .entry((realm, username.to_string(), addr))
            .or_insert_with(|| Counter::new(now));
        p.roll(now, window);
        if let Some(d) = p.locked(now) {
            p.refused += 1;
            return Err(Locked {
                retry_after: d,
                by_address: false,
            });
        }
        if p.failures + p.in_flight >= per_user {
            return Err(Locked {
                retry_after: Duration::from_secs(1),
                by_address: false,
            });
        }
        let acc = st.accounts.get_mut(&(realm, username.to_string()));
        let known = acc.as_ref().is_some_and(|acc| acc.known.contains(&addr));
        if !known && let Some(acc) = acc {
            if now.duration_since(acc.last_failure) > window {
                acc.failures = 0;
            }
            // Guessed from many addresses: one attempt at a time from an
            // unknown address, spaced by a doubling delay.
            if acc.failures + acc.in_flight >= per_user {
                let over = acc.failures.saturating_sub(per_user).min(20);
                let delay = Duration::from_secs(1u64 << over).min(self.lockout());
                let ready = acc.last_failure + delay;
                if acc.in_flight > 0 || now < ready {
                    let wait = ready
                        .saturating_duration_since(now)
                        .max(Duration::from_secs(1));
                    return Err(Locked {
                        retry_after: wait,
                        by_address: false,
                    });
                }
            }
        }
        // The slot is taken.
        st.addresses
            .get_mut(&(realm, addr))
            .expect("entered above")
            .in_flight += 1;
        st.pairs
            .get_mut(&(realm, username.to_string(), addr))
            .expect("entered above")
            .in_flight += 1;
        if !known {
            st.accounts
                .entry((realm, username.to_string()))
                .or_insert_with(|| Account::new(now))
                .in_flight += 1;
        }
        Ok(Attempt {
            t: self,
            realm,
            user: username.to_string(),
            addr,
            known,
            done: false,
        })
    }

    fn release(&self, at: &Attempt<'_>, st: &mut State) {
        if let Some(a) = st.addresses.get_mut(&(at.realm, at.addr)) {
            a.in_flight = a.in_flight.saturating_sub(1);
        }
        if let Some(p) = st.pairs.get_mut(&(at.realm, at.user.clone(), at.addr)) {
            p.in_flight = p.in_flight.saturating_sub(1);
        }
        if !at.known
            && let Some(acc) = st.accounts.get_mut(&(at.realm, at.user.clone()))
        {
            acc.in_flight = acc.in_flight.saturating_sub(1);
        }
    }

    /// Lockouts in force now.
    pub fn lockouts(&self) -> Vec<Lockout> {
        let now = Instant::now();
        let st = lock(&self.state);
        let mut out: Vec<Lockout> = st
            .pairs
            .iter()
            .filter_map(|((realm, u, addr), c)| {
                c.locked(now).map(|remaining| Lockout {
                    realm: *realm,
                    username: Some(u.clone()),
                    address: *addr,
                    remaining,
                    refused: c.refused,
                })
            })
            .collect();
        out.extend(st.addresses.iter().filter_map(|((realm, a), c)| {
            c.locked(now).map(|remaining| Lockout {
                realm: *realm,
                username: None,
                address: *a,
                remaining,
                refused: c.refused,
            })
        }));
        out
    }

    /// Lifts every lockout and delay of a username; `true` if there was
    /// anything to lift (here; the other nodes lift theirs too).
    pub fn clear_user(&self, realm: Realm, username: &str) -> bool {
        self.share(Outcome::ClearedUser {
            realm: realm.as_str().into(),
            user: username.into(),
        });
        self.lift_user(realm, username)
    }

    fn lift_user(&self, realm: Realm, username: &str) -> bool {
        let mut st = lock(&self.state);
        let before = st.pairs.len() + st.accounts.len();
        st.pairs
            .retain(|(r, u, _), c| !(*r == realm && u == username) || c.in_flight > 0);
        st.accounts
            .retain(|(r, u), a| !(*r == realm && u == username) || a.in_flight > 0);
        st.pairs.len() + st.accounts.len() < before
    }

    /// Lifts the lockouts of an address (in every realm, and of every
    /// account from it), on every node.
    pub fn clear_address(&self, addr: IpAddr) -> bool {
        self.share(Outcome::ClearedAddress { addr });
        self.lift_address(addr)
    }

    fn lift_address(&self, addr: IpAddr) -> bool {
        let mut st = lock(&self.state);
        let before = st.pairs.len() + st.addresses.len();
        st.pairs
            .retain(|(_, _, a), c| *a != addr || c.in_flight > 0);
        st.addresses
            .retain(|(_, a), c| *a != addr || c.in_flight > 0);
        st.pairs.len() + st.addresses.len() < before
    }
}

/// The pair's failures are forgotten and `addr` is remembered as one the
/// account's owner uses.
fn remember_success(st: &mut State, realm: Realm, user: &str, addr: IpAddr) {
    st.pairs.remove(&(realm, user.to_string(), addr));
    let now = Instant::now();
    let acc = st
        .accounts
        .entry((realm, user.to_string()))
        .or_insert_with(|| Account::new(now));
    acc.known.retain(|a| *a != addr);
    acc.known.push(addr);
    if acc.known.len() > KNOWN_PER_ACCOUNT {
        acc.known.remove(0);
    }
}

impl Attempt<'_> {
    /// The password was right: the pair's failures are forgotten and the
    /// address is remembered as one the account's owner uses.
    pub fn succeeded(mut self) {
        self.done = true;
        let t = self.t;
        {
            let mut st = lock(&t.state);
            t.release(&self, &mut st);
            remember_success(&mut st, self.realm, &self.user, self.addr);
        }
        t.share(Outcome::Succeeded {
            realm: self.realm.as_str().into(),
            user: std::mem::take(&mut self.user),
            addr: self.addr,
        });
    }

    /// The password was wrong: counted; returns the lockout this failure
    /// started, if any (audit it once).
    pub fn failed(mut self) -> Option<LockoutStarted> {
        self.done = true;
        let t = self.t;
        let started = {
            let mut st = lock(&t.state);
            t.release(&self, &mut st);
            t.count_failure(
                &mut st,
                self.realm,
                &self.user,
                self.addr,
                Instant::now(),
                false,
            )
        };
        t.share(Outcome::Failed {
            realm: self.realm.as_str().into(),
            user: std::mem::take(&mut self.user),
            addr: self.addr,
        });
        started
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.done {
            let mut st = lock(&self.t.state);
            self.t.release(self, &mut st);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn sweep(st: &mut State, now: Instant, window: Duration) {
    if st.pairs.len() > SWEEP_ABOVE {
        st.pairs.retain(|_, c| !c.idle(now, window));
    }
    if st.addresses.len() > SWEEP_ABOVE {
        st.addresses.retain(|_, c| !c.idle(now, window));
    }
    if st.accounts.len() > SWEEP_ABOVE {
        // Accounts with known addresses are real ones (a login succeeded),
        // so they stay; those only ever guessed at go once idle.
        st.accounts.retain(|_, a| {
            a.in_flight > 0 || !a.known.is_empty() || now.duration_since(a.last_failure) <= window
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn throttle() -> Throttle {
        Throttle::new(AuthConfig {
            max_failures_per_user: 3,
            max_failures_per_ip: 5,
            ..AuthConfig::default()
        })
    }

    pub(super) fn fail(t: &Throttle, realm: Realm, u: &str, ip: IpAddr) -> Option<LockoutStarted> {
        t.begin(realm, u, ip).expect("a slot").failed()
    }

    #[test]
    fn a_pair_is_locked_after_its_limit_and_others_are_not() {
        let t = throttle();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let owner: IpAddr = "10.0.0.9".parse().unwrap();
        t.begin(Realm::Admin, "ann", owner).unwrap().succeeded();
        assert_eq!(fail(&t, Realm::Admin, "ann", ip), None);
        assert_eq!(fail(&t, Realm::Admin, "ann", ip), None);
        let l = fail(&t, Realm::Admin, "ann", ip).unwrap();
        assert!(!l.by_address);
        assert_eq!(l.failures, 3);
        assert!(t.begin(Realm::Admin, "ann", ip).is_err());
        assert!(t.begin(Realm::Admin, "bob", ip).is_ok());
        assert!(
            t.begin(Realm::Profile, "ann", ip).is_ok(),
            "realms are apart"
        );
        // The owner, from the address they logged in from, is not locked.
        assert!(t.begin(Realm::Admin, "ann", owner).is_ok());
        assert!(t.clear_user(Realm::Admin, "ann"));
        assert!(t.begin(Realm::Admin, "ann", ip).is_ok());
    }

    #[test]
    fn parallel_attempts_take_slots_before_they_are_checked() {
        let t = throttle();
        let ip: IpAddr = "10.0.0.3".parse().unwrap();
        let slots: Vec<_> = (0..10)
            .filter_map(|_| t.begin(Realm::Admin, "ann", ip).ok())
            .collect();
        assert_eq!(slots.len(), 3, "no more attempts in flight than the limit");
        for s in slots {
            s.failed();
        }
        assert!(t.begin(Realm::Admin, "ann", ip).is_err());
        // A slot given back uncounted (an error while checking).
        let u: IpAddr = "10.0.0.4".parse().unwrap();
        drop(t.begin(Realm::Admin, "zed", u).unwrap());
        assert_eq!(
            (0..5)
                .filter(|_| t.begin(Realm::Admin, "zed", u).map(drop).is_ok())
                .count(),
            5
        );
    }

    #[test]
    fn an_address_is_locked_in_its_realm_after_its_higher_limit() {
        let t = throttle();
        let ip: IpAddr = "10.0.0.2".parse().unwrap();
        for u in ["a", "b", "c", "d"] {
            assert_eq!(fail(&t, Realm::Admin, u, ip), None);
        }
        assert!(fail(&t, Realm::Admin, "e", ip).unwrap().by_address);
        assert!(t.begin(Realm::Admin, "zed", ip).err().unwrap().by_address);
        assert!(
            t.begin(Realm::Profile, "7", ip).is_ok(),
            "traders still log in there"
        );
        assert_eq!(t.lockouts().len(), 1);
        assert!(t.clear_address(ip));
        assert!(t.begin(Realm::Admin, "zed", ip).is_ok());
    }

    #[test]
    fn an_account_guessed_from_many_addresses_slows_down_for_strangers_only() {
        let t = throttle();
        let owner: IpAddr = "192.0.2.1".parse().unwrap();
        t.begin(Realm::Profile, "7", owner).unwrap().succeeded();
        for i in 0..3 {
            let ip: IpAddr = format!("10.1.0.{i}").parse().unwrap();
            fail(&t, Realm::Profile, "7", ip);
        }
        let stranger: IpAddr = "10.1.0.200".parse().unwrap();
        let l = t
            .begin(Realm::Profile, "7", stranger)
            .err()
            .expect("delayed");
        assert!(!l.by_address && l.retry_after >= Duration::from_millis(500));
        assert!(
            t.begin(Realm::Profile, "7", owner).is_ok(),
            "the owner is never delayed"
        );
    }
}

/// The error log's entry for a lockout that began (the audit log has the
/// account; this says only what kind of lockout, in which realm).
pub fn lockout_event(realm: &str, l: &LockoutStarted) -> openturret_domain::model::Event {
    use openturret_domain::model::Event;
    if l.by_address {
        Event::warning(
            "login.address_locked",
            format!("realm:{realm}"),
            "an address was locked out after repeated wrong passwords (the audit log has the details)",
        )
    } else {
        Event::warning(
            "login.account_locked",
            format!("realm:{realm}"),
            "an account was locked out after repeated wrong passwords (the audit log has the details)",
        )
    }
    .with("lockout_secs", l.lasts.as_secs())
}
