//! Recorder forwarding, the System Manager's side (issue 18): whether a
//! call is recorded (the settings' switch and scope, the line's flag),
//! where (the configured recorders, with their decrypted credentials, for
//! the MLC only) and how its parties are named in the recording's
//! metadata (numbers pseudonymised when the system pseudonymises them).

use std::collections::HashMap;
use std::sync::Mutex;

use openturret_domain::audit::AuditLevel;
use openturret_domain::model::RecordingLogEntry;
use openturret_domain::{LineId, ProfileId, RecorderId, Timestamp};
use openturret_mlc::{CallView, RecorderTarget, Recording};
use serde_json::json;

use crate::App;

/// How each recorder has been doing since the start, by id (issue 18):
/// what administrators see beside it.
#[derive(Default)]
pub struct Status(Mutex<HashMap<i64, RecorderStatus>>);

#[derive(Clone, Debug, Default)]
pub struct RecorderStatus {
    /// Recording sessions begun and failed since the start.
    pub sessions: u64,
    pub failures: u64,
    /// The last failure and when.
    pub last_failure: Option<(Timestamp, String)>,
    /// The last session begun.
    pub last_success: Option<Timestamp>,
}

impl RecorderStatus {
    /// `ok`, `failing` (its last attempt failed) or `unused`.
    pub fn state(&self) -> &'static str {
        match (&self.last_failure, self.last_success) {
            (Some((f, _)), Some(s)) if s.0 >= f.0 => "ok",
            (Some(_), _) => "failing",
            (None, Some(_)) => "ok",
            (None, None) => "unused",
        }
    }
}

impl Status {
    pub fn of(&self, id: i64) -> RecorderStatus {
        self.0.lock().unwrap().get(&id).cloned().unwrap_or_default()
    }
}

/// An MLC's report on one recording session: a line in the record of
/// forwarding, the recorder's status, a CTI `recording` event and, for a
/// failure, a warning in the audit log.
pub async fn on_recorder_state(
    app: &App,
    call: u64,
    line: LineId,
    owner: Option<ProfileId>,
    recorder: i64,
    failure: Option<String>,
) {
    let entry = RecordingLogEntry {
        at: Timestamp::now(),
        call_id: call as i64,
        line_id: Some(line),
        profile_id: owner,
        recorder_id: RecorderId(recorder),
        outcome: if failure.is_some() {
            "failed"
        } else {
            "recording"
        }
        .into(),
        reason: failure.clone(),
    };
    if let Err(e) = app.store.log_recordings(vec![entry]).await {
        tracing::warn!(error = %e, "the record of forwarding could not be written");
    }
    {
        let mut all = app.recorder_status.0.lock().unwrap();
        let s = all.entry(recorder).or_default();
        match &failure {
            Some(why) => {
                s.failures += 1;
                s.last_failure = Some((Timestamp::now(), why.clone()));
            }
            None => {
                s.sessions += 1;
                s.last_success = Some(Timestamp::now());
            }
        }
    }
    app.cti.publish(
        "recording",
        Some(line),
        json!({"call_id": call, "line_id": line.0, "recorder_id": recorder,
               "state": if failure.is_some() { "failed" } else { "recording" },
               "reason": failure}),
    );
    if let Some(why) = &failure {
        app.events.raise(
            openturret_domain::model::Event::warning(
                "recorder.failed",
                format!("recorder:{recorder}"),
                "a recording session with this recorder failed; the call went on unrecorded there",
            )
            .with("reason", why),
        );
        let mut r = app.system_record("recorder.failed", "recorder", Some(recorder.to_string()));
        r.level = AuditLevel::Warning;
        r.success = false;
        if let Err(e) = app.store.append_audit(r).await {
            tracing::warn!(error = %e, "a recorder's failure could not be audited");
        }
    }
}

/// What the MLC carrying `call` needs to record it now, or `None` when it
/// is not to be recorded.
pub async fn recording_of(app: &App, call: &CallView) -> anyhow::Result<Option<Recording>> {
    let settings = app.store.get_settings().await?;
    let line = app.store.get_line(call.line).await?;
    if !settings.records(line.fields.recorded) {
        return Ok(None);
    }
    let recorders = app.store.recorders_with_passwords().await?;
    if recorders.is_empty() {
        return Ok(None);
    }
    let profile_name = match call.owner {
        Some(p) => app
            .store
            .get_profile(p)
            .await
            .map(|p| p.name)
            .unwrap_or_default(),
        None => String::new(),
    };
    let line_name = if line.fields.display_name.is_empty() {
        line.fields.name
    } else {
        line.fields.display_name
    };
    Ok(Some(Recording {
        recorders: recorders
            .into_iter()
            .map(|(r, password)| RecorderTarget {
                id: r.id.0,
                name: r.fields.name,
                uri: r.fields.uri,
                transport: r.fields.transport.as_str().to_string(),
                username: r.fields.username,
                password,
            })
            .collect(),
        line_aor: line.fields.uri,
        line_name,
        profile_name,
        remote_number: app.pseudo.apply(&call.remote_number),
        remote_name: if app.pseudo.is_on() {
            String::new()
        } else {
            call.remote_display.clone()
        },
        notice: app
            .store
            .recording_notice()
            .await?
            .map(|(s, _)| std::sync::Arc::new(s)),
    }))
}
