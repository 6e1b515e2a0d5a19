//! ID token validation (OpenID Connect Core §3.1.3.7): signature by a key of the provider's
//! JWKS with an allowed asymmetric algorithm, then `iss`, `aud`/`azp`, `exp`, `iat`, `nonce` and
//! `sub`, all against our clock.

use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::crypto::constant_time_eq;

/// Clock skew tolerated between us and the provider.
pub const LEEWAY_SECS: i64 = 60;

/// Asymmetric algorithms only: never `none`, never HMAC (a public key is no shared secret).
pub use mcp_resource_guard::issuer::DEFAULT_ALGORITHMS as SUPPORTED_ALGS;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenError {
    #[error("the ID token is not a well-formed JWT")]
    Malformed,
    #[error("the ID token is signed with {0}, which is not allowed")]
    AlgorithmNotAllowed(String),
    #[error("the ID token is signed by a key the provider does not publish")]
    UnknownKey,
    #[error("the ID token's signature does not verify")]
    BadSignature,
    #[error("the ID token was issued by someone else")]
    WrongIssuer,
    #[error("the ID token was issued for another application")]
    WrongAudience,
    #[error("the ID token's authorized party (azp) is another application")]
    WrongAuthorizedParty,
    #[error("the ID token has expired")]
    Expired,
    #[error("the ID token is dated in the future")]
    IssuedInFuture,
    #[error("the ID token does not belong to this sign-in (nonce mismatch)")]
    NonceMismatch,
    #[error("the ID token names nobody (no subject)")]
    MissingSubject,
}

impl IdTokenError {
    /// A stable short name, for the audit log.
    pub fn as_reason(&self) -> &'static str {
        match self {
            IdTokenError::Malformed => "id_token malformed",
            IdTokenError::AlgorithmNotAllowed(_) => "id_token algorithm not allowed",
            IdTokenError::UnknownKey => "id_token signed by an unknown key",
            IdTokenError::BadSignature => "id_token signature invalid",
            IdTokenError::WrongIssuer => "id_token issuer mismatch",
            IdTokenError::WrongAudience => "id_token audience mismatch",
            IdTokenError::WrongAuthorizedParty => "id_token azp mismatch",
            IdTokenError::Expired => "id_token expired",
            IdTokenError::IssuedInFuture => "id_token issued in the future",
            IdTokenError::NonceMismatch => "id_token nonce mismatch",
            IdTokenError::MissingSubject => "id_token without subject",
        }
    }
}

/// What the header asks for: its algorithm (already checked against `allowed`) and key id.
pub fn inspect_header(token: &str, allowed: &[Algorithm]) -> Result<(Algorithm, Option<String>), IdTokenError> {
    let raw_alg = raw_header_alg(token).ok_or(IdTokenError::Malformed)?;
    let header = jsonwebtoken::decode_header(token).map_err(|_| {
        // `none` and other names jsonwebtoken does not know fail to parse: say which.
        if raw_alg.is_empty() { IdTokenError::Malformed } else { IdTokenError::AlgorithmNotAllowed(raw_alg.clone()) }
    })?;
    if !allowed.contains(&header.alg) || !SUPPORTED_ALGS.contains(&header.alg) {
        return Err(IdTokenError::AlgorithmNotAllowed(format!("{:?}", header.alg)));
    }
    Ok((header.alg, header.kid))
}

fn raw_header_alg(token: &str) -> Option<String> {
    use base64::Engine;
    let first = token.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(first).ok()?;
    let header: Value = serde_json::from_slice(&bytes).ok()?;
    Some(header.get("alg")?.as_str()?.chars().take(20).collect())
}

/// The published key for `kid` (or, without a kid, the only signing key), if it suits `alg`.
pub fn select_key(jwks: &JwkSet, kid: Option<&str>, alg: Algorithm) -> Option<DecodingKey> {
    let suitable = |jwk: &&Jwk| {
        !matches!(&jwk.common.public_key_use, Some(PublicKeyUse::Encryption))
            && jwk.common.key_algorithm.is_none_or(|a| key_alg_matches(a, alg))
    };
    let jwk = match kid {
        Some(kid) => jwks.keys.iter().filter(suitable).find(|k| k.common.key_id.as_deref() == Some(kid))?,
        None => {
            let mut candidates = jwks.keys.iter().filter(suitable);
            let only = candidates.next()?;
            if candidates.next().is_some() {
                return None;
            }
            only
        }
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    (key.family() == alg.family()).then_some(key)
}

fn key_alg_matches(key_alg: KeyAlgorithm, alg: Algorithm) -> bool {
    let name = format!("{key_alg:?}");
    name == format!("{alg:?}")
}

/// What a sign-in expects of its ID token.
pub struct Expected<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub nonce: &'a str,
    pub now: i64,
}

/// Verifies the signature with `key` and checks the claims; returns them.
pub fn verify(
    token: &str,
    key: &DecodingKey,
    alg: Algorithm,
    expected: &Expected<'_>,
) -> Result<Map<String, Value>, IdTokenError> {
    let mut validation = Validation::new(alg);
    // Checked below, against our clock and with our own error for each.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation).map_err(|e| match e.kind() {
        jsonwebtoken::errors::ErrorKind::InvalidSignature => IdTokenError::BadSignature,
        jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => IdTokenError::AlgorithmNotAllowed(format!("{alg:?}")),
        _ => IdTokenError::Malformed,
    })?;
    let claims = data.claims;
    check_claims(&claims, expected)?;
    Ok(claims)
}

fn check_claims(claims: &Map<String, Value>, expected: &Expected<'_>) -> Result<(), IdTokenError> {
    if claims.get("iss").and_then(Value::as_str) != Some(expected.issuer) {
        return Err(IdTokenError::WrongIssuer);
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !audiences.contains(&expected.client_id) {
        return Err(IdTokenError::WrongAudience);
    }
    // §3.1.3.7 items 4 and 5: with several audiences azp must be present, and when present it
    // must be us.
    match claims.get("azp") {
        Some(Value::String(azp)) if azp == expected.client_id => {}
        None if audiences.len() == 1 => {}
        Some(_) | None => return Err(IdTokenError::WrongAuthorizedParty),
    }
    let exp = claims.get("exp").and_then(Value::as_i64).ok_or(IdTokenError::Malformed)?;
    if expected.now >= exp.saturating_add(LEEWAY_SECS) {
        return Err(IdTokenError::Expired);
    }
    let iat = claims.get("iat").and_then(Value::as_i64).ok_or(IdTokenError::Malformed)?;
    if iat > expected.now.saturating_add(LEEWAY_SECS) {
        return Err(IdTokenError::IssuedInFuture);
    }
    match claims.get("nonce").and_then(Value::as_str) {
        Some(n) if constant_time_eq(n, expected.nonce) => {}
        _ => return Err(IdTokenError::NonceMismatch),
    }
    match claims.get("sub").and_then(Value::as_str) {
        Some(s) if !s.is_empty() => Ok(()),
        _ => Err(IdTokenError::MissingSubject),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn expected(now: i64) -> Expected<'static> {
        Expected { issuer: "https://idp.example", client_id: "gatehouse", nonce: "n-123", now }
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn good() -> Value {
        json!({"iss": "https://idp.example", "aud": "gatehouse", "sub": "u1", "exp": 1_100, "iat": 1_000, "nonce": "n-123"})
    }

    #[test]
    fn claims_are_checked_one_by_one() {
        assert_eq!(check_claims(&claims(good()), &expected(1_000)), Ok(()));
        let with = |k: &str, v: Value| {
            let mut c = claims(good());
            c.insert(k.into(), v);
            c
        };
        let cases = [
            (with("iss", json!("https://idp.example/")), IdTokenError::WrongIssuer),
            (with("aud", json!("someone-else")), IdTokenError::WrongAudience),
            (with("aud", json!(["gatehouse", "other"])), IdTokenError::WrongAuthorizedParty),
            (with("azp", json!("other")), IdTokenError::WrongAuthorizedParty),
            (with("nonce", json!("n-124")), IdTokenError::NonceMismatch),
            (with("sub", json!("")), IdTokenError::MissingSubject),
            (with("iat", json!(1_000 + 2 * LEEWAY_SECS)), IdTokenError::IssuedInFuture),
            (with("exp", json!("soon")), IdTokenError::Malformed),
        ];
        for (c, err) in cases {
            assert_eq!(check_claims(&c, &expected(1_000)), Err(err.clone()), "{err:?}");
        }
        let mut multi = with("aud", json!(["gatehouse", "other"]));
        multi.insert("azp".into(), json!("gatehouse"));
        assert_eq!(check_claims(&multi, &expected(1_000)), Ok(()));
        let mut no_nonce = claims(good());
        no_nonce.remove("nonce");
        assert_eq!(check_claims(&no_nonce, &expected(1_000)), Err(IdTokenError::NonceMismatch));
        // Expiry, with the leeway for clock skew.
        assert_eq!(check_claims(&claims(good()), &expected(1_100 + LEEWAY_SECS - 1)), Ok(()));
        assert_eq!(check_claims(&claims(good()), &expected(1_100 + LEEWAY_SECS)), Err(IdTokenError::Expired));
    }

    #[test]
    fn none_and_hmac_are_refused_before_any_key_is_looked_at() {
        use base64::Engine;
        let enc = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let none = format!("{}.{}.", enc(json!({"alg": "none"})), enc(good()));
        assert_eq!(inspect_header(&none, SUPPORTED_ALGS), Err(IdTokenError::AlgorithmNotAllowed("none".into())));
        let hs = format!("{}.{}.c2ln", enc(json!({"alg": "HS256", "kid": "k"})), enc(good()));
        assert_eq!(inspect_header(&hs, &[Algorithm::HS256]), Err(IdTokenError::AlgorithmNotAllowed("HS256".into())));
        let rs = format!("{}.{}.c2ln", enc(json!({"alg": "RS256", "kid": "k"})), enc(good()));
        assert_eq!(inspect_header(&rs, &[Algorithm::ES256]), Err(IdTokenError::AlgorithmNotAllowed("RS256".into())));
        assert_eq!(inspect_header(&rs, SUPPORTED_ALGS), Ok((Algorithm::RS256, Some("k".into()))));
        assert_eq!(inspect_header("garbage", SUPPORTED_ALGS), Err(IdTokenError::Malformed));
    }
}
