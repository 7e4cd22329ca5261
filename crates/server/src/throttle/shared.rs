//! The throttle of one node shared with the other nodes of its database
//! (issue 19): every outcome here is sent to them as a note (sealed by the
//! store under the deployment's key), and theirs are counted here as if
//! they had happened here, so guesses spread over the nodes meet one limit.

use std::net::IpAddr;
use std::time::Instant;

use super::{Realm, Throttle, lock, remember_success};

/// An outcome told to the other nodes (and heard from them).
#[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum Outcome {
    Failed {
        realm: String,
        user: String,
        addr: IpAddr,
    },
    Succeeded {
        realm: String,
        user: String,
        addr: IpAddr,
    },
    ClearedUser {
        realm: String,
        user: String,
    },
    ClearedAddress {
        addr: IpAddr,
    },
}

/// The topic of the throttle's notes between nodes.
pub const TOPIC: &str = "throttle";

impl Throttle {
    /// From now on every outcome is also sent to `outbox` (for the other
    /// nodes; a full outbox loses the note, never delays a login).
    pub fn share_to(&self, outbox: tokio::sync::mpsc::Sender<Vec<u8>>) {
        let _ = self.outbox.set(outbox);
    }

    pub(super) fn share(&self, o: Outcome) {
        if let Some(tx) = self.outbox.get()
            && tx
                .try_send(serde_json::to_vec(&o).expect("an outcome serialises"))
                .is_err()
        {
            tracing::warn!("a login outcome was not shared with the other nodes (queue full)");
        }
    }

    /// Counts an outcome another node saw, as if it had been here.
    pub fn apply(&self, note: &[u8]) {
        let Ok(o) = serde_json::from_slice::<Outcome>(note) else {
            tracing::warn!("a login outcome from another node was not understood");
            return;
        };
        let realm_of = |r: &str| Realm::parse(r);
        match o {
            Outcome::Failed { realm, user, addr } => {
                if let Some(realm) = realm_of(&realm) {
                    let mut st = lock(&self.state);
                    self.count_failure(&mut st, realm, &user, addr, Instant::now(), true);
                }
            }
            Outcome::Succeeded { realm, user, addr } => {
                if let Some(realm) = realm_of(&realm) {
                    let mut st = lock(&self.state);
                    remember_success(&mut st, realm, &user, addr);
                }
            }
            Outcome::ClearedUser { realm, user } => {
                if let Some(realm) = realm_of(&realm) {
                    self.lift_user(realm, &user);
                }
            }
            Outcome::ClearedAddress { addr } => {
                self.lift_address(addr);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{fail, throttle};
    use super::super::*;

    #[tokio::test]
    async fn outcomes_shared_between_nodes_meet_one_limit() {
        let (a, b) = (throttle(), throttle());
        let (tx_a, mut from_a) = tokio::sync::mpsc::channel(64);
        let (tx_b, mut from_b) = tokio::sync::mpsc::channel(64);
        a.share_to(tx_a);
        b.share_to(tx_b);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let relay = |from: &mut tokio::sync::mpsc::Receiver<Vec<u8>>, to: &Throttle| {
            while let Ok(n) = from.try_recv() {
                to.apply(&n);
            }
        };
        // Two failures on A, the third on B: locked on both.
        assert_eq!(fail(&a, Realm::Profile, "7", ip), None);
        assert_eq!(fail(&a, Realm::Profile, "7", ip), None);
        relay(&mut from_a, &b);
        assert!(
            fail(&b, Realm::Profile, "7", ip).is_some(),
            "B starts the lockout"
        );
        relay(&mut from_b, &a);
        for t in [&a, &b] {
            assert!(matches!(
                t.begin(Realm::Profile, "7", ip),
                Err(Locked {
                    by_address: false,
                    ..
                })
            ));
        }
        // Another account from the address is not locked on either.
        relay(&mut from_a, &b);
        assert!(b.begin(Realm::Profile, "8", ip).is_ok());
        // Lifted on B: lifted on A too.
        assert!(b.clear_user(Realm::Profile, "7"));
        relay(&mut from_b, &a);
        assert!(a.begin(Realm::Profile, "7", ip).is_ok());
        // A note that is not an outcome changes nothing.
        a.apply(b"{\"k\":\"bogus\"}");
        a.apply(b"\xff");
    }
}
