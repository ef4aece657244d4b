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

/// One message of a batch, as its records know it.
pub struct Claim<'a> {
    pub dedup_key: &'a str,
    pub openid: &'a str,
    pub signed: SignedPair<'a>,
}

/// Claims a batch's messages in one statement of the batch's transaction,
/// before any of them is handled: records each signed query and an empty
/// reply under each message's key, and tells each whether it is its first
/// answer (`Recorded` as `record` decides it, per message). A claim waits for
/// a concurrent uncommitted claim of the same key or pair, on any instance,
/// as `record` does; the rows are taken in key order, so two batches never
/// wait for each other in a circle. The batch fills in the replies
/// (`answer_many`) before it commits, so a claim is never seen empty.
///
/// The caller passes each key and each pair at most once per batch (a
/// duplicate inside one batch is answered from its original, without the
/// database): one statement cannot claim the same row twice.
pub async fn claim_many(conn: &mut PgConnection, claims: &[Claim<'_>]) -> Result<Vec<Recorded>, AppError> {
    let keys: Vec<&str> = claims.iter().map(|c| c.dedup_key).collect();
    let timestamps: Vec<i64> = claims.iter().map(|c| c.signed.timestamp).collect();
    let nonces: Vec<&str> = claims.iter().map(|c| c.signed.nonce).collect();
    let openids: Vec<&str> = claims.iter().map(|c| c.openid).collect();
    let rows: Vec<(bool, bool)> = sqlx::query_as(
        "WITH m AS ( \
             SELECT * FROM unnest($1::text[], $2::int8[], $3::text[]) WITH ORDINALITY AS m(dedup_key, ts, nonce, n)), \
         pair AS ( \
             INSERT INTO wechat_signed_queries (timestamp, nonce, dedup_key) \
             SELECT ts, nonce, dedup_key FROM m ORDER BY ts, nonce \
             ON CONFLICT (timestamp, nonce) DO UPDATE SET dedup_key = EXCLUDED.dedup_key \
             WHERE wechat_signed_queries.dedup_key = EXCLUDED.dedup_key \
             RETURNING timestamp, nonce), \
         answer AS ( \
             INSERT INTO wechat_messages (dedup_key, reply) \
             SELECT m.dedup_key, '' FROM m JOIN pair p ON p.timestamp = m.ts AND p.nonce = m.nonce \
             ORDER BY m.dedup_key \
             ON CONFLICT (dedup_key) DO NOTHING \
             RETURNING dedup_key), \
         seen AS ( \
             UPDATE students SET last_interaction_at = now() \
             WHERE openid = ANY($4::text[]) \
             AND (last_interaction_at IS NULL OR last_interaction_at < now() - interval '1 minute')) \
         SELECT EXISTS (SELECT 1 FROM pair p WHERE p.timestamp = m.ts AND p.nonce = m.nonce), \
             EXISTS (SELECT 1 FROM answer a WHERE a.dedup_key = m.dedup_key) \
         FROM m ORDER BY m.n",
    )
    .bind(&keys)
    .bind(&timestamps)
    .bind(&nonces)
    .bind(&openids)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| match row {
            (false, _) => Recorded::Replayed,
            (true, true) => Recorded::First,
            (true, false) => Recorded::Again,
        })
        .collect())
}

/// Fills in the replies of a batch's claimed messages, and lets go of the
/// claims of messages it could not answer (`unanswered`: their places stayed
/// held), so WeChat's retry of those gets a real second chance. When the batch
/// changed nothing (`durable` false: refusals only), its transaction commits
/// without waiting for the disk, as `record` explains: losing such records in
/// a crash only means a retry is handled again.
pub async fn answer_many(
    conn: &mut PgConnection,
    replies: &[(&str, &str)],
    unanswered: &[Claim<'_>],
    durable: bool,
) -> Result<(), AppError> {
    let (keys, texts): (Vec<&str>, Vec<&str>) = replies.iter().copied().unzip();
    sqlx::query(
        "WITH quick AS (SELECT set_config('synchronous_commit', 'off', true) WHERE NOT $3) \
         UPDATE wechat_messages w SET reply = r.reply FROM unnest($1::text[], $2::text[]) AS r(dedup_key, reply) \
         WHERE w.dedup_key = r.dedup_key AND (SELECT count(*) FROM quick) >= 0",
    )
    .bind(&keys)
    .bind(&texts)
    .bind(durable)
    .execute(&mut *conn)
    .await?;
    if unanswered.is_empty() {
        return Ok(());
    }
    let keys: Vec<&str> = unanswered.iter().map(|c| c.dedup_key).collect();
    let timestamps: Vec<i64> = unanswered.iter().map(|c| c.signed.timestamp).collect();
    let nonces: Vec<&str> = unanswered.iter().map(|c| c.signed.nonce).collect();
    sqlx::query(
        "WITH gone AS (DELETE FROM wechat_messages WHERE dedup_key = ANY($1::text[])) \
         DELETE FROM wechat_signed_queries q USING unnest($2::int8[], $3::text[]) AS u(ts, nonce) \
         WHERE q.timestamp = u.ts AND q.nonce = u.nonce",
    )
    .bind(&keys)
    .bind(&timestamps)
    .bind(&nonces)
    .execute(conn)
    .await?;
    Ok(())
}

/// The first replies of messages answered before, by key (a key without one is left out).
pub async fn stored_replies(
    conn: &mut PgConnection,
    dedup_keys: &[&str],
) -> Result<std::collections::HashMap<String, String>, AppError> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT dedup_key, reply FROM wechat_messages WHERE dedup_key = ANY($1::text[])")
            .bind(dedup_keys)
            .fetch_all(conn)
            .await?;
    Ok(rows.into_iter().collect())
}
