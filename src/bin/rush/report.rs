//! Reading replies, summing up a run, and printing it: a table for people,
//! one JSON object for machines. Also logging and the process's peak RSS.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use serde::Serialize;
use tracing_subscriber::{EnvFilter, Layer, filter::Targets, layer::SubscriberExt, util::SubscriberInitExt};
use wechat_ticket::wechat::reply::{self, Reply};

use crate::{
    ceilings::{HttpCeiling, WriteCeiling, rate},
    cpu::Split,
    load::{self, Response},
    netstat::ListenCounters,
    scenario::{Check, DbCounters, Scenario},
};

/// The server logs at warn (RUST_LOG overrides) so logging does not distort
/// the run. With `count`, every statement sqlx sends is counted, not printed.
pub fn init_logs(count: bool) -> Option<Arc<AtomicU64>> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,sqlx=error"));
    let print = tracing_subscriber::fmt::layer().with_target(false).with_writer(std::io::stderr).with_filter(filter);
    let registry = tracing_subscriber::registry().with(print);
    if !count {
        registry.init();
        return None;
    }
    let n = Arc::new(AtomicU64::new(0));
    let counter =
        CountStatements(n.clone()).with_filter(Targets::new().with_target("sqlx::query", tracing::Level::TRACE));
    registry.with(counter).init();
    Some(n)
}

/// sqlx reports each statement it executes (COMMIT and ROLLBACK included,
/// BEGIN and the pool's liveness check not) as one event on `sqlx::query`.
struct CountStatements(Arc<AtomicU64>);

impl<S: tracing::Subscriber> Layer<S> for CountStatements {
    fn on_event(&self, _: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// What a student's phone would show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Booked,
    SoldOut,
    /// A lottery's registration.
    Registered,
    /// The chooser gave the seat (its redirect to the page saying so).
    Placed,
    /// The chooser's "这个座位刚被选走".
    SeatTaken,
    Timeout,
    Error,
}

pub fn classify(r: &Response) -> Class {
    if r.timed_out {
        return Class::Timeout;
    }
    if r.status == 303 {
        return Class::Placed;
    }
    if r.status == 409 && r.body.contains("这个座位刚被选走") {
        return Class::SeatTaken;
    }
    if r.status != 200 {
        return Class::Error;
    }
    // The product's own reader of passive replies: None unless well-formed XML.
    match reply::parse(&r.body) {
        Some(Reply::News(a)) if a.title.contains("抢票成功") => Class::Booked,
        Some(Reply::Text(text)) if text.contains("票已经抢完") => Class::SoldOut,
        Some(Reply::Text(text)) if text.contains("已报名") => Class::Registered,
        _ => Class::Error,
    }
}

/// Resets the process's peak RSS (VmHWM) to its current RSS, so a reading
/// covers one rush only. Linux ≥ 4.0; harmless if refused.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

pub fn peak_rss_kib() -> u64 {
    proc_field("/proc/self/status", "VmHWM:").unwrap_or(0)
}

fn proc_field(path: &str, name: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].trim().trim_end_matches("kB").trim().parse().ok()
}

#[derive(Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu: String,
    pub memory_mib: u64,
    pub postgres: String,
}

impl Machine {
    pub fn this(postgres_version: &str) -> Machine {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| t.lines().find(|l| l.starts_with("model name")).map(|l| l.to_string()))
            .and_then(|l| l.split_once(':').map(|(_, v)| v.trim().to_string()))
            .unwrap_or_else(|| "unknown".into());
        Machine {
            nproc: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            cpu,
            memory_mib: proc_field("/proc/meminfo", "MemTotal:").unwrap_or(0) / 1024,
            postgres: format!("PostgreSQL {postgres_version}"),
        }
    }
}

#[derive(Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    /// Percentiles in milliseconds (nearest rank); all zero for no samples.
    fn of(mut samples: Vec<Duration>) -> Latency {
        samples.sort_unstable();
        let pct = |p: f64| {
            let i = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len().max(1)) - 1;
            samples.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        Latency { p50: pct(0.50), p95: pct(0.95), p99: pct(0.99), max: pct(1.0) }
    }

    fn cell(&self) -> String {
        format!("{:.0} / {:.0} / {:.0} / {:.0}", self.p50, self.p95, self.p99, self.max)
    }
}

#[derive(Serialize)]
pub struct ScenarioResult {
    pub scenario: &'static str,
    pub students: usize,
    pub capacity: i32,
    pub concurrency: usize,
    /// "keep-alive" (opened before the clock) or "fresh" (one per request, inside the clock).
    pub connections: &'static str,
    pub listen_backlog: u32,
    pub requests: usize,
    pub wall_s: f64,
    pub requests_per_s: f64,
    /// Booked replies ÷ seconds from the start until the last booked reply.
    pub bookings_per_s: f64,
    pub booked_replies: usize,
    pub sold_out_replies: usize,
    pub registered_replies: usize,
    /// The seats scenario: choices placed, and told the seat was just taken.
    pub placed_replies: usize,
    pub seat_taken_replies: usize,
    /// Tickets holding a seat afterwards; seats held twice; seats of another hall or blocked.
    pub seated_tickets: Option<i64>,
    pub seats_doubled: Option<i64>,
    pub seats_misplaced: Option<i64>,
    /// Registrations in the pool (0 for a rush).
    pub entries: i64,
    /// A lottery scenario's draw after the rush: milliseconds for the whole transaction.
    pub draw_ms: Option<f64>,
    pub draw_winners: Option<usize>,
    /// Everyone not drawn is on the waiting list.
    pub draw_waiting: Option<i64>,
    pub errors: usize,
    pub timeouts: usize,
    pub latency_ms: Latency,
    /// TCP handshakes of fresh connections (latency includes them).
    pub connect_ms: Option<Latency>,
    /// Connections the kernel's listen queues turned away during the rush (Linux, whole namespace).
    pub listen: Option<ListenCounters>,
    pub tickets_sold: i64,
    pub duplicate_tickets: i64,
    pub places_add_up: bool,
    pub http_ceiling_requests_per_s: f64,
    pub write_ceiling_rows_per_s: f64,
    pub write_ceiling_writers: u32,
    pub bookings_per_s_over_write_ceiling: f64,
    pub requests_per_s_over_http_ceiling: f64,
    /// VmHWM of this process during the rush: server and load generator together.
    pub peak_rss_mib: f64,
    pub transactions_per_request: f64,
    pub wal_flushes_per_request: Option<f64>,
    pub wal_records_per_request: Option<f64>,
    /// Statements the server sent per request (with --count-statements).
    pub statements_per_request: Option<f64>,
    /// CPU seconds during the rush: this process, our PostgreSQL, anything else, idle.
    pub cpu_s: Split,
    /// CPU time of this process and our PostgreSQL per request: the cost, whatever the machine's mood.
    pub cpu_ms_per_request: f64,
    pub error_samples: Vec<String>,
}

impl ScenarioResult {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        scenario: &Scenario,
        run: &load::Run,
        classes: &[Class],
        check: Check,
        write: WriteCeiling,
        http: HttpCeiling,
        db: DbCounters,
        statements: Option<u64>,
        peak_rss_kib: u64,
        cpu_s: Split,
        listen: Option<ListenCounters>,
        listen_backlog: u32,
    ) -> ScenarioResult {
        let count = |c: Class| classes.iter().filter(|x| **x == c).count();
        let booked = count(Class::Booked);
        let last_booking = run
            .responses
            .iter()
            .zip(classes)
            .filter(|(_, c)| **c == Class::Booked)
            .map(|(r, _)| r.done_at)
            .max()
            .unwrap_or_default();
        let latency = Latency::of(run.responses.iter().map(|r| r.latency).collect());
        // A handshake that never completed counts as the whole wait.
        let connect_ms =
            scenario.fresh.then(|| Latency::of(run.responses.iter().map(|r| r.connect.unwrap_or(r.latency)).collect()));
        let n = run.responses.len();
        let per_request = |x: i64| x as f64 / n.max(1) as f64;
        let mut error_samples: Vec<String> = Vec::new();
        for (r, c) in run.responses.iter().zip(classes) {
            if matches!(c, Class::Error | Class::Timeout) && error_samples.len() < 3 {
                let sample = format!("HTTP {}: {}", r.status, r.body.chars().take(200).collect::<String>());
                if !error_samples.contains(&sample) {
                    error_samples.push(sample);
                }
            }
        }
        let requests_per_s = rate(n, run.wall);
        let bookings_per_s = rate(booked, last_booking);
        ScenarioResult {
            scenario: scenario.name,
            students: scenario.students,
            capacity: scenario.capacity,
            concurrency: scenario.concurrency,
            connections: if scenario.fresh { "fresh" } else { "keep-alive" },
            listen_backlog,
            requests: n,
            wall_s: run.wall.as_secs_f64(),
            requests_per_s,
            bookings_per_s,
            booked_replies: booked,
            sold_out_replies: count(Class::SoldOut),
            registered_replies: count(Class::Registered),
            placed_replies: count(Class::Placed),
            seat_taken_replies: count(Class::SeatTaken),
            seated_tickets: check.seating.as_ref().map(|c| c.seated),
            seats_doubled: check.seating.as_ref().map(|c| c.seats_doubled),
            seats_misplaced: check.seating.as_ref().map(|c| c.misplaced),
            entries: check.entries,
            draw_ms: check.draw.as_ref().map(|d| d.ms),
            draw_winners: check.draw.as_ref().map(|d| d.winners),
            draw_waiting: check.draw.as_ref().map(|d| d.waiting),
            errors: count(Class::Error),
            timeouts: count(Class::Timeout),
            latency_ms: latency,
            connect_ms,
            listen,
            tickets_sold: check.tickets_sold,
            duplicate_tickets: check.duplicate_tickets,
            places_add_up: check.places_add_up,
            http_ceiling_requests_per_s: http.requests_per_s,
            write_ceiling_rows_per_s: write.rows_per_s,
            write_ceiling_writers: write.writers,
            bookings_per_s_over_write_ceiling: bookings_per_s / write.rows_per_s.max(f64::MIN_POSITIVE),
            requests_per_s_over_http_ceiling: requests_per_s / http.requests_per_s.max(f64::MIN_POSITIVE),
            peak_rss_mib: peak_rss_kib as f64 / 1024.0,
            transactions_per_request: per_request(db.transactions),
            wal_flushes_per_request: db.wal_syncs.map(per_request),
            wal_records_per_request: db.wal_records.map(per_request),
            statements_per_request: statements.map(|s| per_request(s as i64)),
            cpu_ms_per_request: (cpu_s.this_process_s + cpu_s.postgres_s) * 1000.0 / n.max(1) as f64,
            cpu_s,
            error_samples: if http.errors > 0 {
                let mut s = error_samples;
                s.push(format!("{} of {} HTTP-ceiling requests failed", http.errors, http.requests));
                s
            } else {
                error_samples
            },
        }
    }

    /// No ticket sold twice or beyond capacity, no place lost, no booked reply without its ticket; in a
    /// lottery, every registered reply in the pool, and the draw filling the places and queueing the rest.
    pub fn correct(&self) -> bool {
        let lottery = match (self.draw_winners, self.draw_waiting) {
            (Some(winners), Some(waiting)) => {
                self.registered_replies as i64 == self.entries
                    && winners as i64 == self.tickets_sold
                    && self.tickets_sold == self.entries.min(i64::from(self.capacity))
                    && waiting == self.entries - self.tickets_sold
            }
            _ => self.registered_replies == 0,
        };
        // Every placed reply holds its seat, no seat twice, none outside the offer; without seats, no placed reply.
        let seats = match (self.seated_tickets, self.seats_doubled, self.seats_misplaced) {
            (Some(seated), Some(doubled), Some(misplaced)) => {
                seated == self.placed_replies as i64 && doubled == 0 && misplaced == 0
            }
            _ => self.placed_replies == 0 && self.seat_taken_replies == 0,
        };
        lottery
            && seats
            && self.duplicate_tickets == 0
            && self.places_add_up
            && self.booked_replies as i64 <= self.tickets_sold
    }
}

#[derive(Serialize)]
pub struct RunResult {
    pub machine: Machine,
    pub database: String,
    pub pool_size: u32,
    pub scenarios: Vec<ScenarioResult>,
}

impl RunResult {
    pub fn correct(&self) -> bool {
        self.scenarios.iter().all(ScenarioResult::correct)
    }
}

const SERVER_NOTE: &str = "server in-process (wechat_ticket::Application, log level warn); the load generator, \
     the server and PostgreSQL share this machine's cores; peak RSS is this whole process (server + load generator)";

pub fn print(run: &RunResult, json: bool) {
    let table = table(run);
    if json {
        eprint!("{table}");
        let mut value = serde_json::to_value(run).expect("plain data serialises");
        value["note"] = serde_json::Value::String(SERVER_NOTE.into());
        println!("{value}");
    } else {
        print!("{table}");
    }
}

fn table(run: &RunResult) -> String {
    let m = &run.machine;
    let mut out = format!(
        "\n{} × {}, {} MiB, {}; {}; app pool {} connections\n{SERVER_NOTE}\n\n",
        m.nproc, m.cpu, m.memory_mib, m.postgres, run.database, run.pool_size
    );
    let opt = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.2}"));
    type Cell = Box<dyn Fn(&ScenarioResult) -> String>;
    let rows: Vec<(&str, Cell)> = vec![
        (
            "students / tickets / connections",
            Box::new(|s| format!("{} / {} / {}", s.students, s.capacity, s.concurrency)),
        ),
        ("connections; server listen backlog", Box::new(|s| format!("{}; {}", s.connections, s.listen_backlog))),
        ("requests/s", Box::new(|s| format!("{:.0}", s.requests_per_s))),
        ("bookings/s", Box::new(|s| format!("{:.0}", s.bookings_per_s))),
        ("latency p50 / p95 / p99 / max (ms)", Box::new(|s| s.latency_ms.cell())),
        ("connect p50 / p95 / p99 / max (ms)", Box::new(|s| s.connect_ms.as_ref().map_or("-".into(), Latency::cell))),
        (
            "listen overflows / drops (kernel)",
            Box::new(|s| s.listen.map_or("-".into(), |l| format!("{} / {}", l.overflows, l.drops))),
        ),
        ("booked / sold-out replies", Box::new(|s| format!("{} / {}", s.booked_replies, s.sold_out_replies))),
        ("registered replies / entries", Box::new(|s| format!("{} / {}", s.registered_replies, s.entries))),
        (
            "seats: placed / just-taken replies",
            Box::new(|s| match s.seated_tickets {
                Some(_) => format!("{} / {}", s.placed_replies, s.seat_taken_replies),
                None => "-".into(),
            }),
        ),
        (
            "seats: seated / doubled / misplaced",
            Box::new(|s| match (s.seated_tickets, s.seats_doubled, s.seats_misplaced) {
                (Some(a), Some(b), Some(c)) => format!("{a} / {b} / {c}"),
                _ => "-".into(),
            }),
        ),
        (
            "draw: ms / winners / waiting",
            Box::new(|s| match (s.draw_ms, s.draw_winners, s.draw_waiting) {
                (Some(ms), Some(w), Some(q)) => format!("{ms:.0} / {w} / {q}"),
                _ => "-".into(),
            }),
        ),
        ("tickets sold (capacity)", Box::new(|s| format!("{} ({})", s.tickets_sold, s.capacity))),
        ("duplicate tickets", Box::new(|s| s.duplicate_tickets.to_string())),
        ("places add up", Box::new(|s| if s.places_add_up { "yes".into() } else { "NO".into() })),
        ("errors / timeouts (5 s)", Box::new(|s| format!("{} / {}", s.errors, s.timeouts))),
        ("HTTP ceiling (requests/s)", Box::new(|s| format!("{:.0}", s.http_ceiling_requests_per_s))),
        (
            "write ceiling (rows/s, writers)",
            Box::new(|s| format!("{:.0} ({})", s.write_ceiling_rows_per_s, s.write_ceiling_writers)),
        ),
        ("bookings/s ÷ write ceiling", Box::new(|s| format!("{:.2}", s.bookings_per_s_over_write_ceiling))),
        ("requests/s ÷ HTTP ceiling", Box::new(|s| format!("{:.2}", s.requests_per_s_over_http_ceiling))),
        ("peak RSS, whole process (MiB)", Box::new(|s| format!("{:.0}", s.peak_rss_mib))),
        ("transactions / request", Box::new(|s| format!("{:.2}", s.transactions_per_request))),
        ("WAL flushes / request", Box::new(move |s| opt(s.wal_flushes_per_request))),
        ("WAL records / request", Box::new(move |s| opt(s.wal_records_per_request))),
        ("statements / request", Box::new(move |s| opt(s.statements_per_request))),
        (
            "CPU s: process/postgres/other/idle/steal",
            Box::new(|s| {
                let c = &s.cpu_s;
                format!(
                    "{:.1} / {:.1} / {:.1} / {:.1} / {:.1}",
                    c.this_process_s, c.postgres_s, c.other_s, c.idle_s, c.steal_s
                )
            }),
        ),
        ("CPU ms / request (process + postgres)", Box::new(|s| format!("{:.3}", s.cpu_ms_per_request))),
    ];
    out.push_str(&format!("{:<42}", ""));
    for s in &run.scenarios {
        out.push_str(&format!("{:>26}", s.scenario));
    }
    out.push('\n');
    for (label, cell) in &rows {
        out.push_str(&format!("{label:<42}"));
        for s in &run.scenarios {
            out.push_str(&format!("{:>26}", cell(s)));
        }
        out.push('\n');
    }
    for s in &run.scenarios {
        for e in &s.error_samples {
            out.push_str(&format!("{}: {e}\n", s.scenario));
        }
    }
    out
}
