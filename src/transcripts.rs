//! The simulator's chats: what each test student sent or tapped, and what the
//! account answered. Kept in PostgreSQL so a chat survives page loads, the
//! phone frame's trips to the bind and ticket pages, and other instances.
//! Its own module because two features write it: the simulator (what was
//! sent and answered) and the notification sender (a notice to a test student
//! lands in the chat instead of going to WeChat).

use sqlx::{FromRow, PgPool};
use time::OffsetDateTime;

use crate::{booking::students::TEST_OPENID_PREFIX, error::AppError};

/// One line of a chat, as the phone draws it.
#[derive(Debug, Clone, Default, FromRow, PartialEq, Eq)]
pub struct Entry {
    /// `sent` (the student's text), `action` (a menu tap, a follow, a failure),
    /// `text` or `news` (the account's reply).
    pub kind: String,
    pub body: String,
    pub title: String,
    pub url: String,
    pub pic_url: String,
}

impl Entry {
    pub fn of(kind: &str, body: impl Into<String>) -> Entry {
        Entry { kind: kind.into(), body: body.into(), ..Entry::default() }
    }
}

/// Adds a line; `db` is a pool, or a transaction the line commits with.
pub async fn add<'e>(db: impl sqlx::PgExecutor<'e>, openid: &str, entry: &Entry) -> Result<(), AppError> {
    sqlx::query(
        "INSERT INTO simulator_messages (openid, kind, body, title, url, pic_url) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(openid)
    .bind(&entry.kind)
    .bind(&entry.body)
    .bind(&entry.title)
    .bind(&entry.url)
    .bind(&entry.pic_url)
    .execute(db)
    .await?;
    Ok(())
}

/// The last `limit` lines of a chat, oldest first.
pub async fn recent(pool: &PgPool, openid: &str, limit: i64) -> Result<Vec<Entry>, AppError> {
    Ok(sqlx::query_as(
        "SELECT kind, body, title, url, pic_url FROM (SELECT * FROM simulator_messages WHERE openid = $1 \
         ORDER BY id DESC LIMIT $2) last ORDER BY id",
    )
    .bind(openid)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// A test student the admin can pick: anyone who chatted in the simulator or
/// is bound with a test openid.
#[derive(Debug, Clone, FromRow, PartialEq, Eq)]
pub struct TestStudent {
    pub openid: String,
    pub student_id: Option<String>,
    pub last_seen: OffsetDateTime,
}

/// Test students, most recently active first.
pub async fn test_students(pool: &PgPool) -> Result<Vec<TestStudent>, AppError> {
    Ok(sqlx::query_as(
        "SELECT seen.openid, s.student_id, max(seen.at) AS last_seen FROM ( \
             SELECT openid, created_at AS at FROM simulator_messages \
             UNION ALL SELECT openid, created_at FROM students WHERE starts_with(openid, $1)) seen \
         LEFT JOIN students s ON s.openid = seen.openid \
         GROUP BY seen.openid, s.student_id ORDER BY last_seen DESC, seen.openid LIMIT 100",
    )
    .bind(TEST_OPENID_PREFIX)
    .fetch_all(pool)
    .await?)
}

/// How long a simulator chat is kept: rehearsals are for the days before an event.
pub const KEEP_DAYS: i32 = 30;

pub async fn forget_old(conn: &mut sqlx::PgConnection) -> Result<u64, AppError> {
    Ok(sqlx::query("DELETE FROM simulator_messages WHERE created_at < now() - make_interval(days => $1)")
        .bind(KEEP_DAYS)
        .execute(conn)
        .await?
        .rows_affected())
}
