//! Argon2id for human passwords, run off the async runtime.

use argon2::{Argon2, PasswordHasher, PasswordVerifier};

use crate::crypto::{CryptoError, random_bytes};

pub const MIN_PASSWORD_LEN: usize = 8;
pub const MAX_PASSWORD_LEN: usize = 1024;

pub fn check_strength(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_LEN {
        return Err(format!("the password must be at least {MIN_PASSWORD_LEN} characters"));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(format!("the password must be at most {MAX_PASSWORD_LEN} bytes"));
    }
    Ok(())
}

/// A PHC string (`$argon2id$...`). Blocking: call through [`hash_async`] from async code.
pub fn hash(password: &str) -> Result<String, CryptoError> {
    let salt = random_bytes::<16>()?;
    Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| CryptoError::Key(e.to_string()))
}

pub fn verify(password: &str, phc: &str) -> bool {
    if password.len() > MAX_PASSWORD_LEN {
        return false;
    }
    Argon2::default().verify_password(password.as_bytes(), phc).is_ok()
}

pub async fn hash_async(password: String) -> Result<String, CryptoError> {
    tokio::task::spawn_blocking(move || hash(&password)).await.map_err(|_| CryptoError::Random)?
}

/// Verifies against `phc`, or against a fixed dummy hash when the account does not exist,
/// so the answer takes as long either way.
pub async fn verify_async(password: String, phc: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || match phc {
        Some(phc) => verify(&password, &phc),
        None => {
            let _ = verify(&password, DUMMY_HASH);
            false
        }
    })
    .await
    .unwrap_or(false)
}

/// A valid Argon2id hash of a random string nobody knows.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$RdescudvJCsgt3ub+b+dWRWJTmaaJObG8RnDJFxPNG8";

/// A readable random password for generated accounts (about 120 bits).
pub fn generate() -> Result<String, CryptoError> {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let bytes = random_bytes::<24>()?;
    let chars: String = bytes.iter().map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()])).collect();
    Ok(format!("{}-{}-{}-{}", &chars[0..6], &chars[6..12], &chars[12..18], &chars[18..24]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_are_argon2id() {
        let h = hash("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correct horse", &h));
        assert!(!verify("wrong horse", &h));
        assert!(!verify("x", "not a hash"));
        assert!(argon2::PasswordHash::new(DUMMY_HASH).is_ok());
    }

    #[test]
    fn generated_passwords_are_strong_enough() {
        let p = generate().unwrap();
        assert!(check_strength(&p).is_ok());
        assert_ne!(p, generate().unwrap());
    }
}
