//! Admin sessions: a random cookie value; the database keeps only its SHA-256,
//! so a leaked sessions table opens no session.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::Rng;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;

use crate::{
    auth::accounts::{Admin, Role},
    error::AppError,
};

/// How long a login lasts.
pub const LIFETIME_HOURS: i32 = 12;

pub struct Session {
    pub admin: Admin,
    /// Echoed in every admin form; checked on every state-changing request.
    pub csrf_token: String,
}

fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::rng().random::<[u8; 32]>())
}

fn digest(cookie: &str) -> String {
    hex::encode(Sha256::digest(cookie.as_bytes()))
}

/// Starts a session; returns the cookie value. A fresh id at every login, so a
/// session id planted before login is worthless after it.
pub async fn start(conn: &mut PgConnection, admin_id: i64) -> Result<String, AppError> {
    let cookie = random_token();
    sqlx::query(
        "INSERT INTO admin_sessions (id, user_id, csrf_token, expires_at) \
         VALUES ($1, $2, $3, now() + make_interval(hours => $4))",
    )
    .bind(digest(&cookie))
    .bind(admin_id)
    .bind(random_token())
    .bind(LIFETIME_HOURS)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE admin_users SET last_login_at = now() WHERE id = $1")
        .bind(admin_id)
        .execute(&mut *conn)
        .await?;
    Ok(cookie)
}

/// The session of this cookie. A disabled account has none: disabling deletes
/// its sessions, and this reads the flag too, so no request in between slips by.
pub async fn find(conn: &mut PgConnection, cookie: &str) -> Result<Option<Session>, AppError> {
    let row: Option<(i64, String, Role, String)> = sqlx::query_as(
        "SELECT u.id, u.username, u.role, s.csrf_token FROM admin_sessions s JOIN admin_users u ON u.id = s.user_id \
         WHERE s.id = $1 AND s.expires_at > now() AND u.disabled_at IS NULL",
    )
    .bind(digest(cookie))
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(id, username, role, csrf_token)| Session { admin: Admin { id, username, role }, csrf_token }))
}

pub async fn end(conn: &mut PgConnection, cookie: &str) -> Result<(), AppError> {
    sqlx::query("DELETE FROM admin_sessions WHERE id = $1").bind(digest(cookie)).execute(conn).await?;
    Ok(())
}

pub async fn forget_expired(conn: &mut PgConnection) -> Result<u64, AppError> {
    Ok(sqlx::query("DELETE FROM admin_sessions WHERE expires_at < now()").execute(conn).await?.rows_affected())
}
