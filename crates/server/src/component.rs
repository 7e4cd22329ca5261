//! The component link between the System Manager and `turret mlc`
//! processes (SPEC §1: mutual TLS between server components).
//!
//! **Trust.** The System Manager keeps an internal CA in
//! `<data_dir>/components/` (its key never leaves that folder, mode 0600).
//! `turret mlc enrol NAME` issues an MLC its client certificate and key and
//! records the certificate's SHA-256 fingerprint in `enrolled.json`;
//! `turret mlc revoke NAME` removes it. The component listener
//! (`components.listen`) demands a client certificate of that CA (TLS 1.3)
//! and then one that is enrolled: a copied or revoked certificate gets
//! nowhere. The MLC checks the System Manager's certificate against the same
//! CA, so neither side trusts anything else.
//!
//! **Protocol.** One WebSocket per MLC, JSON text messages with a type
//! `t`. The MLC says `hello` and gets `welcome` (its name and the base of
//! its call ids). It asks for its `lines` (with their passwords: it must
//! register them) and for one `line` when told `line_changed`, and it
//! `resync`s when told to (lines moving between MLCs). It reports
//! `line_state`, `call` (changed or ended), `rejected_here` and
//! `transferred`, in order, and asks `flush` before it stops. The System
//! Manager sends `op` (dial, answer, reject, hangup, hold, retrieve,
//! transfer) and the MLC answers with `result`.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use async_trait::async_trait;
use futures_util::{SinkExt, StreamExt};
use openturret_domain::model::{AnswerMode, Line, LineFields};
use openturret_domain::secret::Secret;
use openturret_domain::{LineId, ProfileId, Timestamp};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

use crate::App;
use crate::mlc::call::{OpError, op_err};
use crate::mlc::report::CallView;
use crate::mlc::{Host, LineState, Mlc};
use crate::telephony;

/// The link protocol's version.
pub const VERSION: u64 = 1;
/// Call ids of the n-th MLC to connect start above n << 40.
const CALL_ID_SPACE: u64 = 1 << 40;
/// How often a connected MLC's certificate is checked against the
/// enrolled list (a revoked one is cut off).
const REVOCATION_CHECK: Duration = Duration::from_secs(2);
/// How long an operation may wait for the MLC's result.
const OP_TIMEOUT: Duration = Duration::from_secs(15);

// ----- the internal CA -----------------------------------------------------

fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("components")
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("while writing {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

fn ca_params() -> anyhow::Result<rcgen::CertificateParams> {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "OpenTurret component CA");
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    Ok(p)
}

/// The CA's certificate (PEM) and signing key, made on first use.
fn ensure_ca(data_dir: &Path) -> anyhow::Result<(String, rcgen::KeyPair)> {
    let d = dir(data_dir);
    let (cert, key) = (d.join("ca.pem"), d.join("ca.key"));
    if !cert.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&d)
            .with_context(|| format!("while creating {}", d.display()))?;
        let k = rcgen::KeyPair::generate()?;
        let c = ca_params()?.self_signed(&k)?;
        write_private(&key, &k.serialize_pem())?;
        std::fs::write(&cert, c.pem())?;
    }
    let pem = std::fs::read_to_string(&cert)?;
    let k = rcgen::KeyPair::from_pem(&std::fs::read_to_string(&key)?)
        .context("the component CA key is unreadable")?;
    Ok((pem, k))
}

/// A certificate and key issued by the CA: for an MLC (`client`) or for
/// the System Manager's component listener (`names` as its SANs).
fn issue(
    data_dir: &Path,
    common_name: &str,
    names: Vec<String>,
    client: bool,
) -> anyhow::Result<(String, String)> {
    let (_, ca_key) = ensure_ca(data_dir)?;
    let issuer = rcgen::Issuer::new(ca_params()?, ca_key);
    let mut p = rcgen::CertificateParams::new(names)?;
    p.distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    p.extended_key_usages = vec![if client {
        rcgen::ExtendedKeyUsagePurpose::ClientAuth
    } else {
        rcgen::ExtendedKeyUsagePurpose::ServerAuth
    }];
    let k = rcgen::KeyPair::generate()?;
    let c = p.signed_by(&k, &issuer)?;
    Ok((c.pem(), k.serialize_pem()))
}

fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn enrolled_path(data_dir: &Path) -> PathBuf {
    dir(data_dir).join("enrolled.json")
}

/// The enrolled MLCs: name → certificate fingerprint.
pub fn enrolled(data_dir: &Path) -> anyhow::Result<HashMap<String, String>> {
    match std::fs::read_to_string(enrolled_path(data_dir)) {
        Ok(t) => Ok(serde_json::from_str(&t).context("components/enrolled.json is corrupt")?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HashMap::new()),
        Err(e) => Err(e.into()),
    }
}

fn save_enrolled(data_dir: &Path, e: &HashMap<String, String>) -> anyhow::Result<()> {
    let path = enrolled_path(data_dir);
    let tmp = path.with_extension("tmp");
    write_private(&tmp, &serde_json::to_string_pretty(e)?)?;
    std::fs::rename(&tmp, &path)?;
    Ok(())
}

/// `turret mlc enrol NAME --out DIR`: issues an MLC's certificate and key
/// (and copies the CA certificate) into `out`; returns the files written.
pub fn enrol(data_dir: &Path, name: &str, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if name.is_empty()
        || name.len() > 64
        || name == telephony::LOCAL_NAME
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        bail!(
            "{name:?}: an MLC name is 1 to 64 letters, digits, '-', '_' or '.', and not \"local\""
        );
    }
    let mut all = enrolled(data_dir)?;
    if all.contains_key(name) {
        bail!("an MLC named {name} is enrolled already (revoke it first to issue a new one)");
    }
    let (cert, key) = issue(data_dir, name, vec![name.to_string()], true)?;
    let (ca, _) = ensure_ca(data_dir)?;
    std::fs::create_dir_all(out).with_context(|| format!("while creating {}", out.display()))?;
    let files = vec![
        out.join(format!("{name}.pem")),
        out.join(format!("{name}.key")),
        out.join("ca.pem"),
    ];
    std::fs::write(&files[0], &cert)?;
    write_private(&files[1], &key)?;
    std::fs::write(&files[2], ca)?;
    let der = CertificateDer::from_pem_slice(cert.as_bytes())?;
    all.insert(name.to_string(), fingerprint(&der));
    save_enrolled(data_dir, &all)?;
    Ok(files)
}

/// `turret mlc revoke NAME`: its certificate is refused from now on (and
/// its connection, if any, ends at its next message).
pub fn revoke(data_dir: &Path, name: &str) -> anyhow::Result<()> {
    let mut all = enrolled(data_dir)?;
    if all.remove(name).is_none() {
        bail!("no MLC named {name} is enrolled");
    }
    save_enrolled(data_dir, &all)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca_pem: &[u8]) -> anyhow::Result<Arc<rustls::RootCertStore>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(c.context("while reading the CA certificate")?)?;
    }
    Ok(Arc::new(roots))
}

// ----- the System Manager's side -------------------------------------------

/// A connected `turret mlc`, as the System Manager sees it.
pub struct Link {
    pub name: String,
    pub peer: SocketAddr,
    /// Its SIP address, as it said.
    pub sip: Mutex<String>,
    out: mpsc::Sender<Message>,
    next: AtomicU64,
    pending: Mutex<HashMap<u64, oneshot::Sender<Result<Value, OpError>>>>,
    states: Mutex<HashMap<LineId, LineState>>,
    calls: Mutex<HashMap<u64, CallView>>,
}

impl Link {
    pub fn line_state(&self, id: LineId) -> LineState {
        self.states
            .lock()
            .unwrap()
            .get(&id)
            .cloned()
            .unwrap_or(LineState::Unregistered)
    }

    pub fn line_states(&self) -> HashMap<LineId, LineState> {
        self.states.lock().unwrap().clone()
    }

    pub fn calls(&self) -> Vec<CallView> {
        self.calls.lock().unwrap().values().cloned().collect()
    }

    pub fn call_line(&self, id: u64) -> Option<LineId> {
        self.calls.lock().unwrap().get(&id).map(|c| c.line)
    }

    fn send(&self, v: Value) {
        if self
            .out
            .try_send(Message::Text(v.to_string().into()))
            .is_err()
        {
            tracing::warn!(mlc = %self.name, "component link congested; message dropped");
        }
    }

    pub fn line_changed(&self, id: LineId) {
        self.send(json!({"t": "line_changed", "line_id": id.0}));
    }

    pub fn resync(&self) {
        self.send(json!({"t": "resync"}));
    }

    /// Runs a call operation on this MLC.
    pub async fn op(&self, mut v: Value) -> Result<Value, OpError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        v["t"] = json!("op");
        v["id"] = json!(id);
        self.send(v);
        match tokio::time::timeout(OP_TIMEOUT, rx).await {
            Ok(Ok(r)) => r,
            _ => {
                self.pending.lock().unwrap().remove(&id);
                Err(op_err(
                    "unavailable",
                    format!("the Multi-Line Controller {} did not answer", self.name),
                ))
            }
        }
    }
}

/// Starts the component listener on `listen`; returns its address.
pub async fn serve(app: &App, listen: SocketAddr) -> anyhow::Result<SocketAddr> {
    let data_dir = app.config.data_dir.clone();
    let (ca, _) = ensure_ca(&data_dir)?;
    let d = dir(&data_dir);
    let (cert_path, key_path) = (d.join("server.pem"), d.join("server.key"));
    if !cert_path.exists() {
        let mut names = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ];
        if !app.host.is_empty() && app.host != "localhost" {
            names.push(app.host.clone());
        }
        names.extend(app.config.components.names.iter().cloned());
        let (c, k) = issue(&data_dir, "OpenTurret System Manager", names, false)?;
        write_private(&key_path, &k)?;
        std::fs::write(&cert_path, c)?;
    }
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(&cert_path)?.collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_file(&key_path)?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots(ca.as_bytes())?,
        provider(),
    )
    .build()?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let tcp = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("while binding the component listener {listen}"))?;
    let local = tcp.local_addr()?;
    let weak = Arc::downgrade(&app.0);
    tokio::spawn(async move {
        loop {
            let Ok((sock, peer)) = tcp.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let Some(app) = weak.upgrade().map(App) else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Err(e) = accept(app, acceptor, sock, peer).await {
                    tracing::warn!(%peer, error = format!("{e:#}"), "component connection refused");
                }
            });
        }
    });
    tracing::info!(%local, "component listener (mutual TLS) for turret mlc");
    Ok(local)
}

async fn accept(
    app: App,
    acceptor: tokio_rustls::TlsAcceptor,
    sock: tokio::net::TcpStream,
    peer: SocketAddr,
) -> anyhow::Result<()> {
    let tls = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(sock))
        .await
        .context("TLS handshake timed out")??;
    let der = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .context("no client certificate")?
        .to_vec();
    let fp = fingerprint(&der);
    let name = enrolled(&app.config.data_dir)?
        .into_iter()
        .find(|(_, f)| *f == fp)
        .map(|(n, _)| n)
        .context("the certificate is not enrolled (or was revoked)")?;
    let mut ws = tokio_tungstenite::accept_async(tls).await?;
    let hello = match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => serde_json::from_str::<Value>(t.as_str())?,
        _ => bail!("no hello"),
    };
    if hello["t"] != "hello" || hello["version"] != VERSION {
        bail!("unexpected hello {hello}");
    }
    if telephony::members(&app).iter().any(|m| m.name() == name) {
        let _ = ws
            .send(Message::Text(
                json!({"t": "refused", "reason": format!("an MLC named {name} is connected already")})
                    .to_string()
                    .into(),
            ))
            .await;
        bail!("{name} is connected already");
    }
    let instance = telephony::next_instance(&app);
    let (out, mut out_rx) = mpsc::channel::<Message>(65_536);
    let link = Arc::new(Link {
        name: name.clone(),
        peer,
        sip: Mutex::new(hello["sip"].as_str().unwrap_or_default().to_string()),
        out,
        next: AtomicU64::new(1),
        pending: Mutex::new(HashMap::new()),
        states: Mutex::new(HashMap::new()),
        calls: Mutex::new(HashMap::new()),
    });
    ws.send(Message::Text(
        json!({"t": "welcome", "name": name, "call_id_base": instance * CALL_ID_SPACE})
            .to_string()
            .into(),
    ))
    .await?;
    let (mut sink, mut stream) = ws.split();
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if sink.send(m).await.is_err() {
                break;
            }
        }
    });
    let r = app
        .store
        .append_audit(app.system_record("mlc.connected", "mlc", Some(format!("{name} {peer}"))))
        .await;
    if let Err(e) = r {
        tracing::warn!(error = %e, "audit entry not written");
    }
    tracing::info!(mlc = %name, %peer, "Multi-Line Controller connected");
    telephony::joined(&app, link.clone());
    let data_dir = app.config.data_dir.clone();
    let still_enrolled = || enrolled(&data_dir).is_ok_and(|e| e.get(&name) == Some(&fp));
    // A revoked certificate is cut off within a few seconds.
    let mut check = tokio::time::interval(REVOCATION_CHECK);
    loop {
        tokio::select! {
            m = stream.next() => {
                let Some(Ok(m)) = m else { break };
                let Message::Text(t) = m else { continue };
                let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else {
                    continue;
                };
                handle(&app, &link, v).await;
            }
            _ = check.tick() => {
                if !still_enrolled() {
                    tracing::warn!(mlc = %name, "certificate revoked: disconnecting");
                    break;
                }
            }
        }
    }
    writer.abort();
    telephony::left(&app, &link).await;
    for (_, tx) in link.pending.lock().unwrap().drain() {
        let _ = tx.send(Err(op_err("unavailable", "the MLC disconnected")));
    }
    let _ = app
        .store
        .append_audit(app.system_record("mlc.disconnected", "mlc", Some(name.clone())))
        .await;
    tracing::warn!(mlc = %name, "Multi-Line Controller disconnected; its lines move");
    Ok(())
}

/// One message from an MLC.
async fn handle(app: &App, link: &Arc<Link>, v: Value) {
    let reply = |mut r: Value| {
        r["t"] = json!("reply");
        r["id"] = v["id"].clone();
        link.send(r);
    };
    match v["t"].as_str().unwrap_or_default() {
        "lines" => match telephony::lines_of(app, &link.name).await {
            Ok(lines) => reply(json!({"lines": lines.iter().map(line_json).collect::<Vec<_>>()})),
            Err(e) => reply(json!({"error": format!("{e:#}")})),
        },
        "line" => {
            let id = LineId(v["line_id"].as_i64().unwrap_or_default());
            match telephony::line_of(app, &link.name, id).await {
                Ok(l) => reply(json!({"line": l.as_ref().map(line_json)})),
                Err(e) => reply(json!({"error": format!("{e:#}")})),
            }
        }
        "flush" => {
            telephony::flush(app).await;
            reply(json!({}));
        }
        "line_state" => {
            let id = LineId(v["line_id"].as_i64().unwrap_or_default());
            let (prev, state) = (state_of(&v["previous"]), state_of(&v["state"]));
            link.states.lock().unwrap().insert(id, state.clone());
            telephony::on_line_state(app, id, &prev, &state).await;
        }
        "sip" => {
            *link.sip.lock().unwrap() = v["sip"].as_str().unwrap_or_default().to_string();
        }
        "line_gone" => {
            let id = LineId(v["line_id"].as_i64().unwrap_or_default());
            link.states.lock().unwrap().remove(&id);
        }
        "call" => {
            let Some(view) = CallView::from_json(&v["view"]) else {
                return;
            };
            let ended = v["ended"] == true;
            {
                let mut calls = link.calls.lock().unwrap();
                if ended {
                    calls.remove(&view.id);
                } else {
                    calls.insert(view.id, view.clone());
                }
            }
            telephony::on_call(app, view, ended).await;
        }
        "rejected_here" => {
            if let Some(view) = CallView::from_json(&v["view"]) {
                let pid = ProfileId(v["profile_id"].as_i64().unwrap_or_default());
                telephony::on_rejected_here(app, view, pid).await;
            }
        }
        "transferred" => telephony::on_transferred(
            app,
            v["call_id"].as_u64().unwrap_or_default(),
            LineId(v["line_id"].as_i64().unwrap_or_default()),
        ),
        "result" => {
            let id = v["id"].as_u64().unwrap_or_default();
            if let Some(tx) = link.pending.lock().unwrap().remove(&id) {
                let r = match v.get("error") {
                    Some(e) => Err(op_err(
                        known_code(e["code"].as_str().unwrap_or_default()),
                        e["message"].as_str().unwrap_or_default(),
                    )),
                    None => Ok(v["ok"].clone()),
                };
                let _ = tx.send(r);
            }
        }
        _ => {}
    }
}

/// The codes a call operation can fail with (they travel as text).
fn known_code(c: &str) -> &'static str {
    const CODES: &[&str] = &[
        "not_found",
        "not_ringing",
        "not_answered",
        "forbidden",
        "invalid",
        "line_down",
        "no_line",
        "refused",
        "no_answer",
        "unavailable",
        "internal",
    ];
    CODES.iter().find(|x| **x == c).copied().unwrap_or("failed")
}

fn state_json(s: &LineState) -> Value {
    json!({"state": s.name(), "reason": s.reason()})
}

fn state_of(v: &Value) -> LineState {
    match v["state"].as_str().unwrap_or_default() {
        "registered" => LineState::Registered,
        "registering" => LineState::Registering,
        "failing" => LineState::Failing(v["reason"].as_str().unwrap_or_default().to_string()),
        "unknown" => LineState::Unknown,
        _ => LineState::Unregistered,
    }
}

fn line_json((l, password): &(Line, Option<Secret>)) -> Value {
    let f = &l.fields;
    json!({"id": l.id.0, "name": f.name, "uri": f.uri, "username": f.username,
        "display_name": f.display_name, "alternate_text": f.alternate_text,
        "preferred_identity": f.preferred_identity, "answer_mode": f.answer_mode.as_str(),
        "created_at": l.created_at.0, "updated_at": l.updated_at.0,
        "password": password.as_ref().map(|p| p.expose().to_string())})
}

fn line_of_json(v: &Value) -> Option<(Line, Option<Secret>)> {
    let s = |k: &str| v[k].as_str().unwrap_or_default();
    let fields = LineFields::new(
        s("name"),
        s("uri"),
        s("username"),
        s("display_name"),
        s("alternate_text"),
        s("preferred_identity"),
    )
    .ok()?
    .with_answer_mode(AnswerMode::parse(s("answer_mode")).unwrap_or(AnswerMode::Manual));
    Some((
        Line {
            id: LineId(v["id"].as_i64()?),
            fields,
            has_password: v["password"].is_string(),
            created_at: Timestamp(v["created_at"].as_i64().unwrap_or_default()),
            updated_at: Timestamp(v["updated_at"].as_i64().unwrap_or_default()),
        },
        v["password"].as_str().map(Secret::new),
    ))
}

// ----- the MLC's side (`turret mlc`) ---------------------------------------

/// How `turret mlc` reaches its System Manager.
pub struct MlcOptions {
    /// `https://host:port` of the component listener.
    pub manager: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// The MLC's host: the System Manager, over the link.
struct RemoteHost {
    out: mpsc::Sender<Value>,
    next: AtomicU64,
    pending: Mutex<HashMap<u64, oneshot::Sender<Value>>>,
    connected: AtomicBool,
}

impl RemoteHost {
    fn tell(&self, v: Value) {
        // Bounded: an unreachable System Manager costs memory up to here,
        // then reports are dropped (and logged).
        if self.out.try_send(v).is_err() {
            tracing::error!("the link to the System Manager is congested; a report is lost");
        }
    }

    async fn ask(&self, mut v: Value) -> anyhow::Result<Value> {
        if !self.connected.load(Ordering::SeqCst) {
            bail!("not connected to the System Manager");
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        v["id"] = json!(id);
        self.out.send(v).await.ok().context("link closed")?;
        let r = tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .context("the System Manager did not answer")?
            .context("the link closed")?;
        if let Some(e) = r.get("error") {
            bail!("the System Manager: {e}");
        }
        Ok(r)
    }
}

#[async_trait]
impl Host for RemoteHost {
    async fn lines(&self) -> anyhow::Result<Vec<(Line, Option<Secret>)>> {
        if !self.connected.load(Ordering::SeqCst) {
            // Cut off: serve nothing, so no line is served twice while the
            // System Manager hands this MLC's lines to another.
            return Ok(Vec::new());
        }
        let r = self.ask(json!({"t": "lines"})).await?;
        Ok(r["lines"]
            .as_array()
            .map(|a| a.iter().filter_map(line_of_json).collect())
            .unwrap_or_default())
    }

    async fn line(&self, id: LineId) -> anyhow::Result<Option<(Line, Option<Secret>)>> {
        let r = self.ask(json!({"t": "line", "line_id": id.0})).await?;
        Ok(line_of_json(&r["line"]))
    }

    async fn line_state(&self, id: LineId, previous: LineState, state: LineState) {
        self.tell(json!({"t": "line_state", "line_id": id.0,
            "previous": state_json(&previous), "state": state_json(&state)}));
    }

    async fn call(&self, view: CallView, ended: bool) {
        self.tell(json!({"t": "call", "ended": ended, "view": view.to_json()}));
    }

    async fn rejected_here(&self, view: CallView, profile: ProfileId) {
        self.tell(json!({"t": "rejected_here", "profile_id": profile.0, "view": view.to_json()}));
    }

    async fn transferred(&self, call: u64, line: LineId) {
        self.tell(json!({"t": "transferred", "call_id": call, "line_id": line.0}));
    }

    async fn flush(&self) {
        let _ = self.ask(json!({"t": "flush"})).await;
    }
}

/// `turret mlc`: serves the lines the System Manager gives it until
/// `stop` completes; reconnects (1 s doubling to 15 s) when the link
/// drops, serving no line meanwhile.
pub async fn run_mlc(
    opts: MlcOptions,
    sip: crate::config::SipConfig,
    tls: Option<crate::mlc::transport::TlsSetup>,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let ca = std::fs::read(&opts.ca)
        .with_context(|| format!("while reading the CA certificate {}", opts.ca.display()))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&opts.cert)
        .with_context(|| format!("while reading {}", opts.cert.display()))?
        .collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_file(&opts.key)
        .with_context(|| format!("while reading {}", opts.key.display()))?;
    let config = Arc::new(
        rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots(&ca)?)
            .with_client_auth_cert(certs, key)
            .context("the certificate and key do not match")?,
    );
    let (out_tx, mut out_rx) = mpsc::channel::<Value>(65_536);
    let host = Arc::new(RemoteHost {
        out: out_tx,
        next: AtomicU64::new(1),
        pending: Mutex::new(HashMap::new()),
        connected: AtomicBool::new(false),
    });
    let mlc = Mlc::new();
    let mut started = false;
    let mut tls = tls;
    let mut backoff = Duration::from_secs(1);
    tokio::pin!(stop);
    loop {
        let link = connect(&opts.manager, config.clone(), &mlc, &sip).await;
        let (mut ws, welcome) = match link {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), manager = %opts.manager,
                    "cannot reach the System Manager; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = &mut stop => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(15));
                continue;
            }
        };
        backoff = Duration::from_secs(1);
        mlc.set_call_id_base(welcome["call_id_base"].as_u64().unwrap_or_default());
        tracing::info!(name = %welcome["name"], manager = %opts.manager, "connected to the System Manager");
        host.connected.store(true, Ordering::SeqCst);
        let me = mlc.clone();
        let h = host.clone();
        let sip_now = sip.clone();
        let tls_now = if started { None } else { tls.take() };
        let first = !started;
        started = true;
        // Start (or resync) in the background: it asks for the lines over
        // this very link.
        tokio::spawn(async move {
            if first {
                match me.start(h.clone(), sip_now, tls_now).await {
                    Ok(at) => h.tell(json!({"t": "sip", "sip": at.to_string()})),
                    Err(e) => {
                        tracing::error!(error = format!("{e:#}"), "the MLC did not start");
                        std::process::exit(2);
                    }
                }
            } else {
                crate::mlc::register::resync(&me).await;
                // What the System Manager forgot when the link dropped.
                for c in crate::mlc::call::ongoing(&me) {
                    h.call(c, false).await;
                }
            }
        });
        let ended = loop {
            tokio::select! {
                m = out_rx.recv() => {
                    let Some(m) = m else { break false };
                    if ws.send(Message::Text(m.to_string().into())).await.is_err() {
                        // Put back what could not be sent? It is a report
                        // for a System Manager that is gone: it learns the
                        // state again on reconnection.
                        break false;
                    }
                }
                m = ws.next() => {
                    let Some(Ok(m)) = m else { break false };
                    let Message::Text(t) = m else { continue };
                    let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else { continue };
                    on_manager_message(&mlc, &host, v);
                }
                _ = &mut stop => break true,
            }
        };
        host.connected.store(false, Ordering::SeqCst);
        for (_, tx) in host.pending.lock().unwrap().drain() {
            drop(tx);
        }
        if ended {
            break;
        }
        tracing::warn!("lost the System Manager; serving no line until it is back");
        let me = mlc.clone();
        tokio::spawn(async move { crate::mlc::register::resync(&me).await });
    }
    // Stopping: end the calls, unbind the lines.
    if started {
        crate::mlc::call::end_all(&mlc, Duration::from_secs(3)).await;
        crate::mlc::register::shutdown(&mlc, Duration::from_secs(3)).await;
    }
    Ok(())
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

async fn connect(
    manager: &str,
    config: Arc<rustls::ClientConfig>,
    mlc: &Mlc,
    sip: &crate::config::SipConfig,
) -> anyhow::Result<(Ws, Value)> {
    let rest = manager
        .strip_prefix("https://")
        .or_else(|| manager.strip_prefix("wss://"))
        .with_context(|| format!("{manager}: the System Manager URL must start with https://"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let (host, port) = authority
        .rsplit_once(':')
        .with_context(|| format!("{manager}: give the component port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let tcp = tokio::net::TcpStream::connect((host, port.parse::<u16>()?)).await?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from(host.to_string())?, tcp)
        .await
        .context("TLS with the System Manager failed (is --ca its component CA?)")?;
    let (mut ws, _) = tokio_tungstenite::client_async(format!("wss://{authority}/mlc"), tls)
        .await
        .context("the System Manager refused the link (is this MLC enrolled?)")?;
    let sip_addr = mlc
        .local_addr()
        .map_or(sip.listen.to_string(), |a| a.to_string());
    ws.send(Message::Text(
        json!({"t": "hello", "version": VERSION, "sip": sip_addr})
            .to_string()
            .into(),
    ))
    .await?;
    let welcome = match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => serde_json::from_str::<Value>(t.as_str())?,
        _ => bail!("the System Manager did not welcome this MLC"),
    };
    if welcome["t"] != "welcome" {
        bail!("the System Manager refused: {}", welcome["reason"]);
    }
    Ok((ws, welcome))
}

/// One message from the System Manager.
fn on_manager_message(mlc: &Mlc, host: &Arc<RemoteHost>, v: Value) {
    match v["t"].as_str().unwrap_or_default() {
        "reply" => {
            let id = v["id"].as_u64().unwrap_or_default();
            if let Some(tx) = host.pending.lock().unwrap().remove(&id) {
                let _ = tx.send(v);
            }
        }
        "line_changed" => {
            let id = LineId(v["line_id"].as_i64().unwrap_or_default());
            let me = mlc.clone();
            tokio::spawn(async move { crate::mlc::register::restart(&me, id).await });
        }
        "resync" => {
            let me = mlc.clone();
            tokio::spawn(async move { crate::mlc::register::resync(&me).await });
        }
        "op" => {
            let (me, h) = (mlc.clone(), host.clone());
            tokio::spawn(async move {
                let id = v["id"].clone();
                let r = run_remote_op(&me, &v).await;
                let msg = match r {
                    Ok(ok) => json!({"t": "result", "id": id, "ok": ok}),
                    Err(e) => json!({"t": "result", "id": id,
                        "error": {"code": e.code, "message": e.message}}),
                };
                h.tell(msg);
            });
        }
        _ => {}
    }
}

async fn run_remote_op(mlc: &Mlc, v: &Value) -> Result<Value, OpError> {
    use crate::mlc::call;
    let pid = ProfileId(v["profile_id"].as_i64().unwrap_or_default());
    let id = v["call_id"].as_u64().unwrap_or_default();
    match v["op"].as_str().unwrap_or_default() {
        "dial" => {
            let line = LineId(v["line_id"].as_i64().unwrap_or_default());
            let n = v["number"].as_str().unwrap_or_default();
            let call = call::dial(mlc, pid, line, n).await?;
            Ok(json!({"call_id": call}))
        }
        "answer" => {
            let unit = v["speech_unit"].as_str().unwrap_or("handset-1");
            call::answer_call(mlc, id, Some(pid), unit).await?;
            Ok(json!({}))
        }
        "reject" => {
            let sharing: Vec<ProfileId> = v["sharing"]
                .as_array()
                .map(|a| a.iter().filter_map(|p| p.as_i64()).map(ProfileId).collect())
                .unwrap_or_default();
            call::reject_call(mlc, id, pid, &sharing).await?;
            Ok(json!({}))
        }
        op => {
            telephony::run_op(mlc, op, id, pid, v["target"].as_str().unwrap_or_default()).await?;
            Ok(json!({}))
        }
    }
}
