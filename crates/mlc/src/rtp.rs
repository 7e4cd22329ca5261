//! The MLC's media anchor for one call (RFC 3550 framing, G.711 payloads):
//! a UDP socket of its own, 20 ms packets of silence towards the far end
//! so that it keeps the call up, and a count of what arrives. The media
//! issue will put the turrets' speech units where the silence is.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use openturret_sip::sdp::Codec;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const SAMPLES_PER_PACKET: usize = 160; // 20 ms at 8 kHz

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
    pub async fn bind(ip: IpAddr) -> std::io::Result<Media> {
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
        ));
        let recv = tokio::spawn(recv_loop(socket, stats.clone()));
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
        packet[12..].fill(codec.silence());
        if socket.send_to(&packet, to).await.is_ok() {
            stats.sent.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn recv_loop(socket: Arc<UdpSocket>, stats: Arc<Stats>) {
    let mut buf = [0u8; 2048];
    loop {
        match socket.recv_from(&mut buf).await {
            // Only RTP version 2 counts.
            Ok((n, _)) if n >= 12 && buf[0] >> 6 == 2 => {
                stats.received.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}
