//! Guest tickets (issue 22): tickets an organizer issues outside the booking
//! window to performers, guests, the photographer. A guest ticket is taken
//! from the capacity exactly as a booking is — the same statement
//! (`tickets::take_places_and_issue`), so it is never oversold and a student ID
//! never holds two live tickets of one activity — and is revoked by the same
//! cancel, which gives the place to the waiting list first.

use regex::Regex;
use sqlx::{FromRow, PgConnection};
use time::OffsetDateTime;

use super::{
    ActivityStatus, TicketStatus,
    seats::Seating,
    tickets::{self, CancelOutcome, GUEST_ID_PREFIX, Guest, NewTicket, Taken, Ticket, TicketRef},
};
use crate::error::AppError;

/// What an organizer typed to issue a guest ticket.
pub struct GuestRequest<'a> {
    pub activity_id: i64,
    pub name: &'a str,
    /// A guest who is a student: the ticket is theirs, in 查票 like any ticket.
    pub student_id: Option<&'a str>,
    pub note: Option<&'a str>,
    /// The admin username, recorded on the ticket.
    pub issued_by: &'a str,
}

pub const NAME_MAX: usize = 64;
pub const NOTE_MAX: usize = 200;

#[derive(Debug)]
pub enum IssueOutcome {
    Issued(Ticket),
    /// No such activity, or a draft (nothing is sold from a draft).
    NoSuchActivity,
    /// Archived, or the activity has ended.
    Over,
    /// A lottery activity before its draw: the draw gives out the whole capacity.
    LotteryNotDrawn,
    SoldOut,
    /// The student ID already holds this live ticket.
    AlreadyHolds(Ticket),
    /// What was typed is refused, and why.
    Invalid(String),
}

impl IssueOutcome {
    /// Why a refusal refused, as the organizer reads it.
    pub fn refusal(&self) -> Option<String> {
        Some(match self {
            IssueOutcome::Issued(_) => return None,
            IssueOutcome::NoSuchActivity => "没有这个活动（草稿不能发票）。".into(),
            IssueOutcome::Over => "活动已经结束或归档，不能再发嘉宾票。".into(),
            IssueOutcome::LotteryNotDrawn => "抽签活动要在抽签之后才能发嘉宾票：抽签会发出全部名额。".into(),
            IssueOutcome::SoldOut => "票已经发完了：没有名额可以给嘉宾。".into(),
            IssueOutcome::AlreadyHolds(t) => {
                format!("{} 已经有本活动的票（票号 {}），不能再发。", t.holder(), t.code)
            }
            IssueOutcome::Invalid(why) => why.clone(),
        })
    }
}

#[derive(FromRow)]
struct ActivityCheck {
    status: ActivityStatus,
    ended: bool,
    undrawn_lottery: bool,
    seating: Seating,
    choosing_open: bool,
}

/// Issues a guest ticket, in the caller's transaction. Any time before the
/// activity ends, whether booking is open or not (that is the point), for a
/// published activity. `student_ids` is `STUDENT_ID_PATTERN`.
pub async fn issue(
    conn: &mut PgConnection,
    request: &GuestRequest<'_>,
    student_ids: &Regex,
) -> Result<IssueOutcome, AppError> {
    let name = request.name.trim();
    if name.is_empty() || name.chars().count() > NAME_MAX || name.chars().any(char::is_control) {
        return Ok(IssueOutcome::Invalid(format!("请填写嘉宾姓名（1 到 {NAME_MAX} 个字）。")));
    }
    let note = request.note.map(str::trim).filter(|n| !n.is_empty());
    if note.is_some_and(|n| n.chars().count() > NOTE_MAX) {
        return Ok(IssueOutcome::Invalid(format!("备注最多 {NOTE_MAX} 个字。")));
    }
    let student_id = request.student_id.map(str::trim).filter(|s| !s.is_empty());
    if let Some(id) = student_id
        && (!student_ids.is_match(id) || id.chars().count() > 32 || tickets::is_guest_id(id))
    {
        return Ok(IssueOutcome::Invalid(format!("学号 {id} 的格式不对。")));
    }
    let check: Option<ActivityCheck> = sqlx::query_as(
        "SELECT a.status, now() >= a.end_at AS ended, \
         (a.mode = 'lottery' AND NOT EXISTS \
             (SELECT 1 FROM lotteries l WHERE l.activity_id = a.id AND l.drawn_at IS NOT NULL)) AS undrawn_lottery, \
         a.seating, coalesce(a.seat_deadline, a.book_end) > now() AS choosing_open \
         FROM activities a WHERE a.id = $1",
    )
    .bind(request.activity_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(check) = check.filter(|c| c.status != ActivityStatus::Draft) else {
        return Ok(IssueOutcome::NoSuchActivity);
    };
    if check.status == ActivityStatus::Archived || check.ended {
        return Ok(IssueOutcome::Over);
    }
    if check.undrawn_lottery {
        return Ok(IssueOutcome::LotteryNotDrawn);
    }
    let code = tickets::new_code();
    // A guest without a student ID: a synthetic one from the code (unique,
    // never a student's: see migrations/0018).
    let synthetic = format!("{GUEST_ID_PREFIX}{}", &code[..12]);
    let holder = student_id.unwrap_or(&synthetic);
    if let Some(held) = tickets::held(conn, request.activity_id, holder, None).await? {
        return Ok(IssueOutcome::AlreadyHolds(held));
    }
    let new = NewTicket {
        code: &code,
        student_id: holder,
        openid: None,
        guest: Some(Guest { name, note, issued_by: request.issued_by }),
    };
    let taken = tickets::take_places_and_issue(conn, request.activity_id, std::slice::from_ref(&new)).await?;
    match taken.into_iter().next().unwrap_or(Taken::Busy) {
        Taken::Issued { id, .. } => {
            // Past the seat deadline nobody chooses any more: placed at once, as a late booking is.
            if check.seating != Seating::None && !check.choosing_open {
                super::seats::place_late_ticket(conn, id).await?;
            }
            Ok(IssueOutcome::Issued(tickets::by_id(conn, id).await?.ok_or(AppError::NotFound)?))
        }
        Taken::SoldOut => Ok(IssueOutcome::SoldOut),
        Taken::Busy => Err(AppError::Busy),
        // The student booked (or was given one) while this ran: their ticket
        // is the answer (its place went back).
        Taken::AlreadyHeld => Ok(match tickets::held(conn, request.activity_id, holder, None).await? {
            Some(held) => IssueOutcome::AlreadyHolds(held),
            None => IssueOutcome::SoldOut,
        }),
    }
}

#[derive(Debug)]
pub enum RevokeOutcome {
    Revoked(Ticket),
    /// No live guest ticket by that code (of that activity, when one is named).
    NoSuchGuestTicket,
    /// Checked in already, or the activity has started.
    TooLate(Ticket),
}

/// Revokes a live guest ticket: the cancel of any ticket (`tickets::cancel`),
/// which gives its place to the head of the waiting list first. Only guest
/// tickets: a student's booking is theirs to cancel. `activity_id` holds a
/// page's request to its own activity.
pub async fn revoke(
    conn: &mut PgConnection,
    outbox: &impl super::outbox::Outbox,
    code: &str,
    activity_id: Option<i64>,
) -> Result<RevokeOutcome, AppError> {
    let Some(ticket) = tickets::by_code(conn, code).await? else { return Ok(RevokeOutcome::NoSuchGuestTicket) };
    if ticket.guest_name.is_none()
        || ticket.status == TicketStatus::Cancelled
        || activity_id.is_some_and(|id| id != ticket.activity_id)
    {
        return Ok(RevokeOutcome::NoSuchGuestTicket);
    }
    Ok(match tickets::cancel(conn, outbox, TicketRef::Code(code)).await? {
        CancelOutcome::Cancelled(t) => RevokeOutcome::Revoked(t),
        CancelOutcome::TooLate(t) => RevokeOutcome::TooLate(t),
        CancelOutcome::NothingToCancel | CancelOutcome::NoSuchActivity => RevokeOutcome::NoSuchGuestTicket,
    })
}

/// A guest ticket as the activity page lists it.
#[derive(Debug, Clone, FromRow)]
pub struct Listed {
    pub code: String,
    pub student_id: String,
    pub guest_name: String,
    pub guest_note: Option<String>,
    pub issued_by: String,
    pub status: TicketStatus,
    pub booked_at: OffsetDateTime,
}

impl Listed {
    /// The student ID to show: none for a guest without one.
    pub fn real_student_id(&self) -> Option<&str> {
        (!tickets::is_guest_id(&self.student_id)).then_some(self.student_id.as_str())
    }

    pub fn live(&self) -> bool {
        self.status != TicketStatus::Cancelled
    }
}

/// An activity's guest tickets, revoked ones included, in the order issued.
pub async fn of_activity(conn: &mut PgConnection, activity_id: i64) -> Result<Vec<Listed>, AppError> {
    Ok(sqlx::query_as(
        "SELECT code, student_id, guest_name, guest_note, issued_by, status, booked_at FROM tickets \
         WHERE activity_id = $1 AND guest_name IS NOT NULL ORDER BY id",
    )
    .bind(activity_id)
    .fetch_all(conn)
    .await?)
}
