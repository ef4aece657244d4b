//! The PostgreSQL the benchmark runs on: a fresh managed cluster in a temporary
//! directory (fsync on, as the product runs), or the server in `DATABASE_URL`.
//! Either way each scenario gets a fresh, migrated database that is dropped
//! afterwards; the managed cluster is stopped and its directory removed.

use std::path::PathBuf;

use sqlx::{ConnectOptions, Connection, postgres::PgConnectOptions};
use wechat_ticket::db::{self, Durability, LocalCluster, RunningCluster};

pub struct Postgres {
    admin: PgConnectOptions,
    /// Dropped before the directory is removed: that stops the server.
    cluster: Option<RunningCluster>,
    temp_dir: Option<PathBuf>,
    pub description: String,
    pub version: String,
}

impl Postgres {
    pub async fn start() -> Result<Postgres, String> {
        let mut pg = match std::env::var("DATABASE_URL").ok().filter(|u| !u.trim().is_empty()) {
            Some(url) => {
                let admin: PgConnectOptions = url.parse().map_err(|e| format!("DATABASE_URL: {e}"))?;
                Postgres {
                    admin,
                    cluster: None,
                    temp_dir: None,
                    description: "DATABASE_URL (settings as that server has them)".into(),
                    version: String::new(),
                }
            }
            None => {
                let dir = std::env::temp_dir().join(format!("wt-rush-{}", std::process::id()));
                let _ = std::fs::remove_dir_all(&dir);
                let start_dir = dir.clone();
                let started = tokio::task::spawn_blocking(move || {
                    LocalCluster::new(&start_dir, Durability::Durable).and_then(LocalCluster::start)
                })
                .await
                .map_err(|e| e.to_string())?;
                let cluster = match started {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = std::fs::remove_dir_all(&dir);
                        return Err(e.to_string());
                    }
                };
                Postgres {
                    admin: db::local_options(cluster.socket_dir(), "postgres"),
                    cluster: Some(cluster),
                    temp_dir: Some(dir),
                    description: "managed local cluster in a temporary directory, fsync on, synchronous_commit on"
                        .into(),
                    version: String::new(),
                }
            }
        };
        let mut conn = pg.admin.connect().await.map_err(|e| format!("connect to PostgreSQL: {e}"))?;
        pg.version = sqlx::query_scalar("SHOW server_version").fetch_one(&mut conn).await.map_err(|e| e.to_string())?;
        let fsync: String = sqlx::query_scalar("SHOW fsync").fetch_one(&mut conn).await.map_err(|e| e.to_string())?;
        let sync: String =
            sqlx::query_scalar("SHOW synchronous_commit").fetch_one(&mut conn).await.map_err(|e| e.to_string())?;
        if pg.cluster.is_none() {
            pg.description =
                format!("DATABASE_URL, fsync {fsync}, synchronous_commit {sync} (its CPU time shows as \"other\")");
        }
        let _ = conn.close().await;
        Ok(pg)
    }

    /// Creates and migrates a database for one scenario.
    pub async fn fresh_database(&self, name: &str) -> Result<PgConnectOptions, String> {
        self.drop_database(name).await?;
        let mut conn = self.admin.connect().await.map_err(|e| e.to_string())?;
        sqlx::query(&format!("CREATE DATABASE \"{name}\"")).execute(&mut conn).await.map_err(|e| e.to_string())?;
        let _ = conn.close().await;
        let options = self.admin.clone().database(name).application_name("wechat-ticket-rush");
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(|e| e.to_string())?;
        db::migrate(&pool).await.map_err(|e| e.to_string())?;
        pool.close().await;
        Ok(options)
    }

    /// The server's pid when we started it, for counting its CPU time.
    pub fn postmaster_pid(&self) -> Option<u32> {
        let dir = self.temp_dir.as_ref()?;
        let text = std::fs::read_to_string(dir.join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    pub async fn drop_database(&self, name: &str) -> Result<(), String> {
        let mut conn = self.admin.connect().await.map_err(|e| e.to_string())?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .execute(&mut conn)
            .await
            .map_err(|e| format!("drop database {name}: {e}"))?;
        let _ = conn.close().await;
        Ok(())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        drop(self.cluster.take());
        if let Some(dir) = self.temp_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
