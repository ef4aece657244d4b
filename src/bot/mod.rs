//! The handler layer: what a WeChat message means, the booking call it makes,
//! and the reply. Adding a command is a row in `commands` and an arm here.

pub mod commands;
mod outcomes;
pub mod replies;
pub mod reply_size;

use sqlx::PgConnection;

use crate::booking::TicketStatus;
use time::OffsetDateTime;

use crate::{
    AppState,
    booking::{
        activities,
        lottery::{self, EntryOutcome, WithdrawOutcome},
        seats::Seating,
        students,
        tickets::{self, ActivityRef, BookOutcome, CancelOutcome, Ticket, TicketRef},
        waiting::{self, JoinOutcome, LeaveOutcome},
    },
    error::AppError,
    links::{self, Purpose},
    local_time,
    notify::announcements,
    wechat::{
        message::Message,
        reply::{Article, Reply},
    },
};
use commands::Command;

/// At most this many activities or tickets in one list reply, fewer if they
/// would not fit in WeChat's 2,048 bytes.
const LIST_LIMIT: usize = 6;

/// A message's answer, and what it was for the operator's counts: the
/// command and its outcome (`booked`, `sold_out`, `not_bound`, …).
pub struct Handled {
    pub reply: Reply,
    pub command: &'static str,
    pub outcome: &'static str,
}

/// The message's command as the operator's counts name it.
pub fn command_name(msg: &Message) -> &'static str {
    commands::parse(msg).name()
}

/// Answers one message, using `conn` (the caller's transaction) for every read and write.
pub async fn handle(state: &AppState, conn: &mut PgConnection, msg: &Message) -> Result<Handled, AppError> {
    let command = commands::parse(msg);
    let name = command.name();
    let mut outcome = outcomes::ANSWERED;
    let reply = fitted(answer(state, conn, msg, command, &mut outcome).await?);
    Ok(Handled { reply, command: name, outcome })
}

/// A text reply cut to what WeChat shows (`reply_size`).
fn fitted(reply: Reply) -> Reply {
    match reply {
        Reply::Text(text) => Reply::Text(reply_size::cut(text)),
        other => other,
    }
}

async fn answer(
    state: &AppState,
    conn: &mut PgConnection,
    msg: &Message,
    command: Command,
    outcome: &mut &'static str,
) -> Result<Reply, AppError> {
    let openid = msg.from_user.as_str();
    let text = |s: String| Ok(Reply::Text(s));
    let not_bound = |outcome: &mut &'static str| {
        *outcome = outcomes::NOT_BOUND;
        text(replies::not_bound(&bind_url(state, openid)))
    };
    match command {
        Command::Help => text(replies::HELP.into()),
        Command::Unknown => text(replies::UNKNOWN.into()),
        Command::Silent => Ok(Reply::Success),
        // In the message's transaction, so a retry of the event that loses
        // the race for the reply records nothing either.
        Command::MassSendFinished(result) => {
            announcements::record_finished(conn, &result).await?;
            Ok(Reply::Success)
        }
        Command::Welcome => text(replies::welcome(&bind_url(state, openid))),
        Command::Bind => match students::bound(conn, openid).await? {
            Some(student) => text(replies::already_bound(&student.student_id)),
            None => text(replies::bind_link(&bind_url(state, openid))),
        },
        Command::Unbind => match students::unbind(conn, openid).await? {
            Some(student) => text(replies::unbound(&student.student_id)),
            None => text(replies::NOT_BOUND_TO_UNBIND.into()),
        },
        Command::ListActivities => list_activities(state, conn).await,
        Command::Book(None) => text(replies::BOOK_NEEDS_KEY.into()),
        // The booking's own read finds the student too: one statement fewer in a rush.
        Command::Book(Some(activity)) => book(state, conn, activity, openid, outcome).await,
        Command::MyTickets(key) => {
            let Some(student) = students::bound(conn, openid).await? else {
                return not_bound(outcome);
            };
            my_tickets(state, conn, openid, &student.student_id, key).await
        }
        Command::Wait(None) => text(replies::WAIT_NEEDS_KEY.into()),
        Command::Wait(Some(activity)) => {
            let tz = state.config.timezone;
            let joined = waiting::join(conn, &activity, openid, state.config.no_show.as_ref()).await?;
            *outcome = outcomes::waiting(&joined);
            text(match joined {
                JoinOutcome::Joined { activity_name, position } => replies::waiting_joined(&activity_name, position),
                JoinOutcome::AlreadyWaiting { activity_name, position } => {
                    replies::already_waiting(&activity_name, position)
                }
                JoinOutcome::HoldsTicket => replies::WAIT_HOLDS_TICKET.into(),
                JoinOutcome::NotSoldOut { key } => replies::waiting_not_sold_out(&key),
                JoinOutcome::NotOpenYet { opens_at } => replies::waiting_not_open(&local_time::short(opens_at, tz)),
                JoinOutcome::Closed => replies::WAIT_CLOSED.into(),
                JoinOutcome::NoSuchActivity => match activity {
                    ActivityRef::Key(key) => replies::no_such_activity(&key),
                    ActivityRef::Id(_) => replies::NO_SUCH_MENU_ACTIVITY.into(),
                },
                JoinOutcome::NotBound => replies::not_bound(&bind_url(state, openid)),
                JoinOutcome::Paused { until } => replies::paused(&local_time::short(until, tz)),
                JoinOutcome::Lottery { key } => replies::waiting_lottery(&key),
            })
        }
        Command::LeaveWaiting(None) => text(replies::LEAVE_NEEDS_KEY.into()),
        Command::LeaveWaiting(Some(key)) => {
            let Some(student) = students::bound(conn, openid).await? else {
                return not_bound(outcome);
            };
            text(match waiting::leave(conn, &key, &student.student_id, openid).await? {
                LeaveOutcome::Left { activity_name } => replies::waiting_left(&activity_name),
                LeaveOutcome::NotWaiting => replies::NOT_WAITING.into(),
                LeaveOutcome::NoSuchActivity => replies::no_such_activity(&key),
            })
        }
        Command::Withdraw(None) => text(replies::WITHDRAW_NEEDS_KEY.into()),
        Command::Withdraw(Some(key)) => {
            let Some(student) = students::bound(conn, openid).await? else {
                return not_bound(outcome);
            };
            text(match lottery::withdraw(conn, &key, &student.student_id, openid).await? {
                WithdrawOutcome::Withdrawn { activity_name } => replies::lottery_withdrawn(&activity_name),
                WithdrawOutcome::NotEntered => replies::NOT_ENTERED.into(),
                WithdrawOutcome::Closed => replies::LOTTERY_CLOSED.into(),
                WithdrawOutcome::NoSuchActivity => replies::no_such_activity(&key),
            })
        }
        Command::ChooseSeat(key) => {
            let Some(student) = students::bound(conn, openid).await? else {
                return not_bound(outcome);
            };
            choose_seat(state, conn, openid, &student.student_id, key).await
        }
        Command::Cancel(None) => text(replies::CANCEL_NEEDS_KEY.into()),
        Command::Cancel(Some(key)) => {
            let Some(student) = students::bound(conn, openid).await? else {
                return not_bound(outcome);
            };
            let which = TicketRef::StudentAndKey { student_id: &student.student_id, key: &key };
            let cancelled = tickets::cancel(conn, &state.notifier, which).await?;
            *outcome = outcomes::cancel(&cancelled);
            Ok(Reply::Text(match cancelled {
                CancelOutcome::Cancelled(ticket) => replies::cancelled(&ticket.activity_name),
                CancelOutcome::NoSuchActivity => replies::no_such_activity(&key),
                CancelOutcome::NothingToCancel => replies::NOTHING_TO_CANCEL.into(),
                CancelOutcome::TooLate(ticket) if ticket.status == TicketStatus::Used => replies::ALREADY_USED.into(),
                CancelOutcome::TooLate(_) => replies::STARTED.into(),
            }))
        }
    }
}

async fn book(
    state: &AppState,
    conn: &mut PgConnection,
    activity: ActivityRef,
    openid: &str,
    counted: &mut &'static str,
) -> Result<Reply, AppError> {
    let outcome = tickets::book(conn, &activity, openid, state.config.no_show.as_ref()).await?;
    *counted = outcomes::book(&outcome);
    Ok(book_reply(state, &activity, openid, outcome))
}

/// The name the operator's counts give a booking message (`Command::name`).
pub const BOOKING: &str = "book";

/// The booking a message asks for (`抢票 key` or a menu's 抢票 button), if
/// that is what it is: such messages are answered many at once (`handle_bookings`).
pub fn booking_of(msg: &Message) -> Option<ActivityRef> {
    match commands::parse(msg) {
        Command::Book(Some(activity)) => Some(activity),
        _ => None,
    }
}

/// Answers many booking messages at once, in the caller's transaction: the
/// booking rules book them together (`tickets::book_many`), and each gets the
/// reply it would have got alone. A member's `Err` is `AppError::Busy` (its
/// places stayed held); the outer `Err` fails them all.
pub async fn handle_bookings(
    state: &AppState,
    conn: &mut PgConnection,
    bookings: &[(&Message, ActivityRef)],
) -> Result<Bookings, AppError> {
    let requests: Vec<tickets::BookRequest> = bookings
        .iter()
        .map(|(msg, activity)| tickets::BookRequest { activity, openid: msg.from_user.as_str() })
        .collect();
    let booked = tickets::book_many(conn, &requests, state.config.no_show.as_ref()).await?;
    let changed = booked.iter().any(|outcome| outcome.as_ref().is_ok_and(BookOutcome::changed));
    let handled = bookings
        .iter()
        .zip(booked)
        .map(|((msg, activity), outcome)| {
            let outcome = outcome?;
            let counted = outcomes::book(&outcome);
            let reply = fitted(book_reply(state, activity, &msg.from_user, outcome));
            Ok(Handled { reply, command: BOOKING, outcome: counted })
        })
        .collect();
    Ok(Bookings { handled, changed })
}

/// Many bookings' answers, in their order, and whether any of them wrote
/// something that must survive a crash (a refusal changes nothing).
pub struct Bookings {
    pub handled: Vec<Result<Handled, AppError>>,
    pub changed: bool,
}

/// The reply to a booking's outcome.
fn book_reply(state: &AppState, activity: &ActivityRef, openid: &str, outcome: BookOutcome) -> Reply {
    let tz = state.config.timezone;
    state.refusals.note(activity, &outcome); // the rush chart's refusals (booking/refusals.rs)
    match outcome {
        BookOutcome::Booked(ticket) => {
            ticket_article(state, openid, &ticket, replies::booked_title(&ticket.activity_name))
        }
        BookOutcome::AlreadyHolds(ticket) => {
            Reply::Text(replies::already_holds(&ticket_url(state, openid, &ticket.code)))
        }
        BookOutcome::NoSuchActivity => Reply::Text(match activity {
            ActivityRef::Key(key) => replies::no_such_activity(key),
            ActivityRef::Id(_) => replies::NO_SUCH_MENU_ACTIVITY.into(),
        }),
        BookOutcome::NotOpenYet { opens_at } => Reply::Text(replies::not_open_yet(&local_time::short(opens_at, tz))),
        BookOutcome::Closed => Reply::Text(replies::CLOSED.into()),
        BookOutcome::Paused { until } => Reply::Text(replies::paused(&local_time::short(until, tz))),
        BookOutcome::SoldOut { key } => Reply::Text(replies::sold_out(&key)),
        BookOutcome::NotBound => Reply::Text(replies::not_bound(&bind_url(state, openid))),
        BookOutcome::Lottery(entry) => Reply::Text(match entry {
            EntryOutcome::Entered { activity_name, key, eid, secret, close_at } => {
                replies::lottery_entered(&activity_name, &key, &local_time::short(close_at, tz), &eid, &secret)
            }
            EntryOutcome::AlreadyEntered { activity_name, eid, secret, close_at } => {
                replies::lottery_already_entered(&activity_name, &local_time::short(close_at, tz), &eid, &secret)
            }
            EntryOutcome::Closed => replies::LOTTERY_CLOSED.into(),
            EntryOutcome::RealStudentsOnly { activity_name } => replies::lottery_real_students_only(&activity_name),
        }),
    }
}

async fn list_activities(state: &AppState, conn: &mut PgConnection) -> Result<Reply, AppError> {
    let tz = state.config.timezone;
    let list = activities::bookable(conn).await?;
    if list.is_empty() {
        return Ok(Reply::Text(replies::NO_ACTIVITIES.into()));
    }
    let total =
        if list.len() < activities::BOOKABLE_AT_MOST { list.len() } else { activities::bookable_count(conn).await? };
    let now = OffsetDateTime::now_utc();
    let mut items = Vec::new();
    for a in list.iter().take(LIST_LIMIT) {
        let state_line = if a.mode == lottery::Mode::Lottery {
            let when = if now < a.book_start {
                local_time::short(a.book_start, tz) + " 开始报名，"
            } else {
                String::new()
            };
            format!(
                "抽签：{when}{} 个名额，{} 截止报名，发送「报名 {}」",
                a.capacity,
                local_time::short(a.book_end, tz),
                a.key
            )
        } else if now < a.book_start {
            format!("{} 开抢", local_time::short(a.book_start, tz))
        } else if a.remaining == 0 {
            "已抢完".to_string()
        } else {
            format!("剩余 {} 张，{} 截止", a.remaining, local_time::short(a.book_end, tz))
        };
        let url = format!("{}/activities/{}", state.config.public_url, a.id);
        items.push(format!("\n【{}】代号 {}\n{}\n{}\n", a.name, a.key, state_line, replies::link(&url, "查看详情")));
    }
    let not_listed = total - items.len();
    let footer = |left_out| replies::activities_footer(left_out + not_listed);
    Ok(Reply::Text(reply_size::list("可以抢票的活动：\n", &items, footer)))
}

async fn my_tickets(
    state: &AppState,
    conn: &mut PgConnection,
    openid: &str,
    student_id: &str,
    key: Option<String>,
) -> Result<Reply, AppError> {
    let tz = state.config.timezone;
    if let Some(key) = key {
        return Ok(match tickets::live_for_student_and_key(conn, student_id, &key).await? {
            Some(ticket) => ticket_article(state, openid, &ticket, format!("我的票：{}", ticket.activity_name)),
            None => Reply::Text(replies::no_ticket_for(&key)),
        });
    }
    let list = tickets::live_for_student(conn, student_id).await?;
    let queued = waiting::positions(conn, student_id).await?;
    let entered = lottery::undrawn_entries(conn, student_id).await?;
    if list.is_empty() && queued.is_empty() && entered.is_empty() {
        return Ok(Reply::Text(replies::NO_TICKETS.into()));
    }
    // Places in line and draws to come first: they are what changes while the student waits.
    let mut items: Vec<String> =
        queued.iter().map(|w| replies::waiting_position(&w.activity_name, &w.activity_key, w.position)).collect();
    items.extend(
        entered
            .iter()
            .map(|e| replies::lottery_entry(&e.activity_name, &e.activity_key, &local_time::short(e.book_end, tz))),
    );
    let shown_queued = items.len();
    for t in list.iter().take(LIST_LIMIT.saturating_sub(shown_queued)) {
        let seat = match (t.held_place(), t.needs_place()) {
            (Some(place), _) => format!("· {}\n", place.label()),
            (None, true) => format!("{}\n", replies::unplaced(&t.activity_key, t.choosing_open)),
            (None, false) => String::new(),
        };
        items.push(format!(
            "\n【{}】{}\n{} · {}\n{seat}{}\n",
            t.activity_name,
            t.status.label(),
            local_time::short(t.start_at, tz),
            t.place,
            replies::link(&ticket_url(state, openid, &t.code), "查看电子票")
        ));
    }
    let all = my_tickets_url(state, openid);
    let not_listed = list.len() + shown_queued - items.len();
    let footer = |left_out| replies::tickets_footer(left_out + not_listed, &all);
    Ok(Reply::Text(reply_size::list("你的票：\n", &items, footer)))
}

/// `选座`: the chooser link for the student's ticket of `key` (signed for
/// them, as the ticket page's holder link is), or why there is nothing to
/// choose. Without a key, the one ticket waiting for its place, or which keys.
async fn choose_seat(
    state: &AppState,
    conn: &mut PgConnection,
    openid: &str,
    student_id: &str,
    key: Option<String>,
) -> Result<Reply, AppError> {
    let tz = state.config.timezone;
    let ticket = match key {
        Some(key) => match tickets::live_for_student_and_key(conn, student_id, &key).await? {
            Some(ticket) => ticket,
            None => return Ok(Reply::Text(replies::no_ticket_for(&key))),
        },
        None => {
            let mut waiting: Vec<Ticket> =
                tickets::live_for_student(conn, student_id).await?.into_iter().filter(Ticket::can_choose).collect();
            match waiting.len() {
                0 => return Ok(Reply::Text(replies::NOTHING_TO_CHOOSE.into())),
                1 => waiting.remove(0),
                _ => {
                    let keys: Vec<(&str, &str)> =
                        waiting.iter().map(|t| (t.activity_key.as_str(), t.activity_name.as_str())).collect();
                    return Ok(Reply::Text(replies::choose_which(&keys)));
                }
            }
        }
    };
    if ticket.seating == Seating::None {
        return Ok(Reply::Text(replies::CHOOSE_NOT_SEATED.into()));
    }
    let term = replies::place_term(ticket.seating);
    Ok(Reply::Text(match ticket.held_place() {
        Some(place) => replies::your_place(term, &place.label(), &ticket_url(state, openid, &ticket.code)),
        None if ticket.status != TicketStatus::Valid => replies::CHOOSE_USED.into(),
        None if !ticket.choosing_open => replies::choosing_closed(&local_time::short(ticket.seat_deadline, tz)),
        None => {
            return Ok(Reply::News(Article {
                title: replies::choose_title(&ticket.activity_name),
                description: replies::choose_description(&local_time::short(ticket.seat_deadline, tz)),
                pic_url: ticket.poster_id.map(|id| format!("{}/images/{id}", state.config.public_url)),
                url: seat_url(state, openid, &ticket.code),
            }));
        }
    }))
}

/// The line a ticket's card gives its place: held, to choose, or to be assigned.
fn seat_line(state: &AppState, ticket: &Ticket) -> Option<String> {
    if let Some(place) = ticket.held_place() {
        return Some(replies::placed(replies::place_term(ticket.seating), &place.label()));
    }
    if !ticket.needs_place() {
        return None;
    }
    Some(if ticket.choosing_open {
        replies::choose_before(&ticket.activity_key, &local_time::short(ticket.seat_deadline, state.config.timezone))
    } else {
        replies::PLACE_BY_SYSTEM.into()
    })
}

fn ticket_article(state: &AppState, openid: &str, ticket: &Ticket, title: String) -> Reply {
    let tz = state.config.timezone;
    Reply::News(Article {
        title,
        description: replies::booked_description(
            &local_time::short(ticket.start_at, tz),
            &ticket.place,
            seat_line(state, ticket).as_deref(),
            state.config.no_show.is_some(),
        ),
        pic_url: ticket.poster_id.map(|id| format!("{}/images/{id}", state.config.public_url)),
        url: ticket_url(state, openid, &ticket.code),
    })
}

/// A ticket page link for the student `openid`: the page shows the ticket to
/// anyone with the code, and the cancel button only to a link signed for its holder.
pub fn ticket_url(state: &AppState, openid: &str, code: &str) -> String {
    let query = signed_query(state, Purpose::Ticket, openid, code);
    format!("{}{}", state.config.public_url, links::ticket_path(code, &query))
}

/// The seat chooser for the student `openid`: the ticket page's holder link
/// with `/seat` after the code, signed the same way (the chooser checks it as
/// the ticket page does, so the code alone chooses nothing).
pub fn seat_url(state: &AppState, openid: &str, code: &str) -> String {
    let query = signed_query(state, Purpose::Ticket, openid, code);
    format!("{}/tickets/{code}/seat?{query}", state.config.public_url)
}

fn signed_query(state: &AppState, purpose: Purpose, openid: &str, subject: &str) -> String {
    let expires = OffsetDateTime::now_utc().unix_timestamp() + purpose.lifetime();
    links::sign(&state.secret_key, purpose, openid, subject, expires)
}

/// A bind link binds once: each carries its own nonce, recorded when it is used.
pub fn bind_url(state: &AppState, openid: &str) -> String {
    let nonce = links::nonce();
    let query = signed_query(state, Purpose::Bind, openid, &nonce);
    format!("{}/bind?{query}&n={nonce}", state.config.public_url)
}

pub fn my_tickets_url(state: &AppState, openid: &str) -> String {
    format!("{}/my/tickets?{}", state.config.public_url, signed_query(state, Purpose::MyTickets, openid, ""))
}
