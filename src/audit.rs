//! The audit log of admin actions: who did what, when.

use sqlx::{FromRow, PgConnection};
use time::OffsetDateTime;

use crate::error::AppError;

#[derive(Debug, Clone, FromRow)]
pub struct Entry {
    pub actor: String,
    pub action: String,
    pub detail: String,
    pub at: OffsetDateTime,
}

pub async fn record(conn: &mut PgConnection, actor: &str, action: &str, detail: &str) -> Result<(), AppError> {
    sqlx::query("INSERT INTO audit_log (actor, action, detail) VALUES ($1, $2, $3)")
        .bind(actor)
        .bind(action)
        .bind(detail)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn recent(conn: &mut PgConnection, limit: i64) -> Result<Vec<Entry>, AppError> {
    Ok(sqlx::query_as("SELECT actor, action, detail, at FROM audit_log ORDER BY at DESC, id DESC LIMIT $1")
        .bind(limit)
        .fetch_all(conn)
        .await?)
}
