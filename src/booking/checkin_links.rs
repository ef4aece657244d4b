//! Check-in links with the door: a volunteer at a gate scans with a link, not
//! an admin account. A link belongs to one activity and one gate, expires
//! (12 hours unless said otherwise) and can be revoked; creating and revoking
//! are audited.

use sqlx::{FromRow, PgConnection};
use time::OffsetDateTime;

use crate::{audit, booking::Activity, error::AppError};

/// How long a link lasts when its creator does not say.
pub const DEFAULT_HOURS: i64 = 12;
/// The longest a link may last: a week of doors.
pub const MAX_HOURS: i64 = 7 * 24;
/// The gate's name when none is given.
pub const DEFAULT_GATE: &str = "入口";

#[derive(Debug, Clone, FromRow)]
pub struct CheckinLink {
    pub id: i64,
    pub activity_id: i64,
    pub activity_key: String,
    pub gate: String,
    pub created_by: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

impl CheckinLink {
    /// Open: neither revoked nor expired at `now`.
    pub fn is_open(&self, now: OffsetDateTime) -> bool {
        self.revoked_at.is_none() && now < self.expires_at
    }
}

const COLUMNS: &str = "l.id, l.activity_id, a.key AS activity_key, l.gate, l.created_by, l.created_at, \
     l.expires_at, l.revoked_at";

/// A gate's name as typed: trimmed, 1 to 32 characters, no control characters.
pub fn gate_name(typed: &str) -> Result<String, AppError> {
    let gate = typed.trim();
    let gate = if gate.is_empty() { DEFAULT_GATE } else { gate };
    if gate.chars().count() > 32 || gate.chars().any(char::is_control) {
        return Err(AppError::Invalid("入口名最多 32 个字，不能含控制字符。".into()));
    }
    Ok(gate.to_string())
}

/// A new link for `activity` at `gate`, open for `hours`; audited as `by`.
pub async fn create(
    conn: &mut PgConnection,
    activity: &Activity,
    gate: &str,
    hours: i64,
    by: &str,
) -> Result<CheckinLink, AppError> {
    let gate = gate_name(gate)?;
    if !(1..=MAX_HOURS).contains(&hours) {
        return Err(AppError::Invalid(format!("有效期须在 1 到 {MAX_HOURS} 小时之间。")));
    }
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO checkin_links (activity_id, gate, created_by, expires_at) \
         VALUES ($1, $2, $3, now() + make_interval(hours => $4)) RETURNING id",
    )
    .bind(activity.id)
    .bind(&gate)
    .bind(by)
    .bind(hours as i32)
    .fetch_one(&mut *conn)
    .await?;
    audit::record_for(conn, activity.id, by, "创建检票链接", &format!("{} #{id} {gate} {hours}小时", activity.key))
        .await?;
    by_id(conn, id).await?.ok_or(AppError::NotFound)
}

pub async fn by_id(conn: &mut PgConnection, id: i64) -> Result<Option<CheckinLink>, AppError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM checkin_links l JOIN activities a ON a.id = l.activity_id WHERE l.id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

/// The team of a link's activity; None when there is no such link. (The
/// admin console's access check reads this before any handler runs.)
pub async fn team_of(conn: &mut PgConnection, id: i64) -> Result<Option<i64>, AppError> {
    Ok(sqlx::query_scalar(
        "SELECT a.team_id FROM checkin_links l JOIN activities a ON a.id = l.activity_id WHERE l.id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

/// Links newest first: one activity's, or every activity's.
pub async fn list(conn: &mut PgConnection, activity_id: Option<i64>) -> Result<Vec<CheckinLink>, AppError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM checkin_links l JOIN activities a ON a.id = l.activity_id \
         WHERE $1::bigint IS NULL OR l.activity_id = $1 ORDER BY l.created_at DESC, l.id DESC"
    ))
    .bind(activity_id)
    .fetch_all(conn)
    .await?)
}

/// Revokes a link (revoking twice changes nothing); audited as `by`. `None`: no such link.
pub async fn revoke(conn: &mut PgConnection, id: i64, by: &str) -> Result<Option<CheckinLink>, AppError> {
    let revoked = sqlx::query("UPDATE checkin_links SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    let Some(link) = by_id(conn, id).await? else { return Ok(None) };
    if revoked.rows_affected() == 1 {
        audit::record_for(
            conn,
            link.activity_id,
            by,
            "吊销检票链接",
            &format!("{} #{id} {}", link.activity_key, link.gate),
        )
        .await?;
    }
    Ok(Some(link))
}
