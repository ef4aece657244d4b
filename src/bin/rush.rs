//! The rush benchmark: ten thousand students pressing "抢票" at once, end to end.
//!
//! It starts the real server in this process (the same `Application` that
//! `serve` runs) on its own PostgreSQL — a fresh managed cluster with fsync on,
//! or a fresh database in `DATABASE_URL` — seeds bound students and one open
//! activity, and sends every student's signed `CLICK BOOK_<id>` event over real
//! HTTP from a fixed number of keep-alive connections (or, in a burst, each
//! over a fresh connection opened inside the clock). Next to it, on the same
//! machine, it measures two ceilings: the same server answering signed `GET
//! /wechat` checks (no database), and plain durable `INSERT`s of ticket-sized
//! rows through a pool the size of the app's. Afterwards it checks in the
//! database that no ticket was sold twice or beyond capacity.
//!
//! `cargo run --release --bin rush -- --scenario all --json`
//! `cargo run --release --bin rush -- --scenario burst`

// A binary's root looks for modules beside itself; ours live in `rush/`.
#[path = "rush/ceilings.rs"]
mod ceilings;
#[path = "rush/cpu.rs"]
mod cpu;
#[path = "rush/fresh.rs"]
mod fresh;
#[path = "rush/load.rs"]
mod load;
#[path = "rush/netstat.rs"]
mod netstat;
#[path = "rush/postgres.rs"]
mod postgres;
#[path = "rush/report.rs"]
mod report;
#[path = "rush/scenario.rs"]
mod scenario;

use std::process::ExitCode;

use clap::{Parser, ValueEnum};

#[derive(Parser, Debug)]
#[command(about = "Measure a 抢票 rush end to end against the real server and its PostgreSQL")]
struct Args {
    /// Which load to run; explicit --students/--capacity/--concurrency override its values.
    #[arg(long, value_enum, default_value_t = Which::Rush)]
    scenario: Which,
    /// Bound students, each sending one booking click.
    #[arg(long)]
    students: Option<usize>,
    /// Tickets of the activity.
    #[arg(long)]
    capacity: Option<i32>,
    /// Concurrent HTTP connections (keep-alive, unless fresh).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Open a fresh connection for every request, inside the clock (the burst scenario does).
    #[arg(long)]
    fresh_connections: bool,
    /// The server's listen backlog; default as large as the kernel allows
    /// (net.core.somaxconn). 128 is what tokio's and std's `bind` ask for.
    #[arg(long)]
    listen_backlog: Option<u32>,
    /// Requests for the HTTP ceiling.
    #[arg(long, default_value_t = 20_000)]
    http_requests: usize,
    /// Seconds of plain INSERTs for the durable-write ceiling.
    #[arg(long, default_value_t = 5.0)]
    write_seconds: f64,
    /// Also count the SQL statements the server sends during the rush (costs a little CPU).
    #[arg(long)]
    count_statements: bool,
    /// Print one JSON object on stdout (the table goes to stderr).
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Which {
    /// 10,000 students, 1,000 tickets, 256 connections.
    Rush,
    /// 20,000 students, 20,000 tickets, 256 connections.
    Bulk,
    /// 10,000 students, 1,000 tickets, 1,024 fresh connections at once.
    Burst,
    /// 10,000 students register for a lottery of 1,000 places, 256 connections; then the draw.
    Lottery,
    /// 2,000 students booked into a 2,000-seat hall all choose at once, 256 connections, half at the best 200.
    Seats,
    /// Rush, then bulk.
    All,
}

fn main() -> ExitCode {
    wechat_ticket::install_crypto_provider();
    let args = Args::parse();
    let statements = report::init_logs(args.count_statements);
    let scenarios: Vec<scenario::Scenario> = match args.scenario {
        Which::Rush => vec![scenario::Scenario::rush()],
        Which::Bulk => vec![scenario::Scenario::bulk()],
        Which::Burst => vec![scenario::Scenario::burst()],
        Which::Lottery => vec![scenario::Scenario::lottery()],
        Which::Seats => vec![scenario::Scenario::seats()],
        Which::All => vec![scenario::Scenario::rush(), scenario::Scenario::bulk()],
    }
    .into_iter()
    .map(|s| s.with_overrides(args.students, args.capacity, args.concurrency, args.fresh_connections))
    .collect();
    if let Some(bad) = scenarios.iter().find_map(|s| s.invalid()) {
        eprintln!("rush: {bad}");
        return ExitCode::FAILURE;
    }
    let listen_backlog = args.listen_backlog.unwrap_or_else(wechat_ticket::app::max_backlog);
    if !(1..=i32::MAX as u32).contains(&listen_backlog) {
        eprintln!("rush: --listen-backlog must be between 1 and {}", i32::MAX);
        return ExitCode::FAILURE;
    }

    // The server (and everything that talks to PostgreSQL) runs on one runtime,
    // the load generator on another, so they share the cores the way two
    // processes would rather than interleaving on the same worker threads.
    let server = tokio::runtime::Builder::new_multi_thread().thread_name("server").enable_all().build();
    let client = tokio::runtime::Builder::new_multi_thread().thread_name("load").enable_all().build();
    let (server, client) = match (server, client) {
        (Ok(s), Ok(c)) => (s, c),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("rush: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let options = scenario::RunOptions {
        http_requests: args.http_requests,
        write_seconds: args.write_seconds,
        listen_backlog,
        statements,
        load: client.handle().clone(),
    };
    let outcome = server.block_on(async {
        tokio::select! {
            result = scenario::run_all(&scenarios, &options) => result,
            _ = tokio::signal::ctrl_c() => Err("interrupted".to_string()),
        }
    });
    // Dropping the runtimes after the cluster guard (inside run_all) has stopped PostgreSQL.
    drop(server);
    client.shutdown_background();
    match outcome {
        Ok(run) => {
            report::print(&run, args.json);
            if run.correct() { ExitCode::SUCCESS } else { ExitCode::from(2) }
        }
        Err(e) => {
            eprintln!("rush: {e}");
            ExitCode::FAILURE
        }
    }
}
