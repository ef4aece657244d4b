//! Notifications against the fake WeChat API: holders hear of a changed
//! activity and of its coming start, through the job queue's workers — once,
//! whatever the number of instances or restarts — with the template message as
//! the fallback and retries when WeChat is busy; test students' messages land
//! in the simulator chat.

use std::time::Duration;

use serde_json::json;
use time::OffsetDateTime;
use wechat_ticket::{
    booking::{Activity, activities},
    local_time,
    notify::notices,
};

use crate::common::{
    Settings, TestApp,
    fake_wechat::{CUSTOM_SEND_PATH, FakeWechat, TEMPLATE_SEND_PATH},
    fixtures::Window,
    spawn_app_on, spawn_app_with, wx,
};

/// The fields of the activity edit form, as the page would send them back.
fn edit_form(csrf: &str, a: &Activity) -> Vec<(String, String)> {
    let tz = time_tz::timezones::get_by_name("Asia/Shanghai").unwrap();
    let t = |at: OffsetDateTime| local_time::input(at, tz);
    [
        ("csrf", csrf.to_string()),
        ("key", a.key.clone()),
        ("name", a.name.clone()),
        ("place", a.place.clone()),
        ("description", a.description.clone()),
        ("book_start", t(a.book_start)),
        ("book_end", t(a.book_end)),
        ("start_at", t(a.start_at)),
        ("end_at", t(a.end_at)),
        ("capacity", a.capacity.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn with(mut form: Vec<(String, String)>, field: &str, value: &str) -> Vec<(String, String)> {
    form.iter_mut().find(|(k, _)| k == field).unwrap().1 = value.to_string();
    form
}

async fn post_form(app: &TestApp, path: &str, form: &[(String, String)]) -> (u16, String) {
    let resp = app.http.post(app.url(path)).form(form).send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// `n` bound students who each book `a` by tapping its menu button (so each
/// has just interacted with the account). Returns their openids.
async fn holders(app: &TestApp, group: u32, n: usize, a: &Activity) -> Vec<String> {
    let openids = app.bound_students(group, n).await;
    for openid in &openids {
        let reply = app.say(&wx::click(openid, &format!("BOOK_{}", a.id))).await;
        assert!(matches!(reply, wx::Reply::News { .. }), "{openid} booked");
    }
    openids
}

/// Waits (up to 30 s) until no notification is queued and `expected` exist.
async fn settled(app: &TestApp, expected: i64) {
    for _ in 0..300 {
        let total = app.count("SELECT count(*) FROM notifications").await;
        let queued = app.count("SELECT count(*) FROM notifications WHERE state = 'queued'").await;
        if total == expected && queued == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let states: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT kind, state, reason FROM notifications ORDER BY id").fetch_all(&app.pool).await.unwrap();
    panic!("expected {expected} settled notifications, have {states:?}");
}

/// Who each recorded send went to.
fn recipients(fake: &FakeWechat, path: &str) -> Vec<String> {
    let mut to: Vec<String> =
        fake.requests(path).iter().map(|r| r.body.as_ref().unwrap()["touser"].as_str().unwrap().to_string()).collect();
    to.sort();
    to
}

async fn edit_start(app: &TestApp, csrf: &str, a: &Activity, start: OffsetDateTime) -> (u16, String) {
    let tz = time_tz::timezones::get_by_name("Asia/Shanghai").unwrap();
    let form = with(edit_form(csrf, a), "start_at", &local_time::input(start, tz));
    post_form(app, &format!("/admin/activities/{}", a.id), &form).await
}

#[tokio::test(flavor = "multi_thread")]
async fn editing_the_start_time_tells_holders_but_not_cancelled_tickets() {
    let fake = FakeWechat::start().await;
    let app = spawn_app_with(fake.settings(Settings::default()).with_notify_workers()).await;
    let csrf = app.login_admin("alice").await;
    let concert = app.activity("concert", 10, Window::Open).await;
    let mut openids = holders(&app, 1, 3, &concert).await;
    let cancelled = openids.pop().unwrap();
    assert!(app.say(&wx::text(&cancelled, "退票 concert")).await.text().contains("退"), "cancelled");

    // A new name is no news to a holder: nothing is sent.
    let (status, page) = post_form(
        &app,
        &format!("/admin/activities/{}", concert.id),
        &with(edit_form(&csrf, &concert), "name", "新年音乐会"),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let concert = activities::by_id(&mut app.pool.acquire().await.unwrap(), concert.id).await.unwrap().unwrap();

    let later = concert.start_at + time::Duration::hours(1);
    let (status, page) = edit_start(&app, &csrf, &concert, later).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("已保存"), "{page}");
    settled(&app, 2).await;

    openids.sort();
    assert_eq!(recipients(&fake, CUSTOM_SEND_PATH), openids, "each live holder once, not the cancelled ticket");
    for sent in fake.requests(CUSTOM_SEND_PATH) {
        let body = sent.body.unwrap();
        assert_eq!(body["msgtype"], "text");
        let content = body["text"]["content"].as_str().unwrap();
        assert!(content.contains("【活动变更】新年音乐会") && content.contains("时间改为"), "{content}");
        assert!(content.contains("/tickets/"), "with the holder's ticket link: {content}");
    }
    assert_eq!(fake.count(TEMPLATE_SEND_PATH), 0);

    let page = app.get("/admin/notifications").await.text().await.unwrap();
    assert_eq!(page.matches("客服消息</td>").count(), 2, "{page}");
    assert_eq!(page.matches("已发送").count(), 2, "{page}");
    assert!(page.contains("00001") && page.contains("活动变更"), "student IDs and kind: {page}");
    assert!(page.contains("排队待发 <strong>0</strong>"), "{page}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_edit_enqueues_nothing() {
    let fake = FakeWechat::start().await;
    let app = spawn_app_with(fake.settings(Settings::default()).with_notify_workers()).await;
    let csrf = app.login_admin("alice").await;
    let concert = app.activity("concert", 10, Window::Open).await;
    holders(&app, 1, 2, &concert).await;

    // A new start time, but too few places for the tickets out: refused, and no notice.
    let tz = time_tz::timezones::get_by_name("Asia/Shanghai").unwrap();
    let later = local_time::input(concert.start_at + time::Duration::hours(1), tz);
    let form = with(with(edit_form(&csrf, &concert), "start_at", &later), "capacity", "1");
    let (status, page) = post_form(&app, &format!("/admin/activities/{}", concert.id), &form).await;
    assert_eq!(status, 400, "{page}");

    // The enqueue itself rolls back with the transaction it ran in.
    let mut tx = app.pool.begin().await.unwrap();
    let moved = Activity { start_at: concert.start_at + time::Duration::hours(2), ..concert.clone() };
    let queued = notices::activity_changed(&mut tx, &app.state.notifier, &concert, &moved, tz).await.unwrap();
    assert_eq!(queued, 2, "two holders inside the transaction");
    tx.rollback().await.unwrap();

    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(app.count("SELECT count(*) FROM notifications").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM underway.task WHERE task_queue_name = 'notify-send'").await, 0);
    assert_eq!(fake.count(CUSTOM_SEND_PATH) + fake.count(TEMPLATE_SEND_PATH), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_reminder_reaches_each_holder_once_across_two_instances() {
    let fake = FakeWechat::start().await;
    let settings = fake
        .settings(Settings::default())
        .set("REMINDER_HOURS", "3")
        .set("REMINDER_CHECK_SECONDS", "1")
        .with_notify_workers();
    let one = spawn_app_with(settings.clone()).await;
    let two = spawn_app_on(one.db.clone(), settings).await;
    // Starts in two hours: inside the window. One that starts tomorrow is not.
    let concert = one.activity("concert", 10, Window::Open).await;
    let mut openids = holders(&one, 1, 3, &concert).await;
    let later = one.activity("later", 10, Window::Open).await;
    sqlx::query(
        "UPDATE activities SET start_at = now() + interval '1 day', end_at = now() + interval '25 hours' WHERE id = $1",
    )
    .bind(later.id)
    .execute(&one.pool)
    .await
    .unwrap();
    holders(&two, 2, 1, &later).await;

    settled(&one, 3).await;
    // Several more sweeps on both instances find nothing new.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(one.count("SELECT count(*) FROM notifications").await, 3);
    openids.sort();
    assert_eq!(recipients(&fake, CUSTOM_SEND_PATH), openids, "each holder exactly once");
    for sent in fake.requests(CUSTOM_SEND_PATH) {
        let content = sent.body.unwrap()["text"]["content"].as_str().unwrap().to_string();
        assert!(content.contains("【开始提醒】活动 concert") && content.contains("新清华学堂"), "{content}");
    }
    assert_eq!(one.count("SELECT count(*) FROM notifications WHERE kind = 'reminder' AND state = 'sent'").await, 3);
    one.stop().await;
    two.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_45015_falls_back_to_the_template() {
    let fake = FakeWechat::start().await;
    let settings =
        fake.settings(Settings::default()).set("WECHAT_TEMPLATE_CHANGE", "tmpl-change-1").with_notify_workers();
    let app = spawn_app_with(settings).await;
    let csrf = app.login_admin("alice").await;
    let concert = app.activity("concert", 10, Window::Open).await;
    let openids = holders(&app, 1, 2, &concert).await;
    // The second holder last wrote three days ago: outside the window, straight to the template.
    sqlx::query("UPDATE students SET last_interaction_at = now() - interval '3 days' WHERE openid = $1")
        .bind(&openids[1])
        .execute(&app.pool)
        .await
        .unwrap();
    fake.script(CUSTOM_SEND_PATH, json!({"errcode": 45015, "errmsg": "response out of time limit"}));

    let place = "综合体育馆主馆东侧二楼多功能厅（原报告厅临时改用）";
    let form = with(edit_form(&csrf, &concert), "place", place);
    let (status, page) = post_form(&app, &format!("/admin/activities/{}", concert.id), &form).await;
    assert_eq!(status, 200, "{page}");
    settled(&app, 2).await;

    assert_eq!(recipients(&fake, CUSTOM_SEND_PATH), vec![openids[0].clone()], "only the one inside the window");
    let mut both = openids.clone();
    both.sort();
    assert_eq!(recipients(&fake, TEMPLATE_SEND_PATH), both);
    for sent in fake.requests(TEMPLATE_SEND_PATH) {
        let body = sent.body.unwrap();
        assert_eq!(body["template_id"], "tmpl-change-1");
        assert!(body["url"].as_str().unwrap().contains("/tickets/"), "{body}");
        let data = body["data"].as_object().unwrap();
        assert_eq!(data["thing1"]["value"], "活动 concert");
        assert_eq!(data["thing4"]["value"], "地点有变");
        let shown = data["thing3"]["value"].as_str().unwrap();
        assert!(shown.starts_with("综合体育馆") && shown.ends_with('…'), "{shown}");
        for (field, value) in data {
            assert!(value["value"].as_str().unwrap().chars().count() <= 20, "{field}: {value}");
        }
    }
    assert_eq!(app.count("SELECT count(*) FROM notifications WHERE state = 'sent' AND channel = 'template'").await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_template_a_student_outside_the_window_is_undelivered_with_the_reason() {
    let fake = FakeWechat::start().await;
    let app = spawn_app_with(fake.settings(Settings::default()).with_notify_workers()).await;
    let csrf = app.login_admin("alice").await;
    let concert = app.activity("concert", 10, Window::Open).await;
    holders(&app, 1, 1, &concert).await;
    sqlx::query("UPDATE students SET last_interaction_at = now() - interval '49 hours'")
        .execute(&app.pool)
        .await
        .unwrap();

    let (status, page) = edit_start(&app, &csrf, &concert, concert.start_at + time::Duration::minutes(30)).await;
    assert_eq!(status, 200, "{page}");
    settled(&app, 1).await;
    assert_eq!(fake.count(CUSTOM_SEND_PATH) + fake.count(TEMPLATE_SEND_PATH), 0);
    let page = app.get("/admin/notifications").await.text().await.unwrap();
    assert!(
        page.contains("未送达：同学 48 小时内没有给公众号发消息或点菜单") && page.contains("WECHAT_TEMPLATE_CHANGE"),
        "{page}"
    );

    // The operator's view from the shell says the same.
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_wechat-ticket"))
        .env("DATABASE_URL", app.database_url())
        .args(["notify", "status"])
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let out = String::from_utf8(status.stdout).unwrap();
    assert!(out.contains("queued notifications: 0\njobs waiting or running: "), "{out}");
    assert!(out.contains("活动变更\t0000100000\t-\t未送达：同学 48 小时内"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_wechat_is_retried_until_it_answers() {
    let fake = FakeWechat::start().await;
    let app = spawn_app_with(fake.settings(Settings::default()).with_notify_workers()).await;
    let csrf = app.login_admin("alice").await;
    let concert = app.activity("concert", 10, Window::Open).await;
    let openids = holders(&app, 1, 1, &concert).await;
    // The API client's own short retries all meet -1; the queue tries again later.
    for _ in 0..3 {
        fake.script(CUSTOM_SEND_PATH, json!({"errcode": -1, "errmsg": "system error"}));
    }

    let (status, page) = edit_start(&app, &csrf, &concert, concert.start_at + time::Duration::hours(1)).await;
    assert_eq!(status, 200, "{page}");
    settled(&app, 1).await;
    assert_eq!(fake.count(CUSTOM_SEND_PATH), 4, "three busy answers, then the one that went through");
    assert_eq!(recipients(&fake, CUSTOM_SEND_PATH), vec![openids[0].clone(); 4]);
    let (state, attempts): (String, i32) =
        sqlx::query_as("SELECT state, attempts FROM notifications").fetch_one(&app.pool).await.unwrap();
    assert_eq!((state.as_str(), attempts), ("sent", 2), "sent on the queue's second attempt");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_between_enqueue_and_send_still_sends_exactly_once() {
    let fake = FakeWechat::start().await;
    // The first instance takes the edit and stops before any worker sends.
    let first = spawn_app_with(fake.settings(Settings::default())).await;
    let csrf = first.login_admin("alice").await;
    let concert = first.activity("concert", 10, Window::Open).await;
    let openids = holders(&first, 1, 1, &concert).await;
    let (status, page) = edit_start(&first, &csrf, &concert, concert.start_at + time::Duration::hours(1)).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(first.count("SELECT count(*) FROM notifications WHERE state = 'queued'").await, 1);
    let db = first.db.clone();
    first.stop().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fake.count(CUSTOM_SEND_PATH), 0, "nothing sent from the request's path");

    // Two instances come up on the same database; one of them sends it.
    let settings = fake.settings(Settings::default()).with_notify_workers();
    let second = spawn_app_on(db.clone(), settings.clone()).await;
    let third = spawn_app_on(db, settings).await;
    settled(&second, 1).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(recipients(&fake, CUSTOM_SEND_PATH), openids, "exactly once");
    second.stop().await;
    third.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_test_students_pushed_message_appears_in_the_simulator_chat() {
    // No WeChat credentials at all: a test student's messages never leave the server.
    let app = spawn_app_with(Settings::default().with_notify_workers()).await;
    let csrf = app.login_admin("alice").await;
    let resp = app.http.post(app.url("/admin/simulator/students")).form(&[("csrf", &csrf)]).send().await.unwrap();
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let openid = location.strip_prefix("/admin/simulator?student=").unwrap().to_string();
    // The student says hello, so the console lists it.
    let hello = [("csrf", csrf.as_str()), ("student", &openid), ("text", "你好"), ("click", ""), ("label", "")];
    app.http.post(app.url("/admin/simulator/chat")).form(&hello).send().await.unwrap();
    let page = app.get("/admin/notifications").await.text().await.unwrap();
    assert!(page.contains(&format!("<option value=\"{openid}\"")), "{page}");

    // A forged form, a real student and an empty text are refused and queue nothing.
    let text = "排练通知：今晚七点到场";
    let (status, _) =
        app.admin_post("/admin/notifications/test", &[("csrf", "forged"), ("openid", &openid), ("text", text)]).await;
    assert_eq!(status, 403);
    let (status, page) = app
        .admin_post("/admin/notifications/test", &[("csrf", &csrf), ("openid", "o-real-student"), ("text", text)])
        .await;
    assert_eq!(status, 400);
    assert!(page.contains("只能发给模拟器里的测试同学"), "{page}");
    let (status, _) =
        app.admin_post("/admin/notifications/test", &[("csrf", &csrf), ("openid", &openid), ("text", "  ")]).await;
    assert_eq!(status, 400);
    assert_eq!(app.count("SELECT count(*) FROM notifications").await, 0);

    let (status, page) =
        app.admin_post("/admin/notifications/test", &[("csrf", &csrf), ("openid", &openid), ("text", text)]).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("已排队"), "{page}");
    settled(&app, 1).await;
    let chat = app.get(&format!("/admin/simulator/chat?student={openid}")).await.text().await.unwrap();
    assert!(chat.contains(&format!("<div class=\"wx-bubble\">{text}</div>")), "{chat}");
    let page = app.get("/admin/notifications").await.text().await.unwrap();
    assert!(page.contains("模拟器</td>") && page.contains("已发送") && page.contains("测试消息"), "{page}");
}
