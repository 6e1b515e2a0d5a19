//! Access tokens whose signature has already been checked, so that a client sending the same
//! token on every MCP request pays for one signature verification, not one per request.
//!
//! Only the signature and type checks are remembered (they cannot change for a given token
//! and key ring); issuer and expiry are checked on every use, and everything that
//! can be revoked (the grant) is still checked by the caller on every request. Entries are
//! keyed by the SHA-256 of the whole token, so a token differing in any byte is verified
//! afresh, and only tokens that verified are stored: a forger cannot fill the cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use aws_lc_rs::digest;

use super::signing::{AccessClaims, KeyRing, VerifyError};

/// Tokens remembered at once. A token is ~1 KiB on the wire but its entry is its claims only.
pub const CAPACITY: usize = 16_384;

type TokenDigest = [u8; 32];

/// A bounded cache of verified access tokens in front of [`KeyRing::verify`].
#[derive(Debug, Default)]
pub struct VerifiedTokens {
    entries: Mutex<HashMap<TokenDigest, Arc<AccessClaims>>>,
}

fn token_digest(token: &str) -> TokenDigest {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, token.as_bytes()).as_ref());
    out
}

impl VerifiedTokens {
    /// As [`KeyRing::verify`], answered from memory for a token seen before.
    pub fn verify(
        &self,
        keys: &KeyRing,
        token: &str,
        issuer: &str,
        now: i64,
    ) -> Result<Arc<AccessClaims>, VerifyError> {
        let key = token_digest(token);
        let cached = self.lock().get(&key).cloned();
        let claims = match cached {
            Some(claims) => claims,
            None => {
                let claims = Arc::new(keys.verify(token, issuer, now)?);
                self.remember(key, claims.clone(), now);
                claims
            }
        };
        if claims.iss != issuer {
            return Err(VerifyError::WrongIssuer);
        }
        if claims.exp <= now {
            return Err(VerifyError::Expired);
        }
        Ok(claims)
    }

    fn remember(&self, key: TokenDigest, claims: Arc<AccessClaims>, now: i64) {
        let mut entries = self.lock();
        if entries.len() >= CAPACITY {
            entries.retain(|_, c| c.exp > now);
            if entries.len() >= CAPACITY {
                // Still full of live tokens: start over rather than grow (they re-verify).
                entries.clear();
            }
        }
        entries.insert(key, claims);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TokenDigest, Arc<AccessClaims>>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tokens currently remembered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::signing::SigningAlg;

    fn claims(exp: i64) -> AccessClaims {
        AccessClaims {
            iss: "https://as".into(),
            sub: "u".into(),
            aud: "https://as/t/x/mcp".into(),
            client_id: "c".into(),
            scope: "mcp:read".into(),
            iat: 100,
            exp,
            jti: "j".into(),
            gid: Some("g".into()),
        }
    }

    #[test]
    fn verifies_once_then_answers_from_memory_but_checks_expiry_every_time() {
        let keys = KeyRing::for_tests(SigningAlg::EdDSA);
        let cache = VerifiedTokens::default();
        let token = keys.sign(&claims(200)).unwrap();
        assert_eq!(*cache.verify(&keys, &token, "https://as", 150).unwrap(), claims(200));
        assert_eq!(cache.len(), 1);
        assert_eq!(*cache.verify(&keys, &token, "https://as", 199).unwrap(), claims(200));
        assert_eq!(cache.len(), 1, "the second use is a cache hit");
        assert!(matches!(cache.verify(&keys, &token, "https://as", 200), Err(VerifyError::Expired)));
    }

    #[test]
    fn a_token_differing_in_any_byte_is_verified_afresh() {
        let keys = KeyRing::for_tests(SigningAlg::ES256);
        let cache = VerifiedTokens::default();
        let token = keys.sign(&claims(200)).unwrap();
        cache.verify(&keys, &token, "https://as", 150).unwrap();
        let mut forged = token.clone();
        forged.pop();
        forged.push(if token.ends_with('A') { 'B' } else { 'A' });
        assert!(cache.verify(&keys, &forged, "https://as", 150).is_err());
        assert!(matches!(cache.verify(&keys, &token, "https://other", 150), Err(VerifyError::WrongIssuer)));
        assert_eq!(cache.len(), 1, "failures are not remembered");
    }

    #[test]
    fn memory_stays_bounded() {
        let cache = VerifiedTokens::default();
        for i in 0..(CAPACITY + 10) {
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&(i as u64).to_le_bytes());
            // Half of them already expired at `now` = 150: those go first.
            cache.remember(key, Arc::new(claims(if i % 2 == 0 { 100 } else { 200 })), 150);
        }
        assert!(cache.len() <= CAPACITY);
        assert!(cache.len() > CAPACITY / 4, "live entries are kept while there is room");
    }
}
