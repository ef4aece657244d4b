//! WeChat users, the student IDs they are bound to, and the roster.

use sqlx::{FromRow, PgConnection};

use crate::{audit, error::AppError};

/// The openid prefix of the admin simulator's test students. No real openid
/// has it (WeChat's are 28 base64 characters); tickets they book are marked
/// `simulated`, so counts and exports can leave them out.
pub const TEST_OPENID_PREFIX: &str = "simulator-";

/// The longest student ID and name (the `students` and `roster` tables' limits).
pub const MAX_STUDENT_ID_CHARS: usize = 32;
pub const MAX_NAME_CHARS: usize = 64;

/// Whether `openid` is one of the simulator's test students.
pub fn is_test(openid: &str) -> bool {
    openid.starts_with(TEST_OPENID_PREFIX)
}

#[derive(Debug, Clone, FromRow, PartialEq, Eq)]
pub struct Student {
    pub student_id: String,
    pub name: Option<String>,
}

/// The student a WeChat user is bound to, if any.
pub async fn bound(conn: &mut PgConnection, openid: &str) -> Result<Option<Student>, AppError> {
    Ok(sqlx::query_as("SELECT student_id, name FROM students WHERE openid = $1 AND student_id IS NOT NULL")
        .bind(openid)
        .fetch_optional(conn)
        .await?)
}

#[derive(Debug, PartialEq, Eq)]
pub enum BindOutcome {
    Bound(Student),
    /// This WeChat user is bound already (to this student).
    AlreadyBound(Student),
    /// The student ID belongs to another WeChat user.
    TakenByAnother,
}

/// Binds `openid` to a student ID the caller has verified. The unique index on
/// `students.student_id` decides races between two users claiming one ID.
pub async fn bind(
    conn: &mut PgConnection,
    outbox: &impl super::outbox::Outbox,
    openid: &str,
    student_id: &str,
    name: Option<&str>,
) -> Result<BindOutcome, AppError> {
    if let Some(current) = bound(conn, openid).await? {
        return Ok(BindOutcome::AlreadyBound(current));
    }
    if !is_test(openid) {
        release_from_test_student(conn, outbox, student_id).await?;
    }
    let result: Result<Option<(String, Option<String>, i32)>, _> = sqlx::query_as(
        "INSERT INTO students (openid, student_id, name, bound_at, binds) VALUES ($1, $2, $3, now(), 1) \
         ON CONFLICT (openid) DO UPDATE SET student_id = $2, name = $3, bound_at = now(), binds = students.binds + 1 \
         WHERE students.student_id IS NULL \
         RETURNING student_id, name, binds",
    )
    .bind(openid)
    .bind(student_id)
    .bind(name)
    .fetch_optional(&mut *conn)
    .await;
    match result {
        Ok(Some((student_id, name, binds))) => {
            let action = if binds > 1 { "重新绑定学号" } else { "绑定学号" };
            audit::record(conn, &actor(openid), action, &format!("学号 {student_id}")).await?;
            Ok(BindOutcome::Bound(Student { student_id, name }))
        }
        // A concurrent bind of this same openid won.
        Ok(None) => Ok(BindOutcome::AlreadyBound(bound(conn, openid).await?.ok_or(AppError::NotFound)?)),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(BindOutcome::TakenByAnother),
        Err(e) => Err(e.into()),
    }
}

/// A test student never keeps a real student out: an admin rehearsing in the
/// simulator may well type a real student ID. When a real WeChat user claims
/// an ID that no real student holds, whatever test students claimed under it
/// goes — live test tickets are cancelled (their places go back), places in
/// line are left, registrations in open lotteries withdrawn — and a test
/// student holding it is unbound, so the real student starts clean and never
/// inherits a test student's claim. This covers a test student that unbound
/// itself first too. A test ticket already checked in stays, as any used
/// ticket does.
async fn release_from_test_student(
    conn: &mut PgConnection,
    outbox: &impl super::outbox::Outbox,
    student_id: &str,
) -> Result<(), AppError> {
    let holder: Option<String> = sqlx::query_scalar("SELECT openid FROM students WHERE student_id = $1 FOR UPDATE")
        .bind(student_id)
        .fetch_optional(&mut *conn)
        .await?;
    if holder.as_deref().is_some_and(|h| !is_test(h)) {
        return Ok(()); // a real student's: the bind is refused
    }
    // Out of the lines first, so the places the cancels free never go to them.
    super::waiting::withdraw_test_entries(conn, student_id).await?;
    let codes: Vec<String> =
        sqlx::query_scalar("SELECT code FROM tickets WHERE student_id = $1 AND simulated AND status = 'valid'")
            .bind(student_id)
            .fetch_all(&mut *conn)
            .await?;
    for code in codes {
        super::tickets::cancel(conn, outbox, super::tickets::TicketRef::Code(&code)).await?;
    }
    super::lottery::withdraw_test_entries(conn, student_id).await?;
    if let Some(holder) = holder
        && let Some(student) = release_binding(conn, &holder).await?
    {
        let detail = format!("学号 {} 被真实学生绑定，测试学生 {holder} 让出", student.student_id);
        audit::record(conn, "系统", "解绑测试学生", &detail).await?;
    }
    Ok(())
}

/// How the audit log names a WeChat user acting for themself.
fn actor(openid: &str) -> String {
    format!("微信用户 {openid}")
}

/// Unbinds at the student's own request; the student's tickets stay with the student ID.
pub async fn unbind(conn: &mut PgConnection, openid: &str) -> Result<Option<Student>, AppError> {
    let student = release_binding(conn, openid).await?;
    if let Some(student) = &student {
        audit::record(conn, &actor(openid), "解绑学号", &format!("学号 {}", student.student_id)).await?;
    }
    Ok(student)
}

/// Who holds a student ID now: the WeChat account bound to it, and since when.
#[derive(Debug, Clone, FromRow)]
pub struct Holder {
    pub openid: String,
    pub student_id: String,
    pub name: Option<String>,
    pub bound_at: time::OffsetDateTime,
}

pub async fn holder(conn: &mut PgConnection, student_id: &str) -> Result<Option<Holder>, AppError> {
    Ok(sqlx::query_as("SELECT openid, student_id, name, bound_at FROM students WHERE student_id = $1")
        .bind(student_id)
        .fetch_optional(conn)
        .await?)
}

/// An admin settles a dispute: the WeChat account holding `student_id` lets it
/// go, so the rightful student can bind it. Its live tickets stay with the
/// student ID, as on any unbind. Returns the account that held it.
pub async fn release(conn: &mut PgConnection, student_id: &str, admin: &str) -> Result<Option<Holder>, AppError> {
    let Some(holder) = sqlx::query_as::<_, Holder>(
        "SELECT openid, student_id, name, bound_at FROM students WHERE student_id = $1 FOR UPDATE",
    )
    .bind(student_id)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    release_binding(conn, &holder.openid).await?;
    let detail = format!("学号 {student_id} 从微信用户 {} 解除绑定", holder.openid);
    audit::record(conn, admin, "管理员解绑学号", &detail).await?;
    Ok(Some(holder))
}

/// Whether the bind link with this nonce has been used.
pub async fn bind_link_used(conn: &mut PgConnection, nonce: &str) -> Result<bool, AppError> {
    Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM used_bind_links WHERE nonce = $1)")
        .bind(nonce)
        .fetch_one(conn)
        .await?)
}

/// Marks a bind link used, in the transaction that binds with it; false when
/// it was used already (a concurrent use waits here for the other to finish).
pub async fn use_bind_link(conn: &mut PgConnection, nonce: &str, expires: i64) -> Result<bool, AppError> {
    let done = sqlx::query(
        "INSERT INTO used_bind_links (nonce, expires_at) VALUES ($1, to_timestamp($2)) ON CONFLICT DO NOTHING",
    )
    .bind(nonce)
    .bind(expires as f64)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A used bind link past its expiry would be refused as expired anyway.
pub async fn forget_expired_bind_links(conn: &mut PgConnection) -> Result<u64, AppError> {
    Ok(sqlx::query("DELETE FROM used_bind_links WHERE expires_at < now() - interval '1 minute'")
        .execute(conn)
        .await?
        .rows_affected())
}

async fn release_binding(conn: &mut PgConnection, openid: &str) -> Result<Option<Student>, AppError> {
    Ok(sqlx::query_as(
        "UPDATE students s SET student_id = NULL, name = NULL, bound_at = NULL \
         FROM (SELECT openid, student_id, name FROM students WHERE openid = $1 FOR UPDATE) old \
         WHERE s.openid = old.openid AND old.student_id IS NOT NULL \
         RETURNING old.student_id, old.name",
    )
    .bind(openid)
    .fetch_optional(conn)
    .await?)
}

/// The roster name of a student ID, if the roster has it.
pub async fn roster_name(conn: &mut PgConnection, student_id: &str) -> Result<Option<String>, AppError> {
    Ok(sqlx::query_scalar("SELECT name FROM roster WHERE student_id = $1")
        .bind(student_id)
        .fetch_optional(conn)
        .await?)
}

/// Adds or updates roster entries; returns how many rows were written.
pub async fn import_roster(conn: &mut PgConnection, entries: &[(String, String)]) -> Result<u64, AppError> {
    let (ids, names): (Vec<&str>, Vec<&str>) = entries.iter().map(|(i, n)| (i.as_str(), n.as_str())).unzip();
    let done = sqlx::query(
        "INSERT INTO roster (student_id, name) SELECT * FROM unnest($1::text[], $2::text[]) \
         ON CONFLICT (student_id) DO UPDATE SET name = EXCLUDED.name, imported_at = now()",
    )
    .bind(&ids)
    .bind(&names)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

pub async fn roster_count(conn: &mut PgConnection) -> Result<i64, AppError> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM roster").fetch_one(conn).await?)
}
