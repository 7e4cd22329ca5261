//! What a Multi-Line Controller needs from the System Manager, and what it
//! tells it. The MLC core (SIP, lines, calls, media) sees only this trait:
//! in `turret serve` the System Manager's `telephony` module implements it
//! on the application itself; in `turret mlc` the component link
//! implements it over mutual TLS. Either way, the System Manager
//! decides which lines an MLC serves, and does everything that touches the
//! database, the turrets and the CTI stream.

use async_trait::async_trait;
use openturret_domain::model::{Direction, Line};
use openturret_domain::secret::Secret;
use openturret_domain::{LineId, ProfileId, Timestamp};
use serde_json::{Value, json};

use crate::LineState;
use crate::call::CallState;

#[async_trait]
pub trait Host: Send + Sync + 'static {
    /// The lines this MLC is to serve now, with their passwords.
    async fn lines(&self) -> anyhow::Result<Vec<(Line, Option<Secret>)>>;
    /// One line, if this MLC is to serve it (`None`: deleted, or served by
    /// another MLC).
    async fn line(&self, id: LineId) -> anyhow::Result<Option<(Line, Option<Secret>)>>;
    /// A line's registration state went from `previous` to `state`.
    async fn line_state(&self, id: LineId, previous: LineState, state: LineState);
    /// A call changed, or ended (`ended`): reports keep their order.
    async fn call(&self, view: CallView, ended: bool);
    /// A ringing call stopped ringing at `profile`'s turret (it rejected
    /// the call; others still ring).
    async fn rejected_here(&self, view: CallView, profile: ProfileId);
    /// A blind transfer of `call` was accepted by the far end.
    async fn transferred(&self, call: u64, line: LineId);
    /// Returns once everything reported before is told and recorded.
    async fn flush(&self);
}

/// A snapshot of a call, taken under the call table's lock.
#[derive(Clone, Debug)]
pub struct CallView {
    pub id: u64,
    pub line: LineId,
    pub direction: Direction,
    pub state: CallState,
    pub remote_number: String,
    pub remote_display: String,
    /// Incoming: who answered. Outgoing: who dialled.
    pub owner: Option<ProfileId>,
    pub speech_unit: String,
    pub end_reason: String,
    pub started: Timestamp,
    pub connected_at: Option<Timestamp>,
    pub line_number: String,
    /// When the call ended (set on `Job::Ended`).
    pub ended_at: Option<Timestamp>,
}

impl CallView {
    /// As it travels over the component link.
    pub fn to_json(&self) -> Value {
        json!({"id": self.id, "line": self.line.0, "direction": self.direction.as_str(),
            "state": self.state.name(), "remote_number": self.remote_number,
            "remote_display": self.remote_display, "owner": self.owner.map(|p| p.0),
            "speech_unit": self.speech_unit, "end_reason": self.end_reason,
            "started": self.started.0, "connected_at": self.connected_at.map(|t| t.0),
            "line_number": self.line_number, "ended_at": self.ended_at.map(|t| t.0)})
    }

    pub fn from_json(v: &Value) -> Option<CallView> {
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        let t = |k: &str| v[k].as_i64().map(Timestamp);
        Some(CallView {
            id: v["id"].as_u64()?,
            line: LineId(v["line"].as_i64()?),
            direction: Direction::parse(v["direction"].as_str()?)?,
            state: CallState::parse(v["state"].as_str()?)?,
            remote_number: s("remote_number"),
            remote_display: s("remote_display"),
            owner: v["owner"].as_i64().map(ProfileId),
            speech_unit: s("speech_unit"),
            end_reason: s("end_reason"),
            started: t("started")?,
            connected_at: t("connected_at"),
            line_number: s("line_number"),
            ended_at: t("ended_at"),
        })
    }
}
