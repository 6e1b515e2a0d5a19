//! Access-token signing keys: generated here, sealed at rest, published as a JWKS with `kid`s
//! (RFC 7638 thumbprints). The newest key of the configured algorithm signs; every key
//! not retired verifies, so changing the algorithm never breaks tokens already issued.

use std::collections::HashMap;
use std::str::FromStr;

use aws_lc_rs::encoding::AsDer;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Validation};
use serde::{Deserialize, Serialize};

use super::CryptoError;
use super::aead::{Sealer, Slot};
use super::jws::JwsSigner;
use crate::store::{SigningKeyRow, Store, StoreError};

/// The algorithms an operator may choose for access tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum SigningAlg {
    #[default]
    RS256,
    ES256,
    EdDSA,
}

impl SigningAlg {
    pub fn name(self) -> &'static str {
        match self {
            SigningAlg::RS256 => "RS256",
            SigningAlg::ES256 => "ES256",
            SigningAlg::EdDSA => "EdDSA",
        }
    }

    pub(crate) fn jwt(self) -> Algorithm {
        match self {
            SigningAlg::RS256 => Algorithm::RS256,
            SigningAlg::ES256 => Algorithm::ES256,
            SigningAlg::EdDSA => Algorithm::EdDSA,
        }
    }

    /// A new private key as PKCS#8 DER.
    fn generate_pkcs8(self) -> Result<Vec<u8>, CryptoError> {
        let fail = |what: &str| CryptoError::Key(format!("could not generate a {what} key"));
        match self {
            SigningAlg::RS256 => {
                let pair =
                    aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).map_err(|_| fail("RSA"))?;
                Ok(pair.as_der().map_err(|_| fail("RSA"))?.as_ref().to_vec())
            }
            SigningAlg::ES256 => {
                let pair = aws_lc_rs::signature::EcdsaKeyPair::generate(
                    &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                )
                .map_err(|_| fail("P-256"))?;
                Ok(pair.to_pkcs8v1().map_err(|_| fail("P-256"))?.as_ref().to_vec())
            }
            SigningAlg::EdDSA => {
                let pair = aws_lc_rs::signature::Ed25519KeyPair::generate().map_err(|_| fail("Ed25519"))?;
                Ok(pair.to_pkcs8v1().map_err(|_| fail("Ed25519"))?.as_ref().to_vec())
            }
        }
    }

    fn encoding_key(self, pkcs8: &[u8]) -> Result<EncodingKey, CryptoError> {
        let pem = format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", STANDARD.encode(pkcs8));
        let key = match self {
            SigningAlg::RS256 => EncodingKey::from_rsa_pem(pem.as_bytes()),
            SigningAlg::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()),
            SigningAlg::EdDSA => EncodingKey::from_ed_pem(pem.as_bytes()),
        };
        key.map_err(|e| CryptoError::Key(format!("stored {} key is unreadable: {e}", self.name())))
    }
}

impl FromStr for SigningAlg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "RS256" => Ok(SigningAlg::RS256),
            "ES256" => Ok(SigningAlg::ES256),
            "EdDSA" => Ok(SigningAlg::EdDSA),
            other => Err(format!("unsupported signing algorithm `{other}`: choose RS256, ES256 or EdDSA")),
        }
    }
}

/// Claims of our access tokens (RFC 9068 profile).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub client_id: String,
    pub scope: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    /// The grant this token came from; revoking the grant revokes the token.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub gid: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token was signed by an unknown key")]
    UnknownKey,
    #[error("the token signature is invalid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token was issued by another authorization server")]
    WrongIssuer,
    #[error("the token is not an access token")]
    WrongType,
}

struct SigningKey {
    kid: String,
    alg: SigningAlg,
    jws: JwsSigner,
}

/// All live keys: one signs, all verify.
pub struct KeyRing {
    signer: SigningKey,
    verifiers: HashMap<String, (DecodingKey, Algorithm)>,
    jwks: JwkSet,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing").field("signer", &self.signer.kid).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl KeyRing {
    /// Loads the live keys, generating one of `alg` first if none exists.
    pub async fn load_or_create(
        store: &Store,
        sealer: &Sealer,
        alg: SigningAlg,
        now: i64,
    ) -> Result<Self, KeyRingError> {
        let mut rows = store.active_signing_keys().await?;
        if !rows.iter().any(|r| r.alg == alg.name()) {
            let row = new_key_row(sealer, alg, now)?;
            store.insert_signing_key(&row).await?;
            rows.insert(0, row);
        }
        let mut signer = None;
        let mut verifiers = HashMap::new();
        let mut keys = Vec::new();
        for row in rows {
            let row_alg = SigningAlg::from_str(&row.alg).map_err(CryptoError::Key)?;
            let pkcs8 = sealer.open(&row.private_key, &key_slot(&row.kid))?;
            let jwk: Jwk = serde_json::from_str(&row.public_jwk)
                .map_err(|e| CryptoError::Key(format!("stored JWK {} is unreadable: {e}", row.kid)))?;
            let decoding = DecodingKey::from_jwk(&jwk)
                .map_err(|e| CryptoError::Key(format!("stored JWK {} is unusable: {e}", row.kid)))?;
            verifiers.insert(row.kid.clone(), (decoding, row_alg.jwt()));
            keys.push(jwk);
            if signer.is_none() && row_alg == alg {
                let jws = JwsSigner::new(row_alg, &row.kid, &pkcs8)?;
                signer = Some(SigningKey { kid: row.kid, alg: row_alg, jws });
            }
        }
        let signer = signer.ok_or_else(|| CryptoError::Key(format!("no {} key could be loaded", alg.name())))?;
        Ok(KeyRing { signer, verifiers, jwks: JwkSet { keys } })
    }

    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }

    pub fn signing_alg(&self) -> SigningAlg {
        self.signer.alg
    }

    pub fn sign(&self, claims: &AccessClaims) -> Result<String, CryptoError> {
        self.signer.jws.sign(claims)
    }

    /// Checks signature, type, issuer and expiry (against `now`, our clock). Audience is the
    /// caller's to check, since it depends on where the token is being used.
    pub fn verify(&self, token: &str, issuer: &str, now: i64) -> Result<AccessClaims, VerifyError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)?;
        if header.typ.as_deref().map(str::to_ascii_lowercase).as_deref() != Some("at+jwt") {
            return Err(VerifyError::WrongType);
        }
        let kid = header.kid.ok_or(VerifyError::UnknownKey)?;
        let (key, alg) = self.verifiers.get(&kid).ok_or(VerifyError::UnknownKey)?;
        if header.alg != *alg {
            return Err(VerifyError::BadSignature);
        }
        let mut validation = Validation::new(*alg);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<AccessClaims>(token, key, &validation).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => VerifyError::BadSignature,
            _ => VerifyError::Malformed,
        })?;
        let claims = data.claims;
        if claims.iss != issuer {
            return Err(VerifyError::WrongIssuer);
        }
        if claims.exp <= now {
            return Err(VerifyError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
impl KeyRing {
    /// A ring of one fresh `alg` key, without a database.
    pub(crate) fn for_tests(alg: SigningAlg) -> KeyRing {
        let sealer = Sealer::new(&super::master::MasterKey::from_bytes([3; 32])).expect("sealer");
        let row = new_key_row(&sealer, alg, 100).expect("key");
        let jwk: Jwk = serde_json::from_str(&row.public_jwk).expect("jwk");
        let pkcs8 = sealer.open(&row.private_key, &key_slot(&row.kid)).expect("open");
        KeyRing {
            signer: SigningKey {
                kid: row.kid.clone(),
                alg,
                jws: JwsSigner::new(alg, &row.kid, &pkcs8).expect("signer"),
            },
            verifiers: HashMap::from([(
                row.kid.clone(),
                (DecodingKey::from_jwk(&jwk).expect("decoding key"), alg.jwt()),
            )]),
            jwks: JwkSet { keys: vec![jwk] },
        }
    }
}

fn key_slot(kid: &str) -> Slot<'_> {
    Slot { table: "signing_keys", row: kid, column: "private_key" }
}

fn new_key_row(sealer: &Sealer, alg: SigningAlg, now: i64) -> Result<SigningKeyRow, CryptoError> {
    let pkcs8 = alg.generate_pkcs8()?;
    let encoding = alg.encoding_key(&pkcs8)?;
    let mut jwk = Jwk::from_encoding_key(&encoding, alg.jwt()).map_err(|e| CryptoError::Key(e.to_string()))?;
    let kid = jwk.thumbprint(ThumbprintHash::SHA256).map_err(|e| CryptoError::Key(e.to_string()))?;
    jwk.common.key_id = Some(kid.clone());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk.common.key_algorithm = Some(match alg {
        SigningAlg::RS256 => KeyAlgorithm::RS256,
        SigningAlg::ES256 => KeyAlgorithm::ES256,
        SigningAlg::EdDSA => KeyAlgorithm::EdDSA,
    });
    let public_jwk = serde_json::to_string(&jwk).map_err(|e| CryptoError::Key(e.to_string()))?;
    let private_key = sealer.seal(&pkcs8, &key_slot(&kid))?;
    Ok(SigningKeyRow { kid, alg: alg.name().to_owned(), private_key, public_jwk, created_at: now, retired_at: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_signs_and_verifies_through_its_own_jwk() {
        let sealer = Sealer::new(&super::super::master::MasterKey::from_bytes([3; 32])).unwrap();
        for alg in [SigningAlg::RS256, SigningAlg::ES256, SigningAlg::EdDSA] {
            let row = new_key_row(&sealer, alg, 100).unwrap();
            let jwk: Jwk = serde_json::from_str(&row.public_jwk).unwrap();
            assert!(!row.public_jwk.contains("\"d\""), "private part leaked into the JWK");
            let pkcs8 = sealer.open(&row.private_key, &key_slot(&row.kid)).unwrap();
            let ring = KeyRing {
                signer: SigningKey { kid: row.kid.clone(), alg, jws: JwsSigner::new(alg, &row.kid, &pkcs8).unwrap() },
                verifiers: HashMap::from([(row.kid.clone(), (DecodingKey::from_jwk(&jwk).unwrap(), alg.jwt()))]),
                jwks: JwkSet { keys: vec![jwk] },
            };
            let claims = AccessClaims {
                iss: "https://as".into(),
                sub: "u".into(),
                aud: "https://as/t/x/mcp".into(),
                client_id: "c".into(),
                scope: "mcp:read".into(),
                iat: 100,
                exp: 200,
                jti: "j".into(),
                gid: Some("g".into()),
            };
            let token = ring.sign(&claims).unwrap();
            assert_eq!(ring.verify(&token, "https://as", 150).unwrap(), claims);
            assert!(matches!(ring.verify(&token, "https://as", 200), Err(VerifyError::Expired)));
            assert!(matches!(ring.verify(&token, "https://other", 150), Err(VerifyError::WrongIssuer)));
            let mut forged = token.clone();
            forged.pop();
            forged.push(if token.ends_with('A') { 'B' } else { 'A' });
            assert!(ring.verify(&forged, "https://as", 150).is_err());
        }
    }
}
