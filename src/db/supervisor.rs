//! Keeps the managed PostgreSQL running while `serve` runs: when the server
//! dies (a crash, an OOM kill, `kill -9`), it is started again the way it was
//! started first, and PostgreSQL recovers from its log on that start. While it
//! is down the app says so at once instead of waiting for connections that
//! cannot come: `/wechat` answers busy (not recorded, so WeChat's retry gets a
//! real answer) and `/healthz` says since when and how many starts were tried.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use sqlx::{Connection, PgPool};
use time::OffsetDateTime;
use time_tz::{OffsetDateTimeExt, Tz};
use tokio::sync::{oneshot, watch};

use super::local::{LocalCluster, RunningCluster, Started};

/// How often the postmaster is looked at: a file read and two system calls.
const CHECK_EVERY: Duration = Duration::from_millis(250);
/// Between failed starts; an old backend that still holds the shared memory
/// (it exits when it notices its postmaster gone) makes the first tries fail.
const FIRST_PAUSE: Duration = Duration::from_millis(200);
const LONGEST_PAUSE: Duration = Duration::from_secs(5);
/// A connection that cannot answer this fast after the restart is not kept.
const PING_WITHIN: Duration = Duration::from_millis(500);

/// Whether the database is there, as the supervisor last saw it. Without a
/// supervisor (`DATABASE_URL`) it always says up and the pool tells the truth.
#[derive(Clone, Debug)]
pub struct DatabaseHealth(Arc<watch::Sender<Status>>);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Up,
    /// Gone since `since`; `attempt` is the start being tried (1 for the first).
    Down {
        since: OffsetDateTime,
        attempt: u32,
    },
}

impl Status {
    pub fn is_down(&self) -> bool {
        matches!(self, Status::Down { .. })
    }
}

impl Default for DatabaseHealth {
    fn default() -> Self {
        DatabaseHealth(Arc::new(watch::Sender::new(Status::Up)))
    }
}

impl DatabaseHealth {
    pub fn status(&self) -> Status {
        *self.0.borrow()
    }

    /// Resolves once the database is known to be down: at once if it is.
    pub async fn went_down(&self) {
        let mut seen = self.0.subscribe();
        // The sender lives as long as `self`, so this only returns on a change.
        let _ = seen.wait_for(Status::is_down).await;
    }

    /// The sentence `/healthz` answers while the database is down, times in `tz`.
    pub fn outage(&self, tz: &Tz) -> Option<String> {
        match self.status() {
            Status::Up => None,
            Status::Down { since, attempt } => {
                let at = since.to_timezone(tz);
                Some(format!(
                    "database down since {:02}:{:02}:{:02}, restarting (attempt {attempt})",
                    at.hour(),
                    at.minute(),
                    at.second()
                ))
            }
        }
    }

    fn set(&self, status: Status) {
        self.0.send_replace(status);
    }
}

/// The running watch; [`Supervisor::stop`] it before stopping the cluster, or
/// it would start the server again.
pub struct Supervisor {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

/// Starts watching the cluster `serve` uses; `health` is what the handlers read.
pub fn spawn(cluster: &RunningCluster, pool: PgPool, health: DatabaseHealth) -> Supervisor {
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(watch(cluster.cluster().clone(), pool, health, stopped));
    Supervisor { stop, task }
}

impl Supervisor {
    /// Returns once the watch has ended; a start under way is finished first.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

async fn watch(cluster: LocalCluster, pool: PgPool, health: DatabaseHealth, mut stopped: oneshot::Receiver<()>) {
    let mut every = tokio::time::interval(CHECK_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            _ = every.tick() => {}
        }
        // Small enough to do on the runtime: one short file and /proc read.
        if cluster.is_running() {
            continue;
        }
        let gone = Instant::now();
        tracing::warn!(pid = cluster.postmaster_pid(), "the local PostgreSQL is gone; starting it again");
        let since = OffsetDateTime::now_utc();
        let mut pause = FIRST_PAUSE;
        for attempt in 1.. {
            health.set(Status::Down { since, attempt });
            let starting = cluster.clone();
            match tokio::task::spawn_blocking(move || starting.ensure_running()).await {
                Ok(Ok(started)) => {
                    forget_dead_connections(&pool).await;
                    let by = if started == Started::Now { "this process" } else { "another process" };
                    tracing::warn!(
                        down_ms = gone.elapsed().as_millis() as u64,
                        attempt,
                        started_by = by,
                        "the local PostgreSQL is back"
                    );
                    health.set(Status::Up);
                    if started == Started::Now {
                        crate::meters::database_restarted();
                    }
                    break;
                }
                Ok(Err(e)) => tracing::warn!(attempt, error = %e, "could not start the local PostgreSQL"),
                Err(e) => tracing::warn!(attempt, error = %e, "the start of the local PostgreSQL failed"),
            }
            tokio::select! {
                _ = &mut stopped => return,
                _ = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(LONGEST_PAUSE);
        }
    }
}

/// Connections opened before the crash lead nowhere, and the pool hands out
/// an idle one without a check: each would fail one request after the
/// restart. The idle ones are taken out together, so none is looked at twice.
async fn forget_dead_connections(pool: &PgPool) {
    let mut taken = Vec::new();
    for _ in 0..pool.num_idle() {
        let Some(mut conn) = pool.try_acquire() else { break };
        if !matches!(tokio::time::timeout(PING_WITHIN, conn.ping()).await, Ok(Ok(()))) {
            conn.close_on_drop();
        }
        taken.push(conn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_told_in_local_time_with_its_attempt() {
        let health = DatabaseHealth::default();
        let tz = time_tz::timezones::db::asia::SHANGHAI;
        assert_eq!(health.outage(tz), None);
        health.set(Status::Down { since: time::macros::datetime!(2026-12-01 09:53:07 UTC), attempt: 3 });
        assert_eq!(health.outage(tz).as_deref(), Some("database down since 17:53:07, restarting (attempt 3)"));
        health.set(Status::Up);
        assert_eq!(health.outage(tz), None);
    }

    #[tokio::test]
    async fn went_down_waits_for_an_outage_and_not_longer() {
        let health = DatabaseHealth::default();
        let wait = Duration::from_millis(50);
        assert!(tokio::time::timeout(wait, health.went_down()).await.is_err(), "up: keeps waiting");
        let waiting = tokio::spawn({
            let health = health.clone();
            async move { health.went_down().await }
        });
        health.set(Status::Down { since: OffsetDateTime::now_utc(), attempt: 1 });
        tokio::time::timeout(Duration::from_secs(1), waiting).await.expect("woken by the outage").unwrap();
        assert!(tokio::time::timeout(wait, health.went_down()).await.is_ok(), "down already: at once");
    }
}
