//! The telephony operations of a client session (issue 6): the calls on the
//! profile's lines, answer, reject, dial, hang up, hold, retrieve and blind
//! transfer. The Multi-Line Controller does the SIP; this checks that the
//! session may act and turns refusals into protocol errors.

use openturret_domain::{LineId, ProfileId};
use serde_json::{Value, json};

use super::{Conn, Res};
use crate::client::proto::{CallOp, ProtoError};
use crate::mlc::call::OpError;
use crate::telephony;

impl From<OpError> for ProtoError {
    fn from(e: OpError) -> Self {
        ProtoError::new(e.code, e.message)
    }
}

impl Conn {
    /// Whether `unit` is one of the profile's speech units.
    async fn speech_unit(&self, pid: ProfileId, unit: &str) -> Result<(), ProtoError> {
        let p = self.app.store.get_profile(pid).await?;
        if p.flags.speech_units().iter().any(|(id, _, _)| id == unit) {
            Ok(())
        } else {
            Err(ProtoError::new(
                "invalid",
                format!("this turret has no speech unit {unit:?}"),
            ))
        }
    }

    async fn telephony_profile(&self) -> Result<(ProfileId, Vec<LineId>), ProtoError> {
        let pid = self.user().await?.lock().await.profile;
        if !telephony::reachable(&self.app) {
            return Err(ProtoError::new(
                "telephony_off",
                "no Multi-Line Controller is running for this server",
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
                let s = telephony::line_state(&self.app, *l);
                json!({"line_id": l.0, "state": s.name(), "reason": s.reason()})
            })
            .collect();
        Ok(json!({"calls": telephony::calls_for(&self.app, &lines, pid), "lines": states}))
    }

    pub(super) async fn call_op(&self, op: CallOp) -> Res {
        let (pid, lines) = self.telephony_profile().await?;
        let app = &self.app;
        if app.stopping.is_stopping() && matches!(op, CallOp::Dial { .. } | CallOp::Answer { .. }) {
            return Err(ProtoError::new(
                "restarting",
                "the server is restarting; try again in a moment",
            ));
        }
        match op {
            CallOp::Dial { line_id, number } => {
                let id = telephony::dial(app, pid, line_id.map(LineId), &number).await?;
                return Ok(json!({"call_id": id}));
            }
            CallOp::Answer {
                call_id,
                speech_unit,
            } => {
                let unit = speech_unit.unwrap_or_else(|| "handset-1".into());
                self.speech_unit(pid, &unit).await?;
                telephony::may_act(app, call_id, pid, &lines)?;
                telephony::answer(app, call_id, pid, &unit).await?;
            }
            CallOp::Reject { call_id } => {
                telephony::may_act(app, call_id, pid, &lines)?;
                telephony::reject(app, call_id, pid).await?;
            }
            CallOp::Hangup { call_id } => {
                telephony::may_act(app, call_id, pid, &lines)?;
                telephony::hangup(app, call_id, pid).await?
            }
            CallOp::Hold { call_id } => {
                telephony::may_act(app, call_id, pid, &lines)?;
                telephony::hold(app, call_id, pid, true).await?
            }
            CallOp::Retrieve { call_id } => {
                telephony::may_act(app, call_id, pid, &lines)?;
                telephony::hold(app, call_id, pid, false).await?
            }
            CallOp::Transfer { call_id, target } => {
                telephony::may_act(app, call_id, pid, &lines)?;
                telephony::transfer(app, call_id, pid, &target).await?
            }
            CallOp::Move {
                call_id,
                speech_unit,
            } => {
                self.speech_unit(pid, &speech_unit).await?;
                telephony::may_act(app, call_id, pid, &lines)?;
                telephony::move_to(app, call_id, pid, &speech_unit).await?
            }
            CallOp::Dtmf { call_id, digits } => {
                telephony::may_act(app, call_id, pid, &lines)?;
                telephony::dtmf(app, call_id, pid, &digits).await?
            }
            CallOp::Voice { call_id, sdp } => {
                if sdp.len() > 16 * 1024 {
                    return Err(ProtoError::new("invalid", "the audio offer is too long"));
                }
                telephony::may_act(app, call_id, pid, &lines)?;
                let answer = telephony::voice(app, call_id, pid, &sdp, self.ip).await?;
                return Ok(json!({"sdp": answer}));
            }
        }
        Ok(json!({}))
    }
}
