//! Everything that can stop an OpenID Connect sign-in, each with a stable reason (audit log)
//! and a page that says what happened and what to do.

use axum::http::StatusCode;

use super::id_token::IdTokenError;
use crate::store::StoreError;
use crate::web::PageError;

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("no such identity provider")]
    UnknownProvider,
    #[error("the identity provider is unavailable: {0}")]
    ProviderUnavailable(String),
    #[error("the identity provider answered something unusable: {0}")]
    ProviderGarbage(String),
    #[error("unknown, expired or already used sign-in state")]
    StateInvalid,
    #[error("the sign-in was started in another browser")]
    OtherBrowser,
    #[error("the sign-in was started with another identity provider")]
    ProviderMismatch,
    #[error("the identity provider's answer names another issuer (iss)")]
    IssuerParameterMismatch,
    #[error("the identity provider did not sign the person in: {error}")]
    Denied { error: String, description: Option<String> },
    #[error("the identity provider's answer carries no code")]
    MissingCode,
    #[error("the identity provider refused the code: {0}")]
    TokenRefused(String),
    #[error("the identity provider returned no ID token")]
    NoIdToken,
    #[error(transparent)]
    IdToken(#[from] IdTokenError),
    #[error("the ID token carries no `{0}` claim")]
    MissingClaim(String),
    #[error("email domain not allowed: {0}")]
    EmailDomainNotAllowed(String),
    #[error("the identity provider says the email is not verified")]
    EmailNotVerified,
    #[error("a local account with this email already exists")]
    AccountExists,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] crate::crypto::CryptoError),
    #[error("could not start a session: {0}")]
    Session(String),
}

impl OidcError {
    /// A stable short name for the audit log.
    pub fn as_reason(&self) -> &'static str {
        match self {
            OidcError::UnknownProvider => "unknown provider",
            OidcError::ProviderUnavailable(_) => "provider unavailable",
            OidcError::ProviderGarbage(_) => "provider answer unusable",
            OidcError::StateInvalid => "unknown, expired or replayed state",
            OidcError::OtherBrowser => "state bound to another browser",
            OidcError::ProviderMismatch => "state of another provider",
            OidcError::IssuerParameterMismatch => "iss parameter mismatch",
            OidcError::Denied { .. } => "denied at the provider",
            OidcError::MissingCode => "no code",
            OidcError::TokenRefused(_) => "code refused by the provider",
            OidcError::NoIdToken => "no id_token",
            OidcError::IdToken(e) => e.as_reason(),
            OidcError::MissingClaim(_) => "claim missing",
            OidcError::EmailDomainNotAllowed(_) => "email domain not allowed",
            OidcError::EmailNotVerified => "email not verified",
            OidcError::AccountExists => "local account with this email exists",
            OidcError::Store(_) => "storage error",
            OidcError::Crypto(_) => "crypto error",
            OidcError::Session(_) => "session error",
        }
    }

    /// The page shown to the person.
    pub fn page(&self, provider_name: &str) -> PageError {
        let again = "Go back to the sign-in page and try again.";
        match self {
            OidcError::UnknownProvider => PageError::new(
                StatusCode::NOT_FOUND,
                "Unknown sign-in method",
                "This identity provider is not configured here.",
            ),
            OidcError::ProviderUnavailable(why) | OidcError::ProviderGarbage(why) => PageError::new(
                StatusCode::BAD_GATEWAY,
                format!("{provider_name} is not working right now"),
                format!(
                    "Gatehouse could not complete the sign-in with {provider_name}: {why}. Try again in a moment; if it keeps failing, tell your administrator."
                ),
            ),
            OidcError::StateInvalid => PageError::bad_request(
                "This sign-in link has expired or was already used",
                format!("Sign-ins must finish within ten minutes and each link works once. {again}"),
            ),
            OidcError::OtherBrowser => PageError::bad_request(
                "This sign-in was started in another browser",
                format!("Finish signing in in the browser where you started. {again} (Cookies must be enabled.)"),
            ),
            OidcError::ProviderMismatch | OidcError::IssuerParameterMismatch | OidcError::MissingCode => {
                PageError::bad_request(
                    "The sign-in answer does not fit",
                    format!("The answer from the identity provider does not belong to this sign-in. {again}"),
                )
            }
            OidcError::Denied { error, description } => PageError::new(
                StatusCode::FORBIDDEN,
                format!("{provider_name} did not sign you in"),
                match description {
                    Some(d) => format!("{provider_name} answered: {d} ({error}). {again}"),
                    None => format!("{provider_name} answered: {error}. {again}"),
                },
            ),
            OidcError::TokenRefused(_) | OidcError::NoIdToken | OidcError::IdToken(_) => PageError::new(
                StatusCode::BAD_GATEWAY,
                "The sign-in could not be verified",
                format!(
                    "Gatehouse did not accept the answer from {provider_name}: {self}. Nobody was signed in. {again} If it keeps failing, tell your administrator."
                ),
            ),
            OidcError::MissingClaim(claim) => PageError::new(
                StatusCode::FORBIDDEN,
                "Your account is missing information",
                format!(
                    "{provider_name} did not share your `{claim}`; your administrator must allow it (for email: the `email` scope)."
                ),
            ),
            OidcError::EmailDomainNotAllowed(domain) => PageError::new(
                StatusCode::FORBIDDEN,
                "This account may not sign in here",
                format!(
                    "Accounts at {domain} cannot sign in to this Gatehouse. Sign in at {provider_name} with your organisation's account."
                ),
            ),
            OidcError::EmailNotVerified => PageError::new(
                StatusCode::FORBIDDEN,
                "Your email address is not verified",
                format!(
                    "{provider_name} says your email address is not verified. Verify it there, then sign in again."
                ),
            ),
            OidcError::AccountExists => PageError::new(
                StatusCode::CONFLICT,
                "An account with your email already exists",
                format!(
                    "There is already a Gatehouse account with this email that was not created through {provider_name}, and Gatehouse does not take over accounts by email. Sign in with your password, or ask an administrator to allow linking accounts whose email the provider has verified."
                ),
            ),
            OidcError::Store(e) => PageError::internal(e),
            OidcError::Crypto(e) => PageError::internal(e),
            OidcError::Session(e) => PageError::internal(e),
        }
    }
}
