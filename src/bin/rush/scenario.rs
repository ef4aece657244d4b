//! One scenario: a fresh database, the ceilings, the real server, the rush,
//! and the check of what the database holds afterwards.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use sqlx::{ConnectOptions, Connection, PgConnection, postgres::PgConnectOptions};
use time::{Duration, OffsetDateTime};
use wechat_ticket::{
    AppState, Application, Config, app,
    booking::{
        NewActivity, activities,
        lottery::{self, Mode},
        seats,
        tickets::{self, ActivityRef, BookOutcome},
    },
    db,
    links::{self, Purpose},
    wechat::{reply, signature},
};

use crate::{
    ceilings, cpu,
    load::{self, Request},
    netstat::ListenCounters,
    postgres::Postgres,
    report::{self, Class, Machine, RunResult, ScenarioResult},
};

const TOKEN: &str = "rush-benchmark-token";

/// Long enough for ended backends to have flushed their statistics.
const STATS_SETTLE: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: &'static str,
    pub students: usize,
    pub capacity: i32,
    pub concurrency: usize,
    /// Every request on a fresh connection opened inside the clock.
    pub fresh: bool,
    /// A lottery activity: the clicks register, and the draw runs after the rush.
    pub lottery: bool,
    /// A seat activity whose tickets are all booked before the clock: the
    /// requests are the chooser's posts, half of them aiming at the best seats.
    pub seats: bool,
}

impl Scenario {
    pub fn rush() -> Scenario {
        Scenario {
            name: "rush",
            students: 10_000,
            capacity: 1_000,
            concurrency: 256,
            fresh: false,
            lottery: false,
            seats: false,
        }
    }

    pub fn bulk() -> Scenario {
        Scenario {
            name: "bulk",
            students: 20_000,
            capacity: 20_000,
            concurrency: 256,
            fresh: false,
            lottery: false,
            seats: false,
        }
    }

    /// The rush as WeChat's servers deliver it: connections opened in a burst.
    pub fn burst() -> Scenario {
        Scenario {
            name: "burst",
            students: 10_000,
            capacity: 1_000,
            concurrency: 1_024,
            fresh: true,
            lottery: false,
            seats: false,
        }
    }

    /// The rush on a lottery activity: every click registers; then the draw.
    pub fn lottery() -> Scenario {
        Scenario {
            name: "lottery",
            students: 10_000,
            capacity: 1_000,
            concurrency: 256,
            fresh: false,
            lottery: true,
            seats: false,
        }
    }

    /// Choosing seats: 2,000 students booked into a 2,000-seat hall all post
    /// their choice at once, half of them at the same best 200 seats.
    pub fn seats() -> Scenario {
        Scenario {
            name: "seats",
            students: 2_000,
            capacity: 2_000,
            concurrency: 256,
            fresh: false,
            lottery: false,
            seats: true,
        }
    }

    pub fn with_overrides(
        mut self,
        students: Option<usize>,
        capacity: Option<i32>,
        k: Option<usize>,
        fresh: bool,
    ) -> Scenario {
        self.students = students.unwrap_or(self.students);
        self.capacity = capacity.unwrap_or(self.capacity);
        self.concurrency = k.unwrap_or(self.concurrency);
        self.fresh |= fresh;
        self
    }

    pub fn invalid(&self) -> Option<String> {
        if !(1..=1_000_000).contains(&self.students) {
            return Some("--students must be between 1 and 1,000,000".into());
        }
        if !(1..=1_000_000).contains(&self.capacity) {
            return Some("--capacity must be between 1 and 1,000,000".into());
        }
        if !(1..=2_000).contains(&self.concurrency) {
            return Some("--concurrency must be between 1 and 2,000".into());
        }
        if self.seats && (self.students > self.capacity as usize || self.capacity as usize > seats::hall::MAX_SEATS) {
            return Some(format!(
                "--scenario seats: every student holds a ticket, so --students ≤ --capacity ≤ {} (the hall's seats)",
                seats::hall::MAX_SEATS
            ));
        }
        None
    }
}

pub struct RunOptions {
    pub http_requests: usize,
    pub write_seconds: f64,
    /// The server's listen backlog.
    pub listen_backlog: u32,
    /// SQL statements the process has sent, when counting is on.
    pub statements: Option<Arc<AtomicU64>>,
    pub load: tokio::runtime::Handle,
}

pub async fn run_all(scenarios: &[Scenario], options: &RunOptions) -> Result<RunResult, String> {
    let pg = Postgres::start().await?;
    let machine = Machine::this(&pg.version);
    let mut results = Vec::new();
    for scenario in scenarios {
        let name = format!("wt_rush_{}_{}", std::process::id(), scenario.name);
        let db = pg.fresh_database(&name).await?;
        eprintln!(
            "rush: scenario {} — {} students, {} tickets, {} {} connections, listen backlog {}",
            scenario.name,
            scenario.students,
            scenario.capacity,
            scenario.concurrency,
            if scenario.fresh { "fresh" } else { "keep-alive" },
            options.listen_backlog
        );
        let result = measure(scenario, db, options, pg.postmaster_pid()).await;
        pg.drop_database(&name).await?;
        results.push(result?);
    }
    Ok(RunResult { machine, database: pg.description.clone(), pool_size: db::pool_size(), scenarios: results })
}

async fn measure(
    scenario: &Scenario,
    db: PgConnectOptions,
    options: &RunOptions,
    postmaster: Option<u32>,
) -> Result<ScenarioResult, String> {
    let err = |e: wechat_ticket::AppError| e.to_string();
    let write = ceilings::write(db.clone(), db::pool_size(), options.write_seconds).await?;
    eprintln!("rush:   durable-write ceiling {:.0} rows/s", write.rows_per_s);

    let pool = db::pool(db.clone()).await.map_err(err)?;
    let listener = app::bind_listener_with_backlog(([127, 0, 0, 1], 0).into(), options.listen_backlog)
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let base = format!("http://{addr}");
    let vars: HashMap<&str, String> = HashMap::from([
        ("WECHAT_TOKEN", TOKEN.to_string()),
        ("LISTEN", addr.to_string()),
        ("PUBLIC_URL", base.clone()),
    ]);
    let config = Config::from_lookup(|k| vars.get(k).cloned()).map_err(err)?;
    let state = AppState::new(config, pool.clone()).await.map_err(err)?;
    let notifier = state.notifier.clone();
    let secret_key = state.secret_key.clone();
    let app = Application::with_listener(listener, state);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));

    let http = ceilings::http(&base, TOKEN, options.http_requests, scenario.concurrency, &options.load).await?;
    eprintln!("rush:   HTTP ceiling {:.0} requests/s", http.requests_per_s);

    let (activity_id, requests) = match scenario.seats {
        true => seed_seats(&db, scenario, &base, &secret_key).await?,
        false => seed(&db, scenario, &base).await?,
    };
    // Backends that ended (the write ceiling's, the seeding one) flush their statistics as they exit.
    tokio::time::sleep(STATS_SETTLE).await;
    let before = DbCounters::read(&db).await?;
    let statements_before = options.statements.as_ref().map(|n| n.load(Ordering::Relaxed));
    report::reset_peak_rss();
    let cpu_before = cpu::sample(postmaster);
    let connections = if scenario.fresh {
        load::Connections::Fresh
    } else {
        load::Connections::KeepAlive { warm_up: ceilings::verify_url(&base, TOKEN, usize::MAX / 2) }
    };
    let listen_before = ListenCounters::read();
    let run = options
        .load
        .spawn(load::run(requests, scenario.concurrency, connections))
        .await
        .map_err(|e| e.to_string())??;
    let cpu = cpu_before.until(&cpu::sample(postmaster));
    let listen = ListenCounters::read().zip(listen_before).map(|(after, before)| after.minus(before));
    let peak_rss_kib = report::peak_rss_kib();
    let statements = options.statements.as_ref().zip(statements_before).map(|(n, b)| n.load(Ordering::Relaxed) - b);

    let draw = match scenario.lottery {
        true => Some(draw(&pool, &notifier, activity_id).await?),
        false => None,
    };
    let _ = stop.send(());
    server.await.map_err(|e| e.to_string())?.map_err(err)?;
    // Closing the pool ends its backends, which flushes their statistics.
    pool.close().await;
    tokio::time::sleep(STATS_SETTLE).await;
    let after = DbCounters::read(&db).await?;
    let mut check = check_database(&db, activity_id, scenario.capacity).await?;
    if scenario.seats {
        check.seating = Some(check_seats(&db, activity_id).await?);
    }
    check.draw = draw;

    let classes: Vec<Class> = run.responses.iter().map(report::classify).collect();
    Ok(ScenarioResult::new(
        scenario,
        &run,
        &classes,
        check,
        write,
        http,
        after.minus(&before),
        statements,
        peak_rss_kib,
        cpu,
        listen,
        options.listen_backlog,
    ))
}

/// Bound students and one open, published activity; returns the activity and
/// every student's signed booking click, ready to send.
async fn seed(db: &PgConnectOptions, scenario: &Scenario, base: &str) -> Result<(i64, Vec<Request>), String> {
    let err = |e: sqlx::Error| e.to_string();
    let mut conn = db.connect().await.map_err(err)?;
    let openids: Vec<String> = (0..scenario.students).map(|i| format!("oRush{i:07}")).collect();
    let ids: Vec<String> = (0..scenario.students).map(|i| format!("20{i:08}")).collect();
    sqlx::query(
        "INSERT INTO students (openid, student_id, bound_at) SELECT *, now() FROM unnest($1::text[], $2::text[])",
    )
    .bind(&openids)
    .bind(&ids)
    .execute(&mut conn)
    .await
    .map_err(err)?;
    let now = OffsetDateTime::now_utc();
    let h = Duration::hours(1);
    let new = NewActivity {
        key: "rush".into(),
        name: "新年音乐会".into(),
        place: "新清华学堂".into(),
        description: "抢票压力测试".into(),
        book_start: now - h,
        book_end: now + h,
        start_at: now + 2 * h,
        end_at: now + 4 * h,
        capacity: scenario.capacity,
        publish: true,
        mode: if scenario.lottery { Mode::Lottery } else { Mode::Rush },
    };
    let activity = activities::create(&mut conn, &new).await.map_err(|e| e.to_string())?;
    let _ = conn.close().await;

    let create_time = now.unix_timestamp();
    let requests = openids
        .iter()
        .enumerate()
        .map(|(i, openid)| {
            let timestamp = create_time.to_string();
            let nonce = format!("{}", 500_000_000 + i);
            let sig = signature::sign(&[TOKEN, &timestamp, &nonce]);
            let url = format!("{base}/wechat?signature={sig}&timestamp={timestamp}&nonce={nonce}&openid={openid}");
            let body = format!(
                "<xml><ToUserName><![CDATA[gh_123456789abc]]></ToUserName>\
                 <FromUserName>{}</FromUserName><CreateTime>{create_time}</CreateTime>\
                 <MsgType><![CDATA[event]]></MsgType><Event><![CDATA[CLICK]]></Event>\
                 <EventKey><![CDATA[BOOK_{}]]></EventKey></xml>",
                reply::cdata(openid),
                activity.id
            );
            Request::Post { url, body }
        })
        .collect();
    Ok((activity.id, requests))
}

/// What the database says about the rush, checked after it.
pub struct Check {
    pub tickets_sold: i64,
    /// Students holding more than one live ticket, plus live tickets beyond capacity.
    pub duplicate_tickets: i64,
    /// Every place is either a live ticket or still free.
    pub places_add_up: bool,
    /// Registrations in the lottery's pool (0 for a rush).
    pub entries: i64,
    /// A lottery's draw after the rush.
    pub draw: Option<Draw>,
    /// The seats scenario's places.
    pub seating: Option<SeatCheck>,
}

/// What the database holds after the seats scenario.
pub struct SeatCheck {
    /// Tickets holding a seat.
    pub seated: i64,
    /// Seats held by more than one live ticket (the unique index says 0; counted anyway).
    pub seats_doubled: i64,
    /// Tickets holding more than one seat cannot exist (one column); tickets whose
    /// seat is not of the activity's hall or is blocked are counted here.
    pub misplaced: i64,
}

/// The draw of a lottery scenario, timed: the whole transaction (ranking,
/// tickets, waiting list, one queued notice per entry) and its commit.
pub struct Draw {
    pub ms: f64,
    pub winners: usize,
    /// Those not drawn are on the waiting list, in draw order.
    pub waiting: i64,
}

async fn draw(
    pool: &sqlx::PgPool,
    notifier: &wechat_ticket::notify::Notifier,
    activity_id: i64,
) -> Result<Draw, String> {
    let err = |e: sqlx::Error| e.to_string();
    sqlx::query("UPDATE activities SET book_end = now() WHERE id = $1")
        .bind(activity_id)
        .execute(pool)
        .await
        .map_err(err)?;
    let started = std::time::Instant::now();
    let mut tx = pool.begin().await.map_err(err)?;
    let outcome = lottery::draw(&mut tx, notifier, activity_id).await.map_err(|e| e.to_string())?;
    tx.commit().await.map_err(err)?;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let lottery::DrawOutcome::Drawn { winners, .. } = outcome else {
        return Err(format!("the draw did not run: {outcome:?}"));
    };
    let waiting: i64 =
        sqlx::query_scalar("SELECT count(*) FROM waiting_list WHERE activity_id = $1 AND state = 'waiting'")
            .bind(activity_id)
            .fetch_one(pool)
            .await
            .map_err(err)?;
    Ok(Draw { ms, winners, waiting })
}

async fn check_database(db: &PgConnectOptions, activity_id: i64, capacity: i32) -> Result<Check, String> {
    let err = |e: sqlx::Error| e.to_string();
    let mut conn = db.connect().await.map_err(err)?;
    let (live, doubled, remaining, entries): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM tickets WHERE activity_id = $1 AND status <> 'cancelled'), \
         (SELECT count(*) FROM (SELECT student_id FROM tickets WHERE activity_id = $1 AND status <> 'cancelled' \
             GROUP BY student_id HAVING count(*) > 1) d), \
         (SELECT coalesce(sum(remaining), 0) FROM activity_slots WHERE activity_id = $1), \
         (SELECT count(*) FROM lottery_entries WHERE activity_id = $1)",
    )
    .bind(activity_id)
    .fetch_one(&mut conn)
    .await
    .map_err(err)?;
    let _ = conn.close().await;
    let capacity = i64::from(capacity);
    Ok(Check {
        tickets_sold: live,
        duplicate_tickets: doubled + (live - capacity).max(0),
        places_add_up: live + remaining == capacity,
        entries,
        draw: None,
        seating: None,
    })
}

/// Bound students, a hall of `capacity` seats in rows of 40 (the first 200,
/// rows 1–5 of 前区, are the best), a seat activity in it open for booking,
/// and a ticket for every student booked through the rules before the clock.
/// Returns the activity and every student's signed choice, ready to send:
/// even students aim at a random best seat, odd ones at a random other seat.
async fn seed_seats(
    db: &PgConnectOptions,
    scenario: &Scenario,
    base: &str,
    secret: &[u8],
) -> Result<(i64, Vec<Request>), String> {
    use rand::{Rng, SeedableRng};
    let err = |e: wechat_ticket::AppError| e.to_string();
    let mut conn = db.connect().await.map_err(|e| e.to_string())?;
    let openids: Vec<String> = (0..scenario.students).map(|i| format!("oSeat{i:07}")).collect();
    let ids: Vec<String> = (0..scenario.students).map(|i| format!("21{i:08}")).collect();
    sqlx::query(
        "INSERT INTO students (openid, student_id, bound_at) SELECT *, now() FROM unnest($1::text[], $2::text[])",
    )
    .bind(&openids)
    .bind(&ids)
    .execute(&mut conn)
    .await
    .map_err(|e| e.to_string())?;
    const PER_ROW: usize = 40;
    const BEST: usize = 200;
    let hall: Vec<seats::hall::SeatLine> = (0..scenario.capacity as usize)
        .map(|i| {
            let row = i / PER_ROW + 1;
            seats::hall::SeatLine {
                zone: if i < BEST { "前区".into() } else { "后区".into() },
                row: row.to_string(),
                seat: (i % PER_ROW + 1).to_string(),
                at: None,
            }
        })
        .collect();
    let keys: Vec<String> = hall.iter().map(|s| format!("{}-{}-{}", s.zone, s.row, s.seat)).collect();
    seats::hall::import(&mut conn, "压力测试礼堂", &hall).await.map_err(err)?;
    let now = OffsetDateTime::now_utc();
    let h = Duration::hours(1);
    let plan = seats::Plan::Hall("压力测试礼堂".into());
    let new = NewActivity {
        key: "seats".into(),
        name: "新年晚会".into(),
        place: "压力测试礼堂".into(),
        description: "选座压力测试".into(),
        book_start: now - h,
        book_end: now + h,
        start_at: now + 2 * h,
        end_at: now + 4 * h,
        capacity: seats::capacity_of(&mut conn, &plan, Some(scenario.capacity)).await.map_err(err)?,
        publish: true,
        mode: Mode::Rush,
    };
    let activity = activities::create(&mut conn, &new).await.map_err(err)?;
    seats::set_up(&mut conn, activity.id, &plan, None).await.map_err(err)?;
    let mut codes = Vec::with_capacity(openids.len());
    for openid in &openids {
        match tickets::book(&mut conn, &ActivityRef::Id(activity.id), openid, None).await.map_err(err)? {
            BookOutcome::Booked(t) => codes.push(t.code),
            other => return Err(format!("seeding the seats scenario: a booking answered {other:?}")),
        }
    }
    let _ = conn.close().await;

    // A fixed seed: the same aims every run, so runs compare.
    let mut rng = rand::rngs::StdRng::seed_from_u64(21);
    let best = BEST.min(keys.len());
    let expires = now.unix_timestamp() + 3600;
    let requests = openids
        .iter()
        .zip(&codes)
        .enumerate()
        .map(|(i, (openid, code))| {
            let seat = if i % 2 == 0 || best == keys.len() {
                &keys[rng.random_range(0..best)]
            } else {
                &keys[rng.random_range(best..keys.len())]
            };
            let (o, e, s) = links::sign_parts(secret, Purpose::ChooseSeat, openid, code, expires);
            let body = format!("o={o}&e={e}&s={s}&seat={}", urlencoding(seat));
            Request::Form { url: format!("{base}/tickets/{code}/seat"), body }
        })
        .collect();
    Ok((activity.id, requests))
}

/// A form value, percent-encoded (the seat keys hold Chinese zone names).
fn urlencoding(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn check_seats(db: &PgConnectOptions, activity_id: i64) -> Result<SeatCheck, String> {
    let mut conn = db.connect().await.map_err(|e| e.to_string())?;
    let (seated, seats_doubled, misplaced): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM tickets WHERE activity_id = $1 AND seat_id IS NOT NULL AND status <> 'cancelled'), \
         (SELECT count(*) FROM (SELECT seat_id FROM tickets WHERE activity_id = $1 AND seat_id IS NOT NULL \
             AND status <> 'cancelled' GROUP BY seat_id HAVING count(*) > 1) d), \
         (SELECT count(*) FROM tickets t JOIN activities a ON a.id = t.activity_id \
             JOIN hall_seats s ON s.id = t.seat_id WHERE t.activity_id = $1 AND (s.hall_id <> a.hall_id \
             OR EXISTS (SELECT 1 FROM seat_blocks b WHERE b.activity_id = $1 AND b.seat_id = s.id)))",
    )
    .bind(activity_id)
    .fetch_one(&mut conn)
    .await
    .map_err(|e| e.to_string())?;
    let _ = conn.close().await;
    Ok(SeatCheck { seated, seats_doubled, misplaced })
}

/// Cumulative database counters: transactions in this database, and WAL
/// records and flushes in the whole cluster (PostgreSQL 14+).
#[derive(Clone, Copy, Default)]
pub struct DbCounters {
    pub transactions: i64,
    pub wal_records: Option<i64>,
    pub wal_syncs: Option<i64>,
}

impl DbCounters {
    async fn read(db: &PgConnectOptions) -> Result<DbCounters, String> {
        let mut conn = db.connect().await.map_err(|e| e.to_string())?;
        let counters = read_counters(&mut conn).await;
        let _ = conn.close().await;
        counters
    }

    fn minus(self, before: &DbCounters) -> DbCounters {
        DbCounters {
            transactions: self.transactions - before.transactions,
            wal_records: self.wal_records.zip(before.wal_records).map(|(a, b)| a - b),
            wal_syncs: self.wal_syncs.zip(before.wal_syncs).map(|(a, b)| a - b),
        }
    }
}

async fn read_counters(conn: &mut PgConnection) -> Result<DbCounters, String> {
    let transactions: i64 = sqlx::query_scalar(
        "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| e.to_string())?;
    let wal: Option<(i64, i64)> = sqlx::query_as("SELECT wal_records::bigint, wal_sync::bigint FROM pg_stat_wal")
        .fetch_optional(conn)
        .await
        .ok()
        .flatten();
    Ok(DbCounters { transactions, wal_records: wal.map(|w| w.0), wal_syncs: wal.map(|w| w.1) })
}
