//! A browser session end to end inside the crate: str0m plays the browser
//! (ICE, DTLS-SRTP over real UDP on loopback), the test plays the PBX side
//! of the bridge.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openturret_sip::sdp::Codec;
use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;

use super::{Place, Voices, attach};
use crate::rtp::Endpoint;

/// What the fake browser heard: payload bytes' first values, in order.
#[derive(Default)]
struct Heard {
    first_bytes: Mutex<Vec<u8>>,
    connected: AtomicU64,
}

/// Runs the fake browser: sends a 20 ms frame of `byte` every tick once
/// connected, and records what arrives.
async fn browser(mut rtc: Rtc, socket: UdpSocket, mid: Mid, byte: u8, heard: Arc<Heard>) {
    let local = socket.local_addr().unwrap();
    let mut buf = vec![0u8; 2048];
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut seq: u64 = 1;
    loop {
        let timeout = loop {
            match rtc.poll_output() {
                Ok(Output::Timeout(t)) => break t,
                Ok(Output::Transmit(t)) => {
                    let _ = socket.send_to(&t.contents, t.destination).await;
                }
                Ok(Output::Event(Event::Connected)) => {
                    heard.connected.store(1, Ordering::SeqCst);
                }
                Ok(Output::Event(Event::RtpPacket(p))) => {
                    heard.first_bytes.lock().unwrap().push(p.payload[0]);
                }
                Ok(Output::Event(_)) => {}
                Err(_) => return,
            }
        };
        let wait = timeout.saturating_duration_since(Instant::now());
        let input = tokio::select! {
            r = socket.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { continue };
                let Ok(r) = Receive::new(Protocol::Udp, from, local, &buf[..n]) else { continue };
                Input::Receive(Instant::now(), r)
            }
            _ = tick.tick() => {
                if heard.connected.load(Ordering::SeqCst) == 1
                    && let Some(tx) = rtc.direct_api().stream_tx_by_mid(mid, None)
                {
                    tx.write_rtp(RtpWrite::new(
                        Pt::from(0),
                        seq.into(),
                        (seq * 160) as u32,
                        Instant::now(),
                        vec![byte; 160],
                    ));
                    seq += 1;
                }
                continue;
            }
            _ = tokio::time::sleep(wait) => Input::Timeout(Instant::now()),
        };
        let _ = rtc.handle_input(input);
    }
}

/// The port of the host candidate in an SDP answer.
fn candidate_port(sdp: &str) -> u16 {
    let line = sdp
        .lines()
        .find(|l| l.starts_with("a=candidate:"))
        .expect("a candidate");
    let f: Vec<&str> = line.split_whitespace().collect();
    f[5].parse().unwrap()
}

#[tokio::test]
async fn a_browser_session_carries_audio_both_ways_and_shrugs_off_hostile_packets() {
    let voices = Voices::default();
    let bridge = voices.bridge(1);
    let mut rtc = Rtc::builder()
        .set_rtp_mode(true)
        .set_crypto_provider(super::session::provider())
        .clear_codecs()
        .enable_pcmu(true, false)
        .build(Instant::now());
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    rtc.add_local_candidate(Candidate::host(socket.local_addr().unwrap(), "udp").unwrap());
    let mut api = rtc.sdp_api();
    let mid = api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    let (offer, pending) = api.apply().unwrap();
    let local: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let place = || Place {
        bind: local,
        advertise: local,
        ports: (0, 0),
    };
    // Not an offer at all; an offer in the wrong codec: refused, no session.
    let e = attach(&voices, 1, Codec::Pcmu, "hello", place())
        .await
        .unwrap_err();
    assert_eq!(e.code, "invalid");
    let e = attach(&voices, 2, Codec::Pcmu, &offer.to_sdp_string(), place())
        .await
        .unwrap_err();
    assert_eq!(e.code, "not_found", "no bridge for call 2");
    let e = attach(&voices, 1, Codec::Pcma, &offer.to_sdp_string(), place())
        .await
        .unwrap_err();
    assert_eq!(e.code, "no_common_codec");
    assert_eq!(voices.sessions(), 0);

    let answer = attach(&voices, 1, Codec::Pcmu, &offer.to_sdp_string(), place())
        .await
        .unwrap();
    assert!(
        answer.contains("PCMU/8000") && !answer.contains("opus"),
        "{answer}"
    );
    let ours = SocketAddr::new(local, candidate_port(&answer));
    rtc.sdp_api()
        .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
        .unwrap();
    let heard = Arc::new(Heard::default());
    let task = tokio::spawn(browser(rtc, socket, mid, 0x22, heard.clone()));

    // The PBX side: a frame of 0x11 every 20 ms into the bridge, and the
    // bridge's frames out, as the RTP anchor would.
    let pbx = {
        let bridge = bridge.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut seq: u16 = 100;
            loop {
                tick.tick().await;
                let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];
                p[2..4].copy_from_slice(&seq.to_be_bytes());
                p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
                p.extend_from_slice(&[0x11; 160]);
                bridge.heard(&crate::rtp::parse(&p).unwrap());
                seq = seq.wrapping_add(1);
                let mut frame = [0u8; 160];
                bridge.next_frame(Codec::Pcmu, &mut frame);
            }
        })
    };
    let flows = |heard: Arc<Heard>| async move {
        let deadline = Instant::now() + Duration::from_secs(10);
        let start = heard.first_bytes.lock().unwrap().len();
        loop {
            let got = heard.first_bytes.lock().unwrap()[start..]
                .iter()
                .filter(|b| **b == 0x11)
                .count();
            if got >= 10 {
                return;
            }
            assert!(Instant::now() < deadline, "the browser hears nothing");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    flows(heard.clone()).await;
    assert_eq!(voices.sessions(), 1);

    // Hostile packets at the session's port, of every kind str0m
    // demultiplexes, and none: nothing changes.
    let evil = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut packets: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42], // truncated STUN
        vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1, 0, 200], // DTLS, lying length
        vec![0x80, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7],       // RTP, no auth tag
        vec![0x80, 200, 0, 6, 1, 2, 3, 4],                    // RTCP SR, cut short
    ];
    let mut stun = vec![0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42];
    stun.extend_from_slice(&[7; 12]);
    stun.extend_from_slice(&[0x00, 0x06, 0x00, 0x04, b'x', b':', b'y', b'z']); // USERNAME, no integrity
    packets.push(stun);
    for _ in 0..500 {
        let len = (next() % 1400) as usize;
        let mut p: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if let Some(first) = p.first_mut() {
            // Steer a share into each range str0m tells apart.
            *first =
                [0u8, 1, 20, 22, 23, 128, 0x80, 0xbf, 200][(next() % 9) as usize].max(*first % 4);
        }
        packets.push(p);
    }
    for p in &packets {
        evil.send_to(p, ours).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(voices.sessions(), 1, "the session survived");
    flows(heard.clone()).await;

    // And the PBX side gets the browser's frames (0x22) through the
    // jitter buffer (pulled here now, as the anchor's tick would).
    pbx.abort();
    let mut frame = [0u8; 160];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        bridge.next_frame(Codec::Pcmu, &mut frame);
        if frame[0] == 0x22 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the PBX side never got the browser's audio"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The call ends: the session with it.
    voices.remove(1);
    let deadline = Instant::now() + Duration::from_secs(5);
    while voices.sessions() != 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort();
}
