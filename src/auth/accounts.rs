//! Admin users.

use sqlx::{Acquire, FromRow, PgConnection, PgPool};

use crate::{auth::passwords, error::AppError};

#[derive(Debug, Clone, FromRow)]
pub struct Admin {
    pub id: i64,
    pub username: String,
}

/// The longest password taken (typed or set). Hashing cost grows with the
/// input; no one types more, so more is refused unread.
pub const MAX_PASSWORD_CHARS: usize = 1024;

/// The longest username (the `admin_users` table's limit).
pub const MAX_USERNAME_BYTES: usize = 64;

pub fn valid_username(name: &str) -> bool {
    (1..=MAX_USERNAME_BYTES).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// Creates an admin, or sets a new password when the username exists. A new
/// password ends every session of that admin: whoever knew the old one is out.
pub async fn add(conn: &mut PgConnection, username: &str, password: &str) -> Result<Admin, AppError> {
    if !valid_username(username) {
        return Err(AppError::Invalid("username: letters, digits, `_`, `.` and `-`, at most 64".into()));
    }
    if !(8..=MAX_PASSWORD_CHARS).contains(&password.chars().count()) {
        return Err(AppError::Invalid(format!("password: 8 to {MAX_PASSWORD_CHARS} characters")));
    }
    let hash = passwords::hash(password.to_string()).await?;
    let mut tx = conn.begin().await?;
    let admin: Admin = sqlx::query_as(
        "INSERT INTO admin_users (username, password_hash) VALUES ($1, $2) \
         ON CONFLICT (username) DO UPDATE SET password_hash = EXCLUDED.password_hash RETURNING id, username",
    )
    .bind(username)
    .bind(hash)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM admin_sessions WHERE user_id = $1").bind(admin.id).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(admin)
}

/// Whether an admin with this username exists (`add` would overwrite its password).
pub async fn exists(conn: &mut PgConnection, username: &str) -> Result<bool, AppError> {
    Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM admin_users WHERE username = $1)")
        .bind(username)
        .fetch_one(conn)
        .await?)
}

/// The admin whose username and password these are. The connection goes back
/// to the pool before the (slow) hash is checked, so a flood of logins cannot
/// hold the connections the students' requests need.
pub async fn check_password(pool: &PgPool, username: &str, password: &str) -> Result<Option<Admin>, AppError> {
    let row: Option<(i64, String, String)> =
        sqlx::query_as("SELECT id, username, password_hash FROM admin_users WHERE username = $1")
            .bind(username)
            .fetch_optional(pool)
            .await?;
    let (admin, stored) = match row {
        Some((id, username, hash)) => (Some(Admin { id, username }), hash),
        None => (None, passwords::DUMMY_HASH.to_string()),
    };
    let ok = passwords::verify(password.to_string(), stored).await;
    Ok(admin.filter(|_| ok))
}
