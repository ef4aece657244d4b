//! Values generated once and shared by every instance through the database.

use rand::Rng;
use sqlx::PgPool;

use crate::error::AppError;

/// The key links, credentials and door tokens are signed with: `SECRET_KEY`,
/// or one generated once and shared by every instance (and by the shell's
/// commands, so a URL they print opens on `serve`).
pub async fn secret_key(config: &crate::Config, pool: &PgPool) -> Result<Vec<u8>, AppError> {
    Ok(match &config.secret_key {
        Some(key) => key.as_bytes().to_vec(),
        None => get_or_generate(pool, "secret_key").await?.into_bytes(),
    })
}

/// Returns the stored value of `name`, generating and storing a random one
/// first if there is none. Safe when several instances start at once.
pub async fn get_or_generate(pool: &PgPool, name: &str) -> Result<String, AppError> {
    let candidate = hex::encode(rand::rng().random::<[u8; 32]>());
    sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
        .bind(name)
        .bind(&candidate)
        .execute(pool)
        .await?;
    Ok(sqlx::query_scalar("SELECT value FROM settings WHERE name = $1").bind(name).fetch_one(pool).await?)
}

/// The stored value of `name`, if any.
pub async fn get(pool: &PgPool, name: &str) -> Result<Option<String>, AppError> {
    Ok(sqlx::query_scalar("SELECT value FROM settings WHERE name = $1").bind(name).fetch_optional(pool).await?)
}

/// Stores `value` under `name`, replacing what was there.
pub async fn set(pool: &PgPool, name: &str, value: &str) -> Result<(), AppError> {
    sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = $2, updated_at = now()")
        .bind(name)
        .bind(value)
        .execute(pool)
        .await?;
    Ok(())
}
