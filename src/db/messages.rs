//! De-duplication of WeChat's retries. A message's first reply is stored in the
//! same transaction as whatever handling it changed, so the reply row exists
//! exactly when the handling committed.

use sqlx::PgConnection;

use crate::error::AppError;

/// Records `reply` as the answer to `dedup_key`. Returns false when another
/// transaction recorded one first; the caller must then roll back its own
/// handling and answer with `stored_reply`. Because the insert waits for a
/// concurrent uncommitted insert of the same key, "first" is decided by the
/// database, across instances.
pub async fn record(conn: &mut PgConnection, dedup_key: &str, reply: &str) -> Result<bool, AppError> {
    let done = sqlx::query(
        "INSERT INTO wechat_messages (dedup_key, reply) VALUES ($1, $2) ON CONFLICT (dedup_key) DO NOTHING",
    )
    .bind(dedup_key)
    .bind(reply)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn stored_reply(conn: &mut PgConnection, dedup_key: &str) -> Result<Option<String>, AppError> {
    Ok(sqlx::query_scalar("SELECT reply FROM wechat_messages WHERE dedup_key = $1")
        .bind(dedup_key)
        .fetch_optional(conn)
        .await?)
}

/// WeChat retries for well under a minute; a day of history is plenty.
pub async fn forget_old(conn: &mut PgConnection) -> Result<u64, AppError> {
    let done =
        sqlx::query("DELETE FROM wechat_messages WHERE created_at < now() - interval '1 day'").execute(conn).await?;
    Ok(done.rows_affected())
}
