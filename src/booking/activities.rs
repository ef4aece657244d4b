//! Activities and their places.

use sqlx::{FromRow, PgConnection};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::AppError;

/// Places are split over at most this many slot rows (see `activity_slots`).
const MAX_SLOTS: i32 = 32;

#[derive(Debug, Clone, FromRow)]
pub struct Activity {
    pub id: i64,
    pub key: String,
    pub name: String,
    pub place: String,
    pub description: String,
    pub poster_id: Option<Uuid>,
    pub book_start: OffsetDateTime,
    pub book_end: OffsetDateTime,
    pub start_at: OffsetDateTime,
    pub end_at: OffsetDateTime,
    pub capacity: i32,
    pub status: String,
    /// Places not yet taken by a live ticket.
    pub remaining: i32,
}

impl Activity {
    pub fn is_published(&self) -> bool {
        self.status == "published"
    }
}

#[derive(Debug, Clone)]
pub struct NewActivity {
    pub key: String,
    pub name: String,
    pub place: String,
    pub description: String,
    pub book_start: OffsetDateTime,
    pub book_end: OffsetDateTime,
    pub start_at: OffsetDateTime,
    pub end_at: OffsetDateTime,
    pub capacity: i32,
    pub publish: bool,
}

/// The columns of `Activity`, for `SELECT … FROM activities a`.
pub(crate) const COLUMNS: &str = "a.id, a.key, a.name, a.place, a.description, a.poster_id, a.book_start, a.book_end, \
     a.start_at, a.end_at, a.capacity, a.status, \
     (SELECT coalesce(sum(s.remaining), 0) FROM activity_slots s WHERE s.activity_id = a.id)::int AS remaining";

/// Checks what the database also checks, to say which rule was broken in words.
pub fn validate(new: &NewActivity) -> Result<(), AppError> {
    let key_ok = !new.key.is_empty()
        && new.key.len() <= 32
        && new.key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && new.key.as_bytes()[0].is_ascii_alphanumeric();
    if !key_ok {
        return Err(AppError::Invalid("活动代号只能用小写字母、数字、- 和 _，以字母或数字开头，最多 32 个字符".into()));
    }
    if new.name.trim().is_empty() || new.name.chars().count() > 100 {
        return Err(AppError::Invalid("活动名称不能为空，最多 100 个字".into()));
    }
    if new.place.trim().is_empty() || new.place.chars().count() > 100 {
        return Err(AppError::Invalid("活动地点不能为空，最多 100 个字".into()));
    }
    if !(new.book_start < new.book_end && new.book_end <= new.start_at && new.start_at < new.end_at) {
        return Err(AppError::Invalid("时间顺序应为：抢票开始 < 抢票结束 ≤ 活动开始 < 活动结束".into()));
    }
    if !(1..=1_000_000).contains(&new.capacity) {
        return Err(AppError::Invalid("票数应在 1 到 1000000 之间".into()));
    }
    Ok(())
}

pub async fn create(conn: &mut PgConnection, new: &NewActivity) -> Result<Activity, AppError> {
    validate(new)?;
    let status = if new.publish { "published" } else { "draft" };
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO activities (key, name, place, description, book_start, book_end, start_at, end_at, capacity, status) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
    )
    .bind(&new.key)
    .bind(new.name.trim())
    .bind(new.place.trim())
    .bind(new.description.trim())
    .bind(new.book_start)
    .bind(new.book_end)
    .bind(new.start_at)
    .bind(new.end_at)
    .bind(new.capacity)
    .bind(status)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            AppError::Invalid(format!("活动代号 {} 已被使用", new.key))
        }
        _ => e.into(),
    })?;
    spread_places(conn, id, new.capacity).await?;
    by_id(conn, id).await?.ok_or(AppError::NotFound)
}

/// Sets the free places of an activity, spread evenly over its slot rows.
/// The caller holds the activity (a new row, or slot rows locked) so no
/// booking runs in between.
async fn spread_places(conn: &mut PgConnection, activity_id: i64, free: i32) -> Result<(), AppError> {
    let slots = free.clamp(1, MAX_SLOTS);
    sqlx::query("DELETE FROM activity_slots WHERE activity_id = $1").bind(activity_id).execute(&mut *conn).await?;
    sqlx::query(
        "INSERT INTO activity_slots (activity_id, slot, remaining) \
         SELECT $1, s, $2 / $3 + CASE WHEN s < $2 % $3 THEN 1 ELSE 0 END FROM generate_series(0, $3 - 1) AS s",
    )
    .bind(activity_id)
    .bind(free)
    .bind(slots)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn by_id(conn: &mut PgConnection, id: i64) -> Result<Option<Activity>, AppError> {
    Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM activities a WHERE a.id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?)
}

pub async fn by_key(conn: &mut PgConnection, key: &str) -> Result<Option<Activity>, AppError> {
    Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM activities a WHERE a.key = $1"))
        .bind(key.to_ascii_lowercase())
        .fetch_optional(conn)
        .await?)
}

/// Every activity, newest first (admin and CLI).
pub async fn all(conn: &mut PgConnection) -> Result<Vec<Activity>, AppError> {
    Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM activities a ORDER BY a.id DESC")).fetch_all(conn).await?)
}

/// Published activities whose booking has not closed: what students can book now or soon.
pub async fn bookable(conn: &mut PgConnection) -> Result<Vec<Activity>, AppError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM activities a WHERE a.status = 'published' AND a.book_end > now() \
         ORDER BY a.book_start, a.id LIMIT 10"
    ))
    .fetch_all(conn)
    .await?)
}

/// Publishes a draft. Published stays published; archived cannot come back.
pub async fn publish(conn: &mut PgConnection, key: &str) -> Result<Activity, AppError> {
    let activity = by_key(conn, key).await?.ok_or(AppError::NotFound)?;
    match activity.status.as_str() {
        "published" => Ok(activity),
        "archived" => Err(AppError::Invalid(format!("活动 {key} 已归档，不能再发布"))),
        _ => {
            sqlx::query(
                "UPDATE activities SET status = 'published', updated_at = now() WHERE id = $1 AND status = 'draft'",
            )
            .bind(activity.id)
            .execute(&mut *conn)
            .await?;
            by_id(conn, activity.id).await?.ok_or(AppError::NotFound)
        }
    }
}
