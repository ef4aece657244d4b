//! `serve --demo` as an operator runs it: the real binary, three times on one
//! database. The demo shows its five states after each run (the lottery until
//! it is drawn, and then its draw stays), the admin's password is printed once
//! and logs in, and nothing is duplicated. The play's seats can be chosen.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use time::OffsetDateTime;
use wechat_ticket::booking::{
    activities,
    lottery::{self, DrawOutcome, EntryOutcome, Mode},
    seats::{self, Choice, ChooseOutcome},
    tickets::{self, CancelOutcome, TicketRef},
};

use crate::{
    common::{TestApp, admin::csrf_in, spawn_app},
    serve_binary::{BIN, Server, free_port, terminate, wait_healthy},
};

/// A running `serve --demo` and what it printed up to "listening".
struct DemoRun {
    server: Server,
    port: u16,
    printed: Vec<String>,
}

async fn serve_demo(app: &TestApp) -> DemoRun {
    let port = free_port();
    let mut child = Command::new(BIN)
        .env("DATABASE_URL", app.database_url())
        .env("LISTEN", format!("127.0.0.1:{port}"))
        .env_remove("PUBLIC_URL")
        .env_remove("WECHAT_TOKEN")
        .env("RUST_LOG", "warn")
        .args(["serve", "--demo"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run wechat-ticket serve --demo");
    let stdout = child.stdout.take().unwrap();
    let server = Server(Some(child));
    // Keep draining stdout for the server's whole life: a closed pipe would fail its prints.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut printed = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).unwrap_or_else(|_| panic!("no `listening` line; printed: {printed:#?}"));
        let listening = line.contains("listening on");
        printed.push(line);
        if listening {
            break;
        }
    }
    wait_healthy(port).await;
    DemoRun { server, port, printed }
}

fn printed_password(printed: &[String]) -> Option<String> {
    let line = printed.iter().find(|l| l.starts_with("demo admin:") && l.contains("password `"))?;
    Some(line.split("password `").nth(1)?.split('`').next()?.to_string())
}

/// What the database says about the demo, checked the same after every run.
struct DemoState {
    ids: Vec<(String, i64)>,
    demo_students: i64,
    tickets: i64,
}

async fn assert_demo_states(app: &TestApp) -> DemoState {
    let mut conn = app.pool.acquire().await.unwrap();
    let now = OffsetDateTime::now_utc();
    let demo: Vec<_> =
        activities::all(&mut conn).await.unwrap().into_iter().filter(|a| a.key.starts_with("demo-")).collect();
    assert_eq!(demo.len(), 5, "exactly five demo activities: {demo:#?}");
    assert!(demo.iter().all(|a| a.is_published()), "{demo:#?}");
    let find = |key: &str| demo.iter().find(|a| a.key == key).unwrap_or_else(|| panic!("no {key}"));

    let open = find("demo-concert");
    assert!(open.book_start <= now && now < open.book_end && open.remaining > 0, "open now: {open:#?}");

    let soon = find("demo-lecture");
    let opens_in = (soon.book_start - now).whole_seconds();
    assert!((8 * 60..=10 * 60).contains(&opens_in), "opens in about ten minutes, not {opens_in} s: {soon:#?}");

    let sold_out = find("demo-workshop");
    let live: i64 = sqlx::query_scalar("SELECT count(*) FROM tickets WHERE activity_id = $1 AND status <> 'cancelled'")
        .bind(sold_out.id)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(sold_out.remaining, 0, "{sold_out:#?}");
    assert_eq!(live, i64::from(sold_out.capacity), "every place taken by a live ticket");
    assert!(sold_out.book_start <= now && now < sold_out.book_end, "booking open, so students meet 已抢完");

    let drawing = find("demo-lottery");
    assert_eq!(drawing.mode, Mode::Lottery, "{drawing:#?}");
    let state = lottery::state(&mut conn, drawing.id).await.unwrap().expect("a commitment made at publish");
    assert_eq!(state.commitment.len(), 64, "{}", state.commitment);
    if state.drawn_at.is_none() {
        let closes_in = (drawing.book_end - now).whole_seconds();
        assert!(drawing.book_start <= now, "registration open: {drawing:#?}");
        assert!((13 * 60..=15 * 60).contains(&closes_in), "drawn in about fifteen minutes, not {closes_in} s");
        assert!(drawing.start_at - drawing.book_end > time::Duration::days(3), "the concert itself is days later");
    }

    let play = find("demo-seats");
    assert!(play.book_start <= now && now < play.book_end && play.remaining > 0, "open now: {play:#?}");
    let (seating, hall, seats_in_hall): (String, String, i64) = sqlx::query_as(
        "SELECT a.seating, h.name, (SELECT count(*) FROM hall_seats s WHERE s.hall_id = h.id) \
         FROM activities a JOIN halls h ON h.id = a.hall_id WHERE a.id = $1",
    )
    .bind(play.id)
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert_eq!((seating.as_str(), hall.as_str(), seats_in_hall), ("seat", "小剧场（演示）", 56));
    assert_eq!(play.capacity, 56, "the hall decides the capacity");
    assert_eq!(app.count("SELECT count(*) FROM halls").await, 1, "the hall is imported once");

    let mut ids: Vec<_> = demo.iter().map(|a| (a.key.clone(), a.id)).collect();
    ids.sort();
    DemoState {
        ids,
        demo_students: app.count("SELECT count(*) FROM students WHERE openid LIKE 'demo-student-%'").await,
        tickets: app.count("SELECT count(*) FROM tickets").await,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_demo_three_times_shows_five_states_and_duplicates_nothing() {
    let app = spawn_app().await;
    // An activity of the organiser's own, which the demo must leave alone.
    app.activity("own", 50, crate::common::fixtures::Window::Open).await;

    let first = serve_demo(&app).await;
    let printed = first.printed.join("\n");
    let password = printed_password(&first.printed).unwrap_or_else(|| panic!("a password line: {printed}"));
    for key in ["demo-concert", "demo-lecture", "demo-workshop", "demo-lottery", "demo-seats"] {
        assert!(printed.contains(key), "the summary names {key}: {printed}");
    }
    assert!(
        printed.contains("话剧《雷雨》: booking open until") && printed.contains("56 of 56 seats left"),
        "{printed}"
    );
    assert!(printed.contains("sold out (20/20)") && printed.contains("booking opens"), "{printed}");
    assert!(printed.contains("lottery open until") && printed.contains("0 registered for 50 places"), "{printed}");

    // The printed password logs in through the real form, and the console shows the demo.
    let http =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).cookie_store(true).build().unwrap();
    let base = format!("http://127.0.0.1:{}", first.port);
    let login = http
        .post(format!("{base}/admin/login"))
        .form(&[("username", "admin"), ("password", password.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303, "logged in");
    assert_eq!(login.headers()["location"], "/admin");
    let console = http.get(format!("{base}/admin")).send().await.unwrap().text().await.unwrap();
    assert!(csrf_in(&console).is_some(), "a session with a CSRF token: {console}");
    assert!(console.contains("陶艺体验工作坊") && console.contains("人工智能前沿讲座"), "{console}");
    assert!(console.contains("20 / 20") || console.contains("20/20"), "the sold-out one looks sold out: {console}");
    // The lottery's public page shows its commitment before anyone registers.
    let lottery_id =
        activities::by_key(&mut app.pool.acquire().await.unwrap(), "demo-lottery").await.unwrap().unwrap().id;
    let commitment =
        lottery::state(&mut app.pool.acquire().await.unwrap(), lottery_id).await.unwrap().unwrap().commitment;
    let draw_page = http.get(format!("{base}/activities/{lottery_id}/draw")).send().await.unwrap();
    assert_eq!(draw_page.status(), 200);
    let draw_page = draw_page.text().await.unwrap();
    assert!(draw_page.contains(&commitment) && draw_page.contains("新年音乐会"), "{draw_page}");
    terminate(first.server);
    let after_first = assert_demo_states(&app).await;
    assert_eq!(after_first.demo_students, 20);

    // Time passes: the lecture's booking opened (nobody booked) and a demo student cancelled.
    sqlx::query("UPDATE activities SET book_start = now() - interval '1 minute' WHERE key = 'demo-lecture'")
        .execute(&app.pool)
        .await
        .unwrap();
    let cancelled = tickets::cancel(
        &mut app.pool.acquire().await.unwrap(),
        &app.state.notifier,
        TicketRef::StudentAndKey { student_id: "2099000001", key: "demo-workshop" },
    )
    .await
    .unwrap();
    assert!(matches!(cancelled, CancelOutcome::Cancelled(_)), "{cancelled:?}");

    let second = serve_demo(&app).await;
    let printed = second.printed.join("\n");
    assert_eq!(printed_password(&second.printed), None, "the password is shown once: {printed}");
    assert!(printed.contains("`admin` already exists") && printed.contains("admin add admin"), "{printed}");
    terminate(second.server);

    let after_second = assert_demo_states(&app).await;
    assert_eq!(after_second.demo_students, after_first.demo_students, "no demo student added");
    // The cancelled ticket stays as history; its place went to a fresh booking.
    assert_eq!(after_second.tickets, after_first.tickets + 1);
    let kept = |state: &DemoState, key: &str| state.ids.iter().find(|(k, _)| k == key).map(|(_, id)| *id);
    for key in ["demo-concert", "demo-workshop", "demo-lottery", "demo-seats"] {
        assert_eq!(kept(&after_first, key), kept(&after_second, key), "{key} refreshed in place");
    }
    assert_eq!(app.count("SELECT count(*) FROM admin_users").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM activities WHERE key = 'own'").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM activities").await, 6);

    // Fifteen minutes on: two demo students registered and the lottery was drawn.
    let mut conn = app.pool.acquire().await.unwrap();
    for (student_id, openid) in [("2099000002", "demo-student-002"), ("2099000003", "demo-student-003")] {
        let entered = lottery::enter(&mut conn, lottery_id, student_id, openid).await.unwrap();
        assert!(matches!(entered, EntryOutcome::Entered { .. }), "{entered:?}");
    }
    app.close_booking(lottery_id).await;
    let outcome = lottery::draw(&mut conn, &app.state.notifier, lottery_id).await.unwrap();
    assert!(matches!(outcome, DrawOutcome::Drawn { entries: 2, winners: 2 }), "{outcome:?}");
    let published = lottery::published(&mut conn, lottery_id).await.unwrap().expect("published");
    drop(conn);

    // A third run leaves the drawn lottery and its published draw exactly as they were.
    let third = serve_demo(&app).await;
    let printed = third.printed.join("\n");
    terminate(third.server);
    assert!(printed.contains("lottery drawn") && printed.contains("2 registered, 2 won"), "{printed}");
    assert!(printed.contains("its draw stays as it was"), "{printed}");
    let after_third = assert_demo_states(&app).await;
    assert_eq!(kept(&after_third, "demo-lottery"), Some(lottery_id));
    let mut conn = app.pool.acquire().await.unwrap();
    let again = lottery::published(&mut conn, lottery_id).await.unwrap();
    assert_eq!(again, Some(published), "the published draw is unchanged");
    let drawn_lottery = activities::by_id(&mut conn, lottery_id).await.unwrap().unwrap();
    assert!(drawn_lottery.book_end <= OffsetDateTime::now_utc(), "its close did not move: {drawn_lottery:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_demo_lottery_drawn_with_nobody_registered_is_made_again() {
    let app = spawn_app().await;
    terminate(serve_demo(&app).await.server);
    let mut conn = app.pool.acquire().await.unwrap();
    let first = activities::by_key(&mut conn, "demo-lottery").await.unwrap().unwrap();
    app.close_booking(first.id).await;
    let outcome = lottery::draw(&mut conn, &app.state.notifier, first.id).await.unwrap();
    assert!(matches!(outcome, DrawOutcome::Drawn { entries: 0, winners: 0 }), "{outcome:?}");
    drop(conn);

    let again = serve_demo(&app).await;
    let printed = again.printed.join("\n");
    terminate(again.server);
    assert!(printed.contains("nobody registered, so it was created again"), "{printed}");
    assert!(printed.contains("lottery open until"), "{printed}");
    let mut conn = app.pool.acquire().await.unwrap();
    let second = activities::by_key(&mut conn, "demo-lottery").await.unwrap().unwrap();
    assert_ne!(second.id, first.id);
    let state = lottery::state(&mut conn, second.id).await.unwrap().unwrap();
    assert!(state.drawn_at.is_none(), "a fresh, undrawn lottery");
    drop(conn);
    assert_demo_states(&app).await;
}

/// The shell's way to edit an activity is `serve --demo` bringing its samples
/// back: over a lottery whose registration has closed (its draw waiting for
/// the public value) it must not move the close and reopen registration.
#[tokio::test(flavor = "multi_thread")]
async fn serve_demo_over_a_closed_lottery_leaves_its_close_where_it_was() {
    let app = spawn_app().await;
    terminate(serve_demo(&app).await.server);
    let mut conn = app.pool.acquire().await.unwrap();
    let demo = activities::by_key(&mut conn, "demo-lottery").await.unwrap().unwrap();
    let students = app.bound_students(77, 3).await;
    for (i, openid) in students[..2].iter().enumerate() {
        let entered = lottery::enter(&mut conn, demo.id, &format!("{:05}{i:05}", 77), openid).await.unwrap();
        assert!(matches!(entered, EntryOutcome::Entered { .. }), "{entered:?}");
    }
    lottery::announce_public_value(&mut conn, demo.id, Some("2026年12月5日 体彩排列3 开奖号码")).await.unwrap();
    drop(conn);
    app.close_booking(demo.id).await;
    let closed = |app: &TestApp| {
        let pool = app.pool.clone();
        async move {
            let mut conn = pool.acquire().await.unwrap();
            activities::by_id(&mut conn, demo.id).await.unwrap().unwrap().book_end
        }
    };
    let closed_at = closed(&app).await;

    let again = serve_demo(&app).await;
    let printed = again.printed.join("\n");
    terminate(again.server);
    assert_eq!(closed(&app).await, closed_at, "the close did not move: {printed}");
    assert!(printed.contains("its close stays"), "{printed}");
    let late = app.say(&crate::common::wx::text(&students[2], "报名 demo-lottery")).await;
    assert!(late.text().contains("报名已经截止"), "{}", late.text());
    assert_eq!(app.count("SELECT count(*) FROM lottery_entries").await, 2);
}

/// The play in the demo's small hall sells seats: a student books, chooses a
/// seat, and a second run keeps the activity, the hall and the seat.
#[tokio::test(flavor = "multi_thread")]
async fn the_demo_play_sells_seats_a_student_can_choose() {
    let app = spawn_app().await;
    terminate(serve_demo(&app).await.server);
    let openid = app.bound_students(78, 1).await.remove(0);
    let reply = app.say(&crate::common::wx::text(&openid, "抢票 demo-seats")).await;
    assert!(matches!(reply, crate::common::wx::Reply::News { .. }), "{reply:?}");
    let (code, play_id): (String, i64) = sqlx::query_as("SELECT code, activity_id FROM tickets WHERE openid = $1")
        .bind(&openid)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let mut tx = app.pool.begin().await.unwrap();
    let chosen = seats::choose(&mut tx, &code, "0007800000", Choice::Seat("B区-6-8")).await.unwrap();
    tx.commit().await.unwrap();
    assert!(matches!(&chosen, ChooseOutcome::Placed(p) if p.label() == "B区 6排8座"), "{chosen:?}");

    let again = serve_demo(&app).await;
    let printed = again.printed.join("\n");
    terminate(again.server);
    assert!(printed.contains("55 of 56 seats left"), "{printed}");
    let mut conn = app.pool.acquire().await.unwrap();
    assert_eq!(activities::by_key(&mut conn, "demo-seats").await.unwrap().unwrap().id, play_id);
    let ticket_id = tickets::by_code(&mut conn, &code).await.unwrap().unwrap().id;
    let held = seats::place_of(&mut conn, ticket_id).await.unwrap();
    assert_eq!(held.map(|p| p.label()).as_deref(), Some("B区 6排8座"));
    drop(conn);
    assert_demo_states(&app).await;
}
