//! SRTP (RFC 3711) with AES_CM_128_HMAC_SHA1_80, keyed by SDES (RFC 4568),
//! for the RTP towards a PBX on a line over TLS. AES and HMAC-SHA1 come
//! from aws-lc-rs, which str0m already links for DTLS-SRTP.
//!
//! One [`Srtp`] protects one direction of one stream: ours (outgoing, with
//! the key we sent in our SDP) or theirs (incoming, with the key they sent).

use aws_lc_rs::cipher::{AES_128, EncryptingKey, EncryptionContext, UnboundCipherKey};
use aws_lc_rs::hmac;
use base64::Engine;

/// The one crypto suite we speak.
pub const SUITE: &str = "AES_CM_128_HMAC_SHA1_80";
const TAG: usize = 10;

/// A master key and salt (30 bytes), as SDES carries them.
#[derive(Clone)]
pub struct MasterKey([u8; 30]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// A fresh random key for a call.
    pub fn random() -> MasterKey {
        let mut k = [0u8; 30];
        for c in k.chunks_mut(8) {
            let r = openturret_sip::message::random_u64().to_le_bytes();
            c.copy_from_slice(&r[..c.len()]);
        }
        MasterKey(k)
    }

    /// The `inline:` key parameter (RFC 4568 §6.1): base64 of key || salt.
    pub fn inline(&self) -> String {
        format!(
            "inline:{}",
            base64::engine::general_purpose::STANDARD.encode(self.0)
        )
    }

    /// Reads an `a=crypto` attribute's value (`1 AES_CM_128_HMAC_SHA1_80
    /// inline:KEY[|lifetime][|MKI:len]`): its tag and key, if the suite is
    /// ours and the key has no MKI (we do not use one).
    pub fn from_crypto_attr(value: &str) -> Option<(u32, MasterKey)> {
        let mut f = value.split_whitespace();
        let tag: u32 = f.next()?.parse().ok()?;
        if f.next()? != SUITE {
            return None;
        }
        let params = f.next()?.strip_prefix("inline:")?;
        let mut parts = params.split('|');
        let key = base64::engine::general_purpose::STANDARD
            .decode(parts.next()?)
            .ok()?;
        if parts.any(|p| p.contains(':')) {
            return None; // an MKI
        }
        Some((tag, MasterKey(key.try_into().ok()?)))
    }
}

/// AES-128 in counter mode from `iv`, over `data` in place.
fn aes_cm(key: &[u8; 16], iv: &[u8; 16], data: &mut [u8]) {
    let k = EncryptingKey::ctr(UnboundCipherKey::new(&AES_128, key).expect("a 16-byte key"))
        .expect("CTR mode");
    let iv = aws_lc_rs::iv::FixedLength::from(*iv);
    k.less_safe_encrypt(data, EncryptionContext::Iv128(iv))
        .expect("AES-CTR over a buffer");
}

/// The session keys of one direction of a stream.
pub struct Srtp {
    cipher: [u8; 16],
    salt: [u8; 14],
    auth: hmac::Key,
    /// Outgoing: the rollover counter. Incoming: the ROC and highest
    /// sequence number seen (RFC 3711 Appendix A).
    roc: u32,
    last_seq: Option<u16>,
}

impl Srtp {
    /// Derives the session keys from a master key (RFC 3711 §4.3, key
    /// derivation rate 0).
    pub fn new(master: &MasterKey) -> Srtp {
        let key: [u8; 16] = master.0[..16].try_into().expect("16 bytes");
        let salt: [u8; 14] = master.0[16..].try_into().expect("14 bytes");
        let derive = |label: u8, out: &mut [u8]| {
            let mut iv = [0u8; 16];
            iv[..14].copy_from_slice(&salt);
            iv[7] ^= label;
            out.fill(0);
            aes_cm(&key, &iv, out);
        };
        let mut cipher = [0u8; 16];
        let mut auth = [0u8; 20];
        let mut session_salt = [0u8; 14];
        derive(0, &mut cipher);
        derive(1, &mut auth);
        derive(2, &mut session_salt);
        Srtp {
            cipher,
            salt: session_salt,
            auth: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &auth),
            roc: 0,
            last_seq: None,
        }
    }

    fn iv(&self, ssrc: u32, index: u64) -> [u8; 16] {
        let mut iv = [0u8; 16];
        iv[..14].copy_from_slice(&self.salt);
        for (i, b) in ssrc.to_be_bytes().iter().enumerate() {
            iv[4 + i] ^= b;
        }
        for (i, b) in index.to_be_bytes()[2..].iter().enumerate() {
            iv[8 + i] ^= b;
        }
        iv
    }

    fn tag(&self, authenticated: &[u8], roc: u32) -> [u8; TAG] {
        let mut ctx = hmac::Context::with_key(&self.auth);
        ctx.update(authenticated);
        ctx.update(&roc.to_be_bytes());
        let t = ctx.sign();
        t.as_ref()[..TAG].try_into().expect("10 bytes")
    }

    /// Protects an RTP packet (header of `header_len` bytes, then the
    /// payload): encrypts the payload in place and appends the tag.
    pub fn protect(&mut self, packet: &mut Vec<u8>, header_len: usize) {
        let seq = u16::from_be_bytes([packet[2], packet[3]]);
        let ssrc = u32::from_be_bytes(packet[8..12].try_into().expect("a header"));
        if let Some(last) = self.last_seq
            && seq < last
            && last - seq > 0x8000
        {
            self.roc = self.roc.wrapping_add(1);
        }
        self.last_seq = Some(seq);
        let index = (u64::from(self.roc) << 16) | u64::from(seq);
        let iv = self.iv(ssrc, index);
        aes_cm(&self.cipher, &iv, &mut packet[header_len..]);
        let tag = self.tag(packet, self.roc);
        packet.extend_from_slice(&tag);
    }

    /// Checks and decrypts an SRTP packet in place (its header of
    /// `header_len` bytes); returns the length of the clear packet, or
    /// `None` when the tag is wrong (a forged or damaged packet, dropped).
    pub fn unprotect(&mut self, packet: &mut [u8], header_len: usize) -> Option<usize> {
        if packet.len() < header_len + TAG {
            return None;
        }
        let body = packet.len() - TAG;
        let seq = u16::from_be_bytes([packet[2], packet[3]]);
        let ssrc = u32::from_be_bytes(packet[8..12].try_into().ok()?);
        // The ROC this packet most likely has (RFC 3711 Appendix A).
        let roc = match self.last_seq {
            None => self.roc,
            Some(s_l) if s_l < 0x8000 => {
                if seq > s_l && seq - s_l > 0x8000 {
                    self.roc.wrapping_sub(1)
                } else {
                    self.roc
                }
            }
            Some(s_l) => {
                if s_l - 0x8000 > seq {
                    self.roc.wrapping_add(1)
                } else {
                    self.roc
                }
            }
        };
        let tag = self.tag(&packet[..body], roc);
        // Constant time, as tags are secrets' shadows.
        if tag
            .iter()
            .zip(&packet[body..])
            .fold(0u8, |a, (x, y)| a | (x ^ y))
            != 0
        {
            return None;
        }
        let index = (u64::from(roc) << 16) | u64::from(seq);
        let iv = self.iv(ssrc, index);
        aes_cm(&self.cipher, &iv, &mut packet[header_len..body]);
        if roc == self.roc.wrapping_add(1) {
            self.roc = roc;
            self.last_seq = Some(seq);
        } else if roc == self.roc && self.last_seq.is_none_or(|l| seq > l) {
            self.last_seq = Some(seq);
        }
        Some(body)
    }
}

/// The length of an RTP header (with contributing sources and extension),
/// if the packet holds one.
pub fn header_len(p: &[u8]) -> Option<usize> {
    if p.len() < 12 {
        return None;
    }
    let mut n = 12 + 4 * (p[0] & 0x0f) as usize;
    if p[0] & 0x10 != 0 {
        let ext = p.get(n + 2..n + 4)?;
        n += 4 + 4 * u16::from_be_bytes([ext[0], ext[1]]) as usize;
    }
    (n <= p.len()).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn session_keys_are_derived_as_rfc_3711_b2_says() {
        let mut m = [0u8; 30];
        m[..16].copy_from_slice(&hex("E1F97A0D3E018BE0D64FA32C06DE4139"));
        m[16..].copy_from_slice(&hex("0EC675AD498AFEEBB6960B3AABE6"));
        let s = Srtp::new(&MasterKey(m));
        assert_eq!(s.cipher.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
        assert_eq!(s.salt.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
    }

    #[test]
    fn a_protected_packet_comes_back_and_a_forged_one_does_not() {
        let key = MasterKey::random();
        let (mut tx, mut rx) = (Srtp::new(&key), Srtp::new(&key));
        for seq in [65534u16, 65535, 0, 1] {
            let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 160, 1, 2, 3, 4];
            p[2..4].copy_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&[0x42; 160]);
            let clear = p.clone();
            tx.protect(&mut p, 12);
            assert_eq!(p.len(), 12 + 160 + 10);
            assert_ne!(&p[12..172], &clear[12..]);
            let mut forged = p.clone();
            forged[20] ^= 1;
            assert_eq!(rx.unprotect(&mut forged, 12), None, "a forged packet");
            let n = rx.unprotect(&mut p, 12).expect("authentic");
            assert_eq!(&p[..n], &clear[..], "seq {seq} across the wrap");
        }
        // The SDES form goes both ways; other suites and MKIs are refused.
        let attr = format!("1 {SUITE} {}", key.inline());
        let (tag, back) = MasterKey::from_crypto_attr(&attr).unwrap();
        assert_eq!((tag, back.0), (1, key.0));
        let with_lifetime = format!("2 {SUITE} {}|2^31", key.inline());
        assert!(MasterKey::from_crypto_attr(&with_lifetime).is_some());
        assert!(MasterKey::from_crypto_attr(&format!("{attr}|1:1")).is_none());
        assert!(MasterKey::from_crypto_attr("1 AES_CM_128_HMAC_SHA1_32 inline:AAAA").is_none());
    }
}
