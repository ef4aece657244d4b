//! The database goes away in the middle of a rush, and the app carries on.
//!
//! Both tests run the `wechat-ticket` binary as the operator does, on a
//! PostgreSQL of their own (the harness's cluster is shared by every test in
//! this process and must not go down): the managed cluster under `DATA_DIR`,
//! killed with `kill -9`; and an external server (`DATABASE_URL`), restarted.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use sqlx::{ConnectOptions, PgConnection, postgres::PgConnectOptions};
use time::OffsetDateTime;
use wechat_ticket::{
    bot::replies::BUSY,
    db::{self, Durability, LocalCluster},
};

use crate::{
    common::{
        TOKEN,
        wx::{self, Reply},
    },
    serve_binary::{BIN, Server, free_port, terminate, wait_healthy},
};

/// More than the rush reaches: it stops a little after the server is back.
const STUDENTS: usize = 2000;
/// Places enough for everyone: a student without a ticket at the end lost one to the outage.
const CAPACITY: i32 = 2500;
/// One delivery every this long, 125 a second.
const PACE: Duration = Duration::from_millis(8);
const TROUBLE_AT: Duration = Duration::from_millis(1000);
/// How long the rush goes on once the server is back.
const AFTERWARDS: Duration = Duration::from_millis(700);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_managed_postgres_is_restarted_mid_rush_and_no_booking_is_lost() {
    let data = tempdir("crash");
    let _leftovers = Leftovers::of(&data, "postgres");
    let (port, metrics_port) = (free_port(), free_port());
    let metrics_listen = format!("127.0.0.1:{metrics_port}");
    let server = serve(&data, port, &[("METRICS_LISTEN", &metrics_listen)]);
    wait_healthy(port).await;
    let base = format!("http://127.0.0.1:{port}");
    let cluster = data.join("postgres");
    let db = db::local_options(&cluster, db::LOCAL_DATABASE);
    let activity = prepare(&db, "crash").await;
    let first_pid = postmaster_pid(&cluster).expect("serve runs its PostgreSQL");

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let deliveries = tokio::spawn(rush(base.clone(), activity, "crash", stopped));
    tokio::time::sleep(TROUBLE_AT).await;
    // SAFETY: a signal to the postmaster this test's server started.
    assert_eq!(unsafe { libc::kill(first_pid, libc::SIGKILL) }, 0);
    let killed = Instant::now();
    let outage = watch_healthz(&base).await;
    tokio::time::sleep(AFTERWARDS).await;
    stop.send_replace(true);
    let deliveries = deliveries.await.unwrap();
    let log = || server_log(&data);

    // /healthz noticed within a second or two, said why, and was fine again soon.
    let (noticed, why) =
        outage.first_503.unwrap_or_else(|| panic!("/healthz never said the database was down\n{}", log()));
    assert!(noticed - killed < Duration::from_secs(2), "noticed after {:?}\n{}", noticed - killed, log());
    assert!(why.starts_with("database down since ") && why.contains("restarting (attempt "), "{why}");
    let back = outage.back.unwrap_or_else(|| panic!("/healthz never came back\n{}", log()));
    assert!(back - killed < Duration::from_secs(10), "back after {:?}\n{}", back - killed, log());
    let second_pid = postmaster_pid(&cluster).expect("a postmaster again");
    assert_ne!(second_pid, first_pid, "a new server was started");

    // During the outage every student was told to try again, quickly.
    let busy: Vec<&Delivery> = deliveries.iter().filter(|d| d.reply == Outcome::Busy).collect();
    assert!(!busy.is_empty(), "the rush saw no outage: {}", tally(&deliveries));
    let slowest = busy.iter().map(|d| d.took).max().unwrap();
    assert!(slowest < Duration::from_secs(1), "a busy reply took {slowest:?}: {}", tally(&deliveries));
    assert_only_booked_or_busy(&deliveries, &log);
    let booked_after_outage = deliveries.iter().filter(|d| d.reply == Outcome::Booked && d.sent > back).count();
    assert!(booked_after_outage > 0, "nothing booked after the restart: {}", tally(&deliveries));

    assert_every_retry_books_and_places_add_up(&base, &db, activity, &deliveries).await;

    // The operator's scrape saw it too: one restart, and the busy answers by why.
    let (_, metrics) =
        crate::metrics::scrape(&reqwest::Client::new(), &format!("http://{metrics_listen}/metrics")).await;
    assert_eq!(metrics.value("wechat_ticket_database_restarts_total", &[]), 1.0);
    let answered_busy: f64 = ["database_down", "busy", "error", "deadline"]
        .iter()
        .map(|outcome| metrics.value("wechat_ticket_wechat_messages_total", &[("outcome", outcome)]))
        .sum();
    assert!(answered_busy >= busy.len() as f64, "{answered_busy} counted busy, {} seen", busy.len());

    terminate(server);
    assert!(postmaster_pid(&cluster).is_none(), "stopping the app stops the restarted server; nothing starts it again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_external_server_restarted_mid_rush_is_survived() {
    let dir = tempdir("external");
    let _leftovers = Leftovers::of(&dir, "pg");
    let cluster = LocalCluster::new(&dir.join("pg"), Durability::Throwaway).and_then(LocalCluster::start).unwrap();
    let socket = cluster.socket_dir().to_path_buf();
    cluster.stop_and_remove_when_process_exits().unwrap();
    let admin = db::local_options(&socket, "postgres");
    db::create_database_if_missing(admin, "wt_external").await.unwrap();
    let url = format!("postgres://postgres@localhost/wt_external?host={}", socket.display());

    let port = free_port();
    let server = serve(&dir, port, &[("DATABASE_URL", &url)]);
    wait_healthy(port).await;
    let base = format!("http://127.0.0.1:{port}");
    let db = db::local_options(&socket, "wt_external");
    let activity = prepare(&db, "external").await;

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let deliveries = tokio::spawn(rush(base.clone(), activity, "external", stopped));
    tokio::time::sleep(TROUBLE_AT).await;
    // What `pg_ctl restart -m fast` does: a fast shutdown, then a start.
    let pid = postmaster_pid(&socket).unwrap();
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while postmaster_pid(&socket).is_some() {
        assert!(Instant::now() < deadline, "the server did not shut down");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let restarted = tokio::task::spawn_blocking({
        let dir = socket.clone();
        move || LocalCluster::new(&dir, Durability::Throwaway).and_then(LocalCluster::start)
    });
    restarted.await.unwrap().unwrap().stop_and_remove_when_process_exits().unwrap();
    wait_healthy(port).await;
    tokio::time::sleep(AFTERWARDS).await;
    stop.send_replace(true);
    let deliveries = deliveries.await.unwrap();
    let log = || server_log(&dir);

    assert_only_booked_or_busy(&deliveries, &log);
    let slowest = deliveries.iter().map(|d| d.took).max().unwrap();
    assert!(slowest < Duration::from_millis(4500), "a reply took {slowest:?}, past WeChat's 5 s");
    let last = deliveries.iter().max_by_key(|d| d.sent).unwrap();
    assert_eq!(last.reply, Outcome::Booked, "the last of the rush was booked again: {}", tally(&deliveries));

    assert_every_retry_books_and_places_add_up(&base, &db, activity, &deliveries).await;
    terminate(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serves_sharing_a_cluster_start_it_once_after_a_crash() {
    let data = tempdir("shared");
    let _leftovers = Leftovers::of(&data, "postgres");
    let (one, two) = (free_port(), free_port());
    let first = serve(&data, one, &[]);
    wait_healthy(one).await;
    let second = serve_logged(&data, two, &[], "serve-2.log");
    wait_healthy(two).await;
    let cluster = data.join("postgres");
    let pid = postmaster_pid(&cluster).unwrap();

    // Holding the start lock keeps both supervisors waiting to start it, so
    // both see it down and then race for it the moment the lock is free.
    let lock = std::fs::File::open(cluster.join("wechat-ticket.start.lock")).unwrap();
    assert_eq!(unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) }, 0);
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    for port in [one, two] {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let said = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await.unwrap().text().await.unwrap();
            if said.starts_with("database down since") {
                break;
            }
            assert!(Instant::now() < deadline, "port {port} never said the database was down: {said}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    drop(lock);
    wait_healthy(one).await;
    wait_healthy(two).await;
    let logs = [logged(&data, "serve.log"), logged(&data, "serve-2.log")];
    let said = |what: &str| logs.iter().map(|log| log.matches(what).count()).sum::<usize>();
    assert_eq!(said("started_by=\"this process\""), 1, "one of them started it\n{}", logs.join("\n"));
    assert_eq!(said("started_by=\"another process\""), 1, "the other found it running\n{}", logs.join("\n"));
    assert_eq!(said("could not start"), 0, "no start was refused\n{}", logs.join("\n"));
    assert_ne!(postmaster_pid(&cluster), Some(pid));

    terminate(first);
    assert!(postmaster_pid(&cluster).is_some(), "the other serve still uses it");
    wait_healthy(two).await;
    terminate(second);
    assert!(postmaster_pid(&cluster).is_none(), "the last one out stopped it");
}

/// The binary, serving on `port`, its log in `data/serve.log`.
fn serve(data: &Path, port: u16, env: &[(&str, &str)]) -> Server {
    serve_logged(data, port, env, "serve.log")
}

fn serve_logged(data: &Path, port: u16, env: &[(&str, &str)], log: &str) -> Server {
    let log = std::fs::File::create(data.join(log)).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.env_remove("DATABASE_URL")
        .env("DATA_DIR", data)
        .env("LISTEN", format!("127.0.0.1:{port}"))
        .env("WECHAT_TOKEN", TOKEN)
        .env("RUST_LOG", "warn")
        // Plain text, so a test can read what it says.
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(log);
    cmd.envs(env.iter().copied());
    Server(Some(cmd.spawn().expect("run wechat-ticket")))
}

fn server_log(data: &Path) -> String {
    logged(data, "serve.log")
}

fn logged(data: &Path, log: &str) -> String {
    let text = std::fs::read_to_string(data.join(log)).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(40).collect();
    format!("server log (last lines):\n{}", lines.into_iter().rev().collect::<Vec<_>>().join("\n"))
}

fn postmaster_pid(cluster: &Path) -> Option<i32> {
    std::fs::read_to_string(cluster.join("postmaster.pid")).ok()?.lines().next()?.trim().parse().ok()
}

/// An open activity and the bound students of `group`; returns the activity's id.
async fn prepare(db: &PgConnectOptions, group: &str) -> i64 {
    let mut conn = db.connect().await.unwrap();
    let now = OffsetDateTime::now_utc();
    let hour = time::Duration::hours(1);
    let new = wechat_ticket::booking::NewActivity {
        key: group.into(),
        name: "新年音乐会".into(),
        place: "新清华学堂".into(),
        description: String::new(),
        book_start: now - hour,
        book_end: now + hour,
        start_at: now + 2 * hour,
        end_at: now + 3 * hour,
        capacity: CAPACITY,
        publish: true,
        mode: Default::default(),
    };
    let activity = wechat_ticket::booking::activities::create(&mut conn, &new).await.unwrap();
    let (openids, ids) = students(group, STUDENTS + 1);
    sqlx::query(
        "INSERT INTO students (openid, student_id, bound_at) SELECT *, now() FROM unnest($1::text[], $2::text[])",
    )
    .bind(&openids)
    .bind(&ids)
    .execute(&mut conn)
    .await
    .unwrap();
    activity.id
}

/// (openids, student IDs); the last student is kept out of the rush.
fn students(group: &str, n: usize) -> (Vec<String>, Vec<String>) {
    ((0..n).map(|i| format!("{group}_{i}")).collect(), (0..n).map(|i| format!("{:010}", i)).collect())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Booked,
    Busy,
    Other,
}

struct Delivery {
    openid: String,
    xml: String,
    sent: Instant,
    took: Duration,
    reply: Outcome,
    raw: String,
}

async fn post(http: &reqwest::Client, base: &str, xml: &str) -> (Outcome, String) {
    let sent = http
        .post(format!("{base}/wechat?{}", wx::signed_query()))
        .header("content-type", "text/xml")
        .body(xml.to_string())
        .send()
        .await;
    let (status, body) = match sent {
        Ok(resp) => (resp.status().as_u16(), resp.text().await.unwrap_or_default()),
        Err(e) => return (Outcome::Other, format!("no reply: {e}")),
    };
    if status != 200 {
        return (Outcome::Other, format!("HTTP {status}: {body}"));
    }
    let outcome = match Reply::parse(&body) {
        Reply::News { title, .. } if title.contains("抢票成功") => Outcome::Booked,
        Reply::Text(text) if text == BUSY => Outcome::Busy,
        _ => Outcome::Other,
    };
    (outcome, body)
}

fn client() -> reqwest::Client {
    wechat_ticket::install_crypto_provider();
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap()
}

/// Students click "book" once each, one every [`PACE`] until `stop`, each on
/// its own task so a slow reply holds up no other.
async fn rush(base: String, activity: i64, group: &str, stop: tokio::sync::watch::Receiver<bool>) -> Vec<Delivery> {
    let http = client();
    let (openids, _) = students(group, STUDENTS);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (i, openid) in openids.into_iter().enumerate() {
        tokio::time::sleep_until((start + PACE * i as u32).into()).await;
        if *stop.borrow() {
            break;
        }
        let (http, base) = (http.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            let xml = wx::click(&openid, &format!("BOOK_{activity}"));
            let sent = Instant::now();
            let (reply, raw) = post(&http, &base, &xml).await;
            Delivery { openid, xml, sent, took: sent.elapsed(), reply, raw }
        }));
    }
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

struct Outage {
    /// When /healthz first answered 503 saying why, and what it said.
    first_503: Option<(Instant, String)>,
    /// When it answered 200 again after that.
    back: Option<Instant>,
}

async fn watch_healthz(base: &str) -> Outage {
    let http = client();
    let mut outage = Outage { first_503: None, back: None };
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(resp) = http.get(format!("{base}/healthz")).send().await {
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap_or_default();
            match (status, &outage.first_503) {
                // Before the supervisor looks, a failed probe says only "database unavailable".
                (503, None) if body.starts_with("database down since") => {
                    outage.first_503 = Some((Instant::now(), body))
                }
                (200, Some(_)) => {
                    // Then what it knows of the backups (tests/it/backups.rs).
                    assert_eq!(body.lines().next(), Some("ok"), "{body}");
                    outage.back = Some(Instant::now());
                    break;
                }
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    outage
}

fn tally(deliveries: &[Delivery]) -> String {
    let count = |o| deliveries.iter().filter(|d| d.reply == o).count();
    format!("{} booked, {} busy, {} other", count(Outcome::Booked), count(Outcome::Busy), count(Outcome::Other))
}

fn assert_only_booked_or_busy(deliveries: &[Delivery], log: &dyn Fn() -> String) {
    let other: Vec<&str> = deliveries.iter().filter(|d| d.reply == Outcome::Other).map(|d| d.raw.as_str()).collect();
    assert!(other.is_empty(), "{}: {:?}\n{}", tally(deliveries), &other[..other.len().min(3)], log());
}

/// WeChat delivers a message again when the first reply was busy: each retry
/// books (or finds the booking the busy reply hid), every student then holds
/// exactly one ticket, every place is a ticket or free, and a student who was
/// not in the rush books at once.
async fn assert_every_retry_books_and_places_add_up(
    base: &str,
    db: &PgConnectOptions,
    activity: i64,
    deliveries: &[Delivery],
) {
    let http = client();
    for d in deliveries.iter().filter(|d| d.reply == Outcome::Busy) {
        let (reply, raw) = post(&http, base, &d.xml).await;
        assert_eq!(reply, Outcome::Booked, "{}'s retry: {raw}", d.openid);
    }
    let mut conn: PgConnection = db.connect().await.unwrap();
    let per_student: HashMap<String, i64> = sqlx::query_as(
        "SELECT s.openid, count(t.id) FROM students s \
         LEFT JOIN tickets t ON t.student_id = s.student_id AND t.activity_id = $1 AND t.status <> 'cancelled' \
         GROUP BY s.openid",
    )
    .bind(activity)
    .fetch_all(&mut conn)
    .await
    .unwrap()
    .into_iter()
    .collect();
    for d in deliveries {
        assert_eq!(per_student.get(&d.openid), Some(&1), "{} holds one ticket", d.openid);
    }
    let live: i64 = per_student.values().sum();
    let remaining: i64 =
        sqlx::query_scalar("SELECT coalesce(sum(remaining), 0) FROM activity_slots WHERE activity_id = $1")
            .bind(activity)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(live as usize, deliveries.len());
    assert_eq!(live + remaining, CAPACITY as i64, "every place is either a live ticket or free");

    let (openids, _) = students(deliveries[0].openid.split('_').next().unwrap(), STUDENTS + 1);
    let newcomer = openids.last().unwrap();
    let (reply, raw) = post(&http, base, &wx::click(newcomer, &format!("BOOK_{activity}"))).await;
    assert_eq!(reply, Outcome::Booked, "a new booking after the outage: {raw}");
}

/// Removes a test's directory, stopping the PostgreSQL left in it: a test that
/// fails half-way has its `serve` killed, which leaves the server running.
struct Leftovers {
    dir: PathBuf,
    cluster: PathBuf,
}

impl Leftovers {
    fn of(dir: &Path, cluster: &str) -> Leftovers {
        Leftovers { dir: dir.to_path_buf(), cluster: dir.join(cluster) }
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        if let Some(pid) = postmaster_pid(&self.cluster) {
            // SIGQUIT: immediate shutdown; the data is thrown away next.
            unsafe { libc::kill(pid, libc::SIGQUIT) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while postmaster_pid(&self.cluster).is_some() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn tempdir(what: &str) -> PathBuf {
    use std::hash::{BuildHasher, RandomState};
    let suffix = RandomState::new().hash_one(Instant::now()) % 1_000_000;
    let dir = std::env::temp_dir().join(format!("wt-{what}-{}-{suffix}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
