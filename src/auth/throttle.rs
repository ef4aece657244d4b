//! Failed-login throttling, per account and per address, in PostgreSQL so it
//! holds across instances.

use sqlx::PgConnection;

use crate::error::AppError;

/// Failures counted over this many minutes.
pub const WINDOW_MINUTES: i32 = 15;
/// Failures for one username before its logins are refused for the window.
pub const PER_ACCOUNT: i64 = 5;
/// Failures from one address (across usernames) before it is refused.
pub const PER_ADDRESS: i64 = 20;

pub async fn is_throttled(conn: &mut PgConnection, username: &str, address: &str) -> Result<bool, AppError> {
    let (by_user, by_address): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM login_failures WHERE username = $1 AND at > now() - make_interval(mins => $3)), \
                (SELECT count(*) FROM login_failures WHERE address = $2 AND at > now() - make_interval(mins => $3))",
    )
    .bind(username)
    .bind(address)
    .bind(WINDOW_MINUTES)
    .fetch_one(conn)
    .await?;
    Ok(by_user >= PER_ACCOUNT || by_address >= PER_ADDRESS)
}

pub async fn record_failure(conn: &mut PgConnection, username: &str, address: &str) -> Result<(), AppError> {
    sqlx::query("INSERT INTO login_failures (username, address) VALUES ($1, $2)")
        .bind(username)
        .bind(address)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM login_failures WHERE at < now() - interval '1 day'").execute(conn).await?;
    Ok(())
}

/// A successful login forgets that account's failures.
pub async fn clear(conn: &mut PgConnection, username: &str) -> Result<(), AppError> {
    sqlx::query("DELETE FROM login_failures WHERE username = $1").bind(username).execute(conn).await?;
    Ok(())
}
