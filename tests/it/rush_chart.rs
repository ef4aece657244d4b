//! The rush as a picture (issue 23, README "Rush chart" and "Dashboard"): a
//! real rush through signed WeChat messages, then the activity page's chart
//! read back — its bars, its sold-out marker, its refusals by reason — and
//! the list's 售罄用时; the dashboard above the list.

use std::time::{Duration, Instant};

use futures::future::join_all;
use wechat_ticket::booking::Activity;

use crate::{
    common::{TestApp, browser::Browser, fixtures::Window, spawn_app, wx},
    teams::{activity_in, organizer, team},
};

/// What a rush sent, to compare with what the chart shows.
pub(crate) struct Sent {
    pub activity: Activity,
    pub not_open_yet: i64,
    pub sold_out: i64,
    pub not_bound: i64,
    pub already_holds: i64,
    pub joined: i64,
    pub tickets: i64,
    pub cancelled: i64,
}

/// A small rush: capacity 5, 30 bound students pressing at once, 3 unbound,
/// 2 winners pressing again, 4 joining the waiting list, 1 winner cancelling
/// (their place goes to the head of the list); 2 pressed before the start.
pub(crate) async fn small_rush(app: &TestApp) -> Sent {
    let activity = app.activity("rush", 5, Window::NotYetOpen).await;
    let book = format!("BOOK_{}", activity.id);
    let students = app.bound_students(23, 30).await;
    let mut not_open_yet = 0;
    for openid in &students[..2] {
        let reply = app.say(&wx::click(openid, &book)).await;
        assert!(reply.text().contains("开抢"), "{}", reply.text());
        not_open_yet += 1;
    }
    // Booking opens now.
    sqlx::query("UPDATE activities SET book_start = now() WHERE id = $1")
        .bind(activity.id)
        .execute(&app.pool)
        .await
        .unwrap();
    let clicks: Vec<String> = students.iter().map(|openid| wx::click(openid, &book)).collect();
    let replies = join_all(clicks.iter().map(|xml| app.say_body(xml))).await;
    let sold_out = replies.iter().filter(|r| r.contains("票已经抢完了")).count() as i64;
    let winners: Vec<&String> =
        students.iter().zip(&replies).filter(|(_, r)| !r.contains("票已经抢完了")).map(|(o, _)| o).collect();
    assert_eq!(winners.len(), 5, "five won, the rest were told it is sold out: {replies:?}");
    for i in 0..3 {
        let reply = app.say(&wx::click(&format!("unbound_{i}"), &book)).await;
        assert!(reply.text().contains("绑定"), "{}", reply.text());
    }
    for openid in &winners[..2] {
        let reply = app.say(&wx::click(openid, &book)).await;
        assert!(reply.text().contains("已经"), "{}", reply.text());
    }
    let losers: Vec<&String> = students.iter().filter(|o| !winners.contains(o)).collect();
    for openid in &losers[..4] {
        let reply = app.say(&wx::text(openid, "候补 rush")).await;
        assert!(reply.text().contains("候补"), "{}", reply.text());
    }
    let reply = app.say(&wx::text(winners[4], "退票 rush")).await;
    assert!(reply.text().contains("退"), "{}", reply.text());
    Sent {
        activity,
        not_open_yet,
        sold_out,
        not_bound: 3,
        already_holds: 2,
        joined: 4,
        // Five won, and the head of the list got the cancelled one's place.
        tickets: 6,
        cancelled: 1,
    }
}

impl TestApp {
    /// The reply's raw body (for the concurrent rush, where only the wording is checked).
    async fn say_body(&self, xml: &str) -> String {
        self.post_wechat(xml).await.1
    }

    /// The activity page once the refusals have been written (bounded wait).
    pub(crate) async fn rush_page(&self, activity_id: i64, refused: i64) -> String {
        let path = format!("/admin/activities/{activity_id}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let page = self.get(&path).await.text().await.unwrap();
            let shown: i64 = totals(&page).iter().filter(|(k, _)| is_reason(k)).map(|(_, n)| n).sum();
            if shown >= refused || Instant::now() > deadline {
                return page;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn is_reason(kind: &str) -> bool {
    !["booked", "cancelled", "joined"].contains(&kind)
}

fn attr(tag: &str, name: &str) -> Option<String> {
    Some(tag.split(&format!(" {name}=\"")).nth(1)?.split('"').next()?.to_string())
}

/// The (kind, count) rows of the totals table.
fn totals(page: &str) -> Vec<(String, i64)> {
    page.split("<tr data-kind=\"")
        .skip(1)
        .map(|row| {
            let kind = row.split('"').next().unwrap().to_string();
            let n = row.split("<td>").nth(2).unwrap().split('<').next().unwrap().parse().unwrap();
            (kind, n)
        })
        .collect()
}

fn total(page: &str, kind: &str) -> i64 {
    totals(page).into_iter().find(|(k, _)| k == kind).map_or(0, |(_, n)| n)
}

/// The sum of a `data-` attribute over the chart's groups of `class`.
fn sum(page: &str, class: &str, name: &str) -> i64 {
    page.split(&format!("<g class=\"{class}\""))
        .skip(1)
        .map(|g| attr(g.split('>').next().unwrap(), name).unwrap().parse::<i64>().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rush_is_drawn_with_its_sold_out_moment_and_its_refusals_by_reason() {
    let app = spawn_app().await;
    app.login_admin("organiser").await;
    let sent = small_rush(&app).await;
    let id = sent.activity.id;
    let refused = sent.not_open_yet + sent.sold_out + sent.not_bound + sent.already_holds;
    let page = app.rush_page(id, refused).await;
    let chart = &page[page.find("<svg class=\"rush-chart\"").expect("the rush chart")..];
    let chart = &chart[..chart.find("</svg>").unwrap()];

    // Every ticket, cancel and join is a bar's.
    assert_eq!(sum(chart, "rush-bar", "data-booked"), sent.tickets);
    assert_eq!(sum(chart, "rush-bar", "data-cancelled"), sent.cancelled);
    assert_eq!(sum(chart, "rush-bar", "data-joined"), sent.joined);
    assert!(chart.contains("每格 1 秒"), "a rush of seconds is drawn a second a bar");
    assert!(!page.contains("style="), "the CSP allows no inline style");

    // The marker sits where the fifth place went (from the axis's origin: the start's whole second).
    let (book_start, fifth): (time::OffsetDateTime, time::OffsetDateTime) = sqlx::query_as(
        "SELECT date_trunc('second', a.book_start), (SELECT booked_at FROM tickets WHERE activity_id = a.id ORDER BY booked_at LIMIT 1 OFFSET 4) \
         FROM activities a WHERE a.id = $1",
    )
    .bind(id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let marker = chart.split("<g class=\"sold-out\"").nth(1).expect("the sold-out marker");
    let at: i128 = attr(marker, "data-offset-ms").unwrap().parse().unwrap();
    let expected = (fifth - book_start).whole_milliseconds();
    assert!((at - expected).abs() <= 5, "marker at {at} ms, the fifth ticket at {expected} ms");
    assert!(marker.contains("售罄 +"), "{marker}");

    // The refusals, by reason, as sent (those before the start only in the totals).
    assert_eq!(total(&page, "sold_out"), sent.sold_out, "{:?}", totals(&page));
    assert_eq!(total(&page, "not_bound"), sent.not_bound);
    assert_eq!(total(&page, "already_holds"), sent.already_holds);
    assert_eq!(total(&page, "not_open_yet"), sent.not_open_yet);
    assert_eq!(total(&page, "booked"), sent.tickets);
    assert_eq!(total(&page, "cancelled"), sent.cancelled);
    assert_eq!(total(&page, "joined"), sent.joined);
    assert_eq!(sum(chart, "rush-refused", "data-sold-out"), sent.sold_out);
    assert_eq!(sum(chart, "rush-refused", "data-not-bound"), sent.not_bound);
    assert_eq!(sum(chart, "rush-refused", "data-already-holds"), sent.already_holds);
    assert!(chart.contains(">已抢完</text>") && chart.contains(">未绑定</text>"), "the legend names them");

    // The list says how long it took.
    let list = app.get("/admin").await.text().await.unwrap();
    let row = &list[list.find(&format!("/admin/activities/{id}\"")).unwrap()..];
    let took = row.split("<td class=\"sell-out\">").nth(1).unwrap().split('<').next().unwrap();
    assert!(took.ends_with(" 秒") && took.trim_end_matches(" 秒").parse::<f64>().is_ok(), "{took}");
}

#[tokio::test(flavor = "multi_thread")]
async fn refusal_counts_reach_the_database_once_a_second_and_at_shutdown() {
    let app = spawn_app().await;
    let show = app.activity("show", 1, Window::Closed).await;
    let students = app.bound_students(24, 3).await;
    for openid in &students {
        app.say(&wx::text(openid, "抢票 SHOW")).await;
    }
    let written = || async {
        app.count(&format!("SELECT coalesce(sum(count), 0) FROM booking_refusals WHERE activity_id = {}", show.id))
            .await
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while written().await < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(written().await, 3, "a typed key is counted against its activity, within a few seconds");
    let reason: String =
        sqlx::query_scalar("SELECT DISTINCT reason FROM booking_refusals").fetch_one(&app.pool).await.unwrap();
    assert_eq!(reason, "closed");

    // Noted just before the server stops: the last flush writes it.
    app.say(&wx::text(&students[0], "抢票 show")).await;
    let pool = app.pool.clone();
    app.stop().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut n: i64 = 0;
    while Instant::now() < deadline {
        n = sqlx::query_scalar("SELECT coalesce(sum(count), 0) FROM booking_refusals").fetch_one(&pool).await.unwrap();
        if n == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(n, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_activity_before_its_rush_shows_an_empty_chart_and_names_are_escaped() {
    let app = spawn_app().await;
    app.login_admin("organiser").await;
    let later = app.activity("later", 10, Window::NotYetOpen).await;
    let hostile = format!("<script>alert(1)</script>{}", "长".repeat(70));
    sqlx::query("UPDATE activities SET name = $2 WHERE id = $1")
        .bind(later.id)
        .bind(&hostile)
        .execute(&app.pool)
        .await
        .unwrap();
    let page = app.get(&format!("/admin/activities/{}", later.id)).await.text().await.unwrap();
    assert!(page.contains("id=\"rush-empty\"") && page.contains("抢票还没有开始"), "{page}");
    assert!(!page.contains("<svg class=\"rush-chart\""));
    assert!(!page.contains("<script>alert") && page.contains("&#60;script&#62;alert(1)"), "the name is escaped");
    let list = app.get("/admin").await.text().await.unwrap();
    assert!(!list.contains("<script>alert") && list.contains("&#60;script&#62;alert(1)"));
    let row = &list[list.find(&format!("/admin/activities/{}\"", later.id)).unwrap()..];
    assert!(row.contains("<td class=\"sell-out\">—</td>"), "not open yet: no sell-out time");

    let open = app.activity("open", 10, Window::Open).await;
    let page = app.get(&format!("/admin/activities/{}", open.id)).await.text().await.unwrap();
    assert!(page.contains("还没有人抢票"), "opened, nobody yet");
    let list = app.get("/admin").await.text().await.unwrap();
    let row = &list[list.find(&format!("/admin/activities/{}\"", open.id)).unwrap()..];
    assert!(row.contains("<td class=\"sell-out\">未售罄</td>"));

    // Another team's organizer finds the activity (and so its chart) missing.
    let drama = team(&app, "话剧社").await;
    let theirs = team(&app, "合唱团").await;
    let carols = activity_in(&app, "carols", theirs).await;
    let (http, _) = organizer(&app, "ophelia", &["话剧社"]).await;
    let _ = drama;
    let resp = http.get(app.url(&format!("/admin/activities/{}", carols.id))).send().await.unwrap();
    assert_eq!(resp.status(), 404);
}

/// The section of the dashboard with this id.
fn panel<'a>(page: &'a str, id: &str) -> &'a str {
    let start = page.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("#{id} in {page}"));
    let rest = &page[start..];
    &rest[..rest.find("</div>").unwrap()]
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_shows_what_is_open_what_opens_within_a_day_and_the_queue_to_admins() {
    let app = spawn_app().await;
    app.login_admin("admin").await;
    let drama = team(&app, "话剧社").await;
    let choir = team(&app, "合唱团").await;
    let open = activity_in(&app, "opennow", drama).await;
    let soon = app.activity("soon", 10, Window::NotYetOpen).await;
    wechat_ticket::booking::activities::set_team(&mut app.pool.acquire().await.unwrap(), soon.id, drama).await.unwrap();
    let far = activity_in(&app, "far", drama).await;
    // Opens in 30 hours (well past the day, whatever the clock's minute).
    sqlx::query(
        "UPDATE activities SET book_start = now() + interval '30 hours', book_end = now() + interval '31 hours', \
         start_at = now() + interval '32 hours', end_at = now() + interval '34 hours' WHERE id = $1",
    )
    .bind(far.id)
    .execute(&app.pool)
    .await
    .unwrap();
    let closed = app.activity("closed", 10, Window::Closed).await;
    let other = activity_in(&app, "carols", choir).await;
    let students = app.bound_students(25, 2).await;
    app.say(&wx::click(&students[0], &format!("BOOK_{}", open.id))).await;

    let page = app.get("/admin").await.text().await.unwrap();
    assert!(page.find("id=\"dashboard\"").unwrap() < page.find("<table class=\"grid\"").unwrap(), "above the list");
    let open_now = panel(&page, "dashboard-open");
    assert!(
        open_now.contains(&format!("data-activity=\"{}\"", open.id)) && open_now.contains("剩余 9 / 10"),
        "{open_now}"
    );
    assert!(open_now.contains(&format!("data-activity=\"{}\"", other.id)), "an admin sees every team's");
    for a in [&soon, &far, &closed] {
        assert!(!open_now.contains(&format!("data-activity=\"{}\"", a.id)), "{open_now}");
    }
    let opening = panel(&page, "dashboard-soon");
    assert!(opening.contains(&format!("data-activity=\"{}\"", soon.id)), "{opening}");
    let when = wechat_ticket::local_time::full(soon.book_start, app.state.config.timezone);
    assert!(opening.contains(&when), "the time in TIMEZONE: {opening}");
    for a in [&open, &far, &closed] {
        assert!(!opening.contains(&format!("data-activity=\"{}\"", a.id)), "{opening}");
    }
    let queue = panel(&page, "dashboard-queue");
    assert!(queue.contains("id=\"dashboard-queued\">0<") && queue.contains("id=\"dashboard-failed\">0<"), "{queue}");
    // Backups are off in this test app, and none was ever taken: said plainly, not flagged.
    let backup = panel(&page, "dashboard-backup");
    assert!(
        backup.contains("还没有备份") && backup.contains("没有开启每晚备份") && !backup.contains("error"),
        "{backup}"
    );
    // A good backup three days old is flagged once nightly backups are on.
    sqlx::query(
        "INSERT INTO backups (kind, outcome, file, bytes, started_at, finished_at) \
         VALUES ('manual', 'ok', '/srv/b.dump', 1, now() - interval '3 days', now() - interval '3 days')",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let nightly =
        crate::common::spawn_app_on(app.db.clone(), crate::common::Settings::default().set("BACKUP_AT", "04:00")).await;
    let http = reqwest::Client::builder().cookie_store(true).build().unwrap();
    let form = [("username", "admin-dash"), ("password", crate::common::admin::PASSWORD)];
    nightly.add_admin("admin-dash").await;
    assert!(http.post(nightly.url("/admin/login")).form(&form).send().await.unwrap().status().is_success());
    let page = http.get(nightly.url("/admin")).send().await.unwrap().text().await.unwrap();
    let backup = panel(&page, "dashboard-backup");
    assert!(backup.contains("已超过两天") && backup.contains("每晚 04:00 自动备份"), "{backup}");
    nightly.stop().await;

    // An organizer: their team's activities only, and no account-wide queue.
    let (http, _) = organizer(&app, "ophelia", &["话剧社"]).await;
    let page = http.get(app.url("/admin")).send().await.unwrap().text().await.unwrap();
    let open_now = panel(&page, "dashboard-open");
    assert!(open_now.contains(&format!("data-activity=\"{}\"", open.id)));
    assert!(!page.contains(&format!("data-activity=\"{}\"", other.id)), "another team's is not shown");
    assert!(!page.contains("dashboard-queue") && !page.contains("dashboard-queued"), "the queue is an admin's");
    assert!(!page.contains("dashboard-backup"), "so are the backups");
}

/// A rush in waves, for a picture worth reading: capacity 20, 48 students
/// pressing in eight waves 400 ms apart, then over the next seconds some
/// unbound presses, winners pressing again, waiting-list joins and cancels.
async fn rush_in_waves(app: &TestApp) -> (Activity, i64) {
    let activity = app.activity("concert", 20, Window::Open).await;
    sqlx::query("UPDATE activities SET book_start = now(), name = '新年音乐会' WHERE id = $1")
        .bind(activity.id)
        .execute(&app.pool)
        .await
        .unwrap();
    let book = format!("BOOK_{}", activity.id);
    let students = app.bound_students(26, 48).await;
    let mut refused = 0;
    let mut winners = Vec::new();
    for wave in students.chunks(6) {
        let clicks: Vec<String> = wave.iter().map(|openid| wx::click(openid, &book)).collect();
        let replies = join_all(clicks.iter().map(|xml| app.say_body(xml))).await;
        for (openid, reply) in wave.iter().zip(replies) {
            if reply.contains("票已经抢完了") { refused += 1 } else { winners.push(openid.clone()) }
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let losers: Vec<&String> = students.iter().filter(|o| !winners.contains(o)).collect();
    for i in 0..6 {
        app.say(&wx::click(&format!("unbound_{i}"), &book)).await;
        app.say(&wx::click(&winners[i], &book)).await;
        app.say(&wx::text(losers[i], "候补 concert")).await;
        refused += 2;
        if i % 2 == 1 {
            app.say(&wx::text(&winners[10 + i], "退票 concert")).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    (activity, refused)
}

/// A real browser opens the activity page after a rush; the chart is
/// screenshot to `target/browser-screenshots/rush-chart/activity.png`.
#[tokio::test(flavor = "multi_thread")]
async fn the_rush_chart_in_a_browser() {
    let Some(b) = Browser::start("rush-chart").await else { return };
    let app = spawn_app().await;
    app.add_admin("organiser").await;
    let (activity, refused) = rush_in_waves(&app).await;
    app.login_admin("viewer").await;
    app.rush_page(activity.id, refused).await;

    b.goto(&app.url("/admin")).await;
    b.type_into("#username", "organiser").await;
    b.type_into("#password", crate::common::admin::PASSWORD).await;
    b.click_and_wait(r#"form[action="/admin/login"] button[type=submit]"#).await;
    let list = b.text("#dashboard-open").await;
    assert!(list.contains("新年音乐会") && list.contains("剩余 0 / 20"), "{list}");
    b.shot("dashboard").await;
    b.goto(&app.url(&format!("/admin/activities/{}", activity.id))).await;
    b.find("svg.rush-chart").await;
    let totals = b.text("#rush-totals").await;
    assert!(totals.contains("已抢完") && totals.contains("未绑定") && totals.contains("已有票"), "{totals}");
    let shot = b.shot_of("#rush", "rush").await;
    std::fs::copy(&shot, crate::common::browser::screenshot_dir("rush-chart").join("activity.png")).unwrap();
    b.policy_kept("activity page with the rush chart").await;
    b.close().await;
}
