//! Turning a fetched metadata document into a client (draft-ietf-oauth-client-id-metadata-document
//! §4 and the MCP client-registration rules): a JSON object whose `client_id` is, byte for byte,
//! the URL it was fetched from, with a `client_name` and `redirect_uris` that pass the same rules
//! as registration, and no shared secret of any kind.

use serde_json::{Map, Value, json};

use super::CimdError;
use crate::oauth::register::metadata::{self, Origin};
use crate::store::{ClientRow, client_source};

/// Fields that would give a URL-identified client a shared secret (§4.1).
const SECRET_FIELDS: &[&str] = &["client_secret", "client_secret_expires_at"];

/// Validates `body`, fetched from `url`, into the client it describes (as of `now`).
pub fn client_from_document(url: &str, body: &[u8], now: i64) -> Result<ClientRow, CimdError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| CimdError::Malformed(format!("it is not valid JSON ({})", short(&e.to_string()))))?;
    let Value::Object(doc) = value else {
        return Err(CimdError::Malformed("it is not a JSON object".into()));
    };
    match doc.get("client_id") {
        Some(Value::String(id)) if id == url => {}
        Some(Value::String(id)) => return Err(CimdError::ClientIdMismatch(short(id))),
        Some(_) => return Err(CimdError::Malformed("its client_id is not a string".into())),
        None => return Err(CimdError::Malformed("it has no client_id".into())),
    }
    if let Some(field) = SECRET_FIELDS.iter().find(|f| doc.contains_key(**f)) {
        return Err(CimdError::Invalid(format!("a metadata document must not carry `{field}`")));
    }
    if doc.get("jwks").and_then(|j| j.get("keys")).and_then(Value::as_array).is_some_and(|keys| {
        keys.iter().any(|k| ["d", "p", "q", "dp", "dq", "qi", "k"].iter().any(|f| k.get(*f).is_some()))
    }) {
        return Err(CimdError::Invalid("its jwks contains private or symmetric key material".into()));
    }
    let checked = metadata::check(&doc, Origin::MetadataDocument).map_err(|e| CimdError::Invalid(e.description))?;

    let mut stored: Map<String, Value> = checked.to_json();
    stored.insert("client_id".into(), json!(url));
    Ok(ClientRow {
        id: url.to_owned(),
        secret_hash: None,
        client_name: checked.client_name.clone(),
        redirect_uris: json!(checked.redirect_uris).to_string(),
        grant_types: json!(checked.grant_types).to_string(),
        token_endpoint_auth_method: checked.token_endpoint_auth_method.clone(),
        application_type: checked.application_type.clone(),
        scope: None,
        workspace_id: None,
        source: client_source::METADATA_DOCUMENT.into(),
        metadata: Value::Object(stored).to_string(),
        created_at: now,
        last_used_at: None,
        registration_token_hash: None,
        updated_at: Some(now),
    })
}

fn short(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(120).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://client.example/oauth/client.json";

    fn doc(v: Value) -> Vec<u8> {
        v.to_string().into_bytes()
    }

    #[test]
    fn a_good_document_becomes_a_public_client() {
        let body = doc(json!({
            "client_id": URL, "client_name": "Example", "redirect_uris": ["http://127.0.0.1/callback"],
            "logo_uri": "https://client.example/logo.png", "scope": "profile email"
        }));
        let client = client_from_document(URL, &body, 7).unwrap();
        assert_eq!(client.id, URL);
        assert!(client.secret_hash.is_none());
        assert_eq!(client.token_endpoint_auth_method, "none");
        assert_eq!(client.application_type, "native");
        assert_eq!(client.source, "metadata_document");
        assert!(client.scope.is_none(), "the document's scope does not restrict consent");
        assert!(client.metadata.contains("logo.png"));
    }

    #[test]
    fn bad_documents_say_why() {
        let base =
            || json!({"client_id": URL, "client_name": "Example", "redirect_uris": ["https://client.example/cb"]});
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"{not json".to_vec(), "not valid JSON"),
            (doc(json!([base()])), "not a JSON object"),
            (doc(json!({"client_name": "x", "redirect_uris": ["https://client.example/cb"]})), "no client_id"),
            (
                doc({
                    let mut d = base();
                    d["client_id"] = json!(format!("{URL}/"));
                    d
                }),
                "client_id",
            ),
            (
                doc({
                    let mut d = base();
                    d["client_id"] = json!(42);
                    d
                }),
                "not a string",
            ),
            (
                doc({
                    let mut d = base();
                    d["client_secret"] = json!("s");
                    d
                }),
                "client_secret",
            ),
            (
                doc({
                    let mut d = base();
                    d.as_object_mut().unwrap().remove("client_name");
                    d
                }),
                "client_name",
            ),
            (
                doc({
                    let mut d = base();
                    d["redirect_uris"] = json!([]);
                    d
                }),
                "redirect_uris",
            ),
            (
                doc({
                    let mut d = base();
                    d["redirect_uris"] = json!(["javascript:alert(1)"]);
                    d
                }),
                "not allowed",
            ),
            (
                doc({
                    let mut d = base();
                    d["token_endpoint_auth_method"] = json!("client_secret_post");
                    d
                }),
                "shared-secret",
            ),
            (
                doc({
                    let mut d = base();
                    d["jwks"] = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]});
                    d
                }),
                "private",
            ),
        ];
        for (body, why) in cases {
            let err = client_from_document(URL, &body, 0).unwrap_err();
            assert!(err.to_string().contains(why), "{err} should mention {why}");
        }
    }
}
