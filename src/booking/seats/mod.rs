//! Seats (README "Seats"): an activity is standing room, sells zones with
//! quotas, or a hall's numbered seats — chosen at creation. A student books
//! exactly as before, then chooses a place until the seat deadline; the
//! clock's sweep gives a random free place to every ticket still without one
//! after it.
//!
//! The guarantees are the database's: a seat is held by at most one live
//! ticket of an activity (a partial unique index), a zone never holds more
//! than its quota (`activity_zones.taken <= quota`, taken in the choice's
//! transaction), and a ticket is placed once (`… WHERE seat_id IS NULL`,
//! re-checked on the locked row, so two tabs posting two seats place one).

pub mod admin;
pub mod hall;
pub mod map;
pub mod moves;

use std::collections::HashMap;

use rand::seq::SliceRandom;
use sqlx::{Connection, FromRow, PgConnection};
use time::OffsetDateTime;

use super::outbox::{Event, Outbox};
use crate::error::AppError;

/// How an activity's places are sold; chosen at creation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum Seating {
    /// Standing room: a ticket is a place (the default).
    #[default]
    None,
    /// Named zones, each with a quota.
    Zone,
    /// A hall's numbered seats.
    Seat,
}

impl Seating {
    pub fn as_str(self) -> &'static str {
        match self {
            Seating::None => "none",
            Seating::Zone => "zone",
            Seating::Seat => "seat",
        }
    }
}

/// A zone and its quota, as typed: `A区:300`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneQuota {
    pub zone: String,
    pub quota: i32,
}

impl std::str::FromStr for ZoneQuota {
    type Err = String;

    fn from_str(text: &str) -> Result<ZoneQuota, String> {
        let (zone, quota) =
            text.rsplit_once([':', '：']).ok_or_else(|| format!("`{text}`：写成 区域名:票数，如 A区:300"))?;
        let zone = zone.trim();
        if zone.is_empty() || zone.chars().count() > 32 {
            return Err(format!("`{text}`：区域名要有 1 到 32 个字"));
        }
        let quota: i32 = quota
            .trim()
            .parse()
            .ok()
            .filter(|q| (1..=100_000).contains(q))
            .ok_or_else(|| format!("`{text}`：票数要是 1 到 100000 的整数"))?;
        Ok(ZoneQuota { zone: zone.to_string(), quota })
    }
}

/// The seating an activity is created with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    None,
    Zones(Vec<ZoneQuota>),
    Hall(String),
}

/// The capacity a plan gives: the zones' quotas summed, or the hall's seats.
/// `given` (a typed capacity) must agree, or the error says by how much.
pub async fn capacity_of(conn: &mut PgConnection, plan: &Plan, given: Option<i32>) -> Result<i32, AppError> {
    let derived = match plan {
        Plan::None => {
            return given.ok_or_else(|| AppError::Invalid("没有分区或座位图时要给出票数（--capacity）。".into()));
        }
        Plan::Zones(zones) => {
            if zones.is_empty() {
                return Err(AppError::Invalid("分区售票至少要有一个区域（--zone \"A区:300\"）。".into()));
            }
            let mut names = std::collections::HashSet::new();
            for z in zones {
                if !names.insert(z.zone.as_str()) {
                    return Err(AppError::Invalid(format!("区域 {} 写了两次。", z.zone)));
                }
            }
            zones.iter().map(|z| i64::from(z.quota)).sum::<i64>()
        }
        Plan::Hall(name) => {
            let hall = hall::by_name(conn, name).await?.ok_or_else(|| {
                AppError::Invalid(format!("没有名为 {name} 的场馆；先用 `wechat-ticket hall import` 导入座位图。"))
            })?;
            hall.seats
        }
    };
    let derived = i32::try_from(derived).map_err(|_| AppError::Invalid("票数太大了。".into()))?;
    match given {
        Some(given) if given != derived => Err(AppError::Invalid(format!(
            "票数 {given} 与{}不符：应为 {derived}（可以不写 --capacity，由分区或座位图决定）。",
            if matches!(plan, Plan::Hall(_)) { "座位图的座位数" } else { "各区票数之和" }
        ))),
        _ => Ok(derived),
    }
}

/// Records an activity's seating, in its creation's transaction.
pub async fn set_up(
    conn: &mut PgConnection,
    activity_id: i64,
    plan: &Plan,
    deadline: Option<OffsetDateTime>,
) -> Result<(), AppError> {
    let (seating, hall_id) = match plan {
        Plan::None => (Seating::None, None),
        Plan::Zones(_) => (Seating::Zone, None),
        Plan::Hall(name) => (Seating::Seat, Some(hall::by_name(conn, name).await?.ok_or(AppError::NotFound)?.id)),
    };
    sqlx::query("UPDATE activities SET seating = $2, hall_id = $3, seat_deadline = $4 WHERE id = $1")
        .bind(activity_id)
        .bind(seating)
        .bind(hall_id)
        .bind(deadline)
        .execute(&mut *conn)
        .await?;
    if let Plan::Zones(zones) = plan {
        let names: Vec<&str> = zones.iter().map(|z| z.zone.as_str()).collect();
        let quotas: Vec<i32> = zones.iter().map(|z| z.quota).collect();
        sqlx::query(
            "INSERT INTO activity_zones (activity_id, zone, position, quota) \
             SELECT $1, z, n, q FROM unnest($2::text[], $3::int[]) WITH ORDINALITY AS u(z, q, n)",
        )
        .bind(activity_id)
        .bind(&names)
        .bind(&quotas)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// A ticket's place.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct Place {
    pub zone: String,
    /// Seat mode only.
    pub row_label: Option<String>,
    pub seat_label: Option<String>,
}

impl Place {
    /// As a student reads it: `A区` or `A区 3排12座`.
    pub fn label(&self) -> String {
        match (&self.row_label, &self.seat_label) {
            (Some(row), Some(seat)) => format!("{} {row}排{seat}座", self.zone),
            _ => self.zone.clone(),
        }
    }
}

/// What a student asks for: a zone by name, or a seat as `zone-row-seat`.
#[derive(Debug, Clone, Copy)]
pub enum Choice<'a> {
    Zone(&'a str),
    Seat(&'a str),
}

#[derive(Debug, PartialEq, Eq)]
pub enum ChooseOutcome {
    Placed(Place),
    /// The ticket has its place already (chosen, assigned, or another tab was first).
    AlreadyPlaced(Place),
    /// Taken a moment ago by another ticket.
    SeatTaken,
    ZoneFull,
    /// No such zone or seat at this activity (or a seat of another hall).
    NoSuchPlace,
    /// Held back by the organisers.
    Blocked,
    PastDeadline {
        deadline: OffsetDateTime,
    },
    /// No valid ticket of this student with this code.
    NoTicket,
    /// Standing room: there is nothing to choose.
    NotSeated,
}

/// The student ID holding ticket `code`, if `openid` is bound to it now (the
/// chooser's proof of who is choosing; an unbound or rebound account is nobody).
pub async fn holder(conn: &mut PgConnection, code: &str, openid: &str) -> Result<Option<String>, AppError> {
    Ok(sqlx::query_scalar(
        "SELECT t.student_id FROM tickets t JOIN students s ON s.student_id = t.student_id \
         WHERE t.code = $1 AND s.openid = $2",
    )
    .bind(code)
    .bind(openid)
    .fetch_optional(conn)
    .await?)
}

/// Where a student's ticket stands, as the chooser shows it.
#[derive(Debug, Clone)]
pub struct Situation {
    pub ticket_id: i64,
    pub activity_id: i64,
    pub activity_name: String,
    pub seating: Seating,
    /// Choices close here.
    pub deadline: OffsetDateTime,
    pub open: bool,
    pub place: Option<Place>,
}

/// The valid ticket `code` of `student_id` and its place, if it has one.
pub async fn situation(conn: &mut PgConnection, code: &str, student_id: &str) -> Result<Option<Situation>, AppError> {
    let row: Option<(i64, i64, String, Seating, OffsetDateTime, bool)> = sqlx::query_as(
        "SELECT t.id, t.activity_id, a.name, a.seating, coalesce(a.seat_deadline, a.book_end), \
         coalesce(a.seat_deadline, a.book_end) > now() \
         FROM tickets t JOIN activities a ON a.id = t.activity_id \
         WHERE t.code = $1 AND t.student_id = $2 AND t.status = 'valid'",
    )
    .bind(code)
    .bind(student_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((ticket_id, activity_id, activity_name, seating, deadline, open)) = row else { return Ok(None) };
    let place = place_of(conn, ticket_id).await?.filter(|p| seating == Seating::Zone || p.seat_label.is_some());
    Ok(Some(Situation { ticket_id, activity_id, activity_name, seating, deadline, open, place }))
}

#[derive(FromRow)]
struct Holding {
    ticket_id: i64,
    activity_id: i64,
    seating: Seating,
    hall_id: Option<i64>,
    deadline: OffsetDateTime,
    open: bool,
}

/// The place a ticket holds, if any.
pub async fn place_of(conn: &mut PgConnection, ticket_id: i64) -> Result<Option<Place>, AppError> {
    Ok(sqlx::query_as(
        "SELECT t.zone, s.row_label, s.seat_label FROM tickets t LEFT JOIN hall_seats s ON s.id = t.seat_id \
         WHERE t.id = $1 AND t.zone IS NOT NULL",
    )
    .bind(ticket_id)
    .fetch_optional(conn)
    .await?)
}

/// What a ticket holds, as the door and the lists name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TicketPlace {
    /// A standing-room activity: nothing to say.
    StandingRoom,
    /// A zone or seat activity's ticket with no place yet (before the sweep).
    Unplaced,
    Placed(Place),
}

/// What the door says of a seated ticket without a place.
pub const UNPLACED: &str = "未选座";

impl TicketPlace {
    /// `A区 3排12座`, `A区`, `未选座`, or nothing for standing room.
    pub fn label(&self) -> Option<String> {
        match self {
            TicketPlace::StandingRoom => None,
            TicketPlace::Unplaced => Some(UNPLACED.into()),
            TicketPlace::Placed(place) => Some(place.label()),
        }
    }
}

#[derive(FromRow)]
struct Held {
    seating: Seating,
    zone: Option<String>,
    row_label: Option<String>,
    seat_label: Option<String>,
}

/// What a ticket holds (a seat mode ticket with only its zone is unplaced:
/// the sweep still gives it a seat in that zone).
pub async fn ticket_place(conn: &mut PgConnection, ticket_id: i64) -> Result<TicketPlace, AppError> {
    let held: Option<Held> = sqlx::query_as(
        "SELECT a.seating, t.zone, s.row_label, s.seat_label FROM tickets t \
         JOIN activities a ON a.id = t.activity_id LEFT JOIN hall_seats s ON s.id = t.seat_id WHERE t.id = $1",
    )
    .bind(ticket_id)
    .fetch_optional(conn)
    .await?;
    let Some(held) = held else { return Ok(TicketPlace::StandingRoom) };
    Ok(match (held.seating, held.zone, held.row_label, held.seat_label) {
        (Seating::None, ..) => TicketPlace::StandingRoom,
        (Seating::Zone, Some(zone), ..) => TicketPlace::Placed(Place { zone, row_label: None, seat_label: None }),
        (Seating::Seat, Some(zone), Some(row), Some(seat)) => {
            TicketPlace::Placed(Place { zone, row_label: Some(row), seat_label: Some(seat) })
        }
        _ => TicketPlace::Unplaced,
    })
}

/// Splits `zone-row-seat` from the right: rows and seats hold no `-`, zones may.
fn seat_parts(text: &str) -> Option<(&str, &str, &str)> {
    let (rest, seat) = text.rsplit_once('-')?;
    let (zone, row) = rest.rsplit_once('-')?;
    (!zone.is_empty() && !row.is_empty() && !seat.is_empty()).then_some((zone, row, seat))
}

/// A student chooses a place for their ticket (by its code; the caller has
/// proved who the student is — the ticket's code alone proves nothing).
pub async fn choose(
    conn: &mut PgConnection,
    code: &str,
    student_id: &str,
    choice: Choice<'_>,
) -> Result<ChooseOutcome, AppError> {
    let holding: Option<Holding> = sqlx::query_as(
        "SELECT t.id AS ticket_id, t.activity_id, a.seating, a.hall_id, \
         coalesce(a.seat_deadline, a.book_end) AS deadline, coalesce(a.seat_deadline, a.book_end) > now() AS open \
         FROM tickets t JOIN activities a ON a.id = t.activity_id \
         WHERE t.code = $1 AND t.student_id = $2 AND t.status = 'valid'",
    )
    .bind(code)
    .bind(student_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(h) = holding else { return Ok(ChooseOutcome::NoTicket) };
    if h.seating == Seating::None {
        return Ok(ChooseOutcome::NotSeated);
    }
    if let Some(place) = place_of(conn, h.ticket_id).await?
        && (h.seating == Seating::Zone || place.seat_label.is_some())
    {
        return Ok(ChooseOutcome::AlreadyPlaced(place));
    }
    if !h.open {
        return Ok(ChooseOutcome::PastDeadline { deadline: h.deadline });
    }
    // A savepoint: a seat taken a moment earlier fails this statement, not the caller's transaction.
    let mut attempt = conn.begin().await?;
    let outcome = match (h.seating, choice) {
        (Seating::Seat, Choice::Seat(text)) => take_seat(&mut attempt, &h, text).await?,
        (Seating::Zone, Choice::Zone(zone)) => take_zone(&mut attempt, &h, zone).await?,
        _ => ChooseOutcome::NoSuchPlace,
    };
    if matches!(outcome, ChooseOutcome::Placed(_)) {
        attempt.commit().await?;
    } else {
        attempt.rollback().await?;
    }
    if let ChooseOutcome::AlreadyPlaced(_) = outcome {
        // Another tab won: say which place the ticket holds.
        if let Some(place) = place_of(conn, h.ticket_id).await? {
            return Ok(ChooseOutcome::AlreadyPlaced(place));
        }
    }
    Ok(outcome)
}

async fn take_seat(conn: &mut PgConnection, h: &Holding, text: &str) -> Result<ChooseOutcome, AppError> {
    let Some((zone, row, seat)) = seat_parts(text.trim()) else { return Ok(ChooseOutcome::NoSuchPlace) };
    // The seat's row held (KEY SHARE, which choices of other seats never wait
    // for) until the choice commits: an organiser blocking this seat takes it
    // FOR UPDATE, so the two go one after the other, and whichever is second
    // sees the first — never a ticket on a blocked seat.
    let found: Option<(i64, bool)> = sqlx::query_as(
        "SELECT s.id, EXISTS (SELECT 1 FROM seat_blocks b WHERE b.activity_id = $5 AND b.seat_id = s.id) \
         FROM hall_seats s WHERE s.hall_id = $1 AND s.zone = $2 AND s.row_label = $3 AND s.seat_label = $4 \
         FOR KEY SHARE OF s",
    )
    .bind(h.hall_id)
    .bind(zone)
    .bind(row)
    .bind(seat)
    .bind(h.activity_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((seat_id, blocked)) = found else { return Ok(ChooseOutcome::NoSuchPlace) };
    if blocked {
        return Ok(ChooseOutcome::Blocked);
    }
    // A new statement sees a block committed while the lock above waited.
    let done = sqlx::query(
        "UPDATE tickets SET seat_id = $2, zone = $3, placed_at = now(), placed_by = 'student' \
         WHERE id = $1 AND seat_id IS NULL AND status = 'valid' \
         AND NOT EXISTS (SELECT 1 FROM seat_blocks b WHERE b.activity_id = $4 AND b.seat_id = $2)",
    )
    .bind(h.ticket_id)
    .bind(seat_id)
    .bind(zone)
    .bind(h.activity_id)
    .execute(&mut *conn)
    .await;
    Ok(match done {
        Ok(d) if d.rows_affected() == 1 => ChooseOutcome::Placed(Place {
            zone: zone.to_string(),
            row_label: Some(row.to_string()),
            seat_label: Some(seat.to_string()),
        }),
        Ok(_) if is_blocked(conn, h.activity_id, seat_id).await? => ChooseOutcome::Blocked,
        Ok(_) => ChooseOutcome::AlreadyPlaced(Place { zone: String::new(), row_label: None, seat_label: None }),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => ChooseOutcome::SeatTaken,
        Err(e) => return Err(e.into()),
    })
}

/// The seat is held back for the activity.
pub(crate) async fn is_blocked(conn: &mut PgConnection, activity_id: i64, seat_id: i64) -> Result<bool, AppError> {
    Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM seat_blocks WHERE activity_id = $1 AND seat_id = $2)")
        .bind(activity_id)
        .bind(seat_id)
        .fetch_one(conn)
        .await?)
}

async fn take_zone(conn: &mut PgConnection, h: &Holding, zone: &str) -> Result<ChooseOutcome, AppError> {
    let zone = zone.trim();
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM activity_zones WHERE activity_id = $1 AND zone = $2)")
            .bind(h.activity_id)
            .bind(zone)
            .fetch_one(&mut *conn)
            .await?;
    if !exists {
        return Ok(ChooseOutcome::NoSuchPlace);
    }
    // The ticket first (its row lock orders two tabs), then the zone's count.
    let placed = sqlx::query(
        "UPDATE tickets SET zone = $2, placed_at = now(), placed_by = 'student' \
         WHERE id = $1 AND zone IS NULL AND status = 'valid'",
    )
    .bind(h.ticket_id)
    .bind(zone)
    .execute(&mut *conn)
    .await?;
    if placed.rows_affected() == 0 {
        return Ok(ChooseOutcome::AlreadyPlaced(Place { zone: String::new(), row_label: None, seat_label: None }));
    }
    let counted = sqlx::query(
        "UPDATE activity_zones SET taken = taken + 1 WHERE activity_id = $1 AND zone = $2 AND taken < quota",
    )
    .bind(h.activity_id)
    .bind(zone)
    .execute(&mut *conn)
    .await?;
    Ok(if counted.rows_affected() == 1 {
        ChooseOutcome::Placed(Place { zone: zone.to_string(), row_label: None, seat_label: None })
    } else {
        ChooseOutcome::ZoneFull
    })
}

/// A cancelled ticket's zone has room again (seat mode needs nothing: a
/// cancelled ticket no longer counts for the seat's unique index).
pub(crate) async fn place_freed(conn: &mut PgConnection, ticket_id: i64) -> Result<(), AppError> {
    // A zone activity's row first, as the sweep and the waiting list's
    // promotion (which follows a cancel) lock it before any zone: a cancel
    // holding its zone while waiting for the activity could deadlock with the sweep.
    sqlx::query(
        "SELECT 1 FROM activities a JOIN tickets t ON t.activity_id = a.id \
         WHERE t.id = $1 AND a.seating = 'zone' AND t.zone IS NOT NULL FOR NO KEY UPDATE OF a",
    )
    .bind(ticket_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE activity_zones z SET taken = z.taken - 1 FROM tickets t \
         WHERE t.id = $1 AND z.activity_id = t.activity_id AND z.zone = t.zone",
    )
    .bind(ticket_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// The sweep: every published zone or seat activity whose seat deadline has
/// passed gives each valid ticket still without a place a random free place
/// (keeping a ticket's zone in seat mode when it has one), and records who
/// got which. An activity being edited is left for the next tick. Returns
/// how many tickets were placed.
pub async fn assign_due(conn: &mut PgConnection, outbox: &impl Outbox) -> Result<usize, AppError> {
    let due: Vec<(i64, Seating, Option<i64>)> = sqlx::query_as(
        "SELECT a.id, a.seating, a.hall_id FROM activities a \
         WHERE a.seating <> 'none' AND a.status = 'published' AND coalesce(a.seat_deadline, a.book_end) <= now() \
         AND EXISTS (SELECT 1 FROM tickets t WHERE t.activity_id = a.id AND t.status = 'valid' \
             AND (t.zone IS NULL OR (a.seating = 'seat' AND t.seat_id IS NULL))) \
         ORDER BY a.id FOR NO KEY UPDATE OF a SKIP LOCKED",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut placed = 0;
    for (activity_id, seating, hall_id) in due {
        // A ticket booked meanwhile past the deadline may take a drawn seat
        // first: then this activity waits for the next tick, the others go on.
        let mut attempt = conn.begin().await?;
        let given = match place_at_random(&mut attempt, activity_id, seating, hall_id, None).await {
            Ok(given) => {
                attempt.commit().await?;
                given
            }
            Err(e) if seat_was_taken(&e) => {
                attempt.rollback().await?;
                continue;
            }
            Err(e) => return Err(e),
        };
        placed += record(conn, outbox, activity_id, given).await?;
        sqlx::query("UPDATE activities SET seats_assigned_at = coalesce(seats_assigned_at, now()) WHERE id = $1")
            .bind(activity_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(placed)
}

/// A drawn seat was taken by another transaction first (the one-ticket-per-seat index).
fn seat_was_taken(e: &AppError) -> bool {
    matches!(e, AppError::Database(sqlx::Error::Database(e)) if e.is_unique_violation())
}

/// A ticket given a place by the sweep, or at its issue after the deadline.
struct Given {
    ticket_id: i64,
    student_id: String,
    place: Place,
}

/// Gives the activity's valid tickets still without a place (all of them, or
/// only the ticket `only`) a random free place; the sweep's rule, and a late
/// ticket's.
async fn place_at_random(
    conn: &mut PgConnection,
    activity_id: i64,
    seating: Seating,
    hall_id: Option<i64>,
    only: Option<i64>,
) -> Result<Vec<Given>, AppError> {
    match (seating, hall_id) {
        (Seating::Zone, _) => assign_zones(conn, activity_id, only).await,
        (Seating::Seat, Some(hall_id)) => assign_seats(conn, activity_id, hall_id, only).await,
        _ => Ok(Vec::new()),
    }
}

/// Gives one ticket issued after its activity's seat deadline (a waiting-list
/// promotion, or a booking when the deadline is before the booking end) a
/// random free place at once, in the caller's transaction: its holder can no
/// longer choose, and is told the place with the ticket rather than by a
/// later sweep. Nothing for standing room, before the deadline, for a ticket
/// placed already, or when no place is free (the sweep tries again).
pub async fn place_late_ticket(conn: &mut PgConnection, ticket_id: i64) -> Result<Option<Place>, AppError> {
    // The activity row shared (a promotion holds it already): an organiser
    // blocking seats holds it exclusively, so the seats drawn below are read
    // after their block commits. A block in progress is skipped rather than
    // waited for (it may be waiting for this booking's slot): the ticket is
    // then the next sweep's.
    let due: Option<(i64, Seating, Option<i64>)> = sqlx::query_as(
        "SELECT a.id, a.seating, a.hall_id FROM tickets t JOIN activities a ON a.id = t.activity_id \
         WHERE t.id = $1 AND t.status = 'valid' AND a.seating <> 'none' \
         AND coalesce(a.seat_deadline, a.book_end) <= now() FOR SHARE OF a SKIP LOCKED",
    )
    .bind(ticket_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((activity_id, seating, hall_id)) = due else { return Ok(None) };
    // Bookings do not hold the activity row, so another late ticket (or a
    // choice that passed its deadline check a moment before the deadline) may
    // take the drawn seat first: draw again, in a savepoint, so the caller's
    // transaction (a booking's, a cancel's) never fails for it. A zone's room
    // is taken under its row lock and cannot collide.
    for _ in 0..3 {
        let mut attempt = conn.begin().await?;
        match place_at_random(&mut attempt, activity_id, seating, hall_id, Some(ticket_id)).await {
            Ok(given) => {
                attempt.commit().await?;
                return Ok(given.into_iter().next().map(|g| g.place));
            }
            Err(e) if seat_was_taken(&e) => attempt.rollback().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

async fn assign_zones(conn: &mut PgConnection, activity_id: i64, only: Option<i64>) -> Result<Vec<Given>, AppError> {
    // Locked so a choice in flight at the deadline finishes first (and is then not re-placed).
    let waiting: Vec<(i64, String)> = sqlx::query_as(
        "SELECT id, student_id FROM tickets WHERE activity_id = $1 AND status = 'valid' AND zone IS NULL \
         AND ($2::bigint IS NULL OR id = $2) ORDER BY id FOR UPDATE",
    )
    .bind(activity_id)
    .bind(only)
    .fetch_all(&mut *conn)
    .await?;
    // One late ticket skips zones another transaction holds: a booking holds
    // its slot row while it places, and a cancel holds its zone while it gives
    // back its slot, so waiting here could deadlock with one. A ticket left
    // without a place is the next sweep's.
    let lock = if only.is_some() { "FOR UPDATE SKIP LOCKED" } else { "FOR UPDATE" };
    let rooms: Vec<(String, i32)> = sqlx::query_as(&format!(
        "SELECT zone, quota - taken FROM activity_zones WHERE activity_id = $1 AND taken < quota ORDER BY position {lock}"
    ))
    .bind(activity_id)
    .fetch_all(&mut *conn)
    .await?;
    // Each free place of each zone once, in random order: a fair draw of zones by room left.
    let mut places: Vec<String> =
        rooms.iter().flat_map(|(zone, room)| std::iter::repeat_n(zone.clone(), *room as usize)).collect();
    places.shuffle(&mut rand::rng());
    let given: Vec<((i64, String), String)> = waiting.into_iter().zip(places).collect();
    let ids: Vec<i64> = given.iter().map(|((id, _), _)| *id).collect();
    let zones: Vec<String> = given.iter().map(|(_, zone)| zone.clone()).collect();
    sqlx::query(
        "UPDATE tickets t SET zone = u.zone, placed_at = now(), placed_by = 'sweep' \
         FROM unnest($1::bigint[], $2::text[]) AS u(id, zone) WHERE t.id = u.id",
    )
    .bind(&ids)
    .bind(&zones)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE activity_zones z SET taken = z.taken + c.n FROM (SELECT zone, count(*)::int AS n FROM unnest($2::text[]) \
         AS u(zone) GROUP BY zone) c WHERE z.activity_id = $1 AND z.zone = c.zone",
    )
    .bind(activity_id)
    .bind(&zones)
    .execute(&mut *conn)
    .await?;
    Ok(given
        .into_iter()
        .map(|((ticket_id, student_id), zone)| Given {
            ticket_id,
            student_id,
            place: Place { zone, row_label: None, seat_label: None },
        })
        .collect())
}

async fn assign_seats(
    conn: &mut PgConnection,
    activity_id: i64,
    hall_id: i64,
    only: Option<i64>,
) -> Result<Vec<Given>, AppError> {
    let waiting: Vec<(i64, String, Option<String>)> = sqlx::query_as(
        "SELECT id, student_id, zone FROM tickets WHERE activity_id = $1 AND status = 'valid' AND seat_id IS NULL \
         AND ($2::bigint IS NULL OR id = $2) ORDER BY id FOR UPDATE",
    )
    .bind(activity_id)
    .bind(only)
    .fetch_all(&mut *conn)
    .await?;
    let free: Vec<(i64, String, String, String)> = sqlx::query_as(
        "SELECT s.id, s.zone, s.row_label, s.seat_label FROM hall_seats s WHERE s.hall_id = $1 \
         AND NOT EXISTS (SELECT 1 FROM seat_blocks b WHERE b.activity_id = $2 AND b.seat_id = s.id) \
         AND NOT EXISTS (SELECT 1 FROM tickets t WHERE t.activity_id = $2 AND t.seat_id = s.id AND t.status <> 'cancelled')",
    )
    .bind(hall_id)
    .bind(activity_id)
    .fetch_all(&mut *conn)
    .await?;
    let mut by_zone: HashMap<String, Vec<(i64, String, String, String)>> = HashMap::new();
    {
        let mut rng = rand::rng();
        let mut free = free;
        free.shuffle(&mut rng);
        for seat in free {
            by_zone.entry(seat.1.clone()).or_default().push(seat);
        }
    }
    let mut given = Vec::new();
    // Tickets with a zone first, into their zone while it has seats; then everyone else anywhere.
    let (zoned, unzoned): (Vec<_>, Vec<_>) = waiting.into_iter().partition(|(_, _, zone)| zone.is_some());
    let mut rest = Vec::new();
    for (id, student, zone) in zoned {
        match by_zone.get_mut(zone.as_deref().unwrap_or_default()).and_then(Vec::pop) {
            Some(seat) => given.push((id, student, seat)),
            None => rest.push((id, student)),
        }
    }
    rest.extend(unzoned.into_iter().map(|(id, student, _)| (id, student)));
    let mut left: Vec<_> = by_zone.into_values().flatten().collect();
    left.shuffle(&mut rand::rng());
    for ((id, student), seat) in rest.into_iter().zip(left) {
        given.push((id, student, seat));
    }
    let ids: Vec<i64> = given.iter().map(|(id, _, _)| *id).collect();
    let seats: Vec<i64> = given.iter().map(|(_, _, s)| s.0).collect();
    let zones: Vec<String> = given.iter().map(|(_, _, s)| s.1.clone()).collect();
    sqlx::query(
        "UPDATE tickets t SET seat_id = u.seat, zone = u.zone, placed_at = now(), placed_by = 'sweep' \
         FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS u(id, seat, zone) WHERE t.id = u.id",
    )
    .bind(&ids)
    .bind(&seats)
    .bind(&zones)
    .execute(&mut *conn)
    .await?;
    Ok(given
        .into_iter()
        .map(|(ticket_id, student_id, (_, zone, row, seat))| Given {
            ticket_id,
            student_id,
            place: Place { zone, row_label: Some(row), seat_label: Some(seat) },
        })
        .collect())
}

/// Tells each student the sweep placed where they sit.
async fn record(
    conn: &mut PgConnection,
    outbox: &impl Outbox,
    activity_id: i64,
    given: Vec<Given>,
) -> Result<usize, AppError> {
    let placed: Vec<(i64, String, String)> =
        given.into_iter().map(|g| (g.ticket_id, g.student_id, g.place.label())).collect();
    let count = placed.len();
    if count > 0 {
        outbox.record(conn, Event::PlacesAssigned { activity_id, placed }).await?;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_read_as_typed() {
        assert_eq!("A区:300".parse(), Ok(ZoneQuota { zone: "A区".into(), quota: 300 }));
        assert_eq!(" B 区 ：500 ".parse(), Ok(ZoneQuota { zone: "B 区".into(), quota: 500 }));
        for bad in ["A区", ":300", "A区:0", "A区:many", "A区:-1"] {
            assert!(bad.parse::<ZoneQuota>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_posted_seat_splits_from_the_right() {
        assert_eq!(seat_parts("A区-3-12"), Some(("A区", "3", "12")));
        assert_eq!(seat_parts("楼座-B-2-7"), Some(("楼座-B", "2", "7")));
        assert_eq!(seat_parts("A区-3"), None);
        assert_eq!(seat_parts("-3-12"), None);
    }

    #[test]
    fn a_place_reads_as_a_student_says_it() {
        let seat = Place { zone: "A区".into(), row_label: Some("3".into()), seat_label: Some("12".into()) };
        assert_eq!(seat.label(), "A区 3排12座");
        assert_eq!(Place { zone: "B区".into(), row_label: None, seat_label: None }.label(), "B区");
    }

    #[test]
    fn the_door_names_a_place_or_its_absence_and_nothing_for_standing_room() {
        let seat = Place { zone: "A区".into(), row_label: Some("1".into()), seat_label: Some("2".into()) };
        assert_eq!(TicketPlace::Placed(seat).label().as_deref(), Some("A区 1排2座"));
        assert_eq!(TicketPlace::Unplaced.label().as_deref(), Some("未选座"));
        assert_eq!(TicketPlace::StandingRoom.label(), None);
    }
}
