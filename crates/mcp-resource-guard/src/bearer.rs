//! Taking the bearer token from a request (RFC 6750 §2.1). Tokens in query strings are
//! refused outright: they end up in logs, proxies and browser histories.

use axum::http::{HeaderMap, header};

use crate::challenge::Refusal;

/// The token of `Authorization: Bearer <token>`.
pub fn bearer_token<'a>(headers: &'a HeaderMap, query: Option<&str>) -> Result<&'a str, Refusal> {
    if query.is_some_and(|q| q.split('&').any(|p| p.starts_with("access_token="))) {
        return Err(Refusal::BadRequest("send the access token in the Authorization header, never in the URL".into()));
    }
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(Refusal::NoToken);
    };
    let value = value.to_str().map_err(|_| Refusal::BadRequest("malformed Authorization header".into()))?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => Ok(token.trim()),
        _ => Err(Refusal::InvalidToken("use the Bearer scheme: Authorization: Bearer <token>".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_auth(v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static(v));
        h
    }

    #[test]
    fn extraction() {
        assert_eq!(bearer_token(&with_auth("Bearer abc"), None), Ok("abc"));
        assert_eq!(bearer_token(&with_auth("bearer  abc "), None), Ok("abc"));
        assert_eq!(bearer_token(&HeaderMap::new(), None), Err(Refusal::NoToken));
        assert!(matches!(bearer_token(&with_auth("Basic abc"), None), Err(Refusal::InvalidToken(_))));
        assert!(matches!(bearer_token(&with_auth("Bearer "), None), Err(Refusal::InvalidToken(_))));
        assert!(matches!(
            bearer_token(&with_auth("Bearer abc"), Some("x=1&access_token=abc")),
            Err(Refusal::BadRequest(_))
        ));
    }
}
