//! Poster images, stored in PostgreSQL so every instance can serve them.

use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::AppError;

pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<Option<(String, Vec<u8>)>, AppError> {
    Ok(sqlx::query_as("SELECT content_type, bytes FROM images WHERE id = $1").bind(id).fetch_optional(conn).await?)
}

/// The image types a poster may be, told by content, never by file name.
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// Stores an image whose type `sniff` recognised; returns its id.
pub async fn store(conn: &mut PgConnection, content_type: &str, bytes: &[u8]) -> Result<Uuid, AppError> {
    use sha2::Digest;
    let id = Uuid::new_v4();
    sqlx::query("INSERT INTO images (id, content_type, bytes, sha256) VALUES ($1, $2, $3, $4)")
        .bind(id)
        .bind(content_type)
        .bind(bytes)
        .bind(hex::encode(sha2::Sha256::digest(bytes)))
        .execute(conn)
        .await?;
    Ok(id)
}

/// Forgets posters no activity uses (replaced, or uploaded and abandoned) once
/// they are a day old: an upload's activity form may still be in flight for a
/// while, and a cached page may still show a replaced poster for a bit.
pub async fn forget_unused(conn: &mut PgConnection) -> Result<u64, AppError> {
    Ok(sqlx::query(
        "DELETE FROM images i WHERE i.created_at < now() - interval '1 day' \
         AND NOT EXISTS (SELECT 1 FROM activities a WHERE a.poster_id = i.id)",
    )
    .execute(conn)
    .await?
    .rows_affected())
}
