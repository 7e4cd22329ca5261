//! The telephony operations of a client session (issue 6): the calls on the
//! profile's lines, answer, reject, dial, hang up, hold, retrieve and blind
//! transfer. The Multi-Line Controller does the SIP; this checks that the
//! session may act and turns refusals into protocol errors.

use openturret_domain::{LineId, ProfileId};
use serde_json::{Value, json};

use super::{Conn, Res};
use crate::client::proto::{CallOp, ProtoError};
use crate::mlc::call::{self, OpError};

impl From<OpError> for ProtoError {
    fn from(e: OpError) -> Self {
        ProtoError::new(e.code, e.message)
    }
}

const SPEECH_UNITS: &[&str] = &["handset-1", "handset-2", "speaker-1", "speaker-2"];

impl Conn {
    async fn telephony_profile(&self) -> Result<(ProfileId, Vec<LineId>), ProtoError> {
        let pid = self.user().await?.lock().await.profile;
        if !self.app.mlc.is_running() {
            return Err(ProtoError::new(
                "telephony_off",
                "the Multi-Line Controller is not running on this server",
            ));
        }
        let lines = self
            .app
            .store
            .list_profile_lines(pid)
            .await?
            .into_iter()
            .map(|k| k.line_id)
            .collect();
        Ok((pid, lines))
    }

    /// The calls and line states of the profile's lines.
    pub(super) async fn calls(&self) -> Res {
        let (pid, lines) = self.telephony_profile().await?;
        let states: Vec<Value> = lines
            .iter()
            .map(|l| {
                let s = self.app.mlc.line_state(*l);
                json!({"line_id": l.0, "state": s.name(), "reason": s.reason()})
            })
            .collect();
        Ok(json!({"calls": call::calls_for(&self.app.mlc, &lines, pid), "lines": states}))
    }

    pub(super) async fn call_op(&self, op: CallOp) -> Res {
        let (pid, lines) = self.telephony_profile().await?;
        let mlc = &self.app.mlc;
        match op {
            CallOp::Dial { line_id, number } => {
                let id = call::dial(mlc, pid, line_id.map(LineId), &number).await?;
                return Ok(json!({"call_id": id}));
            }
            CallOp::Answer {
                call_id,
                speech_unit,
            } => {
                let unit = speech_unit.unwrap_or_else(|| "handset-1".into());
                if !SPEECH_UNITS.contains(&unit.as_str()) {
                    return Err(ProtoError::new("invalid", "no such speech unit"));
                }
                self.check_line(call_id, &lines)?;
                call::answer_call(mlc, call_id, Some(pid), &unit).await?;
            }
            CallOp::Reject { call_id } => {
                self.check_line(call_id, &lines)?;
                call::reject_call(mlc, call_id, pid).await?;
            }
            CallOp::Hangup { call_id } => call::hangup(mlc, call_id, pid).await?,
            CallOp::Hold { call_id } => call::hold(mlc, call_id, pid, true).await?,
            CallOp::Retrieve { call_id } => call::hold(mlc, call_id, pid, false).await?,
            CallOp::Transfer { call_id, target } => {
                call::transfer(mlc, call_id, pid, &target).await?
            }
        }
        Ok(json!({}))
    }

    /// A call this profile may act on: one on a line it shows.
    fn check_line(&self, call_id: u64, lines: &[LineId]) -> Result<(), ProtoError> {
        match call::line_of(&self.app.mlc, call_id) {
            Some(l) if lines.contains(&l) => Ok(()),
            _ => Err(ProtoError::new("not_found", "no such call on your lines")),
        }
    }
}
