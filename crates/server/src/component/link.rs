//! The System Manager's side of the link: the listener, one connection
//! per MLC, and what its messages do.

use openturret_domain::model::Event;

use super::ca::*;
use super::*;

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
    /// SIP requests it refused from strangers, as it last said.
    pub refused: AtomicU64,
    /// It said it is stopping (a planned stop, not a failure).
    stopping: std::sync::atomic::AtomicBool,
    /// The error log.
    events: Arc<crate::events::EventLog>,
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

    /// The line of call `id` and who holds it (answered or placed it).
    pub fn call_line(&self, id: u64) -> Option<(LineId, Option<ProfileId>)> {
        self.calls
            .lock()
            .unwrap()
            .get(&id)
            .map(|c| (c.line, c.owner))
    }

    fn send(&self, v: Value) {
        if self
            .out
            .try_send(Message::Text(v.to_string().into()))
            .is_err()
        {
            tracing::warn!(mlc = %self.name, "component link congested; message dropped");
            self.events.raise(Event::warning(
                "mlc.link_congested",
                format!("mlc:{}", self.name),
                format!(
                    "messages to the MLC {} were dropped: its link is congested",
                    self.name
                ),
            ));
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
    let instance = telephony::next_instance(&app).await?;
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
        refused: AtomicU64::new(0),
        stopping: std::sync::atomic::AtomicBool::new(false),
        events: app.events.clone(),
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
    app.events.raise(
        Event::info(
            "mlc.connected",
            format!("mlc:{name}"),
            format!("the MLC {name} connected"),
        )
        .with("address", peer.ip()),
    );
    telephony::joined(&app, link.clone());
    let data_dir = app.config.data_dir.clone();
    let still_enrolled = || enrolled(&data_dir).is_ok_and(|e| e.get(&name) == Some(&fp));
    // A revoked certificate is cut off within a few seconds.
    let mut check = tokio::time::interval(REVOCATION_CHECK);
    // Both sides beat; a link silent for long is taken for lost (half-open),
    // and the MLC's lines move.
    let mut beat = tokio::time::interval(openturret_mlc::link::BEAT);
    let mut heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = beat.tick() => {
                if heard.elapsed() > openturret_mlc::link::SILENT {
                    tracing::warn!(mlc = %name, silent = ?heard.elapsed(),
                        "no word from the MLC: the link counts as lost");
                    break;
                }
                link.send(json!({"t": "beat"}));
            }
            m = stream.next() => {
                let Some(Ok(m)) = m else { break };
                heard = tokio::time::Instant::now();
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
    app.events.raise(if link.stopping.load(Ordering::Relaxed) {
        Event::info(
            "mlc.stopped",
            format!("mlc:{name}"),
            format!("the MLC {name} stopped; its lines moved to the other MLCs"),
        )
    } else {
        Event::warning(
            "mlc.link_lost",
            format!("mlc:{name}"),
            format!("the link to the MLC {name} was lost; its lines move to the other MLCs"),
        )
    });
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
        "recorder_state" => {
            let line = LineId(v["line_id"].as_i64().unwrap_or_default());
            if telephony::serves(app, &link.name, line) {
                let failure = v["failure"].as_str().map(|s| s.chars().take(200).collect());
                crate::recording::on_recorder_state(
                    app,
                    v["call"].as_u64().unwrap_or_default(),
                    line,
                    v["owner"].as_i64().map(openturret_domain::ProfileId),
                    v["recorder"].as_i64().unwrap_or_default(),
                    failure,
                )
                .await;
            }
        }
        "recording" => {
            let Some(view) = CallView::from_json(&v["view"]) else {
                return reply(json!({"error": "not a call"}));
            };
            // Only for a call on a line this MLC serves.
            if !telephony::serves(app, &link.name, view.line) {
                return reply(json!({"recording": null}));
            }
            match crate::recording::recording_of(app, &view).await {
                Ok(r) => reply(
                    json!({"recording": r.as_ref().map(openturret_mlc::link::recording_json)}),
                ),
                Err(e) => reply(json!({"error": format!("{e:#}")})),
            }
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
        "events" => {
            let events = openturret_mlc::link::events_of_json(&v["events"]);
            app.events.add_from(&format!("mlc:{}", link.name), events);
        }
        "stopping" => link.stopping.store(true, Ordering::Relaxed),
        "refused" => {
            link.refused
                .store(v["count"].as_u64().unwrap_or_default(), Ordering::Relaxed);
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
