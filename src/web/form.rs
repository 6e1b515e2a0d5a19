//! Form posts from our pages: size-capped, `application/x-www-form-urlencoded` only, strictly
//! decoded. Unlike OAuth parameters, a name may repeat (a group of checkboxes).

use axum::extract::{FromRequest, Request};
use axum::http::header;

use super::PageError;
use crate::oauth::params::{decode_component, read_capped};

/// Largest form body a page posts (an upstream with headers, a list of redirect URIs).
const MAX_PAGE_FORM_BYTES: usize = 32 * 1024;

#[derive(Debug, Default, Clone)]
pub struct PageForm(Vec<(String, String)>);

impl PageForm {
    pub fn parse(body: &[u8]) -> Result<Self, PageError> {
        let mut pairs = Vec::new();
        for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
            let (k, v) = match pair.iter().position(|b| *b == b'=') {
                Some(i) => (pair.get(..i).unwrap_or_default(), pair.get(i + 1..).unwrap_or_default()),
                None => (pair, &b""[..]),
            };
            let bad = |_| PageError::bad_request("This form could not be read", "Reload the page and try again.");
            pairs.push((decode_component(k).map_err(bad)?, decode_component(v).map_err(bad)?));
        }
        Ok(PageForm(pairs))
    }

    /// The first value of `name`, trimmed; `None` when absent or blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim()).filter(|v| !v.is_empty())
    }

    /// The first value of `name` exactly as sent (passwords), or "".
    pub fn raw(&self, name: &str) -> &str {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or_default()
    }

    /// Every non-blank value of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.trim()).filter(|v| !v.is_empty()).collect()
    }
}

impl<S: Send + Sync> FromRequest<S> for PageForm {
    type Rejection = PageError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
        if !is_form {
            return Err(PageError::bad_request("This form could not be read", "Submit it from the page itself."));
        }
        let body = read_capped(req, MAX_PAGE_FORM_BYTES)
            .await
            .map_err(|e| PageError::bad_request("This form could not be read", e.description))?;
        Self::parse(&body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_kept_and_blanks_ignored() {
        let f = PageForm::parse(b"scope=mcp%3Aread&scope=mcp%3Atools&name=+&pw=+x+").unwrap();
        assert_eq!(f.all("scope"), ["mcp:read", "mcp:tools"]);
        assert_eq!(f.get("name"), None);
        assert_eq!(f.get("pw"), Some("x"));
        assert_eq!(f.raw("pw"), " x ");
        assert!(PageForm::parse(b"a=%ZZ").is_err());
    }
}
