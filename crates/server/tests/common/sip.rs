//! Real SIP peers for the telephony tests, from Debian's packages: Kamailio
//! as the PBX (registrar and proxy with digest authentication) and baresip
//! as a softphone driven through its `ctrl_tcp` interface. A missing peer
//! fails the test loudly (`scripts/test.sh` installs them).

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The password every test account has on the test PBX.
pub const PBX_PASSWORD: &str = "secret";

/// A port free for both UDP and TCP on 127.0.0.1 (and the next one, for
/// tools that take two).
pub fn free_port() -> u16 {
    loop {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        if port > 60_000 {
            continue;
        }
        let ok = std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            && UdpSocket::bind(("127.0.0.1", port + 1)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok();
        if ok {
            return port;
        }
    }
}

fn require(bin: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"] {
        let p = Path::new(dir).join(bin);
        if p.exists() {
            return p;
        }
    }
    panic!("{bin} is not installed: run scripts/test.sh, which installs the SIP test peers");
}

/// Ends a whole process group (the shell's `kill` builtin: no procps
/// needed).
fn kill_group(child: &mut Child) {
    let pid = child.id();
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!("kill -9 -{pid} 2>/dev/null"))
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

/// kill -9 of every process whose command line mentions `needle`.
fn kill_matching(needle: &str) {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline"))
            && String::from_utf8_lossy(&cmd).contains(needle)
        {
            pids.push(pid.to_string());
        }
    }
    if !pids.is_empty() {
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -9 {} 2>/dev/null", pids.join(" ")))
            .status();
    }
}

/// A Kamailio registrar/proxy on 127.0.0.1, UDP and TCP.
pub struct Kamailio {
    child: Option<Child>,
    pub port: u16,
    /// SIP over TLS (`start_tls`), on `port + 1`.
    pub tls_port: Option<u16>,
    dir: tempfile::TempDir,
}

impl Kamailio {
    /// `algorithm` is `MD5` or `SHA-256`; `qop` asks for `qop=auth`.
    pub fn start(algorithm: &str, qop: bool) -> Kamailio {
        Self::start_opts(algorithm, qop, false)
    }

    /// With SIP over TLS as well, on `port + 1`, with a self-signed
    /// certificate for 127.0.0.1 (`cert_pem()`).
    pub fn start_tls() -> Kamailio {
        Self::start_opts("MD5", false, true)
    }

    /// The TLS certificate (PEM), for `sip.tls_ca`.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    fn start_opts(algorithm: &str, qop: bool, tls: bool) -> Kamailio {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let tls_cfg = if tls {
            let ck =
                rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
                    .unwrap();
            std::fs::write(dir.path().join("cert.pem"), ck.cert.pem()).unwrap();
            std::fs::write(dir.path().join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
            std::fs::write(
                dir.path().join("tls.cfg"),
                format!(
                    "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\n\
                     private_key = {0}/key.pem\ncertificate = {0}/cert.pem\n\n\
                     [client:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\n",
                    dir.path().display()
                ),
            )
            .unwrap();
            format!(
                "enable_tls=yes\nlisten=tls:127.0.0.1:{}\nloadmodule \"tls.so\"\nmodparam(\"tls\", \"config\", \"{}/tls.cfg\")\n",
                port + 1,
                dir.path().display()
            )
        } else {
            String::new()
        };
        // www_challenge/proxy_challenge: flag 1 asks for qop=auth. The
        // *_authenticate functions take 0: a plain password (1 would mean
        // an HA1 hash).
        let flags = if qop { "1" } else { "0" };
        let cfg = format!(
            r#"#!KAMAILIO
debug=1
log_stderror=yes
children=2
tcp_children=2
auto_aliases=no
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
alias="127.0.0.1:{port}"
{tls_cfg}loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "sanity.so"
loadmodule "auth.so"
loadmodule "kex.so"
loadmodule "ctl.so"
modparam("ctl", "binrpc", "unix:{ctl}")
modparam("usrloc", "db_mode", 0)
modparam("auth", "algorithm", "{algorithm}")
modparam("auth", "secret", "openturret-test")
request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (is_method("OPTIONS") && uri == myself && $rU == $null) {{ sl_send_reply("200", "Keepalive"); exit; }}
    if (has_totag()) {{
        if (loose_route()) {{ t_relay(); exit; }}
        if (is_method("ACK")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    if (is_method("REGISTER")) {{
        if (!pv_www_authenticate("$td", "{PBX_PASSWORD}", "0")) {{ www_challenge("$td", "{flags}"); exit; }}
        if (!save("location")) {{ sl_reply_error(); }}
        exit;
    }}
    if (is_method("INVITE|REFER|MESSAGE")) {{
        if (!pv_proxy_authenticate("$fd", "{PBX_PASSWORD}", "0")) {{ proxy_challenge("$fd", "{flags}"); exit; }}
        consume_credentials();
    }}
    if (is_method("INVITE")) {{ record_route(); }}
    if (!lookup("location")) {{ sl_send_reply("404", "Not Found"); exit; }}
    t_relay();
}}
"#,
            ctl = dir.path().join("ctl.sock").display()
        );
        std::fs::write(dir.path().join("kamailio.cfg"), cfg).unwrap();
        std::fs::create_dir_all(dir.path().join("run")).unwrap();
        let mut k = Kamailio {
            child: None,
            port,
            tls_port: tls.then_some(port + 1),
            dir,
        };
        k.run();
        k
    }

    fn run(&mut self) {
        let bin = require("kamailio");
        let d = self.dir.path();
        let log = std::fs::File::create(d.join("kamailio.log")).unwrap();
        let child = Command::new(bin)
            .arg("-f")
            .arg(d.join("kamailio.cfg"))
            .arg("-P")
            .arg(d.join("run/kam.pid"))
            .arg("-Y")
            .arg(d.join("run"))
            .args(["-DD", "-E"])
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("kamailio starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !options_ok(self.port) {
            assert!(
                Instant::now() < deadline,
                "Kamailio did not come up; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("kamailio.log")).unwrap_or_default()
    }

    /// The registrar's location table as `kamcmd ul.dump` reads it: each
    /// address of record with its contacts.
    pub fn location(&self) -> Vec<(String, Vec<String>)> {
        let out = Command::new(require("kamcmd"))
            .arg("-s")
            .arg(format!(
                "unix:{}",
                self.dir.path().join("ctl.sock").display()
            ))
            .arg("ul.dump")
            .output()
            .expect("kamcmd runs");
        assert!(
            out.status.success(),
            "kamcmd ul.dump: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut table: Vec<(String, Vec<String>)> = Vec::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let line = line.trim();
            if let Some(aor) = line.strip_prefix("AoR:") {
                table.push((aor.trim().to_string(), Vec::new()));
            } else if let Some(c) = line.strip_prefix("Address:")
                && let Some(last) = table.last_mut()
            {
                last.1.push(c.trim().to_string());
            }
        }
        table
    }

    /// kill -9 of every Kamailio process (it puts its workers in a
    /// session of their own, so they are found by their configuration).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_matching(&self.dir.path().join("kamailio.cfg").to_string_lossy());
            kill_group(&mut c);
            let deadline = Instant::now() + Duration::from_secs(5);
            while options_ok(self.port) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Starts it again on the same port, with no registrations.
    pub fn restart(&mut self) {
        self.kill();
        self.run();
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether something on 127.0.0.1:`port` answers a SIP OPTIONS over UDP.
pub fn options_ok(port: u16) -> bool {
    send_udp(port, &options_request(port, "probe")).is_some_and(|r| r.starts_with("SIP/2.0 200"))
}

/// The status line a SIP OPTIONS to `user` at the PBX gets: the PBX
/// relays it to the user's registered contact, or answers 404 itself.
pub fn options_to_user(port: u16, user: &str) -> Option<String> {
    let req = String::from_utf8(options_request(port, &format!("user{user}")))
        .unwrap()
        .replacen(
            &format!("OPTIONS sip:127.0.0.1:{port}"),
            &format!("OPTIONS sip:{user}@127.0.0.1:{port}"),
            1,
        );
    send_udp(port, req.as_bytes()).map(|r| r.lines().next().unwrap_or_default().to_string())
}

pub fn options_request(port: u16, call_id: &str) -> Vec<u8> {
    format!(
        "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;rport;branch=z9hG4bK{call_id}\r\n\
From: <sip:probe@127.0.0.1>;tag=p1\r\nTo: <sip:127.0.0.1:{port}>\r\nCall-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\n\
Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// Sends one datagram and returns the first answer within 500 ms.
pub fn send_udp(port: u16, bytes: &[u8]) -> Option<String> {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s.send_to(bytes, ("127.0.0.1", port)).ok()?;
    let mut buf = [0u8; 65_536];
    let (n, _) = s.recv_from(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// An 8 kHz mono 16-bit WAV of a 440 Hz tone (baresip's audio source).
pub fn tone_wav(path: &Path, seconds: u32) {
    sine_wav(path, 440.0, 8000, seconds);
}

/// A mono 16-bit WAV of a `hz` sine at `rate` samples per second.
pub fn sine_wav(path: &Path, hz: f64, rate: u32, seconds: u32) {
    let samples = rate * seconds;
    let mut b = Vec::with_capacity(44 + samples as usize * 2);
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + samples * 2).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes()); // PCM
    b.extend_from_slice(&1u16.to_le_bytes()); // mono
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&(rate * 2).to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&(samples * 2).to_le_bytes());
    for i in 0..samples {
        let v = (8000.0 * (2.0 * std::f64::consts::PI * hz * i as f64 / rate as f64).sin()) as i16;
        b.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, b).unwrap();
}

/// The samples (as -1..1) and rate of a 16-bit mono WAV, read up to the
/// end of the file whatever its header says (a file still being written).
pub fn read_wav(path: &Path) -> (Vec<f64>, u32) {
    let b = std::fs::read(path).unwrap();
    assert!(
        b.len() >= 44 && &b[..4] == b"RIFF",
        "{} is not a WAV",
        path.display()
    );
    let rate = u32::from_le_bytes(b[24..28].try_into().unwrap());
    // Find the data chunk.
    let mut at = 12;
    while at + 8 <= b.len() && &b[at..at + 4] != b"data" {
        let len = u32::from_le_bytes(b[at + 4..at + 8].try_into().unwrap()) as usize;
        at += 8 + len;
    }
    let data = &b[(at + 8).min(b.len())..];
    let samples = data
        .chunks_exact(2)
        .map(|c| f64::from(i16::from_le_bytes([c[0], c[1]])) / 32768.0)
        .collect();
    (samples, rate)
}

/// The power of `hz` in `samples` (a Goertzel filter), normalised so that
/// a full-scale sine gives about 0.25.
pub fn goertzel(samples: &[f64], rate: u32, hz: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * hz / f64::from(rate);
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for x in samples {
        let s0 = x + c * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let p = s1 * s1 + s2 * s2 - c * s1 * s2;
    p / (samples.len() as f64).powi(2)
}

/// Whether `hz` stands out in `samples`: its power is well above the
/// power a little way off on both sides, and not negligible.
pub fn hears(samples: &[f64], rate: u32, hz: f64) -> bool {
    let p = goertzel(samples, rate, hz);
    let off = goertzel(samples, rate, hz * 0.8).max(goertzel(samples, rate, hz * 1.25));
    p > 1e-5 && p > 20.0 * off
}

/// How a test's baresip is set up.
pub struct BaresipOpts {
    /// The tone it plays into calls (8 kHz).
    pub tone_hz: f64,
    /// Its only codec, "PCMU" or "PCMA" (both when empty).
    pub codec: &'static str,
    /// Record what it hears and sends (the `sndfile` module).
    pub record: bool,
    /// SRTP only (SDES keys; the `srtp` module, `mediaenc=srtp-mand`).
    pub srtp: bool,
}

impl Default for BaresipOpts {
    fn default() -> Self {
        BaresipOpts {
            tone_hz: 440.0,
            codec: "",
            record: false,
            srtp: false,
        }
    }
}

/// A baresip softphone registered on the test PBX.
pub struct Baresip {
    child: Child,
    ctrl: TcpStream,
    events: Arc<Mutex<Vec<Value>>>,
    pub user: String,
    dir: tempfile::TempDir,
}

impl Baresip {
    /// Starts baresip as `user` on the PBX at `pbx_port`; `auto_answer`
    /// answers incoming calls at once. Waits for its registration.
    pub fn start(user: &str, pbx_port: u16, auto_answer: bool) -> Baresip {
        Baresip::start_with(user, pbx_port, auto_answer, BaresipOpts::default())
    }

    pub fn start_with(user: &str, pbx_port: u16, auto_answer: bool, opts: BaresipOpts) -> Baresip {
        let bin = require("baresip");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        sine_wav(&d.join("in.wav"), opts.tone_hz, 8000, 120);
        let record = if opts.record {
            std::fs::create_dir_all(d.join("rec")).unwrap();
            format!("module sndfile.so\nsnd_path {}/rec\n", d.display())
        } else {
            String::new()
        };
        let codecs = if opts.codec.is_empty() {
            "PCMU,PCMA"
        } else {
            opts.codec
        };
        let (srtp_module, mediaenc) = if opts.srtp {
            ("module srtp.so\n", ";mediaenc=srtp-mand")
        } else {
            ("", "")
        };
        let port = free_port();
        let ctrl_port = free_port();
        std::fs::write(
            d.join("config"),
            format!(
                "poll_method epoll\nsip_listen 127.0.0.1:{port}\n\
                 audio_source aufile,{0}/in.wav\naudio_player aufile,{0}/out.wav\naudio_alert aufile,{0}/in.wav\n\
                 module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule aufile.so\n\
                 module_app account.so\nmodule_app menu.so\nmodule_app ctrl_tcp.so\n\
                 ctrl_tcp_listen 127.0.0.1:{ctrl_port}\n{record}{srtp_module}",
                d.display()
            ),
        )
        .unwrap();
        let mode = if auto_answer { "auto" } else { "manual" };
        std::fs::write(
            d.join("accounts"),
            format!(
                "<sip:{user}@127.0.0.1:{pbx_port};transport=udp>;auth_pass={PBX_PASSWORD};answermode={mode};audio_codecs={codecs}{mediaenc}\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(d.join("baresip.log")).unwrap();
        let child = Command::new(bin)
            .arg("-f")
            .arg(d)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("baresip starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        let ctrl = loop {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", ctrl_port)) {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "baresip's ctrl_tcp never listened"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let mut reader = ctrl.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut buf: Vec<u8> = Vec::new();
            let mut chunk = [0u8; 4096];
            while let Ok(n) = reader.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                // Netstrings: LEN ":" JSON ","
                while let Some(colon) = buf.iter().position(|b| *b == b':') {
                    let Ok(len) = std::str::from_utf8(&buf[..colon])
                        .unwrap_or("x")
                        .parse::<usize>()
                    else {
                        buf.clear();
                        break;
                    };
                    if buf.len() < colon + 1 + len + 1 {
                        break;
                    }
                    let body = buf[colon + 1..colon + 1 + len].to_vec();
                    buf.drain(..colon + 1 + len + 1);
                    if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                        sink.lock().unwrap().push(v);
                    }
                }
            }
        });
        let mut b = Baresip {
            child,
            ctrl,
            events,
            user: user.to_string(),
            dir,
        };
        b.wait_registered();
        b
    }

    fn wait_registered(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.command("reginfo", "");
            if v["data"].as_str().is_some_and(|d| d.contains("OK")) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "baresip {} did not register: {v}\n{}",
                self.user,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("baresip.log")).unwrap_or_default()
    }

    /// The recordings and their sizes.
    pub fn recordings(&self) -> Vec<(String, u64)> {
        std::fs::read_dir(self.dir.path().join("rec"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| {
                        let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                        (e.file_name().to_string_lossy().into_owned(), len)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// What baresip heard in its calls so far (the `sndfile` recording of
    /// what it decoded), as samples and their rate.
    pub fn heard(&self) -> (Vec<f64>, u32) {
        let dir = self.dir.path().join("rec");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("no recordings in {}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().ends_with("-dec.wav"))
            .collect();
        files.sort();
        let last = files
            .last()
            .unwrap_or_else(|| panic!("baresip recorded nothing\n{}", self.log()));
        read_wav(last)
    }

    /// Runs a ctrl_tcp command and returns its response.
    pub fn command(&mut self, command: &str, params: &str) -> Value {
        let token = format!("t{}", Instant::now().elapsed().as_nanos());
        let j = json!({"command": command, "params": params, "token": token}).to_string();
        self.ctrl
            .write_all(format!("{}:{j},", j.len()).as_bytes())
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(v) = self
                .events
                .lock()
                .unwrap()
                .iter()
                .find(|v| v["response"] == json!(true) && v["token"] == json!(token))
            {
                return v.clone();
            }
            assert!(
                Instant::now() < deadline,
                "baresip did not answer {command}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for an event of `kind` (such as `CALL_ESTABLISHED`) that
    /// arrived after `since` events; returns it and the new count.
    pub fn wait_event(&self, kind: &str, since: usize, wait: Duration) -> (Value, usize) {
        let deadline = Instant::now() + wait;
        loop {
            {
                let ev = self.events.lock().unwrap();
                if let Some((i, v)) = ev
                    .iter()
                    .enumerate()
                    .skip(since)
                    .find(|(_, v)| v["event"] == json!(true) && v["type"] == json!(kind))
                {
                    return (v.clone(), i + 1);
                }
            }
            assert!(
                Instant::now() < deadline,
                "baresip {}: no {kind} event; events: {:?}\nlog:\n{}",
                self.user,
                self.events.lock().unwrap(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The types of the events that arrived after `since` events.
    pub fn event_types_since(&self, since: usize) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .skip(since)
            .filter(|v| v["event"] == json!(true))
            .map(|v| v["type"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Every event of `kind` so far.
    pub fn events_of(&self, kind: &str) -> Vec<Value> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|v| v["event"] == json!(true) && v["type"] == json!(kind))
            .cloned()
            .collect()
    }

    pub fn event_count(&self) -> usize {
        self.events.lock().unwrap().len()
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

/// sipp running one scenario to its end (`-m 1`), from Debian's
/// `sip-tester`. Its messages are logged beside the scenario, for the
/// failure message.
pub struct Sipp {
    child: Option<Child>,
    dir: PathBuf,
}

impl Sipp {
    /// Starts `scenario` (XML) with `args` (the remote host last, for a
    /// client scenario) in `dir`.
    pub fn start(dir: &Path, name: &str, scenario: &str, args: &[&str]) -> Sipp {
        let sipp = require("sipp");
        std::fs::create_dir_all(dir).unwrap();
        let file = dir.join(format!("{name}.xml"));
        std::fs::write(&file, scenario).unwrap();
        let child = Command::new(sipp)
            .current_dir(dir)
            .arg("-sf")
            .arg(&file)
            .args(["-m", "1", "-nostdin", "-trace_msg", "-trace_err"])
            .arg("-message_file")
            .arg(dir.join(format!("{name}.messages")))
            .arg("-error_file")
            .arg(dir.join(format!("{name}.errors")))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("sipp starts");
        Sipp {
            child: Some(child),
            dir: dir.to_path_buf(),
        }
    }

    /// What it sent and received, and its errors.
    pub fn log(&self) -> String {
        let mut out = String::new();
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let p = entry.path();
            if matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("messages" | "errors")
            ) {
                out += &format!("--- {}\n", p.display());
                out += &std::fs::read_to_string(&p).unwrap_or_default();
            }
        }
        out
    }

    /// Waits for the scenario's end; true when it completed (sipp's exit
    /// status 0: every call of it succeeded).
    pub fn wait(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let child = self.child.as_mut().unwrap();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status.success();
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_group(&mut c);
        }
    }
}

/// `seconds` of a sine of `hz` as raw G.711 μ-law at 8 kHz (what sipp's
/// `rtp_stream` plays with payload type 0).
pub fn sine_ulaw(path: &Path, hz: f64, seconds: u32) {
    let bytes: Vec<u8> = (0..8000 * seconds)
        .map(|i| {
            let x = (2.0 * std::f64::consts::PI * hz * f64::from(i) / 8000.0).sin();
            openturret_sip::g711::encode(openturret_sip::sdp::Codec::Pcmu, (x * 8000.0) as i16)
        })
        .collect();
    std::fs::write(path, bytes).unwrap();
}
