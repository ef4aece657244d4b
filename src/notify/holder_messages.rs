//! A word from the organizer to every ticket holder ("the concert moves to
//! the small hall"): one notification per recipient through the queue
//! (customer-service message inside WeChat's window, else the change template
//! with the text in its note field, else recorded as undelivered), keyed by
//! the message and the ticket (or waiting-list entry), so no retry and no
//! second instance sends one twice. A few per activity per day, so the
//! account's followers are not spammed and WeChat does not block it.

use serde_json::{Map, Value};
use sqlx::{FromRow, PgConnection};
use time::{Duration, OffsetDateTime};
use time_tz::Tz;

use super::{
    Notifier,
    channels::field,
    notifications::{Kind, NewNotification},
};
use crate::{booking::Activity, error::AppError, local_time};

/// At most this many messages per activity in any 24 hours.
pub const PER_DAY: i64 = 3;
/// A message is read in a chat bubble: short, as WeChat's own limits suggest.
pub const MAX_CHARS: usize = 300;

/// What became of a message.
#[derive(Debug)]
pub enum Sent {
    /// Queued for `recipients` students (also when the same form was posted again: the first).
    Queued {
        id: i64,
        recipients: usize,
    },
    /// [`PER_DAY`] were sent in the last 24 hours; the next may go at this time.
    TooMany {
        next_at: OffsetDateTime,
    },
    Empty,
    TooLong,
}

/// Queues `text` for every holder of a live ticket of `activity` (and those
/// waiting, with `include_waiting`), in the caller's transaction. `nonce` is
/// the form's: the same nonce again is the same message, sent once.
pub async fn send(
    conn: &mut PgConnection,
    notifier: &Notifier,
    activity: &Activity,
    text: &str,
    include_waiting: bool,
    sent_by: &str,
    nonce: &str,
) -> Result<Sent, AppError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Sent::Empty);
    }
    if text.chars().count() > MAX_CHARS {
        return Ok(Sent::TooLong);
    }
    // One sender at a time per activity, so two instances cannot both pass the limit.
    sqlx::query("SELECT 1 FROM activities WHERE id = $1 FOR UPDATE").bind(activity.id).execute(&mut *conn).await?;
    let again: Option<(i64, i32)> =
        sqlx::query_as("SELECT id, recipients FROM holder_messages WHERE activity_id = $1 AND nonce = $2")
            .bind(activity.id)
            .bind(nonce)
            .fetch_optional(&mut *conn)
            .await?;
    if let Some((id, recipients)) = again {
        return Ok(Sent::Queued { id, recipients: recipients as usize });
    }
    let recent: Vec<OffsetDateTime> = sqlx::query_scalar(
        "SELECT created_at FROM holder_messages WHERE activity_id = $1 AND created_at > now() - interval '24 hours' \
         ORDER BY created_at",
    )
    .bind(activity.id)
    .fetch_all(&mut *conn)
    .await?;
    if recent.len() as i64 >= PER_DAY {
        return Ok(Sent::TooMany { next_at: recent[0] + Duration::hours(24) });
    }
    let recipients = recipients(conn, activity.id, include_waiting).await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO holder_messages (activity_id, body, include_waiting, recipients, sent_by, nonce) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(activity.id)
    .bind(text)
    .bind(include_waiting)
    .bind(recipients.len() as i32)
    .bind(sent_by)
    .bind(nonce)
    .fetch_one(&mut *conn)
    .await?;
    let body = format!("【{}】{}", activity.name, text);
    let tz = notifier.timezone();
    let data = template_data(activity, text, tz);
    let notices: Vec<NewNotification> = recipients
        .iter()
        .map(|r| NewNotification {
            key: format!("message-{id}:{}", r.key),
            kind: Kind::HolderMessage,
            student_id: Some(r.student_id.clone()),
            openid: None,
            activity_id: Some(activity.id),
            ticket_id: r.ticket_id,
            body: body.clone(),
            template_data: data.clone(),
        })
        .collect();
    notifier.enqueue(conn, &notices).await?;
    Ok(Sent::Queued { id, recipients: recipients.len() })
}

fn template_data(activity: &Activity, text: &str, tz: &Tz) -> Map<String, Value> {
    let start = local_time::full(activity.start_at, tz);
    [
        ("thing1", activity.name.as_str()),
        ("time2", start.as_str()),
        ("thing3", activity.place.as_str()),
        ("thing4", text),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), Value::String(field(value))))
    .collect()
}

#[derive(FromRow)]
struct Recipient {
    key: String,
    student_id: String,
    ticket_id: Option<i64>,
}

/// Live tickets' holders (a guest without a student ID has no WeChat to
/// reach), then, if asked, those still waiting who hold no ticket.
async fn recipients(conn: &mut PgConnection, activity_id: i64, waiting: bool) -> Result<Vec<Recipient>, AppError> {
    Ok(sqlx::query_as(
        "SELECT 'ticket-' || id AS key, student_id, id AS ticket_id FROM tickets \
         WHERE activity_id = $1 AND status <> 'cancelled' AND student_id NOT LIKE 'guest:%' \
         UNION ALL \
         SELECT 'waiting-' || id, student_id, NULL FROM waiting_list \
         WHERE $2 AND activity_id = $1 AND state = 'waiting' ORDER BY 1",
    )
    .bind(activity_id)
    .bind(waiting)
    .fetch_all(conn)
    .await?)
}

/// A message as the activity page shows it, with how its sending goes.
#[derive(Debug, FromRow)]
pub struct Progress {
    pub id: i64,
    pub body: String,
    pub include_waiting: bool,
    pub recipients: i32,
    pub sent_by: String,
    pub created_at: OffsetDateTime,
    pub queued: i64,
    pub customer_service: i64,
    pub template: i64,
    pub simulator: i64,
    pub undelivered: i64,
}

/// The activity's messages, newest first, with their notifications counted by state and channel.
pub async fn progress(conn: &mut PgConnection, activity_id: i64) -> Result<Vec<Progress>, AppError> {
    Ok(sqlx::query_as(
        "SELECT m.id, m.body, m.include_waiting, m.recipients, m.sent_by, m.created_at, \
             count(n.id) FILTER (WHERE n.state = 'queued') AS queued, \
             count(n.id) FILTER (WHERE n.channel = 'customer_service') AS customer_service, \
             count(n.id) FILTER (WHERE n.channel = 'template') AS template, \
             count(n.id) FILTER (WHERE n.channel = 'simulator') AS simulator, \
             count(n.id) FILTER (WHERE n.state = 'undelivered') AS undelivered \
         FROM holder_messages m \
         LEFT JOIN notifications n ON n.activity_id = m.activity_id AND n.kind = 'holder_message' \
             AND n.idempotency_key LIKE 'message-' || m.id || ':%' \
         WHERE m.activity_id = $1 GROUP BY m.id ORDER BY m.created_at DESC, m.id DESC",
    )
    .bind(activity_id)
    .fetch_all(conn)
    .await?)
}

/// The messages a ticket's page shows under the ticket: the activity's, newest first.
pub async fn for_ticket_page(
    conn: &mut PgConnection,
    activity_id: i64,
) -> Result<Vec<(OffsetDateTime, String)>, AppError> {
    Ok(sqlx::query_as(
        "SELECT created_at, body FROM holder_messages WHERE activity_id = $1 ORDER BY created_at DESC, id DESC",
    )
    .bind(activity_id)
    .fetch_all(conn)
    .await?)
}
