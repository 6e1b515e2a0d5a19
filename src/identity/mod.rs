//! People: accounts, passwords, browser sessions and the login page.

pub mod login;
pub mod oidc;
pub mod password;
pub mod session;
pub mod throttle;

use crate::clock::Clock;
use crate::crypto::CryptoError;
use crate::store::{Store, StoreError, UserRow};

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// Emails are compared in lower case; a minimal shape check keeps typos out.
pub fn normalize_email(email: &str) -> Result<String, String> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@') && !email.chars().any(char::is_whitespace)
        });
    if valid { Ok(email) } else { Err(format!("`{email}` is not an email address")) }
}

/// Creates a local account. `password` is checked for length and hashed with Argon2id.
pub async fn create_user(
    store: &Store,
    clock: &dyn Clock,
    email: &str,
    password: &str,
    is_admin: bool,
) -> Result<UserRow, UserError> {
    let email = normalize_email(email).map_err(UserError::Invalid)?;
    password::check_strength(password).map_err(UserError::Invalid)?;
    let hash = password::hash_async(password.to_owned()).await?;
    let user = UserRow {
        id: uuid::Uuid::now_v7().to_string(),
        email,
        password_hash: Some(hash),
        is_admin,
        created_at: clock.now(),
    };
    store.insert_user(&user).await?;
    Ok(user)
}
