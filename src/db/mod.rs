//! The connection pool, migrations, and the managed local PostgreSQL and its supervisor.

pub mod local;
pub mod supervisor;

use std::time::Duration;

use sqlx::{
    PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use crate::{config::Config, error::AppError};
pub use local::{Durability, LocalCluster, RunningCluster};
pub use supervisor::DatabaseHealth;

/// The database name used inside the managed cluster.
pub const LOCAL_DATABASE: &str = "wechat_ticket";

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Connection options for a database inside a managed cluster.
pub fn local_options(socket_dir: &std::path::Path, database: &str) -> PgConnectOptions {
    PgConnectOptions::new().socket(socket_dir).username("postgres").database(database).application_name("wechat-ticket")
}

/// The database `serve` and every CLI command use: `DATABASE_URL`, or the
/// managed cluster under `DATA_DIR` (started if it is not running yet).
pub async fn open(config: &Config) -> Result<(PgPool, Option<RunningCluster>), AppError> {
    if config.database_url.is_some() {
        return Ok((pool(options(config, None)?).await?, None));
    }
    let dir = config.data_dir.join("postgres");
    let cluster = tokio::task::spawn_blocking(move || LocalCluster::new(&dir, Durability::Durable)?.start())
        .await
        .map_err(|e| AppError::Internal(e.to_string()))??;
    let result = async {
        create_database_if_missing(local_options(cluster.socket_dir(), "postgres"), LOCAL_DATABASE).await?;
        pool(options(config, Some(&cluster))?).await
    }
    .await;
    match result {
        Ok(pool) => Ok((pool, Some(cluster))),
        // Dropping the handle stops a server we started.
        Err(e) => Err(e),
    }
}

/// How to reach the database [`open`] opened: `DATABASE_URL`, or the managed
/// `cluster` it returned (for a command that needs a connection of its own).
pub fn options(config: &Config, cluster: Option<&RunningCluster>) -> Result<PgConnectOptions, AppError> {
    match (&config.database_url, cluster) {
        (Some(url), _) => {
            let options: PgConnectOptions = url.parse().map_err(|e| AppError::Config(format!("DATABASE_URL: {e}")))?;
            Ok(options.application_name("wechat-ticket"))
        }
        (None, Some(cluster)) => Ok(local_options(cluster.socket_dir(), LOCAL_DATABASE)),
        (None, None) => Err(AppError::Internal("the managed cluster is not running".into())),
    }
}

/// An idle connection older than this is checked before use.
const IDLE_BEFORE_CHECK: Duration = Duration::from_secs(10);

pub async fn pool(options: PgConnectOptions) -> Result<PgPool, AppError> {
    Ok(pool_options(pool_size()).min_connections(1).connect_with(options).await?)
}

/// A pool of `size` connections opened on first use, from whichever runtime
/// uses it first: `/wechat`'s batches run on a thread of their own, and a
/// connection answers fastest on the runtime whose thread waits for it.
pub fn lazy_pool(options: PgConnectOptions, size: u32) -> PgPool {
    pool_options(size).connect_lazy_with(options)
}

fn pool_options(size: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(size)
        // Well inside WeChat's 5-second rule: better a quick "busy" than a dropped reply.
        .acquire_timeout(Duration::from_secs(3))
        // sqlx checks every connection as it goes back into the pool; checking it
        // again on the way out costs a round trip per request, so do that only
        // for a connection that sat idle long enough for something to have gone wrong.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > IDLE_BEFORE_CHECK {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
}

/// `DATABASE_POOL_SIZE`, else a size that keeps a small server's cores busy
/// without making PostgreSQL juggle more backends than it can run. Measured
/// with `cargo run --release --bin rush` on two cores: 8 books about 15% faster
/// than 16 and answers a rush as fast; 4 leaves the cores idle waiting on WAL
/// flushes (README, "Rush benchmark").
pub fn pool_size() -> u32 {
    std::env::var("DATABASE_POOL_SIZE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_POOL_SIZE)
}

const DEFAULT_POOL_SIZE: u32 = 8;

pub async fn migrate(pool: &PgPool) -> Result<(), AppError> {
    MIGRATOR.run(pool).await?;
    // The job queue's own tables, in its own schema (`underway`) with its own
    // migration record; idempotent like ours.
    underway::run_migrations(pool).await?;
    Ok(())
}

pub async fn create_database_if_missing(admin: PgConnectOptions, name: &str) -> Result<(), AppError> {
    use sqlx::{ConnectOptions, Connection};
    let mut conn = admin.connect().await?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(&mut conn)
        .await?;
    if !exists {
        let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        match sqlx::query(&sql).execute(&mut conn).await {
            Ok(_) => {}
            // Two commands starting at once: the other one created it.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
            Err(e) => return Err(e.into()),
        }
    }
    conn.close().await?;
    Ok(())
}
