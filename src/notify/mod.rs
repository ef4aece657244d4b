//! Notifications: telling students what happened (README "Notifications").
//!
//! The rules record what happened as facts (`booking::outbox::Event`); the
//! [`Notifier`] is their outbox: it words each fact as notices ([`notices`]),
//! inserts `notifications` rows and enqueues one job per row in the change's
//! own transaction, so notices and change commit together or not at all. The
//! job queue is the `underway` crate on this PostgreSQL: workers on every
//! instance take jobs with `FOR UPDATE SKIP LOCKED`, a failed job is retried
//! with backoff, and a job survives restarts. A job sends through
//! [`channels`]; the row's state says what came of it. Nothing is sent from a
//! request handler: handlers only enqueue. When things happen (reminders, the
//! draws, closing lists) is the clock's business (`crate::schedule`).

pub mod announcements;
pub mod channels;
pub mod holder_messages;
pub mod notices;
pub mod notifications;

use std::{sync::Arc, time::Duration};

use jiff::ToSpan;
use sqlx::{PgConnection, PgPool, Postgres, Transaction, postgres::PgPoolOptions};
use tokio_util::sync::CancellationToken;
use underway::{
    Queue, Task, Worker,
    task::{Error as TaskError, Result as TaskResult, RetryPolicy},
};

use crate::{
    Config,
    background::{Workers, supervise},
    booking::outbox::{Event, Outbox},
    error::AppError,
};
use channels::{Delivered, Transient};
pub use notifications::{Channel, Kind, QueueDepths, State, queue_depths};

/// The job queue of single notifications to send.
pub const SEND_QUEUE: &str = "notify-send";

/// Attempts at sending one notification before it is marked undelivered. The
/// queue waits 2 s, 6 s, 18 s … (×3, at most an hour) after the job was
/// created, so the last try is about an hour after the first.
pub const MAX_ATTEMPTS: i32 = 9;

/// The background connections (the senders' and the clock's): four
/// listeners, the scheduler's lock and its listener, and room for sends
/// running at once.
const WORKER_CONNECTIONS: u32 = 12;
/// Notifications one instance sends at once.
const SENDS_AT_ONCE: usize = 4;

/// What the workers need: the pool, the settings, the link-signing key.
pub struct Context {
    pub pool: PgPool,
    pub config: Config,
    pub secret_key: Vec<u8>,
}

/// Enqueues notifications and runs the workers. Cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    ctx: Arc<Context>,
    send: Arc<Queue<SendNotification>>,
}

fn queue_error(e: impl std::fmt::Display) -> AppError {
    AppError::Internal(format!("notification queue: {e}"))
}

impl Notifier {
    /// Needs the queue's own migrations (run by `db::migrate`). `pool` is the
    /// app's; the workers get their own small pool on the same database,
    /// because the queue's listeners and the scheduler's lock each hold a
    /// connection for good, and a ticket rush needs every one of the app's.
    pub async fn new(pool: PgPool, config: Config, secret_key: Vec<u8>) -> Result<Notifier, AppError> {
        let pool = PgPoolOptions::new()
            .max_connections(WORKER_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(10))
            .connect_lazy_with(pool.connect_options().as_ref().clone());
        let send = Queue::builder().name(SEND_QUEUE).pool(pool.clone()).build().await.map_err(queue_error)?;
        Ok(Notifier { ctx: Arc::new(Context { pool, config, secret_key }), send: Arc::new(send) })
    }

    pub fn timezone(&self) -> &'static time_tz::Tz {
        self.ctx.config.timezone
    }

    /// Where this server's pages are, for links in a notice's text.
    pub fn public_url(&self) -> &str {
        &self.ctx.config.public_url
    }

    fn send_task(&self) -> SendNotification {
        SendNotification { ctx: self.ctx.clone() }
    }

    /// Inserts the notices whose key is new and enqueues a send job for each,
    /// on `conn` (the caller's transaction). Returns how many were new.
    pub async fn enqueue(
        &self,
        conn: &mut PgConnection,
        notices: &[notifications::NewNotification],
    ) -> Result<usize, AppError> {
        let ids = notifications::insert_new(conn, notices).await?;
        if !ids.is_empty() {
            self.send.enqueue_multi(&mut *conn, &self.send_task(), &ids).await.map_err(queue_error)?;
        }
        Ok(ids.len())
    }

    /// Starts this instance's senders (and the queue's deletion of old jobs).
    /// The scheduled sweeps are the clock's (`crate::schedule`).
    pub async fn start(&self) -> Result<Workers, AppError> {
        let token = CancellationToken::new();
        let mut workers = Workers::new(token.clone());
        let mut sender = Worker::new(self.send.clone(), self.send_task());
        sender.set_shutdown_token(token.clone());
        sender.set_concurrency_limit(SENDS_AT_ONCE);
        // The poll is the queue's fallback for retries coming due; new jobs wake
        // the worker at once through PostgreSQL's LISTEN/NOTIFY.
        workers.push(supervise("notification sender", token.clone(), move || {
            let sender = sender.clone();
            async move { sender.run_every(2.seconds()).await.map_err(|e| e.to_string()) }
        }));
        // The crate's deletion of jobs past their time to live runs until dropped.
        let (pool, deletion_token) = (self.ctx.pool.clone(), token.clone());
        workers.push(supervise("job deletion", token.clone(), move || {
            let (pool, token) = (pool.clone(), deletion_token.clone());
            async move {
                tokio::select! {
                    result = underway::queue::run_deletion(&pool) => result.map_err(|e| e.to_string()),
                    _ = token.cancelled() => Ok(()),
                }
            }
        }));
        Ok(workers)
    }

    /// The background pool the senders use, for other background work of
    /// this instance (the clock's sweeps) to share.
    pub fn background_pool(&self) -> &PgPool {
        &self.ctx.pool
    }

    pub fn config(&self) -> &Config {
        &self.ctx.config
    }
}

/// The rules' facts become notices here, in the transaction that recorded them.
impl Outbox for Notifier {
    async fn record(&self, conn: &mut PgConnection, event: Event) -> Result<(), AppError> {
        let tz = self.timezone();
        match event {
            Event::ActivityChanged { before, after } => {
                notices::activity_changed(conn, self, &before, &after, tz).await?
            }
            Event::ActivityArchived { before } => notices::activity_archived(conn, self, &before, tz).await?,
            Event::WaitingPromoted(promoted) => {
                // Counted as recorded: the change and this fact commit together, and
                // only a WeChat retry racing its own first delivery ever rolls one back.
                crate::meters::promoted(promoted.len());
                notices::waiting_promoted(conn, self, &promoted).await?
            }
            Event::WaitingClosed(dropped) => notices::waiting_closed(conn, self, &dropped).await?,
            Event::LotteryDrawn { activity_id, won, queued } => {
                notices::lottery_drawn(conn, self, activity_id, &won, &queued).await?
            }
            Event::PlacesAssigned { activity_id, placed } => {
                notices::places_assigned(conn, self, activity_id, &placed).await?
            }
        };
        Ok(())
    }
}

/// The job that sends one notification (its input is the row's id).
#[derive(Clone)]
pub struct SendNotification {
    ctx: Arc<Context>,
}

impl Task for SendNotification {
    type Input = i64;
    type Output = ();

    async fn execute(&self, mut tx: Transaction<'_, Postgres>, id: i64) -> TaskResult<()> {
        let failed = |e: AppError| TaskError::Retryable(e.to_string());
        let Some(pending) = notifications::lock_queued(&mut tx, id).await.map_err(failed)? else {
            // Sent or given up already: a job never sends twice.
            return Ok(());
        };
        let attempt = pending.attempts + 1;
        let outcome = channels::deliver(&self.ctx, &mut tx, &pending).await;
        let (retry, counted) = match outcome {
            Ok(Delivered::Sent(channel)) => {
                notifications::mark_sent(&mut tx, id, attempt, channel).await.map_err(failed)?;
                (None, ("sent", channel.name()))
            }
            Ok(Delivered::Undelivered(reason)) => {
                notifications::mark_undelivered(&mut tx, id, attempt, &reason).await.map_err(failed)?;
                (None, ("undelivered", "none"))
            }
            Err(Transient(why)) if attempt >= MAX_ATTEMPTS => {
                let reason = format!("试了 {attempt} 次都没有成功，最后一次：{why}");
                notifications::mark_undelivered(&mut tx, id, attempt, &reason).await.map_err(failed)?;
                (None, ("undelivered", "none"))
            }
            Err(Transient(why)) => {
                notifications::mark_retrying(&mut tx, id, attempt, &why).await.map_err(failed)?;
                (Some(why), ("retrying", "none"))
            }
        };
        // The attempt is recorded even when the job is to be retried.
        tx.commit().await?;
        crate::meters::notification(counted.0, counted.1);
        match retry {
            Some(why) => Err(TaskError::Retryable(why)),
            None => Ok(()),
        }
    }

    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy::builder()
            .max_attempts(MAX_ATTEMPTS)
            .initial_interval_ms(2_000)
            .backoff_coefficient(3.0)
            .max_interval_ms(3_600_000)
            .build()
    }

    fn timeout(&self) -> jiff::Span {
        2.minutes()
    }
}
