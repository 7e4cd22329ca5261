//! SIP messages: a strict, bounded parser (RFC 3261 §7, §20; the RFC 4475
//! torture messages are its test suite) and the text form we send.
//!
//! Bounds: a message is at most [`MAX_MESSAGE`] bytes with at most
//! [`MAX_HEADERS`] header lines; anything larger is refused before any
//! allocation grows with it.

use std::fmt::Write as _;

use crate::uri::{self, NameAddr, Uri};

/// The largest message accepted (a UDP datagram's payload limit).
pub const MAX_MESSAGE: usize = 65_535;
/// The most header lines accepted in one message.
pub const MAX_HEADERS: usize = 256;

/// A header as received: lowercased full name (compact forms expanded) and
/// its unfolded value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// One Via entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Via {
    /// `UDP`, `TCP`, `TLS`, ... uppercased.
    pub transport: String,
    pub host: String,
    pub port: Option<u16>,
    pub params: Vec<(String, Option<String>)>,
    /// The entry as received, to copy into responses.
    pub raw: String,
}

impl Via {
    pub fn branch(&self) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == "branch")
            .and_then(|(_, v)| v.as_deref())
    }

    /// Whether the branch carries the RFC 3261 magic cookie (otherwise the
    /// sender follows RFC 2543 and transactions are matched the old way).
    pub fn is_3261(&self) -> bool {
        self.branch()
            .is_some_and(|b| b.len() > 7 && b.starts_with("z9hG4bK"))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CSeq {
    pub number: u32,
    pub method: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Start {
    Request { method: String, uri: String },
    Response { code: u16, reason: String },
}

/// A parsed message with its essential headers checked.
#[derive(Clone, Debug)]
pub struct Message {
    pub start: Start,
    pub headers: Vec<Header>,
    pub vias: Vec<Via>,
    pub from: NameAddr,
    pub to: NameAddr,
    pub call_id: String,
    pub cseq: CSeq,
    pub body: Vec<u8>,
}

/// Why a message was not accepted, and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Answer with this status (a request we could read enough of to answer).
    Reject {
        code: u16,
        reason: &'static str,
        /// Why, for the log and a Warning header.
        detail: &'static str,
        /// What could be read, to build the answer from.
        headers: Vec<Header>,
    },
    /// Discard silently (responses we cannot read, requests we cannot even
    /// answer, a negative Content-Length).
    Discard(&'static str),
    /// A stream carries less than one whole message yet.
    Incomplete,
}

impl ParseError {
    pub fn detail(&self) -> &'static str {
        match self {
            ParseError::Reject { detail, .. } => detail,
            ParseError::Discard(d) => d,
            ParseError::Incomplete => "incomplete",
        }
    }
}

/// How the message arrived: a datagram is one message (bytes after its
/// Content-Length are ignored); a stream needs a Content-Length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    Datagram,
    Stream,
}

fn expand_compact(name: &str) -> &str {
    match name {
        "i" => "call-id",
        "m" => "contact",
        "e" => "content-encoding",
        "l" => "content-length",
        "c" => "content-type",
        "f" => "from",
        "s" => "subject",
        "k" => "supported",
        "t" => "to",
        "v" => "via",
        "o" => "event",
        "r" => "refer-to",
        "u" => "allow-events",
        other => other,
    }
}

/// Headers that may appear once only.
const SINGLE: &[&str] = &[
    "to",
    "from",
    "call-id",
    "cseq",
    "content-length",
    "content-type",
    "max-forwards",
];

/// Where the head ends: the index of the blank line's end, if present.
fn head_end(buf: &[u8]) -> Option<(usize, usize)> {
    // (end of head text, start of body)
    if let Some(i) = find(buf, b"\r\n\r\n") {
        return Some((i, i + 4));
    }
    find(buf, b"\n\n").map(|i| (i, i + 2))
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// For a stream: the length of the first whole message in `buf`, once it
/// has arrived (skipping leading CRLF keep-alives is the caller's job).
pub fn stream_message_len(buf: &[u8]) -> Result<usize, ParseError> {
    let Some((head, body_start)) = head_end(buf) else {
        if buf.len() > MAX_MESSAGE {
            return Err(ParseError::Discard("header section too large"));
        }
        return Err(ParseError::Incomplete);
    };
    let text = std::str::from_utf8(&buf[..head]).map_err(|_| ParseError::Discard("not UTF-8"))?;
    let mut len: usize = 0;
    for line in text.split('\n') {
        if let Some((n, v)) = line.split_once(':') {
            let n = n.trim().to_ascii_lowercase();
            if expand_compact(&n) == "content-length" {
                len = v
                    .trim()
                    .parse()
                    .map_err(|_| ParseError::Discard("malformed Content-Length"))?;
            }
        }
    }
    if len > MAX_MESSAGE {
        return Err(ParseError::Discard("body too large"));
    }
    if buf.len() < body_start + len {
        return Err(ParseError::Incomplete);
    }
    Ok(body_start + len)
}

pub fn parse(buf: &[u8], framing: Framing) -> Result<Message, ParseError> {
    if buf.len() > MAX_MESSAGE {
        return Err(ParseError::Discard("message too large"));
    }
    let (head_len, body_start) = head_end(buf).unwrap_or((buf.len(), buf.len()));
    let head = std::str::from_utf8(&buf[..head_len])
        .map_err(|_| ParseError::Discard("header section is not UTF-8"))?;

    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let start_line = lines.next().unwrap_or_default();
    let is_response = start_line.starts_with("SIP/");

    // Unfold and split the headers first, so a refusal can echo them.
    let mut headers: Vec<Header> = Vec::new();
    let mut bad_header: Option<&'static str> = None;
    for line in lines {
        if line.starts_with([' ', '\t']) {
            match headers.last_mut() {
                Some(h) => {
                    h.value.push(' ');
                    h.value.push_str(line.trim());
                }
                None => bad_header = bad_header.or(Some("continuation line before any header")),
            }
            continue;
        }
        if headers.len() >= MAX_HEADERS {
            return Err(ParseError::Discard("too many headers"));
        }
        match line.split_once(':') {
            Some((name, value)) if uri::is_token(name.trim_end()) => {
                let name = name.trim_end().to_ascii_lowercase();
                headers.push(Header {
                    name: expand_compact(&name).to_string(),
                    value: value.trim().to_string(),
                });
            }
            _ => bad_header = bad_header.or(Some("malformed header line")),
        }
    }

    let reject = |code: u16, reason: &'static str, detail: &'static str, headers: &Vec<Header>| {
        if is_response {
            ParseError::Discard(detail)
        } else {
            ParseError::Reject {
                code,
                reason,
                detail,
                headers: headers.clone(),
            }
        }
    };
    let bad =
        |detail: &'static str, headers: &Vec<Header>| reject(400, "Bad Request", detail, headers);

    let start = parse_start(start_line).map_err(|(code, detail)| match code {
        505 => reject(505, "Version Not Supported", detail, &headers),
        _ => bad(detail, &headers),
    })?;
    if let Some(d) = bad_header {
        return Err(bad(d, &headers));
    }

    // Content-Length first: a negative one means the message is discarded.
    let content_length = match single(&headers, "content-length") {
        Err(d) => return Err(bad(d, &headers)),
        Ok(None) => None,
        Ok(Some(v)) => {
            if v.starts_with('-') {
                return Err(ParseError::Discard("negative Content-Length"));
            }
            Some(
                v.parse::<usize>()
                    .map_err(|_| bad("malformed Content-Length", &headers))?,
            )
        }
    };
    let available = &buf[body_start.min(buf.len())..];
    let body = match (content_length, framing) {
        (Some(n), _) if n > available.len() => {
            return Err(bad("Content-Length is larger than the body", &headers));
        }
        (Some(n), _) => available[..n].to_vec(),
        (None, Framing::Datagram) => available.to_vec(),
        (None, Framing::Stream) => Vec::new(),
    };

    for name in SINGLE {
        if let Err(d) = single(&headers, name) {
            return Err(bad(d, &headers));
        }
    }
    let need = |name: &str| -> Result<&str, ParseError> {
        single(&headers, name)
            .ok()
            .flatten()
            .ok_or_else(|| bad("a required header is missing", &headers))
    };
    let call_id = need("call-id")?.to_string();
    if call_id.is_empty() || call_id.contains(char::is_whitespace) {
        return Err(bad("malformed Call-ID", &headers));
    }
    let cseq = parse_cseq(need("cseq")?).map_err(|d| bad(d, &headers))?;
    let from = NameAddr::parse(need("from")?).map_err(|d| bad(d, &headers))?;
    let to = NameAddr::parse(need("to")?).map_err(|d| bad(d, &headers))?;
    if let Some(mf) = single(&headers, "max-forwards").ok().flatten()
        && (mf.is_empty() || !mf.bytes().all(|b| b.is_ascii_digit()) || mf.len() > 10)
    {
        return Err(bad("malformed Max-Forwards", &headers));
    }
    let mut vias = Vec::new();
    for h in headers.iter().filter(|h| h.name == "via") {
        for v in uri::split_outside_quotes(&h.value, ',') {
            vias.push(parse_via(v).map_err(|d| bad(d, &headers))?);
        }
    }
    if vias.is_empty() {
        return Err(ParseError::Discard("no Via: nowhere to answer"));
    }
    if let Start::Request { method, .. } = &start
        && !method.is_empty()
        && vias[0].transport.is_empty()
    {
        return Err(bad("malformed Via", &headers));
    }
    Ok(Message {
        start,
        headers,
        vias,
        from,
        to,
        call_id,
        cseq,
        body,
    })
}

/// The value of a header that may appear once; `Err` when it appears more.
fn single<'a>(headers: &'a [Header], name: &str) -> Result<Option<&'a str>, &'static str> {
    let mut found = headers.iter().filter(|h| h.name == name);
    let first = found.next();
    if found.next().is_some() {
        return Err("a single-valued header appears more than once");
    }
    Ok(first.map(|h| h.value.as_str()))
}

fn parse_start(line: &str) -> Result<Start, (u16, &'static str)> {
    if let Some(rest) = line.strip_prefix("SIP/") {
        let (version, rest) = rest.split_once(' ').ok_or((400, "malformed status line"))?;
        if version != "2.0" {
            return Err((400, "unsupported SIP version in a response"));
        }
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err((400, "malformed status code"));
        }
        let code: u16 = code.parse().map_err(|_| (400, "malformed status code"))?;
        if !(100..=699).contains(&code) {
            return Err((400, "status code out of range"));
        }
        return Ok(Start::Response {
            code,
            reason: reason.to_string(),
        });
    }
    // Trailing whitespace is tolerated; anything else must be exactly
    // "METHOD SP URI SP SIP/2.0".
    let parts: Vec<&str> = line.trim_end().split(' ').collect();
    let [method, uri, version] = parts.as_slice() else {
        return Err((400, "malformed request line"));
    };
    if !uri::is_token(method) {
        return Err((400, "malformed method"));
    }
    if !version.starts_with("SIP/") {
        return Err((400, "malformed request line"));
    }
    if *version != "SIP/2.0" {
        return Err((505, "only SIP/2.0 is supported"));
    }
    if uri.is_empty() {
        return Err((400, "empty Request-URI"));
    }
    Uri::parse(uri).map_err(|_| (400, "malformed Request-URI"))?;
    Ok(Start::Request {
        method: method.to_string(),
        uri: uri.to_string(),
    })
}

fn parse_cseq(v: &str) -> Result<CSeq, &'static str> {
    let mut it = v.split_whitespace();
    let (Some(n), Some(m), None) = (it.next(), it.next(), it.next()) else {
        return Err("malformed CSeq");
    };
    if n.len() > 10 || !n.bytes().all(|b| b.is_ascii_digit()) {
        return Err("malformed CSeq number");
    }
    let number: u64 = n.parse().map_err(|_| "malformed CSeq number")?;
    if number >= 1 << 31 {
        return Err("CSeq number out of range");
    }
    if !uri::is_token(m) {
        return Err("malformed CSeq method");
    }
    Ok(CSeq {
        number: number as u32,
        method: m.to_string(),
    })
}

/// `SIP / 2.0 / UDP sent-by *(; param)`, LWS allowed around the slashes.
fn parse_via(v: &str) -> Result<Via, &'static str> {
    let raw = v.trim().to_string();
    let mut rest = raw.as_str();
    let mut proto = Vec::new();
    for i in 0..3 {
        let r = rest.trim_start();
        let end = r
            .find(|c: char| c == '/' || c.is_whitespace())
            .unwrap_or(r.len());
        proto.push(&r[..end]);
        rest = r[end..].trim_start();
        if i < 2 {
            rest = rest.strip_prefix('/').ok_or("malformed Via protocol")?;
        }
    }
    if !proto[0].eq_ignore_ascii_case("SIP") || !uri::is_token(proto[2]) {
        return Err("malformed Via protocol");
    }
    if proto[1] != "2.0" {
        return Err("malformed Via version");
    }
    let (sent_by, params) = match rest.find(';') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let sent_by: String = sent_by.split_whitespace().collect();
    let (host, port) = uri::split_hostport(&sent_by)?;
    let params = uri::parse_params(params)?;
    Ok(Via {
        transport: proto[2].to_ascii_uppercase(),
        host,
        port,
        params,
        raw,
    })
}

impl Message {
    pub fn method(&self) -> Option<&str> {
        match &self.start {
            Start::Request { method, .. } => Some(method),
            Start::Response { .. } => None,
        }
    }

    pub fn code(&self) -> Option<u16> {
        match &self.start {
            Start::Response { code, .. } => Some(*code),
            Start::Request { .. } => None,
        }
    }

    pub fn request_uri(&self) -> Option<Uri> {
        match &self.start {
            Start::Request { uri, .. } => Uri::parse(uri).ok(),
            Start::Response { .. } => None,
        }
    }

    /// The first value of a header (by full lowercase name).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// Every occurrence of a header, unsplit (for headers whose values hold
    /// commas, such as WWW-Authenticate).
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|h| h.name == name)
            .map(|h| h.value.as_str())
            .collect()
    }

    /// Every comma-separated value of every occurrence of a header.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|h| h.name == name)
            .flat_map(|h| uri::split_outside_quotes(&h.value, ','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect()
    }

    /// The first Contact, parsed.
    pub fn contact(&self) -> Option<NameAddr> {
        self.header_values("contact")
            .first()
            .and_then(|c| NameAddr::parse(c).ok())
    }

    pub fn content_type(&self) -> Option<String> {
        self.header("content-type").map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
    }

    pub fn expires(&self) -> Option<u32> {
        self.header("expires").and_then(|v| v.trim().parse().ok())
    }
}

pub fn header<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.name == name)
        .map(|h| h.value.as_str())
}

/// A message to send, built line by line.
#[derive(Clone, Debug)]
pub struct Builder {
    head: String,
    body: Vec<u8>,
}

impl Builder {
    pub fn request(method: &str, uri: &str) -> Builder {
        Builder {
            head: format!("{method} {uri} SIP/2.0\r\n"),
            body: Vec::new(),
        }
    }

    pub fn response(code: u16, reason: &str) -> Builder {
        Builder {
            head: format!("SIP/2.0 {code} {reason}\r\n"),
            body: Vec::new(),
        }
    }

    /// Adds a header line; CR and LF in the value are replaced so a value
    /// can never inject a header.
    pub fn header(mut self, name: &str, value: impl AsRef<str>) -> Builder {
        let value = value.as_ref().replace(['\r', '\n'], " ");
        let _ = write!(self.head, "{name}: {value}\r\n");
        self
    }

    pub fn body(mut self, content_type: &str, body: Vec<u8>) -> Builder {
        self = self.header("Content-Type", content_type);
        self.body = body;
        self
    }

    /// A `multipart/mixed` body (RFC 2046 §5.1) of `parts`, each a content
    /// type, a content disposition if any, and its bytes, in order (a
    /// recording session's SDP and its metadata, RFC 7866).
    pub fn multipart_body(self, parts: &[Part<'_>]) -> Builder {
        let (content_type, body) = multipart(parts);
        self.body(&content_type, body)
    }

    pub fn build(self) -> Vec<u8> {
        let mut out = self.head.into_bytes();
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", self.body.len()).as_bytes());
        out.extend_from_slice(&self.body);
        out
    }
}

/// One part of a `multipart/mixed` body: its content type, its content
/// disposition (RFC 7866 marks the metadata `recording-session`), its
/// bytes.
pub type Part<'a> = (&'a str, Option<&'a str>, &'a [u8]);

/// A `multipart/mixed` body of `parts`: the content type to send it under
/// (with its boundary) and the body. The boundary is random and checked
/// against every part.
pub fn multipart(parts: &[Part<'_>]) -> (String, Vec<u8>) {
    let boundary = loop {
        let b = format!("OT-{}", random_token());
        let inside = |p: &[u8]| p.windows(b.len()).any(|w| w == b.as_bytes());
        if !parts.iter().any(|(_, _, p)| inside(p)) {
            break b;
        }
    };
    let mut body = Vec::new();
    for (content_type, disposition, part) in parts {
        let content_type = content_type.replace(['\r', '\n'], " ");
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Type: {content_type}\r\n").as_bytes(),
        );
        if let Some(d) = disposition {
            let d = d.replace(['\r', '\n'], " ");
            body.extend_from_slice(format!("Content-Disposition: {d}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(part);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/mixed;boundary={boundary}"), body)
}

/// The parts (content type, bytes) of a `multipart/mixed` body sent under
/// `content_type`, or `None` when it is not one or is malformed (no
/// boundary, a part without its header block, no closing delimiter).
pub fn multipart_parts(content_type: &str, body: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let (kind, params) = content_type.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/mixed") {
        return None;
    }
    let boundary = params.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
    })?;
    let delimiter = format!("--{boundary}");
    let find = |from: usize| {
        body.get(from..)?
            .windows(delimiter.len())
            .position(|w| w == delimiter.as_bytes())
            .map(|i| i + from)
    };
    let mut at = find(0)?;
    let mut parts = Vec::new();
    loop {
        let after = at + delimiter.len();
        if body.get(after..after + 2) == Some(b"--") {
            return Some(parts);
        }
        let start = after + body.get(after..)?.strip_prefix(b"\r\n").map(|_| 2)?;
        let next = find(start)?;
        // The part ends at the CRLF before the next delimiter.
        let end = next
            .checked_sub(2)
            .filter(|e| body.get(*e..next) == Some(b"\r\n"))?;
        let part = body.get(start..end)?;
        let split = part.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = std::str::from_utf8(&part[..split]).ok()?;
        let content_type = head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })?;
        parts.push((content_type, part[split + 4..].to_vec()));
        at = next;
    }
}

/// The answer to a request: its Via, From, To (with `to_tag` added when
/// the request's To has none), Call-ID and CSeq copied, as RFC 3261
/// §8.2.6.2 says. Works from the raw headers, so malformed requests can be
/// answered too.
pub fn response_to(headers: &[Header], code: u16, reason: &str, to_tag: Option<&str>) -> Builder {
    let mut b = Builder::response(code, reason);
    for h in headers.iter().filter(|h| h.name == "via") {
        b = b.header("Via", &h.value);
    }
    if let Some(v) = header(headers, "from") {
        b = b.header("From", v);
    }
    if let Some(v) = header(headers, "to") {
        let has_tag = NameAddr::parse(v).ok().is_some_and(|n| n.tag().is_some());
        match to_tag {
            Some(tag) if !has_tag && code > 100 => b = b.header("To", format!("{v};tag={tag}")),
            _ => b = b.header("To", v),
        }
    }
    for name in ["call-id", "cseq"] {
        if let Some(v) = header(headers, name) {
            b = b.header(if name == "cseq" { "CSeq" } else { "Call-ID" }, v);
        }
    }
    b
}

/// 64 unpredictable bits: a counter through SipHash under a key drawn
/// from the OS once, so a busy MLC makes no system call per tag, branch or
/// RTP stream, and no two values repeat within a process.
pub fn random_u64() -> u64 {
    use std::hash::BuildHasher;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static KEY: OnceLock<std::hash::RandomState> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let key = KEY.get_or_init(|| {
        // RandomState's keys come from the OS; mix in more to be sure.
        let mut extra = [0u8; 8];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut extra);
        COUNTER.store(u64::from_le_bytes(extra), Ordering::Relaxed);
        std::hash::RandomState::new()
    });
    key.hash_one(COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A fresh random token (tags, branches, Call-IDs): 16 hex digits.
pub fn random_token() -> String {
    format!("{:016x}", random_u64())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &[u8] = b"OPTIONS sip:line@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n\
From: <sip:a@b>;tag=1\r\nTo: <sip:line@127.0.0.1>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\
Content-Length: 0\r\n\r\n";

    #[test]
    fn a_plain_request_parses() {
        let m = parse(OPTIONS, Framing::Datagram).unwrap();
        assert_eq!(m.method(), Some("OPTIONS"));
        assert_eq!(m.vias[0].port, Some(5070));
        assert_eq!(m.cseq.number, 1);
        assert_eq!(m.from.tag(), Some("1"));
    }

    #[test]
    fn responses_copy_the_transaction_headers_and_add_a_tag() {
        let m = parse(OPTIONS, Framing::Datagram).unwrap();
        let r = response_to(&m.headers, 200, "OK", Some("t9")).build();
        let back = parse(&r, Framing::Datagram).unwrap();
        assert_eq!(back.code(), Some(200));
        assert_eq!(back.to.tag(), Some("t9"));
        assert_eq!(back.call_id, "x");
        assert_eq!(back.vias, m.vias);
    }

    #[test]
    fn a_stream_frames_by_content_length() {
        let mut two = OPTIONS.to_vec();
        two.extend_from_slice(OPTIONS);
        assert_eq!(stream_message_len(&two).unwrap(), OPTIONS.len());
        assert_eq!(
            stream_message_len(&OPTIONS[..20]),
            Err(ParseError::Incomplete)
        );
    }

    #[test]
    fn tokens_do_not_repeat() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            assert!(seen.insert(random_token()));
        }
        assert_eq!(random_token().len(), 16);
    }

    #[test]
    fn builder_values_cannot_inject_headers() {
        let b = Builder::request("OPTIONS", "sip:a@b")
            .header("Subject", "x\r\nEvil: 1")
            .build();
        assert!(!String::from_utf8(b).unwrap().contains("\r\nEvil"));
    }

    #[test]
    fn a_multipart_body_travels_in_a_message_and_its_parts_come_back() {
        let sdp = b"v=0\r\nm=audio 4000 RTP/AVP 0\r\n";
        let xml =
            b"<?xml version=\"1.0\"?><recording xmlns=\"urn:ietf:params:xml:ns:recording:1\"/>";
        let m = Builder::request("INVITE", "sip:srs@example.com")
            .header("Via", "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKmp")
            .header("Max-Forwards", "70")
            .header("From", "<sip:src@example.com>;tag=a")
            .header("To", "<sip:srs@example.com>")
            .header("Call-ID", "mp@x")
            .header("CSeq", "1 INVITE")
            .multipart_body(&[
                ("application/sdp", None, &sdp[..]),
                (
                    "application/rs-metadata+xml",
                    Some("recording-session"),
                    &xml[..],
                ),
            ])
            .build();
        let m = parse(&m, Framing::Datagram).unwrap();
        assert_eq!(m.content_type().as_deref(), Some("multipart/mixed"));
        let ct = m.header("content-type").unwrap();
        assert!(ct.starts_with("multipart/mixed;boundary=OT-"), "{ct}");
        let parts = multipart_parts(m.header("content-type").unwrap(), &m.body).unwrap();
        assert_eq!(
            parts,
            vec![
                ("application/sdp".to_string(), sdp.to_vec()),
                ("application/rs-metadata+xml".to_string(), xml.to_vec()),
            ]
        );
        // Malformed: no closing delimiter; not multipart; no boundary.
        assert!(
            m.body
                .windows(40)
                .any(|w| w == b"Content-Disposition: recording-session\r\n")
        );
        let (ct, body) = multipart(&[("text/plain", None, b"x")]);
        let cut = &body[..body.len() - 10];
        assert_eq!(multipart_parts(&ct, cut), None);
        assert_eq!(multipart_parts("application/sdp", &body), None);
        assert_eq!(multipart_parts("multipart/mixed", &body), None);
    }
}
