//! Pseudonymisation of numbers in what external applications receive (SPEC
//! §4; issue 7): CTI events, the query API and CDR output. `keyed_hash`
//! replaces a number by an HMAC-SHA-256 of its normalised form under a key
//! kept outside the database (`<data_dir>/pseudonym.key`, mode 0600), so
//! the same number gives the same pseudonym until an administrator rotates
//! the key; `truncate` hides the last three digits (`+49 69 1234***`).
//! Never an unkeyed hash: a phone number's hash is reversed by trying them
//! all.

use std::path::PathBuf;
use std::sync::RwLock;

use hmac::{Hmac, Mac};
use openturret_domain::model::Pseudonymisation;
use openturret_domain::number::NumberPlan;
use sha2::Sha256;
use zeroize::Zeroizing;

pub struct Pseudonymiser {
    mode: RwLock<Pseudonymisation>,
    key: RwLock<Option<Zeroizing<[u8; 32]>>>,
    key_file: PathBuf,
    plan: NumberPlan,
}

impl Pseudonymiser {
    pub fn new(data_dir: &std::path::Path, plan: NumberPlan) -> Self {
        Pseudonymiser {
            mode: RwLock::new(Pseudonymisation::Off),
            key: RwLock::new(None),
            key_file: data_dir.join("pseudonym.key"),
            plan,
        }
    }

    pub fn set_mode(&self, mode: Pseudonymisation) {
        *self.mode.write().unwrap() = mode;
    }

    pub fn mode(&self) -> Pseudonymisation {
        *self.mode.read().unwrap()
    }

    pub fn is_on(&self) -> bool {
        self.mode() != Pseudonymisation::Off
    }

    /// The key, created on first use.
    fn key(&self) -> anyhow::Result<Zeroizing<[u8; 32]>> {
        if let Some(k) = self.key.read().unwrap().as_ref() {
            return Ok(k.clone());
        }
        let bytes = match std::fs::read(&self.key_file) {
            Ok(b) if b.len() == 32 => b,
            _ => return self.rotate(),
        };
        let mut k = Zeroizing::new([0u8; 32]);
        k.copy_from_slice(&bytes);
        *self.key.write().unwrap() = Some(k.clone());
        Ok(k)
    }

    /// A new key: pseudonyms made from now on cannot be linked to earlier
    /// ones.
    pub fn rotate(&self) -> anyhow::Result<Zeroizing<[u8; 32]>> {
        let mut k = Zeroizing::new([0u8; 32]);
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut k[..]);
        // An atomic replace of the old key.
        openturret_store::keys::replace_private(&self.key_file, &k[..])?;
        *self.key.write().unwrap() = Some(k.clone());
        Ok(k)
    }

    /// `number` as external applications may see it.
    pub fn apply(&self, number: &str) -> String {
        match self.mode() {
            Pseudonymisation::KeyedHash => {
                let Ok(key) = self.key() else {
                    // Never the clear number, even without a key.
                    return "p:unavailable".into();
                };
                let mut mac = Hmac::<Sha256>::new_from_slice(&key[..]).expect("any key length");
                mac.update(self.plan.key(number).as_bytes());
                let out = mac.finalize().into_bytes();
                format!(
                    "p:{}",
                    out[..12]
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>()
                )
            }
            Pseudonymisation::Truncate => truncate(number),
            Pseudonymisation::Off => number.to_string(),
        }
    }
}

/// The number with its last three digits replaced by `*`.
pub fn truncate(number: &str) -> String {
    let mut hidden = 0;
    let mut out: Vec<char> = number.chars().collect();
    for c in out.iter_mut().rev() {
        if hidden == 3 {
            break;
        }
        if c.is_ascii_digit() {
            *c = '*';
            hidden += 1;
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_hides_the_last_three_digits() {
        assert_eq!(truncate("+49 69 1234567"), "+49 69 1234***");
        assert_eq!(truncate("2000"), "2***");
        assert_eq!(truncate("+44 20 7946 0 1 2"), "+44 20 7946 * * *");
    }

    #[test]
    fn keyed_hashes_are_stable_per_key_and_change_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = Pseudonymiser::new(dir.path(), NumberPlan::default());
        p.set_mode(Pseudonymisation::KeyedHash);
        let a = p.apply("+44 20 7946 0001");
        assert_eq!(
            a,
            p.apply("+442079460001"),
            "the normalised number is hashed"
        );
        assert!(!a.contains("7946"));
        p.rotate().unwrap();
        assert_ne!(a, p.apply("+44 20 7946 0001"));
        p.set_mode(Pseudonymisation::Off);
        assert_eq!(p.apply("2000"), "2000");
    }
}
