//! `GET /metrics` on `METRICS_LISTEN`: a listener of its own, never the public
//! router, so no proxy rule or forgotten route can publish it. A scrape reads
//! the pool and the queues' depths, then renders what `meters` recorded.

use std::{net::SocketAddr, time::Duration};

use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::{error::AppError, meters, notify};

#[derive(Clone)]
struct Scrape {
    handle: PrometheusHandle,
    pool: PgPool,
}

async fn scrape(State(scrape): State<Scrape>) -> impl IntoResponse {
    meters::pool(&scrape.pool);
    // During an outage a scrape still answers, with the depths it last read.
    match notify::queue_depths(&scrape.pool).await {
        Ok(depths) => {
            meters::notification_queue(depths.queued, depths.retrying);
            for (queue, pending) in depths.jobs {
                meters::job_queue(queue, pending);
            }
        }
        Err(e) => tracing::debug!(error = %e, "metrics: could not read the queue depths"),
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], meters::render(&scrape.handle))
}

/// Serves `/metrics` on `addr` until `token` is cancelled; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    handle: PrometheusHandle,
    pool: PgPool,
    token: CancellationToken,
) -> Result<SocketAddr, AppError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| AppError::Config(format!("METRICS_LISTEN {addr}: {e}")))?;
    let bound = listener.local_addr()?;
    let upkeep = handle.clone();
    let router = Router::new()
        .route("/metrics", get(scrape))
        .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "only /metrics here") })
        .with_state(Scrape { handle, pool });
    tokio::spawn(async move {
        let serving = axum::serve(listener, router).with_graceful_shutdown(token.cancelled_owned());
        // Histograms fold their samples in at upkeep; between scrapes too, so memory stays flat.
        let upkeeping = async {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            loop {
                every.tick().await;
                meters::upkeep(&upkeep);
            }
        };
        tokio::select! {
            result = serving => if let Err(e) = result { tracing::error!(error = %e, "the metrics listener stopped") },
            () = upkeeping => {}
        }
    });
    Ok(bound)
}
