//! Client metadata (RFC 7591 §2) as this server accepts it, whether it arrives in a registration
//! request, an RFC 7592 update, a Client ID Metadata Document, or from an operator.
//!
//! Registration is strict: a value we do not support is refused, so the client learns at once.
//! A metadata document is written once for every authorization server, so its capabilities are
//! negotiated instead (draft-ietf-oauth-client-id-metadata-document §4, and what Claude.ai and
//! ChatGPT publish): grant types we do not offer are dropped, never added, and
//! `private_key_jwt` gives way to `none` when the document says the client can use both.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::super::error::{ErrorCode, OAuthError};
use super::super::redirect::validate_registered;
use super::super::scope::ScopeSet;

pub const MAX_REDIRECT_URIS: usize = 20;
const MAX_NAME_CHARS: usize = 100;

/// Informational fields echoed back (and shown to people) when they are of the right shape.
const INFORMATIONAL_URLS: &[&str] = &["client_uri", "logo_uri", "tos_uri", "policy_uri"];
const INFORMATIONAL_TEXT: &[&str] = &["software_id", "software_version"];

const SUPPORTED_GRANTS: &[&str] = &["authorization_code", "refresh_token"];

pub fn bad_metadata(d: impl Into<String>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClientMetadata, d)
}

pub fn bad_redirect(d: impl Into<String>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidRedirectUri, d)
}

/// Where the metadata came from, which decides how unsupported values are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// RFC 7591 registration or RFC 7592 update: unsupported values are refused.
    Registration,
    /// A Client ID Metadata Document: capabilities are negotiated, a name is required.
    MetadataDocument,
}

/// The fields we act on; the rest of a document is informational.
#[derive(Debug, Deserialize)]
struct Requested {
    redirect_uris: Option<Vec<String>>,
    token_endpoint_auth_method: Option<String>,
    /// Not RFC 7591: what CIMD documents (ChatGPT's) publish to say which methods they can use.
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
    grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
    client_name: Option<String>,
    application_type: Option<String>,
    scope: Option<String>,
}

/// Metadata that passed every check, normalised.
#[derive(Debug, Clone)]
pub struct Checked {
    pub client_name: String,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub response_types: Vec<String>,
    pub token_endpoint_auth_method: String,
    pub application_type: String,
    pub scope: Option<String>,
    /// Informational fields worth keeping (https URLs, short texts).
    pub informational: Map<String, Value>,
}

impl Checked {
    /// The metadata as a JSON object (no client_id, no secrets): what is stored and returned.
    pub fn to_json(&self) -> Map<String, Value> {
        let mut out = Map::new();
        out.insert("client_name".into(), json!(self.client_name));
        out.insert("redirect_uris".into(), json!(self.redirect_uris));
        out.insert("grant_types".into(), json!(self.grant_types));
        out.insert("response_types".into(), json!(self.response_types));
        out.insert("token_endpoint_auth_method".into(), json!(self.token_endpoint_auth_method));
        out.insert("application_type".into(), json!(self.application_type));
        if let Some(scope) = &self.scope {
            out.insert("scope".into(), json!(scope));
        }
        for (k, v) in &self.informational {
            out.insert(k.clone(), v.clone());
        }
        out
    }

    pub fn is_public(&self) -> bool {
        self.token_endpoint_auth_method == "none"
    }
}

/// Checks a metadata object; errors are `invalid_client_metadata` or `invalid_redirect_uri`.
pub fn check(doc: &Map<String, Value>, origin: Origin) -> Result<Checked, OAuthError> {
    let requested: Requested = serde_json::from_value(Value::Object(doc.clone()))
        .map_err(|e| bad_metadata(format!("a metadata field has the wrong type: {e}")))?;

    let token_endpoint_auth_method = auth_method(&requested, origin)?;
    let grant_types = grant_types(requested.grant_types, origin)?;
    let response_types = response_types(requested.response_types, origin)?;
    let redirect_uris = redirect_uris(requested.redirect_uris)?;
    // Unstated: a client whose redirects all stay on this device is a native app. The value is
    // recorded and shown, not enforced against the redirect URIs: Gatehouse is not an OpenID
    // provider, and real clients mix them (Cursor registers as `web` with a `cursor://` URI).
    let all_local = redirect_uris.iter().all(|u| !u.starts_with("https://"));
    let application_type = match requested.application_type.as_deref() {
        None => if all_local { "native" } else { "web" }.to_owned(),
        Some(t @ ("web" | "native")) => t.to_owned(),
        Some(other) => {
            return Err(bad_metadata(format!("application_type `{}` is not web or native", clip(other))));
        }
    };
    let scope = match (origin, requested.scope.as_deref()) {
        (Origin::Registration, Some(s)) => {
            Some(ScopeSet::parse_requested(Some(s)).map_err(|e| bad_metadata(e.description))?.to_scope_string())
        }
        // A document is written for many servers and names their scopes, not ours: consent
        // decides what this client gets.
        (Origin::MetadataDocument, _) | (Origin::Registration, None) => None,
    };
    let client_name = match requested.client_name.as_deref().map(clean_name).filter(|n| !n.is_empty()) {
        Some(name) => name,
        None if origin == Origin::MetadataDocument => {
            return Err(bad_metadata("the metadata document has no client_name"));
        }
        None => "Unnamed client".to_owned(),
    };
    Ok(Checked {
        client_name,
        redirect_uris,
        grant_types,
        response_types,
        token_endpoint_auth_method,
        application_type,
        scope,
        informational: informational(doc),
    })
}

fn auth_method(requested: &Requested, origin: Origin) -> Result<String, OAuthError> {
    let declared = requested.token_endpoint_auth_method.as_deref();
    match origin {
        Origin::Registration => {
            let method = declared.unwrap_or("client_secret_basic");
            match method {
                "none" | "client_secret_basic" | "client_secret_post" => Ok(method.to_owned()),
                other => Err(bad_metadata(format!(
                    "token_endpoint_auth_method `{}` is not supported; use none, client_secret_basic or client_secret_post",
                    clip(other)
                ))),
            }
        }
        Origin::MetadataDocument => {
            let can_use_none =
                requested.token_endpoint_auth_methods_supported.as_ref().is_some_and(|m| m.iter().any(|m| m == "none"));
            match declared {
                None | Some("none") => Ok("none".into()),
                Some("private_key_jwt") if can_use_none => Ok("none".into()),
                Some("private_key_jwt") => Err(bad_metadata(
                    "the document requires private_key_jwt, which this server does not support; publish token_endpoint_auth_method none",
                )),
                Some(m @ ("client_secret_basic" | "client_secret_post" | "client_secret_jwt")) => {
                    Err(bad_metadata(format!("a metadata document cannot use the shared-secret method `{m}`")))
                }
                Some(other) => {
                    Err(bad_metadata(format!("token_endpoint_auth_method `{}` is not supported", clip(other))))
                }
            }
        }
    }
}

fn grant_types(requested: Option<Vec<String>>, origin: Origin) -> Result<Vec<String>, OAuthError> {
    // Without grant_types we register both code and refresh (and say so in the response):
    // every MCP client wants refresh tokens, and RFC 7591 lets the server choose the values.
    let Some(requested) = requested else {
        return Ok(SUPPORTED_GRANTS.iter().map(|g| (*g).to_owned()).collect());
    };
    let mut granted: Vec<String> = Vec::new();
    for g in &requested {
        match (g.as_str(), origin) {
            ("authorization_code" | "refresh_token", _) => {
                if !granted.contains(g) {
                    granted.push(g.clone());
                }
            }
            ("client_credentials", Origin::Registration) => {
                return Err(bad_metadata(
                    "client_credentials clients are created by an operator (gatehouse client add), not by registration",
                ));
            }
            (other, Origin::Registration) => {
                return Err(bad_metadata(format!("grant type `{}` is not supported", clip(other))));
            }
            (_, Origin::MetadataDocument) => {}
        }
    }
    if !granted.iter().any(|g| g == "authorization_code") {
        return Err(bad_metadata("grant_types must include authorization_code"));
    }
    Ok(granted)
}

fn response_types(requested: Option<Vec<String>>, origin: Origin) -> Result<Vec<String>, OAuthError> {
    let Some(requested) = requested else { return Ok(vec!["code".into()]) };
    let ok = match origin {
        Origin::Registration => requested == ["code"],
        Origin::MetadataDocument => requested.iter().any(|r| r == "code"),
    };
    if ok { Ok(vec!["code".into()]) } else { Err(bad_metadata("response_types must be [\"code\"]")) }
}

fn redirect_uris(requested: Option<Vec<String>>) -> Result<Vec<String>, OAuthError> {
    let uris = requested.unwrap_or_default();
    if uris.is_empty() {
        return Err(bad_redirect("redirect_uris must list at least one URI"));
    }
    if uris.len() > MAX_REDIRECT_URIS {
        return Err(bad_redirect(format!("at most {MAX_REDIRECT_URIS} redirect URIs may be registered")));
    }
    for uri in &uris {
        validate_registered(uri).map_err(bad_redirect)?;
    }
    let mut unique: Vec<String> = Vec::with_capacity(uris.len());
    for uri in uris {
        if !unique.contains(&uri) {
            unique.push(uri);
        }
    }
    Ok(unique)
}

fn informational(doc: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for key in INFORMATIONAL_URLS {
        if let Some(Value::String(u)) = doc.get(*key)
            && u.len() <= 2_000
            && url::Url::parse(u).is_ok_and(|p| p.scheme() == "https")
        {
            out.insert((*key).into(), json!(u));
        }
    }
    for key in INFORMATIONAL_TEXT {
        if let Some(Value::String(t)) = doc.get(*key) {
            out.insert((*key).into(), json!(clip(t)));
        }
    }
    out
}

/// A display name: control characters removed, at most 100 characters.
pub fn clean_name(name: &str) -> String {
    name.chars().filter(|c| !c.is_control()).take(MAX_NAME_CHARS).collect::<String>().trim().to_owned()
}

pub fn clip(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(100).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn documents_negotiate_what_registration_refuses() {
        let claude = doc(json!({
            "client_name": "Claude",
            "redirect_uris": ["https://claude.ai/api/mcp/auth_callback"],
            "grant_types": ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:jwt-bearer"],
            "token_endpoint_auth_method": "none",
        }));
        let checked = check(&claude, Origin::MetadataDocument).unwrap();
        assert_eq!(checked.grant_types, ["authorization_code", "refresh_token"]);
        assert_eq!(check(&claude, Origin::Registration).unwrap_err().code, ErrorCode::InvalidClientMetadata);

        let chatgpt = doc(json!({
            "client_name": "ChatGPT",
            "redirect_uris": ["https://chatgpt.com/connector_platform_oauth_redirect"],
            "token_endpoint_auth_method": "private_key_jwt",
            "token_endpoint_auth_methods_supported": ["private_key_jwt", "none"],
        }));
        assert_eq!(check(&chatgpt, Origin::MetadataDocument).unwrap().token_endpoint_auth_method, "none");
        let mut only_jwt = chatgpt.clone();
        only_jwt.remove("token_endpoint_auth_methods_supported");
        assert!(check(&only_jwt, Origin::MetadataDocument).is_err());
    }

    #[test]
    fn application_type_is_inferred_and_checked() {
        let native = doc(json!({"redirect_uris": ["http://127.0.0.1/cb", "cursor://a.b/cb"]}));
        assert_eq!(check(&native, Origin::Registration).unwrap().application_type, "native");
        let web = doc(json!({"redirect_uris": ["https://app.example/cb"]}));
        assert_eq!(check(&web, Origin::Registration).unwrap().application_type, "web");
        let cursor = doc(json!({"redirect_uris": ["cursor://a.b/cb"], "application_type": "web"}));
        assert_eq!(check(&cursor, Origin::Registration).unwrap().application_type, "web");
        let odd = doc(json!({"redirect_uris": ["https://app.example/cb"], "application_type": "browser"}));
        assert!(check(&odd, Origin::Registration).is_err());
    }
}
