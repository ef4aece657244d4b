//! Booking, cancelling and finding tickets.
//!
//! Capacity is guarded by `activity_slots`: a booking takes one unit from a
//! slot row and inserts the ticket in the same statement; a cancel gives the
//! unit back. `remaining >= 0` and the one-live-ticket index are database
//! constraints, so no interleaving of instances can oversell or double-book.
//! Bookings come in batches (a rush's messages, gathered by `/wechat`): one
//! lock-free statement checks them all, one per activity takes their places
//! and issues their tickets, and every refusal costs only its share of the first.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::Rng;
use sqlx::{FromRow, PgConnection, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    ActivityStatus, TicketStatus, lottery,
    seats::{Place, Seating},
};
use crate::error::AppError;

#[derive(Debug, Clone, FromRow)]
pub struct Ticket {
    pub id: i64,
    pub code: String,
    pub student_id: String,
    pub status: TicketStatus,
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
    /// How the activity sells places; standing room has none to show.
    pub seating: Seating,
    /// The ticket's zone (both modes), once chosen or assigned.
    pub zone: Option<String>,
    /// Its seat (seat mode), once chosen or assigned.
    pub row_label: Option<String>,
    pub seat_label: Option<String>,
    /// Choices close here (the seat deadline, by default the booking end).
    pub seat_deadline: OffsetDateTime,
    /// The seat deadline has not passed: a ticket without a place may still choose one.
    pub choosing_open: bool,
    /// A guest ticket's guest (booking/guests.rs); `None` for a booked ticket.
    pub guest_name: Option<String>,
}

/// How a guest ticket without a student ID's synthetic `student_id` starts
/// (migrations/0018): never a student's, so pages show the guest's name instead.
pub const GUEST_ID_PREFIX: &str = "guest:";

/// Whether a ticket's `student_id` is a guest's synthetic one rather than a student's.
pub fn is_guest_id(student_id: &str) -> bool {
    student_id.starts_with(GUEST_ID_PREFIX)
}

impl Ticket {
    /// The student ID to show: none for a guest who has none (its
    /// `student_id` is synthetic and means nothing to a reader).
    pub fn real_student_id(&self) -> Option<&str> {
        (!is_guest_id(&self.student_id)).then_some(self.student_id.as_str())
    }

    /// Who holds the ticket, as the door and the pages name them.
    pub fn holder(&self) -> String {
        match (self.real_student_id(), self.guest_name.as_deref()) {
            (Some(id), None) => format!("学号 {id}"),
            (Some(id), Some(name)) => format!("嘉宾 {name}（学号 {id}）"),
            (None, name) => format!("嘉宾 {}", name.unwrap_or_default()),
        }
    }

    /// The place the ticket holds: its zone in zone mode, its seat in seat
    /// mode (a zone alone is not a place there: the sweep still gives a seat).
    pub fn held_place(&self) -> Option<Place> {
        let zone = self.zone.clone()?;
        match self.seating {
            Seating::None => None,
            Seating::Zone => Some(Place { zone, row_label: None, seat_label: None }),
            Seating::Seat => Some(Place {
                zone,
                row_label: Some(self.row_label.clone()?),
                seat_label: Some(self.seat_label.clone()?),
            }),
        }
    }

    /// A valid ticket of a zone or seat activity still without its place
    /// (to be chosen before the deadline, or assigned by the sweep after it).
    pub fn needs_place(&self) -> bool {
        self.status == TicketStatus::Valid && self.seating != Seating::None && self.held_place().is_none()
    }

    /// The student can choose a place for this ticket now.
    pub fn can_choose(&self) -> bool {
        self.needs_place() && self.choosing_open
    }
}

const COLUMNS: &str = "t.id, t.code, t.student_id, t.status, t.booked_at, t.checked_in_at, t.cancelled_at, \
     a.id AS activity_id, a.key AS activity_key, a.name AS activity_name, a.place, a.start_at, a.end_at, a.poster_id, \
     (t.status = 'valid' AND now() < a.start_at) AS cancellable, \
     a.seating, t.zone, hs.row_label, hs.seat_label, coalesce(a.seat_deadline, a.book_end) AS seat_deadline, \
     coalesce(a.seat_deadline, a.book_end) > now() AS choosing_open, t.guest_name";

/// What `COLUMNS` reads from: a ticket, its activity, and its seat's labels.
const FROM: &str = "tickets t JOIN activities a ON a.id = t.activity_id LEFT JOIN hall_seats hs ON hs.id = t.seat_id";

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
    NotOpenYet {
        opens_at: OffsetDateTime,
    },
    Closed,
    /// No place left; the reply tells how to join the waiting list by `key`.
    SoldOut {
        key: String,
    },
    AlreadyHolds(Ticket),
    /// The WeChat user has not bound a student ID yet.
    NotBound,
    /// The no-show rule pauses this student ID until then.
    Paused {
        until: OffsetDateTime,
    },
    /// A lottery activity: the booking registered the student instead (or they were already).
    Lottery(lottery::EntryOutcome),
}

impl BookOutcome {
    /// The booking wrote something that must survive a crash (a ticket, a
    /// lottery entry); every refusal changes nothing.
    pub fn changed(&self) -> bool {
        matches!(self, BookOutcome::Booked(_) | BookOutcome::Lottery(lottery::EntryOutcome::Entered { .. }))
    }
}

/// What a booking needs to know, read in one statement that takes no lock:
/// the activity, whether the WeChat user is bound (and as whom), whether the
/// student already holds a ticket for it (with all a reply shows), and
/// whether any place is left. Every refusal — sold out above all, in a rush —
/// is decided here, at the cost of this one read.
#[derive(FromRow)]
struct BookingCheck {
    activity_id: i64,
    activity_key: String,
    activity_name: String,
    place: String,
    start_at: OffsetDateTime,
    end_at: OffsetDateTime,
    poster_id: Option<Uuid>,
    status: ActivityStatus,
    mode: lottery::Mode,
    book_start: OffsetDateTime,
    open: bool,
    closed: bool,
    before_start: bool,
    has_places: bool,
    held_id: Option<i64>,
    held_code: Option<String>,
    held_student_id: Option<String>,
    held_status: Option<TicketStatus>,
    held_booked_at: Option<OffsetDateTime>,
    held_checked_in_at: Option<OffsetDateTime>,
    held_cancelled_at: Option<OffsetDateTime>,
    seating: Seating,
    seat_deadline: OffsetDateTime,
    choosing_open: bool,
    held_zone: Option<String>,
    held_row_label: Option<String>,
    held_seat_label: Option<String>,
}

impl BookingCheck {
    /// A new ticket, just issued.
    fn issued(&self, student_id: &str, id: i64, code: String, booked_at: OffsetDateTime) -> Ticket {
        // A new ticket has no place yet: it is chosen afterwards.
        self.ticket(student_id, id, code, TicketStatus::Valid, booked_at, None, None)
    }

    /// The live ticket the student, or this WeChat account, already holds for this activity.
    fn held_ticket(&self) -> Option<Ticket> {
        let (id, code, status, booked_at) =
            (self.held_id?, self.held_code.clone()?, self.held_status?, self.held_booked_at?);
        let student_id = self.held_student_id.as_deref()?;
        let ticket =
            self.ticket(student_id, id, code, status, booked_at, self.held_checked_in_at, self.held_cancelled_at);
        Some(Ticket {
            zone: self.held_zone.clone(),
            row_label: self.held_row_label.clone(),
            seat_label: self.held_seat_label.clone(),
            ..ticket
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn ticket(
        &self,
        student_id: &str,
        id: i64,
        code: String,
        status: TicketStatus,
        booked_at: OffsetDateTime,
        checked_in_at: Option<OffsetDateTime>,
        cancelled_at: Option<OffsetDateTime>,
    ) -> Ticket {
        Ticket {
            cancellable: status == TicketStatus::Valid && self.before_start,
            id,
            code,
            student_id: student_id.to_string(),
            status,
            booked_at,
            checked_in_at,
            cancelled_at,
            activity_id: self.activity_id,
            activity_key: self.activity_key.clone(),
            activity_name: self.activity_name.clone(),
            place: self.place.clone(),
            start_at: self.start_at,
            end_at: self.end_at,
            poster_id: self.poster_id,
            seating: self.seating,
            zone: None,
            row_label: None,
            seat_label: None,
            seat_deadline: self.seat_deadline,
            choosing_open: self.choosing_open,
            // A booking is a student's own; a held guest ticket is found by `held` instead.
            guest_name: None,
        }
    }
}

/// One booking of a batch: which activity, for the student the WeChat user `openid` is bound to.
pub struct BookRequest<'a> {
    pub activity: &'a ActivityRef,
    pub openid: &'a str,
}

/// Books one ticket of an activity for the student the WeChat user `openid`
/// is bound to (for a lottery activity: registers them for its draw): a batch
/// of one, so a lone booking and a rush follow the same rules.
pub async fn book(
    conn: &mut PgConnection,
    activity: &ActivityRef,
    openid: &str,
    no_show: Option<&super::no_show::NoShowRule>,
) -> Result<BookOutcome, AppError> {
    let mut outcomes = book_many(conn, &[BookRequest { activity, openid }], no_show).await?;
    outcomes.pop().unwrap_or(Err(AppError::Busy))
}

/// A member whose check found a place to take.
enum Wants {
    /// Takes one of the activity's places, in the batch's order.
    Wanted { activity_id: i64, student_id: String },
    /// An earlier member of the batch wants a place of the same activity for
    /// the same student ID or WeChat account: taken alone one after the
    /// other, the later one would find that ticket, so it gets what that one gets.
    Follows(usize),
}

/// Books for many students at once, in the caller's transaction, with the
/// outcome each would have had alone and in this order: one statement checks
/// them all, and one statement per activity takes their places and issues
/// their tickets (`take_places_and_issue`). A member's `Err` is only
/// `AppError::Busy` (every place left stayed held by bookings in flight);
/// the outer `Err` is a statement that failed, and the caller's transaction
/// with it.
///
/// With the no-show rule on, a member who would book is looked up for a
/// pause (one read each); a lottery registration is one insert each. The rush
/// pays for neither.
pub async fn book_many(
    conn: &mut PgConnection,
    requests: &[BookRequest<'_>],
    no_show: Option<&super::no_show::NoShowRule>,
) -> Result<Vec<Result<BookOutcome, AppError>>, AppError> {
    let checks = check_many(conn, requests).await?;
    let mut outcomes: Vec<Option<Result<BookOutcome, AppError>>> = requests.iter().map(|_| None).collect();
    let mut places: Vec<(usize, Wants)> = Vec::new();
    for (i, (request, (bound, check))) in requests.iter().zip(&checks).enumerate() {
        let decided = match (bound.as_deref(), check) {
            (None, _) => BookOutcome::NotBound,
            (Some(_), None) => BookOutcome::NoSuchActivity,
            (Some(student_id), Some(check)) => match decide(conn, check, student_id, request.openid, no_show).await? {
                Some(outcome) => outcome,
                None => {
                    let same = |(j, place): &(usize, Wants)| match place {
                        Wants::Wanted { activity_id, student_id: other } => (*activity_id == check.activity_id
                            && (other == student_id || requests[*j].openid == request.openid))
                            .then_some(*j),
                        Wants::Follows(_) => None,
                    };
                    let place = match places.iter().find_map(same) {
                        Some(j) => Wants::Follows(j),
                        None => Wants::Wanted { activity_id: check.activity_id, student_id: student_id.into() },
                    };
                    places.push((i, place));
                    continue;
                }
            },
        };
        outcomes[i] = Some(Ok(decided));
    }

    // One take per activity, its members in the order they came; the
    // activities in id order, so two batches that book the same students
    // for two activities take their rows in one order and never wait for
    // each other in a circle.
    let mut activities: Vec<i64> = Vec::new();
    for (_, place) in &places {
        if let Wants::Wanted { activity_id, .. } = place
            && !activities.contains(activity_id)
        {
            activities.push(*activity_id);
        }
    }
    activities.sort_unstable();
    for activity_id in activities {
        let members: Vec<(usize, &str)> = places
            .iter()
            .filter_map(|(i, place)| match place {
                Wants::Wanted { activity_id: a, student_id } if *a == activity_id => Some((*i, student_id.as_str())),
                _ => None,
            })
            .collect();
        let codes: Vec<String> = members.iter().map(|_| new_code()).collect();
        let news: Vec<NewTicket> = members
            .iter()
            .zip(&codes)
            .map(|((i, student_id), code)| NewTicket {
                code,
                student_id,
                openid: Some(requests[*i].openid),
                guest: None,
            })
            .collect();
        let taken = take_places_and_issue(conn, activity_id, &news).await?;
        for ((i, student_id), taken) in members.iter().zip(taken) {
            let check = checks[*i].1.as_ref().expect("a member who wants a place was checked");
            let openid = requests[*i].openid;
            let sold_out = || BookOutcome::SoldOut { key: check.activity_key.clone() };
            outcomes[*i] = Some(match taken {
                Taken::Issued { id, code, booked_at } => {
                    let mut ticket = check.issued(student_id, id, code, booked_at);
                    // Past the seat deadline (booking may run later) nobody chooses any
                    // more: a ticket issued now gets its place at once, and says so.
                    if check.seating != Seating::None
                        && !check.choosing_open
                        && let Some(place) = super::seats::place_late_ticket(conn, id).await?
                    {
                        (ticket.zone, ticket.row_label, ticket.seat_label) =
                            (Some(place.zone), place.row_label, place.seat_label);
                    }
                    Ok(BookOutcome::Booked(ticket))
                }
                // The last place may have gone to this same student's other
                // request, which committed while this one waited (or the
                // student unbound meanwhile): then that is the answer.
                Taken::SoldOut | Taken::AlreadyHeld => {
                    Ok(match held(conn, activity_id, student_id, Some(openid)).await? {
                        Some(ticket) => BookOutcome::AlreadyHolds(ticket),
                        None if super::students::bound(conn, openid).await?.is_none() => BookOutcome::NotBound,
                        None => sold_out(),
                    })
                }
                // Places are left but every one stayed held by bookings in flight (or an
                // admin's edit): not sold out, so the student is told to try again, and
                // nothing is recorded, so WeChat's retry gets a real answer.
                Taken::Busy => Err(AppError::Busy),
            });
        }
    }
    for (i, place) in &places {
        if let Wants::Follows(j) = place {
            outcomes[*i] = Some(match &outcomes[*j] {
                Some(Ok(BookOutcome::Booked(ticket))) => Ok(BookOutcome::AlreadyHolds(ticket.clone())),
                Some(Ok(BookOutcome::SoldOut { key })) => Ok(BookOutcome::SoldOut { key: key.clone() }),
                Some(Ok(BookOutcome::AlreadyHolds(ticket))) => Ok(BookOutcome::AlreadyHolds(ticket.clone())),
                Some(Ok(BookOutcome::NotBound)) => Ok(BookOutcome::NotBound),
                _ => Err(AppError::Busy),
            });
        }
    }
    Ok(outcomes.into_iter().map(|o| o.unwrap_or(Err(AppError::Busy))).collect())
}

/// The refusal a checked member gets before any place is taken, in the
/// order a lone booking decides them; `None` when a place is to be taken.
async fn decide(
    conn: &mut PgConnection,
    check: &BookingCheck,
    student_id: &str,
    openid: &str,
    no_show: Option<&super::no_show::NoShowRule>,
) -> Result<Option<BookOutcome>, AppError> {
    // Held by the student ID, or booked by this WeChat account under another
    // student ID it was bound to before. (Two branches, each on its own
    // one-live-ticket index: an `OR` of the two made PostgreSQL walk every
    // live ticket of the activity, which in a rush doubled its CPU per message.)
    if let Some(ticket) = check.held_ticket() {
        return Ok(Some(BookOutcome::AlreadyHolds(ticket)));
    }
    if check.status == ActivityStatus::Archived || check.closed {
        return Ok(Some(match check.mode {
            lottery::Mode::Lottery => BookOutcome::Lottery(lottery::EntryOutcome::Closed),
            lottery::Mode::Rush => BookOutcome::Closed,
        }));
    }
    if !check.open {
        return Ok(Some(BookOutcome::NotOpenYet { opens_at: check.book_start }));
    }
    if let Some(rule) = no_show
        && let Some(until) = super::no_show::paused_until(conn, rule, student_id).await?
    {
        return Ok(Some(BookOutcome::Paused { until }));
    }
    if check.mode == lottery::Mode::Lottery {
        let entry = lottery::enter(conn, check.activity_id, student_id, openid).await?;
        return Ok(Some(BookOutcome::Lottery(entry)));
    }
    // No place also while anyone waits: a list has entries only while every
    // slot is empty (booking/waiting.rs), so this one read covers both.
    if !check.has_places {
        return Ok(Some(BookOutcome::SoldOut { key: check.activity_key.clone() }));
    }
    Ok(None)
}

/// Every member's check, in one statement that takes no lock: whom the WeChat
/// user is bound to (`None`: not bound), and the activity with what the
/// booking needs to know (`None`: no such activity, or a draft).
///
/// Not a prepared statement: PostgreSQL would soon keep one generic plan,
/// chosen while `tickets` is small, and with both one-live-ticket indexes on
/// `activity_id` first it may pick the wrong one for the held ticket — which
/// then walks every live ticket of the activity. Measured: a `bulk` rush of
/// 20,000 booked 443 tickets/s so, the plan made each time 20× more. Planning
/// costs a fraction of a millisecond per batch.
async fn check_many(
    conn: &mut PgConnection,
    requests: &[BookRequest<'_>],
) -> Result<Vec<(Option<String>, Option<BookingCheck>)>, AppError> {
    let openids: Vec<&str> = requests.iter().map(|r| r.openid).collect();
    let (keys, ids): (Vec<String>, Vec<i64>) = requests
        .iter()
        .map(|r| match r.activity {
            ActivityRef::Key(key) => (key.to_ascii_lowercase(), 0),
            ActivityRef::Id(id) => (String::new(), *id),
        })
        .unzip();
    let rows = sqlx::query(
        "SELECT m.n, st.student_id, c.* \
         FROM unnest($1::text[], $2::text[], $3::int8[]) WITH ORDINALITY AS m(openid, key, id, n) \
         LEFT JOIN students st ON st.openid = m.openid AND st.student_id IS NOT NULL \
         LEFT JOIN LATERAL ( \
             SELECT a.id AS activity_id, a.key AS activity_key, a.name AS activity_name, a.place, \
             a.start_at, a.end_at, a.poster_id, a.status, a.mode, a.book_start, \
             a.book_start <= now() AS open, a.book_end <= now() AS closed, now() < a.start_at AS before_start, \
             EXISTS (SELECT 1 FROM activity_slots s WHERE s.activity_id = a.id AND s.remaining > 0) AS has_places, \
             h.id AS held_id, h.code AS held_code, h.student_id AS held_student_id, h.status AS held_status, \
             h.booked_at AS held_booked_at, h.checked_in_at AS held_checked_in_at, \
             h.cancelled_at AS held_cancelled_at, \
             a.seating, coalesce(a.seat_deadline, a.book_end) AS seat_deadline, \
             coalesce(a.seat_deadline, a.book_end) > now() AS choosing_open, \
             h.zone AS held_zone, hs.row_label AS held_row_label, hs.seat_label AS held_seat_label \
             FROM activities a \
             LEFT JOIN LATERAL ( \
                 (SELECT t.id, t.code, t.student_id, t.status, t.booked_at, t.checked_in_at, t.cancelled_at, \
                         t.zone, t.seat_id \
                  FROM tickets t \
                  WHERE t.activity_id = a.id AND t.student_id = st.student_id AND t.status <> 'cancelled') \
                 UNION ALL \
                 (SELECT t.id, t.code, t.student_id, t.status, t.booked_at, t.checked_in_at, t.cancelled_at, \
                         t.zone, t.seat_id \
                  FROM tickets t WHERE t.activity_id = a.id AND t.openid = m.openid AND t.status <> 'cancelled') \
                 LIMIT 1) h ON true \
             LEFT JOIN hall_seats hs ON hs.id = h.seat_id \
             WHERE a.id = CASE WHEN m.key = '' THEN m.id ELSE (SELECT k.id FROM activities k WHERE k.key = m.key) END \
             AND a.status <> 'draft') c ON true \
         ORDER BY m.n",
    )
    .bind(&openids)
    .bind(&keys)
    .bind(&ids)
    .persistent(false)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            let bound: Option<String> = row.try_get("student_id")?;
            let found: Option<i64> = row.try_get("activity_id")?;
            let check = match found {
                Some(_) => Some(BookingCheck::from_row(row)?),
                None => None,
            };
            Ok((bound, check))
        })
        .collect()
}

pub(super) enum Taken {
    Issued {
        id: i64,
        code: String,
        booked_at: OffsetDateTime,
    },
    /// The student's (or the WeChat account's) other booking committed first,
    /// or the account unbound meanwhile; the place went back.
    AlreadyHeld,
    SoldOut,
    /// Places exist, but none could be taken in time.
    Busy,
}

/// Takes a place for each new ticket, in their order, and issues the tickets,
/// in one statement: it locks (`FOR UPDATE SKIP LOCKED`) about as many of the
/// activity's slot rows, chosen at random, as hold that many places, takes
/// what it needs from each, and inserts the tickets it placed. A ticket whose
/// student (or WeChat account) already holds one, or whose account is no
/// longer bound to its student ID, is not issued and its place goes back.
/// When that was the last place it sees, the same statement records the
/// sold-out moment (`activities.sold_out_at`, once): `SKIP LOCKED` so it never
/// waits on the activity row (an edit or a waiting-list change holding it
/// would deadlock with a booking holding a slot). A moment missed so, or
/// while a concurrent booking's last place was not yet committed, is worked
/// out from the tickets when read (`rush_facts`). `SKIP LOCKED` keeps a rush
/// from queueing on one row, and the statement never waits for a row lock: a
/// transaction that waits while holding a row it locked and found emptied can
/// deadlock with another doing the same. Tickets left without a place while
/// places exist in slots held by bookings in flight are tried again after a
/// short back-off (those may roll back), and are `Busy` in the end.
///
/// The tickets are inserted in student ID order, so two batches on two
/// instances that both issue to the same students wait for each other in one
/// order and never in a circle.
pub(super) async fn take_places_and_issue(
    conn: &mut PgConnection,
    activity_id: i64,
    news: &[NewTicket<'_>],
) -> Result<Vec<Taken>, AppError> {
    let mut taken: Vec<Option<Taken>> = news.iter().map(|_| None).collect();
    let mut pending: Vec<usize> = (0..news.len()).collect();
    let give_up = std::time::Instant::now() + TAKE_FOR;
    // Several tickets may take places from several slots, and then find the
    // rest held by another batch in flight that is short too: each would wait
    // for the other while holding what it took. So a take of several starts
    // at a savepoint, and one that must wait lets go of everything it took
    // first (a rolled-back savepoint releases its row locks) and starts over.
    let several = news.len() > 1;
    if several {
        sqlx::query("SAVEPOINT take_places").execute(&mut *conn).await?;
    }
    let mut holding = false;
    while !pending.is_empty() && std::time::Instant::now() < give_up {
        let these: Vec<&NewTicket> = pending.iter().map(|&i| &news[i]).collect();
        let column = |f: &dyn Fn(&NewTicket) -> Option<String>| these.iter().map(|n| f(n)).collect::<Vec<_>>();
        let codes = column(&|n| Some(n.code.to_string()));
        let student_ids = column(&|n| Some(n.student_id.to_string()));
        let openids = column(&|n| n.openid.map(str::to_string));
        let simulated: Vec<bool> = these.iter().map(|n| n.openid.is_some_and(super::students::is_test)).collect();
        let names = column(&|n| n.guest.as_ref().map(|g| g.name.to_string()));
        let notes = column(&|n| n.guest.as_ref().and_then(|g| g.note).map(str::to_string));
        let issuers = column(&|n| n.guest.as_ref().map(|g| g.issued_by.to_string()));
        let rows: Vec<PlacedRow> = sqlx::query_as(
            "WITH want AS ( \
                 SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::bool[], $6::text[], $7::text[], \
                     $8::text[]) WITH ORDINALITY AS w(code, student_id, openid, simulated, guest_name, guest_note, \
                     issued_by, n)), \
             free AS ( \
                 SELECT slot, remaining FROM activity_slots WHERE activity_id = $1 AND remaining > 0 \
                 ORDER BY random() \
                 LIMIT (SELECT greatest(1, ceil($9::numeric * count(*) / greatest(sum(remaining), 1)))::int8 \
                        FROM activity_slots WHERE activity_id = $1 AND remaining > 0) \
                 FOR UPDATE SKIP LOCKED), \
             plan AS ( \
                 SELECT slot, remaining, \
                     coalesce(sum(remaining) OVER (ORDER BY slot ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), \
                         0) AS before \
                 FROM free), \
             taken AS ( \
                 UPDATE activity_slots s SET remaining = s.remaining - least(p.remaining, $9 - p.before) \
                 FROM plan p WHERE s.activity_id = $1 AND s.slot = p.slot AND p.before < $9 \
                 RETURNING s.slot, p.before, least(p.remaining, $9 - p.before) AS k, s.remaining), \
             placed AS ( \
                 SELECT w.*, t.slot FROM want w JOIN taken t ON w.n > t.before AND w.n <= t.before + t.k), \
             issued AS ( \
                 INSERT INTO tickets (code, activity_id, student_id, slot, simulated, openid, \
                     guest_name, guest_note, issued_by) \
                 SELECT p.code, $1, p.student_id, p.slot, p.simulated, p.openid, p.guest_name, p.guest_note, \
                     p.issued_by \
                 FROM placed p \
                 WHERE p.openid IS NULL OR EXISTS ( \
                     SELECT 1 FROM students st WHERE st.openid = p.openid AND st.student_id = p.student_id) \
                 ORDER BY p.student_id \
                 ON CONFLICT DO NOTHING \
                 RETURNING id, code, booked_at), \
             others AS ( \
                 SELECT coalesce(sum(remaining), 0)::int8 AS n_left FROM activity_slots \
                 WHERE activity_id = $1 AND remaining > 0 AND slot NOT IN (SELECT slot FROM taken)), \
             sold_out AS ( \
                 UPDATE activities SET sold_out_at = now() WHERE id = ( \
                     SELECT id FROM activities WHERE id = $1 AND sold_out_at IS NULL \
                         AND EXISTS (SELECT 1 FROM issued) AND NOT EXISTS (SELECT 1 FROM taken WHERE remaining > 0) \
                         AND (SELECT n_left FROM others) = 0 \
                     FOR NO KEY UPDATE SKIP LOCKED)) \
             SELECT p.n, p.slot, i.id, i.booked_at, (SELECT n_left FROM others) \
             FROM placed p LEFT JOIN issued i ON i.code = p.code \
             UNION ALL SELECT 0, NULL, NULL, NULL, (SELECT n_left FROM others)",
        )
        .bind(activity_id)
        .bind(&codes)
        .bind(&student_ids)
        .bind(&openids)
        .bind(&simulated)
        .bind(&names)
        .bind(&notes)
        .bind(&issuers)
        .bind(these.len() as i64)
        .persistent(false)
        .fetch_all(&mut *conn)
        .await?;
        let others_left = rows.iter().find(|r| r.0 == 0).map_or(0, |r| r.4);
        let mut back: Vec<(i16, i32)> = Vec::new();
        let mut placed = vec![false; these.len()];
        for (n, slot, id, booked_at) in rows.into_iter().filter(|r| r.0 > 0).map(|r| (r.0, r.1, r.2, r.3)) {
            let at = (n - 1) as usize;
            placed[at] = true;
            let i = pending[at];
            taken[i] = Some(match (id, booked_at) {
                (Some(id), Some(booked_at)) => Taken::Issued { id, code: news[i].code.to_string(), booked_at },
                _ => {
                    let slot = slot.expect("a placed ticket has its slot");
                    match back.iter_mut().find(|(s, _)| *s == slot) {
                        Some((_, count)) => *count += 1,
                        None => back.push((slot, 1)),
                    }
                    Taken::AlreadyHeld
                }
            });
        }
        if !back.is_empty() {
            give_back(conn, activity_id, &back).await?;
        }
        let progressed = placed.iter().any(|p| *p);
        holding |= progressed;
        pending = pending.into_iter().zip(placed).filter(|(_, p)| !p).map(|(i, _)| i).collect();
        if pending.is_empty() {
            break;
        }
        if others_left == 0 {
            for &i in &pending {
                taken[i] = Some(Taken::SoldOut);
            }
            pending.clear();
            break;
        }
        // Some places went: the rest may be in slots this statement did not
        // lock; try again at once. None went: the places left are held by
        // bookings in flight, which commit (or roll back) within milliseconds
        // — a batch's transaction is short — so look again soon.
        if !progressed {
            if holding {
                sqlx::query("ROLLBACK TO SAVEPOINT take_places").execute(&mut *conn).await?;
                taken.iter_mut().for_each(|t| *t = None);
                pending = (0..news.len()).collect();
                holding = false;
            }
            let pause = rand::rng().random_range(500..=2_500);
            tokio::time::sleep(std::time::Duration::from_micros(pause)).await;
        }
    }
    // Places exist but stayed held for the whole back-off: rather than keep a
    // student waiting past WeChat's deadline, say so — never "sold out", which
    // is answered only when no place is left.
    Ok(taken.into_iter().map(|t| t.unwrap_or(Taken::Busy)).collect())
}

/// What a new ticket is issued as: a student's booking (with the WeChat
/// account that booked) or an organizer's guest ticket.
pub(super) struct NewTicket<'a> {
    /// Kept across the take's retries: a guest's synthetic student ID is made from it.
    pub code: &'a str,
    pub student_id: &'a str,
    pub openid: Option<&'a str>,
    pub guest: Option<Guest<'a>>,
}

/// A guest ticket's own columns.
pub(super) struct Guest<'a> {
    pub name: &'a str,
    pub note: Option<&'a str>,
    pub issued_by: &'a str,
}

/// A ticket placed by the take (its number among those asked, the slot, the
/// ticket issued if it was), and the places left in slots the take did not
/// lock; the row numbered 0 carries only that.
type PlacedRow = (i64, Option<i16>, Option<i64>, Option<OffsetDateTime>, i64);

/// Bounded so a booking answers well inside WeChat's deadline.
const TAKE_FOR: std::time::Duration = std::time::Duration::from_secs(1);

/// Gives places back to their slots: `(slot, how many)`.
async fn give_back(conn: &mut PgConnection, activity_id: i64, places: &[(i16, i32)]) -> Result<(), AppError> {
    let (slots, counts): (Vec<i16>, Vec<i32>) = places.iter().copied().unzip();
    sqlx::query(
        "UPDATE activity_slots s SET remaining = s.remaining + b.count \
         FROM unnest($2::int2[], $3::int4[]) AS b(slot, count) WHERE s.activity_id = $1 AND s.slot = b.slot",
    )
    .bind(activity_id)
    .bind(&slots)
    .bind(&counts)
    .execute(conn)
    .await?;
    Ok(())
}

/// The ticket's bearer secret, URL-safe, 22 characters: a letter or digit, so
/// no spreadsheet reads a code as a formula (`=`, `+`, `-`, `@`) and exports
/// write it unchanged, then 21 base64url characters: log2(62) + 126 ≈ 132 random bits.
pub(crate) fn new_code() -> String {
    let mut rng = rand::rng();
    let first = char::from(rng.sample(rand::distr::Alphanumeric));
    let rest = URL_SAFE_NO_PAD.encode(rng.random::<[u8; 16]>());
    format!("{first}{}", &rest[..21])
}

/// Whether a string could be a ticket code at all (to answer 404 without a query).
pub fn looks_like_code(code: &str) -> bool {
    code.len() == 22 && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub async fn by_code(conn: &mut PgConnection, code: &str) -> Result<Option<Ticket>, AppError> {
    if !looks_like_code(code) {
        return Ok(None);
    }
    Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM {FROM} WHERE t.code = $1"))
        .bind(code)
        .fetch_optional(conn)
        .await?)
}

pub async fn by_id(conn: &mut PgConnection, id: i64) -> Result<Option<Ticket>, AppError> {
    Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM {FROM} WHERE t.id = $1")).bind(id).fetch_optional(conn).await?)
}

/// The live ticket held by the student ID, or by the WeChat account if one is given.
pub(super) async fn held(
    conn: &mut PgConnection,
    activity_id: i64,
    student_id: &str,
    openid: Option<&str>,
) -> Result<Option<Ticket>, AppError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM {FROM} \
         WHERE t.activity_id = $1 AND (t.student_id = $2 OR t.openid = $3) AND t.status <> 'cancelled' LIMIT 1"
    ))
    .bind(activity_id)
    .bind(student_id)
    .bind(openid)
    .fetch_optional(conn)
    .await?)
}

/// A student's live tickets, soonest activity first.
pub async fn live_for_student(conn: &mut PgConnection, student_id: &str) -> Result<Vec<Ticket>, AppError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM {FROM} \
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
        "SELECT {COLUMNS} FROM {FROM} \
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
    StudentAndKey {
        student_id: &'a str,
        key: &'a str,
    },
    /// A ticket code, if the ticket is this student's: a ticket page's cancel
    /// button, after the page's link proved who the student is.
    CodeOfStudent {
        code: &'a str,
        student_id: &'a str,
    },
    /// Any ticket by its code, whoever holds it: for the rules' own use only,
    /// never for a request, since the code alone proves nothing.
    Code(&'a str),
}

/// Cancels a valid ticket before its activity starts and, in the same
/// transaction, gives its place to the head of the waiting list (which is
/// recorded for the student to be told) or, when nobody waits, back to be booked at once.
pub async fn cancel(
    conn: &mut PgConnection,
    outbox: &impl super::outbox::Outbox,
    which: TicketRef<'_>,
) -> Result<CancelOutcome, AppError> {
    let (filter, a, b) = match which {
        TicketRef::StudentAndKey { student_id, key } => {
            if !activity_exists(conn, key).await? {
                return Ok(CancelOutcome::NoSuchActivity);
            }
            ("t.student_id = $1 AND a.key = $2", student_id.to_string(), key.to_ascii_lowercase())
        }
        TicketRef::CodeOfStudent { code, student_id } => {
            if !looks_like_code(code) {
                return Ok(CancelOutcome::NothingToCancel);
            }
            ("t.code = $1 AND t.student_id = $2", code.to_string(), student_id.to_string())
        }
        TicketRef::Code(code) => {
            if !looks_like_code(code) {
                return Ok(CancelOutcome::NothingToCancel);
            }
            ("t.code = $1 AND $2 = ''", code.to_string(), String::new())
        }
    };
    // Lock the ticket so a concurrent cancel or check-in sees our result.
    let row: Option<(i64, String, i64, i16, TicketStatus, bool)> = sqlx::query_as(&format!(
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
    if status != TicketStatus::Valid || !before_start {
        let ticket = by_code(conn, &code).await?.ok_or(AppError::NotFound)?;
        return Ok(CancelOutcome::TooLate(ticket));
    }
    sqlx::query("UPDATE tickets SET status = 'cancelled', cancelled_at = now() WHERE id = $1")
        .bind(ticket_id)
        .execute(&mut *conn)
        .await?;
    super::seats::place_freed(conn, ticket_id).await?;
    super::waiting::place_freed(conn, outbox, activity_id, slot).await?;
    Ok(CancelOutcome::Cancelled(by_code(conn, &code).await?.ok_or(AppError::NotFound)?))
}

async fn activity_exists(conn: &mut PgConnection, key: &str) -> Result<bool, AppError> {
    Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM activities WHERE key = $1 AND status <> 'draft')")
        .bind(key.to_ascii_lowercase())
        .fetch_one(conn)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket(seating: Seating, zone: Option<&str>, seat: Option<(&str, &str)>) -> Ticket {
        let now = OffsetDateTime::now_utc();
        Ticket {
            id: 1,
            code: "c".into(),
            student_id: "s".into(),
            status: TicketStatus::Valid,
            booked_at: now,
            checked_in_at: None,
            cancelled_at: None,
            activity_id: 1,
            activity_key: "play".into(),
            activity_name: "戏".into(),
            place: "礼堂".into(),
            start_at: now,
            end_at: now,
            poster_id: None,
            cancellable: true,
            seating,
            zone: zone.map(str::to_string),
            row_label: seat.map(|s| s.0.to_string()),
            seat_label: seat.map(|s| s.1.to_string()),
            seat_deadline: now,
            choosing_open: true,
            guest_name: None,
        }
    }

    #[test]
    fn a_zone_alone_is_a_place_in_zone_mode_only() {
        assert_eq!(ticket(Seating::Zone, Some("A区"), None).held_place().map(|p| p.label()), Some("A区".into()));
        // Seat mode: a ticket kept to a zone still waits for its seat.
        let zoned = ticket(Seating::Seat, Some("A区"), None);
        assert!(zoned.held_place().is_none() && zoned.can_choose());
        let seated = ticket(Seating::Seat, Some("A区"), Some(("3", "12")));
        assert_eq!(seated.held_place().map(|p| p.label()), Some("A区 3排12座".into()));
        assert!(!seated.needs_place());
        let standing = ticket(Seating::None, None, None);
        assert!(standing.held_place().is_none() && !standing.needs_place());
        let closed = Ticket { choosing_open: false, ..ticket(Seating::Zone, None, None) };
        assert!(closed.needs_place() && !closed.can_choose());
    }
}
