//! Brute-force protection for every login (admin API now, profile logins
//! later): failures are counted per username and per client address within
//! a window; past a limit, that username or address is locked out for a
//! while. A lockout of one username never affects another; the per-address
//! limit is set higher, since many users may share an address.
//!
//! State is in memory: a restart lifts every lockout.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::AuthConfig;

/// Which login a username belongs to (admins and profiles are apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Realm {
    Admin,
    Profile,
}

impl Realm {
    pub fn as_str(self) -> &'static str {
        match self {
            Realm::Admin => "admin",
            Realm::Profile => "profile",
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Counter {
    failures: u32,
    window_start: Instant,
    locked_until: Option<Instant>,
}

/// A refusal: retry after this long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Locked {
    pub retry_after: Duration,
    /// `true` when the client address is locked, `false` for the username.
    pub by_address: bool,
}

/// A lockout in force, as listed to administrators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lockout {
    pub realm: Option<Realm>,
    pub username: Option<String>,
    pub address: Option<IpAddr>,
    pub remaining: Duration,
}

pub struct Throttle {
    policy: AuthConfig,
    users: Mutex<HashMap<(Realm, String), Counter>>,
    addresses: Mutex<HashMap<IpAddr, Counter>>,
}

/// Above this many tracked keys, expired entries are swept.
const SWEEP_ABOVE: usize = 10_000;

impl Throttle {
    pub fn new(policy: AuthConfig) -> Self {
        Throttle {
            policy,
            users: Mutex::new(HashMap::new()),
            addresses: Mutex::new(HashMap::new()),
        }
    }

    fn window(&self) -> Duration {
        Duration::from_secs(self.policy.failure_window_secs)
    }

    /// Whether a login attempt may proceed.
    pub fn check(&self, realm: Realm, username: &str, addr: IpAddr) -> Result<(), Locked> {
        let now = Instant::now();
        let remaining = |c: Option<&Counter>| {
            c.and_then(|c| c.locked_until)
                .and_then(|t| t.checked_duration_since(now))
                .filter(|d| !d.is_zero())
        };
        if let Some(d) = remaining(lock(&self.addresses).get(&addr)) {
            return Err(Locked {
                retry_after: d,
                by_address: true,
            });
        }
        if let Some(d) = remaining(lock(&self.users).get(&(realm, username.to_string()))) {
            return Err(Locked {
                retry_after: d,
                by_address: false,
            });
        }
        Ok(())
    }

    /// Counts a failed attempt; returns the lockout it started, if any.
    pub fn failure(&self, realm: Realm, username: &str, addr: IpAddr) -> Option<Locked> {
        let now = Instant::now();
        let lockout = Duration::from_secs(self.policy.lockout_secs);
        let bump = |c: &mut Counter, limit: u32| -> bool {
            if now.duration_since(c.window_start) > self.window() {
                *c = Counter {
                    failures: 0,
                    window_start: now,
                    locked_until: None,
                };
            }
            c.failures += 1;
            if c.failures >= limit && c.locked_until.is_none_or(|t| t <= now) {
                c.locked_until = Some(now + lockout);
                c.failures = 0;
                c.window_start = now;
                return true;
            }
            false
        };
        let fresh = Counter {
            failures: 0,
            window_start: now,
            locked_until: None,
        };
        let mut users = lock(&self.users);
        sweep(&mut users, now, self.window());
        let user_locked = bump(
            users.entry((realm, username.to_string())).or_insert(fresh),
            self.policy.max_failures_per_user,
        );
        drop(users);
        let mut addrs = lock(&self.addresses);
        sweep(&mut addrs, now, self.window());
        let addr_locked = bump(
            addrs.entry(addr).or_insert(fresh),
            self.policy.max_failures_per_ip,
        );
        let retry_after = lockout;
        if addr_locked {
            Some(Locked {
                retry_after,
                by_address: true,
            })
        } else if user_locked {
            Some(Locked {
                retry_after,
                by_address: false,
            })
        } else {
            None
        }
    }

    /// A successful login clears the username's failures.
    pub fn success(&self, realm: Realm, username: &str) {
        lock(&self.users).remove(&(realm, username.to_string()));
    }

    /// Lockouts in force now.
    pub fn lockouts(&self) -> Vec<Lockout> {
        let now = Instant::now();
        let left = |c: &Counter| c.locked_until.and_then(|t| t.checked_duration_since(now));
        let mut out: Vec<Lockout> = lock(&self.users)
            .iter()
            .filter_map(|((realm, u), c)| {
                left(c).map(|remaining| Lockout {
                    realm: Some(*realm),
                    username: Some(u.clone()),
                    address: None,
                    remaining,
                })
            })
            .collect();
        out.extend(lock(&self.addresses).iter().filter_map(|(a, c)| {
            left(c).map(|remaining| Lockout {
                realm: None,
                username: None,
                address: Some(*a),
                remaining,
            })
        }));
        out
    }

    /// Lifts a username's lockout; `true` if there was anything to lift.
    pub fn clear_user(&self, realm: Realm, username: &str) -> bool {
        lock(&self.users)
            .remove(&(realm, username.to_string()))
            .is_some()
    }

    /// Lifts an address's lockout.
    pub fn clear_address(&self, addr: IpAddr) -> bool {
        lock(&self.addresses).remove(&addr).is_some()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn sweep<K>(map: &mut HashMap<K, Counter>, now: Instant, window: Duration) {
    if map.len() > SWEEP_ABOVE {
        map.retain(|_, c| {
            c.locked_until.is_some_and(|t| t > now) || now.duration_since(c.window_start) <= window
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> Throttle {
        Throttle::new(AuthConfig {
            max_failures_per_user: 3,
            max_failures_per_ip: 5,
            ..AuthConfig::default()
        })
    }

    #[test]
    fn a_username_is_locked_after_its_limit_and_others_are_not() {
        let t = throttle();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(t.failure(Realm::Admin, "ann", ip), None);
        assert_eq!(t.failure(Realm::Admin, "ann", ip), None);
        let l = t.failure(Realm::Admin, "ann", ip).unwrap();
        assert!(!l.by_address);
        assert!(t.check(Realm::Admin, "ann", ip).is_err());
        assert!(t.check(Realm::Admin, "bob", ip).is_ok());
        assert!(
            t.check(Realm::Profile, "ann", ip).is_ok(),
            "realms are apart"
        );
        assert!(t.clear_user(Realm::Admin, "ann"));
        assert!(t.check(Realm::Admin, "ann", ip).is_ok());
    }

    #[test]
    fn an_address_is_locked_after_its_higher_limit() {
        let t = throttle();
        let ip: IpAddr = "10.0.0.2".parse().unwrap();
        for u in ["a", "b", "c", "d"] {
            assert_eq!(t.failure(Realm::Admin, u, ip), None);
        }
        assert!(t.failure(Realm::Admin, "e", ip).unwrap().by_address);
        assert!(t.check(Realm::Admin, "zed", ip).unwrap_err().by_address);
        assert_eq!(t.lockouts().len(), 1);
        assert!(t.clear_address(ip));
        assert!(t.check(Realm::Admin, "zed", ip).is_ok());
    }
}
