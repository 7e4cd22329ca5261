//! HTTP digest authentication for SIP (RFC 3261 §22, RFC 8760): answering a
//! 401/407 challenge with MD5 or SHA-256, with or without `qop=auth`.

use md5::Md5;
use sha2::{Digest, Sha256};

/// A parsed `WWW-Authenticate` / `Proxy-Authenticate` challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    /// Whether the server offered `qop=auth`.
    pub qop_auth: bool,
    pub stale: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    fn hash(self, s: &str) -> String {
        let bytes: Vec<u8> = match self {
            Algorithm::Md5 => Md5::digest(s.as_bytes()).to_vec(),
            Algorithm::Sha256 => Sha256::digest(s.as_bytes()).to_vec(),
        };
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Why a challenge cannot be answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DigestError {
    NotDigest,
    Missing(&'static str),
    UnsupportedAlgorithm(String),
    UnsupportedQop(String),
}

impl std::fmt::Display for DigestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DigestError::NotDigest => write!(f, "the challenge is not a Digest challenge"),
            DigestError::Missing(p) => write!(f, "the challenge has no {p}"),
            DigestError::UnsupportedAlgorithm(a) => write!(f, "unsupported digest algorithm {a}"),
            DigestError::UnsupportedQop(q) => write!(f, "unsupported qop {q}"),
        }
    }
}

/// Splits `a=b, c="d, e"` into pairs, honouring quotes.
fn auth_params(s: &str) -> Vec<(String, String)> {
    crate::uri::split_outside_quotes(s, ',')
        .into_iter()
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|x| x.strip_suffix('"'))
                .unwrap_or(v);
            Some((k.trim().to_ascii_lowercase(), v.to_string()))
        })
        .collect()
}

impl Challenge {
    pub fn parse(header: &str) -> Result<Challenge, DigestError> {
        let (scheme, rest) = header
            .trim()
            .split_once(' ')
            .ok_or(DigestError::NotDigest)?;
        if !scheme.eq_ignore_ascii_case("digest") {
            return Err(DigestError::NotDigest);
        }
        let params = auth_params(rest);
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let algorithm = match get("algorithm").as_deref().map(str::to_ascii_uppercase) {
            None => Algorithm::Md5,
            Some(a) if a == "MD5" => Algorithm::Md5,
            Some(a) if a == "SHA-256" => Algorithm::Sha256,
            Some(a) => return Err(DigestError::UnsupportedAlgorithm(a)),
        };
        let qop_auth = match get("qop") {
            None => false,
            Some(q) => {
                if q.split(',').any(|x| x.trim() == "auth") {
                    true
                } else {
                    return Err(DigestError::UnsupportedQop(q));
                }
            }
        };
        Ok(Challenge {
            realm: get("realm").ok_or(DigestError::Missing("realm"))?,
            nonce: get("nonce").ok_or(DigestError::Missing("nonce"))?,
            opaque: get("opaque"),
            algorithm,
            qop_auth,
            stale: get("stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
        })
    }

    /// The `Authorization` / `Proxy-Authorization` value for one request.
    /// `nc` counts the uses of this nonce; `cnonce` is fresh per request.
    pub fn answer(
        &self,
        method: &str,
        uri: &str,
        username: &str,
        password: &str,
        nc: u32,
        cnonce: &str,
    ) -> String {
        let alg = self.algorithm;
        let ha1 = alg.hash(&format!("{username}:{}:{password}", self.realm));
        let ha2 = alg.hash(&format!("{method}:{uri}"));
        let mut out = format!(
            "Digest username=\"{username}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", algorithm={}",
            self.realm,
            self.nonce,
            alg.name()
        );
        let response = if self.qop_auth {
            let nc = format!("{nc:08x}");
            out.push_str(&format!(", qop=auth, nc={nc}, cnonce=\"{cnonce}\""));
            alg.hash(&format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", self.nonce))
        } else {
            alg.hash(&format!("{ha1}:{}:{ha2}", self.nonce))
        };
        out.push_str(&format!(", response=\"{response}\""));
        if let Some(o) = &self.opaque {
            out.push_str(&format!(", opaque=\"{o}\""));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2617_example_response_for_md5_with_qop() {
        // RFC 2617 §3.5 (GET, so the method differs from SIP's; the
        // arithmetic is the same).
        let c = Challenge::parse(
            "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .unwrap();
        let a = c.answer(
            "GET",
            "/dir/index.html",
            "Mufasa",
            "Circle Of Life",
            1,
            "0a4f113b",
        );
        assert!(
            a.contains("response=\"6629fae49393a05397450978507c4ef1\""),
            "{a}"
        );
    }

    #[test]
    fn sha256_is_supported_and_unknown_algorithms_named() {
        let c = Challenge::parse("Digest realm=\"r\", nonce=\"n\", algorithm=SHA-256").unwrap();
        assert_eq!(c.algorithm, Algorithm::Sha256);
        let a = c.answer("REGISTER", "sip:pbx", "u", "p", 1, "c");
        // 64 hex digits of SHA-256 in the response.
        let resp = a.split("response=\"").nth(1).unwrap();
        assert_eq!(resp.find('"'), Some(64));
        assert_eq!(
            Challenge::parse("Digest realm=\"r\", nonce=\"n\", algorithm=SHA-512-256"),
            Err(DigestError::UnsupportedAlgorithm("SHA-512-256".into()))
        );
        assert_eq!(
            Challenge::parse("Basic realm=\"r\""),
            Err(DigestError::NotDigest)
        );
    }
}
