//! What a Multi-Line Controller needs from the System Manager, and what it
//! tells it. The MLC core (SIP, lines, calls, media) sees only this trait:
//! in `turret serve` the System Manager's `telephony` module implements it
//! on the application itself; in `turret mlc` the component link
//! implements it over mutual TLS. Either way, the System Manager
//! decides which lines an MLC serves, and does everything that touches the
//! database, the turrets and the CTI stream.

use async_trait::async_trait;
use openturret_domain::model::Line;
use openturret_domain::secret::Secret;
use openturret_domain::{LineId, ProfileId};

use crate::LineState;
use crate::call::CallView;

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
