//! A strict stand-in Session Recording Server (SIPREC, RFC 7866; metadata,
//! RFC 7865), over UDP. No recorder ships in Debian, so the recording
//! tests bring this one. It checks the standard, with its own parsing
//! (none of the product's SIP code): an INVITE without `Require: siprec`
//! gets 420, one whose Contact lacks `+sip.src` gets 400, and so does a
//! body that is not `multipart/mixed` with exactly one `application/sdp`
//! part and one `application/rs-metadata+xml` part marked
//! `Content-Disposition: recording-session`, an SDP stream that is not
//! `sendonly` (or `inactive`, on a re-INVITE) or has no `a=label`, and
//! metadata that is not well-formed RFC 7865 (the namespace, a data mode,
//! a session, participants with an address of record, streams of a known
//! session, every SDP label among the streams, associations naming known
//! participants and streams). It answers `recvonly` on real ports, keeps
//! what each stream carries (decoded G.711), and every metadata document.

use std::collections::HashMap;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NS: &str = "urn:ietf:params:xml:ns:recording:1";

/// One recording session, by the SRC's Call-ID.
#[derive(Default)]
pub struct Recorded {
    /// Every metadata document, in order (the INVITE's, then each
    /// re-INVITE's).
    pub metadata: Vec<String>,
    /// The labels of the offered streams, in order.
    pub labels: Vec<String>,
    /// What each stream carried, by label: payload type and linear samples.
    pub audio: HashMap<String, Arc<Mutex<(u8, Vec<f64>)>>>,
    /// The SDP directions of the last offer.
    pub directions: Vec<String>,
    /// Whether the offer's streams were SRTP (RTP/SAVP with a key).
    pub srtp: bool,
    /// SRTP packets that did not authenticate (dropped).
    pub forged: Arc<std::sync::atomic::AtomicU64>,
    pub ended: bool,
    answer: Vec<u8>,
    to_tag: String,
}

#[derive(Default)]
pub struct SrsState {
    /// Every INVITE that reached it (first or re-INVITE, taken or not).
    pub invites: usize,
    /// Why each refused request was refused.
    pub refusals: Vec<String>,
    pub sessions: HashMap<String, Recorded>,
}

/// How the stand-in answers a valid first INVITE.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Answer {
    /// As a recorder should: `recvonly` on a port per stream.
    Normal,
    /// 200 with one stream only.
    OneStream,
    /// 200 with a body that is not SDP at all.
    Garbage,
}

pub struct Srs {
    pub port: u16,
    pub state: Arc<Mutex<SrsState>>,
    stop: Arc<AtomicBool>,
    /// Over TLS: its certificate (PEM), to trust as `sip.tls_ca`.
    pub tls_cert: Option<std::path::PathBuf>,
    /// Over TCP.
    tcp: bool,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Srs {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl Srs {
    pub fn start() -> Srs {
        Srs::answering(Answer::Normal)
    }

    pub fn answering(answer: Answer) -> Srs {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let port = socket.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(SrsState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, halt) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while !halt.load(Ordering::SeqCst) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(reply) = handle(&st, &halt, port, answer, "udp", &buf[..n]) {
                    let _ = socket.send_to(&reply, from);
                }
            }
        });
        Srs {
            port,
            state,
            stop,
            tls_cert: None,
            tcp: false,
            _dir: None,
        }
    }

    /// A recorder over TLS (`sips:`), with a certificate of its own for
    /// 127.0.0.1; its media must be SRTP (SDES) and it decrypts it.
    pub fn tls() -> Srs {
        let dir = tempfile::tempdir().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let cert_path = dir.path().join("srs.pem");
        std::fs::write(&cert_path, ck.cert.pem()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![ck.cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into()),
        )
        .unwrap();
        let config = Arc::new(config);
        let (port, state, stop) = stream_listener(Some(config));
        Srs {
            port,
            state,
            stop,
            tls_cert: Some(cert_path),
            tcp: false,
            _dir: Some(dir),
        }
    }

    /// Stops answering (a recorder that died): its sockets close.
    pub fn kill(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// A recorder over TCP.
    pub fn tcp() -> Srs {
        let (port, state, stop) = stream_listener(None);
        Srs {
            port,
            state,
            stop,
            tls_cert: None,
            tcp: true,
            _dir: None,
        }
    }

    pub fn uri(&self) -> String {
        if self.tls_cert.is_some() {
            format!("sips:srs@127.0.0.1:{}", self.port)
        } else if self.tcp {
            format!("sip:srs@127.0.0.1:{};transport=tcp", self.port)
        } else {
            format!("sip:srs@127.0.0.1:{}", self.port)
        }
    }

    pub fn invites(&self) -> usize {
        self.state.lock().unwrap().invites
    }

    /// Waits until `check` holds of the state (or panics after `within`,
    /// showing the refusals).
    pub fn wait(&self, within: Duration, what: &str, check: impl Fn(&SrsState) -> bool) {
        let deadline = Instant::now() + within;
        loop {
            {
                let s = self.state.lock().unwrap();
                if check(&s) {
                    return;
                }
                if Instant::now() > deadline {
                    panic!(
                        "the recorder never saw {what}; invites {}, refusals {:?}, sessions {}",
                        s.invites,
                        s.refusals,
                        s.sessions.len()
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The only recording session (panics if there is not exactly one).
    pub fn only<T>(&self, f: impl FnOnce(&Recorded) -> T) -> T {
        let s = self.state.lock().unwrap();
        assert_eq!(s.sessions.len(), 1, "recording sessions");
        f(s.sessions.values().next().unwrap())
    }
}

/// Seconds of audio the stream labelled `label` of `r` carried.
pub fn seconds(r: &Recorded, label: &str) -> f64 {
    r.audio
        .get(label)
        .map(|a| a.lock().unwrap().1.len() as f64 / 8000.0)
        .unwrap_or(0.0)
}

/// The last `secs` of the stream labelled `label`, at 8 kHz.
pub fn last(r: &Recorded, label: &str, secs: f64) -> Vec<f64> {
    let a = r.audio.get(label).unwrap().lock().unwrap();
    let n = (secs * 8000.0) as usize;
    a.1[a.1.len().saturating_sub(n)..].to_vec()
}

struct Msg {
    start: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Msg {
    fn parse(b: &[u8]) -> Option<Msg> {
        let split = b.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = std::str::from_utf8(&b[..split]).ok()?;
        let mut lines = head.split("\r\n");
        let start = lines.next()?.to_string();
        let headers = lines
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
            })
            .collect();
        Some(Msg {
            start,
            headers,
            body: b[split + 4..].to_vec(),
        })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

fn reply(
    m: &Msg,
    code: u16,
    reason: &str,
    to_tag: Option<&str>,
    extra: &[(&str, String)],
    body: Option<&[u8]>,
) -> Vec<u8> {
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for v in m.all("via") {
        out += &format!("Via: {v}\r\n");
    }
    out += &format!("From: {}\r\n", m.get("from").unwrap_or_default());
    let to = m.get("to").unwrap_or_default();
    match to_tag {
        Some(t) if !to.contains("tag=") => out += &format!("To: {to};tag={t}\r\n"),
        _ => out += &format!("To: {to}\r\n"),
    }
    out += &format!("Call-ID: {}\r\n", m.get("call-id").unwrap_or_default());
    out += &format!("CSeq: {}\r\n", m.get("cseq").unwrap_or_default());
    for (k, v) in extra {
        out += &format!("{k}: {v}\r\n");
    }
    let mut bytes = out.into_bytes();
    match body {
        Some(b) => {
            bytes.extend_from_slice(
                format!(
                    "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n",
                    b.len()
                )
                .as_bytes(),
            );
            bytes.extend_from_slice(b);
        }
        None => bytes.extend_from_slice(b"Content-Length: 0\r\n\r\n"),
    }
    bytes
}

fn handle(
    st: &Arc<Mutex<SrsState>>,
    halt: &Arc<AtomicBool>,
    port: u16,
    mode: Answer,
    transport: &str,
    b: &[u8],
) -> Option<Vec<u8>> {
    let tls = transport == "tls";
    let m = Msg::parse(b)?;
    let method = m.start.split(' ').next()?.to_string();
    if method == "SIP/2.0" || method == "ACK" {
        return None;
    }
    let call_id = m.get("call-id")?.to_string();
    let contact = [(
        "Contact",
        if transport == "udp" {
            format!("<sip:srs@127.0.0.1:{port}>")
        } else {
            format!("<sip:srs@127.0.0.1:{port};transport={transport}>")
        },
    )];
    match method.as_str() {
        "INVITE" => {
            let mut s = st.lock().unwrap();
            s.invites += 1;
            let reinvite = m.get("to").is_some_and(|t| t.contains("tag="));
            let checked = check_invite(&m, reinvite, tls);
            let (sdp, xml, labels, directions, keys) = match checked {
                Ok(v) => v,
                Err((code, why)) => {
                    s.refusals.push(why.clone());
                    let extra: Vec<(&str, String)> = if code == 420 {
                        vec![("Unsupported", "siprec".into())]
                    } else {
                        Vec::new()
                    };
                    return Some(reply(&m, code, &why, Some("srs"), &extra, None));
                }
            };
            if reinvite {
                let Some(r) = s.sessions.get_mut(&call_id) else {
                    return Some(reply(&m, 481, "No such recording session", None, &[], None));
                };
                if labels != r.labels {
                    s.refusals.push("a re-INVITE changed the streams".into());
                    return Some(reply(&m, 488, "Streams changed", None, &[], None));
                }
                r.metadata.push(xml);
                r.directions = directions;
                let answer = r.answer.clone();
                return Some(reply(&m, 200, "OK", None, &contact, Some(&answer)));
            }
            let _ = sdp;
            // Real ports, one per stream, each kept to its own buffer.
            let mut rec = Recorded {
                metadata: vec![xml],
                labels: labels.clone(),
                directions,
                srtp: tls,
                to_tag: format!("srs{}", s.sessions.len() + 1),
                ..Recorded::default()
            };
            let mut answer = format!(
                "v=0\r\no=srs 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            );
            let offered = if mode == Answer::OneStream {
                &labels[..1]
            } else {
                &labels[..]
            };
            for (i, label) in offered.iter().enumerate() {
                let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
                sock.set_read_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                let p = sock.local_addr().unwrap().port();
                // Over TLS: SRTP, with a key of its own in the answer (it
                // sends nothing, but SDES answers with one).
                let (profile, crypto) = if tls {
                    (
                        "RTP/SAVP",
                        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd\r\n",
                    )
                } else {
                    ("RTP/AVP", "")
                };
                answer += &format!(
                    "m=audio {p} {profile} 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=recvonly\r\n{crypto}a=label:{label}\r\n"
                );
                let buf = Arc::new(Mutex::new((255u8, Vec::new())));
                rec.audio.insert(label.clone(), buf.clone());
                let halt = halt.clone();
                let srtp = keys[i].map(SrtpRx::new);
                let forged = rec.forged.clone();
                std::thread::spawn(move || receive(sock, buf, halt, srtp, forged));
            }
            rec.answer = if mode == Answer::Garbage {
                b"\x00\x01 this is no SDP \xff".to_vec()
            } else {
                answer.into_bytes()
            };
            let tag = rec.to_tag.clone();
            let answer = rec.answer.clone();
            s.sessions.insert(call_id, rec);
            Some(reply(&m, 200, "OK", Some(&tag), &contact, Some(&answer)))
        }
        "BYE" => {
            let mut s = st.lock().unwrap();
            match s.sessions.get_mut(&call_id) {
                Some(r) => {
                    r.ended = true;
                    Some(reply(&m, 200, "OK", None, &[], None))
                }
                None => Some(reply(&m, 481, "No such recording session", None, &[], None)),
            }
        }
        "OPTIONS" => Some(reply(&m, 200, "OK", None, &[], None)),
        _ => Some(reply(&m, 405, "Method Not Allowed", Some("srs"), &[], None)),
    }
}

type Checked = (
    Vec<u8>,
    String,
    Vec<String>,
    Vec<String>,
    Vec<Option<[u8; 30]>>,
);

/// RFC 7866's requirements of an INVITE (and re-INVITE) from an SRC; over
/// TLS, every stream must be SRTP with an SDES key (RFC 4568).
fn check_invite(m: &Msg, reinvite: bool, tls: bool) -> Result<Checked, (u16, String)> {
    let bad = |why: String| Err((400, why));
    let require = m.all("require").join(",");
    if !require
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case("siprec"))
    {
        return Err((420, "Require: siprec missing".into()));
    }
    let contact = m.get("contact").unwrap_or_default();
    if !contact
        .split(';')
        .any(|p| p.trim().eq_ignore_ascii_case("+sip.src"))
    {
        return bad(format!("Contact lacks +sip.src: {contact}"));
    }
    let ct = m.get("content-type").unwrap_or_default();
    let (kind, params) = ct.split_once(';').unwrap_or((ct, ""));
    if !kind.trim().eq_ignore_ascii_case("multipart/mixed") {
        return bad(format!("body is {ct}, not multipart/mixed"));
    }
    let Some(boundary) = params.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.eq_ignore_ascii_case("boundary")
            .then(|| v.trim_matches('"').to_string())
    }) else {
        return bad("multipart without a boundary".into());
    };
    let body =
        String::from_utf8(m.body.clone()).map_err(|_| (400, "body not UTF-8".to_string()))?;
    let delimiter = format!("--{boundary}");
    let Some(end) = body.find(&format!("{delimiter}--")) else {
        return bad("multipart without its closing delimiter".into());
    };
    let mut sdp = None;
    let mut xml = None;
    for part in body[..end].split(&delimiter).skip(1) {
        let part = part.strip_prefix("\r\n").unwrap_or(part);
        let Some((head, content)) = part.split_once("\r\n\r\n") else {
            return bad("a part without its headers".into());
        };
        let content = content.strip_suffix("\r\n").unwrap_or(content);
        let field = |name: &str| {
            head.split("\r\n").find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_ascii_lowercase())
            })
        };
        match field("content-type").as_deref() {
            Some("application/sdp") if sdp.is_none() => sdp = Some(content.to_string()),
            Some("application/rs-metadata+xml") if xml.is_none() => {
                if field("content-disposition").as_deref() != Some("recording-session") {
                    return bad(
                        "the metadata part is not Content-Disposition: recording-session".into(),
                    );
                }
                xml = Some(content.to_string());
            }
            other => return bad(format!("unexpected or repeated part {other:?}")),
        }
    }
    let (Some(sdp), Some(xml)) = (sdp, xml) else {
        return bad("the SDP or the metadata part is missing".into());
    };
    // The SDP: audio streams, each labelled and sent only by the SRC.
    let mut labels = Vec::new();
    let mut directions = Vec::new();
    let mut keys = Vec::new();
    for media in sdp.split("\r\nm=").skip(1) {
        let savp = media.split(' ').nth(2) == Some("RTP/SAVP");
        let key = media.lines().find_map(|l| {
            let v = l.strip_prefix("a=crypto:")?;
            let mut f = v.split_whitespace();
            let (_tag, suite, params) = (f.next()?, f.next()?, f.next()?);
            if suite != "AES_CM_128_HMAC_SHA1_80" {
                return None;
            }
            let b64 = params.strip_prefix("inline:")?.split('|').next()?;
            use base64::Engine;
            let k = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
            <[u8; 30]>::try_from(k).ok()
        });
        if tls && !(savp && key.is_some()) {
            return Err((
                488,
                "media to a recorder over TLS must be SRTP with an SDES key".into(),
            ));
        }
        keys.push(key.filter(|_| savp));
        if !media.starts_with("audio ") {
            return bad(format!("a stream that is not audio: m={media}"));
        }
        let label = media.lines().find_map(|l| l.strip_prefix("a=label:"));
        let Some(label) = label else {
            return bad("a stream without a=label".into());
        };
        let dir = ["sendonly", "inactive", "sendrecv", "recvonly"]
            .into_iter()
            .find(|d| media.lines().any(|l| l == format!("a={d}")))
            .unwrap_or("sendrecv");
        if dir != "sendonly" && !(reinvite && dir == "inactive") {
            return bad(format!("stream {label} is {dir}, not sendonly"));
        }
        labels.push(label.trim().to_string());
        directions.push(dir.to_string());
    }
    if labels.is_empty() {
        return bad("no audio stream".into());
    }
    check_metadata(&xml, &labels).map_err(|why| (400, format!("metadata: {why}")))?;
    Ok((sdp.into_bytes(), xml, labels, directions, keys))
}

/// RFC 7865: the document's shape and its references.
fn check_metadata(xml: &str, labels: &[String]) -> Result<(), String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| e.to_string())?;
    let root = doc.root_element();
    if root.tag_name().name() != "recording" || root.tag_name().namespace() != Some(NS) {
        return Err(format!(
            "the root is {:?}, not recording in {NS}",
            root.tag_name()
        ));
    }
    let ours = |n: &roxmltree::Node, name: &str| {
        n.is_element() && n.tag_name().name() == name && n.tag_name().namespace() == Some(NS)
    };
    let kids = |name: &'static str| root.children().filter(move |n| ours(n, name));
    let mode = kids("datamode")
        .next()
        .and_then(|n| n.text())
        .unwrap_or_default();
    if mode != "complete" && mode != "partial" {
        return Err(format!("datamode {mode:?}"));
    }
    let sessions: Vec<&str> = kids("session")
        .filter_map(|n| n.attribute("session_id"))
        .collect();
    if sessions.is_empty() {
        return Err("no session".into());
    }
    let mut participants = Vec::new();
    for p in kids("participant") {
        let id = p
            .attribute("participant_id")
            .ok_or("a participant without an id")?;
        let aor = p
            .children()
            .find(|n| ours(n, "nameID"))
            .and_then(|n| n.attribute("aor"))
            .ok_or("a participant without nameID aor")?;
        if !aor.starts_with("sip:") && !aor.starts_with("sips:") && !aor.starts_with("tel:") {
            return Err(format!("participant aor {aor:?}"));
        }
        participants.push(id);
    }
    if participants.len() < 2 {
        return Err(format!("{} participants", participants.len()));
    }
    let mut streams = Vec::new();
    let mut stream_labels = Vec::new();
    for s in kids("stream") {
        let id = s.attribute("stream_id").ok_or("a stream without an id")?;
        let sid = s
            .attribute("session_id")
            .ok_or("a stream without a session")?;
        if !sessions.contains(&sid) {
            return Err(format!("stream {id} of an unknown session"));
        }
        let label = s
            .children()
            .find(|n| ours(n, "label"))
            .and_then(|n| n.text())
            .ok_or("a stream without a label")?;
        streams.push(id);
        stream_labels.push(label.to_string());
    }
    for l in labels {
        if !stream_labels.contains(l) {
            return Err(format!("SDP label {l} is in no metadata stream"));
        }
    }
    for a in kids("participantstreamassoc") {
        let p = a
            .attribute("participant_id")
            .ok_or("an association without a participant")?;
        if !participants.contains(&p) {
            return Err(format!("association of unknown participant {p}"));
        }
        for s in a.children().filter(|n| ours(n, "send") || ours(n, "recv")) {
            let id = s.text().unwrap_or_default();
            if !streams.contains(&id) {
                return Err(format!("association names unknown stream {id}"));
            }
        }
    }
    Ok(())
}

/// Keeps what a stream carries, decoded to linear samples.
fn receive(
    sock: UdpSocket,
    buf: Arc<Mutex<(u8, Vec<f64>)>>,
    halt: Arc<AtomicBool>,
    mut srtp: Option<SrtpRx>,
    forged: Arc<std::sync::atomic::AtomicU64>,
) {
    let mut b = [0u8; 2048];
    while !halt.load(Ordering::SeqCst) {
        let Ok(n) = sock.recv(&mut b) else { continue };
        if n < 12 || b[0] >> 6 != 2 {
            continue;
        }
        let cc = (b[0] & 0x0F) as usize;
        let pt = b[1] & 0x7F;
        let start = 12 + 4 * cc;
        if start > n {
            continue;
        }
        let payload = match srtp.as_mut() {
            Some(s) => match s.unprotect(&b[..n], start) {
                Some(p) => p,
                None => {
                    forged.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
            },
            None => b[start..n].to_vec(),
        };
        let mut a = buf.lock().unwrap();
        a.0 = pt;
        for &x in &payload {
            a.1.push(match pt {
                0 => ulaw(x),
                8 => alaw(x),
                _ => 0.0,
            });
        }
    }
}

fn ulaw(x: u8) -> f64 {
    let x = !x;
    let sign = x & 0x80;
    let exp = (x >> 4) & 7;
    let mant = (x & 0x0F) as i32;
    let mag = (((mant << 3) + 0x84) << exp) - 0x84;
    (if sign != 0 { -mag } else { mag }) as f64 / 32768.0
}

fn alaw(x: u8) -> f64 {
    let x = x ^ 0x55;
    let sign = x & 0x80;
    let exp = ((x >> 4) & 7) as i32;
    let mant = (x & 0x0F) as i32;
    let mag = if exp == 0 {
        (mant << 4) + 8
    } else {
        ((mant << 4) + 0x108) << (exp - 1)
    };
    (if sign != 0 { mag } else { -mag }) as f64 / 32768.0
}

/// A TCP listener (TLS with `tls`) serving each connection in a thread
/// of its own; returns its port, state and stop switch.
fn stream_listener(
    tls: Option<Arc<rustls::ServerConfig>>,
) -> (u16, Arc<Mutex<SrsState>>, Arc<AtomicBool>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let state = Arc::new(Mutex::new(SrsState::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let (st, halt) = (state.clone(), stop.clone());
    std::thread::spawn(move || {
        while !halt.load(Ordering::SeqCst) {
            // Non-blocking, so that the stop switch is seen.
            let Ok((tcp, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            let (st, halt, tls) = (st.clone(), halt.clone(), tls.clone());
            std::thread::spawn(move || {
                let _ = tcp.set_nonblocking(false);
                let _ = tcp.set_read_timeout(Some(Duration::from_millis(200)));
                match tls {
                    Some(config) => {
                        let Ok(conn) = rustls::ServerConnection::new(config) else {
                            return;
                        };
                        let conn = rustls::StreamOwned::new(conn, tcp);
                        serve_stream(conn, "tls", &st, &halt, port)
                    }
                    None => serve_stream(tcp, "tcp", &st, &halt, port),
                }
            });
        }
    });
    (port, state, stop)
}

/// One TCP or TLS connection from an SRC: SIP messages framed by
/// Content-Length, each answered on the same connection.
fn serve_stream(
    mut conn: impl std::io::Read + std::io::Write,
    transport: &str,
    st: &Arc<Mutex<SrsState>>,
    halt: &Arc<AtomicBool>,
    port: u16,
) {
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 16_384];
    while !halt.load(Ordering::SeqCst) {
        match conn.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => pending.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(_) => return,
        }
        // Every whole message in what arrived.
        loop {
            while pending.starts_with(b"\r\n") {
                pending.drain(..2);
            }
            let Some(head_end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
                break;
            };
            let head = String::from_utf8_lossy(&pending[..head_end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            let total = head_end + 4 + len;
            if pending.len() < total {
                break;
            }
            let msg: Vec<u8> = pending.drain(..total).collect();
            if let Some(reply) = handle(st, halt, port, Answer::Normal, transport, &msg)
                && conn.write_all(&reply).is_err()
            {
                return;
            }
        }
    }
}

/// The receiving side of one SRTP stream (RFC 3711, AES_CM_128_HMAC_SHA1_80),
/// written here from the RFC, apart from the product's own.
struct SrtpRx {
    enc: [u8; 16],
    auth: [u8; 20],
    salt: [u8; 14],
    roc: u32,
    last: Option<u16>,
}

fn aes_ctr(key: &[u8; 16], iv: [u8; 16], data: &mut [u8]) {
    use aws_lc_rs::cipher::{AES_128, EncryptingKey, EncryptionContext, UnboundCipherKey};
    use aws_lc_rs::iv::FixedLength;
    let k = EncryptingKey::ctr(UnboundCipherKey::new(&AES_128, key).unwrap()).unwrap();
    k.less_safe_encrypt(data, EncryptionContext::Iv128(FixedLength::from(iv)))
        .unwrap();
}

impl SrtpRx {
    fn new(master: [u8; 30]) -> SrtpRx {
        let key: [u8; 16] = master[..16].try_into().unwrap();
        let salt: [u8; 14] = master[16..].try_into().unwrap();
        // §4.3.1: key_id = label || r (r = 0), XORed into the salt's low
        // 56 bits; the PRF is AES-CM from that value times 2^16.
        let derive = |label: u8, n: usize| {
            let mut iv = [0u8; 16];
            iv[..14].copy_from_slice(&salt);
            iv[7] ^= label;
            let mut out = vec![0u8; n];
            aes_ctr(&key, iv, &mut out);
            out
        };
        SrtpRx {
            enc: derive(0, 16).try_into().unwrap(),
            auth: derive(1, 20).try_into().unwrap(),
            salt: derive(2, 14).try_into().unwrap(),
            roc: 0,
            last: None,
        }
    }

    /// The clear payload of an authentic packet (header `header_len`).
    fn unprotect(&mut self, p: &[u8], header_len: usize) -> Option<Vec<u8>> {
        use aws_lc_rs::hmac;
        if p.len() < header_len + 10 {
            return None;
        }
        let seq = u16::from_be_bytes([p[2], p[3]]);
        // §3.3.1: the sender's rollover counter, guessed from the last.
        let roc = match self.last {
            Some(l) if seq < l && l - seq > 0x8000 => self.roc.wrapping_add(1),
            Some(l) if seq > l && seq - l > 0x8000 => self.roc.wrapping_sub(1),
            _ => self.roc,
        };
        let (body, tag) = p.split_at(p.len() - 10);
        let mut signed = body.to_vec();
        signed.extend_from_slice(&roc.to_be_bytes());
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &self.auth);
        if hmac::sign(&key, &signed).as_ref()[..10] != *tag {
            return None;
        }
        if roc != self.roc || self.last.is_none_or(|l| seq > l || roc > self.roc) {
            self.roc = roc;
            self.last = Some(seq);
        }
        let index = (u64::from(roc) << 16) | u64::from(seq);
        let mut iv = [0u8; 16];
        iv[..14].copy_from_slice(&self.salt);
        for i in 0..4 {
            iv[4 + i] ^= p[8 + i];
        }
        for i in 0..6 {
            iv[8 + i] ^= (index >> (40 - 8 * i)) as u8;
        }
        let mut payload = body[header_len..].to_vec();
        aes_ctr(&self.enc, iv, &mut payload);
        Some(payload)
    }
}
