//! A trader's desk for the voice and recording tests: Kamailio as the PBX,
//! a server (or a server and a separate `turret mlc`) with a line on it
//! and a profile showing it, and the web turret logged in in headless
//! Chromium with a fake microphone playing 440 Hz.

use serde_json::json;

use super::Api;
use super::browser::Browser;
use super::inproc::InProc;
use super::mlcproc::{enrol, manager_url, start_mlc};
use super::sip::{Baresip, BaresipOpts, Kamailio, PBX_PASSWORD, sine_wav};

pub const FAR: f64 = 1000.0;
/// The two nodes' log level: calls and the notes between the nodes, in
/// the test's output when it fails.
const NODE_LOG: &str = "info,openturret_server::peers=debug";
pub const MIC: f64 = 440.0;

/// A server with a line on the PBX, a profile showing it, and the turret
/// logged in with a fake microphone; the line registered. The line is
/// served by the server's own MLC, or by a separate `turret mlc`.
pub struct Desk {
    pub pbx: Kamailio,
    pub b: Browser,
    pub api: Api,
    pub line: i64,
    /// The server's address and (in process) its certificate, PEM.
    pub url: String,
    pub cert: Vec<u8>,
    /// The server (and the `turret mlc`, and their folders), kept running.
    _keep: Vec<Box<dyn std::any::Any + Send>>,
}

#[derive(Clone, Copy, PartialEq)]
pub enum Mlc {
    InProcess,
    Separate,
    /// In process, telling browsers to send media to an address nothing
    /// answers at (a wrong `media.public_address`).
    Unreachable,
    /// In process, the line over TLS (its RTP may then be SRTP).
    Tls,
    /// Two `turret serve` nodes on one PostgreSQL database: the line
    /// served by one, the turret connected to the other (issue 19).
    OtherNode,
}

pub async fn desk(mlc: Mlc) -> Desk {
    desk_with_ca(mlc, None).await
}

/// [`desk`], the MLC trusting `ca` for TLS peers (a recorder's
/// certificate) instead of the test PBX's.
pub async fn desk_with_ca(mlc: Mlc, ca: Option<std::path::PathBuf>) -> Desk {
    // (For the failure message: what the in-process server warned of.)
    let log = super::logs::capture();
    let pbx = if mlc == Mlc::Tls {
        Kamailio::start_tls()
    } else {
        Kamailio::start("MD5", true)
    };
    let ca = ca.or_else(|| (mlc == Mlc::Tls).then(|| pbx.cert_path()));
    let mut keep: Vec<Box<dyn std::any::Any + Send>> = Vec::new();
    let mut cert = Vec::new();
    // With two nodes: each node's address and name.
    let mut nodes: Vec<(String, String)> = Vec::new();
    let (mut url, api) = match mlc {
        Mlc::InProcess | Mlc::Unreachable | Mlc::Tls => {
            let s = InProc::start_with(|c, _| {
                c.sip.enabled = true;
                c.sip.keepalive_secs = 1;
                c.sip.tls_ca = ca;
                if mlc == Mlc::Unreachable {
                    c.media.public_address = Some("192.0.2.1".parse().unwrap());
                }
            })
            .await;
            let r = (s.url.clone(), s.api.clone());
            cert = s.cert.clone();
            keep.push(Box::new(s));
            r
        }
        Mlc::Separate => {
            let dir = tempfile::tempdir().unwrap();
            let data = dir.path().join("sm");
            let (server, api) = super::fresh_with_env(
                &data,
                &[
                    ("TURRET_SIP__ENABLED", "false"),
                    ("TURRET_COMPONENTS__LISTEN", "127.0.0.1:0"),
                ],
            )
            .await;
            let creds = dir.path().join("creds");
            enrol(&data, &creds, "mlc-a");
            let proc = start_mlc(&manager_url(&server), &creds, "mlc-a", dir.path());
            let url = server.url.clone();
            keep.push(Box::new(proc));
            keep.push(Box::new(server));
            keep.push(Box::new(dir));
            (url, api)
        }
        Mlc::OtherNode => {
            let a_dir = tempfile::tempdir().unwrap();
            super::postgres_database(a_dir.path()).await;
            let (a, api) = super::fresh_with_env(a_dir.path(), &[("TURRET_LOG", NODE_LOG)]).await;
            let b_dir = super::second_node_dir(a_dir.path());
            let b = super::Server::start(b_dir.path(), &[("TURRET_LOG", NODE_LOG)]).await;
            for (s, d) in [(&a, &a_dir), (&b, &b_dir)] {
                let name = format!(
                    "{}:{}",
                    openturret_server::host_name(),
                    std::fs::canonicalize(d.path()).unwrap().display()
                );
                nodes.push((s.url.clone(), name));
            }
            let url = a.url.clone();
            keep.extend([
                Box::new(a) as Box<dyn std::any::Any + Send>,
                Box::new(b),
                Box::new(a_dir),
                Box::new(b_dir),
            ]);
            (url, api)
        }
    };
    let uri = match pbx.tls_port {
        Some(p) if mlc == Mlc::Tls => format!("sips:1001@127.0.0.1:{p}"),
        _ => format!("sip:1001@127.0.0.1:{}", pbx.port),
    };
    let (_, l) = api
        .post(
            "/api/v1/lines",
            json!({"name": "FX", "uri": uri, "username": "1001",
                   "password": PBX_PASSWORD, "display_name": "FX Desk"}),
        )
        .await;
    let (_, p) = api
        .post(
            "/api/v1/profiles",
            json!({"name": "Ann Trader", "password": "ann-pw-longer"}),
        )
        .await;
    api.put(
        &format!("/api/v1/profiles/{}/lines/{}", p["id"], l["id"]),
        json!({"position": 1}),
    )
    .await;
    if !nodes.is_empty() {
        // The turret goes to the node that does not serve the line.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let holder = loop {
            let (_, m) = api.get("/api/v1/mlc").await;
            if let Some(h) = m["leases"][0]["holder"].as_str() {
                break h.to_string();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no node took the line: {m}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        };
        url = nodes
            .iter()
            .find(|(_, name)| *name != holder)
            .map(|(u, _)| u.clone())
            .unwrap();
    }
    let mic = tempfile::tempdir().unwrap();
    let wav = mic.path().join("mic.wav");
    sine_wav(&wav, MIC, 48_000, 10);
    let b = Browser::start_with(
        &url.clone(),
        &[
            "--use-fake-ui-for-media-stream".into(),
            "--use-fake-device-for-media-stream".into(),
            format!("--use-file-for-fake-audio-capture={}", wav.display()),
            "--allow-loopback-in-peer-connection".into(),
            "--autoplay-policy=no-user-gesture-required".into(),
        ],
    )
    .await;
    keep.push(Box::new(mic));
    b.turret_login("Ann Trader", "ann-pw-longer").await;
    // The line registered, as the API says (else the failure says why,
    // with the server's warnings), then as the browser shows it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let (_, ls) = api.get("/api/v1/lines").await;
        if ls[0]["registration_state"] == "registered" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the line did not register within 15 s: {ls:#}\nwarnings:\n{}",
            log.warnings()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    b.wait_text("[data-line][data-registration=registered]", "FX Desk")
        .await;
    Desk {
        pbx,
        b,
        line: l["id"].as_i64().unwrap(),
        api,
        url,
        cert,
        _keep: keep,
    }
}

pub fn phone(d: &Desk, user: &str, tone_hz: f64, codec: &'static str, auto: bool) -> Baresip {
    Baresip::start_with(
        user,
        d.pbx.port,
        auto,
        BaresipOpts {
            tone_hz,
            codec,
            record: true,
            srtp: false,
        },
    )
}
