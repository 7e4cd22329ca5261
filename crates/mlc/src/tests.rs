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

#[tokio::test]
async fn a_line_registers_and_its_host_hears_of_it() {
    let mut rig = Rig::unregistered(vec![line(1, "1001", "manual")], |_| {}).await;
    let reg = rig.request("REGISTER").await;
    assert_eq!(reg.request_uri().unwrap().to_string(), format!("sip:{PBX}"));
    assert!(reg.header("contact").unwrap().contains("ot-line-1@"));
    rig.answer(&reg, 200, "OK", &[("Expires", "300")]).await;
    rig.until_line(LineId(1), |s| matches!(s, LineState::Registered))
        .await;
    assert_eq!(rig.mlc.line_state(LineId(1)), LineState::Registered);
}

#[tokio::test]
async fn a_digest_challenge_is_answered_with_the_lines_credentials() {
    let mut rig = Rig::unregistered(vec![line(1, "1001", "manual")], |_| {}).await;
    let reg = rig.request("REGISTER").await;
    assert!(reg.header("authorization").is_none());
    rig.answer(
        &reg,
        401,
        "Unauthorized",
        &[(
            "WWW-Authenticate",
            "Digest realm=\"pbx\", nonce=\"abc123\", algorithm=MD5",
        )],
    )
    .await;
    let again = rig.request("REGISTER").await;
    let auth = again.header("authorization").expect("credentials");
    assert!(
        auth.contains("username=\"1001\"")
            && auth.contains("nonce=\"abc123\"")
            && auth.contains("response="),
        "{auth}"
    );
    assert_ne!(again.cseq.number, reg.cseq.number, "a new CSeq");
    rig.answer(&again, 200, "OK", &[("Expires", "300")]).await;
    rig.until_line(LineId(1), |s| matches!(s, LineState::Registered))
        .await;
}

#[tokio::test]
async fn a_refused_registration_fails_visibly_and_is_tried_again() {
    let mut rig = Rig::unregistered(vec![line(1, "1001", "manual")], |_| {}).await;
    let reg = rig.request("REGISTER").await;
    rig.answer(&reg, 403, "Forbidden", &[]).await;
    rig.until_line(LineId(1), |s| matches!(s, LineState::Failing(_)))
        .await;
    // Back-off, then a new attempt that succeeds.
    let again = tokio::time::timeout(Duration::from_secs(3), rig.request("REGISTER"))
        .await
        .expect("tried again within the first back-off");
    rig.answer(&again, 200, "OK", &[("Expires", "300")]).await;
    rig.until_line(LineId(1), |s| matches!(s, LineState::Registered))
        .await;
}

#[tokio::test]
async fn an_incoming_call_rings_is_answered_and_ends_with_the_pbxs_bye() {
    let mut rig = Rig::registered(vec![line(1, "1001", "manual")]).await;
    let (invite, call_id) = rig.invite("1001");
    rig.deliver(&invite).await;
    let ringing = rig.response(180).await;
    let tag = to_tag(&ringing);
    let view = rig.until_call(CallState::Ringing).await;
    assert_eq!(
        (
            view.remote_number.as_str(),
            view.remote_display.as_str(),
            view.line
        ),
        ("2000", "Alice", LineId(1))
    );
    call::answer_call(&rig.mlc, view.id, Some(ProfileId(7)), "handset 1")
        .await
        .unwrap();
    let ok = rig.response(200).await;
    assert_eq!(to_tag(&ok), tag, "one dialog");
    assert_eq!(ok.content_type().as_deref(), Some("application/sdp"));
    let answer = openturret_sip::sdp::parse(&ok.body).unwrap();
    assert_eq!(answer.codecs[0], openturret_sip::sdp::Codec::Pcmu);
    let connected = rig.until_call(CallState::Connected).await;
    assert_eq!(connected.owner, Some(ProfileId(7)));
    let ack = rig.in_dialog("ACK", "1001", &call_id, &tag, 1);
    rig.deliver(&ack).await;
    let bye = rig.in_dialog("BYE", "1001", &call_id, &tag, 2);
    rig.deliver(&bye).await;
    let ok = rig.response(200).await;
    assert_eq!(ok.cseq.method, "BYE");
    let (ended, last) = rig.call_report().await;
    assert!(last && ended.state == CallState::Ended, "{ended:?}");
    assert!(call::ongoing(&rig.mlc).is_empty());
}

#[tokio::test]
async fn a_retransmitted_invite_is_absorbed_and_answered_again_the_same() {
    let mut rig = Rig::registered(vec![line(1, "1001", "manual")]).await;
    let (invite, _) = rig.invite("1001");
    rig.deliver(&invite).await;
    let first = rig.response(180).await;
    rig.until_call(CallState::Ringing).await;
    rig.deliver(&invite).await;
    let again = rig.response(180).await;
    assert_eq!(to_tag(&again), to_tag(&first), "the remembered answer");
    assert_eq!(call::ongoing(&rig.mlc).len(), 1, "one call");
}

#[tokio::test]
async fn a_stranger_gets_403_and_nothing_exists_for_its_invite() {
    let mut rig = Rig::registered(vec![line(1, "1001", "manual")]).await;
    let (invite, _) = rig.invite("1001");
    let stranger = Peer {
        proto: Proto::Udp,
        addr: "127.0.0.2:5090".parse().unwrap(),
    };
    rig.deliver_from(stranger, &invite).await;
    let refused = rig.response(403).await;
    assert!(refused.header("user-agent").is_none(), "no product named");
    rig.sends_nothing().await;
    assert!(call::ongoing(&rig.mlc).is_empty());
    assert!(rig.told.try_recv().is_err(), "the host heard nothing");
    assert_eq!(rig.mlc.refused_requests(), 1);
}

#[tokio::test]
async fn an_unregistered_line_refuses_calls_with_480() {
    let mut rig = Rig::unregistered(vec![line(1, "1001", "manual")], |_| {}).await;
    let reg = rig.request("REGISTER").await;
    rig.answer(&reg, 403, "Forbidden", &[]).await;
    rig.until_line(LineId(1), |s| matches!(s, LineState::Failing(_)))
        .await;
    let (invite, _) = rig.invite("1001");
    rig.deliver(&invite).await;
    loop {
        let m = rig.next_sent().await;
        if m.method() == Some("REGISTER") {
            continue;
        }
        assert_eq!(m.code(), Some(480), "{m:?}");
        break;
    }
    assert!(call::ongoing(&rig.mlc).is_empty());
}

#[tokio::test]
async fn an_unknown_user_from_the_pbx_gets_404() {
    let mut rig = Rig::registered(vec![line(1, "1001", "manual")]).await;
    let (invite, _) = rig.invite("4711");
    rig.deliver(&invite).await;
    let m = rig.next_sent().await;
    let m = if m.code() == Some(100) {
        rig.next_sent().await
    } else {
        m
    };
    assert_eq!(m.code(), Some(404), "{m:?}");
}

#[tokio::test]
async fn the_ringing_table_of_a_line_is_bounded() {
    let mut rig = Rig::tuned(vec![line(1, "1001", "manual")], |c| {
        c.max_ringing_per_line = 2
    })
    .await;
    for _ in 0..2 {
        let (invite, _) = rig.invite("1001");
        rig.deliver(&invite).await;
        rig.response(180).await;
    }
    let (third, _) = rig.invite("1001");
    rig.deliver(&third).await;
    let m = rig.next_sent().await;
    let m = if m.code() == Some(100) {
        rig.next_sent().await
    } else {
        m
    };
    assert_eq!(m.code(), Some(486), "{m:?}");
    assert!(
        m.header("warning")
            .unwrap()
            .contains("too many calls ringing")
    );
    assert_eq!(call::ongoing(&rig.mlc).len(), 2);
}

#[tokio::test]
async fn a_cancel_ends_a_ringing_call_with_487() {
    let mut rig = Rig::registered(vec![line(1, "1001", "manual")]).await;
    let (invite, _) = rig.invite("1001");
    rig.deliver(&invite).await;
    rig.response(180).await;
    rig.until_call(CallState::Ringing).await;
    rig.deliver(&cancel_of(&invite)).await;
    let mut codes = vec![rig.next_sent().await, rig.next_sent().await];
    codes.sort_by_key(|m| m.cseq.method.clone());
    assert_eq!(
        (codes[0].cseq.method.as_str(), codes[0].code()),
        ("CANCEL", Some(200))
    );
    assert_eq!(
        (codes[1].cseq.method.as_str(), codes[1].code()),
        ("INVITE", Some(487))
    );
    let (ended, last) = rig.call_report().await;
    assert!(last && ended.state == CallState::Ended);
}

#[tokio::test]
async fn a_cancel_that_loses_the_race_to_the_answer_changes_nothing() {
    let mut rig = Rig::registered(vec![line(1, "1001", "manual")]).await;
    let (invite, _) = rig.invite("1001");
    rig.deliver(&invite).await;
    rig.response(180).await;
    let view = rig.until_call(CallState::Ringing).await;
    call::answer_call(&rig.mlc, view.id, Some(ProfileId(1)), "handset 1")
        .await
        .unwrap();
    rig.response(200).await;
    rig.deliver(&cancel_of(&invite)).await;
    let m = rig.next_sent().await;
    assert_eq!(m.cseq.method, "CANCEL");
    assert!(m.code().unwrap() >= 200, "{m:?}");
    // No 487 follows, and the call is still up.
    let more = tokio::time::timeout(Duration::from_millis(300), rig.sent.recv()).await;
    if let Ok(Some((_, m))) = more {
        assert_ne!(m.code(), Some(487), "{m:?}");
    }
    assert_eq!(call::ongoing(&rig.mlc)[0].state, CallState::Connected);
}

#[tokio::test]
async fn when_every_turret_rejects_the_caller_hears_busy() {
    let mut rig = Rig::registered(vec![line(1, "1001", "manual")]).await;
    let (invite, _) = rig.invite("1001");
    rig.deliver(&invite).await;
    rig.response(180).await;
    let view = rig.until_call(CallState::Ringing).await;
    let sharing = [ProfileId(1), ProfileId(2)];
    call::reject_call(&rig.mlc, view.id, ProfileId(1), &sharing)
        .await
        .unwrap();
    loop {
        if let Told::Rejected(id, p) = rig.told().await {
            assert_eq!((id, p), (view.id, ProfileId(1)));
            break;
        }
    }
    rig.sends_nothing().await;
    call::reject_call(&rig.mlc, view.id, ProfileId(2), &sharing)
        .await
        .unwrap();
    rig.response(486).await;
}

#[tokio::test]
async fn a_line_in_automatic_mode_answers_by_itself() {
    let mut rig = Rig::registered(vec![line(1, "1001", "automatic")]).await;
    let (invite, _) = rig.invite("1001");
    rig.deliver(&invite).await;
    loop {
        let m = rig.next_sent().await;
        if m.code() == Some(200) {
            break;
        }
        assert!(m.code().unwrap() < 200, "{m:?}");
    }
    let v = rig.until_call(CallState::Connected).await;
    assert_eq!(v.owner, None, "nobody answered: the line did");
}

#[tokio::test]
async fn we_hang_up_with_a_bye_and_the_call_ends_on_its_answer() {
    let mut rig = Rig::registered(vec![line(1, "1001", "manual")]).await;
    let Answered { view, call_id, .. } = rig.answered("1001", 40000).await;
    // Only who holds it may hang it up.
    let e = call::hangup(&rig.mlc, view.id, ProfileId(4))
        .await
        .unwrap_err();
    assert_eq!(e.code, "forbidden");
    call::hangup(&rig.mlc, view.id, ProfileId(3)).await.unwrap();
    let bye = rig.request("BYE").await;
    assert_eq!(bye.call_id, call_id);
    rig.answer(&bye, 200, "OK", &[]).await;
    let (ended, last) = rig.call_report().await;
    assert!(last && ended.state == CallState::Ended, "{ended:?}");
}

#[tokio::test]
async fn a_bye_for_no_dialog_gets_481() {
    let mut rig = Rig::registered(vec![line(1, "1001", "manual")]).await;
    let bye = rig.in_dialog("BYE", "1001", "call-99@pbx", "nobody", 2);
    rig.deliver(&bye).await;
    rig.response(481).await;
}

#[tokio::test]
async fn an_outgoing_call_rings_connects_with_an_ack_and_ends_with_the_far_ends_bye() {
    let mut rig = Rig::registered(vec![line(1, "1001", "manual")]).await;
    let id = call::dial(&rig.mlc, ProfileId(5), LineId(1), "+442079460001")
        .await
        .unwrap();
    let invite = rig.request("INVITE").await;
    assert!(
        invite
            .request_uri()
            .unwrap()
            .to_string()
            .contains("+442079460001")
            || invite
                .request_uri()
                .unwrap()
                .to_string()
                .contains("442079460001"),
        "{:?}",
        invite.request_uri()
    );
    assert!(
        openturret_sip::sdp::parse(&invite.body).is_ok(),
        "an SDP offer"
    );
    rig.answer(&invite, 180, "Ringing", &[]).await;
    let v = rig.until_call(CallState::Alerting).await;
    assert_eq!((v.id, v.owner), (id, Some(ProfileId(5))));
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40002 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let ok = message::response_to(&invite.headers, 200, "OK", Some("far"))
        .header("Contact", format!("<sip:far@{PBX}>"))
        .body("application/sdp", sdp.as_bytes().to_vec())
        .build();
    rig.deliver(&ok).await;
    let ack = rig.request("ACK").await;
    assert_eq!(ack.cseq.number, invite.cseq.number);
    rig.until_call(CallState::Connected).await;
    // The 200 again (our ACK was lost): the ACK again, nothing else.
    rig.deliver(&ok).await;
    rig.request("ACK").await;
    // The far end hangs up.
    let bye = message::Builder::request("BYE", &format!("sip:ot-line-1@{US}"))
        .header("Via", format!("SIP/2.0/UDP {PBX};branch=z9hG4bKfarbye"))
        .header("Max-Forwards", "70")
        .header("From", format!("{};tag=far", invite.header("to").unwrap()))
        .header("To", invite.header("from").unwrap())
        .header("Call-ID", &invite.call_id)
        .header("CSeq", "1 BYE")
        .build();
    rig.deliver(&bye).await;
    rig.response(200).await;
    let (ended, last) = rig.call_report().await;
    assert!(last && ended.state == CallState::Ended, "{ended:?}");
}

#[tokio::test]
async fn an_outgoing_call_answers_a_proxy_challenge_and_a_busy_far_end_ends_it() {
    let mut rig = Rig::registered(vec![line(1, "1001", "manual")]).await;
    call::dial(&rig.mlc, ProfileId(5), LineId(1), "2001")
        .await
        .unwrap();
    let invite = rig.request("INVITE").await;
    rig.answer(
        &invite,
        407,
        "Proxy Authentication Required",
        &[(
            "Proxy-Authenticate",
            "Digest realm=\"pbx\", nonce=\"n407\", algorithm=MD5",
        )],
    )
    .await;
    // The 407 is acknowledged, then the INVITE goes again with credentials.
    let ack = rig.request("ACK").await;
    assert_eq!(ack.cseq.number, invite.cseq.number);
    let again = rig.request("INVITE").await;
    let auth = again.header("proxy-authorization").expect("credentials");
    assert!(auth.contains("nonce=\"n407\""), "{auth}");
    rig.answer(&again, 486, "Busy Here", &[]).await;
    rig.request("ACK").await;
    let (ended, last) = loop {
        let (v, last) = rig.call_report().await;
        if last {
            break (v, last);
        }
    };
    assert!(last && ended.state == CallState::Ended);
    assert!(
        ended.end_reason.contains("486") || ended.end_reason.contains("busy"),
        "{ended:?}"
    );
}

#[tokio::test]
async fn hold_sends_a_reinvite_that_stops_our_audio_and_retrieve_restores_it() {
    let mut rig = Rig::registered(vec![line(1, "1001", "manual")]).await;
    let Answered { view, call_id, .. } = rig.answered("1001", 40000).await;
    // (The operation waits for the far end's answer: it runs beside us.)
    let mlc = rig.mlc.clone();
    let hold = tokio::spawn(async move { call::hold(&mlc, view.id, ProfileId(3), true).await });
    let reinvite = rig.request("INVITE").await;
    assert_eq!(reinvite.call_id, call_id);
    let body = String::from_utf8_lossy(&reinvite.body).to_string();
    assert!(
        body.contains("a=sendonly") || body.contains("a=inactive"),
        "{body}"
    );
    let sdp = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=recvonly\r\n";
    let ok = message::response_to(&reinvite.headers, 200, "OK", None)
        .header("Contact", format!("<sip:2000@{PBX}>"))
        .body("application/sdp", sdp.as_bytes().to_vec())
        .build();
    rig.deliver(&ok).await;
    rig.request("ACK").await;
    hold.await.unwrap().unwrap();
    rig.until_call(CallState::Held).await;
    let mlc = rig.mlc.clone();
    let retrieve =
        tokio::spawn(async move { call::hold(&mlc, view.id, ProfileId(3), false).await });
    let reinvite = rig.request("INVITE").await;
    let body = String::from_utf8_lossy(&reinvite.body).to_string();
    assert!(
        !body.contains("a=sendonly") && !body.contains("a=inactive"),
        "{body}"
    );
    let sdp = sdp.replace("a=recvonly", "a=sendrecv");
    let ok = message::response_to(&reinvite.headers, 200, "OK", None)
        .header("Contact", format!("<sip:2000@{PBX}>"))
        .body("application/sdp", sdp.into_bytes())
        .build();
    rig.deliver(&ok).await;
    rig.request("ACK").await;
    retrieve.await.unwrap().unwrap();
    rig.until_call(CallState::Connected).await;
}

#[tokio::test]
async fn a_request_that_cannot_be_served_is_answered_naming_why() {
    let mut rig = Rig::registered(vec![line(1, "1001", "manual")]).await;
    let bad = format!(
        "INVITE sip:1001@{US} SIP/3.0\r\nVia: SIP/2.0/UDP {PBX};branch=z9hG4bKbad\r\nFrom: <sip:2000@{PBX}>;tag=x\r\nTo: <sip:1001@{PBX}>\r\nCall-ID: bad@pbx\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    match message::parse(bad.as_bytes(), Framing::Datagram) {
        Err(e) => rig
            .inbound
            .send(Inbound::Refused(e, rig.pbx))
            .await
            .unwrap(),
        Ok(_) => panic!("SIP/3.0 parses"),
    }
    let m = rig.response(505).await;
    assert!(
        m.header("warning")
            .is_some_and(|w| w.contains("399 openturret")),
        "{m:?}"
    );
    assert!(call::ongoing(&rig.mlc).is_empty());
}

#[tokio::test]
async fn options_name_the_product_to_the_pbx_only() {
    let mut rig = Rig::registered(vec![line(1, "1001", "manual")]).await;
    let options = |branch: &str| {
        message::Builder::request("OPTIONS", &format!("sip:{US}"))
            .header("Via", format!("SIP/2.0/UDP {PBX};branch=z9hG4bK{branch}"))
            .header("Max-Forwards", "70")
            .header("From", format!("<sip:probe@{PBX}>;tag=p"))
            .header("To", format!("<sip:{US}>"))
            .header("Call-ID", format!("{branch}@probe"))
            .header("CSeq", "1 OPTIONS")
            .build()
    };
    rig.deliver(&options("o1")).await;
    let ours = loop {
        let (_, m) = tokio::time::timeout(WAIT, rig.sent.recv())
            .await
            .unwrap()
            .unwrap();
        if m.code().is_some() {
            break m;
        }
    };
    assert_eq!(ours.code(), Some(200));
    assert!(
        ours.header("user-agent")
            .is_some_and(|u| u.starts_with("OpenTurret"))
    );
    let stranger = Peer {
        proto: Proto::Udp,
        addr: "127.0.0.9:5090".parse().unwrap(),
    };
    rig.deliver_from(stranger, &options("o2")).await;
    let theirs = loop {
        let (_, m) = tokio::time::timeout(WAIT, rig.sent.recv())
            .await
            .unwrap()
            .unwrap();
        if m.code().is_some() {
            break m;
        }
    };
    assert!(theirs.header("user-agent").is_none(), "{theirs:?}");
}

#[tokio::test]
async fn a_ringing_call_nobody_answers_ends_by_itself() {
    let mut rig = Rig::tuned(vec![line(1, "1001", "manual")], |c| c.ring_timeout_secs = 1).await;
    let (invite, _) = rig.invite("1001");
    rig.deliver(&invite).await;
    rig.response(180).await;
    let m = tokio::time::timeout(Duration::from_secs(4), rig.response(480))
        .await
        .expect("the ring timeout ended it");
    assert_eq!(m.cseq.method, "INVITE");
    let (ended, last) = loop {
        let (v, last) = rig.call_report().await;
        if last {
            break (v, last);
        }
    };
    assert!(last && ended.state == CallState::Ended);
}

#[tokio::test]
async fn every_call_ends_when_the_mlc_stops() {
    let mut rig = Rig::registered(vec![line(1, "1001", "manual")]).await;
    let (invite, _) = rig.invite("1001");
    rig.deliver(&invite).await;
    rig.response(180).await;
    rig.until_call(CallState::Ringing).await;
    call::end_all(&rig.mlc, Duration::from_secs(1)).await;
    assert!(call::ongoing(&rig.mlc).is_empty());
    let m = rig.next_sent().await;
    assert!(m.code().unwrap() >= 400, "the caller is told: {m:?}");
}

/// An endpoint that sends a known byte and keeps what it hears.
struct Pattern {
    heard: Mutex<Vec<(u8, Vec<u8>)>>,
}

impl crate::rtp::Endpoint for Pattern {
    fn next_frame(&self, _: openturret_sip::sdp::Codec, payload: &mut [u8]) {
        payload.fill(0x5A);
    }
    fn heard(&self, payload_type: u8, payload: &[u8]) {
        self.heard
            .lock()
            .unwrap()
            .push((payload_type, payload.to_vec()));
    }
}

#[tokio::test]
async fn a_legs_media_is_its_endpoints_both_ways_without_touching_the_dialog() {
    let mut rig = Rig::registered(vec![line(1, "1001", "manual")]).await;
    let made: Arc<Mutex<Vec<(crate::rtp::Leg, Arc<Pattern>)>>> = Arc::default();
    let keep = made.clone();
    rig.mlc.set_media(Arc::new(move |leg| {
        let p = Arc::new(Pattern {
            heard: Mutex::new(Vec::new()),
        });
        keep.lock().unwrap().push((leg, p.clone()));
        p
    }));
    let far = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let Answered { view, ok, .. } = rig.answered("1001", far.local_addr().unwrap().port()).await;
    assert_eq!(
        made.lock().unwrap()[0].0,
        crate::rtp::Leg {
            call: view.id,
            line: LineId(1)
        }
    );
    let ours = openturret_sip::sdp::parse(&ok.body).unwrap().rtp.unwrap();
    // What the far end gets is the endpoint's, in RTP.
    let mut buf = [0u8; 512];
    let (n, from) = tokio::time::timeout(WAIT, far.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(from, ours);
    assert_eq!((n, buf[0] >> 6, buf[1] & 0x7f), (12 + 160, 2, 0));
    assert!(buf[12..n].iter().all(|b| *b == 0x5A));
    // What the far end sends reaches the endpoint.
    let mut packet = vec![0x80, 0x00, 0, 1, 0, 0, 0, 160, 0, 0, 0, 9];
    packet.extend_from_slice(&[0x11; 160]);
    far.send_to(&packet, ours).await.unwrap();
    let pattern = made.lock().unwrap()[0].1.clone();
    let deadline = std::time::Instant::now() + WAIT;
    while pattern.heard.lock().unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the endpoint heard nothing"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(pattern.heard.lock().unwrap()[0], (0, vec![0x11; 160]));
}

#[tokio::test]
async fn a_registration_is_refreshed_before_the_registrar_lets_it_lapse() {
    let mut rig = Rig::unregistered(vec![line(1, "1001", "manual")], |_| {}).await;
    let reg = rig.request("REGISTER").await;
    // The registrar grants 2 s, less than asked: the MLC refreshes at half.
    let contact = format!("{};expires=2", reg.header("contact").unwrap());
    rig.answer(&reg, 200, "OK", &[("Contact", &contact)]).await;
    rig.until_line(LineId(1), |s| matches!(s, LineState::Registered))
        .await;
    let started = std::time::Instant::now();
    let again = rig.request("REGISTER").await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(700) && waited < Duration::from_secs(2),
        "refreshed after {waited:?}"
    );
    assert_eq!(again.call_id, reg.call_id, "the same registration");
    assert!(again.cseq.number > reg.cseq.number);
    rig.answer(&again, 200, "OK", &[("Contact", &contact)])
        .await;
    rig.sends_nothing().await;
    assert_eq!(rig.mlc.line_state(LineId(1)), LineState::Registered);
}
