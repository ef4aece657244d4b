//! The admin login under attack, over HTTP: guessing one account, spraying
//! usernames, racing the throttle with parallel guesses, forging
//! `X-Forwarded-For`, flooding the hash during a ticket rush; and what ends a
//! session (a password change) and how its cookie is named.

use std::{
    io::Write,
    process::{Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use futures::future::join_all;
use reqwest::{Client, redirect::Policy};
use wechat_ticket::auth::throttle;

use crate::common::{
    Settings, TestApp,
    admin::PASSWORD,
    fixtures::Window,
    spawn_app, spawn_app_with,
    wx::{self, Reply},
};

const BIN: &str = env!("CARGO_BIN_EXE_wechat-ticket");
const ATTACKER: &str = "198.51.100.7";
const ADMIN_AT_HOME: &str = "203.0.113.5";

/// A client of its own: no cookies shared with anyone, redirects not followed.
fn client() -> Client {
    Client::builder().redirect(Policy::none()).build().unwrap()
}

fn behind_proxy() -> Settings {
    Settings::default().set("TRUSTED_PROXIES", "127.0.0.1")
}

struct Answer {
    status: u16,
    retry_after: Option<u64>,
    set_cookie: Option<String>,
    page: String,
}

/// Posts the login form, claiming to come from `forwarded_for` when given.
async fn login(app: &TestApp, http: &Client, forwarded_for: Option<&str>, username: &str, password: &str) -> Answer {
    let mut request = http.post(app.url("/admin/login")).form(&[("username", username), ("password", password)]);
    if let Some(address) = forwarded_for {
        request = request.header("x-forwarded-for", address);
    }
    let resp = request.send().await.unwrap();
    let header = |name: &str| resp.headers().get(name).map(|v| v.to_str().unwrap().to_string());
    let retry_after = header("retry-after").map(|v| v.parse().unwrap());
    let set_cookie = header("set-cookie");
    Answer { status: resp.status().as_u16(), retry_after, set_cookie, page: resp.text().await.unwrap() }
}

/// As if `secs` seconds had passed since every recorded failure.
async fn time_passes(app: &TestApp, secs: i32) {
    sqlx::query("UPDATE login_failures SET at = at - make_interval(secs => $1)")
        .bind(secs)
        .execute(&app.pool)
        .await
        .unwrap();
}

/// A refusal that checked no password and says when to come back.
fn assert_told_to_wait(answer: &Answer, secs: std::ops::RangeInclusive<u64>) -> u64 {
    assert_eq!(answer.status, 429, "{}", answer.page);
    let wait = answer.retry_after.expect("a Retry-After header");
    assert!(secs.contains(&wait), "waits {wait} s, expected {secs:?}");
    let said = if wait < 60 {
        format!("请 {wait} 秒后再试")
    } else {
        format!("请 {} 分钟后再试", wait.div_ceil(60))
    };
    assert!(answer.page.contains(&said), "the page says `{said}`: {}", answer.page);
    wait
}

#[tokio::test]
async fn thirty_wrong_passwords_from_one_address_never_lock_the_admin_out_elsewhere() {
    let app = spawn_app_with(behind_proxy()).await;
    app.add_admin("admin").await;
    let attacker = client();
    let mut checked = 0;
    for _ in 0..30 {
        let answer = login(&app, &attacker, Some(ATTACKER), "admin", "guess").await;
        match answer.status {
            401 => checked += 1,
            429 => {}
            other => panic!("HTTP {other}: {}", answer.page),
        }
    }
    assert_eq!(checked, throttle::FREE_FAILURES, "passwords checked for the attacker");
    // Even the right password is not checked from there now.
    assert_told_to_wait(&login(&app, &attacker, Some(ATTACKER), "admin", PASSWORD).await, 1..=5);

    let admin = login(&app, &client(), Some(ADMIN_AT_HOME), "admin", PASSWORD).await;
    assert_eq!(admin.status, 303, "{}", admin.page);
    assert!(admin.set_cookie.unwrap().starts_with("wt_admin="));
    let logged: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = '登录' AND detail = $1")
        .bind(format!("来自 {ADMIN_AT_HOME}"))
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(logged, 1, "the audit log says where the login came from");
}

#[tokio::test]
async fn each_further_guess_waits_twice_as_long_up_to_fifteen_minutes() {
    let app = spawn_app().await;
    app.add_admin("admin").await;
    let http = client();
    let guess = || login(&app, &http, None, "admin", "guess");
    for _ in 0..5 {
        assert_eq!(guess().await.status, 401);
    }
    // The wait counts from when an attempt began, so a slow hash shortens what is left of it.
    let wait = assert_told_to_wait(&login(&app, &http, None, "admin", PASSWORD).await, 2..=5);

    // Once, the real clock: after the wait one more guess is checked, and the next wait is twice as long.
    tokio::time::sleep(Duration::from_secs(wait)).await;
    assert_eq!(guess().await.status, 401);
    assert_told_to_wait(&guess().await, 7..=10);
    time_passes(&app, 10).await;
    assert_eq!(guess().await.status, 401);
    assert_told_to_wait(&guess().await, 17..=20);

    // However many guesses, the wait stops growing at 15 minutes.
    for _ in 0..8 {
        time_passes(&app, 900).await;
        assert_eq!(guess().await.status, 401);
    }
    assert_told_to_wait(&guess().await, 897..=900);

    // The admin who waited logs in, and their mistakes are forgiven.
    time_passes(&app, 900).await;
    let admin = login(&app, &app.http, None, "admin", PASSWORD).await;
    assert_eq!(admin.status, 303, "{}", admin.page);
    assert_eq!(app.count("SELECT count(*) FROM login_failures").await, 0);
    assert_eq!(app.get("/admin").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guesses_do_not_slip_past_the_limit() {
    let app = spawn_app().await;
    app.add_admin("admin").await;
    let http = client();
    let statuses = |answers: Vec<Answer>| answers.into_iter().map(|a| a.status).collect::<Vec<_>>();

    let (app, http) = (&app, &http);
    let guesses = (0..50).map(|i| async move { login(app, http, None, "admin", &format!("guess{i}")).await });
    let answers = statuses(join_all(guesses).await);
    let checked = answers.iter().filter(|s| **s == 401).count() as i64;
    assert_eq!(checked, throttle::FREE_FAILURES, "{answers:?}");
    assert!(answers.iter().all(|s| [401, 429].contains(s)), "{answers:?}");
    assert_eq!(app.count("SELECT count(*) FROM login_failures").await, throttle::FREE_FAILURES);

    // Spraying usernames from one address in parallel stops at the address's ceiling.
    let sprayed = (0..50).map(|i| async move { login(app, http, None, &format!("user{i}"), "x").await });
    let answers = statuses(join_all(sprayed).await);
    let checked = answers.iter().filter(|s| **s == 401).count() as i64;
    assert_eq!(checked, throttle::PER_ADDRESS - throttle::FREE_FAILURES, "{answers:?}");
    assert_eq!(app.count("SELECT count(*) FROM login_failures").await, throttle::PER_ADDRESS);
    let answer = login(app, http, None, "someone", "x").await;
    assert_told_to_wait(&answer, 1..=(throttle::ADDRESS_WINDOW_MINUTES as u64 * 60));
}

#[tokio::test]
async fn forwarded_for_counts_only_from_a_trusted_proxy() {
    // By default nobody is a proxy: the loopback test client's forged header changes nothing.
    let app = spawn_app().await;
    app.add_admin("admin").await;
    let http = client();
    for i in 1..=5 {
        assert_eq!(login(&app, &http, Some(&format!("198.51.100.{i}")), "admin", "guess").await.status, 401);
    }
    assert_eq!(login(&app, &http, Some(ADMIN_AT_HOME), "admin", PASSWORD).await.status, 429);
    let addresses: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT address FROM login_failures").fetch_all(&app.pool).await.unwrap();
    assert_eq!(addresses, ["127.0.0.1"]);

    // Behind a trusted proxy the address it appended counts; what the client wrote before it does not.
    let app = spawn_app_with(behind_proxy()).await;
    app.add_admin("admin").await;
    for i in 1..=5 {
        let claimed = format!("203.0.113.{i}, {ATTACKER}");
        assert_eq!(login(&app, &http, Some(&claimed), "admin", "guess").await.status, 401);
    }
    let dodge = format!("{ADMIN_AT_HOME}, {ATTACKER}");
    assert_eq!(login(&app, &http, Some(&dodge), "admin", PASSWORD).await.status, 429);
    let admin = format!("{ATTACKER}, {ADMIN_AT_HOME}");
    assert_eq!(login(&app, &http, Some(&admin), "admin", PASSWORD).await.status, 303);

    // An IPv6 attacker has a whole /64: it counts as one address.
    for i in 1..=5 {
        assert_eq!(login(&app, &http, Some(&format!("2001:db8:1:2::{i:x}")), "admin", "guess").await.status, 401);
    }
    let same_64 = "2001:db8:1:2:ffff:ffff:ffff:9";
    assert_eq!(login(&app, &http, Some(same_64), "admin", PASSWORD).await.status, 429);
    assert_eq!(login(&app, &http, Some("2001:db8:1:3::1"), "admin", PASSWORD).await.status, 303);
}

#[test]
fn a_bad_trusted_proxies_value_stops_the_start_and_names_the_variable() {
    let dir = std::env::temp_dir().join(format!("wt-proxies-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = Command::new(BIN)
        .current_dir(&dir)
        .env_remove("DATABASE_URL")
        .env("DATA_DIR", &dir)
        .env("TRUSTED_PROXIES", "127.0.0.1, nginx")
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve started despite TRUSTED_PROXIES=nginx");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!status.success());
    assert!(stderr.contains("TRUSTED_PROXIES") && stderr.contains("`nginx`"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_password_ends_every_session_of_that_admin() {
    let app = spawn_app().await;
    app.login_admin("alice").await;
    app.add_admin("bob").await;
    let bob = Client::builder().redirect(Policy::none()).cookie_store(true).build().unwrap();
    assert_eq!(login(&app, &bob, None, "bob", PASSWORD).await.status, 303);
    assert_eq!(app.get("/admin").await.status(), 200);

    // The operator sets a new password from the shell, as they would after a leak.
    let mut cli = Command::new(BIN)
        .env("DATABASE_URL", app.database_url())
        .args(["admin", "add", "alice"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    cli.stdin.take().unwrap().write_all(b"a brand new password\n").unwrap();
    let out = cli.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let resp = app.get("/admin").await;
    assert_eq!(resp.status(), 303, "the old cookie opens nothing");
    assert_eq!(resp.headers()["location"], "/admin/login");
    assert_eq!(bob.get(app.url("/admin")).send().await.unwrap().status(), 200, "other admins stay logged in");
    assert_eq!(login(&app, &client(), None, "alice", PASSWORD).await.status, 401);
    assert_eq!(login(&app, &client(), None, "alice", "a brand new password").await.status, 303);
}

#[tokio::test]
async fn over_https_the_session_cookie_is_host_only() {
    let app = spawn_app_with(Settings::default().set("PUBLIC_URL", "https://ticket.example.edu")).await;
    app.add_admin("admin").await;
    let answer = login(&app, &client(), None, "admin", PASSWORD).await;
    assert_eq!(answer.status, 303);
    let set_cookie = answer.set_cookie.unwrap();
    let value = set_cookie.strip_prefix("__Host-wt_admin=").expect(&set_cookie).split(';').next().unwrap();
    let attributes: Vec<&str> = set_cookie.split(';').skip(1).map(str::trim).collect();
    for wanted in ["Secure", "Path=/", "HttpOnly", "SameSite=Lax"] {
        assert!(attributes.contains(&wanted), "{wanted}: {set_cookie}");
    }
    assert!(!set_cookie.to_ascii_lowercase().contains("domain"), "{set_cookie}");

    let admin_page = |cookie: String| {
        let app = &app;
        async move { client().get(app.url("/admin")).header("cookie", cookie).send().await.unwrap().status() }
    };
    assert_eq!(admin_page(format!("__Host-wt_admin={value}")).await, 200);
    assert_eq!(admin_page(format!("wt_admin={value}")).await, 303, "the unprefixed name is not read");

    // Over plain http the cookie has its plain name, and only that is read.
    let app = spawn_app().await;
    app.add_admin("admin").await;
    let set_cookie = login(&app, &client(), None, "admin", PASSWORD).await.set_cookie.unwrap();
    let value = set_cookie.strip_prefix("wt_admin=").expect(&set_cookie).split(';').next().unwrap();
    assert!(!set_cookie.contains("Secure"), "{set_cookie}");
    let admin_page = |cookie: String| {
        let app = &app;
        async move { client().get(app.url("/admin")).header("cookie", cookie).send().await.unwrap().status() }
    };
    assert_eq!(admin_page(format!("wt_admin={value}")).await, 200);
    assert_eq!(admin_page(format!("__Host-wt_admin={value}")).await, 303);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_during_a_rush_leaves_the_students_answered_in_time() {
    let app = spawn_app_with(behind_proxy()).await;
    app.add_admin("admin").await;
    let activity = app.activity("flood", 50, Window::Open).await;
    let students = app.bound_students(1, 600).await;
    let http = client();

    // 120 bad logins at once from 120 addresses: none is throttled, so every one is hashed.
    let flood_over = AtomicBool::new(false);
    let addresses: Vec<String> = (0..120).map(|i| format!("198.51.{}.{}", 100 + i / 100, 1 + i % 100)).collect();
    let flood = async {
        let answers = join_all(addresses.iter().map(|a| login(&app, &http, Some(a), "admin", "wrong password"))).await;
        flood_over.store(true, Ordering::SeqCst);
        answers
    };
    // Students press 抢票 in waves for as long as the flood lasts.
    let rush = async {
        let mut replies = Vec::new();
        for wave in students.chunks(25) {
            if flood_over.load(Ordering::SeqCst) {
                break;
            }
            let clicks = wave.iter().map(|openid| {
                let xml = wx::click(openid, &format!("BOOK_{}", activity.id));
                let app = &app;
                async move {
                    let sent = Instant::now();
                    let reply = app.post_wechat(&xml).await;
                    (sent.elapsed(), reply)
                }
            });
            replies.extend(join_all(clicks).await);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        replies
    };
    let started = Instant::now();
    let (flood, rush) = tokio::join!(flood, rush);
    let all_done = started.elapsed();

    let slowest = rush.iter().map(|(took, _)| *took).max().unwrap();
    println!("{} clicks during 120 bad logins: slowest reply {slowest:?}, flood over in {all_done:?}", rush.len());
    let (mut booked, mut sold_out, mut other) = (0, 0, Vec::new());
    for (_, (status, body)) in &rush {
        match Reply::parse(body) {
            Reply::News { title, .. } if *status == 200 && title.contains("抢票成功") => booked += 1,
            Reply::Text(text) if *status == 200 && text.contains("票已经抢完") => sold_out += 1,
            reply => other.push(format!("HTTP {status}: {reply:?}")),
        }
    }
    assert!(other.is_empty(), "never the busy text: {:?}", &other[..other.len().min(5)]);
    assert!(slowest < Duration::from_secs(4), "slowest /wechat reply took {slowest:?}");
    assert!(flood.iter().all(|a| a.status == 401), "every bad login was checked and refused");
    assert!(rush.len() >= 50, "only {} clicks were sent while the flood lasted", rush.len());
    assert_eq!((booked, sold_out), (50, rush.len() - 50));
    assert_eq!(app.live_tickets(activity.id).await, 50);
}

#[tokio::test]
async fn housekeeping_forgets_failures_a_day_old() {
    let app = spawn_app().await;
    sqlx::query(
        "INSERT INTO login_failures (username, address, at) \
         VALUES ('admin', '198.51.100.7', now() - interval '25 hours'), ('admin', '198.51.100.7', now() - interval '1 hour')",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    assert_eq!(wechat_ticket::schedule::tidy(&app.pool).await.unwrap(), 1);
    assert_eq!(app.count("SELECT count(*) FROM login_failures").await, 1, "the hour-old failure stays");

    // The delete has an index to use, however large the table grows.
    let mut tx = app.pool.begin().await.unwrap();
    sqlx::query("SET LOCAL enable_seqscan = off").execute(&mut *tx).await.unwrap();
    let plan: Vec<String> =
        sqlx::query_scalar("EXPLAIN DELETE FROM login_failures WHERE at < now() - make_interval(hours => 24)")
            .fetch_all(&mut *tx)
            .await
            .unwrap();
    tx.rollback().await.unwrap();
    assert!(plan.iter().any(|line| line.contains("login_failures_age")), "{plan:?}");
}
