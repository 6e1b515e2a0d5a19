//! Compact JWS signing with private keys parsed once.
//!
//! `jsonwebtoken::encode` parses the private key again for every signature: for RSA a full
//! key check, for ECDSA a public-key derivation, each costing about as much as the signature
//! itself. Access tokens are therefore signed here with aws-lc-rs key pairs kept parsed, and
//! the constant header segment encoded once. Verification (ours and every client's) is plain
//! RFC 7515, through `jsonwebtoken` and the JWKS as before.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, RSA_PKCS1_SHA256};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Header;
use serde::Serialize;

use super::CryptoError;
use super::signing::SigningAlg;

enum ParsedKey {
    Rsa(aws_lc_rs::rsa::KeyPair),
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// Signs JWTs with one key: `typ: at+jwt`, its `alg` and `kid`.
pub struct JwsSigner {
    /// `base64url(header) + "."`, the same for every token of this key.
    header_segment: String,
    key: ParsedKey,
    rng: SystemRandom,
}

impl JwsSigner {
    /// A signer for the PKCS#8 private key `pkcs8` of `alg`, published as `kid`.
    pub fn new(alg: SigningAlg, kid: &str, pkcs8: &[u8]) -> Result<Self, CryptoError> {
        let unreadable = || CryptoError::Key(format!("stored {} key {kid} is unreadable", alg.name()));
        let key = match alg {
            SigningAlg::RS256 => ParsedKey::Rsa(aws_lc_rs::rsa::KeyPair::from_pkcs8(pkcs8).map_err(|_| unreadable())?),
            SigningAlg::ES256 => ParsedKey::Ecdsa(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8).map_err(|_| unreadable())?,
            ),
            SigningAlg::EdDSA => ParsedKey::Ed25519(Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| unreadable())?),
        };
        let mut header = Header::new(alg.jwt());
        header.typ = Some("at+jwt".into());
        header.kid = Some(kid.to_owned());
        let json = serde_json::to_vec(&header).map_err(|e| CryptoError::Key(e.to_string()))?;
        let mut header_segment = URL_SAFE_NO_PAD.encode(json);
        header_segment.push('.');
        Ok(JwsSigner { header_segment, key, rng: SystemRandom::new() })
    }

    /// `header.claims.signature`, each part base64url without padding (RFC 7515 §7.1).
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, CryptoError> {
        let json = serde_json::to_vec(claims).map_err(|e| CryptoError::Key(e.to_string()))?;
        let mut token = String::with_capacity(self.header_segment.len() + json.len() * 4 / 3 + 360);
        token.push_str(&self.header_segment);
        URL_SAFE_NO_PAD.encode_string(json, &mut token);
        let failed = || CryptoError::Key("signing failed".into());
        let signature = match &self.key {
            ParsedKey::Rsa(pair) => {
                let mut sig = vec![0u8; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &self.rng, token.as_bytes(), &mut sig).map_err(|_| failed())?;
                sig
            }
            ParsedKey::Ecdsa(pair) => pair.sign(&self.rng, token.as_bytes()).map_err(|_| failed())?.as_ref().to_vec(),
            ParsedKey::Ed25519(pair) => pair.sign(token.as_bytes()).as_ref().to_vec(),
        };
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        Ok(token)
    }
}
