//! Verifying the audit chain as stored, whatever the backend: the
//! backend reads entries in order of sequence, a page at a time, and feeds
//! them here; this checks each link, that the stored start (after purges)
//! is the one the last purge entry names, and that no newer entry than the
//! head anchored outside the database went missing.

use openturret_domain::audit::{AuditEntry, ChainBreak, ChainVerifier};

use crate::AuditVerification;

pub struct Verify<'k> {
    v: ChainVerifier<'k>,
    anchor: Option<i64>,
    /// The sequence of the last entry fed (where the next page starts).
    pub last: i64,
    /// The start the last audit-log purge entry names.
    pinned: Option<i64>,
}

impl<'k> Verify<'k> {
    /// From the stored anchor (first sequence kept and the MAC before it),
    /// if entries were purged.
    pub fn new(key: &'k [u8], anchor: Option<(i64, [u8; 32])>) -> Verify<'k> {
        Verify {
            v: match anchor {
                Some((first, mac)) => ChainVerifier::starting_at(key, first, mac),
                None => ChainVerifier::new(key),
            },
            anchor: anchor.map(|(first, _)| first),
            last: anchor.map_or(0, |(first, _)| first - 1),
            pinned: None,
        }
    }

    /// Checks the next entry; `Some` (the verdict) at the first break.
    pub fn feed(&mut self, e: &AuditEntry) -> Option<AuditVerification> {
        self.last = e.seq;
        if let Err(brk) = self.v.check(e) {
            return Some(self.broken(brk));
        }
        if e.record.event_type == "retention.purged" && e.record.object_type == "audit_log" {
            self.pinned = e.record.object_id.as_deref().and_then(|id| id.parse().ok());
        }
        None
    }

    fn broken(&self, b: ChainBreak) -> AuditVerification {
        AuditVerification {
            verified: self.v.verified(),
            broken: Some(b),
        }
    }

    /// The verdict once every entry was fed, against the anchored `head`.
    pub fn finish(self, head: Option<(i64, [u8; 32])>) -> AuditVerification {
        if let Some(first) = self.anchor
            && self.pinned != Some(first)
        {
            return self.broken(ChainBreak {
                seq: first,
                reason: "the log's start was moved: no purge entry names this starting point"
                    .into(),
            });
        }
        let verified = self.v.verified();
        if let Some((head_seq, head_mac)) = head {
            if head_seq > verified {
                return self.broken(ChainBreak {
                    seq: verified + 1,
                    reason: format!(
                        "entries {} to {head_seq} are missing (deleted)",
                        verified + 1
                    ),
                });
            }
            if head_seq == verified && head_mac != self.v.last_mac() {
                return self.broken(ChainBreak {
                    seq: head_seq,
                    reason: "does not match the recorded chain head".into(),
                });
            }
        }
        AuditVerification {
            verified,
            broken: None,
        }
    }
}
