//! What the operator's `/metrics` shows: every metric's name and labels in
//! one place, the Prometheus recorder, and its listener on `METRICS_LISTEN`,
//! apart from the public one so it is never public by accident.
//!
//! Each place where something happens calls one function here, after the
//! change it counts has committed (a WeChat retry racing its first delivery
//! rolls back and is counted as `duplicate`, not twice). Without
//! `METRICS_LISTEN` no recorder is installed and every call is a no-op.
//! Labels are words from fixed sets, route patterns, activity keys and gate
//! names — never a raw path, a ticket code, an openid or a token.

use std::{
    sync::{
        OnceLock,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use crate::{error::AppError, wechat::api::meters as wechat_api};
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

const HTTP_REQUESTS: &str = "wechat_ticket_http_requests_total";
const HTTP_SECONDS: &str = "wechat_ticket_http_request_duration_seconds";
const WECHAT_MESSAGES: &str = "wechat_ticket_wechat_messages_total";
const BOOKINGS: &str = "wechat_ticket_bookings_total";
const CANCELS: &str = "wechat_ticket_cancels_total";
const SEAT_CHOICES: &str = "wechat_ticket_seat_choices_total";
const PROMOTIONS: &str = "wechat_ticket_waiting_promotions_total";
const CHECKINS: &str = "wechat_ticket_checkins_total";
const POOL: &str = "wechat_ticket_db_pool_connections";
const POOL_WAITING: &str = "wechat_ticket_db_pool_waiting";
const JOBS: &str = "wechat_ticket_job_queue_depth";
const NOTIFICATIONS: &str = "wechat_ticket_notifications_total";
const NOTIFICATION_QUEUE: &str = "wechat_ticket_notification_queue";
const DATABASE_RESTARTS: &str = "wechat_ticket_database_restarts_total";
const BATCH_MESSAGES: &str = "wechat_ticket_wechat_batch_messages";

/// Booking messages per batch (`web/wechat/batch.rs`): one alone, up to 256 in a rush.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// Latency buckets, in seconds: a WeChat reply must come inside 5 s, most in milliseconds.
const SECONDS_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Messages waiting for a database connection right now (see [`waiting_for_pool`]).
static POOL_WAITERS: AtomicI64 = AtomicI64::new(0);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process's recorder (once; later calls return the same handle).
pub fn install() -> Result<PrometheusHandle, AppError> {
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .map_err(|e| AppError::Config(format!("metrics: {e}")))?
        .set_buckets_for_metric(Matcher::Full(BATCH_MESSAGES.into()), BATCH_BUCKETS)
        .map_err(|e| AppError::Config(format!("metrics: {e}")))?
        .install_recorder()
        .map_err(|e| AppError::Config(format!("metrics: {e}")))?;
    describe();
    Ok(HANDLE.get_or_init(|| handle).clone())
}

fn describe() {
    describe_counter!(HTTP_REQUESTS, "HTTP requests answered, by method, route pattern and status.");
    describe_histogram!(HTTP_SECONDS, "HTTP request latency by method and route pattern.");
    describe_counter!(WECHAT_MESSAGES, "WeChat messages by command and outcome (booked, sold_out, duplicate, …).");
    describe_histogram!(BATCH_MESSAGES, "Booking messages answered in one transaction, per batch.");
    describe_counter!(BOOKINGS, "Tickets booked, by where (wechat, web, guest).");
    describe_counter!(CANCELS, "Tickets cancelled, by where (wechat, web, admin).");
    describe_counter!(SEAT_CHOICES, "Seat or zone choices, by outcome (placed, taken, refused).");
    describe_counter!(PROMOTIONS, "Tickets issued to the head of a waiting list.");
    describe_counter!(CHECKINS, "Door scans by activity key, gate (or admin) and verdict.");
    describe_gauge!(POOL, "Database pool connections, by state (in_use, idle, max).");
    describe_gauge!(POOL_WAITING, "WeChat messages waiting for a database connection.");
    describe_counter!(wechat_api::TOKEN_REFRESHES, "WeChat access_token and jsapi_ticket fetches, by kind.");
    describe_counter!(wechat_api::API_ERRORS, "WeChat API calls that failed, by API and errcode (or why).");
    describe_gauge!(JOBS, "Jobs waiting on the job queue, by queue.");
    describe_counter!(NOTIFICATIONS, "Notification attempts by outcome (sent, undelivered, retrying) and channel.");
    describe_gauge!(NOTIFICATION_QUEUE, "Notifications not yet sent, by state (queued, retrying).");
    describe_counter!(DATABASE_RESTARTS, "Restarts of the managed PostgreSQL after it went away.");
}

/// One answered HTTP request. `route` is the matched pattern (`/tickets/{code}`), never the path;
/// its label reads `/tickets/:code`.
pub fn http_request(method: &str, route: &str, status: u16, elapsed: Duration) {
    // Any token is a method to HTTP: an unknown one must not mint a label.
    let method = match method {
        "GET" | "POST" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "PATCH" => method,
        _ => "other",
    };
    // Without a recorder, not even the labels' strings are made: this runs on every request.
    if HANDLE.get().is_none() {
        return;
    }
    let (method, route) = (method.to_string(), route_label(route));
    counter!(HTTP_REQUESTS, "method" => method.clone(), "route" => route.clone(), "status" => status.to_string())
        .increment(1);
    histogram!(HTTP_SECONDS, "method" => method, "route" => route).record(elapsed.as_secs_f64());
}

/// `/tickets/{code}` as `/tickets/:code`, `/static/{*path}` as `/static/*path`:
/// braces are legal in a label value, but some text-format readers end the
/// label set at the first `}`.
fn route_label(pattern: &str) -> String {
    pattern.replace("{*", "*").replace('{', ":").replace('}', "")
}

/// One WeChat message, after its handling committed (or did not).
pub fn wechat_message(command: &'static str, outcome: &'static str) {
    counter!(WECHAT_MESSAGES, "command" => command, "outcome" => outcome).increment(1);
}

/// Where a ticket was booked or cancelled.
#[derive(Debug, Clone, Copy)]
pub enum Via {
    Wechat,
    Web,
    Guest,
    Admin,
}

impl Via {
    fn label(self) -> &'static str {
        match self {
            Via::Wechat => "wechat",
            Via::Web => "web",
            Via::Guest => "guest",
            Via::Admin => "admin",
        }
    }
}

pub fn booked(via: Via) {
    counter!(BOOKINGS, "via" => via.label()).increment(1);
}

pub fn cancelled(via: Via) {
    counter!(CANCELS, "via" => via.label()).increment(1);
}

pub fn seat_choice(outcome: &'static str) {
    counter!(SEAT_CHOICES, "outcome" => outcome).increment(1);
}

pub fn promoted(tickets: usize) {
    counter!(PROMOTIONS).increment(tickets as u64);
}

/// A scan at the door: `gate` is the volunteer link's gate name, or `admin`.
pub fn checkin(activity_key: &str, gate: &str, verdict: &'static str) {
    counter!(CHECKINS, "activity" => activity_key.to_string(), "gate" => gate.to_string(), "verdict" => verdict)
        .increment(1);
}

pub fn notification(outcome: &'static str, channel: &'static str) {
    counter!(NOTIFICATIONS, "outcome" => outcome, "channel" => channel).increment(1);
}

pub fn database_restarted() {
    counter!(DATABASE_RESTARTS).increment(1);
}

/// A batch of `size` booking messages went to the database together.
pub fn wechat_batch(size: usize) {
    histogram!(BATCH_MESSAGES).record(size as f64);
}

/// Counts the caller as waiting for a database connection until the guard drops.
pub fn waiting_for_pool() -> PoolWait {
    POOL_WAITERS.fetch_add(1, Ordering::Relaxed);
    PoolWait(())
}

pub struct PoolWait(());

impl Drop for PoolWait {
    fn drop(&mut self) {
        POOL_WAITERS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The pool as a scrape reads it: connections in use and idle, its maximum,
/// and the messages waiting for one.
pub fn pool(pool: &sqlx::PgPool) {
    let size = pool.size() as f64;
    let idle = pool.num_idle() as f64;
    gauge!(POOL, "state" => "in_use").set(size - idle);
    gauge!(POOL, "state" => "idle").set(idle);
    gauge!(POOL, "state" => "max").set(f64::from(pool.options().get_max_connections()));
    gauge!(POOL_WAITING).set(POOL_WAITERS.load(Ordering::Relaxed) as f64);
}

/// Notifications not yet sent, as a scrape reads them.
pub fn notification_queue(queued: i64, retrying: i64) {
    gauge!(NOTIFICATION_QUEUE, "state" => "queued").set(queued as f64);
    gauge!(NOTIFICATION_QUEUE, "state" => "retrying").set(retrying as f64);
}

/// Jobs waiting on one of the job queue's queues, as a scrape reads them.
pub fn job_queue(queue: String, pending: i64) {
    gauge!(JOBS, "queue" => queue).set(pending as f64);
}

/// The text a scrape answers; histograms fold their samples in first.
pub fn render(handle: &PrometheusHandle) -> String {
    handle.run_upkeep();
    handle.render()
}

/// Folds the histograms' samples in between scrapes, so memory stays flat.
pub fn upkeep(handle: &PrometheusHandle) {
    handle.run_upkeep();
}

#[cfg(test)]
mod tests {
    #[test]
    fn route_labels_name_the_pattern_without_braces() {
        assert_eq!(super::route_label("/tickets/{code}/seat"), "/tickets/:code/seat");
        assert_eq!(super::route_label("/static/{*path}"), "/static/*path");
        assert_eq!(super::route_label("/wechat"), "/wechat");
    }
}
