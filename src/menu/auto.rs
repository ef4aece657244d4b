//! The menu that keeps itself current (`MENU_AUTO=on`, issue 24 point 3).
//!
//! No event is hooked: each tick of the clock (`crate::schedule`) composes the
//! menu from the rule — the composer reads the activities, so a publish, a
//! sell-out, a waiting list's close, an archive or a changed rule all show —
//! and compares it with the menu last pushed. A difference claims the one row
//! of `menu_auto_push` and enqueues one push job in the same transaction. The
//! claim succeeds only when the last attempt is older than the debounce
//! (`MENU_AUTO_DEBOUNCE_SECONDS`, 60 s; doubled after each failure in a row, up
//! to 16 times) and no push is in flight, so at most one push a minute goes
//! out however many instances run their clocks, and the push runs on the job
//! queue, never in a student's request. A failed push leaves the row failed,
//! and a later tick claims it again. A change reaches WeChat within a sweep
//! interval (`REMINDER_CHECK_SECONDS`) plus the debounce.

use jiff::ToSpan;
use sqlx::{FromRow, PgPool, Postgres, Transaction};
use time::OffsetDateTime;
use underway::{
    Queue, Task,
    task::{Error as TaskError, Result as TaskResult, RetryPolicy},
};

use super::{compose_for, default_choice, last_pushed, offerable, push, wechat_api};
use crate::{
    Config,
    booking::{Activity, activities},
    error::AppError,
    settings,
    wechat::menu::Menu,
};

/// The job queue of the automatic pushes (one job per claimed change).
pub const PUSH_QUEUE: &str = "menu_pushes";

/// Where the rule is kept: `default`, or the pinned activity ids (empty: none).
const RULE: &str = "menu_rule";
const DEFAULT_RULE: &str = "default";

/// A push still `pending` this long after it was claimed died with its
/// instance (its job's timeout is shorter): the next tick may claim again.
const IN_FLIGHT_AT_MOST: time::Duration = time::Duration::minutes(2);

/// Which activities the automatic menu puts under "抢票".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// The published activities whose booking opens soonest (or is open), at most five.
    Default,
    /// The activities an admin pushed (none: 抢票 sends the list), while any
    /// of them can still be booked; after that, the default again, so a menu
    /// left alone does not empty itself.
    Pinned(Vec<i64>),
}

/// Remembers the rule an admin's push sets: the activities it pinned, or
/// (`None`, as `menu push` without `--activity`) the default.
pub async fn remember_rule(pool: &PgPool, pinned: Option<&[Activity]>) -> Result<(), AppError> {
    let value = match pinned {
        None => DEFAULT_RULE.to_string(),
        Some(chosen) => chosen.iter().map(|a| a.id.to_string()).collect::<Vec<_>>().join(","),
    };
    settings::set(pool, RULE, &value).await
}

pub async fn rule(pool: &PgPool) -> Result<Rule, AppError> {
    Ok(match settings::get(pool, RULE).await? {
        None => Rule::Default,
        Some(value) if value == DEFAULT_RULE => Rule::Default,
        Some(value) => Rule::Pinned(value.split(',').filter_map(|id| id.parse().ok()).collect()),
    })
}

/// The activities the rule puts under "抢票" now.
pub async fn choice(pool: &PgPool) -> Result<Vec<Activity>, AppError> {
    let mut conn = pool.acquire().await?;
    let ids = match rule(pool).await? {
        Rule::Default => return default_choice(&mut conn).await,
        Rule::Pinned(ids) if ids.is_empty() => return Ok(Vec::new()),
        Rule::Pinned(ids) => ids,
    };
    let now = OffsetDateTime::now_utc();
    let mut chosen = Vec::new();
    for id in ids {
        if let Some(activity) = activities::by_id(&mut conn, id).await?.filter(|a| offerable(a, now)) {
            chosen.push(activity);
        }
    }
    if chosen.is_empty() {
        return default_choice(&mut conn).await;
    }
    chosen.truncate(super::MAX_ACTIVITIES);
    Ok(chosen)
}

/// The menu the rule composes now.
pub async fn wanted(pool: &PgPool, config: &Config) -> Result<Menu, AppError> {
    compose_for(config, &choice(pool).await?)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum Outcome {
    /// Claimed; its job has not finished.
    Pending,
    Pushed,
    Failed,
}

/// The automatic push in flight or last made, for the menu page.
#[derive(Debug, Clone, FromRow)]
pub struct LastPush {
    pub attempted_at: OffsetDateTime,
    pub outcome: Outcome,
    /// The last failure's words (kept while a retry is in flight).
    pub error: Option<String>,
    pub failures: i32,
    pub finished_at: Option<OffsetDateTime>,
}

impl LastPush {
    /// The earliest time another push may be claimed.
    pub fn next_at(&self, debounce_seconds: u32) -> OffsetDateTime {
        self.attempted_at + wait(debounce_seconds, self.failures)
    }
}

/// The debounce, doubled for each failure in a row after the first, at most 16 times.
fn wait(debounce_seconds: u32, failures: i32) -> time::Duration {
    let doublings = (failures.clamp(1, 5) - 1) as u32;
    time::Duration::seconds(i64::from(debounce_seconds) << doublings)
}

pub async fn last_push(pool: &PgPool) -> Result<Option<LastPush>, AppError> {
    Ok(sqlx::query_as("SELECT attempted_at, outcome, error, failures, finished_at FROM menu_auto_push")
        .fetch_optional(pool)
        .await?)
}

/// One tick's look at the menu: enqueues a push when the composed menu is not
/// the one last pushed and the claim (module docs) succeeds. Returns whether
/// a push was enqueued.
pub async fn refresh(pool: &PgPool, config: &Config, queue: &Queue<PushMenu>) -> Result<bool, AppError> {
    let wanted = wanted(pool, config).await?;
    if last_pushed(pool).await?.as_ref() == Some(&wanted) {
        return Ok(false);
    }
    let json = serde_json::to_string(&wanted).map_err(|e| AppError::Internal(e.to_string()))?;
    let mut tx = pool.begin().await?;
    let claimed: Option<bool> = sqlx::query_scalar(
        "INSERT INTO menu_auto_push (menu, attempted_at, outcome) VALUES ($1, now(), 'pending') \
         ON CONFLICT (id) DO UPDATE SET menu = $1, attempted_at = now(), outcome = 'pending', finished_at = NULL \
         WHERE menu_auto_push.attempted_at + make_interval(secs => $2 \
                   * power(2, greatest(least(menu_auto_push.failures, 5) - 1, 0))) <= now() \
           AND (menu_auto_push.outcome <> 'pending' OR menu_auto_push.attempted_at <= now() - make_interval(secs => $3)) \
         RETURNING true",
    )
    .bind(&json)
    .bind(f64::from(config.menu_auto_debounce_seconds))
    .bind(IN_FLIGHT_AT_MOST.as_seconds_f64())
    .fetch_optional(&mut *tx)
    .await?;
    if claimed.is_none() {
        return Ok(false);
    }
    let task = PushMenu { pool: pool.clone(), config: config.clone() };
    queue.enqueue(&mut *tx, &task, &json).await.map_err(|e| AppError::Internal(format!("menu push queue: {e}")))?;
    tx.commit().await?;
    Ok(true)
}

/// Records how the push of `json` went, unless a later claim replaced it.
async fn record(pool: &PgPool, json: &str, result: &Result<(), AppError>) -> Result<(), AppError> {
    let (outcome, error) = match result {
        Ok(()) => (Outcome::Pushed, None),
        Err(e) => (Outcome::Failed, Some(e.to_string())),
    };
    sqlx::query(
        "UPDATE menu_auto_push SET outcome = $2, error = $3, finished_at = now(), \
         failures = CASE WHEN $2 = 'pushed' THEN 0 ELSE failures + 1 END \
         WHERE menu = $1 AND outcome = 'pending'",
    )
    .bind(json)
    .bind(outcome)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}

/// The job that pushes one composed menu (its input is the menu's JSON).
#[derive(Clone)]
pub struct PushMenu {
    pool: PgPool,
    config: Config,
}

impl PushMenu {
    pub fn new(pool: PgPool, config: Config) -> PushMenu {
        PushMenu { pool, config }
    }
}

impl Task for PushMenu {
    type Input = String;
    type Output = ();

    async fn execute(&self, tx: Transaction<'_, Postgres>, json: String) -> TaskResult<()> {
        // The push keeps its own row; the queue's transaction carries nothing.
        tx.commit().await?;
        let menu: Menu = serde_json::from_str(&json).map_err(|e| TaskError::Fatal(e.to_string()))?;
        let pushed = match wechat_api(&self.config, self.pool.clone()) {
            Ok(api) => push(&api, &self.pool, &menu).await,
            Err(e) => Err(e.into()),
        };
        if let Err(e) = &pushed {
            tracing::warn!(error = %e, "automatic menu push failed; the clock tries again");
        }
        record(&self.pool, &json, &pushed).await.map_err(|e| TaskError::Retryable(e.to_string()))
    }

    fn retry_policy(&self) -> RetryPolicy {
        // A failure is retried by a later tick's claim, which also picks up a newer menu.
        RetryPolicy::builder().max_attempts(1).build()
    }

    fn timeout(&self) -> jiff::Span {
        1.minute()
    }

    fn ttl(&self) -> jiff::Span {
        1.day()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_after_each_failure_in_a_row_up_to_sixteen_times() {
        let waits: Vec<i64> = (0..8).map(|failures| wait(60, failures).whole_seconds()).collect();
        assert_eq!(waits, [60, 60, 120, 240, 480, 960, 960, 960]);
    }
}
