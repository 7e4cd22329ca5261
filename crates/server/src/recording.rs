//! Recorder forwarding, the System Manager's side (issue 18): whether a
//! call is recorded (the settings' switch and scope, the line's flag),
//! where (the configured recorders, with their decrypted credentials, for
//! the MLC only) and how its parties are named in the recording's
//! metadata (numbers pseudonymised when the system pseudonymises them).

use openturret_mlc::{CallView, RecorderTarget, Recording};

use crate::App;

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
    }))
}
