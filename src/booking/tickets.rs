//! Booking, cancelling and finding tickets.
//!
//! Capacity is guarded by `activity_slots`: a booking takes one unit from a
//! slot row and inserts the ticket in the same transaction; a cancel gives the
//! unit back. `remaining >= 0` and the one-live-ticket index are database
//! constraints, so no interleaving of instances can oversell or double-book.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::Rng;
use sqlx::{FromRow, PgConnection};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::AppError;

#[derive(Debug, Clone, FromRow)]
pub struct Ticket {
    pub code: String,
    pub student_id: String,
    pub status: String,
    pub booked_at: OffsetDateTime,
    pub checked_in_at: Option<OffsetDateTime>,
    pub cancelled_at: Option<OffsetDateTime>,
    pub activity_id: i64,
    pub activity_key: String,
    pub activity_name: String,
    pub place: String,
    pub start_at: OffsetDateTime,
    pub end_at: OffsetDateTime,
    pub poster_id: Option<Uuid>,
    /// Cancelling is allowed: the ticket is valid and the activity has not started.
    pub cancellable: bool,
}

const COLUMNS: &str = "t.code, t.student_id, t.status, t.booked_at, t.checked_in_at, t.cancelled_at, \
     a.id AS activity_id, a.key AS activity_key, a.name AS activity_name, a.place, a.start_at, a.end_at, a.poster_id, \
     (t.status = 'valid' AND now() < a.start_at) AS cancellable";

/// Which activity a booking names: a key typed in text, or an id from a menu click.
#[derive(Debug, Clone)]
pub enum ActivityRef {
    Key(String),
    Id(i64),
}

#[derive(Debug)]
pub enum BookOutcome {
    Booked(Ticket),
    NoSuchActivity,
    NotOpenYet { opens_at: OffsetDateTime },
    Closed,
    SoldOut,
    AlreadyHolds(Ticket),
}

/// What a booking needs to know, read in one statement without taking locks,
/// so refusals (sold out above all, in a rush) cost one read and no write.
#[derive(FromRow)]
struct BookingCheck {
    id: i64,
    status: String,
    book_start: OffsetDateTime,
    open: bool,
    closed: bool,
    has_places: bool,
    held_code: Option<String>,
}

/// Books one ticket of an activity for a bound student.
pub async fn book(conn: &mut PgConnection, activity: &ActivityRef, student_id: &str) -> Result<BookOutcome, AppError> {
    let (filter, key, id) = match activity {
        ActivityRef::Key(key) => ("a.key = $1", key.to_ascii_lowercase(), 0),
        ActivityRef::Id(id) => ("a.id = $3", String::new(), *id),
    };
    let check: Option<BookingCheck> = sqlx::query_as(&format!(
        "SELECT a.id, a.status, a.book_start, a.book_start <= now() AS open, a.book_end <= now() AS closed, \
         EXISTS (SELECT 1 FROM activity_slots s WHERE s.activity_id = a.id AND s.remaining > 0) AS has_places, \
         (SELECT t.code FROM tickets t WHERE t.activity_id = a.id AND t.student_id = $2 AND t.status <> 'cancelled') AS held_code \
         FROM activities a WHERE {filter}"
    ))
    .bind(&key)
    .bind(student_id)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(check) = check.filter(|c| c.status != "draft") else {
        return Ok(BookOutcome::NoSuchActivity);
    };
    if let Some(code) = &check.held_code {
        return Ok(match by_code(conn, code).await? {
            Some(ticket) => BookOutcome::AlreadyHolds(ticket),
            None => BookOutcome::Closed,
        });
    }
    if check.status == "archived" || check.closed {
        return Ok(BookOutcome::Closed);
    }
    if !check.open {
        return Ok(BookOutcome::NotOpenYet { opens_at: check.book_start });
    }
    if !check.has_places {
        return Ok(BookOutcome::SoldOut);
    }
    let Some(slot) = take_place(conn, check.id).await? else {
        return Ok(BookOutcome::SoldOut);
    };
    let inserted: Option<String> = sqlx::query_scalar(
        "INSERT INTO tickets (code, activity_id, student_id, slot) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (activity_id, student_id) WHERE status <> 'cancelled' DO NOTHING RETURNING code",
    )
    .bind(new_code())
    .bind(check.id)
    .bind(student_id)
    .bind(slot)
    .fetch_optional(&mut *conn)
    .await?;
    match inserted {
        Some(code) => Ok(BookOutcome::Booked(by_code(conn, &code).await?.ok_or(AppError::NotFound)?)),
        None => {
            // A concurrent booking by the same student won; give the place back.
            give_back(conn, check.id, slot).await?;
            let held = held(conn, check.id, student_id).await?;
            Ok(held.map_or(BookOutcome::SoldOut, BookOutcome::AlreadyHolds))
        }
    }
}

/// Takes one place from a slot row that no one else holds (SKIP LOCKED keeps
/// a rush from queueing on one row). It never waits for a row lock: a
/// transaction that waits while holding a row it locked and found emptied can
/// deadlock with another doing the same. When every slot with places is held
/// by bookings in flight, it backs off briefly and looks again, since those
/// may roll back. Returns None when sold out.
async fn take_place(conn: &mut PgConnection, activity_id: i64) -> Result<Option<i16>, AppError> {
    for attempt in 0..TAKE_ATTEMPTS {
        let slot: Option<i16> = sqlx::query_scalar(
            "UPDATE activity_slots SET remaining = remaining - 1 \
             WHERE activity_id = $1 AND slot = (SELECT slot FROM activity_slots \
                 WHERE activity_id = $1 AND remaining > 0 ORDER BY random() LIMIT 1 FOR UPDATE SKIP LOCKED) \
             RETURNING slot",
        )
        .bind(activity_id)
        .fetch_optional(&mut *conn)
        .await?;
        if slot.is_some() {
            return Ok(slot);
        }
        let any_left: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM activity_slots WHERE activity_id = $1 AND remaining > 0)")
                .bind(activity_id)
                .fetch_one(&mut *conn)
                .await?;
        if !any_left {
            return Ok(None);
        }
        let jitter = rand::rng().random_range(1..=5);
        tokio::time::sleep(std::time::Duration::from_millis((attempt + 1).min(10) * jitter)).await;
    }
    // Places exist but stayed held for the whole back-off: answer sold out
    // rather than keep a student waiting past WeChat's deadline.
    Ok(None)
}

/// Bounded so a booking answers well inside WeChat's deadline (the back-off sums to about a second at most).
const TAKE_ATTEMPTS: u64 = 30;

async fn give_back(conn: &mut PgConnection, activity_id: i64, slot: i16) -> Result<(), AppError> {
    sqlx::query("UPDATE activity_slots SET remaining = remaining + 1 WHERE activity_id = $1 AND slot = $2")
        .bind(activity_id)
        .bind(slot)
        .execute(conn)
        .await?;
    Ok(())
}

/// 128 random bits, URL-safe: the ticket's bearer secret.
fn new_code() -> String {
    URL_SAFE_NO_PAD.encode(rand::rng().random::<[u8; 16]>())
}

/// Whether a string could be a ticket code at all (to answer 404 without a query).
pub fn looks_like_code(code: &str) -> bool {
    code.len() == 22 && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub async fn by_code(conn: &mut PgConnection, code: &str) -> Result<Option<Ticket>, AppError> {
    if !looks_like_code(code) {
        return Ok(None);
    }
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM tickets t JOIN activities a ON a.id = t.activity_id WHERE t.code = $1"
    ))
    .bind(code)
    .fetch_optional(conn)
    .await?)
}

async fn held(conn: &mut PgConnection, activity_id: i64, student_id: &str) -> Result<Option<Ticket>, AppError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM tickets t JOIN activities a ON a.id = t.activity_id \
         WHERE t.activity_id = $1 AND t.student_id = $2 AND t.status <> 'cancelled'"
    ))
    .bind(activity_id)
    .bind(student_id)
    .fetch_optional(conn)
    .await?)
}

/// A student's live tickets, soonest activity first.
pub async fn live_for_student(conn: &mut PgConnection, student_id: &str) -> Result<Vec<Ticket>, AppError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM tickets t JOIN activities a ON a.id = t.activity_id \
         WHERE t.student_id = $1 AND t.status <> 'cancelled' ORDER BY a.start_at, a.id"
    ))
    .bind(student_id)
    .fetch_all(conn)
    .await?)
}

/// A student's live ticket for the activity with this key.
pub async fn live_for_student_and_key(
    conn: &mut PgConnection,
    student_id: &str,
    key: &str,
) -> Result<Option<Ticket>, AppError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM tickets t JOIN activities a ON a.id = t.activity_id \
         WHERE t.student_id = $1 AND a.key = $2 AND t.status <> 'cancelled'"
    ))
    .bind(student_id)
    .bind(key.to_ascii_lowercase())
    .fetch_optional(conn)
    .await?)
}

#[derive(Debug)]
pub enum CancelOutcome {
    Cancelled(Ticket),
    NoSuchActivity,
    NothingToCancel,
    /// Checked in already, or the activity has started.
    TooLate(Ticket),
}

/// Which ticket a cancel names: a student's ticket for an activity key, or a ticket code.
pub enum TicketRef<'a> {
    StudentAndKey { student_id: &'a str, key: &'a str },
    Code(&'a str),
}

/// Cancels a valid ticket before its activity starts and gives its place back
/// in the same transaction, so the place can be booked again at once.
pub async fn cancel(conn: &mut PgConnection, which: TicketRef<'_>) -> Result<CancelOutcome, AppError> {
    let (filter, a, b) = match which {
        TicketRef::StudentAndKey { student_id, key } => {
            if !activity_exists(conn, key).await? {
                return Ok(CancelOutcome::NoSuchActivity);
            }
            ("t.student_id = $1 AND a.key = $2", student_id.to_string(), key.to_ascii_lowercase())
        }
        TicketRef::Code(code) => {
            if !looks_like_code(code) {
                return Ok(CancelOutcome::NothingToCancel);
            }
            ("t.code = $1 AND $2 = ''", code.to_string(), String::new())
        }
    };
    // Lock the ticket so a concurrent cancel or check-in sees our result.
    let row: Option<(i64, String, i64, i16, String, bool)> = sqlx::query_as(&format!(
        "SELECT t.id, t.code, t.activity_id, t.slot, t.status, now() < a.start_at FROM tickets t \
         JOIN activities a ON a.id = t.activity_id \
         WHERE {filter} AND t.status <> 'cancelled' FOR UPDATE OF t"
    ))
    .bind(&a)
    .bind(&b)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((ticket_id, code, activity_id, slot, status, before_start)) = row else {
        return Ok(CancelOutcome::NothingToCancel);
    };
    if status != "valid" || !before_start {
        let ticket = by_code(conn, &code).await?.ok_or(AppError::NotFound)?;
        return Ok(CancelOutcome::TooLate(ticket));
    }
    sqlx::query("UPDATE tickets SET status = 'cancelled', cancelled_at = now() WHERE id = $1")
        .bind(ticket_id)
        .execute(&mut *conn)
        .await?;
    give_back(conn, activity_id, slot).await?;
    Ok(CancelOutcome::Cancelled(by_code(conn, &code).await?.ok_or(AppError::NotFound)?))
}

async fn activity_exists(conn: &mut PgConnection, key: &str) -> Result<bool, AppError> {
    Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM activities WHERE key = $1 AND status <> 'draft')")
        .bind(key.to_ascii_lowercase())
        .fetch_one(conn)
        .await?)
}

/// Live tickets of an activity (for counts in lists and tests).
pub async fn live_count(conn: &mut PgConnection, activity_id: i64) -> Result<i64, AppError> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM tickets WHERE activity_id = $1 AND status <> 'cancelled'")
        .bind(activity_id)
        .fetch_one(conn)
        .await?)
}
