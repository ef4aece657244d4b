//! The audit log of admin actions: who did what, when, and (when the action
//! concerns one) about which activity — so an organizer sees the entries about
//! their teams' activities and nothing account-wide.

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

/// An account-wide entry (a login, the menu, accounts, the roster): admins only see it.
pub async fn record(conn: &mut PgConnection, actor: &str, action: &str, detail: &str) -> Result<(), AppError> {
    insert(conn, None, actor, action, detail).await
}

/// An entry about one activity: its team's organizers see it too.
pub async fn record_for(
    conn: &mut PgConnection,
    activity_id: i64,
    actor: &str,
    action: &str,
    detail: &str,
) -> Result<(), AppError> {
    insert(conn, Some(activity_id), actor, action, detail).await
}

async fn insert(
    conn: &mut PgConnection,
    activity_id: Option<i64>,
    actor: &str,
    action: &str,
    detail: &str,
) -> Result<(), AppError> {
    sqlx::query("INSERT INTO audit_log (actor, action, detail, activity_id) VALUES ($1, $2, $3, $4)")
        .bind(actor)
        .bind(action)
        .bind(detail)
        .bind(activity_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The newest entries. `teams`: None, every entry (an admin); Some, only the
/// entries about those teams' activities (an organizer) — filtered here, in
/// the query, so no caller can forget it.
pub async fn recent(conn: &mut PgConnection, limit: i64, teams: Option<&[i64]>) -> Result<Vec<Entry>, AppError> {
    Ok(sqlx::query_as(
        "SELECT l.actor, l.action, l.detail, l.at FROM audit_log l \
         WHERE $2::bigint[] IS NULL \
            OR l.activity_id IN (SELECT a.id FROM activities a WHERE a.team_id = ANY($2)) \
         ORDER BY l.at DESC, l.id DESC LIMIT $1",
    )
    .bind(limit)
    .bind(teams)
    .fetch_all(conn)
    .await?)
}
