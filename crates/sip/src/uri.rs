//! SIP URIs and name-addr values (RFC 3261 §19.1, §25.1), parsed strictly
//! enough to refuse the malformed ones of RFC 4475 and liberally enough to
//! take the valid oddities.

use std::fmt;

/// Characters of an RFC 3261 `token`.
pub fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_token_char)
}

/// A URI as it appears in a request line or a name-addr: its scheme and, for
/// `sip:`/`sips:`, its parts. Other schemes (`tel:` and unknown ones) keep
/// only their text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uri {
    pub scheme: String,
    /// The user part, still %-escaped (empty when absent).
    pub user: String,
    pub host: String,
    pub port: Option<u16>,
    /// `;name[=value]` parameters, names lowercased.
    pub params: Vec<(String, Option<String>)>,
    /// Everything after the scheme's colon, as received.
    pub rest: String,
}

impl Uri {
    /// Parses any URI: `scheme ":" rest`, where the scheme is
    /// `ALPHA *(ALPHA / DIGIT / "+" / "-" / ".")` (RFC 3986). `sip` and
    /// `sips` URIs are parsed further.
    pub fn parse(s: &str) -> Result<Uri, &'static str> {
        let (scheme, rest) = s.split_once(':').ok_or("URI without a scheme")?;
        let mut chars = scheme.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
        if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) {
            return Err("malformed URI scheme");
        }
        if rest.is_empty() || rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("malformed URI");
        }
        let scheme = scheme.to_ascii_lowercase();
        let mut uri = Uri {
            scheme,
            user: String::new(),
            host: String::new(),
            port: None,
            params: Vec::new(),
            rest: rest.to_string(),
        };
        if uri.is_sip() {
            uri.parse_sip(rest)?;
        }
        Ok(uri)
    }

    pub fn is_sip(&self) -> bool {
        self.scheme == "sip" || self.scheme == "sips"
    }

    fn parse_sip(&mut self, rest: &str) -> Result<(), &'static str> {
        // The user part may itself hold ';' and '?' (semiuri, intmeth), so
        // the host starts after the last '@' and headers after its '?'.
        let (user, hostpart) = match rest.rsplit_once('@') {
            Some((u, h)) => (u, h),
            None => ("", rest),
        };
        let hostpart = hostpart.split_once('?').map_or(hostpart, |(a, _)| a);
        let user = user.split_once(':').map_or(user, |(u, _password)| u);
        let mut parts = hostpart.split(';');
        let hostport = parts.next().unwrap_or_default();
        let (host, port) = split_hostport(hostport)?;
        for p in parts {
            let (name, value) = match p.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (p, None),
            };
            if name.is_empty() {
                return Err("empty URI parameter");
            }
            self.params.push((name.to_ascii_lowercase(), value));
        }
        self.user = user.to_string();
        self.host = host;
        self.port = port;
        Ok(())
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref().unwrap_or(""))
    }

    /// The user part with %-escapes decoded (lossy on invalid UTF-8).
    pub fn user_decoded(&self) -> String {
        percent_decode(&self.user)
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.scheme, self.rest)
    }
}

/// `host[:port]`, with IPv6 references in brackets.
pub fn split_hostport(s: &str) -> Result<(String, Option<u16>), &'static str> {
    let (host, port) = if let Some(r) = s.strip_prefix('[') {
        let (h, after) = r.split_once(']').ok_or("unterminated IPv6 reference")?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("malformed host")?),
        };
        (format!("[{h}]"), port)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (s.to_string(), None),
        }
    };
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.[]:_".contains(c))
    {
        return Err("malformed host");
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().map_err(|_| "malformed port")?),
        None => None,
    };
    Ok((host.to_ascii_lowercase(), port))
}

pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// A `name-addr` or `addr-spec` with its header parameters: the value of a
/// From, To or Contact header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameAddr {
    pub display: Option<String>,
    pub uri: Uri,
    pub params: Vec<(String, Option<String>)>,
}

impl NameAddr {
    pub fn parse(s: &str) -> Result<NameAddr, &'static str> {
        let s = s.trim();
        let (display, uri_text, after) = if let Some(start) = find_laquot(s)? {
            let display_raw = s[..start].trim();
            let display = if display_raw.is_empty() {
                None
            } else if display_raw.starts_with('"') {
                Some(parse_quoted_whole(display_raw)?)
            } else {
                // *(token LWS): tokens only, no commas or other separators.
                if !display_raw.split_whitespace().all(is_token) {
                    return Err("display name must be a quoted string or tokens");
                }
                Some(display_raw.split_whitespace().collect::<Vec<_>>().join(" "))
            };
            let inner = &s[start + 1..];
            let end = inner.find('>').ok_or("unterminated <")?;
            let uri = &inner[..end];
            if uri.starts_with(char::is_whitespace) || uri.ends_with(char::is_whitespace) {
                return Err("whitespace inside <>");
            }
            (display, uri, &inner[end + 1..])
        } else {
            if s.contains('"') {
                return Err("unbalanced quotes");
            }
            // addr-spec: the URI ends at the first ';' (its parameters are
            // header parameters), and has no '?', ',' or whitespace.
            let (uri, after) = match s.find(';') {
                Some(i) => (&s[..i], &s[i..]),
                None => (s, ""),
            };
            if uri.contains(['?', ',']) {
                return Err("an addr-spec with headers or commas needs <>");
            }
            (None, uri, after)
        };
        let uri = Uri::parse(uri_text.trim())?;
        let params = parse_params(after)?;
        Ok(NameAddr {
            display,
            uri,
            params,
        })
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref().unwrap_or(""))
    }

    pub fn tag(&self) -> Option<&str> {
        self.param("tag").filter(|t| !t.is_empty())
    }
}

/// The index of the `<` that opens the URI, skipping quoted strings.
fn find_laquot(s: &str) -> Result<Option<usize>, &'static str> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if in_quotes {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quotes = false;
            }
        } else if c == '"' {
            in_quotes = true;
        } else if c == '<' {
            return Ok(Some(i));
        }
    }
    if in_quotes {
        return Err("unbalanced quotes");
    }
    Ok(None)
}

/// A whole quoted string (`"..."` with `\` escapes), unescaped.
fn parse_quoted_whole(s: &str) -> Result<String, &'static str> {
    let inner = s
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .ok_or("malformed quoted string")?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next().ok_or("malformed quoted string")?),
            '"' => return Err("malformed quoted string"),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// `*( SEMI name [EQUAL value] )` with LWS allowed around the separators;
/// an empty name (`;;`) is an error (RFC 4475 badinv01).
pub fn parse_params(s: &str) -> Result<Vec<(String, Option<String>)>, &'static str> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(Vec::new());
    }
    let s = s.strip_prefix(';').ok_or("junk after the address")?;
    let mut out = Vec::new();
    for p in split_outside_quotes(s, ';') {
        let (name, value) = match p.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (p.trim(), None),
        };
        if !is_token(name) {
            return Err("malformed parameter");
        }
        let value = match value {
            Some(v) if v.starts_with('"') => Some(parse_quoted_whole(v)?),
            Some(v) if v.is_empty() || v.contains(char::is_whitespace) => {
                return Err("malformed parameter value");
            }
            Some(v) => Some(v.to_string()),
            None => None,
        };
        out.push((name.to_ascii_lowercase(), value));
    }
    Ok(out)
}

/// Splits on `sep` outside quoted strings and angle brackets.
pub fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut in_q, mut esc, mut angle) = (false, false, false);
    let mut start = 0;
    for (i, c) in s.char_indices() {
        if in_q {
            if esc {
                esc = false;
            } else if c == '\\' {
                esc = true;
            } else if c == '"' {
                in_q = false;
            }
            continue;
        }
        match c {
            '"' => in_q = true,
            '<' => angle = true,
            '>' => angle = false,
            c if c == sep && !angle => {
                out.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_uris_split_into_parts() {
        let u = Uri::parse("sip:1001@pbx.example.com:5080;transport=tcp").unwrap();
        assert_eq!(u.user, "1001");
        assert_eq!(u.host, "pbx.example.com");
        assert_eq!(u.port, Some(5080));
        assert_eq!(u.param("transport"), Some("tcp"));
        let u = Uri::parse("sip:user;par=u%40example.net@example.com").unwrap();
        assert_eq!(u.host, "example.com");
        assert_eq!(Uri::parse("sip:[::1]:5060").unwrap().host, "[::1]");
    }

    #[test]
    fn schemes_must_be_well_formed() {
        assert!(Uri::parse("<sip:a@b>").is_err());
        assert_eq!(
            Uri::parse("soap.beep://192.0.2.103:3002").unwrap().scheme,
            "soap.beep"
        );
        assert!(Uri::parse("sip:a@b c").is_err());
    }

    #[test]
    fn name_addrs_refuse_the_torture_cases() {
        assert!(NameAddr::parse("Bell, Alexander <sip:a.g.bell@example.com>;tag=43").is_err());
        assert!(NameAddr::parse("\"Watson, Thomas\" < sip:t.watson@example.org >").is_err());
        assert!(NameAddr::parse("\"Mr. J. User <sip:j.user@example.com>").is_err());
        assert!(NameAddr::parse("\"Joe\" <sip:joe@example.org>;;;;").is_err());
        let n = NameAddr::parse("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(n.display.as_deref(), Some("caller"));
        assert_eq!(n.tag(), Some("323"));
        let n = NameAddr::parse("sip:caller@example.net ;   tag    = 1918181833n").unwrap();
        assert_eq!(n.tag(), Some("1918181833n"));
        let n =
            NameAddr::parse("\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>").unwrap();
        assert_eq!(n.display.as_deref(), Some("J Rosenberg \\\""));
    }
}
