//! The client side of the protocol, for the CLI client (`turret client`)
//! and the tests: connects over TLS 1.3, trusting the given CA certificate,
//! sends requests and collects pushes.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use super::proto::{PROTOCOL_VERSION, ProtoError};

pub struct Connection {
    ws: WebSocketStream<TlsStream<TcpStream>>,
    next_id: u64,
    pushes: VecDeque<Value>,
}

/// Splits `https://host:port` (or `wss://`) into host and port.
fn host_port(url: &str) -> anyhow::Result<(String, u16)> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("wss://"))
        .with_context(|| format!("{url}: the server URL must start with https://"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (
            h.trim_start_matches('[').trim_end_matches(']').to_string(),
            p.parse().context("bad port")?,
        ),
        _ => (authority.to_string(), 443),
    };
    Ok((host, port))
}

/// Opens a WebSocket at `path` on the System Manager at `url` over TLS
/// 1.3, trusting the PEM certificate(s) in `ca_pem`; `bearer` goes in the
/// `Authorization` header. A refusal is the HTTP status and its text.
pub async fn open_ws(
    url: &str,
    ca_pem: &[u8],
    path: &str,
    bearer: Option<&str>,
) -> anyhow::Result<WebSocketStream<TlsStream<TcpStream>>> {
    open_ws_from(url, ca_pem, path, bearer, None).await
}

/// [`open_ws`] from the local address `local` (a host with several).
pub async fn open_ws_from(
    url: &str,
    ca_pem: &[u8],
    path: &str,
    bearer: Option<&str>,
    local: Option<std::net::IpAddr>,
) -> anyhow::Result<WebSocketStream<TlsStream<TcpStream>>> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let (host, port) = host_port(url)?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots
            .add(cert.context("while reading the CA certificate")?)
            .context("while trusting the CA certificate")?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = match local {
        None => TcpStream::connect((host.as_str(), port)).await,
        Some(ip) => {
            let to = tokio::net::lookup_host((host.as_str(), port))
                .await?
                .next()
                .with_context(|| format!("cannot resolve {host}"))?;
            let sock = if to.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            sock.bind(std::net::SocketAddr::new(ip, 0))?;
            sock.connect(to).await
        }
    }
    .with_context(|| format!("while connecting to {host}:{port}"))?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from(host.clone()).context("bad server name")?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .context("while setting up TLS (is --ca the server's certificate?)")?;
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut req = format!("wss://{authority}{path}").into_client_request()?;
    if let Some(b) = bearer {
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {b}")
                .parse()
                .context("the key holds characters a header cannot")?,
        );
    }
    match tokio_tungstenite::client_async(req, tls).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            let body = r
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            bail!("{path} refused: {} {}", r.status(), body.trim())
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!("while opening {path}"))),
    }
}

impl Connection {
    /// Connects to the System Manager at `url`, trusting the PEM
    /// certificate(s) in `ca_pem`, and says hello.
    pub async fn connect(url: &str, ca_pem: &[u8]) -> anyhow::Result<Connection> {
        Self::connect_from(url, ca_pem, None).await
    }

    /// [`Connection::connect`] from the local address `local`.
    pub async fn connect_from(
        url: &str,
        ca_pem: &[u8],
        local: Option<std::net::IpAddr>,
    ) -> anyhow::Result<Connection> {
        let ws = open_ws_from(url, ca_pem, "/client", None, local)
            .await
            .context("while opening the client protocol")?;
        let mut c = Connection {
            ws,
            next_id: 1,
            pushes: VecDeque::new(),
        };
        c.request(json!({"op": "hello", "version": PROTOCOL_VERSION}))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(c)
    }

    /// Sends a request (an object with `op`) and waits for its answer;
    /// pushes that arrive meanwhile are kept for [`Connection::push`].
    pub async fn request(&mut self, mut req: Value) -> Result<Value, ProtoError> {
        let id = self.next_id;
        self.next_id += 1;
        req["id"] = json!(id);
        let io =
            |e: tokio_tungstenite::tungstenite::Error| ProtoError::new("connection", e.to_string());
        self.ws
            .send(Message::Text(req.to_string().into()))
            .await
            .map_err(io)?;
        loop {
            let msg = self
                .ws
                .next()
                .await
                .ok_or_else(|| ProtoError::new("connection", "connection closed"))?
                .map_err(io)?;
            let Message::Text(text) = msg else { continue };
            let v: Value = serde_json::from_str(text.as_str())
                .map_err(|e| ProtoError::new("connection", e.to_string()))?;
            if v.get("push").is_some() {
                self.pushes.push_back(v);
                continue;
            }
            if v["re"].as_u64() != Some(id) {
                continue;
            }
            if let Some(e) = v.get("error") {
                return Err(serde_json::from_value(e.clone())
                    .unwrap_or_else(|_| ProtoError::new("connection", e.to_string())));
            }
            return Ok(v["ok"].clone());
        }
    }

    /// The next push, waiting at most `wait`; `None` on timeout or close.
    pub async fn push(&mut self, wait: Duration) -> Option<Value> {
        if let Some(p) = self.pushes.pop_front() {
            return Some(p);
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()??
                .ok()?;
            if let Message::Text(text) = msg {
                let v: Value = serde_json::from_str(text.as_str()).ok()?;
                if v.get("push").is_some() {
                    return Some(v);
                }
            }
        }
    }

    /// The raw text of the next message of any kind, waiting at most `wait`
    /// (for benchmarks that time delivery without decoding).
    pub async fn next_text(&mut self, wait: Duration) -> Option<String> {
        if let Some(p) = self.pushes.pop_front() {
            return Some(p.to_string());
        }
        loop {
            let msg = tokio::time::timeout(wait, self.ws.next())
                .await
                .ok()??
                .ok()?;
            if let Message::Text(text) = msg {
                return Some(text.as_str().to_string());
            }
        }
    }

    /// Closes the connection politely.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// Writes one line to standard output; an error once the reader is gone.
fn emit(line: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}

/// Runs one CLI client command and prints its JSON answer.
pub async fn run_cli(
    url: &str,
    ca_pem: &[u8],
    profile: Option<&str>,
    master: bool,
    passwords: &[String],
    command: &str,
    arg: Option<&str>,
) -> anyhow::Result<()> {
    let mut c = Connection::connect(url, ca_pem).await?;
    // Written, not printed: a reader that goes away (`| head`) ends the
    // output quietly instead of a panic on the closed pipe.
    let show = |v: &Value| {
        let _ = emit(&serde_json::to_string_pretty(v).unwrap_or_default());
    };
    let profiles = c.request(json!({"op": "profiles"})).await?;
    if command == "profiles" {
        show(&profiles);
        return Ok(());
    }
    let name = profile.context("--profile NAME is needed for this command")?;
    let id = profiles
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == name))
        .and_then(|p| p["id"].as_i64())
        .with_context(|| format!("no profile named {name}"))?;
    let password = passwords
        .first()
        .context("the password is read from standard input")?;
    if master {
        // SPEC rule 7: the master password opens a profile only to delete
        // call-memory entries; every use is audited.
        c.request(json!({"op": "master_login", "profile_id": id, "password": password}))
            .await?;
        match command {
            "call-memory" => show(&c.request(json!({"op": "call_memory"})).await?),
            "delete-call-memory" => {
                let entry: i64 = arg
                    .context("delete-call-memory ENTRY_ID")?
                    .parse()
                    .context("ENTRY_ID is a number")?;
                show(
                    &c.request(json!({"op": "delete_call_memory", "entry_id": entry}))
                        .await?,
                )
            }
            other => bail!(
                "with --master only call-memory and delete-call-memory are allowed, not {other}"
            ),
        }
        c.close().await;
        return Ok(());
    }
    let login = c
        .request(json!({"op": "login", "profile_id": id, "password": password}))
        .await?;
    let second = passwords.get(1).cloned();
    match command {
        "config" => show(&login["config"]),
        "contacts" => {
            if let Some(p) = &second {
                c.request(json!({"op": "unlock_contacts", "password": p}))
                    .await?;
            }
            show(&c.request(json!({"op": "contacts", "search": arg})).await?)
        }
        "lookup" => show(
            &c.request(json!({"op": "lookup", "number": arg.context("lookup NUMBER")?}))
                .await?,
        ),
        "call-memory" => {
            c.request(json!({"op": "unlock_call_memory", "password": second.as_ref().unwrap_or(password)})).await?;
            show(&c.request(json!({"op": "call_memory"})).await?)
        }
        "watch" => {
            let secs: u64 = arg.unwrap_or("60").parse().context("watch SECONDS")?;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
            while let Some(p) = c
                .push(deadline.saturating_duration_since(tokio::time::Instant::now()))
                .await
            {
                if emit(&p.to_string()).is_err() {
                    break;
                }
            }
        }
        "export-my-data" => {
            if let Some(p) = &second {
                c.request(json!({"op": "unlock_call_memory", "password": p}))
                    .await?;
            }
            let v = c.request(json!({"op": "subject_export"})).await?;
            let out = arg.context("export-my-data FILE")?;
            let b64 = v["zip_base64"]
                .as_str()
                .context("no export in the answer")?;
            std::fs::write(out, unbase64(b64).context("the export is not base64")?)?;
            eprintln!(
                "wrote {out} (call memory {})",
                if v["includes_call_memory"] == true {
                    "included"
                } else {
                    "not included: give the call-memory password as a second line"
                }
            );
        }
        "delete-call-memory" => {
            let unlock = second.as_ref().unwrap_or(password);
            c.request(json!({"op": "unlock_call_memory", "password": unlock}))
                .await?;
            let entry: i64 = arg
                .context("delete-call-memory ENTRY_ID")?
                .parse()
                .context("ENTRY_ID is a number")?;
            show(
                &c.request(json!({"op": "delete_call_memory", "entry_id": entry}))
                    .await?,
            )
        }
        // Telephony: the calls are the profile's, not this connection's,
        // so a call dialled by one command can be hung up by the next.
        "calls" => show(&c.request(json!({"op": "calls"})).await?),
        "dial" => show(
            &c.request(json!({"op": "dial", "number": arg.context("dial NUMBER")?}))
                .await?,
        ),
        "answer" | "hangup" | "reject" | "hold" | "retrieve" => {
            let call: u64 = arg
                .with_context(|| format!("{command} CALL_ID"))?
                .parse()
                .context("CALL_ID is a number")?;
            show(&c.request(json!({"op": command, "call_id": call})).await?)
        }
        other => bail!(
            "unknown client command {other}: use profiles, config, contacts, lookup, call-memory, \
             delete-call-memory, watch, calls, dial, answer, reject, hold, retrieve or hangup"
        ),
    }
    c.close().await;
    Ok(())
}

/// Decodes standard, padded base64.
fn unbase64(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes = s.trim().as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = n << 6 | val(c)?;
        }
        n <<= 6 * pad as u32;
        out.extend_from_slice(&n.to_be_bytes()[1..4 - pad]);
    }
    Some(out)
}
