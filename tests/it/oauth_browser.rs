//! A student opens 抢票 from the menu bar in a real browser (headless
//! Chromium): WeChat web authorization (the fake WeChat's authorize page) →
//! the activity list → 抢票 → the ticket, then 我的票. Screenshots land in
//! `target/browser-screenshots/oauth/`. Skipped without Chromium, unless `CI=true`.

use std::time::Duration;

use crate::common::{
    Settings,
    browser::Browser,
    fake_wechat::{FakeWechat, OAUTH_TOKEN_PATH},
    fixtures::Window,
    spawn_app_with,
};

const WHOLE_TEST: Duration = Duration::from_secs(90);

#[tokio::test]
async fn a_student_books_from_the_menu_page_through_web_authorization() {
    let Some(browser) = Browser::start("oauth").await else { return };
    tokio::time::timeout(WHOLE_TEST, journey(&browser)).await.expect("the browser journey within 90 s");
    browser.close().await;
}

async fn journey(b: &Browser) {
    let fake = FakeWechat::start().await;
    let app = spawn_app_with(fake.oauth_settings(Settings::default())).await;
    let concert = app.activity("concert", 5, Window::Open).await;
    app.bind("oPhone", "2024010001").await;
    fake.oauth_as("oPhone");

    // The menu's view button: WeChat authorizes, and the page opens with no code in the address.
    b.goto(&app.url("/m/activities")).await;
    b.find("form button[type=submit]").await;
    assert_eq!(b.path().await, "/m/activities");
    assert_eq!(fake.count(OAUTH_TOKEN_PATH), 1);
    assert!(b.text("main").await.contains(&concert.name));
    b.shot("activities").await;
    b.policy_kept("activity list").await;

    b.click_and_wait(&format!(r#"form[action="/m/activities/{}/book"] button"#, concert.id)).await;
    assert!(b.path().await.starts_with("/tickets/"), "{}", b.path().await);
    let ticket = b.text("main").await;
    assert!(ticket.contains(&concert.name) && ticket.contains("退票"), "{ticket}");
    b.shot("ticket").await;
    b.policy_kept("ticket").await;
    assert_eq!(app.live_tickets(concert.id).await, 1);

    // Back, and 抢票 again: the same ticket, not a second one.
    b.goto(&app.url("/m/activities")).await;
    b.click_and_wait(&format!(r#"form[action="/m/activities/{}/book"] button"#, concert.id)).await;
    assert!(b.path().await.starts_with("/tickets/"));
    assert_eq!(app.live_tickets(concert.id).await, 1);

    // 我的票, in the same session: no second authorization.
    b.goto(&app.url("/m/tickets")).await;
    assert_eq!(b.path().await, "/m/tickets");
    assert!(b.text("main").await.contains(&concert.name));
    assert_eq!(fake.count(OAUTH_TOKEN_PATH), 1);
    b.shot("my-tickets").await;
    b.policy_kept("my tickets").await;
}
