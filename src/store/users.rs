//! People: accounts and their password hashes (Argon2id PHC strings).

use super::{Store, StoreError, StoreResult, with_pool};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: String,
    pub email: String,
    pub password_hash: Option<String>,
    pub is_admin: bool,
    pub created_at: i64,
}

macro_rules! user_columns {
    () => {
        "id, email, password_hash, is_admin, created_at"
    };
}

impl Store {
    pub async fn insert_user(&self, user: &UserRow) -> StoreResult<()> {
        with_pool!(self.pool(), p => sqlx::query(
            "INSERT INTO users (id, email, password_hash, is_admin, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&user.id)
        .bind(&user.email)
        .bind(&user.password_hash)
        .bind(user.is_admin)
        .bind(user.created_at)
        .execute(p)
        .await.map(|r| r.rows_affected()))
        .map_err(|e| StoreError::conflict_on_unique(e, "a user with this email"))?;
        Ok(())
    }

    pub async fn user_by_email(&self, email: &str) -> StoreResult<Option<UserRow>> {
        let sql = concat!("SELECT ", user_columns!(), " FROM users WHERE email = $1");
        Ok(with_pool!(self.pool(), p => sqlx::query_as::<_, UserRow>(sql).bind(email).fetch_optional(p).await)?)
    }

    pub async fn user_by_id(&self, id: &str) -> StoreResult<Option<UserRow>> {
        let sql = concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1");
        Ok(with_pool!(self.pool(), p => sqlx::query_as::<_, UserRow>(sql).bind(id).fetch_optional(p).await)?)
    }

    pub async fn count_users(&self) -> StoreResult<i64> {
        Ok(with_pool!(self.pool(), p => sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM users").fetch_one(p).await)?)
    }

    pub async fn set_password_hash(&self, user_id: &str, hash: &str) -> StoreResult<bool> {
        let done = with_pool!(self.pool(), p => sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(hash).bind(user_id).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }
}
