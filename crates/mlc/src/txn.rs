//! Transactions (RFC 3261 §17): our client transactions with their
//! retransmission timers, final answers to INVITEs repeated until their
//! ACK, and the answers remembered so that a retransmitted request gets the
//! same answer again. Every table is bounded.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openturret_sip::message::{Builder, Message};
use tokio::sync::{Notify, mpsc};

use crate::transport::{Peer, Proto};
use crate::{Mlc, T1, T2, TXN_TIMEOUT};

/// Answers remembered for retransmitted requests (and, as a bound, the
/// final answers awaiting an ACK and the send errors kept).
pub(crate) const ANSWER_CACHE: usize = 16_384;

#[derive(Default)]
pub(crate) struct AnswerCache {
    pub(crate) map: HashMap<String, (Vec<u8>, Peer)>,
    order: VecDeque<(Instant, String)>,
}

impl AnswerCache {
    pub(crate) fn insert(&mut self, key: String, bytes: Vec<u8>, peer: Peer) {
        let now = Instant::now();
        while let Some((at, _)) = self.order.front() {
            if self.order.len() < ANSWER_CACHE && now.duration_since(*at) < TXN_TIMEOUT {
                break;
            }
            let (_, k) = self.order.pop_front().expect("front exists");
            self.map.remove(&k);
        }
        if self.map.insert(key.clone(), (bytes, peer)).is_none() {
            self.order.push_back((now, key));
        }
    }
}

/// The key of a server transaction: the branch (RFC 3261) or, for RFC 2543
/// senders, Call-ID, CSeq and the top Via (§17.2.3).
pub(crate) fn txn_key(m: &Message, method: &str) -> String {
    let via = &m.vias[0];
    match via.branch() {
        Some(b) if via.is_3261() => format!("{b} {} {method}", via.host),
        _ => format!("{} {} {} {method}", m.call_id, m.cseq.number, via.raw),
    }
}

impl Mlc {
    /// Runs a client transaction: sends `bytes` (whose top Via carries
    /// `branch`), retransmits over UDP per RFC 3261 §17.1 and hands every
    /// response to the returned channel. The channel closes after a final
    /// response or when the transaction times out (no final response).
    pub(crate) fn transact(
        &self,
        peer: Peer,
        branch: String,
        bytes: Vec<u8>,
        invite: bool,
        timeout: Duration,
    ) -> mpsc::Receiver<Box<Message>> {
        // Boxed: a channel's block holds 32 slots, and 32 inline messages
        // would make every transaction allocate tens of kilobytes.
        let (out_tx, out_rx) = mpsc::channel::<Box<Message>>(16);
        let (in_tx, mut in_rx) = mpsc::channel::<Box<Message>>(16);
        // Keyed by branch and method: a CANCEL shares its INVITE's branch.
        let method = bytes.split(|b| *b == b' ').next().unwrap_or_default();
        let key = format!("{branch} {}", String::from_utf8_lossy(method));
        self.client_txns.lock().unwrap().insert(key.clone(), in_tx);
        let me = self.clone();
        tokio::spawn(async move {
            // A request that cannot even be sent (no route, TLS refused)
            // ends its transaction at once, with the reason kept.
            if let Some(t) = me.transport.get()
                && let Err(e) = t.send(peer, &bytes).await
            {
                let mut errors = me.send_errors.lock().unwrap();
                if errors.len() < ANSWER_CACHE {
                    errors.insert(branch.clone(), e.to_string());
                }
                drop(errors);
                me.client_txns.lock().unwrap().remove(&key);
                return;
            }
            let deadline = tokio::time::Instant::now() + timeout;
            let mut interval = T1;
            let mut retransmit = peer.proto == Proto::Udp;
            loop {
                let next = (tokio::time::Instant::now() + interval).min(deadline);
                tokio::select! {
                    r = in_rx.recv() => {
                        let Some(r) = r else { break };
                        let code = r.code().unwrap_or(0);
                        let _ = out_tx.send(r).await;
                        if code >= 200 {
                            break;
                        }
                        // A provisional answer: INVITEs stop retransmitting,
                        // others slow down to T2 (§17.1.2.2).
                        if invite { retransmit = false; } else { interval = T2; }
                    }
                    _ = tokio::time::sleep_until(next) => {
                        if tokio::time::Instant::now() >= deadline {
                            break;
                        }
                        if retransmit {
                            me.send(peer, &bytes).await;
                            interval = (interval * 2).min(if invite { TXN_TIMEOUT } else { T2 });
                        }
                    }
                }
            }
            me.client_txns.lock().unwrap().remove(&key);
        });
        out_rx
    }

    /// Why the request of transaction `branch` could not be sent, if so.
    pub(crate) fn take_send_error(&self, branch: &str) -> Option<String> {
        self.send_errors.lock().unwrap().remove(branch)
    }

    /// Sends a final answer to an INVITE and repeats it over UDP until the
    /// ACK arrives (§13.3.1.4, §17.2.1), for at most 64·T1.
    pub(crate) fn send_reliably(
        &self,
        peer: Peer,
        ack_key: String,
        bytes: Vec<u8>,
    ) -> tokio::sync::oneshot::Receiver<bool> {
        let (result, acked_rx) = tokio::sync::oneshot::channel();
        let acked = Arc::new(Notify::new());
        {
            let mut waiting = self.awaiting_ack.lock().unwrap();
            if waiting.len() >= ANSWER_CACHE {
                // A flood of INVITEs: answer once, without repeating, rather
                // than keep a timer per request.
                drop(waiting);
                let me = self.clone();
                tokio::spawn(async move { me.send(peer, &bytes).await });
                let _ = result.send(true);
                return acked_rx;
            }
            waiting.insert(ack_key.clone(), acked.clone());
        }
        let me = self.clone();
        tokio::spawn(async move {
            me.send(peer, &bytes).await;
            let deadline = tokio::time::Instant::now() + TXN_TIMEOUT;
            let mut interval = T1;
            let got_ack = loop {
                tokio::select! {
                    _ = acked.notified() => break true,
                    _ = tokio::time::sleep(interval) => {
                        if tokio::time::Instant::now() >= deadline {
                            break false;
                        }
                        if peer.proto == Proto::Udp {
                            me.send(peer, &bytes).await;
                        }
                        interval = (interval * 2).min(T2);
                    }
                }
            };
            me.awaiting_ack.lock().unwrap().remove(&ack_key);
            let _ = result.send(got_ack);
        });
        acked_rx
    }

    /// Answers a request and remembers the answer for its retransmissions.
    pub(crate) async fn answer(&self, req: &Message, peer: Peer, b: Builder) {
        let bytes = self.with_user_agent(b, peer).build();
        if let Some(method) = req.method() {
            self.answers
                .lock()
                .unwrap()
                .insert(txn_key(req, method), bytes.clone(), peer);
        }
        self.send(peer, &bytes).await;
    }

    /// A final non-2xx answer to an INVITE, repeated until ACKed.
    pub(crate) async fn answer_invite_finally(&self, m: &Message, peer: Peer, b: Builder) {
        let bytes = self.with_user_agent(b, peer).build();
        self.answers
            .lock()
            .unwrap()
            .insert(txn_key(m, "INVITE"), bytes.clone(), peer);
        self.send_reliably(peer, format!("{} {}", m.call_id, m.cseq.number), bytes);
    }
}
