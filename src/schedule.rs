//! The clock: every piece of scheduled work, and when it runs. Each sweep
//! calls the module whose rules it applies — reminders are `notify`'s, the
//! lottery draws and the closing of waiting lists are `booking`'s (recording
//! what happened into the `notify` outbox) — and housekeeping asks each
//! feature to forget what it no longer needs. New scheduled work (seats
//! assigned at a deadline, nightly backups, the menu's refresh) is added here.
//!
//! The sweep is a job on the `underway` queue in PostgreSQL: its cron-like
//! scheduler runs on every instance, but only the one holding the schedule's
//! lock enqueues a tick, and each tick's job is taken by one worker, so each
//! sweep runs once per tick across any number of instances. The rules it runs
//! are themselves safe to run twice (a draw locks its lottery and does nothing
//! once drawn; a reminder's key is its ticket's).
//!
//! With `MENU_AUTO=on`, each tick also looks at the custom menu after the
//! sweep's transaction (`menu::auto::refresh`): a changed menu is claimed
//! once and pushed by a job on a queue of its own, so WeChat being slow never
//! holds up a sweep, and a failure there never rolls one back.
//!
//! The nightly backup (`BACKUP_AT`) is a job on a queue of its own, so a long
//! `pg_dump` never holds up the sweeps: the same scheduler lock and one job
//! a night, and the backup claims its night in its log before writing
//! (`backups::nightly`), so it is taken once however many instances run.

use jiff::ToSpan;
use sqlx::{PgPool, Postgres, Transaction};
use tokio_util::sync::CancellationToken;
use underway::{
    Queue, Scheduler, Task, Worker, ZonedSchedule,
    task::{Error as TaskError, Result as TaskResult, RetryPolicy},
};

use crate::{
    Config,
    background::{Workers, supervise},
    backups::{self, nightly},
    booking,
    error::AppError,
    menu::auto::{self as menu_auto, PushMenu},
    notify::{Notifier, notices},
};

/// The job queue of the clock's sweeps (one job per scheduled tick).
pub const SWEEP_QUEUE: &str = "sweeps";

/// The job queue of the nightly backups (one job a night).
pub const BACKUP_QUEUE: &str = "backups";

/// How often each instance does its housekeeping.
const HOUSEKEEPING_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

fn queue_error(e: impl std::fmt::Display) -> AppError {
    AppError::Internal(format!("sweep queue: {e}"))
}

/// Starts this instance's clock: the sweep's scheduler and worker (every
/// `REMINDER_CHECK_SECONDS`, also when `REMINDER_HOURS=0`) and housekeeping.
pub async fn start(notifier: &Notifier) -> Result<Workers, AppError> {
    let pool = notifier.background_pool().clone();
    let token = CancellationToken::new();
    let mut workers = Workers::new(token.clone());
    let queue = Queue::builder().name(SWEEP_QUEUE).pool(pool.clone()).build().await.map_err(queue_error)?;
    let queue = std::sync::Arc::new(queue);
    let seconds = notifier.config().reminder_check_seconds;
    let cron = if seconds >= 60 { "0 * * * * *".to_string() } else { format!("*/{seconds} * * * * *") };
    let schedule = ZonedSchedule::new(&cron, "UTC").map_err(queue_error)?;
    let menu_pushes = start_menu_pushes(&pool, notifier.config(), &token, &mut workers).await?;
    let sweep = Sweep { notifier: notifier.clone(), menu_pushes };
    queue.schedule(&pool, &schedule, &()).await.map_err(queue_error)?;
    let mut sweeper = Worker::new(queue.clone(), sweep.clone());
    sweeper.set_shutdown_token(token.clone());
    workers.push(supervise("sweeper", token.clone(), move || {
        let sweeper = sweeper.clone();
        async move { sweeper.run_every(1.minute()).await.map_err(|e| e.to_string()) }
    }));
    // One instance's scheduler holds the schedule's lock; the others' return
    // at once and try again later, so one takes over if it dies.
    let scheduler_token = token.clone();
    workers.push(supervise("sweep scheduler", token.clone(), move || {
        let mut scheduler = Scheduler::new(queue.clone(), sweep.clone());
        scheduler.set_shutdown_token(scheduler_token.clone());
        async move { scheduler.run().await.map_err(|e| e.to_string()) }
    }));
    start_nightly_backups(&pool, notifier.config(), &token, &mut workers).await?;
    let housekeeping_token = token.clone();
    workers.push(supervise("housekeeping", token, move || {
        let (pool, token) = (pool.clone(), housekeeping_token.clone());
        async move {
            tokio::select! {
                _ = housekeeping(pool) => Ok(()),
                _ = token.cancelled() => Ok(()),
            }
        }
    }));
    Ok(workers)
}

/// The scheduled sweep: queues the reminders coming due, runs the lottery
/// draws due, closes the waiting lists that end, and places the tickets still
/// without a seat after their seat deadline — in one transaction; then, with
/// `MENU_AUTO=on`, refreshes the menu.
#[derive(Clone)]
pub struct Sweep {
    notifier: Notifier,
    menu_pushes: Option<std::sync::Arc<Queue<PushMenu>>>,
}

impl Task for Sweep {
    type Input = ();
    type Output = ();

    async fn execute(&self, mut tx: Transaction<'_, Postgres>, _: ()) -> TaskResult<()> {
        let config = self.notifier.config();
        let failed = |e: AppError| TaskError::Retryable(e.to_string());
        let queued = match config.reminder_hours {
            0 => 0,
            hours => notices::remind_due(&mut tx, &self.notifier, hours, config.timezone).await.map_err(failed)?,
        };
        // Draws first: a lottery's losers form its waiting list, which stays open after the close.
        let drawn = booking::lottery::draw_due(&mut tx, &self.notifier).await.map_err(failed)?;
        let closed = booking::waiting::close_ended(&mut tx, &self.notifier).await.map_err(failed)?;
        // After the lists: a ticket promoted at the close is placed in the same tick.
        let placed = booking::seats::assign_due(&mut tx, &self.notifier).await.map_err(failed)?;
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
        if placed > 0 {
            tracing::info!(placed, "places assigned at the seat deadline");
        }
        if let Some(queue) = &self.menu_pushes {
            // After the commit: the menu reads what this tick changed (a closed list leaves it).
            match menu_auto::refresh(self.notifier.background_pool(), config, queue).await {
                Ok(true) => tracing::info!("changed menu queued for pushing"),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "menu refresh failed; the next tick tries again"),
            }
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

/// The automatic menu's push queue and worker, when `MENU_AUTO=on`.
async fn start_menu_pushes(
    pool: &PgPool,
    config: &Config,
    token: &CancellationToken,
    workers: &mut Workers,
) -> Result<Option<std::sync::Arc<Queue<PushMenu>>>, AppError> {
    if !config.menu_auto {
        return Ok(None);
    }
    let queue = Queue::builder().name(menu_auto::PUSH_QUEUE).pool(pool.clone()).build().await.map_err(queue_error)?;
    let queue = std::sync::Arc::new(queue);
    let mut worker = Worker::new(queue.clone(), PushMenu::new(pool.clone(), config.clone()));
    worker.set_shutdown_token(token.clone());
    // New jobs wake the worker through LISTEN/NOTIFY; the poll is a fallback.
    workers.push(supervise("menu push worker", token.clone(), move || {
        let worker = worker.clone();
        async move { worker.run_every(5.seconds()).await.map_err(|e| e.to_string()) }
    }));
    Ok(Some(queue))
}

/// The nightly backup's scheduler and worker, when `BACKUP_AT` is set.
async fn start_nightly_backups(
    pool: &PgPool,
    config: &Config,
    token: &CancellationToken,
    workers: &mut Workers,
) -> Result<(), AppError> {
    let Some(at) = config.backup_at else { return Ok(()) };
    let queue = Queue::builder().name(BACKUP_QUEUE).pool(pool.clone()).build().await.map_err(queue_error)?;
    let queue = std::sync::Arc::new(queue);
    queue.schedule(pool, &nightly_schedule(at, config.timezone)?, &()).await.map_err(queue_error)?;
    nightly::watching();
    let task = NightlyBackup { pool: pool.clone(), config: config.clone() };
    let mut worker = Worker::new(queue.clone(), task.clone());
    worker.set_shutdown_token(token.clone());
    workers.push(supervise("backup worker", token.clone(), move || {
        let worker = worker.clone();
        async move { worker.run_every(1.minute()).await.map_err(|e| e.to_string()) }
    }));
    let scheduler_token = token.clone();
    workers.push(supervise("backup scheduler", token.clone(), move || {
        let mut scheduler = Scheduler::new(queue.clone(), task.clone());
        scheduler.set_shutdown_token(scheduler_token.clone());
        async move { scheduler.run().await.map_err(|e| e.to_string()) }
    }));
    Ok(())
}

/// `BACKUP_AT` every day in `TIMEZONE`. The scheduler reads zones from the
/// system's zoneinfo; without it (a bare container) the time is fixed at
/// today's UTC offset, which is exact for a zone without daylight saving.
fn nightly_schedule(at: time::Time, tz: &'static time_tz::Tz) -> Result<ZonedSchedule, AppError> {
    use time_tz::{Offset, TimeZone};
    let cron = |at: time::Time| format!("{} {} {} * * *", at.second(), at.minute(), at.hour());
    if let Ok(schedule) = ZonedSchedule::new(&cron(at), tz.name()) {
        return Ok(schedule);
    }
    let offset = tz.get_offset_utc(&time::OffsetDateTime::now_utc()).to_utc();
    let utc = at - time::Duration::seconds(offset.whole_seconds().into());
    tracing::warn!(timezone = tz.name(), "no zoneinfo for TIMEZONE; nightly backups scheduled at today's UTC offset");
    ZonedSchedule::new(&cron(utc), "UTC").map_err(queue_error)
}

/// The nightly backup (`backups::nightly`): a failure is recorded in the
/// backups' log and tried again a few times in the same night.
#[derive(Clone)]
pub struct NightlyBackup {
    pool: PgPool,
    config: Config,
}

impl Task for NightlyBackup {
    type Input = ();
    type Output = ();

    async fn execute(&self, tx: Transaction<'_, Postgres>, _: ()) -> TaskResult<()> {
        // The backup keeps its own log; the queue's transaction carries nothing.
        tx.commit().await?;
        let now = time::OffsetDateTime::now_utc();
        match nightly::run(&self.pool, &self.config, now).await {
            Ok(nightly::Night::Taken { file, bytes }) => {
                tracing::info!(file = %file.display(), bytes, "nightly backup written")
            }
            Ok(nightly::Night::AlreadyTaken) => tracing::debug!("tonight's backup is another run's"),
            Err(e) => {
                tracing::error!(error = %e, "nightly backup failed");
                return Err(TaskError::Retryable(e.to_string()));
            }
        }
        Ok(())
    }

    fn retry_policy(&self) -> RetryPolicy {
        // 5, then 10 minutes later: past a restart of the database, well inside the night.
        RetryPolicy::builder().max_attempts(3).initial_interval_ms(300_000).max_interval_ms(1_800_000).build()
    }

    fn timeout(&self) -> jiff::Span {
        // Past the backup's own time limit, which records the failure first.
        (backups::archive::TIMEOUT.as_secs() as i64 + 600).seconds()
    }

    // A night's backup not started within hours is no longer that night's.
    fn ttl(&self) -> jiff::Span {
        6.hours()
    }
}

/// Forgets what is no longer needed, every ten minutes (see `tidy`). Any
/// number of instances may run it; the deletes are idempotent.
async fn housekeeping(pool: PgPool) {
    let mut every = tokio::time::interval(HOUSEKEEPING_EVERY);
    loop {
        every.tick().await;
        match tidy(&pool).await {
            Ok(forgotten) => tracing::debug!(forgotten, "housekeeping"),
            Err(e) => tracing::warn!(error = %e, "housekeeping failed"),
        }
    }
}

/// One round of housekeeping over every table that grows: de-duplication
/// records older than WeChat's retries and signed queries older than the
/// freshness window, expired admin sessions, failed logins too old to count,
/// spent bind links past their expiry, posters no activity uses, old
/// simulator chats. Returns how many rows went.
pub async fn tidy(pool: &PgPool) -> Result<u64, AppError> {
    let mut conn = pool.acquire().await?;
    let mut forgotten = crate::web::wechat::records::forget_old(&mut conn).await?;
    forgotten += crate::auth::sessions::forget_expired(&mut conn).await?;
    forgotten += crate::auth::throttle::forget_old(&mut conn).await?;
    forgotten += booking::students::forget_expired_bind_links(&mut conn).await?;
    forgotten += booking::images::forget_unused(&mut conn).await?;
    forgotten += crate::identity::forget_old(&mut conn).await?;
    forgotten += booking::checkin::forget_old_scans(&mut conn).await?;
    forgotten += crate::transcripts::forget_old(&mut conn).await?;
    forgotten += crate::notify::notifications::forget_old(&mut conn).await?;
    Ok(forgotten)
}
