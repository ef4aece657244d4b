//! The load generator: K workers pulling prepared requests from one shared
//! queue until it is empty, each over its own keep-alive connection opened
//! before the clock starts, or over a fresh connection per request opened
//! inside the clock, as WeChat's servers deliver a burst.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::Barrier;

use crate::fresh;

/// WeChat drops a reply that takes longer than this.
pub const WECHAT_TIMEOUT: Duration = Duration::from_secs(5);

pub enum Request {
    Get(String),
    /// A WeChat message (XML).
    Post {
        url: String,
        body: String,
    },
    /// A page's form (the seat chooser).
    Form {
        url: String,
        body: String,
    },
}

pub struct Response {
    /// 0 when no HTTP response arrived.
    pub status: u16,
    pub timed_out: bool,
    pub body: String,
    pub latency: Duration,
    /// When the reply was complete, counted from the start of the run.
    pub done_at: Duration,
    /// With fresh connections: how long the TCP handshake took (None if it never completed).
    pub connect: Option<Duration>,
}

#[derive(Clone)]
pub enum Connections {
    /// One connection per worker, opened and used once with this URL before the clock starts.
    KeepAlive { warm_up: String },
    /// A new connection for every request, inside the clock: the first K arrive at once.
    Fresh,
}

pub struct Run {
    pub responses: Vec<Response>,
    pub wall: Duration,
}

/// Sends every request once from `concurrency` workers. With keep-alive
/// connections the run measures answering, not TCP handshakes; with fresh
/// ones a request's latency includes its handshake, and a SYN the server's
/// listen queue dropped shows as the kernel's one-second retransmit.
pub async fn run(requests: Vec<Request>, concurrency: usize, connections: Connections) -> Result<Run, String> {
    let requests = Arc::new(requests);
    let next = Arc::new(AtomicUsize::new(0));
    // Everyone warmed up, then the clock starts, then everyone goes.
    let ready = Arc::new(Barrier::new(concurrency + 1));
    let go = Arc::new(Barrier::new(concurrency + 1));
    let started = Arc::new(std::sync::OnceLock::<Instant>::new());
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let client = reqwest::Client::builder()
            .no_proxy()
            // A choice's answer is its redirect: measured as sent, not the page after it.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(WECHAT_TIMEOUT)
            .pool_max_idle_per_host(1)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let (requests, next, ready, go, started, connections) =
            (requests.clone(), next.clone(), ready.clone(), go.clone(), started.clone(), connections.clone());
        workers.push(tokio::spawn(async move {
            let warm = match &connections {
                Connections::KeepAlive { warm_up } => {
                    match client.get(warm_up).send().await.and_then(|r| r.error_for_status()) {
                        Ok(r) => r.bytes().await.map(|_| ()).map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    }
                }
                Connections::Fresh => Ok(()),
            };
            ready.wait().await;
            go.wait().await;
            warm?;
            let t0 = *started.get().expect("the start is set before anyone passes the barrier");
            let mut done = Vec::new();
            // Bounded: each iteration takes a distinct index below len.
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(request) = requests.get(i) else { break };
                let sent = Instant::now();
                let (status, timed_out, body, connect) = match connections {
                    Connections::KeepAlive { .. } => {
                        let (status, timed_out, body) = send(&client, request).await;
                        (status, timed_out, body, None)
                    }
                    Connections::Fresh => fresh::send(request).await,
                };
                let now = Instant::now();
                done.push((i, Response { status, timed_out, body, latency: now - sent, done_at: now - t0, connect }));
            }
            Ok::<_, String>(done)
        }));
    }
    ready.wait().await;
    started.set(Instant::now()).expect("set once");
    go.wait().await;
    let mut slots: Vec<Option<Response>> = (0..requests.len()).map(|_| None).collect();
    let mut failure = None;
    for worker in workers {
        match worker.await {
            Ok(Ok(done)) => {
                for (i, r) in done {
                    slots[i] = Some(r);
                }
            }
            Ok(Err(e)) => failure = Some(format!("warm-up request failed: {e}")),
            Err(e) => failure = Some(format!("a load worker failed: {e}")),
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let responses: Vec<Response> = slots.into_iter().map(|r| r.expect("every request was sent")).collect();
    let wall = responses.iter().map(|r| r.done_at).max().unwrap_or_default();
    Ok(Run { responses, wall })
}

async fn send(client: &reqwest::Client, request: &Request) -> (u16, bool, String) {
    let sent = match request {
        Request::Get(url) => client.get(url).send().await,
        Request::Post { url, body } => {
            client.post(url).header("content-type", "text/xml").body(body.clone()).send().await
        }
        Request::Form { url, body } => {
            client.post(url).header("content-type", "application/x-www-form-urlencoded").body(body.clone()).send().await
        }
    };
    let response = match sent {
        Ok(r) => r,
        Err(e) => return (0, e.is_timeout(), e.to_string()),
    };
    let status = response.status().as_u16();
    match response.text().await {
        Ok(body) => (status, false, body),
        Err(e) => (status, e.is_timeout(), e.to_string()),
    }
}
