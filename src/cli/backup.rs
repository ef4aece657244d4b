//! `wechat-ticket backup [-o FILE]` and `wechat-ticket restore FILE [--force]`.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use sqlx::{ConnectOptions, Connection, PgConnection};
use time::OffsetDateTime;

use crate::{
    Config,
    backups::{self, Database, archive, nightly, restore},
    db::{self, RunningCluster},
    error::AppError,
};

/// The database the tools reach: the one [`db::open`] opened.
fn database(config: &Config, cluster: Option<&RunningCluster>) -> Database {
    match (&config.database_url, cluster) {
        (None, Some(cluster)) => Database::Managed { socket_dir: cluster.socket_dir().to_path_buf() },
        (url, _) => Database::Url(url.clone().unwrap_or_default()),
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Writes a backup to `output`, or to `BACKUP_DIR` under the nightly backups' naming.
pub async fn backup(config: &Config, output: Option<PathBuf>) -> Result<(), AppError> {
    let path = match output {
        Some(path) => absolute(&path),
        None => nightly::prepare_dir(&config.backup_dir)?
            .join(nightly::file_name(OffsetDateTime::now_utc(), config.timezone)),
    };
    // Not migrated first: a backup taken before an upgrade's migrations is
    // the one to go back to if they go wrong.
    let (pool, cluster) = db::open(config).await?;
    let db = database(config, cluster.as_ref());
    let started = Instant::now();
    let result = async {
        let logged = backups::begin_manual(&mut *pool.acquire().await?, &path).await?;
        let written = tokio::select! {
            written = archive::dump(&db, &path) => written,
            // Dropping the dump kills pg_dump and removes the partial file.
            () = crate::app::shutdown_signal() => Err(AppError::Invalid("interrupted; no backup was written".into())),
        };
        if let Some(id) = logged {
            backups::finish(&mut *pool.acquire().await?, id, &written).await?;
        }
        written
    }
    .await;
    pool.close().await;
    drop(cluster);
    let bytes = result?;
    println!("backup written: {} ({}, {:.1} s)", path.display(), size(bytes), started.elapsed().as_secs_f64());
    Ok(())
}

fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} kB", b as f64 / 1024.0),
        b => format!("{b} bytes"),
    }
}

/// Restores `file` into the database `serve` uses, which must be empty
/// unless `force` (then what is there is saved to `BACKUP_DIR` first).
pub async fn restore(config: &Config, file: PathBuf, force: bool) -> Result<(), AppError> {
    if !file.is_file() {
        return Err(AppError::Invalid(format!("{}: no such backup file", file.display())));
    }
    // Starts the managed cluster (and creates its database) when nothing runs yet.
    let (pool, cluster) = db::open(config).await?;
    // One connection of our own, so every other session is someone else's.
    pool.close().await;
    let db = database(config, cluster.as_ref());
    let result = async {
        archive::check(&db, &file).await?;
        let mut conn = db::options(config, cluster.as_ref())?.connect().await?;
        let there = restore::contents(&mut conn).await?;
        if !there.is_empty() && !force {
            return Err(AppError::Invalid(format!(
                "refusing to restore into a database that is not empty: it holds {}. \
                 Restoring would replace all of it. Run again with --force to replace it \
                 (what is there now is first saved to BACKUP_DIR).",
                there.describe()
            )));
        }
        alone(&mut conn).await?;
        let mut saved = None;
        if !there.is_empty() {
            let name = nightly::file_name(OffsetDateTime::now_utc(), config.timezone).replacen(
                "wechat-ticket-",
                "wechat-ticket-before-restore-",
                1,
            );
            let path = nightly::prepare_dir(&config.backup_dir)?.join(name);
            archive::dump(&db, &path).await.map_err(|e| {
                AppError::Invalid(format!(
                    "could not save what is there before replacing it ({e}); nothing was changed"
                ))
            })?;
            eprintln!("what was there ({}) is saved in {}", there.describe(), path.display());
            restore::clear(&mut conn).await?;
            saved = Some(path);
        }
        archive::restore(&db, &file).await.map_err(|e| match &saved {
            Some(path) => AppError::Invalid(format!(
                "{e}. Nothing of the backup was restored; the database is empty now, \
                 and what was there before is in {}",
                path.display()
            )),
            None => AppError::Invalid(format!("{e}. Nothing was restored; the database is as it was.")),
        })?;
        let restored = restore::contents(&mut conn).await?;
        conn.close().await?;
        println!("restored {}: {}", file.display(), restored.describe());
        let known = db::MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
        match restored.migration {
            Some(m) if m < known => {
                println!("the backup is at migration {m}; `serve` (or `migrate`) brings it to {known}")
            }
            Some(m) if m > known => eprintln!(
                "warning: the backup was taken by a newer wechat-ticket (migration {m}; this one knows up to {known}): \
                 serve it with that version"
            ),
            _ => {}
        }
        Ok(())
    }
    .await;
    drop(cluster);
    result
}

/// Waits (briefly: our own pool's sessions take a moment to go) until no
/// other session uses the database; refuses while one does.
async fn alone(conn: &mut PgConnection) -> Result<(), AppError> {
    let mut others = restore::other_sessions(conn).await?;
    for _ in 0..30 {
        if others.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        others = restore::other_sessions(conn).await?;
    }
    Err(AppError::Invalid(format!(
        "restore needs the database to itself, but {} other session(s) use it ({}): \
         stop `serve` and anything else connected first",
        others.len(),
        others.join(", ")
    )))
}
