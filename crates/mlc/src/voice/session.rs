//! The browser side of one call's voice: str0m (sans-IO ICE, DTLS-SRTP and
//! SRTP) driven by one task over one UDP socket.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use openturret_sip::sdp::Codec;
use str0m::change::SdpOffer;
use str0m::crypto::CryptoProvider;
use str0m::media::{MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use super::{Bridge, Frame};
use crate::call::{OpError, op_err};

/// A session whose ICE and DTLS are not up by then is given up.
const CONNECT_WITHIN: Duration = Duration::from_secs(30);

pub(super) fn provider() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(str0m::crypto::from_feature_flags()))
        .clone()
}

/// The codec's name in SDP.
fn encoding(codec: Codec) -> &'static str {
    match codec {
        Codec::Pcmu => "PCMU/8000",
        Codec::Pcma => "PCMA/8000",
    }
}

/// Accepts a browser's offer with `codec` only, our host candidate at
/// `at`; returns the session and its SDP answer.
pub(super) fn answer(offer: &str, codec: Codec, at: SocketAddr) -> Result<(Rtc, String), OpError> {
    let offer = SdpOffer::from_sdp_string(offer)
        .map_err(|e| op_err("invalid", format!("the audio offer is not valid SDP: {e}")))?;
    // ICE-lite (RFC 8445 §2.5): the MLC has an address the turrets reach
    // (`media.address`, or `media.public_address` through a 1:1 NAT); the
    // browser checks it, we answer. Nothing is sent to a browser address
    // that did not first reach us.
    // No RTP header extensions: audio relayed at 50 packets/s needs no
    // transport-wide congestion feedback or send times, and each costs
    // work per packet both ways.
    let config = Rtc::builder()
        .set_ice_lite(true)
        .set_rtp_mode(true)
        .set_crypto_provider(provider())
        .clear_extension_map()
        .clear_codecs();
    let config = match codec {
        Codec::Pcmu => config.enable_pcmu(true, false),
        Codec::Pcma => config.enable_pcma(true, false),
    };
    let mut rtc = config.build(Instant::now());
    let candidate = Candidate::host(at, "udp")
        .map_err(|e| op_err("internal", format!("no ICE candidate for {at}: {e}")))?;
    rtc.add_local_candidate(candidate);
    let answer = rtc
        .sdp_api()
        .accept_offer(offer)
        .map_err(|e| op_err("invalid", format!("the audio offer was refused: {e}")))?
        .to_sdp_string();
    if !answer.contains(encoding(codec)) {
        return Err(op_err(
            "no_common_codec",
            format!(
                "the call is {}, which the turret did not offer",
                encoding(codec)
            ),
        ));
    }
    Ok((rtc, answer))
}

/// Shifts the PBX's sequence numbers and timestamps into the browser
/// stream's own, keeping gaps and order (a jump of more than a thousand
/// packets, a new source, continues the stream instead).
#[derive(Default)]
struct Renumber {
    last: Option<(u16, u32)>,
    out_seq: u64,
    out_ts: u32,
}

impl Renumber {
    fn map(&mut self, seq: u16, ts: u32) -> (u64, u32) {
        let Some((last_seq, last_ts)) = self.last else {
            let r = openturret_sip::message::random_u64();
            self.out_seq = 1 + (r % 20_000);
            self.out_ts = (r >> 32) as u32;
            self.last = Some((seq, ts));
            return (self.out_seq, self.out_ts);
        };
        let d = i64::from(seq.wrapping_sub(last_seq) as i16);
        if d.abs() > 1000 {
            self.out_seq += 1;
            self.out_ts = self.out_ts.wrapping_add(160);
            self.last = Some((seq, ts));
            return (self.out_seq, self.out_ts);
        }
        let out_seq = (self.out_seq as i64 + d).max(1) as u64;
        let out_ts = self.out_ts.wrapping_add(ts.wrapping_sub(last_ts));
        if d > 0 {
            self.last = Some((seq, ts));
            self.out_seq = out_seq;
            self.out_ts = out_ts;
        }
        (out_seq, out_ts)
    }
}

/// Runs a session until it ends: the browser goes away (ICE disconnects),
/// it never connects, the bridge lets it go (`stop`) or the call ends
/// (`frames` closes).
pub(super) async fn run(
    mut rtc: Rtc,
    socket: UdpSocket,
    bridge: Arc<Bridge>,
    mut frames: mpsc::Receiver<Frame>,
    mut stop: oneshot::Receiver<()>,
    at: SocketAddr,
) {
    let started = Instant::now();
    let mut connected = false;
    let mut mid: Option<Mid> = None;
    let mut renumber = Renumber::default();
    let mut buf = vec![0u8; 2048];
    let call = bridge.call;
    // One timer for the session, moved rather than made anew each turn.
    let timer = tokio::time::sleep(Duration::from_secs(1));
    tokio::pin!(timer);
    loop {
        let timeout = loop {
            match rtc.poll_output() {
                Ok(Output::Timeout(t)) => break t,
                Ok(Output::Transmit(t)) => {
                    let _ = socket.send_to(&t.contents, t.destination).await;
                }
                Ok(Output::Event(e)) => match e {
                    Event::Connected => {
                        connected = true;
                        tracing::debug!(call, "turret audio connected");
                    }
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                        tracing::debug!(call, "turret audio disconnected");
                        return;
                    }
                    Event::MediaAdded(m) if m.kind == MediaKind::Audio => {
                        mid.get_or_insert(m.mid);
                    }
                    Event::RtpPacket(p) => {
                        bridge.from_browser(
                            *p.header.payload_type,
                            p.header.sequence_number,
                            &p.payload,
                        );
                    }
                    _ => {}
                },
                Err(e) => {
                    tracing::warn!(call, error = %e, "turret audio failed");
                    return;
                }
            }
        };
        if !rtc.is_alive() {
            return;
        }
        if !connected && started.elapsed() > CONNECT_WITHIN {
            tracing::warn!(
                call,
                "the turret's audio did not connect within 30 s; given up"
            );
            return;
        }
        let wait = timeout
            .saturating_duration_since(Instant::now())
            .min(Duration::from_secs(1));
        if wait.is_zero() {
            // Due now (str0m releases queued packets on a timeout): a
            // zero sleep would wait for the runtime's next 1 ms tick.
            let _ = rtc.handle_input(Input::Timeout(Instant::now()));
            continue;
        }
        // str0m's own deadline, unchanged from turn to turn until it moves.
        let deadline = tokio::time::Instant::from_std(timeout.min(Instant::now() + wait));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        let input = tokio::select! {
            _ = &mut stop => return,
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, source)) => {
                    // Whatever is not STUN, DTLS, RTP or RTCP is dropped here.
                    let Ok(r) = Receive::new(Protocol::Udp, source, at, &buf[..n]) else {
                        continue;
                    };
                    Input::Receive(Instant::now(), r)
                }
                Err(_) => continue,
            },
            f = frames.recv() => {
                let Some(f) = f else { return };
                let Some(m) = mid else { continue };
                let (seq, ts) = renumber.map(f.seq, f.timestamp);
                let pt = Pt::from(f.payload_type);
                if let Some(tx) = rtc.direct_api().stream_tx_by_mid(m, None) {
                    tx.write_rtp(
                        RtpWrite::new(pt, seq.into(), ts, Instant::now(), f.payload)
                            .marker(f.marker),
                    );
                }
                continue;
            }
            _ = &mut timer => Input::Timeout(Instant::now()),
        };
        if let Err(e) = rtc.handle_input(input) {
            // A packet str0m refuses (hostile or broken) changes nothing.
            tracing::debug!(call, error = %e, "a turret audio packet was refused");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Renumber;

    #[test]
    fn renumbering_keeps_order_gaps_and_timing() {
        let mut r = Renumber::default();
        let (s0, t0) = r.map(65_534, 1000);
        assert_eq!(r.map(65_535, 1160), (s0 + 1, t0.wrapping_add(160)));
        // A lost packet (0) stays a gap; a late one keeps its place.
        assert_eq!(r.map(1, 1480), (s0 + 3, t0.wrapping_add(480)));
        assert_eq!(r.map(0, 1320), (s0 + 2, t0.wrapping_add(320)));
        // A new source far away continues the stream.
        assert_eq!(r.map(30_000, 9), (s0 + 4, t0.wrapping_add(640)));
        assert_eq!(r.map(30_001, 169), (s0 + 5, t0.wrapping_add(800)));
    }
}
