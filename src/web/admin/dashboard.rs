//! The dashboard above the activity list (`/admin`, README "Dashboard"): what
//! is open now, what opens in the next 24 hours, and the notification
//! queue's depth. The activities come from the list's own rows (already kept
//! to an organizer's teams in SQL); the queue is account-wide, so an admin's
//! only, as on the notifications page.

use time::{Duration, OffsetDateTime};

use crate::{
    AppState,
    booking::{activities::Summary, lottery::Mode},
    error::AppError,
    local_time,
    notify::notifications,
};

/// How far ahead "opens soon" looks.
const SOON: Duration = Duration::hours(24);
/// The window the failed-notification count covers, in hours.
const FAILED_HOURS: i32 = 24;

/// One activity on the dashboard.
pub struct Line {
    pub id: i64,
    pub name: String,
    /// `剩余 3 / 100`, or when it opens.
    pub detail: String,
}

/// The notification queue, as the notifications page counts it.
pub struct Queue {
    pub queued: i64,
    pub jobs: i64,
    /// Given up on in the last day.
    pub failed: i64,
}

/// The backups (README "Backups"), as `/healthz` reads them.
pub struct Backups {
    /// When the last good backup finished, in `TIMEZONE`.
    pub last_good: Option<String>,
    /// No good backup for two days while nightly backups are on.
    pub stale: bool,
    /// The newest attempt failed after the last good one: when, and why.
    pub failed: Option<String>,
    /// `04:00`, when nightly backups are on.
    pub nightly_at: Option<String>,
}

pub struct Dashboard {
    pub open_now: Vec<Line>,
    pub opening_soon: Vec<Line>,
    /// `None` for an organizer.
    pub queue: Option<Queue>,
    /// `None` for an organizer.
    pub backups: Option<Backups>,
}

impl Dashboard {
    pub async fn of(
        state: &AppState,
        rows: &[&Summary],
        account_wide: bool,
        now: OffsetDateTime,
    ) -> Result<Dashboard, AppError> {
        let tz = state.config.timezone;
        let published = || rows.iter().map(|s| &s.activity).filter(|a| a.is_published());
        let mut open: Vec<_> = published().filter(|a| a.book_start <= now && now < a.book_end).collect();
        open.sort_by_key(|a| (a.book_end, a.id));
        let open_now = open
            .into_iter()
            .map(|a| Line {
                id: a.id,
                name: a.name.clone(),
                detail: match a.mode {
                    Mode::Lottery => format!("抽签报名中 · {} 个名额", a.capacity),
                    Mode::Rush => format!("剩余 {} / {}", a.remaining, a.capacity),
                },
            })
            .collect();
        let mut soon: Vec<_> = published().filter(|a| now < a.book_start && a.book_start <= now + SOON).collect();
        soon.sort_by_key(|a| (a.book_start, a.id));
        let opening_soon = soon
            .into_iter()
            .map(|a| Line {
                id: a.id,
                name: a.name.clone(),
                detail: format!("{} 开放 · {} 个名额", local_time::full(a.book_start, tz), a.capacity),
            })
            .collect();
        let queue = if account_wide {
            let (queued, jobs) = notifications::depth(state.notifier.background_pool()).await?;
            let failed = notifications::undelivered_since(&state.pool, FAILED_HOURS).await?;
            Some(Queue { queued, jobs, failed })
        } else {
            None
        };
        let backups = if account_wide {
            let mut conn = state.pool.acquire().await?;
            let o = crate::backups::overview(&mut conn, state.config.backup_at, now).await?;
            Some(Backups {
                last_good: o.last_good.map(|b| local_time::full(b.finished_at.unwrap_or(b.started_at), tz)),
                stale: o.stale,
                failed: o.since_good.filter(|b| b.outcome == crate::backups::Outcome::Failed).map(|b| {
                    let at = local_time::full(b.finished_at.unwrap_or(b.started_at), tz);
                    format!("{at}：{}", b.error.unwrap_or_default())
                }),
                nightly_at: o.nightly_at.map(|t| format!("{:02}:{:02}", t.hour(), t.minute())),
            })
        } else {
            None
        };
        Ok(Dashboard { open_now, opening_soon, queue, backups })
    }
}
