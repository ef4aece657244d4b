//! Notifications: telling students what happened (README "Notifications").
//!
//! A change that concerns students inserts `notifications` rows and enqueues
//! one job per row in the change's own transaction, so notices and change
//! commit together or not at all. The job queue is the `underway` crate on
//! this PostgreSQL: workers on every instance take jobs with `FOR UPDATE SKIP
//! LOCKED`, a failed job is retried with backoff, a job survives restarts, and
//! its cron-like scheduler enqueues the reminder sweep. A job sends through
//! [`channels`]; the row's state says what came of it. Nothing is sent from a
//! request handler: handlers only enqueue.

pub mod channels;
pub mod events;
pub mod notifications;

use std::{sync::Arc, time::Duration};

use jiff::ToSpan;
use sqlx::{PgConnection, PgPool, Postgres, Transaction, postgres::PgPoolOptions};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use underway::{
    Queue, Scheduler, Task, Worker, ZonedSchedule,
    task::{Error as TaskError, Result as TaskResult, RetryPolicy},
};

use crate::{Config, error::AppError};
use channels::{Delivered, Transient};
pub use notifications::{Channel, Kind, State};

/// The job queue of single notifications to send.
pub const SEND_QUEUE: &str = "notify-send";
/// The job queue of reminder sweeps (one job per scheduled tick).
pub const REMINDER_QUEUE: &str = "notify-reminders";

/// Attempts at sending one notification before it is marked undelivered. The
/// queue waits 2 s, 6 s, 18 s … (×3, at most an hour) after the job was
/// created, so the last try is about an hour after the first.
pub const MAX_ATTEMPTS: i32 = 9;

/// The workers' own connections: four listeners, the scheduler's lock and its
/// listener, and room for sends running at once.
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
    reminders: Arc<Queue<RemindDue>>,
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
        let reminders = Queue::builder().name(REMINDER_QUEUE).pool(pool.clone()).build().await.map_err(queue_error)?;
        Ok(Notifier {
            ctx: Arc::new(Context { pool, config, secret_key }),
            send: Arc::new(send),
            reminders: Arc::new(reminders),
        })
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

    /// Queued notifications, and jobs waiting or running in the job queue.
    pub async fn depth(&self) -> Result<(i64, i64), AppError> {
        notifications::depth(&self.ctx.pool, &[SEND_QUEUE, REMINDER_QUEUE]).await
    }

    /// Starts this instance's workers: the senders, and the scheduled sweep
    /// (reminders unless `REMINDER_HOURS=0`, and closing waiting lists).
    pub async fn start(&self) -> Result<Workers, AppError> {
        let token = CancellationToken::new();
        let mut running = Vec::new();
        let mut sender = Worker::new(self.send.clone(), self.send_task());
        sender.set_shutdown_token(token.clone());
        sender.set_concurrency_limit(SENDS_AT_ONCE);
        // The poll is the queue's fallback for retries coming due; new jobs wake
        // the worker at once through PostgreSQL's LISTEN/NOTIFY.
        running.push(supervise("notification sender", token.clone(), move || {
            let sender = sender.clone();
            async move { sender.run_every(2.seconds()).await.map_err(|e| e.to_string()) }
        }));
        // The crate's deletion of jobs past their time to live runs until dropped.
        let (pool, deletion_token) = (self.ctx.pool.clone(), token.clone());
        running.push(supervise("job deletion", token.clone(), move || {
            let (pool, token) = (pool.clone(), deletion_token.clone());
            async move {
                tokio::select! {
                    result = underway::queue::run_deletion(&pool) => result.map_err(|e| e.to_string()),
                    _ = token.cancelled() => Ok(()),
                }
            }
        }));
        {
            let seconds = self.ctx.config.reminder_check_seconds;
            let cron = if seconds >= 60 { "0 * * * * *".to_string() } else { format!("*/{seconds} * * * * *") };
            let schedule = ZonedSchedule::new(&cron, "UTC").map_err(queue_error)?;
            let sweep = RemindDue { notifier: self.clone() };
            self.reminders.schedule(&self.ctx.pool, &schedule, &()).await.map_err(queue_error)?;
            let mut sweeper = Worker::new(self.reminders.clone(), sweep.clone());
            sweeper.set_shutdown_token(token.clone());
            running.push(supervise("reminder sweeper", token.clone(), move || {
                let sweeper = sweeper.clone();
                async move { sweeper.run_every(1.minute()).await.map_err(|e| e.to_string()) }
            }));
            // One instance's scheduler holds the schedule's lock; the others'
            // return at once and try again later, so one takes over if it dies.
            let queue = self.reminders.clone();
            let scheduler_token = token.clone();
            running.push(supervise("reminder scheduler", token.clone(), move || {
                let mut scheduler = Scheduler::new(queue.clone(), sweep.clone());
                scheduler.set_shutdown_token(scheduler_token.clone());
                async move { scheduler.run().await.map_err(|e| e.to_string()) }
            }));
        }
        Ok(Workers { token, running })
    }
}

/// Keeps one of the queue's long-running loops going: it returns when it lost
/// its database connection or (a scheduler) found another instance holding
/// the schedule, and is started again after a pause, until shutdown.
fn supervise<F, Fut>(what: &'static str, token: CancellationToken, run: F) -> JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    const PAUSE: Duration = Duration::from_secs(30);
    tokio::spawn(async move {
        while !token.is_cancelled() {
            if let Err(e) = run().await {
                tracing::warn!(what, error = %e, "stopped; starting again shortly");
            }
            tokio::select! {
                _ = token.cancelled() => break,
                _ = tokio::time::sleep(PAUSE) => {}
            }
        }
    })
}

/// This instance's running workers.
pub struct Workers {
    token: CancellationToken,
    running: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Stops taking jobs and waits for the ones in hand to finish.
    pub async fn stop(self) {
        self.token.cancel();
        for handle in self.running {
            let _ = handle.await;
        }
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
        let retry = match outcome {
            Ok(Delivered::Sent(channel)) => {
                notifications::mark_sent(&mut tx, id, attempt, channel).await.map_err(failed)?;
                None
            }
            Ok(Delivered::Undelivered(reason)) => {
                notifications::mark_undelivered(&mut tx, id, attempt, &reason).await.map_err(failed)?;
                None
            }
            Err(Transient(why)) if attempt >= MAX_ATTEMPTS => {
                let reason = format!("试了 {attempt} 次都没有成功，最后一次：{why}");
                notifications::mark_undelivered(&mut tx, id, attempt, &reason).await.map_err(failed)?;
                None
            }
            Err(Transient(why)) => {
                notifications::mark_retrying(&mut tx, id, attempt, &why).await.map_err(failed)?;
                Some(why)
            }
        };
        // The attempt is recorded even when the job is to be retried.
        tx.commit().await?;
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

/// The scheduled job that queues the reminders coming due, runs the lottery
/// draws due, and closes the waiting lists that end (telling who still waited).
#[derive(Clone)]
pub struct RemindDue {
    notifier: Notifier,
}

impl Task for RemindDue {
    type Input = ();
    type Output = ();

    async fn execute(&self, mut tx: Transaction<'_, Postgres>, _: ()) -> TaskResult<()> {
        let config = &self.notifier.ctx.config;
        let failed = |e: AppError| TaskError::Retryable(e.to_string());
        let queued = match config.reminder_hours {
            0 => 0,
            hours => events::remind_due(&mut tx, &self.notifier, hours, config.timezone).await.map_err(failed)?,
        };
        // Draws first: a lottery's losers form its waiting list, which stays open after the close.
        let drawn = crate::booking::lottery::draw_due(&mut tx, &self.notifier).await.map_err(failed)?;
        let closed = crate::booking::waiting::close_ended(&mut tx, &self.notifier).await.map_err(failed)?;
        tx.commit().await?;
        if drawn > 0 {
            tracing::info!(drawn, "lotteries drawn");
        }
        if queued > 0 {
            tracing::info!(queued, "reminders queued");
        }
        if closed > 0 {
            tracing::info!(closed, "waiting lists closed");
        }
        Ok(())
    }

    fn retry_policy(&self) -> RetryPolicy {
        // The next tick sweeps again anyway.
        RetryPolicy::builder().max_attempts(1).build()
    }

    fn timeout(&self) -> jiff::Span {
        2.minutes()
    }

    // A sweep left behind by a scheduler tick is stale after a few minutes.
    fn ttl(&self) -> jiff::Span {
        1.day()
    }
}
