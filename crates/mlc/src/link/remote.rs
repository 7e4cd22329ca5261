//! The MLC's side of the link (`turret mlc`): its host is the System
//! Manager, reached over mutual TLS.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use async_trait::async_trait;
use futures_util::{SinkExt, StreamExt};
use openturret_domain::model::{Event, Line};
use openturret_domain::secret::Secret;
use openturret_domain::{LineId, ProfileId};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

use super::{VERSION, line_of_json, provider, roots, state_json};
use crate::call::{self, OpError};
use crate::{CallView, Host, LineState, Mlc, SipConfig};

/// How `turret mlc` reaches its System Manager.
pub struct MlcOptions {
    /// `https://host:port` of the component listener.
    pub manager: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    /// The `[media]` configuration of this MLC.
    pub media: crate::MediaConfig,
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

    async fn recorder_state(
        &self,
        call: u64,
        line: LineId,
        owner: Option<openturret_domain::ProfileId>,
        recorder: i64,
        failure: Option<String>,
    ) {
        self.tell(
            json!({"t": "recorder_state", "call": call, "line_id": line.0,
            "owner": owner.map(|p| p.0), "recorder": recorder, "failure": failure}),
        );
    }

    async fn recording(&self, call: &CallView) -> anyhow::Result<Option<crate::Recording>> {
        let r = self
            .ask(json!({"t": "recording", "view": call.to_json()}))
            .await?;
        Ok(super::recording_of_json(&r["recording"]))
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

    async fn events(&self, events: Vec<openturret_domain::model::Folded>) {
        for chunk in events.chunks(super::MAX_EVENTS) {
            self.tell(json!({"t": "events", "events": super::events_json(chunk)}));
        }
    }
}

/// `turret mlc`: serves the lines the System Manager gives it until
/// `stop` completes; reconnects (1 s doubling to 15 s) when the link
/// drops, serving no line meanwhile.
pub async fn run_mlc(
    opts: MlcOptions,
    sip: SipConfig,
    tls: Option<crate::transport::TlsSetup>,
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
    mlc.set_media_config(opts.media.clone());
    let mut started = false;
    let mut tls = tls;
    let mut backoff = Duration::from_secs(1);
    // Fused: polled again after it fired, it stays pending.
    let stop = futures_util::FutureExt::fuse(stop);
    tokio::pin!(stop);
    let mut stopped = false;
    // Since when the link is down, once it was up.
    let mut lost: Option<std::time::Instant> = None;
    loop {
        // (Bounded: on a cut network a connection or handshake may hang.)
        let link = match tokio::time::timeout(
            CONNECT_TIMEOUT,
            connect(&opts.manager, config.clone(), &mlc, &sip),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!(
                "no answer within {CONNECT_TIMEOUT:?} (connection, TLS or welcome)"
            )),
        };
        let (mut ws, welcome) = match link {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), manager = %opts.manager,
                    "cannot reach the System Manager; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = &mut stop => { stopped = true; break }
                }
                backoff = (backoff * 2).min(Duration::from_secs(15));
                continue;
            }
        };
        backoff = Duration::from_secs(1);
        if let Some(since) = lost.take() {
            mlc.raise(
                Event::info(
                    "link.restored",
                    "system-manager",
                    "the link to the System Manager is back",
                )
                .with("down_secs", since.elapsed().as_secs()),
            );
        }
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
                    Ok(at) => {
                        h.tell(json!({"t": "sip", "sip": at.to_string()}));
                        // The strangers refused, for the System Manager's
                        // status (every 5 s, when the count moved).
                        let (m, h) = (me.clone(), h.clone());
                        tokio::spawn(async move {
                            let mut said = 0;
                            loop {
                                tokio::time::sleep(Duration::from_secs(5)).await;
                                let n = m.refused_requests();
                                if n != said {
                                    h.tell(json!({"t": "refused", "count": n}));
                                    said = n;
                                }
                            }
                        });
                    }
                    Err(e) => {
                        tracing::error!(error = format!("{e:#}"), "the MLC did not start");
                        std::process::exit(2);
                    }
                }
            } else {
                crate::register::resync(&me).await;
                // What the System Manager forgot when the link dropped.
                for c in call::ongoing(&me) {
                    h.call(c, false).await;
                }
            }
        });
        let mut stopping: Option<tokio::task::JoinHandle<()>> = None;
        let mut beat = tokio::time::interval(super::BEAT);
        let mut heard = tokio::time::Instant::now();
        let ended = loop {
            tokio::select! {
                _ = beat.tick() => {
                    if heard.elapsed() > super::SILENT {
                        tracing::warn!(silent = ?heard.elapsed(),
                            "no word from the System Manager: the link counts as lost");
                        break false;
                    }
                    if ws.send(Message::Text(json!({"t": "beat"}).to_string().into())).await.is_err() {
                        break false;
                    }
                }
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
                    heard = tokio::time::Instant::now();
                    let Message::Text(t) = m else { continue };
                    let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else { continue };
                    on_manager_message(&mlc, &host, v);
                }
                _ = &mut stop, if stopping.is_none() => {
                    // End the calls and unbind the lines with the link
                    // still up, so the calls' ends reach the System
                    // Manager (which records them) before we go.
                    stopped = true;
                    host.tell(json!({"t": "stopping"}));
                    let (me, h) = (mlc.clone(), host.clone());
                    stopping = Some(tokio::spawn(async move {
                        call::end_all(&me, Duration::from_secs(3)).await;
                        crate::register::shutdown(&me, Duration::from_secs(3)).await;
                        h.flush().await;
                    }));
                }
                _ = async { stopping.as_mut().expect("guarded").await }, if stopping.is_some() => {
                    break true;
                }
            }
        };
        host.connected.store(false, Ordering::SeqCst);
        for (_, tx) in host.pending.lock().unwrap().drain() {
            drop(tx);
        }
        if ended || stopped {
            break;
        }
        tracing::warn!("lost the System Manager; serving no line until it is back");
        lost = Some(std::time::Instant::now());
        mlc.raise(Event::warning(
            "link.lost",
            "system-manager",
            "the link to the System Manager was lost: this MLC serves no line until it is back",
        ));
        let me = mlc.clone();
        tokio::spawn(async move { crate::register::resync(&me).await });
    }
    // Stopped while the link was down: end the calls and unbind the
    // lines all the same (their ends cannot be reported now).
    if started && stopped && mlc.calls_in_progress() + mlc.line_states().len() > 0 {
        call::end_all(&mlc, Duration::from_secs(3)).await;
        crate::register::shutdown(&mlc, Duration::from_secs(3)).await;
    }
    Ok(())
}

/// How long connecting to the System Manager may take, TLS and welcome
/// included.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

async fn connect(
    manager: &str,
    config: Arc<rustls::ClientConfig>,
    mlc: &Mlc,
    sip: &SipConfig,
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
            tokio::spawn(async move { crate::register::restart(&me, id).await });
        }
        "resync" => {
            let me = mlc.clone();
            tokio::spawn(async move { crate::register::resync(&me).await });
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
        "voice" => {
            let turret: std::net::IpAddr = v["turret"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| crate::call::op_err("invalid", "no turret address"))?;
            let offer = v["sdp"].as_str().unwrap_or_default();
            let answer = mlc.attach_voice(id, pid, offer, turret).await?;
            Ok(json!({"sdp": answer}))
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
            call::run_op(mlc, op, id, pid, v["target"].as_str().unwrap_or_default()).await?;
            Ok(json!({}))
        }
    }
}
