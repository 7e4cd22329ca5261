//! Call memory sealed per profile (SPEC §4): entries are encrypted to the
//! profile's X25519 public key as they are written, so neither an
//! administrator, a copy of the database nor a backup reveals them. The
//! private key is kept only wrapped: encrypted under a key derived (argon2id)
//! from the profile password and, separately, from the call-memory
//! password. Only someone who knows one of them can unwrap it.
//!
//! Formats (all versioned by their first byte):
//! - sealed entry: `1 | ephemeral public (32) | nonce (24) | ciphertext`,
//!   XChaCha20-Poly1305 under HKDF-SHA-256(ECDH(ephemeral, profile)), with
//!   both public keys as associated data;
//! - wrapped private key: `v | salt (16) | nonce (24) | ciphertext`,
//!   XChaCha20-Poly1305 under argon2id(password, salt), with the public key
//!   as associated data; `v` = 1: argon2id with 19 MiB and 2 passes (older
//!   wraps, made under passwords of any length), `v` = 3: the same
//!   derivation under a password known to meet the call-memory minimum
//!   (`model::CALL_MEMORY_PASSWORD_MIN`, checked by the caller), `v` = 2:
//!   64 MiB and 3 passes (keys that leave the machine inside backups,
//!   [`OpenKey::wrap_strong`]).

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
pub use openturret_domain::model::CallMemoryKeys;
use openturret_domain::secret::Secret;
use rand_core::{OsRng, RngCore};
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

const V1: u8 = 1;
const V2: u8 = 2;
const V3: u8 = 3;

/// Why a sealed value could not be opened.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("wrong password or damaged key")]
    WrongKey,
    #[error("malformed sealed data")]
    Malformed,
}

/// An unwrapped private key, held only in a logged-in session's memory.
#[derive(Clone)]
pub struct OpenKey(StaticSecret);

impl std::fmt::Debug for OpenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpenKey([redacted])")
    }
}

impl OpenKey {
    pub fn generate() -> OpenKey {
        OpenKey(StaticSecret::random_from_rng(OsRng))
    }

    pub fn public(&self) -> [u8; 32] {
        PublicKey::from(&self.0).to_bytes()
    }

    /// Wraps this key under `password` (slow: argon2id). The caller has
    /// checked that the password meets the call-memory minimum; the wrap
    /// says so ([`is_checked`]).
    pub fn wrap(&self, password: &Secret) -> Vec<u8> {
        self.wrap_as(V3, password)
    }

    /// A wrap of the old kind, under a password of any length (kept to
    /// test the upgrade of stored wraps).
    pub fn wrap_unchecked(&self, password: &Secret) -> Vec<u8> {
        self.wrap_as(V1, password)
    }

    /// Wraps this key under `password` with the stronger derivation, for a
    /// wrapped key that leaves the machine (slower: about 0.3 s).
    pub fn wrap_strong(&self, password: &Secret) -> Vec<u8> {
        self.wrap_as(V2, password)
    }

    fn wrap_as(&self, version: u8, password: &Secret) -> Vec<u8> {
        let mut salt = [0u8; 16];
        OsRng.fill_bytes(&mut salt);
        let kek = kek(version, password, &salt);
        let mut nonce = [0u8; 24];
        OsRng.fill_bytes(&mut nonce);
        let secret = Zeroizing::new(self.0.to_bytes());
        let ct = XChaCha20Poly1305::new(kek.as_slice().into())
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &secret[..],
                    aad: &self.public(),
                },
            )
            .expect("encryption of 32 bytes does not fail");
        let mut out = vec![version];
        out.extend_from_slice(&salt);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Unwraps a key wrapped under `password` for `public` (slow: argon2id).
    pub fn unwrap(
        wrapped: &[u8],
        password: &Secret,
        public: &[u8; 32],
    ) -> Result<OpenKey, SealError> {
        if wrapped.len() != 1 + 16 + 24 + 32 + 16 || ![V1, V2, V3].contains(&wrapped[0]) {
            return Err(SealError::Malformed);
        }
        let salt: [u8; 16] = wrapped[1..17].try_into().expect("length checked");
        let kek = kek(wrapped[0], password, &salt);
        let pt = Zeroizing::new(
            XChaCha20Poly1305::new(kek.as_slice().into())
                .decrypt(
                    XNonce::from_slice(&wrapped[17..41]),
                    Payload {
                        msg: &wrapped[41..],
                        aad: public,
                    },
                )
                .map_err(|_| SealError::WrongKey)?,
        );
        let bytes: [u8; 32] = pt[..].try_into().map_err(|_| SealError::Malformed)?;
        let key = OpenKey(StaticSecret::from(bytes));
        if &key.public() != public {
            return Err(SealError::WrongKey);
        }
        Ok(key)
    }

    /// Opens an entry sealed to this key.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < 1 + 32 + 24 + 16 || sealed[0] != V1 {
            return Err(SealError::Malformed);
        }
        let eph: [u8; 32] = sealed[1..33].try_into().expect("length checked");
        let shared = self.0.diffie_hellman(&PublicKey::from(eph));
        let key = entry_key(shared.as_bytes(), &eph, &self.public());
        let aad = [&eph[..], &self.public()[..]].concat();
        XChaCha20Poly1305::new(key.as_slice().into())
            .decrypt(
                XNonce::from_slice(&sealed[33..57]),
                Payload {
                    msg: &sealed[57..],
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::WrongKey)
    }
}

/// The argon2id key-encryption key of a password: m = 19 MiB, t = 2 for
/// version 1; m = 64 MiB, t = 3 for version 2.
/// Whether a wrapped key was made under a password known to meet the
/// minimum (or with the stronger derivation): older wraps may hide a
/// 4-digit PIN.
pub fn is_checked(wrapped: &[u8]) -> bool {
    matches!(wrapped.first(), Some(&V2) | Some(&V3))
}

fn kek(version: u8, password: &Secret, salt: &[u8; 16]) -> Zeroizing<[u8; 32]> {
    let (m, t) = if version == V2 {
        (64 * 1024, 3)
    } else {
        (19 * 1024, 2)
    };
    let params = Params::new(m, t, 1, Some(32)).expect("valid argon2 parameters");
    let mut out = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(password.expose().as_bytes(), salt, &mut out[..])
        .expect("argon2 with valid parameters does not fail");
    out
}

fn entry_key(shared: &[u8; 32], eph: &[u8; 32], recipient: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let hk = Hkdf::<Sha256>::new(Some(&[&eph[..], &recipient[..]].concat()), shared);
    let mut out = Zeroizing::new([0u8; 32]);
    hk.expand(b"openturret call-memory entry v1", &mut out[..])
        .expect("32 bytes is a valid HKDF length");
    out
}

/// Seals `plaintext` to a profile's public key. Needs no secret: the
/// producer of call events can seal but never open.
pub fn seal(public: &[u8; 32], plaintext: &[u8]) -> Vec<u8> {
    let eph = StaticSecret::random_from_rng(OsRng);
    let eph_pub = PublicKey::from(&eph).to_bytes();
    let shared = eph.diffie_hellman(&PublicKey::from(*public));
    let key = entry_key(shared.as_bytes(), &eph_pub, public);
    let mut nonce = [0u8; 24];
    OsRng.fill_bytes(&mut nonce);
    let aad = [&eph_pub[..], &public[..]].concat();
    let ct = XChaCha20Poly1305::new(key.as_slice().into())
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .expect("encryption does not fail for call-memory sized messages");
    let mut out = vec![V1];
    out.extend_from_slice(&eph_pub);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_key_holder_opens_a_sealed_entry() {
        let k = OpenKey::generate();
        let other = OpenKey::generate();
        let sealed = seal(&k.public(), b"+44 20 7946 0001 Bob");
        assert!(!sealed.windows(4).any(|w| w == b"7946"), "no clear text");
        assert_eq!(k.open(&sealed).unwrap(), b"+44 20 7946 0001 Bob");
        assert_eq!(other.open(&sealed), Err(SealError::WrongKey));
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(k.open(&tampered), Err(SealError::WrongKey));
    }

    #[test]
    fn a_wrapped_key_opens_only_with_its_password() {
        let k = OpenKey::generate();
        let w = k.wrap(&Secret::new("cm-pass"));
        let back = OpenKey::unwrap(&w, &Secret::new("cm-pass"), &k.public()).unwrap();
        assert_eq!(back.public(), k.public());
        assert_eq!(
            OpenKey::unwrap(&w, &Secret::new("nope"), &k.public()).err(),
            Some(SealError::WrongKey)
        );
        assert_eq!(
            OpenKey::unwrap(&w, &Secret::new("cm-pass"), &OpenKey::generate().public()).err(),
            Some(SealError::WrongKey)
        );
    }
}
