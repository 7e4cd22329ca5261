//! The MLC's media anchor for one call leg (RFC 3550 framing, G.711
//! payloads): a UDP socket of its own, a 20 ms packet towards the far end
//! on every tick, and what arrives, counted.
//!
//! **The media seam.** What a leg carries is an [`Endpoint`]'s: it fills
//! each outgoing 20 ms payload and takes each payload the far end sends.
//! The anchor keeps the socket, the timing, the RTP header and hold; the
//! dialog code only binds a leg and points it at the far end. Today every
//! leg's endpoint is [`Silence`]; a bridge to the turrets' speech units, a
//! fork to recorders or a mix is another endpoint, set once for the MLC
//! ([`crate::Mlc::set_media`]), with no change to dialog code.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use openturret_sip::sdp::Codec;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const SAMPLES_PER_PACKET: usize = 160; // 20 ms at 8 kHz

/// What one call leg carries (see the module).
pub trait Endpoint: Send + Sync + 'static {
    /// Fills `payload` (20 ms: 160 bytes of `codec`) with what goes to the
    /// far end next. Called every 20 ms while the leg sends.
    fn next_frame(&self, codec: Codec, payload: &mut [u8]);
    /// A payload the far end sent, with its RTP payload type.
    fn heard(&self, payload_type: u8, payload: &[u8]);
}

/// The endpoint of a leg nothing is connected to: it sends silence, so
/// the far end keeps the call up, and drops what it hears.
pub struct Silence;

impl Endpoint for Silence {
    fn next_frame(&self, codec: Codec, payload: &mut [u8]) {
        payload.fill(codec.silence());
    }
    fn heard(&self, _: u8, _: &[u8]) {}
}

/// Which leg an endpoint is made for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leg {
    pub call: u64,
    pub line: openturret_domain::LineId,
}

/// Makes the endpoint of each new leg.
pub type Endpoints = Arc<dyn Fn(Leg) -> Arc<dyn Endpoint> + Send + Sync>;

#[derive(Default)]
pub struct Stats {
    pub sent: AtomicU64,
    pub received: AtomicU64,
}

pub struct Media {
    pub local: SocketAddr,
    target: watch::Sender<Option<(SocketAddr, Codec)>>,
    sending: Arc<AtomicBool>,
    pub stats: Arc<Stats>,
    tasks: [JoinHandle<()>; 2],
}

impl Drop for Media {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Media {
    /// Binds an RTP socket on `ip` (an even port, RTCP would take the odd
    /// one above) and starts the send and receive loops, idle until
    /// [`Media::set_remote`].
    pub async fn bind(ip: IpAddr, endpoint: Arc<dyn Endpoint>) -> std::io::Result<Media> {
        let mut socket = None;
        for _ in 0..16 {
            let s = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
            if s.local_addr()?.port() % 2 == 0 {
                socket = Some(s);
                break;
            }
        }
        let socket = match socket {
            Some(s) => s,
            None => UdpSocket::bind(SocketAddr::new(ip, 0)).await?,
        };
        let local = socket.local_addr()?;
        let socket = Arc::new(socket);
        let (target, rx) = watch::channel(None);
        let stats = Arc::new(Stats::default());
        let sending = Arc::new(AtomicBool::new(true));
        let send = tokio::spawn(send_loop(
            socket.clone(),
            rx,
            stats.clone(),
            sending.clone(),
            endpoint.clone(),
        ));
        let recv = tokio::spawn(recv_loop(socket, stats.clone(), endpoint));
        Ok(Media {
            local,
            target,
            sending,
            stats,
            tasks: [send, recv],
        })
    }

    pub fn set_remote(&self, remote: Option<SocketAddr>, codec: Codec) {
        let _ = self.target.send(remote.map(|r| (r, codec)));
    }

    /// Whether we send: off while the far end has put the call on hold
    /// (it offered sendonly or inactive).
    pub fn set_sending(&self, on: bool) {
        self.sending.store(on, Ordering::Relaxed);
    }
}

async fn send_loop(
    socket: Arc<UdpSocket>,
    mut target: watch::Receiver<Option<(SocketAddr, Codec)>>,
    stats: Arc<Stats>,
    sending: Arc<AtomicBool>,
    endpoint: Arc<dyn Endpoint>,
) {
    let r = openturret_sip::message::random_u64();
    let ssrc = (r as u32).to_be_bytes();
    let mut seq: u16 = (r >> 32) as u16;
    let mut ts: u32 = (r >> 16) as u32;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut packet = vec![0u8; 12 + SAMPLES_PER_PACKET];
    let mut first = true;
    loop {
        tick.tick().await;
        let Some((to, codec)) = *target.borrow_and_update() else {
            if target.changed().await.is_err() {
                return;
            }
            continue;
        };
        seq = seq.wrapping_add(1);
        ts = ts.wrapping_add(SAMPLES_PER_PACKET as u32);
        if !sending.load(Ordering::Relaxed) {
            continue;
        }
        packet[0] = 0x80; // version 2
        packet[1] = codec.payload_type() | if first { 0x80 } else { 0 }; // marker on the first
        first = false;
        packet[2..4].copy_from_slice(&seq.to_be_bytes());
        packet[4..8].copy_from_slice(&ts.to_be_bytes());
        packet[8..12].copy_from_slice(&ssrc);
        endpoint.next_frame(codec, &mut packet[12..]);
        if socket.send_to(&packet, to).await.is_ok() {
            stats.sent.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn recv_loop(socket: Arc<UdpSocket>, stats: Arc<Stats>, endpoint: Arc<dyn Endpoint>) {
    let mut buf = [0u8; 2048];
    loop {
        match socket.recv_from(&mut buf).await {
            // Only RTP version 2 counts.
            Ok((n, _)) if n >= 12 && buf[0] >> 6 == 2 => {
                stats.received.fetch_add(1, Ordering::Relaxed);
                if let Some((pt, payload)) = payload(&buf[..n]) {
                    endpoint.heard(pt, payload);
                }
            }
            Ok(_) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// An RTP packet's payload type and payload (RFC 3550 §5.1: past the
/// contributing sources and a header extension; without the padding), or
/// `None` when the lengths do not add up.
fn payload(p: &[u8]) -> Option<(u8, &[u8])> {
    let csrcs = (p[0] & 0x0f) as usize;
    let mut start = 12 + 4 * csrcs;
    if p[0] & 0x10 != 0 {
        let ext = p.get(start + 2..start + 4)?;
        start += 4 + 4 * u16::from_be_bytes([ext[0], ext[1]]) as usize;
    }
    let mut end = p.len();
    if p[0] & 0x20 != 0 {
        end = end.checked_sub(*p.last()? as usize)?;
    }
    (start <= end).then(|| (p[1] & 0x7f, &p[start..end]))
}

#[cfg(test)]
mod tests {
    use super::payload;

    #[test]
    fn a_payload_is_found_past_csrcs_and_extensions_and_without_padding() {
        let mut p = vec![0x80, 0x08, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4];
        p.extend_from_slice(&[7, 7, 7]);
        assert_eq!(payload(&p), Some((8, &[7u8, 7, 7][..])));
        // One CSRC, an extension of one word, two bytes of padding.
        let mut q = vec![0xB1, 0x00, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4, 9, 9, 9, 9];
        q.extend_from_slice(&[0xBE, 0xDE, 0, 1, 5, 5, 5, 5]);
        q.extend_from_slice(&[1, 2, 0, 2]);
        assert_eq!(payload(&q), Some((0, &[1u8, 2][..])));
        // Lengths that do not add up.
        let bad = vec![0x8F, 0, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4];
        assert_eq!(payload(&bad), None);
        let pad = vec![0xA0, 0, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4, 200];
        assert_eq!(payload(&pad), None);
    }
}
