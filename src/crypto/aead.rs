//! AES-256-GCM envelopes for values at rest.
//!
//! Layout: `b"v1"` | master key id (8 ASCII hex) | 12-byte nonce | ciphertext+tag.
//! The additional data names the table, row and column, so an envelope copied into
//! another row or column does not open.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use super::master::MasterKey;
use super::{CryptoError, random_bytes};

const VERSION: &[u8; 2] = b"v1";
const KID_LEN: usize = 8;

/// Where a sealed value lives; bound into the ciphertext.
pub struct Slot<'a> {
    pub table: &'a str,
    pub row: &'a str,
    pub column: &'a str,
}

impl Slot<'_> {
    fn aad(&self) -> Vec<u8> {
        format!("{}\0{}\0{}", self.table, self.row, self.column).into_bytes()
    }
}

/// Seals under the current master key; opens under it or any earlier key it was given (so a
/// master key rotation never makes data unreadable half-way).
pub struct Sealer {
    key: LessSafeKey,
    kid: String,
    previous: Vec<(String, LessSafeKey)>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl Sealer {
    pub fn new(master: &MasterKey) -> Result<Self, CryptoError> {
        Ok(Sealer { key: Self::aead_key(master)?, kid: master.kid().to_owned(), previous: Vec::new() })
    }

    /// Seals under `ring[0]`, opens under any key of `ring`.
    pub fn with_ring(ring: &[MasterKey]) -> Result<Self, CryptoError> {
        let (current, earlier) = ring.split_first().ok_or_else(|| CryptoError::MasterKey("no master key".into()))?;
        let mut sealer = Self::new(current)?;
        for key in earlier {
            sealer.previous.push((key.kid().to_owned(), Self::aead_key(key)?));
        }
        Ok(sealer)
    }

    fn aead_key(master: &MasterKey) -> Result<LessSafeKey, CryptoError> {
        let unbound =
            UnboundKey::new(&AES_256_GCM, &master.derive("at-rest aes-256-gcm")).map_err(|_| CryptoError::Encrypt)?;
        Ok(LessSafeKey::new(unbound))
    }

    /// The id of the key new envelopes are sealed under.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The id of the master key an envelope was sealed under.
    pub fn envelope_kid(envelope: &[u8]) -> Option<&str> {
        envelope.get(2..2 + KID_LEN).and_then(|kid| std::str::from_utf8(kid).ok())
    }

    pub fn seal(&self, plaintext: &[u8], slot: &Slot<'_>) -> Result<Vec<u8>, CryptoError> {
        let nonce_bytes = random_bytes::<NONCE_LEN>()?;
        let mut body = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce_bytes), Aad::from(slot.aad()), &mut body)
            .map_err(|_| CryptoError::Encrypt)?;
        let mut out = Vec::with_capacity(2 + KID_LEN + NONCE_LEN + body.len());
        out.extend_from_slice(VERSION);
        out.extend_from_slice(self.kid.as_bytes());
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&body);
        Ok(out)
    }

    pub fn open(&self, envelope: &[u8], slot: &Slot<'_>) -> Result<Vec<u8>, CryptoError> {
        let (version, rest) = envelope.split_at_checked(2).ok_or(CryptoError::Decrypt)?;
        let (kid, rest) = rest.split_at_checked(KID_LEN).ok_or(CryptoError::Decrypt)?;
        let (nonce, sealed) = rest.split_at_checked(NONCE_LEN).ok_or(CryptoError::Decrypt)?;
        if version != VERSION {
            return Err(CryptoError::Decrypt);
        }
        let key = if kid == self.kid.as_bytes() {
            &self.key
        } else if let Some((_, key)) = self.previous.iter().find(|(id, _)| id.as_bytes() == kid) {
            key
        } else {
            return Err(CryptoError::MasterKey(format!(
                "this data was sealed under master key {} but the configured key is {}; \
                 set GATEHOUSE_MASTER_KEY (or the data directory's master.key) to the key this database was created with",
                String::from_utf8_lossy(kid),
                self.kid
            )));
        };
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Decrypt)?;
        let mut body = sealed.to_vec();
        let plain = key.open_in_place(nonce, Aad::from(slot.aad()), &mut body).map_err(|_| CryptoError::Decrypt)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(row: &str) -> Slot<'_> {
        Slot { table: "signing_keys", row, column: "private_key" }
    }

    #[test]
    fn round_trip_and_binding_to_the_slot() {
        let sealer = Sealer::new(&MasterKey::from_bytes([1; 32])).unwrap();
        let env = sealer.seal(b"secret", &slot("a")).unwrap();
        assert!(!env.windows(6).any(|w| w == b"secret"));
        assert_eq!(sealer.open(&env, &slot("a")).unwrap(), b"secret");
        assert!(matches!(sealer.open(&env, &slot("b")), Err(CryptoError::Decrypt)));
        let mut tampered = env.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(matches!(sealer.open(&tampered, &slot("a")), Err(CryptoError::Decrypt)));
        assert!(matches!(sealer.open(&env[..5], &slot("a")), Err(CryptoError::Decrypt)));
    }

    #[test]
    fn a_ring_opens_what_earlier_keys_sealed() {
        let old = MasterKey::from_bytes([1; 32]);
        let new = MasterKey::from_bytes([2; 32]);
        let sealed_before = Sealer::new(&old).unwrap().seal(b"x", &slot("a")).unwrap();
        let ring = Sealer::with_ring(&[MasterKey::from_bytes([2; 32]), MasterKey::from_bytes([1; 32])]).unwrap();
        assert_eq!(ring.open(&sealed_before, &slot("a")).unwrap(), b"x");
        let sealed_after = ring.seal(b"y", &slot("a")).unwrap();
        assert_eq!(Sealer::envelope_kid(&sealed_after), Some(new.kid()));
        assert_eq!(Sealer::new(&new).unwrap().open(&sealed_after, &slot("a")).unwrap(), b"y");
        assert!(Sealer::new(&old).unwrap().open(&sealed_after, &slot("a")).is_err());
    }

    #[test]
    fn another_master_key_is_named_in_the_error() {
        let a = Sealer::new(&MasterKey::from_bytes([1; 32])).unwrap();
        let b = Sealer::new(&MasterKey::from_bytes([2; 32])).unwrap();
        let env = a.seal(b"x", &slot("a")).unwrap();
        let err = b.open(&env, &slot("a")).unwrap_err().to_string();
        assert!(err.contains("GATEHOUSE_MASTER_KEY"), "{err}");
    }
}
