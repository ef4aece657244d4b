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
///
/// When the handling wrote nothing — the transaction has no id yet: a sold-out
/// or other refusal, a help text — this record is all the transaction writes,
/// and losing it in a crash is harmless (WeChat's retry is then simply handled
/// again). So such a transaction commits without waiting for the disk
/// (`synchronous_commit = off` for it alone), which keeps a rush's thousands
/// of refusals from queueing on WAL flushes. A transaction that booked,
/// cancelled or bound already has an id and stays fully durable. The test
/// runs before the insert: the insert's row exists only once the one-time
/// filter holding it has run.
pub async fn record(conn: &mut PgConnection, dedup_key: &str, reply: &str) -> Result<bool, AppError> {
    let done = sqlx::query(
        "WITH wrote_nothing AS ( \
             SELECT set_config('synchronous_commit', 'off', true) WHERE pg_current_xact_id_if_assigned() IS NULL) \
         INSERT INTO wechat_messages (dedup_key, reply) SELECT $1, $2 WHERE (SELECT count(*) FROM wrote_nothing) >= 0 \
         ON CONFLICT (dedup_key) DO NOTHING",
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
