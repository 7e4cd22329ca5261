//! The voice bridge against a plain UDP relay (issue 17).
//!
//! `cargo bench -p openturret-mlc --bench voice` (`BENCH_CALLS=N`,
//! `BENCH_SECONDS=N`, `BENCH_PIN=0` to let both processes share both
//! cores instead of one core each).
//!
//! Two processes: this one is the system under test, and it runs itself a
//! second time as the load generator (`VOICE_BENCH_ROLE=load`), which plays
//! both the PBXs (G.711 RTP at 50 packets/s per call) and the browsers
//! (str0m: ICE, DTLS-SRTP, sending 50 packets/s back). Per call, the system
//! under test runs what the MLC runs: an RTP socket whose receive loop hands
//! packets to the call's `voice::Bridge`, the bridge's browser session
//! (str0m), and a 20 ms tick that pulls the jitter buffer towards the PBX.
//! The baseline relays the same two flows per call between plain UDP
//! sockets. The load generator measures loss and the one-way latency
//! PBX → browser (sent → arrived at the browser's socket, by the kernel's
//! stamp, and only counted once decrypted); this process
//! measures its own CPU time. Phase 1: one call, 200 packets/s, for the
//! latency; phase 2: `BENCH_CALLS` calls (default 500) at 50 packets/s.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openturret_mlc::voice::{Place, Voices, attach};
use openturret_mlc::{Endpoint, parse_rtp};
use openturret_sip::sdp::Codec;
use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;

const LOCAL: &str = "127.0.0.1";

fn main() {
    if std::env::var("VOICE_BENCH_ROLE").as_deref() == Ok("load") {
        return load();
    }
    // Each process gets a core of its own (taskset; BENCH_PIN=0 shares
    // both), so the load generator's half of the cryptography, which a
    // deployment's browsers and PBXs do on their own machines, does not
    // queue behind ours. Pinned before any runtime starts, so that each
    // runtime has as many workers as its process has cores (two workers
    // taking turns on one core add the scheduler's time slices to the
    // tail of both paths).
    if pinned() {
        let _ = std::process::Command::new("taskset")
            .args(["-a", "-p", "-c", "0", &std::process::id().to_string()])
            .stdout(std::process::Stdio::null())
            .status();
    }
    let calls: usize = env("BENCH_CALLS", 500);
    let seconds: u64 = env("BENCH_SECONDS", 10);
    println!("voice bridge against a plain UDP relay (two processes; this one is measured)");
    for (title, n, pps, secs) in [
        ("latency, 1 call at 200 packets/s", 1usize, 200u64, 5u64),
        ("load, calls at 50 packets/s each way", calls, 50, seconds),
    ] {
        println!("\n{title}: {n} call(s), {secs} s");
        println!(
            "| path | sent | received | loss | p50 | p99 | CPU of this process | CPU per call | load generator: CPU, sends late p99 |"
        );
        println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        for mode in ["relay", "bridge"] {
            let r = run(mode, n, pps, secs);
            println!(
                "| {} | {} | {} | {:.3} % | {:.3} ms | {:.3} ms | {:.1} % of a core | {:.3} % of a core | {:.0} %, {:.3} ms |",
                if mode == "relay" {
                    "plain UDP relay"
                } else {
                    "voice bridge"
                },
                r.sent,
                r.received,
                100.0 * (r.sent.saturating_sub(r.received)) as f64 / r.sent.max(1) as f64,
                r.p50_us / 1000.0,
                r.p99_us / 1000.0,
                r.cpu * 100.0,
                r.cpu * 100.0 / n as f64,
                r.load_cpu * 100.0,
                r.late_p99_us / 1000.0,
            );
        }
    }
}

fn pinned() -> bool {
    std::env::var("BENCH_PIN").as_deref() != Ok("0")
}

/// A runtime with one worker per core this process may run on.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// This process's CPU time (user + system), in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

struct Outcome {
    sent: u64,
    received: u64,
    p50_us: f64,
    p99_us: f64,
    /// How late the load generator's PBX sends left, p99: above a
    /// millisecond or so the generator, not the path, shapes the tail.
    late_p99_us: f64,
    /// The load generator's CPU, as a share of its core.
    load_cpu: f64,
    cpu: f64,
}

/// One phase in one mode: starts the load generator, sets up `n` calls,
/// lets it run, and reads its result.
fn run(mode: &str, n: usize, pps: u64, secs: u64) -> Outcome {
    let rt = runtime();
    let mut cmd = if pinned() {
        let mut c = std::process::Command::new("taskset");
        c.args(["-c", "1"]).arg(std::env::current_exe().unwrap());
        c
    } else {
        std::process::Command::new(std::env::current_exe().unwrap())
    };
    let mut child = cmd
        .env("VOICE_BENCH_ROLE", "load")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut to = child.stdin.take().unwrap();
    let mut from = BufReader::new(child.stdout.take().unwrap());
    writeln!(to, "{mode} {n} {pps} {secs}").unwrap();
    let voices = Arc::new(Voices::default());
    let mut line = String::new();
    let mut cpu0 = 0.0;
    let mut result = None;
    while {
        line.clear();
        from.read_line(&mut line).unwrap() > 0
    } {
        let f: Vec<&str> = line.trim_end().splitn(4, ' ').collect();
        match f[0] {
            // A call: where the PBX and the browser receive; for the
            // bridge, the browser's offer. We answer with where to send.
            "CALL" => {
                let i: u64 = f[1].parse().unwrap();
                let pbx: SocketAddr = f[2].parse().unwrap();
                let (a, b) = rt.block_on(async {
                    if mode == "relay" {
                        let browser: SocketAddr = f[3].parse().unwrap();
                        let a = relay(browser).await;
                        let b = relay(pbx).await;
                        (a.to_string(), b.to_string())
                    } else {
                        let offer = f[3].replace('|', "\r\n");
                        let (anchor, answer) = bridge(&voices, i, pbx, &offer).await;
                        (anchor.to_string(), answer.replace("\r\n", "|"))
                    }
                });
                writeln!(to, "{a} {b}").unwrap();
            }
            "GO" => cpu0 = cpu_seconds(),
            "DONE" => {
                let cpu = (cpu_seconds() - cpu0) / secs as f64;
                let rest: Vec<f64> = f[3].split(' ').map(|v| v.parse().unwrap()).collect();
                result = Some(Outcome {
                    sent: f[1].parse().unwrap(),
                    received: f[2].parse().unwrap(),
                    p50_us: rest[0],
                    p99_us: rest[1],
                    late_p99_us: rest[2],
                    load_cpu: rest[3],
                    cpu,
                });
                break;
            }
            _ => {}
        }
    }
    let _ = child.wait();
    rt.shutdown_timeout(Duration::from_millis(100));
    result.expect("the load generator reported")
}

/// A plain relay: what arrives at a new socket goes to `to`.
async fn relay(to: SocketAddr) -> SocketAddr {
    let s = UdpSocket::bind((LOCAL, 0)).await.unwrap();
    let at = s.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, _)) = s.recv_from(&mut buf).await {
            let _ = s.send_to(&buf[..n], to).await;
        }
    });
    at
}

/// What the MLC runs for a call: an RTP socket whose packets go to the
/// bridge, a 20 ms tick that sends the bridge's frames to the PBX, and the
/// browser session. Returns the RTP socket's address and the SDP answer.
async fn bridge(voices: &Voices, call: u64, pbx: SocketAddr, offer: &str) -> (SocketAddr, String) {
    let b = voices.bridge(call);
    let local: IpAddr = LOCAL.parse().unwrap();
    let answer = attach(
        voices,
        call,
        Codec::Pcmu,
        offer,
        Place {
            bind: local,
            advertise: local,
            ports: (0, 0),
        },
    )
    .await
    .unwrap();
    let s = Arc::new(UdpSocket::bind((LOCAL, 0)).await.unwrap());
    let at = s.local_addr().unwrap();
    let (rx, bb) = (s.clone(), b.clone());
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, _)) = rx.recv_from(&mut buf).await {
            if let Some(p) = parse_rtp(&buf[..n]) {
                bb.heard(&p);
            }
        }
    });
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let mut p = vec![0x80u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
        p.resize(12 + 160, 0);
        let mut seq: u16 = 0;
        loop {
            tick.tick().await;
            seq = seq.wrapping_add(1);
            p[2..4].copy_from_slice(&seq.to_be_bytes());
            b.next_frame(Codec::Pcmu, &mut p[12..]);
            let _ = s.send_to(&p, pbx).await;
        }
    });
    (at, answer)
}

// ----- the load generator ---------------------------------------------------

fn load() {
    runtime().block_on(load_async());
}

async fn load_async() {
    let mut input = BufReader::new(std::io::stdin());
    let mut line = String::new();
    input.read_line(&mut line).unwrap();
    let f: Vec<String> = line.split_whitespace().map(str::to_string).collect();
    let (mode, n, pps, secs) = (
        f[0].clone(),
        f[1].parse::<usize>().unwrap(),
        f[2].parse::<u64>().unwrap(),
        f[3].parse::<u64>().unwrap(),
    );
    let start = Instant::now();
    let sent_at: Arc<Vec<Mutex<Vec<u64>>>> =
        Arc::new((0..n).map(|_| Mutex::new(Vec::new())).collect());
    let latencies = Arc::new(Mutex::new(Vec::<u64>::new()));
    let received = Arc::new(AtomicU64::new(0));
    let connected = Arc::new(AtomicU64::new(0));
    let mut targets = Vec::new();
    for i in 0..n {
        // The PBX's receiving socket (counts what the bridge sends back).
        let pbx = UdpSocket::bind((LOCAL, 0)).await.unwrap();
        let pbx_at = pbx.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            while pbx.recv_from(&mut buf).await.is_ok() {}
        });
        let browser = UdpSocket::bind((LOCAL, 0)).await.unwrap();
        stamp_arrivals(&browser);
        let browser_at = browser.local_addr().unwrap();
        let (sent, lat, recv) = (sent_at.clone(), latencies.clone(), received.clone());
        if mode == "relay" {
            println!("CALL {i} {pbx_at} {browser_at}");
            let reply = read(&mut input);
            let (to_pbx_side, to_browser_side) = split2(&reply);
            targets.push((to_pbx_side, Some(to_browser_side)));
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                while let Ok((n, _, arrived)) = recv_stamped(&browser, &mut buf).await {
                    if n >= 20 {
                        let k = u64::from_be_bytes(buf[12..20].try_into().unwrap());
                        let t0 = sent[i].lock().unwrap().get(k as usize).copied();
                        if let Some(t0) = t0 {
                            lat.lock().unwrap().push(micros(start, arrived) - t0);
                            recv.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
            connected.fetch_add(1, Ordering::Relaxed);
        } else {
            let mut rtc = Rtc::builder()
                .set_rtp_mode(true)
                .clear_codecs()
                .enable_pcmu(true, false)
                .build(Instant::now());
            rtc.add_local_candidate(Candidate::host(browser_at, "udp").unwrap());
            let mut api = rtc.sdp_api();
            let mid = api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
            let (offer, pending) = api.apply().unwrap();
            println!(
                "CALL {i} {pbx_at} {}",
                offer.to_sdp_string().replace("\r\n", "|")
            );
            let reply = read(&mut input);
            let (anchor, answer) = split2(&reply);
            let answer = SdpAnswer::from_sdp_string(&answer.replace('|', "\r\n")).unwrap();
            rtc.sdp_api().accept_answer(pending, answer).unwrap();
            targets.push((anchor, None));
            let conn = connected.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 2048];
                let mut tick = tokio::time::interval(Duration::from_millis(20));
                let mut seq: u64 = 1;
                let mut first: Option<u64> = None;
                let mut up = false;
                loop {
                    let timeout = loop {
                        match rtc.poll_output() {
                            Ok(Output::Timeout(t)) => break t,
                            Ok(Output::Transmit(t)) => {
                                let _ = browser.send_to(&t.contents, t.destination).await;
                            }
                            Ok(Output::Event(Event::Connected)) => {
                                up = true;
                                conn.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(Output::Event(Event::RtpPacket(p))) => {
                                let s = *p.seq_no;
                                let f0 = *first.get_or_insert(s);
                                let k = (s - f0) as usize;
                                let t0 = sent[i].lock().unwrap().get(k).copied();
                                if let Some(t0) = t0 {
                                    // When the datagram reached the socket.
                                    lat.lock().unwrap().push(micros(start, p.timestamp) - t0);
                                    recv.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            Ok(Output::Event(_)) => {}
                            Err(_) => return,
                        }
                    };
                    let wait = timeout.saturating_duration_since(Instant::now());
                    if wait.is_zero() {
                        let _ = rtc.handle_input(Input::Timeout(Instant::now()));
                        continue;
                    }
                    let input = tokio::select! {
                        r = recv_stamped(&browser, &mut buf) => {
                            let Ok((n, from, arrived)) = r else { continue };
                            let Ok(r) = Receive::new(Protocol::Udp, from, browser_at, &buf[..n]) else { continue };
                            Input::Receive(arrived, r)
                        }
                        _ = tick.tick() => {
                            // The browser's microphone, 50 packets/s.
                            if up && let Some(tx) = rtc.direct_api().stream_tx_by_mid(mid, None) {
                                tx.write_rtp(RtpWrite::new(Pt::from(0), seq.into(), (seq * 160) as u32, Instant::now(), vec![0x55u8; 160]));
                                seq += 1;
                            }
                            continue;
                        }
                        _ = tokio::time::sleep(wait) => Input::Timeout(Instant::now()),
                    };
                    let _ = rtc.handle_input(input);
                }
            });
        }
    }
    // Every browser connected, then go.
    let deadline = Instant::now() + Duration::from_secs(60);
    while (connected.load(Ordering::Relaxed) as usize) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    println!("GO");
    let (setup, cpu0) = (start.elapsed().as_secs_f64(), cpu_seconds());
    let total = pps * secs;
    let mut senders = Vec::new();
    let lateness = Arc::new(Mutex::new(Vec::<u64>::new()));
    let first_tick = tokio::time::Instant::now() + Duration::from_millis(20);
    for (i, (pbx_side, browser_side)) in targets.into_iter().enumerate() {
        let sent = sent_at.clone();
        let lateness = lateness.clone();
        senders.push(tokio::spawn(async move {
            let s = UdpSocket::bind((LOCAL, 0)).await.unwrap();
            let to: SocketAddr = pbx_side.parse().unwrap();
            let back: Option<SocketAddr> = browser_side.map(|b| b.parse().unwrap());
            // Spread the calls over a packet time, as independent PBX
            // calls are: each sender's clock starts at its own offset.
            let period = Duration::from_micros(1_000_000 / pps);
            let offset = Duration::from_micros((i as u64 * 997) % (1_000_000 / pps));
            let mut tick = tokio::time::interval_at(first_tick + offset, period);
            let mut p = vec![0x80u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
            p.resize(12 + 160, 0xFF);
            for k in 0..total {
                let due = tick.tick().await;
                let late = due.elapsed().as_micros() as u64;
                lateness.lock().unwrap().push(late);
                p[2..4].copy_from_slice(&(k as u16).to_be_bytes());
                p[4..8].copy_from_slice(&((k * 160) as u32).to_be_bytes());
                p[12..20].copy_from_slice(&k.to_be_bytes());
                sent[i].lock().unwrap().push(micros(start, Instant::now()));
                let _ = s.send_to(&p, to).await;
                if let Some(b) = back {
                    // The relay's other direction: the "browser" sends too.
                    let _ = s.send_to(&p, b).await;
                }
            }
        }));
    }
    for s in senders {
        let _ = s.await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu = (cpu_seconds() - cpu0) / (start.elapsed().as_secs_f64() - setup);
    let l = latencies.lock().unwrap().clone();
    let late = lateness.lock().unwrap().clone();
    println!(
        "DONE {} {} {} {} {} {:.3}",
        total * n as u64,
        received.load(Ordering::Relaxed),
        quantile(l.clone(), 0.5),
        quantile(l, 0.99),
        quantile(late, 0.99),
        cpu,
    );
    std::io::stdout().flush().unwrap();
}

fn quantile(mut v: Vec<u64>, f: f64) -> u64 {
    v.sort_unstable();
    v.get(((v.len() as f64 * f) as usize).min(v.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0)
}

fn micros(start: Instant, t: Instant) -> u64 {
    t.saturating_duration_since(start).as_micros() as u64
}

/// Has the kernel stamp each datagram with its arrival time
/// (`SO_TIMESTAMPNS`), so that the latency measured ends where the packet
/// reached the browser's socket, not where this busy process got round to
/// reading it.
fn stamp_arrivals(s: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: a valid socket and an int option of the right size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "SO_TIMESTAMPNS: {}", std::io::Error::last_os_error());
}

/// One datagram, its source and the instant it reached the socket (the
/// kernel's stamp, carried over from the realtime clock).
async fn recv_stamped(
    s: &UdpSocket,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr, Instant)> {
    use std::os::fd::AsRawFd;
    loop {
        s.readable().await?;
        match s.try_io(tokio::io::Interest::READABLE, || {
            recvmsg_stamped(s.as_raw_fd(), buf)
        }) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            r => return r,
        }
    }
}

fn recvmsg_stamped(fd: i32, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr, Instant)> {
    // SAFETY: every pointer handed to recvmsg is to a live local of the
    // size given; the control messages are read within `control`.
    unsafe {
        let mut from: libc::sockaddr_in = std::mem::zeroed();
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut control = [0u64; 16];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = (&mut from as *mut libc::sockaddr_in).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of_val(&control) as _;
        let n = libc::recvmsg(fd, &mut msg, 0);
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let now = Instant::now();
        let real_now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let mut arrived = now;
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                let stamp = Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
                arrived = now - real_now.saturating_sub(stamp);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        let ip = std::net::Ipv4Addr::from(u32::from_be(from.sin_addr.s_addr));
        Ok((
            n as usize,
            SocketAddr::from((ip, u16::from_be(from.sin_port))),
            arrived,
        ))
    }
}

fn read(input: &mut impl BufRead) -> String {
    let mut s = String::new();
    input.read_line(&mut s).unwrap();
    s.trim_end().to_string()
}

fn split2(s: &str) -> (String, String) {
    let (a, b) = s.split_once(' ').unwrap();
    (a.to_string(), b.to_string())
}
