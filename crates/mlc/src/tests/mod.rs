//! The MLC alone: a fake transport (what it sends is parsed and kept; what
//! the PBX sends is put on its inbound channel) and a fake [`Host`] (fixed
//! lines; every report kept). No PBX, no network for SIP, milliseconds a
//! test; the Kamailio, baresip and sipp tests of the server cover the same
//! paths against real peers.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use openturret_domain::model::{Line, LineFields};
use openturret_domain::secret::Secret;
use openturret_domain::{LineId, ProfileId, Timestamp};
use openturret_sip::message::{self, Framing, Message};
use tokio::sync::mpsc;

use crate::call::{self, CallState};
use crate::transport::{Inbound, Peer, Proto, SipTransport};
use crate::{CallView, Host, LineState, Mlc, SipConfig};

mod dialogs;
mod incoming;
mod media;
mod registration;

const PBX: &str = "127.0.0.1:5090";
const US: &str = "127.0.0.1:5070";

/// Keeps what the MLC sends.
struct FakeNet(mpsc::UnboundedSender<(Peer, Message)>);

#[async_trait]
impl SipTransport for FakeNet {
    async fn send(&self, to: Peer, bytes: &[u8]) -> std::io::Result<()> {
        let m = message::parse(bytes, Framing::Datagram).expect("the MLC sends valid SIP");
        let _ = self.0.send((to, m));
        Ok(())
    }
    fn local_addr(&self) -> SocketAddr {
        US.parse().unwrap()
    }
    fn tls_addr(&self) -> Option<SocketAddr> {
        None
    }
    fn set_tls_name(&self, _: SocketAddr, _: &str) {}
}

#[derive(Debug)]
enum Told {
    Line(LineId, LineState),
    Call(CallView, bool),
    Rejected(u64, ProfileId),
}

/// Gives fixed lines; keeps every report.
struct FakeHost {
    lines: Mutex<Vec<Line>>,
    told: mpsc::UnboundedSender<Told>,
}

#[async_trait]
impl Host for FakeHost {
    async fn lines(&self) -> anyhow::Result<Vec<(Line, Option<Secret>)>> {
        let lines = self.lines.lock().unwrap().clone();
        Ok(lines
            .into_iter()
            .map(|l| (l, Some(Secret::new(String::from("line-pw")))))
            .collect())
    }
    async fn line(&self, id: LineId) -> anyhow::Result<Option<(Line, Option<Secret>)>> {
        Ok(self.lines().await?.into_iter().find(|(l, _)| l.id == id))
    }
    async fn line_state(&self, id: LineId, _: LineState, state: LineState) {
        let _ = self.told.send(Told::Line(id, state));
    }
    async fn call(&self, view: CallView, ended: bool) {
        let _ = self.told.send(Told::Call(view, ended));
    }
    async fn rejected_here(&self, view: CallView, profile: ProfileId) {
        let _ = self.told.send(Told::Rejected(view.id, profile));
    }
    async fn transferred(&self, _: u64, _: LineId) {}
    async fn flush(&self) {}
}

fn line(id: i64, user: &str, answer_mode: &str) -> Line {
    let mut fields = LineFields::new(
        &format!("L{id}"),
        &format!("sip:{user}@{PBX}"),
        user,
        "",
        "",
        "",
    )
    .unwrap();
    fields.answer_mode = openturret_domain::model::AnswerMode::parse(answer_mode).unwrap();
    Line {
        id: LineId(id),
        fields,
        has_password: true,
        created_at: Timestamp(0),
        updated_at: Timestamp(0),
    }
}

struct Answered {
    view: CallView,
    call_id: String,
    /// Our 200 to the INVITE.
    ok: Message,
}

struct Rig {
    mlc: Mlc,
    inbound: mpsc::Sender<Inbound>,
    sent: mpsc::UnboundedReceiver<(Peer, Message)>,
    told: mpsc::UnboundedReceiver<Told>,
    pbx: Peer,
    seq: u64,
}

const WAIT: Duration = Duration::from_secs(5);

impl Rig {
    /// An MLC serving `lines`, each registered (200 to its REGISTER).
    async fn registered(lines: Vec<Line>) -> Rig {
        Self::tuned(lines, |_| {}).await
    }

    async fn tuned(lines: Vec<Line>, tune: impl FnOnce(&mut SipConfig)) -> Rig {
        let mut rig = Self::unregistered(lines.clone(), tune).await;
        for _ in &lines {
            let reg = rig.request("REGISTER").await;
            rig.answer(&reg, 200, "OK", &[("Expires", "300")]).await;
        }
        for l in &lines {
            rig.until_line(l.id, |s| matches!(s, LineState::Registered))
                .await;
        }
        rig
    }

    async fn unregistered(lines: Vec<Line>, tune: impl FnOnce(&mut SipConfig)) -> Rig {
        let (sent_tx, sent) = mpsc::unbounded_channel();
        let (told_tx, told) = mpsc::unbounded_channel();
        let (inbound, rx) = mpsc::channel(64);
        let mut config = SipConfig {
            listen: US.parse().unwrap(),
            keepalive_secs: 3600,
            // (The query of bindings has a test of its own.)
            query_bindings: false,
            ..SipConfig::default()
        };
        tune(&mut config);
        let mlc = Mlc::new();
        let host = Arc::new(FakeHost {
            lines: Mutex::new(lines),
            told: told_tx,
        });
        mlc.run(host, config, Arc::new(FakeNet(sent_tx)), rx)
            .await
            .unwrap();
        Rig {
            mlc,
            inbound,
            sent,
            told,
            pbx: Peer {
                proto: Proto::Udp,
                addr: PBX.parse().unwrap(),
            },
            seq: 0,
        }
    }

    /// The next message the MLC sends (skipping keep-alive OPTIONS).
    async fn next_sent(&mut self) -> Message {
        loop {
            let (_, m) = tokio::time::timeout(WAIT, self.sent.recv())
                .await
                .expect("the MLC sent nothing")
                .unwrap();
            if m.method() != Some("OPTIONS") {
                return m;
            }
        }
    }

    async fn request(&mut self, method: &str) -> Message {
        let m = self.next_sent().await;
        assert_eq!(m.method(), Some(method), "{m:?}");
        m
    }

    /// The next response, which must be `code` (a 100 Trying before it
    /// is passed over).
    async fn response(&mut self, code: u16) -> Message {
        let mut m = self.next_sent().await;
        if m.code() == Some(100) && code != 100 {
            m = self.next_sent().await;
        }
        assert_eq!(m.code(), Some(code), "{m:?}");
        m
    }

    /// Nothing more is sent within a moment.
    async fn sends_nothing(&mut self) {
        match tokio::time::timeout(Duration::from_millis(300), self.sent.recv()).await {
            Err(_) => {}
            Ok(m) => panic!("sent {m:?}"),
        }
    }

    async fn deliver_from(&self, from: Peer, bytes: &[u8]) {
        let m = message::parse(bytes, Framing::Datagram).unwrap();
        self.inbound
            .send(Inbound::Message(Box::new(m), from))
            .await
            .unwrap();
    }

    async fn deliver(&self, bytes: &[u8]) {
        self.deliver_from(self.pbx, bytes).await;
    }

    /// Answers `req` as the PBX.
    async fn answer(&self, req: &Message, code: u16, reason: &str, headers: &[(&str, &str)]) {
        let mut b = message::response_to(&req.headers, code, reason, Some("pbx-tag"));
        for (k, v) in headers {
            b = b.header(k, v);
        }
        self.deliver(&b.build()).await;
    }

    /// An INVITE from the PBX to `user`, with a G.711 offer.
    fn invite(&mut self, user: &str) -> (Vec<u8>, String) {
        self.invite_rtp(user, 40000)
    }

    /// The same, with the far end's RTP on `rtp_port`.
    fn invite_rtp(&mut self, user: &str, rtp_port: u16) -> (Vec<u8>, String) {
        self.seq += 1;
        let n = self.seq;
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
        );
        let call_id = format!("call-{n}@pbx");
        let bytes = message::Builder::request("INVITE", &format!("sip:{user}@{US}"))
            .header("Via", format!("SIP/2.0/UDP {PBX};branch=z9hG4bKinv{n}"))
            .header("Max-Forwards", "70")
            .header("From", format!("\"Alice\" <sip:2000@{PBX}>;tag=from{n}"))
            .header("To", format!("<sip:{user}@{PBX}>"))
            .header("Call-ID", &call_id)
            .header("CSeq", "1 INVITE")
            .header("Contact", format!("<sip:2000@{PBX}>"))
            .body("application/sdp", sdp.as_bytes().to_vec())
            .build();
        (bytes, call_id)
    }

    /// A request inside the dialog the INVITE `call_id` made, from the PBX.
    fn in_dialog(
        &mut self,
        method: &str,
        user: &str,
        call_id: &str,
        to_tag: &str,
        cseq: u32,
    ) -> Vec<u8> {
        self.seq += 1;
        let n = self.seq;
        message::Builder::request(method, &format!("sip:{user}@{US}"))
            .header("Via", format!("SIP/2.0/UDP {PBX};branch=z9hG4bKdlg{n}"))
            .header("Max-Forwards", "70")
            .header(
                "From",
                format!("\"Alice\" <sip:2000@{PBX}>;tag=from{}", call_id_n(call_id)),
            )
            .header("To", format!("<sip:{user}@{PBX}>;tag={to_tag}"))
            .header("Call-ID", call_id)
            .header("CSeq", format!("{cseq} {method}"))
            .build()
    }

    /// A call from the PBX to `user`, ringing: its INVITE and its view.
    async fn ringing(&mut self, user: &str) -> (Vec<u8>, CallView) {
        let (invite, _) = self.invite(user);
        self.deliver(&invite).await;
        self.response(180).await;
        let view = self.until_call(CallState::Ringing).await;
        (invite, view)
    }

    /// Holds (or retrieves) call `id` for profile 3, the far end agreeing;
    /// returns the SDP of our re-INVITE.
    async fn hold(&mut self, id: u64, on: bool) -> String {
        // (The operation waits for the far end's answer: it runs beside us.)
        let mlc = self.mlc.clone();
        let op = tokio::spawn(async move { call::hold(&mlc, id, ProfileId(3), on).await });
        let reinvite = self.request("INVITE").await;
        let body = String::from_utf8_lossy(&reinvite.body).to_string();
        let dir = if on { "recvonly" } else { "sendrecv" };
        let sdp = format!(
            "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na={dir}\r\n"
        );
        let ok = message::response_to(&reinvite.headers, 200, "OK", None)
            .header("Contact", format!("<sip:2000@{PBX}>"))
            .body("application/sdp", sdp.into_bytes())
            .build();
        self.deliver(&ok).await;
        self.request("ACK").await;
        op.await.unwrap().unwrap();
        body
    }

    /// The view the host is given when a call ends (reports of the call's
    /// changes before it passed over).
    async fn until_ended(&mut self) -> CallView {
        loop {
            let (v, last) = self.call_report().await;
            if last {
                return v;
            }
        }
    }

    /// A call from the PBX to `user` (far-end RTP on `rtp_port`), answered
    /// by profile 3 and acknowledged: connected.
    async fn answered(&mut self, user: &str, rtp_port: u16) -> Answered {
        let (invite, call_id) = self.invite_rtp(user, rtp_port);
        self.deliver(&invite).await;
        let tag = to_tag(&self.response(180).await);
        let view = self.until_call(CallState::Ringing).await;
        call::answer_call(&self.mlc, view.id, Some(ProfileId(3)), "handset 1")
            .await
            .unwrap();
        let ok = self.response(200).await;
        let ack = self.in_dialog("ACK", user, &call_id, &tag, 1);
        self.deliver(&ack).await;
        self.until_call(CallState::Connected).await;
        Answered { view, call_id, ok }
    }

    async fn told(&mut self) -> Told {
        tokio::time::timeout(WAIT, self.told.recv())
            .await
            .expect("the host was told nothing")
            .unwrap()
    }

    async fn until_line(&mut self, id: LineId, want: impl Fn(&LineState) -> bool) {
        loop {
            if let Told::Line(l, s) = self.told().await
                && l == id
                && want(&s)
            {
                return;
            }
        }
    }

    /// The next call report (the view, and whether the call ended).
    async fn call_report(&mut self) -> (CallView, bool) {
        loop {
            if let Told::Call(v, ended) = self.told().await {
                return (v, ended);
            }
        }
    }

    async fn until_call(&mut self, state: CallState) -> CallView {
        loop {
            let (v, _) = self.call_report().await;
            if v.state == state {
                return v;
            }
        }
    }
}

/// The CANCEL of an INVITE: its Via branch, From, To, Call-ID and CSeq
/// number, method CANCEL (RFC 3261 §9.1).
fn cancel_of(invite: &[u8]) -> Vec<u8> {
    let inv = message::parse(invite, Framing::Datagram).unwrap();
    message::Builder::request("CANCEL", &inv.request_uri().unwrap().to_string())
        .header("Via", inv.header("via").unwrap())
        .header("Max-Forwards", "70")
        .header("From", inv.header("from").unwrap())
        .header("To", inv.header("to").unwrap())
        .header("Call-ID", &inv.call_id)
        .header("CSeq", format!("{} CANCEL", inv.cseq.number))
        .build()
}

/// The number in a test Call-ID (`call-N@pbx`).
fn call_id_n(call_id: &str) -> &str {
    call_id.trim_start_matches("call-").trim_end_matches("@pbx")
}

fn to_tag(m: &Message) -> String {
    m.to.tag().expect("a to-tag").to_string()
}
