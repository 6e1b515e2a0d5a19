//! Request parameters for OAuth endpoints: `application/x-www-form-urlencoded` bodies and
//! query strings, parsed strictly. RFC 6749 §3.1: parameters must not repeat; empty values
//! count as absent.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};

use super::error::OAuthError;

/// Largest form body accepted (a registration or token request is far smaller).
pub const MAX_FORM_BYTES: usize = 16 * 1024;

#[derive(Debug, Default, Clone)]
pub struct Params(HashMap<String, String>);

impl Params {
    pub fn parse(input: &[u8]) -> Result<Self, OAuthError> {
        let mut map = HashMap::new();
        for (k, v) in form_urlencoded::parse(input) {
            if v.is_empty() {
                continue;
            }
            if map.insert(k.to_string(), v.to_string()).is_some() {
                return Err(OAuthError::invalid_request(format!("parameter `{k}` appears more than once")));
            }
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

/// A form-encoded POST body, size-capped and content-type checked.
pub struct FormParams(pub Params);

impl<S: Send + Sync> FromRequest<S> for FormParams {
    type Rejection = OAuthError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
        if !is_form {
            return Err(OAuthError::invalid_request("the body must be application/x-www-form-urlencoded"));
        }
        let body = read_capped(req, state, MAX_FORM_BYTES).await?;
        Ok(FormParams(Params::parse(&body)?))
    }
}

/// Reads a body of at most `limit` bytes, answering 413 `invalid_request` beyond it.
pub async fn read_capped<S: Send + Sync>(req: Request, state: &S, limit: usize) -> Result<Bytes, OAuthError> {
    let req = req.map(|b| axum::body::Body::new(http_body_util::Limited::new(b, limit)));
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            OAuthError::invalid_request(format!("the request body is larger than {limit} bytes"))
                .with_status(StatusCode::PAYLOAD_TOO_LARGE)
        } else {
            OAuthError::invalid_request("the request body could not be read")
        }
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
    }
}
