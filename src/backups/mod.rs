//! Backups that restore (README "Backups"): `wechat-ticket backup` and
//! `restore`, the nightly backup the clock takes (`schedule.rs` runs
//! [`nightly::run`]), and the log of every attempt that `/healthz` and the
//! admin dashboard read. The archive is PostgreSQL's own (`archive.rs`).

pub mod archive;
pub mod nightly;
pub mod restore;

use std::path::Path;

use sqlx::{FromRow, PgConnection};
use time::{Duration, OffsetDateTime};
use time_tz::{TimeZone, Tz};

use crate::{error::AppError, local_time};

pub use archive::Database;

/// A good backup older than this is flagged: one missed night is tolerated
/// (a reboot at 04:00), two are a problem someone should look at.
pub const STALE_AFTER: Duration = Duration::days(2);

/// Who took a backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum Kind {
    /// The clock, at `BACKUP_AT`.
    Nightly,
    /// `wechat-ticket backup`.
    Manual,
}

/// Where an attempt stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum Outcome {
    Running,
    Ok,
    Failed,
}

/// One attempt, as the log keeps it.
#[derive(Debug, Clone, FromRow)]
pub struct Backup {
    pub id: i64,
    pub kind: Kind,
    pub outcome: Outcome,
    /// The file as it was written (absolute); it may have been moved or pruned since.
    pub file: String,
    pub bytes: Option<i64>,
    pub error: Option<String>,
    pub started_at: OffsetDateTime,
    pub finished_at: Option<OffsetDateTime>,
}

impl Backup {
    /// How long it took, once finished.
    pub fn duration(&self) -> Option<Duration> {
        self.finished_at.map(|f| f - self.started_at)
    }
}

const COLUMNS: &str = "id, kind, outcome, file, bytes, error, started_at, finished_at";

/// The newest good backup, for the admin dashboard ("last backup: …") and `/healthz`.
pub async fn last_good(conn: &mut PgConnection) -> Result<Option<Backup>, AppError> {
    let sql = format!("SELECT {COLUMNS} FROM backups WHERE outcome = 'ok' ORDER BY finished_at DESC LIMIT 1");
    Ok(sqlx::query_as(&sql).fetch_optional(conn).await?)
}

/// The newest attempt, whatever came of it.
pub async fn latest(conn: &mut PgConnection) -> Result<Option<Backup>, AppError> {
    let sql = format!("SELECT {COLUMNS} FROM backups ORDER BY started_at DESC, id DESC LIMIT 1");
    Ok(sqlx::query_as(&sql).fetch_optional(conn).await?)
}

/// Records a backup starting by hand (`wechat-ticket backup`) into `file`;
/// `None` when the database predates the log (a backup taken before the
/// upgrade's migrations run is still taken, just not logged).
pub async fn begin_manual(conn: &mut PgConnection, file: &Path) -> Result<Option<i64>, AppError> {
    let logged: bool =
        sqlx::query_scalar("SELECT to_regclass('public.backups') IS NOT NULL").fetch_one(&mut *conn).await?;
    if !logged {
        return Ok(None);
    }
    let id = sqlx::query_scalar("INSERT INTO backups (kind, file) VALUES ('manual', $1) RETURNING id")
        .bind(file.display().to_string())
        .fetch_one(conn)
        .await?;
    Ok(Some(id))
}

/// Records how an attempt ended: its size, or why it failed.
pub async fn finish(conn: &mut PgConnection, id: i64, result: &Result<u64, AppError>) -> Result<(), AppError> {
    let (outcome, bytes, error) = match result {
        Ok(bytes) => (Outcome::Ok, Some(*bytes as i64), None),
        Err(e) => (Outcome::Failed, None, Some(e.to_string())),
    };
    sqlx::query("UPDATE backups SET outcome = $2, bytes = $3, error = $4, finished_at = now() WHERE id = $1")
        .bind(id)
        .bind(outcome)
        .bind(bytes)
        .bind(error)
        .execute(conn)
        .await?;
    Ok(())
}

/// What to tell an operator about backups: the last good one, the newest
/// attempt, and whether it is time to worry.
#[derive(Debug, Clone)]
pub struct Overview {
    pub last_good: Option<Backup>,
    /// The newest attempt when it came after the last good one (a failure, or one running).
    pub since_good: Option<Backup>,
    /// `BACKUP_AT`, when nightly backups are on.
    pub nightly_at: Option<time::Time>,
    pub stale: bool,
}

/// The backups as `/healthz` and the admin dashboard show them (`nightly_at`
/// is `config.backup_at`): two indexed look-ups, cheap enough for a health
/// check, and a third only before the first good backup.
pub async fn overview(
    conn: &mut PgConnection,
    nightly_at: Option<time::Time>,
    now: OffsetDateTime,
) -> Result<Overview, AppError> {
    let last_good = last_good(conn).await?;
    let since_good = latest(conn).await?.filter(|l| last_good.as_ref().is_none_or(|g| g.id != l.id));
    let first_attempt: Option<OffsetDateTime> = if last_good.is_none() && nightly_at.is_some() {
        sqlx::query_scalar("SELECT min(started_at) FROM backups").fetch_one(&mut *conn).await?
    } else {
        None
    };
    let watched_since = [first_attempt, nightly::watched_since()].into_iter().flatten().min();
    let stale = stale(last_good.as_ref(), nightly_at.is_some(), watched_since, now);
    Ok(Overview { last_good, since_good, nightly_at, stale })
}

/// Whether the backups need looking at: nightly backups are on and nothing
/// good has been written for [`STALE_AFTER`] — counted from the last good
/// backup, or, before the first, from when backups were first expected (the
/// first attempt in the log, or this server's clock starting them). So a
/// fresh install is not flagged before its first nights have had their chance.
pub fn stale(
    last_good: Option<&Backup>,
    nightly: bool,
    watched_since: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> bool {
    if !nightly {
        return false;
    }
    match (last_good.and_then(|b| b.finished_at), watched_since) {
        (Some(at), _) => now - at > STALE_AFTER,
        (None, Some(since)) => now - since > STALE_AFTER,
        (None, None) => false,
    }
}

impl Overview {
    /// The lines `/healthz` adds after `ok`; none when backups are off and none was ever taken.
    pub fn health_lines(&self, tz: &Tz, now: OffsetDateTime) -> Vec<String> {
        let mut lines = Vec::new();
        let flag = if self.stale { "STALE (older than two days): " } else { "" };
        match &self.last_good {
            Some(good) => {
                let at = good.finished_at.unwrap_or(good.started_at);
                lines.push(format!(
                    "backup: {flag}last good {} ({}), {}",
                    local_time::precise(at, tz),
                    ago(now - at),
                    good.file
                ));
            }
            None if self.stale => lines.push(format!("backup: {flag}no good backup yet")),
            None => {
                if let Some(at) = self.nightly_at {
                    lines.push(format!("backup: none yet; nightly at {} {}", clock(at), tz.name()));
                }
            }
        }
        if let Some(attempt) = &self.since_good {
            match attempt.outcome {
                Outcome::Failed => lines.push(format!(
                    "backup: last attempt failed at {}: {}",
                    local_time::precise(attempt.finished_at.unwrap_or(attempt.started_at), tz),
                    attempt.error.as_deref().unwrap_or("no reason recorded")
                )),
                Outcome::Running => {
                    lines.push(format!("backup: one running since {}", local_time::precise(attempt.started_at, tz)))
                }
                Outcome::Ok => {}
            }
        }
        lines
    }
}

fn clock(at: time::Time) -> String {
    if at.second() == 0 {
        format!("{:02}:{:02}", at.hour(), at.minute())
    } else {
        format!("{:02}:{:02}:{:02}", at.hour(), at.minute(), at.second())
    }
}

/// `5 min ago`, `14 h ago`, `3 days ago`.
fn ago(age: Duration) -> String {
    if age < Duration::hours(1) {
        format!("{} min ago", age.whole_minutes().max(0))
    } else if age < Duration::hours(48) {
        format!("{} h ago", age.whole_hours())
    } else {
        format!("{} days ago", age.whole_days())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good(finished: OffsetDateTime) -> Backup {
        Backup {
            id: 1,
            kind: Kind::Nightly,
            outcome: Outcome::Ok,
            file: "/srv/backups/wechat-ticket-20250101-040000.dump".into(),
            bytes: Some(1),
            error: None,
            started_at: finished,
            finished_at: Some(finished),
        }
    }

    #[test]
    fn a_good_backup_goes_stale_after_two_days_and_a_fresh_install_only_after_two_days_of_trying() {
        let now = OffsetDateTime::now_utc();
        let h = Duration::hours(1);
        assert!(!stale(Some(&good(now - 47 * h)), true, None, now));
        assert!(stale(Some(&good(now - 49 * h)), true, None, now));
        assert!(!stale(Some(&good(now - 49 * h)), false, None, now), "nightly backups off: nothing expected");
        assert!(!stale(None, true, None, now));
        assert!(!stale(None, true, Some(now - 20 * h), now), "a fresh install has its nights to come");
        assert!(stale(None, true, Some(now - 50 * h), now));
    }

    #[test]
    fn ages_read_as_people_say_them() {
        assert_eq!(ago(Duration::minutes(5)), "5 min ago");
        assert_eq!(ago(Duration::hours(14)), "14 h ago");
        assert_eq!(ago(Duration::hours(75)), "3 days ago");
    }
}
