//! CSRF defences.
//!
//! Login and logout use a double-submit token: a random cookie echoed in a hidden field.
//! The consent form carries the whole authorization request signed with HMAC and bound to
//! the browser session, so a forged or replayed form from another session does not verify.

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::crypto::constant_time_eq;

/// Signs and checks small values that travel through the browser.
#[derive(Clone)]
pub struct FormSigner {
    key: hmac::Key,
}

impl std::fmt::Debug for FormSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FormSigner")
    }
}

impl FormSigner {
    pub fn new(key: &[u8; 32]) -> Self {
        FormSigner { key: hmac::Key::new(hmac::HMAC_SHA256, key) }
    }

    /// `payload.mac`, the MAC covering the payload and `binding` (e.g. the session hash).
    pub fn sign<T: Serialize>(&self, value: &T, binding: &str) -> Option<String> {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).ok()?);
        let tag = hmac::sign(&self.key, format!("{binding}\0{payload}").as_bytes());
        Some(format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref())))
    }

    pub fn verify<T: DeserializeOwned>(&self, signed: &str, binding: &str) -> Option<T> {
        let (payload, mac) = signed.split_once('.')?;
        let mac = URL_SAFE_NO_PAD.decode(mac).ok()?;
        hmac::verify(&self.key, format!("{binding}\0{payload}").as_bytes(), &mac).ok()?;
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
    }
}

/// Checks a double-submitted token: cookie and field must both be present and equal.
pub fn double_submit_ok(cookie: Option<&str>, field: Option<&str>) -> bool {
    match (cookie, field) {
        (Some(c), Some(f)) if c.len() >= 32 => constant_time_eq(c, f),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_values_are_bound() {
        let s = FormSigner::new(&[9; 32]);
        let t = s.sign(&("a", 1), "session-1").unwrap();
        assert_eq!(s.verify::<(String, i32)>(&t, "session-1"), Some(("a".into(), 1)));
        assert_eq!(s.verify::<(String, i32)>(&t, "session-2"), None);
        let other = FormSigner::new(&[8; 32]);
        assert_eq!(other.verify::<(String, i32)>(&t, "session-1"), None);
        let mut forged = t.clone();
        forged.insert(0, 'x');
        assert_eq!(s.verify::<(String, i32)>(&forged, "session-1"), None);
    }

    #[test]
    fn double_submit() {
        let tok = "a".repeat(43);
        assert!(double_submit_ok(Some(&tok), Some(&tok)));
        assert!(!double_submit_ok(Some(&tok), Some("b")));
        assert!(!double_submit_ok(None, Some(&tok)));
        assert!(!double_submit_ok(Some("short"), Some("short")));
    }
}
