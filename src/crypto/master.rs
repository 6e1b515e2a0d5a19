//! The master key: from `GATEHOUSE_MASTER_KEY`, or a 0600 key file created in the data
//! directory on first run. Everything encrypted at rest is sealed under keys derived from it.

use std::fs;
use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use super::{CryptoError, hex_encode, random_bytes};

pub const KEY_FILE_NAME: &str = "master.key";

/// 32 secret bytes and a short public id (so ciphertexts say which key sealed them).
pub struct MasterKey {
    bytes: [u8; 32],
    kid: String,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl MasterKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes);
        let kid = hex_encode(d.as_ref().get(..4).unwrap_or_default());
        MasterKey { bytes, kid }
    }

    /// Parses a key given as base64 (standard or URL-safe) or 64 hex digits.
    pub fn parse(text: &str) -> Result<Self, CryptoError> {
        let text = text.trim();
        let decoded = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(text.get(i * 2..i * 2 + 2).unwrap_or("zz"), 16))
                .collect::<Result<Vec<u8>, _>>()
                .ok()
        } else {
            URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok().or_else(|| STANDARD.decode(text).ok())
        };
        let bytes: [u8; 32] = decoded.and_then(|v| v.try_into().ok()).ok_or_else(|| {
            CryptoError::MasterKey(
                "the master key must be 32 bytes, written as base64 or 64 hex digits \
                 (make one with: head -c 32 /dev/urandom | base64)"
                    .into(),
            )
        })?;
        Ok(Self::from_bytes(bytes))
    }

    /// Several keys, one per line (or comma-separated): the first is current, the others
    /// are earlier keys still accepted for reading (during a master key rotation).
    pub fn parse_ring(text: &str) -> Result<Vec<Self>, CryptoError> {
        let keys = text
            .split(['\n', ','])
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(Self::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(CryptoError::MasterKey("no master key given".into()));
        }
        Ok(keys)
    }

    /// The key as written in the key file (base64url).
    pub fn encoded(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.bytes)
    }

    /// A new random key.
    pub fn generate() -> Result<Self, CryptoError> {
        Ok(Self::from_bytes(random_bytes::<32>()?))
    }

    /// Like [`MasterKey::load_or_create`], with the earlier keys that follow the current one.
    pub fn load_ring(configured: Option<&str>, data_dir: &Path) -> Result<(Vec<Self>, bool), CryptoError> {
        if let Some(text) = configured {
            return Ok((Self::parse_ring(text)?, false));
        }
        let path = data_dir.join(KEY_FILE_NAME);
        match fs::read_to_string(&path) {
            Ok(text) => {
                check_permissions(&path)?;
                Self::parse_ring(&text)
                    .map(|k| (k, false))
                    .map_err(|e| CryptoError::MasterKey(format!("{}: {e}", path.display())))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let (key, created) = Self::load_or_create(None, data_dir)?;
                Ok((vec![key], created))
            }
            Err(e) => Err(CryptoError::MasterKey(format!("cannot read {}: {e}", path.display()))),
        }
    }

    /// Replaces the key file with `keys` (current first), atomically and mode 0600.
    pub fn write_ring(data_dir: &Path, keys: &[MasterKey]) -> Result<(), CryptoError> {
        let path = data_dir.join(KEY_FILE_NAME);
        let temporary = data_dir.join(format!("{KEY_FILE_NAME}.new"));
        let _ = fs::remove_file(&temporary);
        let text = keys.iter().map(MasterKey::encoded).collect::<Vec<_>>().join("\n");
        write_key_file(&temporary, &text)?;
        fs::rename(&temporary, &path)
            .map_err(|e| CryptoError::MasterKey(format!("cannot replace {}: {e}", path.display())))
    }

    /// The key from `configured` if given, else from the key file in `data_dir`,
    /// which is created (mode 0600) when absent.
    pub fn load_or_create(configured: Option<&str>, data_dir: &Path) -> Result<(Self, bool), CryptoError> {
        if let Some(text) = configured {
            return Ok((Self::parse_ring(text)?.remove(0), false));
        }
        let path = data_dir.join(KEY_FILE_NAME);
        match fs::read_to_string(&path) {
            Ok(text) => {
                check_permissions(&path)?;
                Self::parse_ring(&text)
                    .map(|mut ring| ring.remove(0))
                    .map(|k| (k, false))
                    .map_err(|e| CryptoError::MasterKey(format!("{}: {e}", path.display())))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::from_bytes(random_bytes::<32>()?);
                write_key_file(&path, &URL_SAFE_NO_PAD.encode(key.bytes))?;
                Ok((key, true))
            }
            Err(e) => Err(CryptoError::MasterKey(format!("cannot read {}: {e}", path.display()))),
        }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Derives a 32-byte key for one purpose (HKDF-SHA256), so no two uses share key material.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        use aws_lc_rs::hkdf;
        struct Len32;
        impl hkdf::KeyType for Len32 {
            fn len(&self) -> usize {
                32
            }
        }
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"gatehouse master key v1");
        let prk = salt.extract(&self.bytes);
        let info = [purpose.as_bytes()];
        let mut out = [0u8; 32];
        // expand/fill only fail for lengths above 255 * 32 bytes, which 32 is not.
        if let Ok(okm) = prk.expand(&info, Len32) {
            let _ = okm.fill(&mut out);
        }
        out
    }
}

#[cfg(unix)]
fn write_key_file(path: &Path, contents: &str) -> Result<(), CryptoError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| CryptoError::MasterKey(format!("cannot create {}: {e}", path.display())))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .map_err(|e| CryptoError::MasterKey(format!("cannot write {}: {e}", path.display())))
}

#[cfg(unix)]
fn check_permissions(path: &Path) -> Result<(), CryptoError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path)
        .map_err(|e| CryptoError::MasterKey(format!("cannot read {}: {e}", path.display())))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(CryptoError::MasterKey(format!(
            "{} is readable by other users (mode {:o}); run: chmod 600 {}",
            path.display(),
            mode & 0o777,
            path.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_created_0600_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (a, created) = MasterKey::load_or_create(None, dir.path()).unwrap();
        assert!(created);
        let mode = fs::metadata(dir.path().join(KEY_FILE_NAME)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (b, created) = MasterKey::load_or_create(None, dir.path()).unwrap();
        assert!(!created);
        assert_eq!(a.kid(), b.kid());
        assert_eq!(a.derive("x"), b.derive("x"));
        assert_ne!(a.derive("x"), a.derive("y"));
    }

    #[test]
    fn loose_permissions_are_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        MasterKey::load_or_create(None, dir.path()).unwrap();
        let path = dir.path().join(KEY_FILE_NAME);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = MasterKey::load_or_create(None, dir.path()).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }

    #[test]
    fn a_ring_is_current_first_and_rewritten_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let (old, _) = MasterKey::load_or_create(None, dir.path()).unwrap();
        let new = MasterKey::generate().unwrap();
        MasterKey::write_ring(dir.path(), &[MasterKey::parse(&new.encoded()).unwrap(), old]).unwrap();
        let (ring, created) = MasterKey::load_ring(None, dir.path()).unwrap();
        assert!(!created);
        assert_eq!(ring.len(), 2);
        assert_eq!(ring[0].kid(), new.kid());
        assert_eq!(MasterKey::load_or_create(None, dir.path()).unwrap().0.kid(), new.kid());
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.path().join(KEY_FILE_NAME)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(MasterKey::parse_ring(&format!("{},{}", new.encoded(), ring[1].encoded())).unwrap().len(), 2);
    }

    #[test]
    fn configured_keys_must_be_32_bytes() {
        assert!(MasterKey::parse(&"ab".repeat(32)).is_ok());
        assert!(MasterKey::parse(&STANDARD.encode([7u8; 32])).is_ok());
        let err = MasterKey::parse("short").unwrap_err().to_string();
        assert!(err.contains("32 bytes"), "{err}");
    }
}
