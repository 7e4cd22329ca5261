use super::keys::derive;
use super::*;

fn sample(dir: &Path) -> Vec<(String, PathBuf)> {
    let a = dir.join("a");
    let b = dir.join("b");
    // Not a multiple of the chunk size, and over three chunks.
    std::fs::write(&a, (0..200_000u32).map(|i| i as u8).collect::<Vec<_>>()).unwrap();
    std::fs::write(&b, b"secret-value-123").unwrap();
    vec![("turret.db".to_string(), a), ("secret.key".to_string(), b)]
}

fn empty_dir(dir: &Path, name: &str) -> PathBuf {
    let d = dir.join(name);
    std::fs::create_dir(&d).unwrap();
    d
}

fn extract_err(out: &Path, pass: &str, dest: &Path) -> String {
    let e = extract(out, &Secret::new(pass), dest)
        .unwrap_err()
        .to_string();
    assert_eq!(
        std::fs::read_dir(dest).unwrap().count(),
        0,
        "nothing left behind: {e}"
    );
    e
}

#[test]
fn a_backup_round_trips_and_refuses_a_wrong_passphrase_or_damage() {
    let dir = tempfile::tempdir().unwrap();
    let files = sample(dir.path());
    let out = dir.path().join("x.otb");
    let pass = "correct horse battery";
    let m = write(&out, &Secret::new(pass), 5, 3, "test", &files).unwrap();
    assert_eq!(m.format, 2);
    assert_eq!(
        m.files,
        vec![("turret.db".into(), 200_000), ("secret.key".into(), 16)]
    );
    let bytes = std::fs::read(&out).unwrap();
    assert!(!bytes.windows(16).any(|w| w == b"secret-value-123"));
    assert_eq!(manifest(&out).unwrap(), m);
    let tlen = u64::from_be_bytes(bytes[bytes.len() - 16..][..8].try_into().unwrap());
    let body = &bytes[..bytes.len() - 16 - tlen as usize];

    let dest = empty_dir(dir.path(), "d");
    let (_, got) = extract(&out, &Secret::new(pass), &dest).unwrap();
    assert_eq!(got.len(), 2);
    for (name, path) in &files {
        assert_eq!(
            std::fs::read(dest.join(name)).unwrap(),
            std::fs::read(path).unwrap()
        );
    }

    let dest2 = empty_dir(dir.path(), "e");
    let err = extract_err(&out, "wrong passphrase 1", &dest2);
    assert_eq!(err, "integrity: wrong passphrase", "{err}");
    // A flipped bit in the ciphertext: told apart from a wrong passphrase.
    let mut damaged = bytes.clone();
    damaged[body.len() - 100] ^= 1;
    std::fs::write(&out, &damaged).unwrap();
    let err = extract_err(&out, pass, &dest2);
    assert!(err.contains("damaged"), "{err}");
    // A cut-off file (no trailer), and a trailer that lies about sizes.
    std::fs::write(&out, &bytes[..bytes.len() - 20]).unwrap();
    assert!(extract_err(&out, pass, &dest2).contains("truncated"));
    let text = String::from_utf8_lossy(&bytes[body.len()..bytes.len() - 16]).into_owned();
    let lying = text.replace("200000", "200001");
    assert_eq!(lying.len(), text.len());
    let mut forged = bytes[..body.len()].to_vec();
    forged.extend_from_slice(lying.as_bytes());
    forged.extend_from_slice(&bytes[bytes.len() - 16..]);
    std::fs::write(&out, &forged).unwrap();
    assert!(extract_err(&out, pass, &dest2).contains("does not match"));
    // A header altered in the clear: every chunk refuses it.
    let mut altered = bytes.clone();
    let at = MAGIC.len() + 13;
    altered[at] = if altered[at] == b'5' { b'6' } else { b'5' };
    std::fs::write(&out, &altered).unwrap();
    assert!(extract(&out, &Secret::new(pass), &dest2).is_err());
}

#[test]
fn later_backups_reuse_the_derived_key_but_never_a_backup_key() {
    let dir = tempfile::tempdir().unwrap();
    let files = sample(dir.path());
    let w = |name: &str, pass: &str| {
        write(
            &dir.path().join(name),
            &Secret::new(pass),
            1,
            1,
            "t",
            &files,
        )
        .unwrap()
    };
    let prepared = prepare_key(&Secret::new("first passphrase")).unwrap();
    let (a, b) = (
        w("a.otb", "first passphrase"),
        w("b.otb", "first passphrase"),
    );
    assert_eq!(a.kdf, Some(prepared), "the key derived ahead is used");
    assert_eq!(a.kdf, b.kdf, "one derivation for the same passphrase");
    assert_ne!(a.key_salt, b.key_salt, "each backup has its own key");
    assert_ne!(a.nonce_prefix, b.nonce_prefix);
    let c = w("c.otb", "other passphrase");
    assert_ne!(c.kdf, a.kdf, "another passphrase, another salt");
    // Each opens with its own passphrase only, cached or not.
    for (name, pass, ok) in [
        ("a.otb", "first passphrase", true),
        ("c.otb", "first passphrase", false),
        ("c.otb", "other passphrase", true),
        ("b.otb", "other passphrase", false),
    ] {
        let dest = empty_dir(dir.path(), &format!("{name}-{ok}-{}", pass.len()));
        let r = extract(&dir.path().join(name), &Secret::new(pass), &dest);
        assert_eq!(r.is_ok(), ok, "{name} with {pass}");
    }
}

#[test]
fn a_backup_under_the_backup_key_needs_the_passphrase_only_to_read() {
    let dir = tempfile::tempdir().unwrap();
    let files = sample(dir.path());
    let pass = "the installation passphrase";
    let key = BackupKey::create(&Secret::new(pass), 1);
    assert!(!key.wrapped.contains(&key.public), "{key:?}");
    // Writing needs the key's public half only.
    let out = dir.path().join("k.otb");
    let mut w = Writer::create(&out, &Protection::Key(key.clone()), 2, 3, "t").unwrap();
    for (name, path) in &files {
        w.add_file(name, path).unwrap();
    }
    let m = w.finish().unwrap();
    assert_eq!(m.kdf, None);
    assert_eq!(m.key_fingerprint(), Some(key.fingerprint()));
    assert_eq!(manifest(&out).unwrap(), m);
    let bytes = std::fs::read(&out).unwrap();
    assert!(!bytes.windows(16).any(|w| w == b"secret-value-123"));
    // Each backup has its own key.
    let out2 = dir.path().join("k2.otb");
    let m2 = Writer::create(&out2, &Protection::Key(key.clone()), 2, 3, "t")
        .unwrap()
        .finish()
        .unwrap();
    assert_ne!(
        m.recipient.as_ref().unwrap().sealed_key,
        m2.recipient.as_ref().unwrap().sealed_key
    );
    // Reading: the passphrase, on any machine (nothing else is needed).
    let dest = empty_dir(dir.path(), "d");
    extract(&out, &Secret::new(pass), &dest).unwrap();
    for (name, path) in &files {
        assert_eq!(
            std::fs::read(dest.join(name)).unwrap(),
            std::fs::read(path).unwrap()
        );
    }
    let dest2 = empty_dir(dir.path(), "e");
    let err = extract_err(&out, "not the passphrase", &dest2);
    assert_eq!(err, "integrity: wrong passphrase", "{err}");
    // Another installation's key does not open it, even with the same
    // passphrase: the sealed key is swapped for one of another key.
    let other = BackupKey::create(&Secret::new(pass), 1);
    let theirs = dir.path().join("o.otb");
    let mo = Writer::create(&theirs, &Protection::Key(other.clone()), 2, 3, "t")
        .unwrap()
        .finish()
        .unwrap();
    let ours = m.recipient.as_ref().unwrap().sealed_key.as_bytes();
    let theirs = mo.recipient.as_ref().unwrap().sealed_key.as_bytes();
    assert_eq!(ours.len(), theirs.len());
    let at = bytes.windows(ours.len()).position(|w| w == ours).unwrap();
    let mut forged = bytes.clone();
    forged[at..at + theirs.len()].copy_from_slice(theirs);
    std::fs::write(&out, &forged).unwrap();
    let err = extract_err(&out, pass, &dest2);
    assert!(err.contains("its key does not open"), "{err}");
}

#[test]
fn a_format_1_backup_is_still_read() {
    use chacha20poly1305::aead::Payload;
    use chacha20poly1305::aead::stream::EncryptorBE32;
    let dir = tempfile::tempdir().unwrap();
    let files = sample(dir.path());
    let mut payload = Vec::new();
    for (name, path) in &files {
        let data = std::fs::read(path).unwrap();
        payload.extend_from_slice(&(name.len() as u16).to_be_bytes());
        payload.extend_from_slice(name.as_bytes());
        payload.extend_from_slice(&(data.len() as u64).to_be_bytes());
        payload.extend_from_slice(&data);
    }
    let pass = Secret::new("an older passphrase");
    let kdf = Kdf {
        alg: "argon2id".into(),
        m_kib: 1024,
        t: 1,
        p: 1,
        salt: hex(&[9u8; 16]),
    };
    let m = Manifest {
        format: 1,
        created_at: 1,
        schema_version: 1,
        created_by: "turret 0.1".into(),
        payload_sha256: Some(hex(&Sha256::digest(&payload))),
        payload_len: payload.len() as u64,
        files: files
            .iter()
            .map(|(n, p)| (n.clone(), std::fs::metadata(p).unwrap().len()))
            .collect(),
        kdf: Some(kdf.clone()),
        cipher: "xchacha20poly1305-stream-be32-64k".into(),
        nonce_prefix: hex(&[3u8; 19]),
        recipient: None,
        key_salt: None,
        key_check: None,
    };
    let line = serde_json::to_string(&m).unwrap();
    let key = derive(&pass, &kdf).unwrap();
    let mut enc = EncryptorBE32::from_aead(
        XChaCha20Poly1305::new(key.as_slice().into()),
        [3u8; 19].as_slice().into(),
    );
    let mut file = MAGIC_1.to_vec();
    file.extend_from_slice(line.as_bytes());
    file.push(b'\n');
    let chunks: Vec<&[u8]> = payload.chunks(CHUNK).collect();
    for (i, c) in chunks.iter().enumerate() {
        let p = Payload {
            msg: c,
            aad: line.as_bytes(),
        };
        if i + 1 == chunks.len() {
            file.extend_from_slice(&enc.encrypt_last(p).unwrap());
            break;
        }
        file.extend_from_slice(&enc.encrypt_next(p).unwrap());
    }
    let out = dir.path().join("old.otb");
    std::fs::write(&out, &file).unwrap();
    assert_eq!(manifest(&out).unwrap(), m);
    let dest = empty_dir(dir.path(), "d");
    extract(&out, &pass, &dest).unwrap();
    assert_eq!(
        std::fs::read(dest.join("turret.db")).unwrap(),
        std::fs::read(&files[0].1).unwrap()
    );
    let dest2 = empty_dir(dir.path(), "e");
    assert!(extract_err(&out, "not the passphrase", &dest2).contains("wrong passphrase"));
}

/// Writes an encrypted backup of `files` (name, path) to `out`.
fn write(
    out: &Path,
    passphrase: &Secret,
    created_at: i64,
    schema_version: i64,
    created_by: &str,
    files: &[(String, PathBuf)],
) -> Result<Manifest> {
    let mut w = Writer::create(
        out,
        &Protection::Passphrase(passphrase.clone()),
        created_at,
        schema_version,
        created_by,
    )?;
    for (name, path) in files {
        w.add_file(name, path)?;
    }
    w.finish()
}
