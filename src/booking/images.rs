//! Poster images, stored in PostgreSQL so every instance can serve them.

use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::AppError;

pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<Option<(String, Vec<u8>)>, AppError> {
    Ok(sqlx::query_as("SELECT content_type, bytes FROM images WHERE id = $1").bind(id).fetch_optional(conn).await?)
}
