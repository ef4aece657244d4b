//! The waiting list (候补) of a sold-out activity.
//!
//! Every change to a list — a join, a leave, a place freed by a cancel or a
//! raised capacity, the close at `book_end` — first locks the activity row
//! (`FOR NO KEY UPDATE`, which a booking's ticket insert does not conflict
//! with), so they happen one at a time per activity. A join is accepted only
//! when no slot has a place, and a freed place goes to the head of the list
//! whenever the list is not empty. So an activity has entries only while its
//! slots are empty, and the rush path needs no change: a booking that finds a
//! place in a slot can never be taking it from someone waiting.

use sqlx::{FromRow, PgConnection};
use time::OffsetDateTime;

use super::outbox::{Event, Outbox};
use super::tickets::{ActivityRef, new_code};
use crate::error::AppError;

#[derive(Debug)]
pub enum JoinOutcome {
    /// In line at this position (1 is next).
    Joined {
        activity_name: String,
        position: i64,
    },
    AlreadyWaiting {
        activity_name: String,
        position: i64,
    },
    HoldsTicket,
    /// Places are left: book instead.
    NotSoldOut {
        key: String,
    },
    NotOpenYet {
        opens_at: OffsetDateTime,
    },
    Closed,
    NoSuchActivity,
    NotBound,
    /// The no-show rule pauses this student ID until then.
    Paused {
        until: OffsetDateTime,
    },
    /// A lottery activity: its list is made by the draw, in draw order.
    Lottery {
        key: String,
    },
}

#[derive(Debug)]
pub enum LeaveOutcome {
    Left { activity_name: String },
    NotWaiting,
    NoSuchActivity,
}

/// A student's place in one list, for `查票`.
#[derive(Debug, Clone, FromRow)]
pub struct Position {
    pub activity_key: String,
    pub activity_name: String,
    pub start_at: OffsetDateTime,
    pub position: i64,
}

/// A ticket issued to the head of a list.
#[derive(Debug, Clone, FromRow)]
pub struct Promoted {
    pub ticket_id: i64,
    pub student_id: String,
    pub activity_id: i64,
}

/// An entry dropped because its list closed.
#[derive(Debug, Clone, FromRow)]
pub struct Dropped {
    pub entry_id: i64,
    pub student_id: String,
    pub activity_id: i64,
}

#[derive(FromRow)]
struct Locked {
    id: i64,
    key: String,
    name: String,
    book_start: OffsetDateTime,
    open: bool,
    /// Booking has ended: nobody joins any more.
    closed: bool,
    /// The list itself has closed: at `book_end`, or for a lottery (whose
    /// list is made at `book_end` by the draw) when the activity starts.
    list_closed: bool,
    lottery: bool,
    /// A zone or seat activity past its seat deadline: a ticket issued now is
    /// placed at once, since its holder can no longer choose.
    places_now: bool,
}

/// When a list closes (see `Locked::list_closed`), over `activities a`.
const LIST_CLOSES_AT: &str = "(CASE a.mode WHEN 'lottery' THEN a.start_at ELSE a.book_end END)";

/// Locks the activity row: the lists' one-at-a-time rule (module docs).
async fn lock(conn: &mut PgConnection, activity: &ActivityRef) -> Result<Option<Locked>, AppError> {
    let (filter, key, id) = match activity {
        ActivityRef::Key(key) => ("key = $1", key.to_ascii_lowercase(), 0),
        ActivityRef::Id(id) => ("id = $2", String::new(), *id),
    };
    Ok(sqlx::query_as(&format!(
        "SELECT id, key, name, book_start, book_start <= now() AS open, \
         (book_end <= now() OR status = 'archived') AS closed, \
         ({LIST_CLOSES_AT} <= now() OR status = 'archived') AS list_closed, mode = 'lottery' AS lottery, \
         (seating <> 'none' AND coalesce(seat_deadline, book_end) <= now()) AS places_now \
         FROM activities a WHERE {filter} AND status <> 'draft' FOR NO KEY UPDATE"
    ))
    .bind(key)
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

async fn position(conn: &mut PgConnection, activity_id: i64, student_id: &str) -> Result<Option<i64>, AppError> {
    Ok(sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM waiting_list o \
             WHERE o.activity_id = w.activity_id AND o.state = 'waiting' AND o.id <= w.id) \
         FROM waiting_list w WHERE w.activity_id = $1 AND w.student_id = $2 AND w.state = 'waiting'",
    )
    .bind(activity_id)
    .bind(student_id)
    .fetch_optional(conn)
    .await?)
}

/// Puts the student `openid` is bound to at the end of a sold-out activity's list.
pub async fn join(
    conn: &mut PgConnection,
    activity: &ActivityRef,
    openid: &str,
    no_show: Option<&super::no_show::NoShowRule>,
) -> Result<JoinOutcome, AppError> {
    let Some(student) = super::students::bound(conn, openid).await? else {
        return Ok(JoinOutcome::NotBound);
    };
    let Some(a) = lock(conn, activity).await? else {
        return Ok(JoinOutcome::NoSuchActivity);
    };
    let holds: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM tickets WHERE activity_id = $1 AND (student_id = $2 OR openid = $3) \
         AND status <> 'cancelled')",
    )
    .bind(a.id)
    .bind(&student.student_id)
    .bind(openid)
    .fetch_one(&mut *conn)
    .await?;
    if holds {
        return Ok(JoinOutcome::HoldsTicket);
    }
    if let Some(position) = position(conn, a.id, &student.student_id).await? {
        return Ok(JoinOutcome::AlreadyWaiting { activity_name: a.name, position });
    }
    if a.closed {
        return Ok(JoinOutcome::Closed);
    }
    if a.lottery {
        return Ok(JoinOutcome::Lottery { key: a.key });
    }
    if !a.open {
        return Ok(JoinOutcome::NotOpenYet { opens_at: a.book_start });
    }
    if let Some(rule) = no_show
        && let Some(until) = super::no_show::paused_until(conn, rule, &student.student_id).await?
    {
        return Ok(JoinOutcome::Paused { until });
    }
    // Read after the lock, so a cancel that gave a place back is seen here.
    let places: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM activity_slots WHERE activity_id = $1 AND remaining > 0)")
            .bind(a.id)
            .fetch_one(&mut *conn)
            .await?;
    if places {
        return Ok(JoinOutcome::NotSoldOut { key: a.key });
    }
    let inserted = sqlx::query(
        "INSERT INTO waiting_list (activity_id, student_id, openid) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(a.id)
    .bind(&student.student_id)
    .bind(openid)
    .execute(&mut *conn)
    .await?;
    if inserted.rows_affected() == 0 {
        // This WeChat account is in line under the student ID it was bound to before.
        return Ok(JoinOutcome::AlreadyWaiting { activity_name: a.name, position: 0 });
    }
    let position = position(conn, a.id, &student.student_id).await?.unwrap_or(1);
    Ok(JoinOutcome::Joined { activity_name: a.name, position })
}

/// Takes the student (or this WeChat account) off an activity's list.
pub async fn leave(
    conn: &mut PgConnection,
    key: &str,
    student_id: &str,
    openid: &str,
) -> Result<LeaveOutcome, AppError> {
    let Some(a) = lock(conn, &ActivityRef::Key(key.to_string())).await? else {
        return Ok(LeaveOutcome::NoSuchActivity);
    };
    let left = sqlx::query(
        "UPDATE waiting_list SET state = 'left', ended_at = now() \
         WHERE activity_id = $1 AND (student_id = $2 OR openid = $3) AND state = 'waiting'",
    )
    .bind(a.id)
    .bind(student_id)
    .bind(openid)
    .execute(&mut *conn)
    .await?;
    Ok(if left.rows_affected() == 0 { LeaveOutcome::NotWaiting } else { LeaveOutcome::Left { activity_name: a.name } })
}

/// Takes the simulator's test students under `student_id` out of every line,
/// when a real student claims the ID: otherwise a freed place would go to the
/// test student's entry and make a `simulated` ticket under the real
/// student's ID. Each list under its activity's lock, as a student's own leave.
pub async fn withdraw_test_entries(conn: &mut PgConnection, student_id: &str) -> Result<(), AppError> {
    let lines: Vec<i64> = sqlx::query_scalar(
        "SELECT DISTINCT activity_id FROM waiting_list WHERE student_id = $1 AND state = 'waiting' \
         AND starts_with(openid, $2) ORDER BY activity_id",
    )
    .bind(student_id)
    .bind(super::students::TEST_OPENID_PREFIX)
    .fetch_all(&mut *conn)
    .await?;
    for activity_id in lines {
        lock(conn, &ActivityRef::Id(activity_id)).await?;
        sqlx::query(
            "UPDATE waiting_list SET state = 'left', ended_at = now() \
             WHERE activity_id = $1 AND student_id = $2 AND state = 'waiting' AND starts_with(openid, $3)",
        )
        .bind(activity_id)
        .bind(student_id)
        .bind(super::students::TEST_OPENID_PREFIX)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The lists a student is on, soonest activity first.
pub async fn positions(conn: &mut PgConnection, student_id: &str) -> Result<Vec<Position>, AppError> {
    Ok(sqlx::query_as(
        "SELECT a.key AS activity_key, a.name AS activity_name, a.start_at, \
         (SELECT count(*) FROM waiting_list o \
             WHERE o.activity_id = w.activity_id AND o.state = 'waiting' AND o.id <= w.id) AS position \
         FROM waiting_list w JOIN activities a ON a.id = w.activity_id \
         WHERE w.student_id = $1 AND w.state = 'waiting' ORDER BY a.start_at, a.id",
    )
    .bind(student_id)
    .fetch_all(conn)
    .await?)
}

/// A place of `activity_id` was freed (its unit from `slot`): it goes to the
/// head of the list, who is notified in this transaction, or, when nobody
/// waits or the list has closed, back to the slot.
pub async fn place_freed(
    conn: &mut PgConnection,
    outbox: &impl Outbox,
    activity_id: i64,
    slot: i16,
) -> Result<(), AppError> {
    if promote(conn, outbox, activity_id, 1, slot).await? == 0 {
        sqlx::query("UPDATE activity_slots SET remaining = remaining + 1 WHERE activity_id = $1 AND slot = $2")
            .bind(activity_id)
            .bind(slot)
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Issues up to `places` tickets (recorded against `slot`) to the list's
/// head in join order and queues their notices. Returns how many were issued.
pub(crate) async fn promote(
    conn: &mut PgConnection,
    outbox: &impl Outbox,
    activity_id: i64,
    places: i64,
    slot: i16,
) -> Result<i64, AppError> {
    let Some(a) = lock(conn, &ActivityRef::Id(activity_id)).await? else {
        return Ok(0);
    };
    if a.list_closed || !a.open {
        return Ok(0);
    }
    let mut promoted = Vec::new();
    while (promoted.len() as i64) < places {
        let head: Option<(i64, String, String)> = sqlx::query_as(
            "SELECT id, student_id, openid FROM waiting_list WHERE activity_id = $1 AND state = 'waiting' \
             ORDER BY id LIMIT 1",
        )
        .bind(activity_id)
        .fetch_optional(&mut *conn)
        .await?;
        let Some((entry_id, student_id, openid)) = head else { break };
        // A student who got a ticket some other way meanwhile just leaves the line.
        let ticket: Option<i64> = sqlx::query_scalar(
            "INSERT INTO tickets (code, activity_id, student_id, slot, simulated, openid) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(new_code())
        .bind(activity_id)
        .bind(&student_id)
        .bind(slot)
        .bind(super::students::is_test(&openid))
        .bind(&openid)
        .fetch_optional(&mut *conn)
        .await?;
        sqlx::query(
            "UPDATE waiting_list SET state = CASE WHEN $2::bigint IS NULL THEN 'left' ELSE 'promoted' END, \
             ticket_id = $2, ended_at = now() WHERE id = $1",
        )
        .bind(entry_id)
        .bind(ticket)
        .execute(&mut *conn)
        .await?;
        if let Some(ticket_id) = ticket {
            if a.places_now {
                // Its notice (queued below, in this transaction) reads the place back.
                super::seats::place_late_ticket(conn, ticket_id).await?;
            }
            promoted.push(Promoted { ticket_id, student_id, activity_id });
        }
    }
    let issued = promoted.len() as i64;
    if !promoted.is_empty() {
        outbox.record(conn, Event::WaitingPromoted(promoted)).await?;
    }
    Ok(issued)
}

/// Closes the lists whose time has come (or whose activity was archived):
/// ends their entries and records it for each student, in this transaction.
/// Returns how many entries closed.
pub async fn close_ended(conn: &mut PgConnection, outbox: &impl Outbox) -> Result<usize, AppError> {
    let dropped: Vec<Dropped> = sqlx::query_as(&format!(
        "UPDATE waiting_list w SET state = 'closed', ended_at = now() FROM activities a \
         WHERE a.id = w.activity_id AND w.state = 'waiting' AND ({LIST_CLOSES_AT} <= now() OR a.status = 'archived') \
         RETURNING w.id AS entry_id, w.student_id, w.activity_id"
    ))
    .fetch_all(&mut *conn)
    .await?;
    let closed = dropped.len();
    if !dropped.is_empty() {
        outbox.record(conn, Event::WaitingClosed(dropped)).await?;
    }
    Ok(closed)
}

/// An activity's list as its admin page shows it.
#[derive(Debug, Clone)]
pub struct Line {
    /// In line now.
    pub waiting: i64,
    /// Got a ticket from the list.
    pub promoted: i64,
    /// Left the line themselves (or got a ticket some other way first).
    pub left: i64,
    /// Still waiting when the list closed.
    pub closed: i64,
    /// The first in line, in order.
    pub head: Vec<InLine>,
}

#[derive(Debug, Clone, FromRow)]
pub struct InLine {
    /// 1 is next.
    pub position: i64,
    pub student_id: String,
    /// The bound student's name, else the roster's.
    pub name: Option<String>,
    pub joined_at: OffsetDateTime,
    /// One of the simulator's test students: they hold a real place in line.
    pub test: bool,
}

/// The counts of an activity's list and its first `first` entries.
pub async fn line(conn: &mut PgConnection, activity_id: i64, first: i64) -> Result<Line, AppError> {
    let (waiting, promoted, left, closed): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE state = 'waiting'), count(*) FILTER (WHERE state = 'promoted'), \
         count(*) FILTER (WHERE state = 'left'), count(*) FILTER (WHERE state = 'closed') \
         FROM waiting_list WHERE activity_id = $1",
    )
    .bind(activity_id)
    .fetch_one(&mut *conn)
    .await?;
    let head = sqlx::query_as(
        "SELECT row_number() OVER (ORDER BY w.id) AS position, w.student_id, coalesce(s.name, r.name) AS name, \
         w.joined_at, starts_with(w.openid, $3) AS test FROM waiting_list w \
         LEFT JOIN students s ON s.student_id = w.student_id \
         LEFT JOIN roster r ON r.student_id = w.student_id \
         WHERE w.activity_id = $1 AND w.state = 'waiting' ORDER BY w.id LIMIT $2",
    )
    .bind(activity_id)
    .bind(first)
    .bind(super::students::TEST_OPENID_PREFIX)
    .fetch_all(conn)
    .await?;
    Ok(Line { waiting, promoted, left, closed, head })
}
