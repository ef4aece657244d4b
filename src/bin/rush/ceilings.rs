//! What the same machine can do at best, measured next to the rush: the HTTP
//! ceiling (the same server answering signed `GET /wechat` checks, no
//! database) and the durable-write ceiling (one-row `INSERT`s, each its own
//! commit, through a pool the size of the app's).

use std::time::{Duration, Instant};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::Rng;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use wechat_ticket::wechat::signature;

use crate::load::{self, Request};

pub struct HttpCeiling {
    pub requests_per_s: f64,
    pub requests: usize,
    pub errors: usize,
}

/// A signed server-verification GET, as WeChat sends when the URL is configured.
pub fn verify_url(base: &str, token: &str, i: usize) -> String {
    let timestamp = time::OffsetDateTime::now_utc().unix_timestamp().to_string();
    let nonce = format!("{}", 100_000 + i);
    let sig = signature::sign(&[token, &timestamp, &nonce]);
    format!("{base}/wechat?signature={sig}&timestamp={timestamp}&nonce={nonce}&echostr=e{i}")
}

pub async fn http(
    base: &str,
    token: &str,
    requests: usize,
    concurrency: usize,
    runtime: &tokio::runtime::Handle,
) -> Result<HttpCeiling, String> {
    let list: Vec<Request> = (0..requests).map(|i| Request::Get(verify_url(base, token, i))).collect();
    let warm_up = verify_url(base, token, usize::MAX / 2);
    let connections = load::Connections::KeepAlive { warm_up };
    let run = runtime.spawn(load::run(list, concurrency, connections)).await.map_err(|e| e.to_string())??;
    let errors = run.responses.iter().enumerate().filter(|(i, r)| r.status != 200 || r.body != format!("e{i}")).count();
    Ok(HttpCeiling { requests_per_s: rate(requests, run.wall), requests, errors })
}

pub struct WriteCeiling {
    pub rows_per_s: f64,
    pub writers: u32,
}

/// Inserts rows shaped like tickets (same columns and indexes) into a scratch
/// table for `seconds`, from as many writers as the pool has connections.
pub async fn write(options: PgConnectOptions, writers: u32, seconds: f64) -> Result<WriteCeiling, String> {
    let err = |e: sqlx::Error| e.to_string();
    let pool = PgPoolOptions::new()
        .max_connections(writers)
        .min_connections(writers)
        .connect_with(options)
        .await
        .map_err(err)?;
    sqlx::query("CREATE TABLE rush_write_ceiling (LIKE tickets INCLUDING ALL)").execute(&pool).await.map_err(err)?;
    // Every connection open before the clock starts.
    let mut held = Vec::new();
    for _ in 0..writers {
        held.push(pool.acquire().await.map_err(err)?);
    }
    drop(held);
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let pool = pool.clone();
            tokio::spawn(async move {
                // Each writer keeps its connection, as a pgbench client does.
                let mut conn = pool.acquire().await?;
                let mut rows = 0u64;
                while Instant::now() < deadline {
                    let code = URL_SAFE_NO_PAD.encode(rand::rng().random::<[u8; 16]>());
                    // A booking also records the WeChat account (and its unique index).
                    let student = format!("{w:03}{rows:07}");
                    sqlx::query(
                        "INSERT INTO rush_write_ceiling (code, activity_id, student_id, slot, openid) \
                         VALUES ($1, 1, $2, 0, 'o' || $2)",
                    )
                    .bind(code)
                    .bind(student)
                    .execute(&mut *conn)
                    .await?;
                    rows += 1;
                }
                Ok::<_, sqlx::Error>(rows)
            })
        })
        .collect();
    let mut rows = 0;
    for task in tasks {
        rows += task.await.map_err(|e| e.to_string())?.map_err(err)?;
    }
    let elapsed = started.elapsed();
    sqlx::query("DROP TABLE rush_write_ceiling").execute(&pool).await.map_err(err)?;
    pool.close().await;
    Ok(WriteCeiling { rows_per_s: rows as f64 / elapsed.as_secs_f64(), writers })
}

pub fn rate(n: usize, over: Duration) -> f64 {
    if over.is_zero() { 0.0 } else { n as f64 / over.as_secs_f64() }
}
