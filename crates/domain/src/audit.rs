//! Audit entries and their hash chain (SPEC rule 1, §4 "tamper-evident audit
//! log").
//!
//! Each entry's MAC covers the previous entry's MAC, so editing, inserting or
//! deleting a row breaks the chain from that row on. The MAC is keyed (HMAC-
//! SHA-256 with a key kept outside the database), so someone holding only a
//! copy of the database cannot recompute a forged chain.
//!
//! Personal values in an entry (who acted, from which address and computer)
//! are not hashed into the chain directly: the chain covers a salted
//! commitment to them. Erasing a person later removes the values and the
//! salt and keeps the commitment, so the chain still verifies while nothing
//! personal is left, not even a guessable hash.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::Timestamp;

type HmacSha256 = Hmac<Sha256>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditLevel {
    Info,
    Warning,
    Error,
}

impl AuditLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditLevel::Info => "info",
            AuditLevel::Warning => "warning",
            AuditLevel::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "info" => Some(AuditLevel::Info),
            "warning" => Some(AuditLevel::Warning),
            "error" => Some(AuditLevel::Error),
            _ => None,
        }
    }
}

/// The personal values of an entry: erasable without breaking the chain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditPii {
    /// The user account that acted (`admin`, `cli:root`, `system`) or, for a
    /// failed login, the username that was tried.
    pub actor: String,
    /// The client's IP address, empty when there is none (CLI).
    pub client_ip: String,
    /// The computer name the client claims (`X-Client-Host`), where it
    /// sent one: unverified, host-name characters only.
    pub client_host: String,
}

/// An event to be appended to the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    pub at: Timestamp,
    pub level: AuditLevel,
    /// Dotted event name: `profile.created`, `auth.login_failed`, ...
    pub event_type: String,
    /// The kind of object acted on: `profile`, `line`, `settings`, ...
    pub object_type: String,
    /// The object's identifier (never a personal value such as a name).
    pub object_id: Option<String>,
    /// The names of the fields that changed; never their values.
    pub changes: Vec<String>,
    /// `true` when the action succeeded.
    pub success: bool,
    /// The host name of the server that wrote the entry.
    pub server_host: String,
    pub pii: AuditPii,
}

/// An entry as stored, with its place in the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// Position in the chain, from 1, without gaps.
    pub seq: i64,
    pub record: AuditRecord,
    /// `None` once the personal values were erased.
    pub pii_salt: Option<[u8; 16]>,
    pub pii_commit: [u8; 32],
    pub prev_mac: [u8; 32],
    pub mac: [u8; 32],
}

fn put(h: &mut impl Mac, bytes: &[u8]) {
    h.update(&(bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

/// The salted commitment to an entry's personal values.
pub fn pii_commitment(salt: &[u8; 16], pii: &AuditPii) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"openturret-audit-pii-v1");
    h.update(salt);
    for field in [&pii.actor, &pii.client_ip, &pii.client_host] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    h.finalize().into()
}

/// The MAC of entry `seq` given the previous entry's MAC.
pub fn entry_mac(
    key: &[u8],
    seq: i64,
    prev_mac: &[u8; 32],
    record: &AuditRecord,
    pii_commit: &[u8; 32],
) -> [u8; 32] {
    let mut h = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    put(&mut h, b"openturret-audit-v1");
    put(&mut h, &seq.to_be_bytes());
    put(&mut h, prev_mac);
    put(&mut h, &record.at.0.to_be_bytes());
    put(&mut h, record.level.as_str().as_bytes());
    put(&mut h, record.event_type.as_bytes());
    put(&mut h, record.object_type.as_bytes());
    put(
        &mut h,
        record.object_id.as_deref().unwrap_or("\u{0}").as_bytes(),
    );
    put(&mut h, &(record.changes.len() as u64).to_be_bytes());
    for c in &record.changes {
        put(&mut h, c.as_bytes());
    }
    put(&mut h, &[record.success as u8]);
    put(&mut h, record.server_host.as_bytes());
    put(&mut h, pii_commit);
    h.finalize().into_bytes().into()
}

/// Where and why a chain failed to verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("audit entry {seq}: {reason}")]
pub struct ChainBreak {
    /// The first entry that does not verify (or the missing one).
    pub seq: i64,
    pub reason: String,
}

/// Checks entries one at a time, in order, so a long log can be streamed.
pub struct ChainVerifier<'k> {
    key: &'k [u8],
    next_seq: i64,
    prev_mac: [u8; 32],
}

impl<'k> ChainVerifier<'k> {
    pub fn new(key: &'k [u8]) -> Self {
        ChainVerifier {
            key,
            next_seq: 1,
            prev_mac: [0; 32],
        }
    }

    /// A verifier that starts at entry `first_seq`, whose predecessor's MAC
    /// was `prev_mac` (the chain's anchor once older entries were purged).
    pub fn starting_at(key: &'k [u8], first_seq: i64, prev_mac: [u8; 32]) -> Self {
        ChainVerifier {
            key,
            next_seq: first_seq,
            prev_mac,
        }
    }

    /// The sequence number of the last verified entry (0 before any).
    pub fn verified(&self) -> i64 {
        self.next_seq - 1
    }

    /// The MAC of the last verified entry (zeros before the first).
    pub fn last_mac(&self) -> [u8; 32] {
        self.prev_mac
    }

    pub fn check(&mut self, e: &AuditEntry) -> Result<(), ChainBreak> {
        let brk = |seq, reason: &str| ChainBreak {
            seq,
            reason: reason.to_string(),
        };
        if e.seq > self.next_seq {
            return Err(brk(self.next_seq, "entry is missing (deleted)"));
        }
        if e.seq < self.next_seq {
            return Err(brk(e.seq, "entry is out of order or duplicated"));
        }
        if e.prev_mac != self.prev_mac {
            return Err(brk(e.seq, "does not link to the previous entry"));
        }
        if let Some(salt) = &e.pii_salt
            && pii_commitment(salt, &e.record.pii) != e.pii_commit
        {
            return Err(brk(e.seq, "personal fields were altered"));
        }
        if entry_mac(self.key, e.seq, &e.prev_mac, &e.record, &e.pii_commit) != e.mac {
            return Err(brk(e.seq, "content was altered"));
        }
        self.prev_mac = e.mac;
        self.next_seq += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(event: &str) -> AuditRecord {
        AuditRecord {
            at: Timestamp(1),
            level: AuditLevel::Info,
            event_type: event.into(),
            object_type: "profile".into(),
            object_id: Some("7".into()),
            changes: vec!["name".into()],
            success: true,
            server_host: "sm1".into(),
            pii: AuditPii {
                actor: "admin".into(),
                client_ip: "10.0.0.1".into(),
                client_host: String::new(),
            },
        }
    }

    fn chain(key: &[u8], n: usize) -> Vec<AuditEntry> {
        let mut prev = [0u8; 32];
        (1..=n as i64)
            .map(|seq| {
                let r = record(&format!("e{seq}"));
                let salt = [seq as u8; 16];
                let commit = pii_commitment(&salt, &r.pii);
                let mac = entry_mac(key, seq, &prev, &r, &commit);
                let e = AuditEntry {
                    seq,
                    record: r,
                    pii_salt: Some(salt),
                    pii_commit: commit,
                    prev_mac: prev,
                    mac,
                };
                prev = mac;
                e
            })
            .collect()
    }

    fn verify(key: &[u8], es: &[AuditEntry]) -> Result<(), ChainBreak> {
        let mut v = ChainVerifier::new(key);
        es.iter().try_for_each(|e| v.check(e))
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(verify(b"k", &chain(b"k", 5)), Ok(()));
    }

    #[test]
    fn edits_deletions_and_wrong_keys_are_found() {
        let mut es = chain(b"k", 5);
        es[2].record.changes = vec!["password".into()];
        assert_eq!(verify(b"k", &es).unwrap_err().seq, 3);

        let mut es = chain(b"k", 5);
        es.remove(1);
        assert_eq!(verify(b"k", &es).unwrap_err().seq, 2);

        let mut es = chain(b"k", 5);
        es[3].record.pii.actor = "mallory".into();
        assert_eq!(verify(b"k", &es).unwrap_err().seq, 4);

        assert_eq!(verify(b"other", &chain(b"k", 2)).unwrap_err().seq, 1);
    }

    #[test]
    fn erasing_personal_values_keeps_the_chain_valid() {
        let mut es = chain(b"k", 3);
        es[1].pii_salt = None;
        es[1].record.pii = AuditPii::default();
        assert_eq!(verify(b"k", &es), Ok(()));
    }
}
