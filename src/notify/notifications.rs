//! The `notifications` table: one row per event and recipient, its state, and
//! what the admin page and `notify status` read.

use serde_json::{Map, Value};
use sqlx::{FromRow, PgConnection, PgPool};
use time::OffsetDateTime;

use crate::error::AppError;

/// What a notification is about; each kind may have its own template message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum Kind {
    /// An activity's time or place changed, or it was archived before it ended.
    ActivityChanged,
    /// The activity starts in `REMINDER_HOURS`.
    Reminder,
    /// Sent from the console to a test student.
    Test,
    /// A place came free and the head of the waiting list got the ticket.
    WaitingPromoted,
    /// The waiting list closed at `book_end` with the student still in it.
    WaitingClosed,
    /// The lottery's draw gave the student a ticket.
    LotteryWon,
    /// The draw did not: the student is on the waiting list, at a position.
    LotteryLost,
    /// The seat deadline passed and the student was given a place.
    PlaceAssigned,
    /// The organizer's word to every ticket holder (`holder_messages`).
    HolderMessage,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::ActivityChanged => "活动变更",
            Kind::Reminder => "开始提醒",
            Kind::Test => "测试消息",
            Kind::WaitingPromoted => "候补成功",
            Kind::WaitingClosed => "候补结束",
            Kind::LotteryWon => "中签",
            Kind::LotteryLost => "未中签",
            Kind::PlaceAssigned => "座位分配",
            Kind::HolderMessage => "主办方消息",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum State {
    Queued,
    Sent,
    Undelivered,
}

impl State {
    pub fn label(self) -> &'static str {
        match self {
            State::Queued => "排队中",
            State::Sent => "已发送",
            State::Undelivered => "未送达",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum Channel {
    /// A customer-service message (`message/custom/send`), within the 48 h window.
    CustomerService,
    /// A template message (`message/template/send`).
    Template,
    /// A test student's chat in the admin simulator.
    Simulator,
}

impl Channel {
    /// As the operator's counts (`/metrics`) name it.
    pub fn name(self) -> &'static str {
        match self {
            Channel::CustomerService => "customer_service",
            Channel::Template => "template",
            Channel::Simulator => "simulator",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Channel::CustomerService => "客服消息",
            Channel::Template => "模板消息",
            Channel::Simulator => "模拟器",
        }
    }
}

/// A notification to insert: `key` names the event and the recipient.
pub struct NewNotification {
    pub key: String,
    pub kind: Kind,
    pub student_id: Option<String>,
    pub openid: Option<String>,
    pub activity_id: Option<i64>,
    pub ticket_id: Option<i64>,
    pub body: String,
    pub template_data: Map<String, Value>,
}

/// Inserts the notifications whose key is new and returns their ids: an event
/// enqueued twice (two instances' sweeps, a retried edit) adds nothing.
pub async fn insert_new(conn: &mut PgConnection, new: &[NewNotification]) -> Result<Vec<i64>, AppError> {
    if new.is_empty() {
        return Ok(Vec::new());
    }
    let column = |f: fn(&NewNotification) -> Option<String>| new.iter().map(f).collect::<Vec<_>>();
    let keys = column(|n| Some(n.key.clone()));
    let student_ids = column(|n| n.student_id.clone());
    let openids = column(|n| n.openid.clone());
    let bodies = column(|n| Some(n.body.clone()));
    let kinds: Vec<Kind> = new.iter().map(|n| n.kind).collect();
    let activity_ids: Vec<Option<i64>> = new.iter().map(|n| n.activity_id).collect();
    let ticket_ids: Vec<Option<i64>> = new.iter().map(|n| n.ticket_id).collect();
    let data: Vec<Value> = new.iter().map(|n| Value::Object(n.template_data.clone())).collect();
    Ok(sqlx::query_scalar(
        "INSERT INTO notifications (idempotency_key, kind, student_id, openid, activity_id, ticket_id, body, template_data) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::text[], $8::jsonb[]) \
         ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
    )
    .bind(keys)
    .bind(kinds)
    .bind(student_ids)
    .bind(openids)
    .bind(activity_ids)
    .bind(ticket_ids)
    .bind(bodies)
    .bind(data)
    .fetch_all(conn)
    .await?)
}

/// A queued notification with what sending it needs, locked by the worker
/// sending it so nothing else changes its state meanwhile.
#[derive(Debug, FromRow)]
pub struct Pending {
    pub id: i64,
    pub kind: Kind,
    pub body: String,
    pub template_data: sqlx::types::Json<Map<String, Value>>,
    pub attempts: i32,
    /// Whoever holds the student ID now (or the test student it was addressed to).
    pub openid: Option<String>,
    pub student_id: Option<String>,
    pub last_interaction_at: Option<OffsetDateTime>,
    pub ticket_code: Option<String>,
    /// The ticket was cancelled after the notice was queued.
    pub ticket_cancelled: bool,
}

/// The notification `id` if it is still queued (a sent or undelivered one is
/// never sent again), locked until the caller's transaction ends.
pub async fn lock_queued(conn: &mut PgConnection, id: i64) -> Result<Option<Pending>, AppError> {
    Ok(sqlx::query_as(
        "SELECT n.id, n.kind, n.body, n.template_data, n.attempts, coalesce(n.openid, s.openid) AS openid, \
             coalesce(n.student_id, s.student_id) AS student_id, s.last_interaction_at, t.code AS ticket_code, \
             coalesce(t.status = 'cancelled', false) AS ticket_cancelled \
         FROM notifications n \
         LEFT JOIN students s ON CASE WHEN n.openid IS NOT NULL THEN s.openid = n.openid ELSE s.student_id = n.student_id END \
         LEFT JOIN tickets t ON t.id = n.ticket_id \
         WHERE n.id = $1 AND n.state = 'queued' FOR UPDATE OF n",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

pub async fn mark_sent(conn: &mut PgConnection, id: i64, attempts: i32, channel: Channel) -> Result<(), AppError> {
    sqlx::query(
        "UPDATE notifications SET state = 'sent', channel = $2, attempts = $3, reason = NULL, updated_at = now() \
         WHERE id = $1",
    )
    .bind(id)
    .bind(channel)
    .bind(attempts)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn mark_undelivered(conn: &mut PgConnection, id: i64, attempts: i32, reason: &str) -> Result<(), AppError> {
    sqlx::query(
        "UPDATE notifications SET state = 'undelivered', attempts = $2, reason = $3, updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(attempts)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(())
}

/// Still queued: the queue will try again after its backoff.
pub async fn mark_retrying(conn: &mut PgConnection, id: i64, attempts: i32, reason: &str) -> Result<(), AppError> {
    sqlx::query("UPDATE notifications SET attempts = $2, reason = $3, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(attempts)
        .bind(reason)
        .execute(conn)
        .await?;
    Ok(())
}

/// One line of the admin page and of `notify status`.
#[derive(Debug, Clone, FromRow)]
pub struct Recent {
    pub id: i64,
    pub kind: Kind,
    /// The student ID, or the test student's openid when it has none.
    pub recipient: String,
    pub channel: Option<Channel>,
    pub state: State,
    pub reason: Option<String>,
    pub attempts: i32,
    pub updated_at: OffsetDateTime,
}

impl Recent {
    /// `已发送`, `排队中（上次：…）` or `未送达：原因`.
    pub fn state_text(&self) -> String {
        match (self.state, &self.reason) {
            (State::Undelivered, Some(reason)) => format!("{}：{reason}", self.state.label()),
            (State::Queued, Some(reason)) => format!("{}（第 {} 次失败：{reason}）", self.state.label(), self.attempts),
            (state, _) => state.label().to_string(),
        }
    }
}

/// The newest notifications. `teams`: None, every one (an admin, the shell);
/// Some, only those about these teams' activities (an organizer) — filtered
/// here, in the query, so no caller can forget it. Test messages are about no
/// activity, so an organizer never sees them.
pub async fn recent(pool: &PgPool, limit: i64, teams: Option<&[i64]>) -> Result<Vec<Recent>, AppError> {
    Ok(sqlx::query_as(
        "SELECT id, kind, coalesce(student_id, openid) AS recipient, channel, state, reason, attempts, updated_at \
         FROM notifications \
         WHERE $2::bigint[] IS NULL OR activity_id IN (SELECT a.id FROM activities a WHERE a.team_id = ANY($2)) \
         ORDER BY created_at DESC, id DESC LIMIT $1",
    )
    .bind(limit)
    .bind(teams)
    .fetch_all(pool)
    .await?)
}

/// How many notifications wait to be sent, and how many jobs wait in the job
/// queue or are being run (sends, and the clock's sweeps).
pub async fn depth(pool: &PgPool) -> Result<(i64, i64), AppError> {
    Ok(sqlx::query_as(
        "SELECT (SELECT count(*) FROM notifications WHERE state = 'queued'), \
             (SELECT count(*) FROM underway.task WHERE state IN ('pending', 'in_progress'))",
    )
    .fetch_one(pool)
    .await?)
}

/// The queue as `/metrics` shows it: notifications not yet sent (a first
/// try still to come, or a retry after a failed one), and the job queue's
/// waiting jobs per queue (sends, the clock's sweeps).
pub struct QueueDepths {
    pub queued: i64,
    pub retrying: i64,
    pub jobs: Vec<(String, i64)>,
}

pub async fn queue_depths(pool: &PgPool) -> Result<QueueDepths, AppError> {
    let (queued, retrying): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE attempts = 0), count(*) FILTER (WHERE attempts > 0) \
         FROM notifications WHERE state = 'queued'",
    )
    .fetch_one(pool)
    .await?;
    let jobs = sqlx::query_as(
        "SELECT q.name, count(t.id) FROM underway.task_queue q \
         LEFT JOIN underway.task t ON t.task_queue_name = q.name AND t.state = 'pending' \
         GROUP BY q.name ORDER BY q.name",
    )
    .fetch_all(pool)
    .await?;
    Ok(QueueDepths { queued, retrying, jobs })
}

/// How many notifications were given up on (undelivered) in the last `hours`.
pub async fn undelivered_since(pool: &PgPool, hours: i32) -> Result<i64, AppError> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM notifications WHERE state = 'undelivered' AND updated_at > now() - make_interval(hours => $1)",
    )
    .bind(hours)
    .fetch_one(pool)
    .await?)
}

/// How long the record of a notification is kept: long enough to answer "did
/// I get told?" about any recent activity.
pub const KEEP_DAYS: i32 = 90;

/// Forgets old finished notifications. (The job queue's finished jobs go by
/// the crate's own deletion, which the workers run.)
pub async fn forget_old(conn: &mut PgConnection) -> Result<u64, AppError> {
    Ok(sqlx::query(
        "DELETE FROM notifications WHERE state <> 'queued' AND updated_at < now() - make_interval(days => $1)",
    )
    .bind(KEEP_DAYS)
    .execute(conn)
    .await?
    .rows_affected())
}
