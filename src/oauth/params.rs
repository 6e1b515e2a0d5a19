//! Request parameters for OAuth endpoints: `application/x-www-form-urlencoded` bodies and
//! query strings, parsed strictly. RFC 6749 §3.1: parameters must not repeat; empty values
//! count as absent.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};

use super::error::OAuthError;
use crate::web::body::{BodyError, read_limited};

/// Largest form body accepted (a registration or token request is far smaller).
pub const MAX_FORM_BYTES: usize = 16 * 1024;

#[derive(Debug, Default, Clone)]
pub struct Params(HashMap<String, String>);

impl Params {
    /// Parses `a=1&b=2`. Unlike lenient decoders, a `%` not followed by two hex digits, or
    /// bytes that do not decode to UTF-8, are refused rather than passed through or replaced.
    pub fn parse(input: &[u8]) -> Result<Self, OAuthError> {
        let mut map = HashMap::new();
        for pair in input.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
            let (k, v) = match pair.iter().position(|b| *b == b'=') {
                Some(i) => (pair.get(..i).unwrap_or_default(), pair.get(i + 1..).unwrap_or_default()),
                None => (pair, &b""[..]),
            };
            let (k, v) = (decode_component(k)?, decode_component(v)?);
            if v.is_empty() {
                continue;
            }
            if map.contains_key(&k) {
                return Err(OAuthError::invalid_request(format!("parameter `{}` appears more than once", clip(&k))));
            }
            map.insert(k, v);
        }
        Ok(Params(map))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name).ok_or_else(|| OAuthError::invalid_request(format!("missing parameter `{name}`")))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter()
    }
}

/// Decodes one form-encoded component strictly.
pub(crate) fn decode_component(raw: &[u8]) -> Result<String, OAuthError> {
    let malformed =
        || OAuthError::invalid_request("the request is not valid form encoding (bad % escape or not UTF-8)");
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        if b == b'%' {
            let hex = |j: usize| raw.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return Err(malformed());
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    let plus_as_space: Vec<u8> = raw.iter().map(|b| if *b == b'+' { b' ' } else { *b }).collect();
    percent_encoding::percent_decode(&plus_as_space).decode_utf8().map(|s| s.into_owned()).map_err(|_| malformed())
}

fn clip(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(40).collect()
}

/// A form-encoded POST body, size-capped and content-type checked.
pub struct FormParams(pub Params);

impl<S: Send + Sync> FromRequest<S> for FormParams {
    type Rejection = OAuthError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
        if !is_form {
            return Err(OAuthError::invalid_request("the body must be application/x-www-form-urlencoded"));
        }
        let body = read_capped(req, MAX_FORM_BYTES).await?;
        Ok(FormParams(Params::parse(&body)?))
    }
}

/// Reads a body of at most `limit` bytes, answering 413 `invalid_request` beyond it.
pub async fn read_capped(req: Request, limit: usize) -> Result<Bytes, OAuthError> {
    let (parts, body) = req.into_parts();
    read_limited(&parts.headers, body, limit).await.map_err(|e| match e {
        BodyError::TooLarge => OAuthError::invalid_request(format!("the request body is larger than {limit} bytes"))
            .with_status(StatusCode::PAYLOAD_TOO_LARGE),
        BodyError::Unreadable => OAuthError::invalid_request("the request body could not be read"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_parameters_are_refused_and_empty_ones_ignored() {
        assert!(Params::parse(b"a=1&a=2").is_err());
        let p = Params::parse(b"a=1&b=&c=%20x").unwrap();
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(p.get("b"), None);
        assert_eq!(p.get("c"), Some(" x"));
        assert_eq!(Params::parse(b"a=b+c%2B").unwrap().get("a"), Some("b c+"));
        for bad in [&b"a=%ZZ"[..], b"a=%4", b"a=%", b"a=%FF%FE", b"%C3%28=x"] {
            assert!(Params::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
