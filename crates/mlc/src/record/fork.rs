//! The copy of a call's audio to one recorder, taken on the call's RTP
//! leg as it passes (`rtp::Tap`).

use std::net::SocketAddr;
use std::sync::Mutex;

use openturret_sip::message;
use openturret_sip::sdp::Codec;
use tokio::net::UdpSocket;

use crate::rtp::{Packet, Tap};

/// The copy of a call's audio to one recorder: two RTP streams of its
/// own, sent from the ports the offer named.
pub(crate) struct Fork {
    sockets: [UdpSocket; 2],
    to: [SocketAddr; 2],
    codec: Codec,
    out: Mutex<[Out; 2]>,
    /// Each stream's SRTP context, when the recorder is reached over TLS.
    srtp: Mutex<Option<[crate::srtp::Srtp; 2]>>,
}

/// One outgoing stream's numbering; the far end's is shifted from its own
/// (gaps and timing kept), the trader's counts 20 ms frames.
struct Out {
    ssrc: u32,
    seq: u16,
    ts: u32,
    /// The far end's first sequence number and timestamp.
    base: Option<(u16, u32)>,
}

impl Fork {
    pub(super) fn new(
        sockets: [UdpSocket; 2],
        to: [SocketAddr; 2],
        codec: Codec,
        keys: Option<&[crate::srtp::MasterKey; 2]>,
    ) -> Fork {
        let out = || {
            let r = message::random_u64();
            Out {
                ssrc: r as u32,
                seq: (r >> 32) as u16,
                ts: (r >> 16) as u32,
                base: None,
            }
        };
        Fork {
            sockets,
            to,
            codec,
            out: Mutex::new([out(), out()]),
            srtp: Mutex::new(
                keys.map(|k| [crate::srtp::Srtp::new(&k[0]), crate::srtp::Srtp::new(&k[1])]),
            ),
        }
    }

    fn send(&self, stream: usize, marker: bool, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) {
        let mut p = Vec::with_capacity(12 + payload.len());
        p.push(0x80);
        p.push(self.codec.payload_type() | if marker { 0x80 } else { 0 });
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(payload);
        if let Some(s) = self.srtp.lock().unwrap().as_mut() {
            s[stream].protect(&mut p, 12);
        }
        // Never waits: a full socket buffer loses this packet only.
        let _ = self.sockets[stream].try_send_to(&p, self.to[stream]);
    }
}

impl Tap for Fork {
    fn far(&self, p: &Packet<'_>) {
        if p.payload_type != self.codec.payload_type() {
            return;
        }
        let (seq, ts, ssrc) = {
            let mut o = self.out.lock().unwrap();
            let s = &mut o[0];
            let (bs, bt) = *s.base.get_or_insert((p.seq, p.timestamp));
            (
                s.seq.wrapping_add(p.seq.wrapping_sub(bs)),
                s.ts.wrapping_add(p.timestamp.wrapping_sub(bt)),
                s.ssrc,
            )
        };
        self.send(0, p.marker, seq, ts, ssrc, p.payload);
    }

    fn near(&self, payload_type: u8, payload: &[u8]) {
        if payload_type != self.codec.payload_type() {
            return;
        }
        let (seq, ts, ssrc) = {
            let mut o = self.out.lock().unwrap();
            let s = &mut o[1];
            s.seq = s.seq.wrapping_add(1);
            s.ts = s.ts.wrapping_add(payload.len() as u32);
            (s.seq, s.ts, s.ssrc)
        };
        self.send(1, false, seq, ts, ssrc, payload);
    }
}
