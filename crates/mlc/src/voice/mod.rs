//! Voice: the trader's speech units, in the browser, connected to the calls
//! this MLC carries (SPEC §5).
//!
//! Every call leg's media endpoint is a [`Bridge`] (unless a test sets
//! another with [`crate::Mlc::set_media`]). A turret that holds the call
//! sends a WebRTC offer ([`attach`]); the MLC answers it with one audio
//! stream in the call's own G.711 codec (μ-law or A-law, so nothing is
//! transcoded or resampled), binds a UDP socket for it and runs the
//! browser side (ICE, DTLS-SRTP, with str0m) in a task of its own
//! (`session`). Then:
//!
//! - what the PBX sends is relayed to the browser packet by packet as it
//!   arrives: duplicates are dropped, the rest keeps its spacing, timing
//!   and gaps (sequence numbers and timestamps are shifted, not renumbered),
//!   and the browser's own jitter buffer plays it;
//! - what the browser sends goes through a [`jitter::JitterBuffer`] and
//!   leaves on the MLC's 20 ms tick towards the PBX, whose timestamps
//!   follow the clock; the buffer follows the browser's clock, so the two
//!   never drift apart.
//!
//! A second offer for the same call (the page was reloaded, or another
//! turret of the profile took the call) replaces the first session. The
//! call's end drops the bridge, which ends its session. Each session has
//! its own DTLS certificate and so its own SRTP keys; nothing is recorded.

pub mod jitter;
mod session;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use openturret_sip::sdp::Codec;
use tokio::sync::{mpsc, oneshot};

use crate::call::{OpError, op_err};
use crate::rtp::{Endpoint, Packet};

/// Frames queued towards one browser at most (a second of audio).
const QUEUE: usize = 50;

/// The bridges of the calls in progress, by call id.
#[derive(Default)]
pub struct Voices {
    bridges: Mutex<HashMap<u64, Arc<Bridge>>>,
    sessions: AtomicU64,
}

impl Voices {
    /// The bridge of a new leg (replacing any of the same call). The MLC
    /// makes one per call leg; its benchmarks drive one directly.
    pub fn bridge(&self, call: u64) -> Arc<Bridge> {
        let b = Arc::new(Bridge {
            call,
            inner: Mutex::new(Inner::default()),
        });
        self.bridges.lock().unwrap().insert(call, b.clone());
        b
    }

    /// The call ended: its bridge and any session with it go.
    pub fn remove(&self, call: u64) {
        if let Some(b) = self.bridges.lock().unwrap().remove(&call) {
            b.detach(None);
        }
    }

    fn get(&self, call: u64) -> Option<Arc<Bridge>> {
        self.bridges.lock().unwrap().get(&call).cloned()
    }

    /// Bridges (call legs) in the table.
    #[cfg(test)]
    pub(crate) fn bridges(&self) -> usize {
        self.bridges.lock().unwrap().len()
    }

    /// Browser sessions open now.
    pub fn sessions(&self) -> usize {
        self.bridges
            .lock()
            .unwrap()
            .values()
            .filter(|b| b.inner.lock().unwrap().browser.is_some())
            .count()
    }
}

/// A frame from the PBX on its way to the browser.
#[derive(Debug)]
pub(crate) struct Frame {
    /// The call's payload type (the only one relayed).
    pub payload_type: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub marker: bool,
    /// Shared as it is handed to str0m, so the bytes are copied once.
    pub payload: Arc<[u8]>,
}

/// A browser session attached to a bridge.
struct Browser {
    id: u64,
    frames: mpsc::Sender<Frame>,
    /// Dropped (or sent) to end the session.
    _stop: oneshot::Sender<()>,
}

#[derive(Default)]
struct Inner {
    /// The payload type the call carries (0 PCMU, 8 PCMA), once known.
    payload_type: Option<u8>,
    to_pbx: jitter::JitterBuffer,
    browser: Option<Browser>,
    /// Sequence numbers relayed lately (a bit per number below `last`).
    seen: u64,
    last: Option<u16>,
    relayed: u64,
    duplicates: u64,
}

/// One call leg's voice (see the module).
pub struct Bridge {
    call: u64,
    inner: Mutex<Inner>,
}

impl Bridge {
    /// Ends the browser session `id` (any, for `None`).
    fn detach(&self, id: Option<u64>) {
        let mut i = self.inner.lock().unwrap();
        if id.is_none() || i.browser.as_ref().map(|b| b.id) == id {
            i.browser = None;
            i.to_pbx = jitter::JitterBuffer::new();
        }
    }

    /// A frame from the browser, for the PBX.
    fn from_browser(&self, payload_type: u8, seq: u16, payload: &[u8]) {
        let mut i = self.inner.lock().unwrap();
        if i.payload_type == Some(payload_type) && payload.len() == 160 {
            i.to_pbx.push(seq, payload);
        }
    }

    /// Whether `seq` was relayed already (and marks it).
    fn duplicate(i: &mut Inner, seq: u16) -> bool {
        let Some(last) = i.last else {
            i.last = Some(seq);
            i.seen = 1;
            return false;
        };
        let ahead = seq.wrapping_sub(last);
        if ahead == 0 {
            return true;
        }
        if ahead < 0x8000 {
            // Newer: shift the window.
            i.seen = if ahead >= 64 { 0 } else { i.seen << ahead };
            i.seen |= 1;
            i.last = Some(seq);
            return false;
        }
        let behind = last.wrapping_sub(seq);
        if behind >= 64 {
            return false;
        }
        let bit = 1u64 << behind;
        let was = i.seen & bit != 0;
        i.seen |= bit;
        was
    }
}

impl Endpoint for Bridge {
    fn next_frame(&self, codec: Codec, payload: &mut [u8]) {
        let mut i = self.inner.lock().unwrap();
        i.payload_type = Some(codec.payload_type());
        match i.to_pbx.pop() {
            Some(f) if f.len() == payload.len() => payload.copy_from_slice(&f),
            _ => payload.fill(codec.silence()),
        }
    }

    fn heard(&self, p: &Packet<'_>) {
        let mut i = self.inner.lock().unwrap();
        if i.browser.is_none() || Some(p.payload_type) != i.payload_type {
            return;
        }
        if Bridge::duplicate(&mut i, p.seq) {
            i.duplicates += 1;
            return;
        }
        i.relayed += 1;
        let frame = Frame {
            payload_type: p.payload_type,
            seq: p.seq,
            timestamp: p.timestamp,
            marker: p.marker,
            payload: Arc::from(p.payload),
        };
        if let Some(b) = &i.browser {
            // A browser that cannot keep up loses frames, not the call.
            let _ = b.frames.try_send(frame);
        }
    }
}

/// Where a session's socket binds and what it tells the browser.
pub struct Place {
    pub bind: IpAddr,
    pub advertise: IpAddr,
    pub ports: (u16, u16),
}

/// Answers a turret's WebRTC offer for call `call` (whose codec is
/// `codec`): binds the session's socket at `place` and starts it. Returns
/// the SDP answer.
pub async fn attach(
    voices: &Voices,
    call: u64,
    codec: Codec,
    offer: &str,
    place: Place,
) -> Result<String, OpError> {
    let bridge = voices
        .get(call)
        .ok_or_else(|| op_err("not_found", "no such call"))?;
    let socket = crate::rtp::bind_in_range(place.bind, place.ports, false)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "no UDP port for a turret's audio");
            op_err("no_media_port", "no UDP port is free for the audio")
        })?;
    let bound = socket
        .local_addr()
        .map_err(|e| op_err("internal", e.to_string()))?;
    let advertised = SocketAddr::new(place.advertise, bound.port());
    let (rtc, answer) = session::answer(offer, codec, advertised)?;
    let (frames_tx, frames_rx) = mpsc::channel(QUEUE);
    let (stop_tx, stop_rx) = oneshot::channel();
    let id = voices.sessions.fetch_add(1, Ordering::Relaxed) + 1;
    {
        let mut i = bridge.inner.lock().unwrap();
        i.payload_type = Some(codec.payload_type());
        i.to_pbx = jitter::JitterBuffer::new();
        i.browser = Some(Browser {
            id,
            frames: frames_tx,
            _stop: stop_tx,
        });
    }
    tracing::info!(call, session = id, "turret audio attached");
    let b = bridge.clone();
    tokio::spawn(async move {
        session::run(rtc, socket, b.clone(), frames_rx, stop_rx, advertised).await;
        b.detach(Some(id));
        tracing::info!(call = b.call, session = id, "turret audio ended");
    });
    Ok(answer)
}

#[cfg(test)]
mod bridge_tests {
    use super::*;

    fn packet(seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 160, 0, 0, 0, 1];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0xFF; 160]);
        p
    }

    #[test]
    fn the_bridge_relays_each_packet_once_and_only_the_calls_codec() {
        let voices = Voices::default();
        let b = voices.bridge(7);
        let (tx, mut rx) = mpsc::channel(QUEUE);
        let (stop, _keep) = oneshot::channel();
        {
            let mut i = b.inner.lock().unwrap();
            i.payload_type = Some(0);
            i.browser = Some(Browser {
                id: 1,
                frames: tx,
                _stop: stop,
            });
        }
        for seq in [10u16, 11, 11, 13, 12, 10, 12, 14] {
            b.heard(&crate::rtp::parse(&packet(seq)).unwrap());
        }
        let mut pcma = packet(15);
        pcma[1] = 8;
        b.heard(&crate::rtp::parse(&pcma).unwrap());
        let mut got = Vec::new();
        while let Ok(f) = rx.try_recv() {
            got.push(f.seq);
        }
        assert_eq!(got, vec![10, 11, 13, 12, 14]);
        assert_eq!(b.inner.lock().unwrap().duplicates, 3);
        // Removed with its call: the session's channel closes.
        voices.remove(7);
        assert!(rx.try_recv().is_err());
        assert!(voices.get(7).is_none());
    }

    #[test]
    fn without_a_browser_the_pbx_hears_silence() {
        let b = Voices::default().bridge(1);
        let mut frame = [0u8; 160];
        b.next_frame(Codec::Pcma, &mut frame);
        assert!(frame.iter().all(|x| *x == Codec::Pcma.silence()));
        // What the browser sent is played once the buffer has its target.
        b.from_browser(8, 1, &[0x33; 160]);
        b.from_browser(8, 2, &[0x44; 160]);
        b.next_frame(Codec::Pcma, &mut frame);
        assert_eq!(frame, [0x33; 160]);
        // Another codec is not the call's: dropped.
        b.from_browser(0, 3, &[0x55; 160]);
        b.next_frame(Codec::Pcma, &mut frame);
        assert_eq!(frame, [0x44; 160]);
    }
}
