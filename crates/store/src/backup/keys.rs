//! Keys of backups: the passphrase key (argon2id, kept per process), each
//! backup's own key, the chunk nonces.

use super::*;

pub(super) fn derive(passphrase: &Secret, kdf: &Kdf) -> Result<Zeroizing<[u8; 32]>> {
    let salt = unhex(&kdf.salt)
        .ok_or_else(|| StoreError::Integrity("backup manifest: bad salt".into()))?;
    let params = Params::new(kdf.m_kib, kdf.t, kdf.p, Some(32)).map_err(|_| {
        StoreError::Integrity("backup manifest: bad key derivation parameters".into())
    })?;
    let mut key = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.expose().as_bytes(), &salt, &mut key[..])
        .map_err(|_| StoreError::Integrity("backup: key derivation failed".into()))?;
    Ok(key)
}

/// A format-2 backup's own key and its key check, from the passphrase key
/// and the backup's salt.
pub(super) fn backup_key(passphrase_key: &[u8; 32], salt: &[u8]) -> Result<(LessSafeKey, String)> {
    let failed = || StoreError::Integrity("backup: key expansion failed".into());
    let hk = Hkdf::<Sha256>::new(Some(salt), passphrase_key);
    let mut okm = Zeroizing::new([0u8; 32]);
    hk.expand(KEY_INFO, &mut okm[..]).map_err(|_| failed())?;
    let mut check = [0u8; 16];
    hk.expand(CHECK_INFO, &mut check).map_err(|_| failed())?;
    Ok((aes_key(&okm[..])?, hex(&check)))
}

pub(super) fn aes_key(bytes: &[u8]) -> Result<LessSafeKey> {
    let key = UnboundKey::new(&AES_256_GCM, bytes)
        .map_err(|_| StoreError::Integrity("backup: bad key".into()))?;
    Ok(LessSafeKey::new(key))
}

/// The nonce of chunk `i` (the STREAM construction, big-endian counter).
pub(super) fn chunk_nonce(prefix: &[u8; 7], i: u32, last: bool) -> Nonce {
    let mut n = [0u8; 12];
    n[..7].copy_from_slice(prefix);
    n[7..11].copy_from_slice(&i.to_be_bytes());
    n[11] = last as u8;
    Nonce::assume_unique_for_key(n)
}

/// The last key this process derived (see the module's documentation).
pub(super) struct Cached {
    /// HMAC-SHA256 of the passphrase under [`process_key`].
    id: Vec<u8>,
    kdf: Kdf,
    key: Zeroizing<[u8; 32]>,
}

pub(super) static CACHE: Mutex<Option<Cached>> = Mutex::new(None);

/// A random key made once per process and never written anywhere.
pub(super) fn process_key() -> &'static Zeroizing<[u8; 32]> {
    static KEY: OnceLock<Zeroizing<[u8; 32]>> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut k = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(&mut k[..]);
        k
    })
}

pub(super) fn passphrase_mac(passphrase: &Secret) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&process_key()[..])
        .expect("HMAC takes any key length");
    mac.update(passphrase.expose().as_bytes());
    mac
}

/// The cached key when it was derived from `passphrase` (and, when given,
/// with exactly `kdf`).
pub(super) fn cached(passphrase: &Secret, kdf: Option<&Kdf>) -> Option<(Kdf, Zeroizing<[u8; 32]>)> {
    let cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let c = cache.as_ref()?;
    if kdf.is_some_and(|k| *k != c.kdf) {
        return None;
    }
    // Constant-time comparison of the MACs.
    passphrase_mac(passphrase).verify_slice(&c.id).ok()?;
    Some((c.kdf.clone(), c.key.clone()))
}

pub(super) fn remember(passphrase: &Secret, kdf: &Kdf, key: &Zeroizing<[u8; 32]>) {
    let id = passphrase_mac(passphrase).finalize().into_bytes().to_vec();
    *CACHE.lock().unwrap_or_else(|e| e.into_inner()) = Some(Cached {
        id,
        kdf: kdf.clone(),
        key: key.clone(),
    });
}

/// The key (and its derivation) for a new backup under `passphrase`.
pub(super) fn key_for_new(passphrase: &Secret) -> Result<(Kdf, Zeroizing<[u8; 32]>)> {
    if let Some(found) = cached(passphrase, None) {
        return Ok(found);
    }
    let mut salt = [0u8; 16];
    OsRng.fill_bytes(&mut salt);
    let kdf = Kdf {
        alg: "argon2id".into(),
        m_kib: 64 * 1024,
        t: 3,
        p: 1,
        salt: hex(&salt),
    };
    let key = derive(passphrase, &kdf)?;
    remember(passphrase, &kdf, &key);
    Ok((kdf, key))
}

/// Derives and keeps the key for backups under `passphrase` ahead of the
/// first one (scheduled backups, at start), so that none pays for it.
/// Returns the derivation the next backups will name.
pub fn prepare_key(passphrase: &Secret) -> Result<Kdf> {
    key_for_new(passphrase).map(|(kdf, _)| kdf)
}

/// The key of an existing backup.
pub(super) fn key_for(passphrase: &Secret, kdf: &Kdf) -> Result<Zeroizing<[u8; 32]>> {
    if let Some((_, key)) = cached(passphrase, Some(kdf)) {
        return Ok(key);
    }
    derive(passphrase, kdf)
}
