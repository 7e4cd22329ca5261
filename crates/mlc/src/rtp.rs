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
    /// A packet the far end sent.
    fn heard(&self, packet: &Packet<'_>);
}

/// An RTP packet as it arrived (RFC 3550 §5.1), its payload without the
/// header, contributing sources, extension or padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    pub payload_type: u8,
    pub marker: bool,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: &'a [u8],
}

/// A copy of a leg's audio both ways as it passes (a recorder's, issue
/// 18). Called on the media path: it must not block.
pub trait Tap: Send + Sync {
    /// What the far end sent, as the endpoint hears it (nothing while
    /// held).
    fn far(&self, packet: &Packet<'_>);
    /// What goes to the far end (silence while held).
    fn near(&self, payload_type: u8, payload: &[u8]);
}

/// The taps of a leg.
pub type Taps = Arc<std::sync::Mutex<Vec<Arc<dyn Tap>>>>;

/// Frames sent to the far end in place of the endpoint's while they last
/// (the recording notice), already in the call's codec.
pub type Announcement = Arc<std::sync::Mutex<std::collections::VecDeque<Vec<u8>>>>;

/// The endpoint of a leg nothing is connected to: it sends silence, so
/// the far end keeps the call up, and drops what it hears.
pub struct Silence;

impl Endpoint for Silence {
    fn next_frame(&self, codec: Codec, payload: &mut [u8]) {
        payload.fill(codec.silence());
    }
    fn heard(&self, _: &Packet<'_>) {}
}

/// Which leg an endpoint is made for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leg {
    pub call: u64,
    pub line: openturret_domain::LineId,
}

/// Makes the endpoint of each new leg.
pub type Endpoints = Arc<dyn Fn(Leg) -> Arc<dyn Endpoint> + Send + Sync>;

/// The RFC 4733 event code of a DTMF digit.
pub fn dtmf_event(digit: char) -> Option<u8> {
    match digit {
        '0'..='9' => Some(digit as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(12 + (digit as u8 - b'A')),
        'a'..='d' => Some(12 + (digit as u8 - b'a')),
        _ => None,
    }
}

/// Packets (20 ms each) a digit lasts, its end repeated, and the pause
/// before the next digit.
const DTMF_PACKETS: u16 = 5;
const DTMF_END_REPEATS: u8 = 3;
const DTMF_PAUSE: u8 = 3;

/// Telephone events waiting to be sent, and the one being sent.
#[derive(Default)]
struct Dtmf {
    queue: std::collections::VecDeque<(u8, u8)>,
    /// (payload type, event, start timestamp, packets sent, end packets sent)
    current: Option<(u8, u8, u32, u16, u8)>,
    pause: u8,
}

impl Dtmf {
    /// The telephone-event packet due at timestamp `ts` (its payload type,
    /// marker, timestamp and 4-byte payload, RFC 4733 §2.3), if one is.
    fn next(&mut self, ts: u32) -> Option<(u8, bool, u32, [u8; 4])> {
        if self.current.is_none() {
            if self.pause > 0 {
                self.pause -= 1;
                return None;
            }
            let (pt, event) = self.queue.pop_front()?;
            self.current = Some((pt, event, ts, 0, 0));
        }
        let (pt, event, start, sent, ended) = self.current.as_mut()?;
        let first = *sent == 0;
        *sent = (*sent + 1).min(DTMF_PACKETS);
        let end = *sent >= DTMF_PACKETS;
        if end {
            *ended += 1;
        }
        let duration =
            u16::try_from(u32::from(*sent) * SAMPLES_PER_PACKET as u32).unwrap_or(u16::MAX);
        let [d0, d1] = duration.to_be_bytes();
        let volume = 10; // -10 dBm0
        let payload = [*event, if end { 0x80 } else { 0 } | volume, d0, d1];
        let out = (*pt, first, *start, payload);
        if *ended >= DTMF_END_REPEATS {
            self.current = None;
            self.pause = DTMF_PAUSE;
        }
        Some(out)
    }
}

#[derive(Default)]
pub struct Stats {
    pub sent: AtomicU64,
    pub received: AtomicU64,
}

pub struct Media {
    pub local: SocketAddr,
    target: watch::Sender<Option<(SocketAddr, Codec)>>,
    sending: Arc<AtomicBool>,
    held: Arc<AtomicBool>,
    dtmf: Arc<std::sync::Mutex<Dtmf>>,
    /// SRTP contexts, ours (sending) and theirs (receiving), when keyed.
    srtp: Arc<[std::sync::Mutex<Option<crate::srtp::Srtp>>; 2]>,
    pub stats: Arc<Stats>,
    taps: Taps,
    announcement: Announcement,
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
    /// Binds an RTP socket on `ip` (an even port of `ports`, RTCP would take
    /// the odd one above) and starts the send and receive loops, idle until
    /// [`Media::set_remote`].
    pub async fn bind(
        ip: IpAddr,
        ports: (u16, u16),
        endpoint: Arc<dyn Endpoint>,
    ) -> std::io::Result<Media> {
        let socket = bind_in_range(ip, ports, true).await?;
        let local = socket.local_addr()?;
        let socket = Arc::new(socket);
        let (target, rx) = watch::channel(None);
        let stats = Arc::new(Stats::default());
        let sending = Arc::new(AtomicBool::new(true));
        let held = Arc::new(AtomicBool::new(false));
        let dtmf = Arc::new(std::sync::Mutex::new(Dtmf::default()));
        let srtp: Arc<[std::sync::Mutex<Option<crate::srtp::Srtp>>; 2]> = Arc::default();
        let taps = Taps::default();
        let announcement = Announcement::default();
        let send = tokio::spawn(send_loop(
            socket.clone(),
            rx,
            stats.clone(),
            [sending.clone(), held.clone()],
            (
                endpoint.clone(),
                dtmf.clone(),
                srtp.clone(),
                taps.clone(),
                announcement.clone(),
            ),
        ));
        let recv = tokio::spawn(recv_loop(
            socket,
            stats.clone(),
            held.clone(),
            (endpoint, srtp.clone(), taps.clone()),
        ));
        Ok(Media {
            local,
            target,
            sending,
            held,
            dtmf,
            srtp,
            stats,
            taps,
            announcement,
            tasks: [send, recv],
        })
    }

    /// Where frames go to be played to the far end before anything else.
    pub fn announcement(&self) -> Announcement {
        self.announcement.clone()
    }

    /// The leg's taps (a recorder adds its own, and takes it away).
    pub fn taps(&self) -> Taps {
        self.taps.clone()
    }

    /// Makes the leg SRTP: what we send is protected with `ours`, what
    /// arrives must be authentic under `theirs` (anything else is dropped).
    /// (`None` for `ours` keeps our context as it is.)
    pub fn set_srtp(&self, ours: Option<&crate::srtp::MasterKey>, theirs: &crate::srtp::MasterKey) {
        if let Some(k) = ours {
            *self.srtp[0].lock().unwrap() = Some(crate::srtp::Srtp::new(k));
        }
        *self.srtp[1].lock().unwrap() = Some(crate::srtp::Srtp::new(theirs));
    }

    /// Queues telephone events (RFC 4733 codes) to send at payload type
    /// `pt`, in place of the audio while each lasts.
    pub fn send_dtmf(&self, pt: u8, events: &[u8]) {
        let mut d = self.dtmf.lock().unwrap();
        d.queue.extend(events.iter().map(|e| (pt, *e)));
    }

    /// Whether we hold the call: the far end gets silence, whatever the
    /// endpoint has, and what it sends reaches no endpoint.
    pub fn set_held(&self, on: bool) {
        self.held.store(on, Ordering::Relaxed);
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

/// Binds a UDP socket on `ip` at a port of `ports` (inclusive; `(0, 0)`:
/// any), tried at random; `even` for RTP.
pub(crate) async fn bind_in_range(
    ip: IpAddr,
    ports: (u16, u16),
    even: bool,
) -> std::io::Result<UdpSocket> {
    let (lo, hi) = ports;
    if lo == 0 || hi < lo {
        for _ in 0..32 {
            let s = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
            if !even || s.local_addr()?.port() % 2 == 0 {
                return Ok(s);
            }
        }
        return UdpSocket::bind(SocketAddr::new(ip, 0)).await;
    }
    let span = u64::from(hi - lo) + 1;
    let mut last = None;
    for _ in 0..64 {
        let mut port = lo + (openturret_sip::message::random_u64() % span) as u16;
        if even && port % 2 == 1 {
            port = if port > lo { port - 1 } else { port + 1 };
        }
        match UdpSocket::bind(SocketAddr::new(ip, port)).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free port in the media range")))
}

async fn send_loop(
    socket: Arc<UdpSocket>,
    mut target: watch::Receiver<Option<(SocketAddr, Codec)>>,
    stats: Arc<Stats>,
    [sending, held]: [Arc<AtomicBool>; 2],
    (endpoint, dtmf, srtp, taps, announcement): (
        Arc<dyn Endpoint>,
        Arc<std::sync::Mutex<Dtmf>>,
        Arc<[std::sync::Mutex<Option<crate::srtp::Srtp>>; 2]>,
        Taps,
        Announcement,
    ),
) {
    let r = openturret_sip::message::random_u64();
    let ssrc = (r as u32).to_be_bytes();
    let mut seq: u16 = (r >> 32) as u16;
    let ts0: u32 = (r >> 16) as u32;
    let start = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut packet = vec![0u8; 12 + SAMPLES_PER_PACKET];
    let mut first = true;
    let mut was_held = false;
    loop {
        let at = tick.tick().await;
        let Some((to, codec)) = *target.borrow_and_update() else {
            if target.changed().await.is_err() {
                return;
            }
            continue;
        };
        seq = seq.wrapping_add(1);
        // The timestamp follows the clock, not the count of ticks: a tick
        // the runtime skipped leaves a gap the far end sees as such, and
        // the stream never drifts from real time.
        let ts = ts0.wrapping_add(rtp_time(at - start));
        if !sending.load(Ordering::Relaxed) {
            continue;
        }
        packet[0] = 0x80; // version 2
        packet[1] = codec.payload_type() | if first { 0x80 } else { 0 }; // marker on the first
        first = false;
        packet[2..4].copy_from_slice(&seq.to_be_bytes());
        packet[4..8].copy_from_slice(&ts.to_be_bytes());
        packet[8..12].copy_from_slice(&ssrc);
        let now_held = held.load(Ordering::Relaxed);
        let event = if now_held {
            None
        } else {
            dtmf.lock().unwrap().next(ts)
        };
        if let Some((pt, marker, start, payload)) = event {
            // A telephone event instead of this packet's audio; the
            // endpoint's frame is taken all the same, so its clock runs on.
            let mut frame = [0u8; SAMPLES_PER_PACKET];
            endpoint.next_frame(codec, &mut frame);
            for t in taps.lock().unwrap().iter() {
                t.near(codec.payload_type(), &frame);
            }
            let mut p = [0u8; 16];
            p[..12].copy_from_slice(&packet[..12]);
            p[1] = pt | if marker { 0x80 } else { 0 };
            p[4..8].copy_from_slice(&start.to_be_bytes());
            p[12..].copy_from_slice(&payload);
            let p = protect(&srtp[0], &p);
            if socket.send_to(&p, to).await.is_ok() {
                stats.sent.fetch_add(1, Ordering::Relaxed);
            }
            was_held = now_held;
            continue;
        }
        if now_held {
            packet[12..].fill(codec.silence());
        } else {
            endpoint.next_frame(codec, &mut packet[12..]);
            // The notice, while it lasts, instead of the trader (whose
            // frame is taken all the same, so the clock runs on).
            if let Some(f) = announcement.lock().unwrap().pop_front()
                && f.len() == SAMPLES_PER_PACKET
            {
                packet[12..].copy_from_slice(&f);
            }
            if was_held {
                // The sound resumes after a hold: a new talkspurt.
                packet[1] |= 0x80;
            }
        }
        was_held = now_held;
        for t in taps.lock().unwrap().iter() {
            t.near(codec.payload_type(), &packet[12..]);
        }
        let out = protect(&srtp[0], &packet);
        if socket.send_to(&out, to).await.is_ok() {
            stats.sent.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A packet as it goes out: protected (a copy with its tag) when the leg is
/// SRTP, itself otherwise.
fn protect<'a>(
    srtp: &std::sync::Mutex<Option<crate::srtp::Srtp>>,
    p: &'a [u8],
) -> std::borrow::Cow<'a, [u8]> {
    match srtp.lock().unwrap().as_mut() {
        Some(s) => {
            let mut out = p.to_vec();
            s.protect(&mut out, 12);
            out.into()
        }
        None => p.into(),
    }
}

/// Elapsed time in 8 kHz samples, rounded to whole 20 ms packets.
fn rtp_time(elapsed: Duration) -> u32 {
    let packets = (elapsed.as_micros() + 10_000) / 20_000;
    (packets as u64 * SAMPLES_PER_PACKET as u64) as u32
}

async fn recv_loop(
    socket: Arc<UdpSocket>,
    stats: Arc<Stats>,
    held: Arc<AtomicBool>,
    (endpoint, srtp, taps): (
        Arc<dyn Endpoint>,
        Arc<[std::sync::Mutex<Option<crate::srtp::Srtp>>; 2]>,
        Taps,
    ),
) {
    let mut buf = [0u8; 2048];
    loop {
        match socket.recv_from(&mut buf).await {
            // Only RTP version 2 counts; on an SRTP leg, only authentic RTP.
            Ok((mut n, _)) if n >= 12 && buf[0] >> 6 == 2 => {
                if let Some(s) = srtp[1].lock().unwrap().as_mut() {
                    let Some(h) = crate::srtp::header_len(&buf[..n]) else {
                        continue;
                    };
                    match s.unprotect(&mut buf[..n], h) {
                        Some(clear) => n = clear,
                        None => continue,
                    }
                }
                stats.received.fetch_add(1, Ordering::Relaxed);
                if let Some(p) = parse(&buf[..n])
                    && !held.load(Ordering::Relaxed)
                {
                    endpoint.heard(&p);
                    for t in taps.lock().unwrap().iter() {
                        t.far(&p);
                    }
                }
            }
            Ok(_) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// An RTP packet's header fields and payload (RFC 3550 §5.1: past the
/// contributing sources and a header extension; without the padding), or
/// `None` when it is shorter than a header or the lengths do not add up.
pub fn parse(p: &[u8]) -> Option<Packet<'_>> {
    if p.len() < 12 || p[0] >> 6 != 2 {
        return None;
    }
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
    (start <= end).then(|| Packet {
        payload_type: p[1] & 0x7f,
        marker: p[1] & 0x80 != 0,
        seq: u16::from_be_bytes([p[2], p[3]]),
        timestamp: u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
        ssrc: u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
        payload: &p[start..end],
    })
}

#[cfg(test)]
mod tests {
    use super::{parse, rtp_time};
    use std::time::Duration;

    fn payload(p: &[u8]) -> Option<(u8, &[u8])> {
        parse(p).map(|p| (p.payload_type, p.payload))
    }

    #[test]
    fn a_digit_is_five_packets_of_one_event_ended_three_times_then_a_pause() {
        let mut d = super::Dtmf::default();
        d.queue.extend([(101, 5), (101, 11)]);
        let mut out = Vec::new();
        for i in 0..16u32 {
            out.push(d.next(1000 + i * 160));
        }
        let five: Vec<_> = out[..7].iter().map(|p| p.unwrap()).collect();
        // One event, one timestamp (its start), marker on the first,
        // duration growing by 20 ms, the end bit on the last three.
        assert!(
            five.iter()
                .all(|(pt, _, ts, p)| *pt == 101 && *ts == 1000 && p[0] == 5)
        );
        assert_eq!(five.iter().filter(|x| x.1).count(), 1);
        assert!(five[0].1);
        let durations: Vec<u16> = five
            .iter()
            .map(|x| u16::from_be_bytes([x.3[2], x.3[3]]))
            .collect();
        assert_eq!(durations, [160, 320, 480, 640, 800, 800, 800]);
        let ends: Vec<bool> = five.iter().map(|x| x.3[1] & 0x80 != 0).collect();
        assert_eq!(ends, [false, false, false, false, true, true, true]);
        // A pause of three packets, then '#', starting at its own time.
        assert!(out[7..10].iter().all(|p| p.is_none()));
        let hash = out[10].unwrap();
        assert_eq!((hash.3[0], hash.1, hash.2), (11, true, 1000 + 10 * 160));
        assert_eq!(super::dtmf_event('#'), Some(11));
        assert_eq!(super::dtmf_event('x'), None);
    }

    #[test]
    fn the_sending_timestamp_follows_the_clock() {
        assert_eq!(rtp_time(Duration::ZERO), 0);
        assert_eq!(rtp_time(Duration::from_millis(19)), 160);
        assert_eq!(rtp_time(Duration::from_millis(40)), 320);
        // An hour later: exactly an hour of samples, whatever ticks were skipped.
        assert_eq!(rtp_time(Duration::from_secs(3600)), 8000 * 3600);
    }

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
        assert_eq!(payload(&[0x80, 0, 0]), None, "shorter than a header");
        assert_eq!(payload(&[0x40; 12]), None, "not version 2");
        let pad = vec![0xA0, 0, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4, 200];
        assert_eq!(payload(&pad), None);
    }
}
