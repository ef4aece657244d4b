//! The no-show rule (off unless `NO_SHOW_LIMIT` is set): a student ID that
//! left `limit` valid tickets unused at activities that ended within the last
//! `window_days` may not book or queue until `pause_days` after the last of
//! them ended. An admin's forgiveness wipes the slate up to that moment.

use sqlx::PgConnection;
use time::OffsetDateTime;

use crate::{audit, error::AppError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoShowRule {
    pub limit: u32,
    pub window_days: u32,
    pub pause_days: u32,
}

/// Until when `student_id` may not book, if the rule pauses them now. A
/// guest ticket left unused does not count: the student did not book it, an
/// organizer gave it (booking/guests.rs).
pub async fn paused_until(
    conn: &mut PgConnection,
    rule: &NoShowRule,
    student_id: &str,
) -> Result<Option<OffsetDateTime>, AppError> {
    let until: Option<OffsetDateTime> = sqlx::query_scalar(
        "SELECT CASE WHEN count(*) >= $2 THEN max(a.end_at) + make_interval(days => $4) END \
         FROM tickets t JOIN activities a ON a.id = t.activity_id \
         WHERE t.student_id = $1 AND t.status = 'valid' AND t.guest_name IS NULL AND a.end_at <= now() \
         AND a.end_at > now() - make_interval(days => $3) \
         AND a.end_at > coalesce((SELECT forgiven_at FROM no_show_forgiven WHERE student_id = $1), '-infinity')",
    )
    .bind(student_id)
    .bind(i64::from(rule.limit))
    .bind(rule.window_days as i32)
    .bind(rule.pause_days as i32)
    .fetch_one(conn)
    .await?;
    Ok(until.filter(|until| *until > OffsetDateTime::now_utc()))
}

/// Lifts a pause: tickets left unused before now no longer count. Audited.
pub async fn forgive(conn: &mut PgConnection, student_id: &str, admin: &str) -> Result<(), AppError> {
    sqlx::query(
        "INSERT INTO no_show_forgiven (student_id, forgiven_by) VALUES ($1, $2) \
         ON CONFLICT (student_id) DO UPDATE SET forgiven_at = now(), forgiven_by = $2",
    )
    .bind(student_id)
    .bind(admin)
    .execute(&mut *conn)
    .await?;
    audit::record(conn, admin, "原谅爽约", &format!("学号 {student_id} 此前未使用的票不再计入爽约")).await?;
    Ok(())
}
