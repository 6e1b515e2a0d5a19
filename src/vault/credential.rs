//! How an upstream signs in, as the rest of the program sees it (secrets in the clear, in
//! memory only), and its sealed form in `upstream_credentials`.

use crate::crypto::aead::{Sealer, Slot};
use crate::store::CredentialRow;

use super::VaultError;

/// The ways an upstream can be signed in to (see the module docs of [`super`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignIn {
    None,
    /// Static secret headers, sealed in `upstreams.headers`.
    Headers,
    ClientCredentials,
    AuthorizationCode,
}

impl SignIn {
    pub fn label(self) -> &'static str {
        match self {
            SignIn::None => "none",
            SignIn::Headers => "secret headers (stored encrypted)",
            SignIn::ClientCredentials => "OAuth client credentials, shared by the workspace",
            SignIn::AuthorizationCode => "OAuth, each person connects their account",
        }
    }
}

/// The OAuth grant an upstream's credential is used with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantKind {
    ClientCredentials,
    AuthorizationCode,
}

impl GrantKind {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantKind::ClientCredentials => "client_credentials",
            GrantKind::AuthorizationCode => "authorization_code",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "client_credentials" => Some(GrantKind::ClientCredentials),
            "authorization_code" => Some(GrantKind::AuthorizationCode),
            _ => None,
        }
    }
}

/// How the gateway authenticates itself at the upstream's token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// A public client: `client_id` in the form only.
    None,
    ClientSecretBasic,
    ClientSecretPost,
    /// RFC 7523 client assertion signed with our private key.
    PrivateKeyJwt,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::None => "none",
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "none" => Some(AuthMethod::None),
            "client_secret_basic" => Some(AuthMethod::ClientSecretBasic),
            "client_secret_post" => Some(AuthMethod::ClientSecretPost),
            "private_key_jwt" => Some(AuthMethod::PrivateKeyJwt),
            _ => None,
        }
    }
}

/// An upstream's OAuth client registration at its authorization server.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuthCredential {
    pub grant: GrantKind,
    pub issuer: Option<String>,
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    /// PEM (PKCS#8) private key for [`AuthMethod::PrivateKeyJwt`].
    pub private_key: Option<String>,
    pub auth_method: AuthMethod,
    /// Scope to ask for; `None` omits the parameter.
    pub scope: Option<String>,
    /// RFC 8707 resource indicator; `None` omits it (some servers reject it).
    pub resource: Option<String>,
    /// `audience` parameter for servers that want one.
    pub audience: Option<String>,
}

impl std::fmt::Debug for OAuthCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthCredential")
            .field("grant", &self.grant)
            .field("token_endpoint", &self.token_endpoint)
            .field("client_id", &self.client_id)
            .field("auth_method", &self.auth_method)
            .finish_non_exhaustive()
    }
}

pub(crate) fn slot<'a>(table: &'a str, row: &'a str, column: &'a str) -> Slot<'a> {
    Slot { table, row, column }
}

impl OAuthCredential {
    /// Checks the settings hang together (a secret for the secret methods, a key for
    /// private_key_jwt, http(s) endpoints).
    pub fn validate(&self) -> Result<(), VaultError> {
        let http_url = |what: &str, value: &str| -> Result<(), VaultError> {
            match url::Url::parse(value) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
                _ => Err(VaultError::Invalid(format!("{what} `{value}` must be an http(s) URL"))),
            }
        };
        http_url("token endpoint", &self.token_endpoint)?;
        if let Some(endpoint) = &self.authorization_endpoint {
            http_url("authorization endpoint", endpoint)?;
        }
        if self.grant == GrantKind::AuthorizationCode && self.authorization_endpoint.is_none() {
            return Err(VaultError::Invalid("an authorization-code upstream needs an authorization endpoint".into()));
        }
        if self.client_id.trim().is_empty() {
            return Err(VaultError::Invalid("the client id is empty".into()));
        }
        match self.auth_method {
            AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost if self.client_secret.is_none() => {
                Err(VaultError::Invalid(format!("{} needs a client secret", self.auth_method.as_str())))
            }
            AuthMethod::PrivateKeyJwt if self.private_key.is_none() => {
                Err(VaultError::Invalid("private_key_jwt needs a private key".into()))
            }
            AuthMethod::None if self.grant == GrantKind::ClientCredentials => {
                Err(VaultError::Invalid("client_credentials needs a client secret or a private key".into()))
            }
            AuthMethod::None
            | AuthMethod::ClientSecretBasic
            | AuthMethod::ClientSecretPost
            | AuthMethod::PrivateKeyJwt => Ok(()),
        }
    }

    pub(crate) fn seal(&self, sealer: &Sealer, upstream_id: &str, now: i64) -> Result<CredentialRow, VaultError> {
        let seal = |value: &Option<String>, column: &str| -> Result<Option<Vec<u8>>, VaultError> {
            value
                .as_ref()
                .map(|v| sealer.seal(v.as_bytes(), &slot("upstream_credentials", upstream_id, column)))
                .transpose()
                .map_err(VaultError::from)
        };
        Ok(CredentialRow {
            upstream_id: upstream_id.to_owned(),
            kind: self.grant.as_str().to_owned(),
            issuer: self.issuer.clone(),
            authorization_endpoint: self.authorization_endpoint.clone(),
            token_endpoint: self.token_endpoint.clone(),
            client_id: self.client_id.clone(),
            client_secret: seal(&self.client_secret, "client_secret")?,
            private_key: seal(&self.private_key, "private_key")?,
            auth_method: self.auth_method.as_str().to_owned(),
            scope: self.scope.clone(),
            resource: self.resource.clone(),
            audience: self.audience.clone(),
            updated_at: now,
        })
    }

    pub(crate) fn open(sealer: &Sealer, row: &CredentialRow) -> Result<Self, VaultError> {
        let open = |value: &Option<Vec<u8>>, column: &str| -> Result<Option<String>, VaultError> {
            value
                .as_ref()
                .map(|sealed| {
                    let plain = sealer.open(sealed, &slot("upstream_credentials", &row.upstream_id, column))?;
                    String::from_utf8(plain).map_err(|_| VaultError::Invalid(format!("stored {column} is not text")))
                })
                .transpose()
        };
        let unreadable =
            |what: &str| VaultError::Invalid(format!("stored {what} of upstream {} unknown", row.upstream_id));
        Ok(OAuthCredential {
            grant: GrantKind::parse(&row.kind).ok_or_else(|| unreadable("grant"))?,
            issuer: row.issuer.clone(),
            authorization_endpoint: row.authorization_endpoint.clone(),
            token_endpoint: row.token_endpoint.clone(),
            client_id: row.client_id.clone(),
            client_secret: open(&row.client_secret, "client_secret")?,
            private_key: open(&row.private_key, "private_key")?,
            auth_method: AuthMethod::parse(&row.auth_method).ok_or_else(|| unreadable("client auth method"))?,
            scope: row.scope.clone(),
            resource: row.resource.clone(),
            audience: row.audience.clone(),
        })
    }
}
