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
    /// Events for the error log (issue 20), folded, in the order raised.
    /// The host names the component (this MLC). The default drops them.
    async fn events(&self, _events: Vec<openturret_domain::model::Folded>) {}
    /// Whether and where `call` is to be recorded now, and how its
    /// parties are named in the recording's metadata (issue 18). Asked
    /// when the call connects and when it changes hands. The default
    /// records nothing.
    async fn recording(&self, _call: &CallView) -> anyhow::Result<Option<Recording>> {
        Ok(None)
    }
    /// A recording session of `call` (on `line`, held by `owner`) with
    /// recorder `recorder` (its id) began (`failure: None`) or failed, and
    /// why (it is tried again within bounds while the call lasts).
    async fn recorder_state(
        &self,
        _call: u64,
        _line: LineId,
        _owner: Option<ProfileId>,
        _recorder: i64,
        _failure: Option<String>,
    ) {
    }
}

/// A recorded call's recorders and the names its metadata gives (RFC 7865).
#[derive(Clone, Debug)]
pub struct Recording {
    /// Each gets its own recording session (2N).
    pub recorders: Vec<RecorderTarget>,
    /// The line: its address of record and display name.
    pub line_aor: String,
    pub line_name: String,
    /// The profile whose turret holds the call (empty while none does).
    pub profile_name: String,
    /// The far end's number and name as the recording may show them
    /// (pseudonymised when the system pseudonymises numbers).
    pub remote_number: String,
    pub remote_name: String,
    /// The announcement played to the far end when the call connects
    /// (8 kHz samples), if the administrator set one.
    pub notice: Option<std::sync::Arc<Vec<i16>>>,
}

/// A Session Recording Server, with its digest credentials.
#[derive(Clone, Debug)]
pub struct RecorderTarget {
    pub id: i64,
    pub name: String,
    pub uri: String,
    /// `udp`, `tcp` or `tls`.
    pub transport: String,
    pub username: String,
    pub password: Option<Secret>,
}
