//! SDP offer/answer (RFC 3264) for one audio stream in G.711 μ-law (PT 0)
//! or A-law (PT 8): enough for the MLC to anchor a call's RTP.

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

/// The audio stream a session description offers or answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Audio {
    /// Where to send RTP (`None` when the port is 0 or the address is
    /// 0.0.0.0: the stream is refused or on hold, RFC 2543 style).
    pub rtp: Option<SocketAddr>,
    /// The G.711 codecs on offer, in the offerer's order of preference.
    pub codecs: Vec<Codec>,
    pub direction: Direction,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SdpError {
    NotUtf8,
    NoAudio,
    NoConnection,
    /// No G.711 codec offered: answer 488.
    NoCommonCodec,
}

pub fn parse(body: &[u8]) -> Result<Audio, SdpError> {
    let text = std::str::from_utf8(body).map_err(|_| SdpError::NotUtf8)?;
    let mut session_c: Option<IpAddr> = None;
    let mut media_c: Option<IpAddr> = None;
    let mut audio: Option<(u16, Vec<u8>)> = None;
    let mut in_audio = false;
    let mut seen_audio = false;
    let mut rtpmap: Vec<(u8, String)> = Vec::new();
    let mut direction = Direction::SendRecv;
    for line in text.lines() {
        let line = line.trim_end();
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        match k {
            "c" => {
                let addr = v
                    .split_whitespace()
                    .nth(2)
                    .and_then(|a| a.split('/').next())
                    .and_then(|a| a.parse().ok());
                if in_audio {
                    media_c = addr;
                } else if !seen_audio {
                    session_c = addr;
                }
            }
            "m" => {
                let mut f = v.split_whitespace();
                let kind = f.next().unwrap_or_default();
                in_audio = kind == "audio" && audio.is_none();
                if in_audio {
                    seen_audio = true;
                    let port = f.next().and_then(|p| p.split('/').next()?.parse().ok());
                    let _proto = f.next();
                    let pts = f.filter_map(|p| p.parse().ok()).collect();
                    audio = Some((port.unwrap_or(0), pts));
                }
            }
            "a" if in_audio || !seen_audio => {
                if let Some(r) = v.strip_prefix("rtpmap:") {
                    if let Some((pt, name)) = r.split_once(' ')
                        && let Ok(pt) = pt.parse()
                    {
                        rtpmap.push((pt, name.to_string()));
                    }
                } else {
                    direction = match v {
                        "sendrecv" => Direction::SendRecv,
                        "sendonly" => Direction::SendOnly,
                        "recvonly" => Direction::RecvOnly,
                        "inactive" => Direction::Inactive,
                        _ => direction,
                    };
                }
            }
            _ => {}
        }
    }
    let (port, pts) = audio.ok_or(SdpError::NoAudio)?;
    let ip = media_c.or(session_c).ok_or(SdpError::NoConnection)?;
    let codecs: Vec<Codec> = pts
        .iter()
        .filter_map(|pt| Codec::from_pt(*pt, &rtpmap))
        .collect();
    if codecs.is_empty() {
        return Err(SdpError::NoCommonCodec);
    }
    let rtp = (port != 0 && !ip.is_unspecified()).then_some(SocketAddr::new(ip, port));
    Ok(Audio {
        rtp,
        codecs,
        direction,
    })
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
    let ip = local.ip();
    let fam = if ip.is_ipv6() { "IP6" } else { "IP4" };
    let pts: Vec<String> = codecs
        .iter()
        .map(|c| c.payload_type().to_string())
        .collect();
    let mut s = format!(
        "v=0\r\no=openturret {session_id} {version} IN {fam} {ip}\r\ns=-\r\nc=IN {fam} {ip}\r\nt=0 0\r\n\
         m=audio {} RTP/AVP {}\r\n",
        local.port(),
        pts.join(" ")
    );
    for c in codecs {
        s.push_str(&format!(
            "a=rtpmap:{} {}/8000\r\n",
            c.payload_type(),
            c.name()
        ));
    }
    s.push_str("a=ptime:20\r\n");
    s.push_str(&format!("a={}\r\n", direction.attr()));
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
}
