//! Cryptography, all on aws-lc-rs: random secrets, hashing, the master key and its AEAD
//! envelope, and the keys that sign access tokens.

pub mod aead;
pub mod jws;
pub mod master;
pub mod signing;
pub mod verified;

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("the system random number generator failed")]
    Random,
    #[error("{0}")]
    MasterKey(String),
    #[error("decryption failed: wrong master key or tampered data")]
    Decrypt,
    #[error("encryption failed")]
    Encrypt,
    #[error("signing key error: {0}")]
    Key(String),
}

/// Fills a fresh buffer of `N` random bytes.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut buf = [0u8; N];
    aws_lc_rs::rand::fill(&mut buf).map_err(|_| CryptoError::Random)?;
    Ok(buf)
}

/// The kinds of opaque secret we mint. The prefix lets secret scanners and people
/// recognise a leaked value; it carries no meaning for verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    AuthorizationCode,
    RefreshToken,
    MachineToken,
    ClientSecret,
    BrowserSession,
    /// RFC 7592: lets a dynamically registered client read, update or delete its registration.
    RegistrationAccessToken,
}

impl SecretKind {
    pub fn prefix(self) -> &'static str {
        match self {
            SecretKind::AuthorizationCode => "gh_code_",
            SecretKind::RefreshToken => "gh_rt_",
            SecretKind::MachineToken => "gh_mt_",
            SecretKind::ClientSecret => "gh_cs_",
            SecretKind::BrowserSession => "gh_sess_",
            SecretKind::RegistrationAccessToken => "gh_rat_",
        }
    }
}

/// A new 256-bit random secret with its readable prefix.
pub fn new_secret(kind: SecretKind) -> Result<String, CryptoError> {
    let bytes = random_bytes::<32>()?;
    Ok(format!("{}{}", kind.prefix(), URL_SAFE_NO_PAD.encode(bytes)))
}

/// SHA-256 of a secret, hex-encoded: what the database stores instead of the secret.
pub fn hash_secret(secret: &str) -> String {
    let d = digest::digest(&digest::SHA256, secret.as_bytes());
    hex_encode(d.as_ref())
}

/// Checks a presented secret against a stored hash without leaking timing.
pub fn secret_matches(presented: &str, stored_hash: &str) -> bool {
    hash_secret(presented).as_bytes().ct_eq(stored_hash.as_bytes()).into()
}

/// Constant-time equality of two strings (lengths are not secret).
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// base64url (no padding) SHA-256, as PKCE S256 and JWK thumbprints use.
pub fn sha256_b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, data).as_ref())
}

pub fn hex_encode(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_unique_and_hash_verifiable() {
        let a = new_secret(SecretKind::RefreshToken).unwrap();
        let b = new_secret(SecretKind::RefreshToken).unwrap();
        assert!(a.starts_with("gh_rt_"));
        assert_eq!(a.len(), "gh_rt_".len() + 43);
        assert_ne!(a, b);
        let h = hash_secret(&a);
        assert_eq!(h.len(), 64);
        assert!(secret_matches(&a, &h));
        assert!(!secret_matches(&b, &h));
    }

    #[test]
    fn pkce_s256_agrees_with_an_independent_implementation() {
        // Expected value computed with Python's hashlib and base64.urlsafe_b64encode.
        assert_eq!(
            sha256_b64url(b"dBjftJeZ4CVP-mJ92K9KrdXYt1AQkDHQZ3Jfp28jyxx"),
            "3AoU2PQSurQxtNuq5q-Ksytf0C_TDaCE-UsKGAncuSc"
        );
    }
}
