//! De-duplication of WeChat's retries. A message's first reply is stored in the
//! same transaction as whatever handling it changed, so the reply row exists
//! exactly when the handling committed.

use sqlx::PgConnection;

use crate::error::AppError;

/// The signed query (`timestamp`, `nonce`) a message came under.
pub struct SignedPair<'a> {
    pub timestamp: i64,
    pub nonce: &'a str,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Recorded {
    /// This is the message's first answer: commit.
    First,
    /// Another transaction answered this message first: roll back and answer
    /// with `stored_reply`.
    Again,
    /// The signed query already carried a different message: roll back and refuse.
    Replayed,
}

/// Records `reply` as the answer to `dedup_key`, and `signed` as the query
/// that carried it, in one statement of the handling's transaction.
///
/// "First" is decided by the database, across instances: the inserts wait for
/// a concurrent uncommitted insert of the same key or pair. A pair already
/// recorded for the same message (a WeChat retry) is fine; the upsert that
/// rewrites it in place is what tells the two cases apart, since its `WHERE`
/// leaves a pair of another message alone and returns nothing.
///
/// When the handling wrote nothing — the transaction has no id yet: a sold-out
/// or other refusal, a help text — these records are all the transaction
/// writes, and losing them in a crash is harmless (WeChat's retry is then
/// simply handled again, and a replay could at most repeat a refusal). So such
/// a transaction commits without waiting for the disk (`synchronous_commit =
/// off` for it alone), which keeps a rush's thousands of refusals from
/// queueing on WAL flushes. A transaction that booked, cancelled or bound
/// already has an id and stays fully durable. The test runs before the
/// inserts: their rows exist only once the one-time filter holding it has run.
///
/// The same statement notes when `openid` last wrote or tapped (the 48-hour
/// window for customer-service messages, see `notify::channels`), but only
/// when the stored time is over a minute old: a student's burst of messages
/// in a rush then costs one write, not one per message.
pub async fn record(
    conn: &mut PgConnection,
    dedup_key: &str,
    openid: &str,
    signed: &SignedPair<'_>,
    reply: &str,
) -> Result<Recorded, AppError> {
    let (pair_ok, first): (bool, bool) = sqlx::query_as(
        "WITH wrote_nothing AS ( \
             SELECT set_config('synchronous_commit', 'off', true) WHERE pg_current_xact_id_if_assigned() IS NULL), \
         pair AS ( \
             INSERT INTO wechat_signed_queries (timestamp, nonce, dedup_key) \
             SELECT $3, $4, $1 WHERE (SELECT count(*) FROM wrote_nothing) >= 0 \
             ON CONFLICT (timestamp, nonce) DO UPDATE SET dedup_key = EXCLUDED.dedup_key \
             WHERE wechat_signed_queries.dedup_key = EXCLUDED.dedup_key \
             RETURNING 1), \
         answer AS ( \
             INSERT INTO wechat_messages (dedup_key, reply) \
             SELECT $1, $2 WHERE (SELECT count(*) FROM wrote_nothing) >= 0 AND EXISTS (SELECT 1 FROM pair) \
             ON CONFLICT (dedup_key) DO NOTHING \
             RETURNING 1), \
         seen AS ( \
             UPDATE students SET last_interaction_at = now() \
             WHERE openid = $5 AND (SELECT count(*) FROM wrote_nothing) >= 0 \
             AND (last_interaction_at IS NULL OR last_interaction_at < now() - interval '1 minute')) \
         SELECT EXISTS (SELECT 1 FROM pair), EXISTS (SELECT 1 FROM answer)",
    )
    .bind(dedup_key)
    .bind(reply)
    .bind(signed.timestamp)
    .bind(signed.nonce)
    .bind(openid)
    .fetch_one(conn)
    .await?;
    Ok(match (pair_ok, first) {
        (false, _) => Recorded::Replayed,
        (true, true) => Recorded::First,
        (true, false) => Recorded::Again,
    })
}

pub async fn stored_reply(conn: &mut PgConnection, dedup_key: &str) -> Result<Option<String>, AppError> {
    Ok(sqlx::query_scalar("SELECT reply FROM wechat_messages WHERE dedup_key = $1")
        .bind(dedup_key)
        .fetch_optional(conn)
        .await?)
}

/// WeChat retries for well under a minute; a day of history is plenty. A
/// signed query older than the freshness window (twice over, for clocks that
/// disagree) is refused before its record is consulted, so the record can go.
pub async fn forget_old(conn: &mut PgConnection) -> Result<u64, AppError> {
    let messages = sqlx::query("DELETE FROM wechat_messages WHERE created_at < now() - interval '1 day'")
        .execute(&mut *conn)
        .await?;
    let queries =
        sqlx::query("DELETE FROM wechat_signed_queries WHERE timestamp < extract(epoch FROM now())::bigint - $1")
            .bind(2 * crate::wechat::signature::FRESHNESS_SECONDS)
            .execute(conn)
            .await?;
    Ok(messages.rows_affected() + queries.rows_affected())
}
