//! A small OpenID provider on 127.0.0.1:0 for the sign-in tests: discovery, JWKS and a token
//! endpoint that checks client authentication, the redirect URI and PKCE. The test itself plays
//! the authorization endpoint: it reads the request Gatehouse sent the browser to, and hands
//! the provider the exact ID token (or answer) the next code is to be redeemed for, so every
//! tampering case is deterministic.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

pub const CLIENT_ID: &str = "gatehouse-test";
pub const CLIENT_SECRET: &str = "idp-client-secret-for-tests";

/// A P-256 signing key with its public JWK.
pub struct Key {
    pub kid: String,
    pub encoding: EncodingKey,
    pub jwk: Jwk,
}

impl Key {
    pub fn generate(kid: &str) -> Self {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let der = pair.to_pkcs8v1().unwrap();
        let encoding = EncodingKey::from_ec_der(der.as_ref());
        let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        Key { kid: kid.to_owned(), encoding, jwk }
    }

    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

/// What the token endpoint answers for a code.
#[derive(Clone)]
pub enum Answer {
    IdToken(String),
    Status(u16, String),
}

struct Pending {
    challenge: String,
    redirect_uri: String,
    answer: Answer,
}

#[derive(Default)]
struct Inner {
    published: Vec<Jwk>,
    codes: HashMap<String, Pending>,
    jwks_hits: usize,
    discovery_garbage: bool,
}

#[derive(Clone)]
pub struct TestIdp {
    pub issuer: String,
    inner: Arc<Mutex<Inner>>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl TestIdp {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let inner = Arc::new(Mutex::new(Inner::default()));
        let shared = (issuer.clone(), inner.clone());
        let app = axum::Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/token", post(token))
            .with_state(shared);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TestIdp { issuer, inner, task: Arc::new(task) }
    }

    /// Stops answering: connections are refused from now on.
    pub fn stop(&self) {
        self.task.abort();
    }

    pub fn publish(&self, keys: &[&Key]) {
        self.inner.lock().unwrap().published = keys.iter().map(|k| k.jwk.clone()).collect();
    }

    pub fn jwks_hits(&self) -> usize {
        self.inner.lock().unwrap().jwks_hits
    }

    pub fn serve_garbage_discovery(&self, on: bool) {
        self.inner.lock().unwrap().discovery_garbage = on;
    }

    /// Registers a code for the sign-in whose authorization request is `authorize_url`.
    pub fn issue_code(&self, authorize_url: &str, answer: Answer) -> String {
        let url = url::Url::parse(authorize_url).unwrap();
        let get = |n: &str| url.query_pairs().find(|(k, _)| k == n).map(|(_, v)| v.into_owned()).unwrap();
        assert_eq!(get("code_challenge_method"), "S256");
        assert_eq!(get("client_id"), CLIENT_ID);
        let code = format!("code-{}", uuid::Uuid::now_v7().simple());
        let pending = Pending { challenge: get("code_challenge"), redirect_uri: get("redirect_uri"), answer };
        self.inner.lock().unwrap().codes.insert(code.clone(), pending);
        code
    }
}

type Shared = (String, Arc<Mutex<Inner>>);

async fn discovery(State((issuer, inner)): State<Shared>) -> Response {
    if inner.lock().unwrap().discovery_garbage {
        return ([("content-type", "application/json")], "{\"issuer\": 42").into_response();
    }
    axum::Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256", "RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        "code_challenge_methods_supported": ["S256"],
    }))
    .into_response()
}

async fn jwks(State((_, inner)): State<Shared>) -> Response {
    let mut inner = inner.lock().unwrap();
    inner.jwks_hits += 1;
    axum::Json(JwkSet { keys: inner.published.clone() }).into_response()
}

async fn token(
    State((_, inner)): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let refuse = |error: &str| (StatusCode::BAD_REQUEST, axum::Json(json!({"error": error}))).into_response();
    let expected = format!("Basic {}", STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}")));
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "invalid_client"}))).into_response();
    }
    let Some(pending) = form.get("code").and_then(|c| inner.lock().unwrap().codes.remove(c)) else {
        return refuse("invalid_grant");
    };
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    let challenge = URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()));
    if form.get("grant_type").map(String::as_str) != Some("authorization_code")
        || challenge != pending.challenge
        || form.get("redirect_uri") != Some(&pending.redirect_uri)
    {
        return refuse("invalid_grant");
    }
    match pending.answer {
        Answer::IdToken(t) => {
            axum::Json(json!({"access_token": "at", "token_type": "Bearer", "expires_in": 300, "id_token": t}))
                .into_response()
        }
        Answer::Status(status, body) => {
            (StatusCode::from_u16(status).unwrap(), [("content-type", "application/json")], body).into_response()
        }
    }
}
