//! Helpers every benchmark shares (included with `#[path]`).
#![allow(dead_code)]

pub mod turret;

use std::time::Duration;

use openturret_domain::Timestamp;
use openturret_domain::audit::{AuditLevel, AuditPii, AuditRecord};

/// A small deterministic generator (xorshift64*), so every run uses the
/// same data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// An audit record for bulk writes made by a benchmark.
pub fn audit() -> AuditRecord {
    AuditRecord {
        at: Timestamp::now(),
        level: AuditLevel::Info,
        event_type: "bench".into(),
        object_type: "global_contact".into(),
        object_id: None,
        changes: vec![],
        success: true,
        server_host: "bench".into(),
        pii: AuditPii::default(),
    }
}

/// The `p` quantile of sorted durations.
pub fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}
