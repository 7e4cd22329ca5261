//! Password hashing (argon2id, OWASP minimum parameters or stronger) and
//! random secrets. Hashing and verifying run on the blocking pool, never on
//! the async runtime (STYLE habit 8).

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use openturret_domain::secret::{PasswordHash, Secret};
use rand_core::{OsRng, RngCore};

/// argon2id, m = 19 MiB, t = 2, p = 1: the OWASP minimum.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password (blocking; see [`hash`]).
pub fn hash_blocking(password: &Secret) -> PasswordHash {
    let salt = SaltString::generate(&mut OsRng);
    let phc = argon2()
        .hash_password(password.expose().as_bytes(), &salt)
        .expect("argon2 hashing does not fail with valid parameters")
        .to_string();
    PasswordHash::from_phc(phc)
}

/// Checks a password against a stored hash (blocking). A malformed stored
/// hash never verifies.
pub fn verify_blocking(password: &Secret, hash: &PasswordHash) -> bool {
    match argon2::PasswordHash::new(hash.as_phc()) {
        Ok(parsed) => argon2()
            .verify_password(password.expose().as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// At most this many argon2id computations run at once (19 MiB each):
/// a burst of logins queues here instead of filling the blocking pool and
/// the memory.
const AT_ONCE: usize = 4;
static TURNS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(AT_ONCE);
/// How long a login waits for its turn before it is told to come back.
const WAIT_FOR_TURN: std::time::Duration = std::time::Duration::from_secs(3);

/// Too many password checks are running; retry shortly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

pub async fn hash(password: Secret) -> PasswordHash {
    let _turn = TURNS
        .acquire()
        .await
        .expect("the semaphore is never closed");
    tokio::task::spawn_blocking(move || hash_blocking(&password))
        .await
        .expect("hashing task does not panic")
}

/// Verifies `password` against `hash`, or against a dummy hash when there
/// is no account, so that the answer takes as long either way. At most
/// [`AT_ONCE`] run at once; a caller that waits longer than a few seconds
/// for its turn gets [`Busy`].
pub async fn verify(password: Secret, hash: Option<PasswordHash>) -> Result<bool, Busy> {
    let _turn = tokio::time::timeout(WAIT_FOR_TURN, TURNS.acquire())
        .await
        .map_err(|_| Busy)?
        .expect("the semaphore is never closed");
    Ok(tokio::task::spawn_blocking(move || match hash {
        Some(h) => verify_blocking(&password, &h),
        None => {
            static DUMMY: OnceLock<PasswordHash> = OnceLock::new();
            let d = DUMMY.get_or_init(|| hash_blocking(&Secret::new(random_token(16))));
            verify_blocking(&password, d);
            false
        }
    })
    .await
    .expect("verify task does not panic"))
}

/// `bytes` random bytes as lower-case hex.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A password people can type: 20 characters from an alphabet without
/// look-alikes (about 110 bits).
pub fn random_password() -> Secret {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut out = String::with_capacity(20);
    while out.len() < 20 {
        let mut b = [0u8; 1];
        OsRng.fill_bytes(&mut b);
        // Rejection sampling keeps the choice uniform.
        if (b[0] as usize) < 256 - 256 % ALPHABET.len() {
            out.push(ALPHABET[b[0] as usize % ALPHABET.len()] as char);
        }
    }
    Secret::new(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_with_owasp_parameters_and_salted() {
        let a = hash_blocking(&Secret::new("correct horse"));
        let b = hash_blocking(&Secret::new("correct horse"));
        assert!(
            a.as_phc().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{}",
            a.as_phc()
        );
        assert_ne!(a, b, "each hash has its own salt");
        assert!(verify_blocking(&Secret::new("correct horse"), &a));
        assert!(!verify_blocking(&Secret::new("wrong"), &a));
        assert!(!verify_blocking(
            &Secret::new("x"),
            &PasswordHash::from_phc("garbage".into())
        ));
    }

    #[test]
    fn random_passwords_are_long_and_differ() {
        let (a, b) = (random_password(), random_password());
        assert_eq!(a.expose().len(), 20);
        assert_ne!(a, b);
    }
}
