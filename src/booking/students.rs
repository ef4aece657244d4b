//! WeChat users, the student IDs they are bound to, and the roster.

use sqlx::{FromRow, PgConnection};

use crate::error::AppError;

/// The openid prefix of the admin simulator's test students. No real openid
/// has it (WeChat's are 28 base64 characters); tickets they book are marked
/// `simulated`, so counts and exports can leave them out.
pub const TEST_OPENID_PREFIX: &str = "simulator-";

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
    openid: &str,
    student_id: &str,
    name: Option<&str>,
) -> Result<BindOutcome, AppError> {
    if let Some(current) = bound(conn, openid).await? {
        return Ok(BindOutcome::AlreadyBound(current));
    }
    if !is_test(openid) {
        release_from_test_student(conn, student_id).await?;
    }
    let result = sqlx::query_as(
        "INSERT INTO students (openid, student_id, name, bound_at) VALUES ($1, $2, $3, now()) \
         ON CONFLICT (openid) DO UPDATE SET student_id = $2, name = $3, bound_at = now() \
         WHERE students.student_id IS NULL \
         RETURNING student_id, name",
    )
    .bind(openid)
    .bind(student_id)
    .bind(name)
    .fetch_optional(&mut *conn)
    .await;
    match result {
        Ok(Some(student)) => Ok(BindOutcome::Bound(student)),
        // A concurrent bind of this same openid won.
        Ok(None) => Ok(BindOutcome::AlreadyBound(bound(conn, openid).await?.ok_or(AppError::NotFound)?)),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(BindOutcome::TakenByAnother),
        Err(e) => Err(e.into()),
    }
}

/// A test student never keeps a real student out: an admin rehearsing in the
/// simulator may well type a real student ID. When a real WeChat user claims
/// an ID a test student holds, the test student is unbound and the live test
/// tickets under that ID are cancelled (their places go back), so the real
/// student starts clean. A test ticket already checked in stays, as any used
/// ticket does.
async fn release_from_test_student(conn: &mut PgConnection, student_id: &str) -> Result<(), AppError> {
    let holder: Option<String> = sqlx::query_scalar("SELECT openid FROM students WHERE student_id = $1 FOR UPDATE")
        .bind(student_id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(holder) = holder.filter(|h| is_test(h)) else { return Ok(()) };
    let codes: Vec<String> =
        sqlx::query_scalar("SELECT code FROM tickets WHERE student_id = $1 AND simulated AND status = 'valid'")
            .bind(student_id)
            .fetch_all(&mut *conn)
            .await?;
    for code in codes {
        super::tickets::cancel(conn, super::tickets::TicketRef::Code(&code)).await?;
    }
    unbind(conn, &holder).await?;
    Ok(())
}

/// Unbinds; the student's tickets stay with the student ID.
pub async fn unbind(conn: &mut PgConnection, openid: &str) -> Result<Option<Student>, AppError> {
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
