//! The nightly backup: what the clock (`schedule.rs`) runs at `BACKUP_AT`.
//!
//! Exactly once a night across instances, twice over: the clock's scheduler
//! enqueues one job a night (one instance holds the schedule's lock), and the
//! job claims its night in the log before writing anything — a unique index
//! lets one attempt per night run or succeed — so even a job run twice (a
//! retry racing a slow first try, two clocks on skewed machines) writes one
//! file. Then the oldest of its own files beyond `BACKUP_KEEP` go.

use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
};

use sqlx::PgPool;
use time::{Duration, OffsetDateTime, PrimitiveDateTime};
use time_tz::{OffsetDateTimeExt, PrimitiveDateTimeExt, Tz};

use super::{Database, archive};
use crate::{Config, error::AppError};

/// What a night's run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Night {
    /// Written here: the file and its size.
    Taken { file: PathBuf, bytes: u64 },
    /// Another run (another instance, an earlier try) has this night.
    AlreadyTaken,
}

/// The file name of a backup taken at `at`: `wechat-ticket-YYYYMMDD-HHMMSS.dump`
/// in `TIMEZONE`, so names sort as the backups were taken and read as the
/// operator's clock does.
pub fn file_name(at: OffsetDateTime, tz: &Tz) -> String {
    let t = at.to_timezone(tz);
    format!(
        "wechat-ticket-{:04}{:02}{:02}-{:02}{:02}{:02}.dump",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Whether `name` is one of the files this program names ([`file_name`]):
/// only those are ever pruned, never a file someone else put in `BACKUP_DIR`.
pub fn is_ours(name: &str) -> bool {
    let Some(stamp) = name.strip_prefix("wechat-ticket-").and_then(|n| n.strip_suffix(".dump")) else {
        return false;
    };
    let bytes = stamp.as_bytes();
    bytes.len() == 15 && bytes[8] == b'-' && bytes.iter().enumerate().all(|(i, b)| i == 8 || b.is_ascii_digit())
}

/// The night a run at `now` is for: the occurrence of `at` (in `tz`) nearest
/// to `now`. Nearest, not latest: a worker whose clock is a second behind the
/// scheduler's still names the same night, and a job runs within hours of its
/// tick or not at all (its time to live).
pub fn night_of(now: OffsetDateTime, at: time::Time, tz: &Tz) -> OffsetDateTime {
    let today = now.to_timezone(tz).date();
    [today.previous_day(), Some(today), today.next_day()]
        .into_iter()
        .flatten()
        // A time skipped by a DST change has no night; an ambiguous one takes the earlier.
        .filter_map(|date| PrimitiveDateTime::new(date, at).assume_timezone(tz).take_first())
        .min_by_key(|night| (*night - now).abs())
        .unwrap_or(now)
}

static WATCHED_SINCE: OnceLock<OffsetDateTime> = OnceLock::new();

/// When this process's clock started taking nightly backups, if it did.
pub fn watched_since() -> Option<OffsetDateTime> {
    WATCHED_SINCE.get().copied()
}

/// Called by the clock as it starts taking nightly backups.
pub fn watching() {
    let _ = WATCHED_SINCE.set(OffsetDateTime::now_utc());
}

/// An attempt still 'running' this long after it started died with its
/// process; it lets go of its night so a retry may take it.
fn abandoned_after() -> Duration {
    Duration::try_from(archive::TIMEOUT).unwrap_or(Duration::hours(3)) + Duration::minutes(15)
}

/// Takes the night's backup unless another run has it: claims the night,
/// writes `BACKUP_DIR/wechat-ticket-….dump`, records how it went, prunes.
/// An error is a failed attempt, recorded, for the clock to retry.
pub async fn run(pool: &PgPool, config: &Config, now: OffsetDateTime) -> Result<Night, AppError> {
    let Some(at) = config.backup_at else { return Err(AppError::Config("BACKUP_AT is off".into())) };
    let night = night_of(now, at, config.timezone);
    let mut conn = pool.acquire().await?;
    sqlx::query(
        "UPDATE backups SET outcome = 'failed', finished_at = now(), \
         error = 'abandoned: its process ended before it did' \
         WHERE outcome = 'running' AND started_at < now() - $1",
    )
    .bind(abandoned_after())
    .execute(&mut *conn)
    .await?;
    let dir = prepare_dir(&config.backup_dir)?;
    let file = dir.join(file_name(now, config.timezone));
    let claimed: Option<i64> = sqlx::query_scalar(
        "INSERT INTO backups (kind, scheduled_for, file) VALUES ('nightly', $1, $2) \
         ON CONFLICT (scheduled_for) WHERE outcome IN ('running', 'ok') DO NOTHING RETURNING id",
    )
    .bind(night)
    .bind(file.display().to_string())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(id) = claimed else { return Ok(Night::AlreadyTaken) };
    // The log's connection is not held while pg_dump works.
    drop(conn);
    let result = match Database::of(config) {
        Ok(db) => tokio::time::timeout(archive::TIMEOUT, archive::dump(&db, &file))
            .await
            .unwrap_or_else(|_| Err(AppError::Timeout)),
        Err(e) => Err(e),
    };
    super::finish(&mut *pool.acquire().await?, id, &result).await?;
    let bytes = result?;
    match prune(&dir, config.backup_keep as usize) {
        Ok(gone) if !gone.is_empty() => tracing::info!(pruned = gone.len(), "old nightly backups removed"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, dir = %dir.display(), "could not prune old backups"),
    }
    Ok(Night::Taken { file, bytes })
}

/// Creates `BACKUP_DIR` (readable by its owner only) and returns it absolute,
/// as the log records files.
pub fn prepare_dir(dir: &Path) -> Result<PathBuf, AppError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| AppError::Invalid(format!("cannot create BACKUP_DIR {}: {e}", dir.display())))?;
    Ok(dir.canonicalize()?)
}

/// Keeps the newest `keep` of this program's backup files in `dir` and
/// removes the rest, and any of its partial files a crash left a day ago or
/// more; anything else in `dir` is left alone. Returns what went.
pub fn prune(dir: &Path, keep: usize) -> std::io::Result<Vec<PathBuf>> {
    let mut ours = Vec::new();
    let mut gone = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_ours(&name) {
            ours.push(name);
        } else if name.strip_suffix(".partial").is_some_and(is_ours) {
            let old =
                entry.metadata()?.modified()?.elapsed().is_ok_and(|age| age > std::time::Duration::from_secs(86_400));
            if old {
                std::fs::remove_file(entry.path())?;
                gone.push(entry.path());
            }
        }
    }
    // The names carry the time they were taken: newest first.
    ours.sort_unstable_by(|a, b| b.cmp(a));
    for name in ours.into_iter().skip(keep) {
        let path = dir.join(name);
        std::fs::remove_file(&path)?;
        gone.push(path);
    }
    Ok(gone)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{datetime, time};

    fn shanghai() -> &'static Tz {
        time_tz::timezones::db::asia::SHANGHAI
    }

    #[test]
    fn names_carry_the_local_time_and_only_ours_match() {
        let at = datetime!(2025-01-01 20:00:07 UTC);
        let name = file_name(at, shanghai());
        assert_eq!(name, "wechat-ticket-20250102-040007.dump");
        assert!(is_ours(&name));
        for foreign in [
            "wechat-ticket-20250102-040007.dump.partial",
            "wechat-ticket-before-restore-20250102-040007.dump",
            "wechat-ticket-2025012-040007.dump",
            "wechat-ticket-20250102-04000x.dump",
            "notes.txt",
            "my-wechat-ticket-20250102-040007.dump",
        ] {
            assert!(!is_ours(foreign), "{foreign}");
        }
    }

    #[test]
    fn a_run_names_the_nearest_night_whichever_side_of_it_the_clock_is() {
        let tz = shanghai();
        let at = time!(04:00);
        let night = datetime!(2025-03-10 04:00 +8);
        assert_eq!(night_of(datetime!(2025-03-10 04:00:01 +8), at, tz), night);
        assert_eq!(night_of(datetime!(2025-03-10 03:59:58 +8), at, tz), night, "a clock a little behind");
        assert_eq!(night_of(datetime!(2025-03-10 09:30 +8), at, tz), night, "a late retry");
        assert_eq!(night_of(datetime!(2025-03-10 17:00 +8), at, tz), datetime!(2025-03-11 04:00 +8));
        let late = time!(23:30);
        assert_eq!(night_of(datetime!(2025-03-11 00:10 +8), late, tz), datetime!(2025-03-10 23:30 +8));
    }

    #[test]
    fn pruning_keeps_the_newest_of_ours_and_nothing_else_is_touched() {
        let dir = std::env::temp_dir().join(format!("wt-prune-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let names = [
            "wechat-ticket-20250101-040000.dump",
            "wechat-ticket-20250102-040000.dump",
            "wechat-ticket-20250103-040000.dump",
            "wechat-ticket-20241231-040000.dump",
            "wechat-ticket-before-restore-20240101-000000.dump",
            "copied-offsite.dump",
            "wechat-ticket-20250104-040000.dump.partial",
        ];
        for name in names {
            std::fs::write(dir.join(name), b"x").unwrap();
        }
        let mut gone = prune(&dir, 2).unwrap();
        gone.sort();
        assert_eq!(
            gone,
            [dir.join("wechat-ticket-20241231-040000.dump"), dir.join("wechat-ticket-20250101-040000.dump")]
        );
        let mut left: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(
            left,
            [
                "copied-offsite.dump",
                "wechat-ticket-20250102-040000.dump",
                "wechat-ticket-20250103-040000.dump",
                "wechat-ticket-20250104-040000.dump.partial",
                "wechat-ticket-before-restore-20240101-000000.dump",
            ],
            "a fresh partial (a backup being written) stays too"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
