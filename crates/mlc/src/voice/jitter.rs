//! A jitter buffer for 20 ms G.711 frames that arrive on one clock and
//! leave on another (the turret's microphone, sent on to the PBX on the
//! MLC's 20 ms tick).
//!
//! Frames are kept by extended sequence number and played in order, one
//! per [`JitterBuffer::pop`]. A duplicate, or a frame whose turn has passed,
//! is dropped; a missing frame is played as a gap (`None`) once a later one
//! is there. Playing starts once [`TARGET`] frames are buffered.
//!
//! **The two clocks.** Sender and player never run at exactly the same
//! rate, and over an hour even 100 ppm is 18 frames. The buffer follows the
//! sender: when it runs dry (the sender is slower) it waits one tick
//! without advancing, which adds one frame of delay; when for a whole
//! second it never held fewer than two frames beyond the one it plays (the
//! sender is faster) it drops the oldest, which takes one frame of delay
//! away. So the delay stays within a frame of where it settled, however
//! long the call (`an_hour_of_drifting_clocks_stays_within_a_frame`).

use std::collections::BTreeMap;

/// Frames buffered before playing starts (40 ms).
pub const TARGET: usize = 2;
/// Pops in the window over which a surplus must last before a frame is
/// dropped (one second of 20 ms frames).
const WINDOW: u32 = 50;
/// Frames held at most; a burst beyond it drops the oldest.
const CAPACITY: usize = 50;
/// A sequence number this far from the next frame to play starts anew
/// (the sender restarted, or a long silence).
const RESYNC: u64 = 500;

/// What the buffer counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JitterStats {
    pub received: u64,
    pub played: u64,
    pub duplicates: u64,
    /// Arrived after their turn.
    pub late: u64,
    /// Played as gaps: never arrived in time.
    pub lost: u64,
    /// Ticks that waited because the buffer was dry (each adds a frame of
    /// delay).
    pub underruns: u64,
    /// Frames dropped to take delay away (the sender's clock is faster).
    pub dropped: u64,
}

#[derive(Debug, Default)]
pub struct JitterBuffer {
    frames: BTreeMap<u64, Vec<u8>>,
    /// The extended sequence number played next; `None` while filling.
    next: Option<u64>,
    /// The highest extended sequence number seen (to extend the next).
    highest: Option<u64>,
    /// The fewest frames left after a pop in this window, and the pops in it.
    low: usize,
    pops: u32,
    pub stats: JitterStats,
}

impl JitterBuffer {
    pub fn new() -> JitterBuffer {
        JitterBuffer {
            low: usize::MAX,
            ..Default::default()
        }
    }

    /// Extends a 16-bit sequence number to the one nearest the highest seen.
    fn extend(&self, seq: u16) -> u64 {
        let Some(h) = self.highest else {
            return (1 << 16) + u64::from(seq);
        };
        let base = h & !0xffff;
        let candidates = [base.wrapping_sub(1 << 16), base, base + (1 << 16)];
        candidates
            .into_iter()
            .map(|b| b.wrapping_add(u64::from(seq)))
            .min_by_key(|c| c.abs_diff(h))
            .expect("three candidates")
    }

    /// A frame arrived.
    pub fn push(&mut self, seq: u16, payload: &[u8]) {
        self.stats.received += 1;
        let ext = self.extend(seq);
        if let Some(next) = self.next
            && (ext.abs_diff(next) > RESYNC)
        {
            // Far from what we expect: the sender started over.
            self.frames.clear();
            self.next = None;
            self.highest = None;
            return self.push_fresh(seq, payload);
        }
        self.store(ext, payload);
    }

    fn push_fresh(&mut self, seq: u16, payload: &[u8]) {
        let ext = self.extend(seq);
        self.store(ext, payload);
    }

    fn store(&mut self, ext: u64, payload: &[u8]) {
        if self.next.is_some_and(|n| ext < n) {
            self.stats.late += 1;
            return;
        }
        if self.frames.contains_key(&ext) {
            self.stats.duplicates += 1;
            return;
        }
        self.highest = Some(self.highest.map_or(ext, |h| h.max(ext)));
        self.frames.insert(ext, payload.to_vec());
        while self.frames.len() > CAPACITY {
            let (k, _) = self.frames.pop_first().expect("not empty");
            self.stats.dropped += 1;
            if let Some(n) = self.next.as_mut() {
                *n = (*n).max(k + 1);
            }
        }
    }

    /// The frame to play on this tick: `Some(frame)`, or `None` for a gap
    /// (filling, dry, or this frame lost).
    pub fn pop(&mut self) -> Option<Vec<u8>> {
        let next = match self.next {
            Some(n) => n,
            None => {
                if self.frames.len() < TARGET {
                    return None;
                }
                let first = *self.frames.keys().next().expect("not empty");
                self.next = Some(first);
                first
            }
        };
        if self.frames.is_empty() {
            // Dry: wait a tick without advancing (one frame more delay).
            self.stats.underruns += 1;
            self.low = 0;
            return None;
        }
        self.next = Some(next + 1);
        let out = match self.frames.remove(&next) {
            Some(f) => {
                self.stats.played += 1;
                Some(f)
            }
            None => {
                self.stats.lost += 1;
                None
            }
        };
        self.low = self.low.min(self.frames.len());
        self.pops += 1;
        if self.pops >= WINDOW {
            if self.low >= TARGET && self.low != usize::MAX {
                // A surplus for a whole window: drop the oldest frame.
                if let Some((k, _)) = self.frames.pop_first() {
                    self.stats.dropped += 1;
                    self.next = Some(k + 1);
                }
            }
            self.pops = 0;
            self.low = usize::MAX;
        }
        out
    }

    /// Frames waiting.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(i: u16) -> Vec<u8> {
        vec![(i % 251) as u8; 160]
    }

    /// Pushes `seqs`, then pops until the buffer is dry; returns what was
    /// played (the frames' first byte), gaps as `None`.
    fn play(b: &mut JitterBuffer, seqs: &[u16]) -> Vec<Option<u8>> {
        for s in seqs {
            b.push(*s, &frame(*s));
        }
        let mut out = Vec::new();
        while !b.is_empty() {
            out.push(b.pop().map(|f| f[0]));
        }
        out
    }

    #[test]
    fn frames_are_played_in_order_whatever_order_they_came_in() {
        let mut b = JitterBuffer::new();
        let out = play(&mut b, &[10, 12, 11, 14, 13]);
        assert_eq!(out, [10, 11, 12, 13, 14].map(|i| Some(i as u8)));
        assert_eq!(b.stats.played, 5);
        assert_eq!(b.stats.lost, 0);
    }

    #[test]
    fn duplicates_are_played_once_and_a_late_frame_not_at_all() {
        let mut b = JitterBuffer::new();
        b.push(1, &frame(1));
        b.push(2, &frame(2));
        b.push(2, &frame(2));
        assert_eq!(b.stats.duplicates, 1);
        assert_eq!(b.pop().map(|f| f[0]), Some(1));
        b.push(1, &frame(1)); // its turn has passed
        assert_eq!(b.stats.late, 1);
        assert_eq!(b.pop().map(|f| f[0]), Some(2));
        assert!(b.is_empty());
    }

    #[test]
    fn a_lost_frame_is_a_gap_and_the_next_ones_keep_their_place() {
        let mut b = JitterBuffer::new();
        let out = play(&mut b, &[5, 6, 8, 9]);
        assert_eq!(out, vec![Some(5), Some(6), None, Some(8), Some(9)]);
        assert_eq!(b.stats.lost, 1);
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut b = JitterBuffer::new();
        let out = play(&mut b, &[65534, 65535, 0, 1]);
        assert_eq!(out, [65534u16, 65535, 0, 1].map(|i| Some((i % 251) as u8)));
    }

    #[test]
    fn playing_waits_for_the_target_and_a_restarted_sender_is_followed() {
        let mut b = JitterBuffer::new();
        b.push(100, &frame(100));
        assert_eq!(b.pop(), None, "one frame is not enough to start");
        b.push(101, &frame(101));
        assert_eq!(b.pop().map(|f| f[0]), Some(100));
        // The sender starts over far away: the buffer follows it.
        b.push(30_000, &frame(30_000));
        b.push(30_001, &frame(30_001));
        let out: Vec<_> = (0..2).map(|_| b.pop().map(|f| f[0])).collect();
        assert_eq!(
            out,
            vec![Some((30_000 % 251) as u8), Some((30_001 % 251) as u8)]
        );
    }

    /// An hour of frames from a sender whose clock runs `ppm` fast (or
    /// slow), with up to 8 ms of jitter, played on an exact 20 ms tick: the
    /// mean delay of the last minute is within one frame of the first
    /// minute's, and no frame ever waits longer than 100 ms.
    fn drift(ppm: f64) -> JitterStats {
        let mut b = JitterBuffer::new();
        let period = 20.0 * (1.0 - ppm / 1e6); // sender's frame spacing, in our ms
        let frames = 180_000u64; // an hour
        // A cheap deterministic jitter.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut jitter = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 8000) as f64 / 1000.0
        };
        let mut arrivals: Vec<(f64, u64)> = (0..frames)
            .map(|i| (i as f64 * period + jitter(), i))
            .collect();
        arrivals.sort_by(|a, b| a.0.total_cmp(&b.0));
        let sent_at = |i: u64| i as f64 * period;
        let minute = 3000u64; // frames
        let (mut first, mut last) = (Vec::new(), Vec::new());
        let mut longest: f64 = 0.0;
        let mut next_arrival = 0;
        let mut tick = 0u64;
        let mut played = 0;
        while played < frames - 100 {
            let now = tick as f64 * 20.0;
            while next_arrival < arrivals.len() && arrivals[next_arrival].0 <= now {
                let i = arrivals[next_arrival].1;
                let mut f = vec![0u8; 160];
                f[..8].copy_from_slice(&i.to_be_bytes());
                b.push(i as u16, &f);
                next_arrival += 1;
            }
            if let Some(f) = b.pop() {
                let i = u64::from_be_bytes(f[..8].try_into().unwrap());
                let delay = now - sent_at(i);
                played += 1;
                longest = longest.max(delay);
                if (50..50 + minute).contains(&i) {
                    first.push(delay);
                } else if i >= frames - 100 - minute {
                    last.push(delay);
                }
            }
            tick += 1;
            assert!(tick < frames * 2, "the buffer stopped playing");
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let moved = mean(&last) - mean(&first);
        assert!(
            moved.abs() <= 20.0,
            "at {ppm} ppm the mean delay moved by {moved:.1} ms over an hour (stats {:?})",
            b.stats
        );
        assert!(
            longest <= 100.0,
            "at {ppm} ppm a frame waited {longest:.1} ms"
        );
        b.stats
    }

    #[test]
    fn an_hour_of_drifting_clocks_stays_within_a_frame() {
        // A fast sender: frames are dropped, about one per 200 s per 100 ppm.
        let fast = drift(300.0);
        assert!(fast.dropped >= 40, "{fast:?}");
        // A slow sender: the buffer waits instead.
        let slow = drift(-300.0);
        assert!(slow.underruns >= 40, "{slow:?}");
        // Matched clocks: nothing dropped or waited for after the start.
        let same = drift(0.0);
        assert!(same.dropped + same.underruns <= 2, "{same:?}");
    }
}
