//! Line registration (SPEC §5): one task per line keeps it registered with
//! its PBX (digest MD5 or SHA-256), refreshes before expiry, backs off on
//! failure (1 s doubling to 15 s, with jitter), and a keep-alive per PBX
//! re-registers every line the moment the PBX answers again after an
//! outage (a restarted registrar has forgotten them).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use openturret_domain::LineId;
use openturret_domain::model::{Event, Line};
use openturret_domain::secret::Secret;
use openturret_sip::digest::Challenge;
use openturret_sip::message::Builder;
use openturret_sip::uri::Uri;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::transport::{Peer, Proto};
use super::{LineState, Mlc, TXN_TIMEOUT};

const BACKOFF_MAX: Duration = Duration::from_secs(15);
/// How a registration that reached no PBX begins its reason (the PBX's
/// fault, reported once per PBX, not per line).
const NO_ANSWER: &str = "no answer from the PBX at";
const UNREACHABLE: &str = "cannot reach the PBX at";

pub struct LineRuntime {
    pub state: LineState,
    /// Where the line registers, once resolved.
    pub registrar: Option<Peer>,
    /// The AOR's domain, for calls placed on the line.
    pub domain: String,
    /// The address of record registered.
    aor: String,
    /// The AOR's user part, to find the line of an INVITE sent to it.
    pub user: String,
    /// The line's number (preferred identity, else the AOR user).
    pub number: String,
    /// Answer mode automatic: calls are answered at once.
    pub auto_answer: bool,
    /// Besides the registrar, where the line's requests may come from.
    pub peers: openturret_domain::model::PeerNets,
    /// What a call placed on the line presents and answers challenges with.
    pub(crate) dial: DialAs,
    /// The stored line's last change, to notice changes made in bulk.
    updated_at: openturret_domain::Timestamp,
    task: JoinHandle<()>,
    kick: Arc<Notify>,
    /// Set, then `kick`ed: the task removes its binding and ends.
    unregister: Arc<AtomicBool>,
}

/// How calls placed on a line identify and authenticate themselves.
#[derive(Clone)]
pub(crate) struct DialAs {
    /// The digest username (the line's, else the AOR's user).
    pub username: String,
    pub password: Option<Secret>,
    pub display_name: String,
    pub preferred_identity: String,
}

impl LineRuntime {
    /// Whether `ip` may send requests for this line: the registrar's
    /// resolved address, or a listed peer.
    pub(crate) fn trusts(&self, ip: std::net::IpAddr) -> bool {
        let ip = openturret_domain::model::canonical_ip(ip);
        self.registrar.is_some_and(|r| r.addr.ip() == ip) || self.peers.contains(ip)
    }

    /// Ends the registration task; `unbind` first removes the binding at
    /// the PBX (the line was deleted or moved to another address).
    fn stop(self, unbind: bool) {
        if unbind {
            self.unregister.store(true, Ordering::SeqCst);
            self.kick.notify_one();
        } else {
            self.task.abort();
        }
    }
}

/// Starts every line's registration and the PBX keep-alive.
pub async fn start_all(mlc: &Mlc) -> anyhow::Result<()> {
    let host = mlc
        .host()
        .ok_or_else(|| anyhow::anyhow!("no host"))?
        .clone();
    {
        let _one_at_a_time = mlc.reconcile.lock().await;
        for (line, password) in host.lines().await? {
            start(mlc, line, password).await;
        }
    }
    tokio::spawn(keepalive(mlc.clone()));
    Ok(())
}

/// (Re)starts a line's registration from its configuration, or stops it
/// (unbinding it at its PBX) when the line is gone or no longer ours.
pub async fn restart(mlc: &Mlc, id: LineId) {
    let Some(host) = mlc.host().cloned() else {
        return;
    };
    let _one_at_a_time = mlc.reconcile.lock().await;
    match host.line(id).await {
        // Running as stored already (a resync started it meanwhile): a
        // second start would only register it again.
        Ok(Some((line, _)))
            if mlc
                .lines
                .lock()
                .unwrap()
                .get(&id)
                .is_some_and(|l| l.updated_at == line.updated_at) => {}
        Ok(Some((line, password))) => start(mlc, line, password).await,
        Ok(None) => {
            let old = mlc.lines.lock().unwrap().remove(&id);
            if let Some(old) = old {
                old.stop(true);
            }
        }
        Err(e) => tracing::warn!(line = id.0, error = format!("{e:#}"), "line not reloaded"),
    }
}

/// (Re)starts the registration of `line` as stored, with its password.
async fn start(mlc: &Mlc, line: Line, password: Option<Secret>) {
    let id = line.id;
    let old = mlc.lines.lock().unwrap().remove(&id);
    let parsed = Uri::parse(&line.fields.uri).ok();
    let aor = parsed.as_ref().map(aor_of).unwrap_or_default();
    let user = parsed.as_ref().map(|u| u.user.clone()).unwrap_or_default();
    let number = if line.fields.preferred_identity.is_empty() {
        parsed
            .as_ref()
            .map(|u| u.user_decoded())
            .unwrap_or_default()
    } else {
        line.fields.preferred_identity.clone()
    };
    let auto_answer = line.fields.answer_mode.is_automatic();
    // Stored normalised by the domain; an entry that no longer parses
    // trusts nothing more than the registrar.
    let peers =
        openturret_domain::model::PeerNets::parse("peers", &line.fields.peers).unwrap_or_default();
    let dial = DialAs {
        username: if line.fields.username.is_empty() {
            parsed
                .as_ref()
                .map(|u| u.user_decoded())
                .unwrap_or_default()
        } else {
            line.fields.username.clone()
        },
        password: password.clone(),
        display_name: line.fields.display_name.clone(),
        preferred_identity: line.fields.preferred_identity.clone(),
    };
    if let Some(old) = old {
        // Same address of record: the new task's REGISTER refreshes the
        // same binding, so removing it would race with it.
        let moved = old.aor != aor;
        old.stop(moved);
    }
    let kick = Arc::new(Notify::new());
    let unregister = Arc::new(AtomicBool::new(false));
    let domain = Uri::parse(&line.fields.uri)
        .map(|u| host_port(&u))
        .unwrap_or_default();
    // Spawned under the lock, so the task finds its entry in the table.
    {
        let mut lines = mlc.lines.lock().unwrap();
        let task = tokio::spawn(run(
            mlc.clone(),
            line.clone(),
            password,
            kick.clone(),
            unregister.clone(),
        ));
        lines.insert(
            id,
            LineRuntime {
                state: LineState::Registering,
                registrar: None,
                domain,
                aor,
                user,
                number,
                auto_answer,
                peers,
                dial,
                updated_at: line.updated_at,
                task,
                kick,
                unregister,
            },
        );
    }
    set_state(mlc, id, LineState::Registering).await;
}

/// Unbinds every line at its PBX and ends the registration tasks (the
/// server is stopping). Waits at most `limit`.
pub async fn shutdown(mlc: &Mlc, limit: Duration) {
    let lines: Vec<LineRuntime> = mlc.lines.lock().unwrap().drain().map(|(_, l)| l).collect();
    let mut tasks = Vec::with_capacity(lines.len());
    for l in lines {
        l.unregister.store(true, Ordering::SeqCst);
        l.kick.notify_one();
        tasks.push(l.task);
    }
    let all = async {
        for t in tasks {
            let _ = t.await;
        }
    };
    if tokio::time::timeout(limit, all).await.is_err() {
        tracing::warn!("some lines were not unregistered before the shutdown");
    }
}

/// Brings the line table in step with the host's lines after a bulk
/// change (an import, lines moving between MLCs): starts new lines,
/// restarts changed ones, stops (and unbinds) the others.
pub async fn resync(mlc: &Mlc) {
    let Some(host) = mlc.host().cloned() else {
        return;
    };
    let _one_at_a_time = mlc.reconcile.lock().await;
    let Ok(stored) = host.lines().await else {
        return;
    };
    let known: HashMap<LineId, openturret_domain::Timestamp> = mlc
        .lines
        .lock()
        .unwrap()
        .iter()
        .map(|(id, l)| (*id, l.updated_at))
        .collect();
    let ids: HashSet<LineId> = stored.iter().map(|(l, _)| l.id).collect();
    for (l, password) in stored {
        if known.get(&l.id) != Some(&l.updated_at) {
            start(mlc, l, password).await;
        }
    }
    for id in known.keys() {
        if !ids.contains(id) {
            let old = mlc.lines.lock().unwrap().remove(id);
            if let Some(old) = old {
                old.stop(true);
            }
        }
    }
}

/// Records a state change: pushed to the clients showing the line and,
/// when the kind of state changes, audited.
pub(crate) async fn set_state(mlc: &Mlc, id: LineId, state: LineState) {
    let previous = {
        let mut lines = mlc.lines.lock().unwrap();
        let Some(l) = lines.get_mut(&id) else { return };
        if l.state == state {
            return;
        }
        std::mem::replace(&mut l.state, state.clone())
    };
    match &state {
        LineState::Failing(r) => {
            tracing::warn!(line = id.0, reason = %r, "line registration failing")
        }
        s => tracing::info!(line = id.0, state = s.name(), "line registration"),
    }
    if let Some(host) = mlc.host() {
        host.line_state(id, previous, state).await;
    }
}

/// Where a line's URI says to register: host, port and transport
/// (`sips:` or `;transport=tls` is TLS, port 5061 unless given).
async fn resolve(mlc: &Mlc, uri: &Uri) -> Result<Peer, String> {
    let transport = uri.param("transport").map(str::to_ascii_lowercase);
    let proto = match (uri.scheme.as_str(), transport.as_deref()) {
        ("sips", _) | (_, Some("tls")) => Proto::Tls,
        (_, Some("tcp")) => Proto::Tcp,
        (_, None | Some("udp")) => Proto::Udp,
        (_, Some(other)) => {
            return Err(format!(
                "transport {other} is not supported (udp, tcp or tls)"
            ));
        }
    };
    let host = uri
        .host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri
        .port
        .unwrap_or(if proto == Proto::Tls { 5061 } else { 5060 });
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("cannot resolve {host}"))?;
    if proto == Proto::Tls {
        mlc.set_tls_name(addr, &host);
    }
    Ok(Peer { proto, addr })
}

/// One line's registration dialog state.
pub(crate) struct Registration {
    line: LineId,
    aor: String,
    registrar_uri: String,
    password: Option<String>,
    peer: Peer,
    call_id: String,
    from_tag: String,
    cseq: u32,
}

impl Registration {
    fn new(
        mlc: &Mlc,
        line: LineId,
        uri: &Uri,
        peer: Peer,
        password: Option<String>,
    ) -> Registration {
        Registration {
            line,
            aor: aor_of(uri),
            registrar_uri: format!("sip:{}", host_port(uri)),
            password,
            peer,
            call_id: mlc.call_id(),
            from_tag: mlc.token(),
            cseq: 0,
        }
    }

    /// One REGISTER exchange (with one answer to a digest challenge).
    /// Returns the granted lifetime.
    async fn register_as(&self, mlc: &Mlc, expires: u32, username: &str) -> Result<u32, String> {
        let mut auth: Option<(&'static str, String)> = None;
        let mut cseq = self.cseq;
        let contact = contact_uri(mlc, self.line, self.peer);
        // Bindings of this line left by another MLC (one that died, or
        // served the line before it moved here): removed, so the PBX does
        // not fork calls to an address nobody answers. The first REGISTER
        // of a line taken over asks for the bindings (no Contact, RFC 3261
        // §10.2.3), so that ours is added and theirs removed in one request:
        // the registrar never holds two of our contacts for the line.
        let mut removing: Vec<String> = Vec::new();
        let mut querying = expires > 0 && self.cseq == 0 && mlc.config().query_bindings;
        for attempt in 0..7 {
            cseq += 1;
            let branch = mlc.branch();
            let mut b = Builder::request("REGISTER", &self.registrar_uri)
                .header("Via", mlc.via(self.peer, &branch))
                .header("Max-Forwards", "70")
                .header("From", format!("<{}>;tag={}", self.aor, self.from_tag))
                .header("To", format!("<{}>", self.aor))
                .header("Call-ID", &self.call_id)
                .header("CSeq", format!("{cseq} REGISTER"));
            if !querying {
                b = b.header("Contact", format!("<{contact}>"));
                for stale in &removing {
                    b = b.header("Contact", format!("<{stale}>;expires=0"));
                }
                b = b.header("Expires", expires.to_string());
            }
            b = b.header("User-Agent", mlc.user_agent());
            if let Some((name, value)) = &auth {
                b = b.header(name, value);
            }
            let mut rx = mlc.transact(self.peer, branch.clone(), b.build(), false, TXN_TIMEOUT);
            let mut last = None;
            while let Some(r) = rx.recv().await {
                if r.code().unwrap_or(0) >= 200 {
                    last = Some(r);
                }
            }
            let Some(r) = last else {
                return Err(match mlc.take_send_error(&branch) {
                    Some(e) => format!("{UNREACHABLE} {}: {e}", self.peer.addr),
                    None => format!("{NO_ANSWER} {}", self.peer.addr),
                });
            };
            let code = r.code().unwrap_or(0);
            match code {
                200..=299 if querying => {
                    querying = false;
                    removing = stale_bindings(&r, &contact);
                    if !removing.is_empty() {
                        tracing::info!(line = self.line.0, stale = ?removing,
                            "replacing bindings of this line left by another MLC");
                    }
                    auth = None;
                }
                200..=299 => {
                    let stale = if expires > 0 && removing.is_empty() {
                        stale_bindings(&r, &contact)
                    } else {
                        Vec::new()
                    };
                    if stale.is_empty() {
                        return Ok(granted(&r, &contact).unwrap_or(expires));
                    }
                    tracing::info!(line = self.line.0, stale = ?stale,
                        "removing bindings of this line left by another MLC");
                    removing = stale;
                    auth = None;
                }
                401 | 407 => {
                    let (hdr, answer_hdr) = if code == 401 {
                        ("www-authenticate", "Authorization")
                    } else {
                        ("proxy-authenticate", "Proxy-Authorization")
                    };
                    let challenge = r
                        .header_all(hdr)
                        .iter()
                        .filter_map(|v| Challenge::parse(v).ok())
                        .max_by_key(|c| c.algorithm == openturret_sip::digest::Algorithm::Sha256)
                        .ok_or_else(|| {
                            format!("{code}: the PBX's challenge is not a digest we support")
                        })?;
                    if auth.is_some() && !challenge.stale {
                        return Err(format!(
                            "{code}: authentication failed (wrong username or password)"
                        ));
                    }
                    let Some(pw) = &self.password else {
                        return Err(format!(
                            "{code}: the PBX asks for a password and the line has none"
                        ));
                    };
                    let cnonce = mlc.token();
                    auth = Some((
                        answer_hdr,
                        challenge.answer("REGISTER", &self.registrar_uri, username, pw, 1, &cnonce),
                    ));
                    let _ = attempt;
                }
                _ => {
                    let reason = match &r.start {
                        openturret_sip::Start::Response { reason, .. } => reason.clone(),
                        _ => String::new(),
                    };
                    return Err(format!("{code} {reason}").trim().to_string());
                }
            }
        }
        Err("authentication failed".into())
    }
}

/// A registration failure's reason as the error log may hold it: the
/// status code kept, any run of three digits or more after it (a number a
/// PBX put in its reason phrase) replaced.
fn without_numbers(reason: &str) -> String {
    let b = reason.as_bytes();
    let coded = b.len() >= 3
        && b[..3].iter().all(u8::is_ascii_digit)
        && b.get(3).is_none_or(|c| !c.is_ascii_digit());
    let (code, rest) = if coded {
        reason.split_at(3)
    } else {
        ("", reason)
    };
    let mut out = String::with_capacity(reason.len());
    let mut digits = String::new();
    for ch in rest.chars().chain(std::iter::once(' ')) {
        if ch.is_ascii_digit() {
            digits.push(ch);
            continue;
        }
        if digits.len() >= 3 {
            out.push('…');
        } else {
            out.push_str(&digits);
        }
        digits.clear();
        out.push(ch);
    }
    out.pop();
    format!("{code}{out}")
}

fn aor_of(u: &Uri) -> String {
    format!("sip:{}@{}", u.user, host_port(u))
}

fn host_port(u: &Uri) -> String {
    match u.port {
        Some(p) => format!("{}:{p}", u.host),
        None => u.host.clone(),
    }
}

/// The Contact a line registers: the PBX sends the line's calls here, and
/// the user part says which line a call is for.
pub(crate) fn contact_uri(mlc: &Mlc, line: LineId, peer: Peer) -> String {
    let t = match peer.proto {
        Proto::Udp => "",
        Proto::Tcp => ";transport=tcp",
        Proto::Tls => ";transport=tls",
    };
    format!("sip:ot-line-{}@{}{t}", line.0, mlc.sent_by(peer))
}

/// The line a Request-URI `ot-line-N` user part names.
pub(crate) fn line_of_contact_user(user: &str) -> Option<LineId> {
    user.strip_prefix("ot-line-")?.parse().ok().map(LineId)
}

/// The lifetime the registrar granted our contact.
fn granted(r: &openturret_sip::Message, contact: &str) -> Option<u32> {
    let ours = Uri::parse(contact).ok()?;
    for c in r.header_values("contact") {
        if let Ok(na) = openturret_sip::uri::NameAddr::parse(c)
            && same_binding(&na.uri, &ours)
            && let Some(e) = na.param("expires").and_then(|e| e.parse().ok())
        {
            return Some(e);
        }
    }
    r.expires()
}

fn same_binding(a: &Uri, b: &Uri) -> bool {
    a.user == b.user
        && a.host.eq_ignore_ascii_case(&b.host)
        && a.port.unwrap_or(5060) == b.port.unwrap_or(5060)
}

/// The other bindings of our line in a registrar's answer: same
/// `ot-line-N` user, another address.
fn stale_bindings(r: &openturret_sip::Message, contact: &str) -> Vec<String> {
    let Ok(ours) = Uri::parse(contact) else {
        return Vec::new();
    };
    r.header_values("contact")
        .iter()
        .filter_map(|c| openturret_sip::uri::NameAddr::parse(c).ok())
        .filter(|na| na.uri.user == ours.user && !same_binding(&na.uri, &ours))
        .map(|na| na.uri.to_string())
        .take(8)
        .collect()
}

fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 2];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    d + Duration::from_millis(u16::from_le_bytes(b) as u64 % 500)
}

async fn run(
    mlc: Mlc,
    line: Line,
    password: Option<Secret>,
    kick: Arc<Notify>,
    unregister: Arc<AtomicBool>,
) {
    let uri = match Uri::parse(&line.fields.uri) {
        Ok(u) => u,
        Err(e) => {
            set_state(
                &mlc,
                line.id,
                LineState::Failing(format!("the line's URI is malformed: {e}")),
            )
            .await;
            return;
        }
    };
    let expires = mlc.config().register_expires.max(30);
    let username = if line.fields.username.is_empty() {
        uri.user_decoded()
    } else {
        line.fields.username.clone()
    };
    let password = password.map(|p| p.expose().to_string());
    let mut backoff = Duration::from_secs(1);
    let mut reg: Option<Registration> = None;
    let mut bound = false;
    // Failures in a row that the PBX answered (refused, asked for other
    // credentials): from the second on, each is an event for the line.
    let mut refusals = 0u32;
    loop {
        if unregister.load(Ordering::SeqCst) {
            // The line was deleted or moved: remove our binding, best effort.
            if let Some(r) = &reg
                && bound
            {
                let _ = r.register_as(&mlc, 0, &username).await;
            }
            return;
        }
        let peer = match resolve(&mlc, &uri).await {
            Ok(p) => p,
            Err(reason) => {
                set_state(&mlc, line.id, LineState::Failing(reason)).await;
                wait(&kick, jitter(backoff)).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        if let Some(l) = mlc.lines.lock().unwrap().get_mut(&line.id) {
            l.registrar = Some(peer);
        }
        let r = reg
            .get_or_insert_with(|| Registration::new(&mlc, line.id, &uri, peer, password.clone()));
        r.peer = peer;
        // At most a few hundred REGISTERs in flight: ten thousand lines
        // starting at once must not flood the PBX's receive buffer (lost
        // datagrams cost a retransmission timer each). Boxed, so an idle
        // line's task stays small.
        let result = {
            let _permit = mlc.registering.acquire().await;
            Box::pin(r.register_as(&mlc, expires, &username)).await
        };
        // (At most seven requests per exchange.)
        r.cseq += 8;
        match result {
            Ok(granted) => {
                bound = true;
                if refusals >= 2 {
                    mlc.raise(
                        Event::info(
                            "line.registered",
                            format!("line:{}", line.id.0),
                            "the line registers again",
                        )
                        .with("failures", refusals),
                    );
                }
                refusals = 0;
                set_state(&mlc, line.id, LineState::Registered).await;
                backoff = Duration::from_secs(1);
                let granted = granted.max(2);
                let refresh = if granted > 60 {
                    granted - 30
                } else {
                    granted / 2
                };
                wait(&kick, Duration::from_secs(refresh as u64)).await;
            }
            Err(reason) => {
                if reason.starts_with(NO_ANSWER) || reason.starts_with(UNREACHABLE) {
                    pbx_unreachable(&mlc, peer.addr);
                } else {
                    refusals += 1;
                    if refusals >= 2 {
                        mlc.raise(Event::warning(
                            "line.registration_failed",
                            format!("line:{}", line.id.0),
                            format!("the line cannot register: {}", without_numbers(&reason)),
                        ));
                    }
                }
                set_state(&mlc, line.id, LineState::Failing(reason)).await;
                wait(&kick, jitter(backoff)).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

async fn wait(kick: &Notify, d: Duration) {
    tokio::select! {
        _ = kick.notified() => {}
        _ = tokio::time::sleep(d) => {}
    }
}

/// Sends an OPTIONS to every PBX with lines now and then. A PBX that stops
/// answering marks its lines failing; when it answers again, they all
/// re-register at once.
async fn keepalive(mlc: Mlc) {
    loop {
        let every = Duration::from_secs(mlc.config().keepalive_secs.max(1));
        tokio::time::sleep(every).await;
        let registrars: HashMap<SocketAddr, Peer> = mlc
            .lines
            .lock()
            .unwrap()
            .values()
            .filter_map(|l| l.registrar)
            .map(|p| (p.addr, p))
            .collect();
        mlc.pbx_down
            .lock()
            .unwrap()
            .retain(|a| registrars.contains_key(a));
        for (addr, peer) in registrars {
            let alive = probe(&mlc, peer).await;
            let was_down = mlc.pbx_down.lock().unwrap().contains(&addr);
            if alive && was_down {
                mlc.pbx_down.lock().unwrap().remove(&addr);
                tracing::info!(pbx = %addr, "PBX answers again; re-registering its lines");
                let mut n = 0;
                for l in mlc.lines.lock().unwrap().values() {
                    if l.registrar.is_some_and(|p| p.addr == addr) {
                        l.kick.notify_one();
                        n += 1;
                    }
                }
                mlc.raise(
                    Event::info(
                        "pbx.reachable",
                        format!("pbx:{addr}"),
                        format!("the PBX at {addr} answers again; its lines register again"),
                    )
                    .with("lines", n),
                );
            } else if !alive && !was_down {
                let ids: Vec<LineId> = mlc
                    .lines
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|(_, l)| l.registrar.is_some_and(|p| p.addr == addr))
                    .map(|(id, _)| *id)
                    .collect();
                pbx_unreachable(&mlc, addr);
                for id in ids {
                    set_state(
                        &mlc,
                        id,
                        LineState::Failing(format!("no answer from the PBX at {addr}")),
                    )
                    .await;
                }
            }
        }
    }
}

/// Notes that the PBX at `addr` stopped answering (once until it answers
/// again): one warning for the PBX, not one per line.
fn pbx_unreachable(mlc: &Mlc, addr: SocketAddr) {
    if !mlc.pbx_down.lock().unwrap().insert(addr) {
        return;
    }
    let lines = mlc
        .lines
        .lock()
        .unwrap()
        .values()
        .filter(|l| l.registrar.is_some_and(|p| p.addr == addr))
        .count();
    mlc.raise(
        Event::warning(
            "pbx.unreachable",
            format!("pbx:{addr}"),
            format!("the PBX at {addr} does not answer: its lines cannot register or take calls"),
        )
        .with("lines", lines),
    );
}

/// Whether the PBX answers an OPTIONS (any answer counts) within 2 s.
async fn probe(mlc: &Mlc, peer: Peer) -> bool {
    let branch = mlc.branch();
    let uri = format!("sip:{}", peer.addr);
    let b = Builder::request("OPTIONS", &uri)
        .header("Via", mlc.via(peer, &branch))
        .header("Max-Forwards", "70")
        .header(
            "From",
            format!("<sip:openturret@{}>;tag={}", mlc.sent_by(peer), mlc.token()),
        )
        .header("To", format!("<{uri}>"))
        .header("Call-ID", mlc.call_id())
        .header("CSeq", "1 OPTIONS")
        .header("User-Agent", mlc.user_agent());
    let mut rx = mlc.transact(
        peer,
        branch.clone(),
        b.build(),
        false,
        Duration::from_secs(2),
    );
    let answered = rx.recv().await.is_some();
    let _ = mlc.take_send_error(&branch);
    answered
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_reason_phrase_loses_its_numbers_but_keeps_its_code() {
        use super::without_numbers as w;
        assert_eq!(w("404 User 4471234 not found"), "404 User … not found");
        assert_eq!(w("403 Forbidden"), "403 Forbidden");
        assert_eq!(
            w("401: authentication failed (wrong username or password)"),
            "401: authentication failed (wrong username or password)"
        );
        assert_eq!(w("480 Try 12 later 20001"), "480 Try 12 later …");
        assert_eq!(w("the PBX asks for 2000"), "the PBX asks for …");
    }
}
