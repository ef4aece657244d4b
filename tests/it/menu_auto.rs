//! The menu that keeps itself current (`MENU_AUTO=on`), against the fake
//! WeChat: the clock ticks every second (`REMINDER_CHECK_SECONDS=1`) and the
//! debounce is cut to a few seconds (`MENU_AUTO_DEBOUNCE_SECONDS`), so each
//! change reaches `menu/create` within seconds. Times are only ever measured
//! from what a test saw, never from the wall clock's minute.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use time::OffsetDateTime;
use wechat_ticket::booking::{Activity, NewActivity, activities};

use crate::common::{
    Settings, TestApp,
    fake_wechat::{CREATE_PATH, FakeWechat},
    fixtures::Window,
    spawn_app_on, spawn_app_with, wx,
};

fn auto(fake: &FakeWechat, debounce_seconds: u32) -> Settings {
    fake.settings(Settings::default())
        .with_notify_workers()
        .set("REMINDER_CHECK_SECONDS", "1")
        .set("MENU_AUTO", "on")
        .set("MENU_AUTO_DEBOUNCE_SECONDS", &debounce_seconds.to_string())
}

/// The keys under 抢票 in a pushed menu (`LIST_ACTIVITIES` when it has none).
fn book_keys(menu: &Value) -> Vec<String> {
    let book = &menu["button"][0];
    match book["sub_button"].as_array() {
        Some(subs) if !subs.is_empty() => subs.iter().map(|b| b["key"].as_str().unwrap().to_string()).collect(),
        _ => vec![book["key"].as_str().unwrap().to_string()],
    }
}

/// Waits (at most `within`) until `n` menus have been pushed, then checks that
/// no more follow for `quiet`; returns the last menu pushed.
async fn pushes(fake: &FakeWechat, n: usize, within: Duration, quiet: Duration) -> Value {
    let deadline = Instant::now() + within;
    while fake.count(CREATE_PATH) < n {
        assert!(Instant::now() < deadline, "{n} pushes expected, {} seen", fake.count(CREATE_PATH));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(quiet).await;
    assert_eq!(fake.count(CREATE_PATH), n, "no push beyond the {n}th");
    fake.menu().unwrap()
}

async fn draft(app: &TestApp, key: &str, capacity: i32) -> Activity {
    let now = OffsetDateTime::now_utc();
    let h = time::Duration::hours(1);
    let new = NewActivity {
        key: key.into(),
        name: format!("活动 {key}"),
        place: "新清华学堂".into(),
        description: "一场测试活动".into(),
        book_start: now - h,
        book_end: now + h,
        start_at: now + 2 * h,
        end_at: now + 4 * h,
        capacity,
        publish: false,
        mode: Default::default(),
    };
    activities::create(&mut app.pool.acquire().await.unwrap(), &new).await.unwrap()
}

async fn publish(app: &TestApp, activity: &Activity) {
    activities::publish(&mut app.pool.acquire().await.unwrap(), activity.id).await.unwrap();
}

const SETTLE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread")]
async fn a_publish_and_a_sell_out_each_push_one_menu_and_the_waiting_list_joins_from_it() {
    let fake = FakeWechat::start().await;
    let app = spawn_app_with(auto(&fake, 2)).await;
    // Taking over: the first tick pushes the menu as composed (nothing to book yet).
    let first = pushes(&fake, 1, SETTLE, Duration::from_secs(3)).await;
    assert_eq!(book_keys(&first), ["LIST_ACTIVITIES"]);

    let gala = draft(&app, "gala", 1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fake.count(CREATE_PATH), 1, "a draft is not on the menu");
    publish(&app, &gala).await;
    let published = pushes(&fake, 2, SETTLE, Duration::from_secs(4)).await;
    assert_eq!(book_keys(&published), [format!("BOOK_{}", gala.id)], "{published}");

    // The last place goes over WeChat: one more push, the button now joins the waiting list.
    let students = app.bound_students(1, 2).await;
    let booked = app.say(&wx::click(&students[0], &format!("BOOK_{}", gala.id))).await;
    assert_eq!(app.live_tickets(gala.id).await, 1, "{}", booked.text());
    let sold_out = pushes(&fake, 3, SETTLE, Duration::from_secs(4)).await;
    assert_eq!(book_keys(&sold_out), [format!("WAIT_{}", gala.id)], "{sold_out}");
    assert_eq!(sold_out["button"][0]["sub_button"][0]["name"], "活动 gala（候补）");
    let joined = app.say(&wx::click(&students[1], &format!("WAIT_{}", gala.id))).await;
    assert!(
        joined.text().contains("已加入「活动 gala」的候补") && joined.text().contains("排第 1 位"),
        "{}",
        joined.text()
    );
    // Joining changes nothing on the menu; a click on an old BOOK_ button still says how to wait.
    let stale = app.say(&wx::click(&students[1], &format!("BOOK_{}", gala.id))).await;
    assert!(stale.text().contains("候补"), "{}", stale.text());

    // The waiting list closes at book_end: the activity leaves the menu, in one push.
    app.close_booking(gala.id).await;
    let closed = pushes(&fake, 4, SETTLE, Duration::from_secs(4)).await;
    assert_eq!(book_keys(&closed), ["LIST_ACTIVITIES"], "{closed}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_push_once_per_change() {
    let fake = FakeWechat::start().await;
    let one = spawn_app_with(auto(&fake, 2)).await;
    let two = spawn_app_on(one.db.clone(), auto(&fake, 2)).await;
    pushes(&fake, 1, SETTLE, Duration::from_secs(3)).await;
    let concert = one.activity("concert", 10, Window::Open).await;
    let menu = pushes(&fake, 2, SETTLE, Duration::from_secs(3)).await;
    assert_eq!(book_keys(&menu), [format!("BOOK_{}", concert.id)]);
    sqlx::query("UPDATE activities SET status = 'archived' WHERE id = $1")
        .bind(concert.id)
        .execute(&two.pool)
        .await
        .unwrap();
    let menu = pushes(&fake, 3, SETTLE, Duration::from_secs(3)).await;
    assert_eq!(book_keys(&menu), ["LIST_ACTIVITIES"]);
    one.stop().await;
    two.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_close_together_wait_for_the_debounce_and_the_page_says_so() {
    let fake = FakeWechat::start().await;
    let app = spawn_app_with(auto(&fake, 6)).await;
    app.login_admin("menu-admin").await;
    pushes(&fake, 1, SETTLE, Duration::ZERO).await;
    let first_seen = Instant::now();
    let a = app.activity("first", 10, Window::Open).await;
    // Within the debounce of the first push: nothing yet, and the page says it waits.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fake.count(CREATE_PATH), 1);
    let page = app.get("/admin/menu").await.text().await.unwrap();
    assert!(page.contains("菜单有变化") && page.contains("之后推送"), "{page}");
    let b = app.activity("second", 10, Window::NotYetOpen).await;
    // Both changes go out together, no sooner than the debounce after the first push.
    let menu = pushes(&fake, 2, SETTLE, Duration::from_secs(2)).await;
    assert!(first_seen.elapsed() >= Duration::from_secs(5), "{:?}", first_seen.elapsed());
    assert_eq!(book_keys(&menu), [format!("BOOK_{}", a.id), format!("BOOK_{}", b.id)]);
    let page = app.get("/admin/menu").await.text().await.unwrap();
    assert!(page.contains("自动推送成功") && page.contains("微信上的菜单已是最新"), "{page}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_push_is_shown_in_words_and_tried_again() {
    let fake = FakeWechat::start().await;
    let refusal = json!({"errcode": 40164, "errmsg": "invalid ip 1.2.3.4, not in whitelist"});
    fake.script(CREATE_PATH, refusal.clone());
    fake.script(CREATE_PATH, refusal);
    let app = spawn_app_with(auto(&fake, 2)).await;
    app.login_admin("menu-admin").await;
    let deadline = Instant::now() + SETTLE;
    loop {
        let page = app.get("/admin/menu").await.text().await.unwrap();
        if page.contains("自动推送失败") {
            assert!(page.contains("IP 不在公众号的 IP 白名单中"), "{page}");
            break;
        }
        assert!(Instant::now() < deadline, "no failure shown: {page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Two refusals, then WeChat takes it: three attempts, the page shows the success.
    pushes(&fake, 3, SETTLE, Duration::from_secs(3)).await;
    let page = app.get("/admin/menu").await.text().await.unwrap();
    assert!(page.contains("自动推送成功") && !page.contains("IP 白名单"), "{page}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_push_sets_the_rule_the_menu_keeps() {
    let fake = FakeWechat::start().await;
    let app = spawn_app_with(auto(&fake, 2)).await;
    let csrf = app.login_admin("menu-admin").await;
    let a = app.activity("alpha", 10, Window::Open).await;
    let b = app.activity("beta", 10, Window::Open).await;
    let both = pushes(&fake, 1, SETTLE, Duration::from_secs(2)).await;
    assert_eq!(book_keys(&both), [format!("BOOK_{}", a.id), format!("BOOK_{}", b.id)]);
    // The admin pins beta alone: the automatic menu keeps it so.
    let chosen = format!("activity_{}", b.id);
    let (status, page) = app.admin_post("/admin/menu", &[("csrf", &csrf), (&chosen, "1"), ("action", "push")]).await;
    assert_eq!(status, 200, "{page}");
    let pinned = pushes(&fake, 2, SETTLE, Duration::from_secs(3)).await;
    assert_eq!(book_keys(&pinned), [format!("BOOK_{}", b.id)]);
    // Back to the default rule: alpha returns.
    let (status, page) = app.admin_post("/admin/menu", &[("csrf", &csrf), ("action", "auto_default")]).await;
    assert_eq!(status, 200, "{page}");
    let again = pushes(&fake, 3, SETTLE, Duration::from_secs(2)).await;
    assert_eq!(book_keys(&again), [format!("BOOK_{}", a.id), format!("BOOK_{}", b.id)]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_menu_auto_nothing_is_pushed() {
    let fake = FakeWechat::start().await;
    let settings = fake.settings(Settings::default()).with_notify_workers().set("REMINDER_CHECK_SECONDS", "1");
    let app = spawn_app_with(settings).await;
    app.login_admin("menu-admin").await;
    app.activity("concert", 10, Window::Open).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(fake.count(CREATE_PATH), 0);
    let page = app.get("/admin/menu").await.text().await.unwrap();
    assert!(!page.contains("自动更新菜单"), "{page}");
    app.stop().await;
}
