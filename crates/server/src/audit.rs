//! Who acts from where: the context every audit entry is made from (SPEC
//! §2, audit log). The web layer fills it from a request (`http::extract`);
//! what is done on the machine itself (the system, the command line, an
//! offline restore, the start-up) is recorded by [`machine_record`], with
//! no client address.

use std::net::{IpAddr, Ipv4Addr};

use openturret_domain::Timestamp;
use openturret_domain::audit::{AuditLevel, AuditPii, AuditRecord};

/// Who is asking from where: the material of an audit entry.
#[derive(Clone, Debug)]
pub struct AuditContext {
    pub client_ip: IpAddr,
    /// The computer name the client claims (`X-Client-Host`): unverified.
    pub client_host: String,
    pub server_host: String,
}

impl AuditContext {
    /// An audit record of a successful action by `actor`.
    pub fn record(
        &self,
        actor: &str,
        event_type: &str,
        object_type: &str,
        object_id: Option<String>,
        changes: Vec<&str>,
    ) -> AuditRecord {
        AuditRecord {
            at: Timestamp::now(),
            level: AuditLevel::Info,
            event_type: event_type.into(),
            object_type: object_type.into(),
            object_id,
            changes: changes.into_iter().map(str::to_string).collect(),
            success: true,
            server_host: self.server_host.clone(),
            pii: AuditPii {
                actor: actor.into(),
                client_ip: self.client_ip.to_string(),
                client_host: self.client_host.clone(),
            },
        }
    }
}

/// A record of something done on this machine rather than from a client
/// (by the system itself, or by an operator at its console): no client
/// address, no computer name.
pub fn machine_record(
    actor: &str,
    server_host: &str,
    event_type: &str,
    object_type: &str,
    object_id: Option<String>,
    changes: Vec<&str>,
) -> AuditRecord {
    let ctx = AuditContext {
        client_ip: Ipv4Addr::UNSPECIFIED.into(),
        client_host: String::new(),
        server_host: server_host.to_string(),
    };
    let mut r = ctx.record(actor, event_type, object_type, object_id, changes);
    r.pii.client_ip = String::new();
    r
}

/// A [`machine_record`] of an action by the local operator ([`operator`]).
pub fn local_record(
    event_type: &str,
    object_type: &str,
    object_id: Option<String>,
    changes: Vec<&str>,
) -> AuditRecord {
    machine_record(
        &operator(),
        &crate::host_name(),
        event_type,
        object_type,
        object_id,
        changes,
    )
}

/// `cli:<os user>`, the actor of actions taken on this machine's command
/// line (administrator accounts, backups and restores, MLC enrolment).
pub fn operator() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(user_from_uid)
        .unwrap_or_else(|| "unknown".into());
    format!("cli:{user}")
}

fn user_from_uid() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)? == uid).then(|| name.to_string())
    })
}
