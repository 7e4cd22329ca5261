//! The Multi-Line Controller under load, each figure beside a baseline
//! measured in the same run:
//!
//! 1. `calls`: calls per second through the MLC on an auto-answer line,
//!    driven by sipp's built-in UAC (INVITE, 200, ACK, BYE), against sipp's
//!    UAC talking to sipp's built-in UAS. The highest rate of a ladder
//!    completed with zero failed calls counts.
//! 2. `register`: 10,000 lines registered on Kamailio (MD5 digest), from
//!    the import that creates them to the last one registered, against
//!    sipp registering 10,000 users with digest on the same Kamailio; and
//!    the MLC's memory per registered line (growth of its resident set).
//! 3. `ring`: a call on a line shared by 1,000 connected turret clients,
//!    from the INVITE's arrival to the last client's ring event, against
//!    the bare broadcast WebSocket server sending a message of the same
//!    size.
//! 4. `stalled`: the same ring, timed on 100 clients, first with no CTI
//!    application and then with 20 connected applications that never read
//!    (tiny receive buffers), each time after a flood of 10,000 calls
//!    meant to overflow the stalled applications' queues: the ring must
//!    not wait for them, and each must be told it lost events, unless its
//!    socket buffers held everything and its events have no gap.
//!
//! Run: `cargo bench -p openturret-server --bench sip` (needs kamailio and
//! sipp: `scripts/test.sh` installs them). `BENCH_PART=calls|register|ring|stalled`
//! runs one part; `BENCH_LINES`, `BENCH_CLIENTS`, `BENCH_ROUNDS` change
//! the sizes.

mod common;
#[allow(dead_code)]
#[path = "../tests/common/sip.rs"]
mod sip;

use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::pct;
use common::turret::{
    Turret, baseline_message, baseline_server, connect_all, rss_kib, start_baseline, time_rounds,
    time_rounds_after,
};
use openturret_server::client::conn::Connection;
use serde_json::json;

/// Creates a line registered as `user` on `pbx` (the MLC takes calls
/// only on registered lines, and only from their PBX's address: here
/// 127.0.0.1, where the benchmark's senders are too); waits until it is
/// registered.
async fn registered_line(
    t: &Turret,
    pbx: &sip::Kamailio,
    user: &str,
    mut body: serde_json::Value,
) -> serde_json::Value {
    body["uri"] = json!(format!("sip:{user}@127.0.0.1:{}", pbx.port));
    body["username"] = json!(user);
    body["password"] = json!(sip::PBX_PASSWORD);
    let line = t.post("/lines", body).await;
    let id = line["id"].as_i64().expect("line created");
    let deadline = Instant::now() + Duration::from_secs(20);
    while t.get(&format!("/lines/{id}")).await["registration_state"] != "registered" {
        assert!(Instant::now() < deadline, "line {user} never registered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    line
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs sipp to completion; returns (seconds, succeeded).
fn sipp(args: &[&str]) -> (f64, bool) {
    let t0 = Instant::now();
    let out = Command::new("sipp")
        .args(args)
        .args(["-nostdin", "-nd", "-timeout", "120s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("sipp is installed (scripts/test.sh installs sip-tester)");
    (t0.elapsed().as_secs_f64(), out.success())
}

/// The ladder: three seconds of calls at each rate; the best achieved rate
/// of a run with no failed call. Stops at a failure or at saturation.
fn ladder(target: &str, rates: &[usize], extra: &[&str]) -> Option<(usize, f64)> {
    let mut best = None;
    for &rate in rates {
        let calls = rate * 3;
        let (r, m, l) = (rate.to_string(), calls.to_string(), (rate * 2).to_string());
        let mut args = vec!["-sn", "uac", target, "-r", &r, "-m", &m, "-l", &l];
        args.extend_from_slice(extra);
        let (secs, ok) = sipp(&args);
        let achieved = calls as f64 / secs;
        println!(
            "  offered {rate:>5}/s: {calls} calls in {secs:.2} s = {achieved:.0}/s, {}",
            if ok { "no failure" } else { "FAILED CALLS" }
        );
        if !ok {
            break;
        }
        if best.is_none_or(|(_, a)| achieved > a) {
            best = Some((rate, achieved));
        }
        // Saturated: the calls no longer keep up with the offered rate.
        if achieved < rate as f64 * 0.8 {
            break;
        }
    }
    best
}

async fn calls() {
    let rates = [300, 1000, 2000, 3000, 4000, 5000, 6000, 8000, 10000];
    println!("calls per second (sipp UAC, INVITE/200/ACK/BYE, zero failures)");
    // Baseline: sipp UAC against a sipp UAS.
    let port = sip::free_port();
    let mut uas = Command::new("sipp")
        .args([
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-nostdin",
            "-nd",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp");
    std::thread::sleep(Duration::from_millis(500));
    println!(" sipp UAC → sipp UAS");
    let base = ladder(&format!("127.0.0.1:{port}"), &rates, &["-s", "bench"]);
    let _ = uas.kill();
    let _ = uas.wait();

    // OpenTurret: an auto-answer line; sipp calls its contact directly.
    let t = Turret::start(&[]).await;
    let pbx = sip::Kamailio::start("MD5", false);
    registered_line(
        &t,
        &pbx,
        "1001",
        json!({"name": "Intercom", "answer_mode": "automatic"}),
    )
    .await;
    // Every call leaves its CDR in the database and in both rolling files.
    t.patch(
        "/settings",
        json!({"cdr_enabled": true, "cdr_files": "both"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    println!(" sipp UAC → OpenTurret MLC (auto-answer line)");
    let target = t.sip.unwrap().to_string();
    let ours = tokio::task::spawn_blocking(move || ladder(&target, &rates, &["-s", "ot-line-1"]))
        .await
        .unwrap();
    let show = |x: Option<(usize, f64)>| {
        x.map_or("none".to_string(), |(r, a)| {
            format!("{r}/s offered, {a:.0}/s achieved")
        })
    };
    println!("  baseline best: {}", show(base));
    println!("  OpenTurret best: {}", show(ours));
    if let (Some((_, b)), Some((_, o))) = (base, ours) {
        println!("  ratio: {:.2}x of the baseline", o / b);
    }
}

async fn register() {
    let n = env_usize("BENCH_LINES", 10_000);
    println!("{n} lines registered on Kamailio (MD5 digest)");
    let pbx = sip::Kamailio::start("MD5", false);
    // Baseline: sipp registers n users.
    let dir = tempfile::tempdir().unwrap();
    let mut users = String::from("SEQUENTIAL\n");
    for i in 0..n {
        let u = 20_000 + i;
        users.push_str(&format!(
            "{u};[authentication username={u} password={}]\n",
            sip::PBX_PASSWORD
        ));
    }
    std::fs::write(dir.path().join("users.csv"), users).unwrap();
    std::fs::write(
        dir.path().join("reg.xml"),
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="register with digest">
  <send retrans="500"><![CDATA[
REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:[field0]@[remote_ip]:[remote_port]>;tag=[call_number]
To: <sip:[field0]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 REGISTER
Contact: <sip:[field0]@[local_ip]:[local_port]>
Max-Forwards: 70
Expires: 3600
Content-Length: 0

]]></send>
  <recv response="401" auth="true"/>
  <send retrans="500"><![CDATA[
REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:[field0]@[remote_ip]:[remote_port]>;tag=[call_number]
To: <sip:[field0]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 2 REGISTER
Contact: <sip:[field0]@[local_ip]:[local_port]>
[field1]
Max-Forwards: 70
Expires: 3600
Content-Length: 0

]]></send>
  <recv response="200"/>
</scenario>
"#,
    )
    .unwrap();
    let target = format!("127.0.0.1:{}", pbx.port);
    let (m, l) = (n.to_string(), n.to_string());
    let (base_secs, base_ok) = sipp(&[
        "-sf",
        &dir.path().join("reg.xml").to_string_lossy(),
        "-inf",
        &dir.path().join("users.csv").to_string_lossy(),
        &target,
        "-m",
        &m,
        "-l",
        &l,
        "-r",
        "10000",
        "-i",
        "127.0.0.1",
    ]);
    println!(
        "  sipp registering {n} users: {base_secs:.2} s ({})",
        if base_ok {
            "all registered"
        } else {
            "SOME FAILED"
        }
    );

    // OpenTurret: import n lines, wait until all are registered. The
    // same import into a server without the MLC first, so the memory
    // figure is the MLC's alone (not the import's or the database cache's).
    let mut csv = String::from("name,uri,username,password\n");
    for i in 0..n {
        let u = 40_000 + i;
        csv.push_str(&format!(
            "L{u},sip:{u}@127.0.0.1:{},{u},{}\n",
            pbx.port,
            sip::PBX_PASSWORD
        ));
    }
    let (without_mlc, _) = import_lines(&[("TURRET_SIP__ENABLED", "false")], &csv, n, false).await;
    let (with_mlc, (total, import)) = import_lines(&[], &csv, n, true).await;
    println!(
        "  OpenTurret registering {n} lines: {:.2} s after the import ({:.2} s with the import's {:.2} s)",
        total - import,
        total,
        import
    );
    println!(
        "  ratio: {:.2}x the baseline's time",
        (total - import) / base_secs
    );
    let per_line = with_mlc.saturating_sub(without_mlc) as f64 / n as f64;
    println!(
        "  memory: the server grew {with_mlc} KiB with the MLC, {without_mlc} KiB without it: {per_line:.2} KiB per registered line"
    );
}

/// Starts a server, imports `csv` (n lines), waits for every line to
/// register when `register`; returns the resident-set growth (KiB) and
/// (seconds until registered, seconds the import took).
async fn import_lines(
    env: &[(&str, &str)],
    csv: &str,
    n: usize,
    register: bool,
) -> (u64, (f64, f64)) {
    let t = Turret::start(env).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(t.pid());
    let t0 = Instant::now();
    let r = t
        .http
        .post(format!("{}/api/v1/import/lines", t.url))
        .bearer_auth(&t.admin)
        .header("content-type", "text/csv")
        .body(csv.to_string())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "import: {}", r.status());
    let imported = t0.elapsed().as_secs_f64();
    if register {
        wait_registered(&t, n, t0).await;
    }
    let total = t0.elapsed().as_secs_f64();
    // Let the audit writer and the allocator settle before measuring.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    (rss_kib(t.pid()).saturating_sub(before), (total, imported))
}

async fn wait_registered(t: &Turret, n: usize, t0: Instant) {
    loop {
        let s = t.get("/mlc").await;
        if s["lines"]["registered"].as_u64() == Some(n as u64) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "not all registered: {s}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The INVITE of round `k`; `phase` keeps Call-IDs and branches unique
/// when rounds are numbered again.
fn invite(to: SocketAddr, k: usize, from_port: u16) -> Vec<u8> {
    invite_in(0, to, k, from_port)
}

/// Phases from 100 on call line 2 (the flood line), the others line 1.
fn invite_in(phase: usize, to: SocketAddr, k: usize, from_port: u16) -> Vec<u8> {
    let line = if phase >= 100 { 2 } else { 1 };
    let body = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n";
    format!(
        "INVITE sip:ot-line-{line}@{to} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{from_port};branch=z9hG4bKring{phase}x{k}\r\n\
From: \"round-{k}\" <sip:2000@127.0.0.1>;tag=r{phase}x{k}\r\nTo: <sip:1001@127.0.0.1>\r\nCall-ID: ring-{phase}x{k}@bench\r\n\
CSeq: 1 INVITE\r\nContact: <sip:2000@127.0.0.1:{from_port}>\r\nMax-Forwards: 70\r\n\
Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn cancel(to: SocketAddr, k: usize, from_port: u16) -> Vec<u8> {
    cancel_in(0, to, k, from_port)
}

fn cancel_in(phase: usize, to: SocketAddr, k: usize, from_port: u16) -> Vec<u8> {
    let line = if phase >= 100 { 2 } else { 1 };
    format!(
        "CANCEL sip:ot-line-{line}@{to} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{from_port};branch=z9hG4bKring{phase}x{k}\r\n\
From: \"round-{k}\" <sip:2000@127.0.0.1>;tag=r{phase}x{k}\r\nTo: <sip:1001@127.0.0.1>\r\nCall-ID: ring-{phase}x{k}@bench\r\n\
CSeq: 1 CANCEL\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

async fn ring() {
    let n = env_usize("BENCH_CLIENTS", 1000);
    let rounds = env_usize("BENCH_ROUNDS", 30);
    println!("ring fan-out: a call on a line shared by {n} connected clients, {rounds} rounds");
    let t = Turret::start(&[]).await;
    let pbx = sip::Kamailio::start("MD5", false);
    let (mut first, token) = shared_line(&t, &pbx).await;
    let (mut rx, _tasks) =
        connect_all(n, &t.url, &t.cert, json!({"op": "resume", "token": token})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let from_port = sock.local_addr().unwrap().port();
    let to = t.sip.unwrap();
    let mut size = 0;
    // The previous call is cancelled before each round, untimed, so the
    // clients are not busy with its `ended` push when the ring is timed.
    let turret = time_rounds_after(
        n,
        rounds,
        &mut rx,
        |k| {
            let sock = &sock;
            async move {
                if k > 1 {
                    sock.send_to(&cancel(to, k - 1, from_port), to).unwrap();
                }
                k > 1
            }
        },
        |k| {
            let sock = &sock;
            async move {
                sock.send_to(&invite(to, k, from_port), to).unwrap();
            }
        },
    )
    .await;
    // The size of a ring push, for the baseline's message.
    while let Some(v) = first.push(Duration::from_millis(200)).await {
        if v["push"] == json!("call") {
            size = v.to_string().len();
        }
    }
    drop(t);

    let (_base, burl, bcert, bhttp) = start_baseline();
    let (mut brx, _btasks) =
        connect_all(n, &burl, &bcert, json!({"op": "resume", "token": "x"})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = time_rounds(n, rounds, &mut brx, |k| {
        let (bhttp, burl) = (&bhttp, &burl);
        async move {
            bhttp
                .post(format!("{burl}/trigger"))
                .body(baseline_message(k, size.max(200)))
                .send()
                .await
                .unwrap();
        }
    })
    .await;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("{:<44} {:>10} {:>10}", "", "p50 ms", "p99 ms");
    println!(
        "{:<44} {:>10.1} {:>10.1}",
        "OpenTurret (INVITE sent → last client rings)",
        ms(pct(&turret, 0.5)),
        ms(pct(&turret, 0.99))
    );
    println!(
        "{:<44} {:>10.1} {:>10.1}",
        "bare broadcast WebSocket server",
        ms(pct(&baseline, 0.5)),
        ms(pct(&baseline, 0.99))
    );
    println!(
        "p99 ratio: {:.2}x (push of {size} bytes)",
        pct(&turret, 0.99).as_secs_f64() / pct(&baseline, 0.99).as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    if std::env::var("BENCH_ROLE").as_deref() == Ok("baseline") {
        return baseline_server().await;
    }
    let part = std::env::var("BENCH_PART").unwrap_or_default();
    if part.is_empty() || part == "calls" {
        calls().await;
    }
    if part.is_empty() || part == "register" {
        register().await;
    }
    if part.is_empty() || part == "ring" {
        ring().await;
    }
    if part.is_empty() || part == "stalled" {
        stalled().await;
    }
}

/// Line 1, shown by one profile whose turret is logged in: the
/// connection and its session token (for `resume`s).
async fn shared_line(t: &Turret, pbx: &sip::Kamailio) -> (Connection, String) {
    let line = registered_line(
        t,
        pbx,
        "1001",
        json!({"name": "Shared", "display_name": "Shared"}),
    )
    .await;
    assert_eq!(line["id"], 1);
    let p = t
        .post("/profiles", json!({"name": "Desk", "password": "bench-pw"}))
        .await;
    let pid = p["id"].as_i64().unwrap();
    t.put(
        &format!("/profiles/{pid}/lines/{}", line["id"]),
        json!({"position": 1}),
    )
    .await;
    let mut first = Connection::connect(&t.url, &t.cert).await.unwrap();
    let login = first
        .request(json!({"op": "login", "profile_id": pid, "password": "bench-pw"}))
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap().to_string();
    (first, token)
}

/// A CTI application that connects and then never reads: a receive buffer
/// of 2 KiB, so the server's writes to it stop at once.
async fn stalled_app(
    t: &Turret,
    token: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use rustls::pki_types::pem::PemObject;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let authority = t.url.strip_prefix("https://").unwrap().to_string();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&t.cert) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(2048).unwrap();
    let tcp = sock.connect(authority.parse().unwrap()).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let mut req = format!("wss://{authority}/cti")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    tokio_tungstenite::client_async(req, tls).await.unwrap().0
}

async fn stalled() {
    use futures_util::StreamExt;
    let n = env_usize("BENCH_CLIENTS", 100);
    let rounds = env_usize("BENCH_ROUNDS", 50);
    let apps = env_usize("BENCH_APPS", 20);
    let flood = env_usize("BENCH_FLOOD", 10_000);
    println!(
        "stalled CTI applications: ring on a line shared by {n} clients, {rounds} rounds, \
         without and with {apps} applications that never read, each after {flood} calls"
    );
    let t = Turret::start(&[]).await;
    let pbx = sip::Kamailio::start("MD5", false);
    let (first, session) = shared_line(&t, &pbx).await;
    drop(first);
    // The flood goes to a second line that no turret shows: it loads the
    // CTI applications (whose keys see every line), not the turrets.
    let flood_line = registered_line(
        &t,
        &pbx,
        "1002",
        json!({"name": "Flood", "display_name": "Flood"}),
    )
    .await;
    assert_eq!(flood_line["id"], 2);
    t.patch("/settings", json!({"cti_enabled": true})).await;
    let key = t
        .post(
            "/api-keys",
            json!({"name": "slow recorder", "events": ["calls"]}),
        )
        .await;
    let token = key["token"].as_str().unwrap().to_string();
    let (mut rx, _tasks) = connect_all(
        n,
        &t.url,
        &t.cert,
        json!({"op": "resume", "token": session}),
    )
    .await;
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_nonblocking(true).unwrap();
    let from_port = sock.local_addr().unwrap().port();
    let to = t.sip.unwrap();

    let mut results = Vec::new();
    let mut held = Vec::new();
    for (phase, with_apps) in [(1usize, false), (2, true)] {
        if with_apps {
            for _ in 0..apps {
                held.push(stalled_app(&t, &token).await);
            }
        }
        // The flood: calls offered and cancelled, untimed, paced a little.
        let flood_phase = phase + 100;
        for k in 1..=flood {
            // Numbered far beyond the timed rounds, so a late push of the
            // flood is never taken for a round's ring.
            let k = k + 1_000_000;
            sock.send_to(&invite_in(flood_phase, to, k, from_port), to)
                .unwrap();
            sock.send_to(&cancel_in(flood_phase, to, k, from_port), to)
                .unwrap();
            if k % 50 == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
                let mut buf = [0u8; 4096];
                while sock.recv_from(&mut buf).is_ok() {}
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        while rx.try_recv().is_ok() {}
        let timed = time_rounds_after(
            n,
            rounds,
            &mut rx,
            |k| {
                let sock = &sock;
                async move {
                    if k > 1 {
                        sock.send_to(&cancel_in(phase, to, k - 1, from_port), to)
                            .unwrap();
                    }
                    let mut buf = [0u8; 4096];
                    while sock.recv_from(&mut buf).is_ok() {}
                    k > 1
                }
            },
            |k| {
                let sock = &sock;
                async move {
                    sock.send_to(&invite_in(phase, to, k, from_port), to)
                        .unwrap();
                }
            },
        )
        .await;
        sock.send_to(&cancel_in(phase, to, rounds, from_port), to)
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        results.push(timed);
    }
    // Each stalled application, reading at last, is told it lost events,
    // or else (its socket buffers held the whole flood) finds no event
    // missing: its events' sequence numbers have no gap.
    let (mut told, mut whole, mut gaps) = (0, 0, 0);
    for ws in &mut held {
        let deadline = Instant::now() + Duration::from_secs(30);
        let (mut lost, mut seqs) = (false, Vec::new());
        while Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(2), ws.next()).await {
                Ok(Some(Ok(m))) => {
                    let v: serde_json::Value =
                        serde_json::from_str(m.to_text().unwrap_or("{}")).unwrap_or_default();
                    if v["kind"] == "lost" {
                        lost = true;
                        break;
                    }
                    seqs.extend(v["seq"].as_u64());
                }
                _ => break,
            }
        }
        if lost {
            told += 1;
        } else if seqs.windows(2).all(|w| w[1] == w[0] + 1) {
            whole += 1;
        } else {
            gaps += 1;
        }
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("{:<44} {:>10} {:>10}", "", "p50 ms", "p99 ms");
    println!(
        "{:<44} {:>10.1} {:>10.1}",
        format!("ring with {apps} stalled CTI applications"),
        ms(pct(&results[1], 0.5)),
        ms(pct(&results[1], 0.99))
    );
    println!(
        "{:<44} {:>10.1} {:>10.1}",
        "ring with no CTI application (baseline)",
        ms(pct(&results[0], 0.5)),
        ms(pct(&results[0], 0.99))
    );
    println!(
        "p99 ratio: {:.2}x; of {apps} applications: {told} told they lost events, \
         {whole} missed none, {gaps} missed some untold",
        pct(&results[1], 0.99).as_secs_f64() / pct(&results[0], 0.99).as_secs_f64()
    );
}
