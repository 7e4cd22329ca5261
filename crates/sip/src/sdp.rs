//! SDP offer/answer (RFC 3264) for audio in G.711 μ-law (PT 0) or A-law
//! (PT 8): one stream for a call's RTP ([`parse`], [`build`]), or several,
//! each with its own port, direction and `a=label` (RFC 4574), as a
//! recording session offers them ([`parse_all`], [`build_streams`]).

use std::net::{IpAddr, SocketAddr};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    Pcmu,
    Pcma,
}

impl Codec {
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// The byte that encodes silence.
    pub fn silence(self) -> u8 {
        match self {
            Codec::Pcmu => 0xFF,
            Codec::Pcma => 0xD5,
        }
    }

    fn from_pt(pt: u8, rtpmap: &[(u8, String)]) -> Option<Codec> {
        let name = rtpmap
            .iter()
            .find(|(p, _)| *p == pt)
            .map(|(_, n)| n.to_ascii_uppercase());
        match (pt, name.as_deref()) {
            (_, Some(n)) if n.starts_with("PCMU/8000") => Some(Codec::Pcmu),
            (_, Some(n)) if n.starts_with("PCMA/8000") => Some(Codec::Pcma),
            (0, None) => Some(Codec::Pcmu),
            (8, None) => Some(Codec::Pcma),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn attr(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// What we answer to an offer with this direction.
    pub fn answer(self) -> Direction {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }
}

/// An audio stream a session description offers or answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Audio {
    /// Where to send RTP (`None` when the port is 0 or the address is
    /// 0.0.0.0: the stream is refused or on hold, RFC 2543 style).
    pub rtp: Option<SocketAddr>,
    /// The G.711 codecs on offer, in the offerer's order of preference.
    pub codecs: Vec<Codec>,
    pub direction: Direction,
    /// The stream's `a=label` (RFC 4574), if it has one.
    pub label: Option<String>,
    /// The payload type of RFC 4733 telephone events at 8 kHz (DTMF), if
    /// offered.
    pub events: Option<u8>,
    /// Whether the stream is SRTP (`RTP/SAVP`), and its `a=crypto` values
    /// (RFC 4568), in order.
    pub secure: bool,
    pub crypto: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SdpError {
    NotUtf8,
    NoAudio,
    NoConnection,
    /// No G.711 codec offered: answer 488.
    NoCommonCodec,
}

/// What the lines of one part of a description say: the session part
/// (before the first `m=`) or one media section.
#[derive(Default, Clone)]
struct Part {
    audio: bool,
    port: u16,
    pts: Vec<u8>,
    connection: Option<IpAddr>,
    rtpmap: Vec<(u8, String)>,
    direction: Option<Direction>,
    label: Option<String>,
    secure: bool,
    crypto: Vec<String>,
}

/// The session part and the media sections of `body`, in order.
fn parts(body: &[u8]) -> Result<(Part, Vec<Part>), SdpError> {
    let text = std::str::from_utf8(body).map_err(|_| SdpError::NotUtf8)?;
    let mut session = Part::default();
    let mut media: Vec<Part> = Vec::new();
    for line in text.lines() {
        let line = line.trim_end();
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if k == "m" {
            let mut f = v.split_whitespace();
            let audio = f.next() == Some("audio");
            let port = f
                .next()
                .and_then(|p| p.split('/').next()?.parse().ok())
                .unwrap_or(0);
            let proto = f.next().unwrap_or_default();
            media.push(Part {
                audio,
                port,
                secure: proto.eq_ignore_ascii_case("RTP/SAVP"),
                pts: f.filter_map(|p| p.parse().ok()).collect(),
                ..Part::default()
            });
            continue;
        }
        let part = media.last_mut().unwrap_or(&mut session);
        match k {
            "c" => {
                part.connection = v
                    .split_whitespace()
                    .nth(2)
                    .and_then(|a| a.split('/').next())
                    .and_then(|a| a.parse().ok());
            }
            "a" => {
                if let Some(r) = v.strip_prefix("rtpmap:") {
                    if let Some((pt, name)) = r.split_once(' ')
                        && let Ok(pt) = pt.parse()
                    {
                        part.rtpmap.push((pt, name.to_string()));
                    }
                } else if let Some(c) = v.strip_prefix("crypto:") {
                    if part.crypto.len() < 16 {
                        part.crypto.push(c.trim().to_string());
                    }
                } else if let Some(l) = v.strip_prefix("label:") {
                    part.label = Some(l.trim().to_string());
                } else {
                    part.direction = match v {
                        "sendrecv" => Some(Direction::SendRecv),
                        "sendonly" => Some(Direction::SendOnly),
                        "recvonly" => Some(Direction::RecvOnly),
                        "inactive" => Some(Direction::Inactive),
                        _ => part.direction,
                    };
                }
            }
            _ => {}
        }
    }
    Ok((session, media))
}

/// One audio section, with what the session part says where it is silent.
fn audio_of(session: &Part, m: &Part) -> Result<Audio, SdpError> {
    let ip = m
        .connection
        .or(session.connection)
        .ok_or(SdpError::NoConnection)?;
    let rtpmap: Vec<(u8, String)> = session.rtpmap.iter().chain(&m.rtpmap).cloned().collect();
    let codecs: Vec<Codec> = m
        .pts
        .iter()
        .filter_map(|pt| Codec::from_pt(*pt, &rtpmap))
        .collect();
    if codecs.is_empty() {
        return Err(SdpError::NoCommonCodec);
    }
    let rtp = (m.port != 0 && !ip.is_unspecified()).then_some(SocketAddr::new(ip, m.port));
    let events = m.pts.iter().copied().find(|pt| {
        rtpmap.iter().any(|(p, n)| {
            p == pt && n.len() >= 20 && n[..20].eq_ignore_ascii_case("telephone-event/8000")
        })
    });
    Ok(Audio {
        rtp,
        codecs,
        direction: m
            .direction
            .or(session.direction)
            .unwrap_or(Direction::SendRecv),
        label: m.label.clone(),
        events,
        secure: m.secure,
        crypto: m.crypto.clone(),
    })
}

/// The first audio stream of a description (a call's).
pub fn parse(body: &[u8]) -> Result<Audio, SdpError> {
    let (session, media) = parts(body)?;
    let first = media.iter().find(|m| m.audio).ok_or(SdpError::NoAudio)?;
    audio_of(&session, first)
}

/// Every audio stream of a description, in order; each must carry G.711.
pub fn parse_all(body: &[u8]) -> Result<Vec<Audio>, SdpError> {
    let (session, media) = parts(body)?;
    let all: Vec<Audio> = media
        .iter()
        .filter(|m| m.audio)
        .map(|m| audio_of(&session, m))
        .collect::<Result<_, _>>()?;
    if all.is_empty() {
        return Err(SdpError::NoAudio);
    }
    Ok(all)
}

/// One stream of our description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stream {
    /// Our RTP port for it.
    pub port: u16,
    /// In our order of preference (one, for an answer).
    pub codecs: Vec<Codec>,
    pub direction: Direction,
    /// Its `a=label` (RFC 4574), for a peer that tells streams apart.
    pub label: Option<String>,
    /// The payload type of the RFC 4733 telephone events (DTMF) we take
    /// and send on it, if any.
    pub events: Option<u8>,
    /// SRTP: our `a=crypto` value (RFC 4568); the stream is then
    /// `RTP/SAVP`.
    pub crypto: Option<String>,
}

/// Our session description: `codecs` in our order of preference (one, for
/// an answer), RTP at `local`.
pub fn build(
    local: SocketAddr,
    session_id: u64,
    version: u64,
    codecs: &[Codec],
    direction: Direction,
) -> Vec<u8> {
    build_call(local, session_id, version, codecs, direction, None, None)
}

/// A call's description: as [`build`], with RFC 4733 telephone events
/// (DTMF) at payload type `events` when given.
pub fn build_call(
    local: SocketAddr,
    session_id: u64,
    version: u64,
    codecs: &[Codec],
    direction: Direction,
    events: Option<u8>,
    crypto: Option<&str>,
) -> Vec<u8> {
    let stream = Stream {
        port: local.port(),
        codecs: codecs.to_vec(),
        direction,
        label: None,
        events,
        crypto: crypto.map(str::to_string),
    };
    build_streams(local.ip(), session_id, version, &[stream])
}

/// Our session description of several audio streams at `ip`.
pub fn build_streams(ip: IpAddr, session_id: u64, version: u64, streams: &[Stream]) -> Vec<u8> {
    let fam = if ip.is_ipv6() { "IP6" } else { "IP4" };
    let mut s = format!(
        "v=0\r\no=openturret {session_id} {version} IN {fam} {ip}\r\ns=-\r\nc=IN {fam} {ip}\r\nt=0 0\r\n"
    );
    for st in streams {
        let pts: Vec<String> = st
            .codecs
            .iter()
            .map(|c| c.payload_type())
            .chain(st.events)
            .map(|pt| pt.to_string())
            .collect();
        s.push_str(&format!(
            "m=audio {} {} {}\r\n",
            st.port,
            if st.crypto.is_some() {
                "RTP/SAVP"
            } else {
                "RTP/AVP"
            },
            pts.join(" ")
        ));
        if let Some(c) = &st.crypto {
            s.push_str(&format!("a=crypto:{c}\r\n"));
        }
        for c in &st.codecs {
            s.push_str(&format!(
                "a=rtpmap:{} {}/8000\r\n",
                c.payload_type(),
                c.name()
            ));
        }
        if let Some(pt) = st.events {
            s.push_str(&format!(
                "a=rtpmap:{pt} telephone-event/8000\r\na=fmtp:{pt} 0-15\r\n"
            ));
        }
        s.push_str("a=ptime:20\r\n");
        s.push_str(&format!("a={}\r\n", st.direction.attr()));
        if let Some(l) = &st.label {
            s.push_str(&format!("a=label:{l}\r\n"));
        }
    }
    s.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offer_yields_address_and_g711_codecs_in_order() {
        let offer = b"v=0\r\no=- 1 1 IN IP4 192.0.2.5\r\ns=-\r\nc=IN IP4 192.0.2.5\r\nt=0 0\r\n\
m=audio 49217 RTP/AVP 96 8 0 101\r\na=rtpmap:96 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\n";
        let a = parse(offer).unwrap();
        assert_eq!(a.rtp, Some("192.0.2.5:49217".parse().unwrap()));
        assert_eq!(a.codecs, vec![Codec::Pcma, Codec::Pcmu]);
        assert_eq!(a.direction, Direction::SendRecv);
        assert_eq!(a.events, Some(101));
        // And ours carries them when asked.
        let ours = build_call(
            "192.0.2.1:4000".parse().unwrap(),
            1,
            1,
            &[Codec::Pcmu],
            Direction::SendRecv,
            Some(101),
            None,
        );
        let back = parse(&ours).unwrap();
        assert_eq!((back.codecs, back.events), (vec![Codec::Pcmu], Some(101)));
        assert!(!back.secure && back.crypto.is_empty());
        // SRTP: RTP/SAVP with our a=crypto.
        let secure = build_call(
            "192.0.2.1:4000".parse().unwrap(),
            1,
            1,
            &[Codec::Pcmu],
            Direction::SendRecv,
            None,
            Some("1 AES_CM_128_HMAC_SHA1_80 inline:KEY"),
        );
        let back = parse(&secure).unwrap();
        assert!(back.secure, "{}", String::from_utf8_lossy(&secure));
        assert_eq!(
            back.crypto,
            vec!["1 AES_CM_128_HMAC_SHA1_80 inline:KEY".to_string()]
        );
        assert!(
            String::from_utf8(ours)
                .unwrap()
                .contains("m=audio 4000 RTP/AVP 0 101\r\n")
        );
    }

    #[test]
    fn no_g711_means_no_common_codec_and_hold_is_seen() {
        let opus =
            b"v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 96\r\na=rtpmap:96 opus/48000/2\r\n";
        assert_eq!(parse(opus), Err(SdpError::NoCommonCodec));
        let held = b"v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\na=sendonly\r\n";
        assert_eq!(parse(held).unwrap().direction, Direction::SendOnly);
    }

    #[test]
    fn our_description_parses_back() {
        let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let b = build(
            local,
            7,
            1,
            &[Codec::Pcmu, Codec::Pcma],
            Direction::SendRecv,
        );
        let a = parse(&b).unwrap();
        assert_eq!(a.rtp, Some(local));
        assert_eq!(a.codecs, vec![Codec::Pcmu, Codec::Pcma]);
    }

    #[test]
    fn one_stream_is_described_exactly_as_before() {
        let local: SocketAddr = "192.0.2.1:40000".parse().unwrap();
        let b = build(local, 7, 2, &[Codec::Pcma], Direction::SendOnly);
        assert_eq!(
            String::from_utf8(b).unwrap(),
            "v=0\r\no=openturret 7 2 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
             m=audio 40000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=ptime:20\r\na=sendonly\r\n"
        );
    }

    #[test]
    fn several_labelled_streams_go_out_and_come_back_in_order() {
        let streams = [
            Stream {
                port: 40000,
                codecs: vec![Codec::Pcmu],
                direction: Direction::SendOnly,
                label: Some("1".into()),
                events: None,
                crypto: None,
            },
            Stream {
                port: 40002,
                codecs: vec![Codec::Pcma],
                direction: Direction::SendOnly,
                label: Some("2".into()),
                events: None,
                crypto: None,
            },
        ];
        let b = build_streams("192.0.2.1".parse().unwrap(), 9, 1, &streams);
        let all = parse_all(&b).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].rtp, Some("192.0.2.1:40000".parse().unwrap()));
        assert_eq!(
            (
                all[1].codecs.clone(),
                all[1].direction,
                all[1].label.as_deref()
            ),
            (vec![Codec::Pcma], Direction::SendOnly, Some("2"))
        );
        // A call reads the first stream only.
        assert_eq!(parse(&b).unwrap().label.as_deref(), Some("1"));
        // Every stream must carry G.711; and there must be one.
        let mixed = b"v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\nm=audio 4002 RTP/AVP 96\r\na=rtpmap:96 opus/48000/2\r\n";
        assert_eq!(parse_all(mixed), Err(SdpError::NoCommonCodec));
        assert_eq!(parse(mixed).unwrap().codecs, vec![Codec::Pcmu]);
        let video = b"v=0\r\nc=IN IP4 1.2.3.4\r\nm=video 4000 RTP/AVP 96\r\n";
        assert_eq!(parse_all(video), Err(SdpError::NoAudio));
        // Each stream's own connection and direction; the session's apply
        // where a stream is silent.
        let per = b"v=0\r\nc=IN IP4 1.2.3.4\r\na=recvonly\r\nm=audio 4000 RTP/AVP 0\r\nm=audio 4002 RTP/AVP 8\r\nc=IN IP4 5.6.7.8\r\na=inactive\r\n";
        let all = parse_all(per).unwrap();
        assert_eq!(
            (all[0].rtp, all[0].direction),
            (Some("1.2.3.4:4000".parse().unwrap()), Direction::RecvOnly)
        );
        assert_eq!(
            (all[1].rtp, all[1].direction),
            (Some("5.6.7.8:4002".parse().unwrap()), Direction::Inactive)
        );
    }
}
