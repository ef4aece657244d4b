//! A student on a phone (headless Chromium, through the fake WeChat web
//! authorization): registers for a lottery from `/m/activities`, sees the
//! eid, and after the draw finds it with their rank on 我的票 and in the
//! public draw page's list; a sold-out activity offers 候补. Every page keeps
//! its Content-Security-Policy. Screenshots: `target/browser-screenshots/lottery/`.

use std::time::Duration;

use wechat_ticket::booking::lottery::{self, DrawOutcome};

use crate::common::{Settings, browser::Browser, fake_wechat::FakeWechat, fixtures::Window, spawn_app_with};

const WHOLE_TEST: Duration = Duration::from_secs(90);

#[tokio::test]
async fn a_student_registers_for_a_lottery_on_the_phone_and_finds_their_eid_in_the_draw() {
    let Some(browser) = Browser::start("lottery").await else { return };
    tokio::time::timeout(WHOLE_TEST, journey(&browser)).await.expect("the browser journey within 90 s");
    browser.close().await;
}

async fn journey(b: &Browser) {
    let fake = FakeWechat::start().await;
    let app = spawn_app_with(fake.oauth_settings(Settings::default())).await;
    let gala = crate::lottery::lottery_activity(&app, "gala", 1).await;
    let full = app.activity("full", 1, Window::Open).await;
    sqlx::query("UPDATE activity_slots SET remaining = 0 WHERE activity_id = $1")
        .bind(full.id)
        .execute(&app.pool)
        .await
        .unwrap();
    // Two others register too, so the draw has someone to rank.
    for (openid, id) in [("oOther1", "2024010002"), ("oOther2", "2024010003")] {
        app.bind(openid, id).await;
        let mut tx = app.pool.begin().await.unwrap();
        lottery::enter(&mut tx, gala.id, id, openid).await.unwrap();
        tx.commit().await.unwrap();
    }
    app.bind("oPhone", "2024010001").await;
    fake.oauth_as("oPhone");

    b.goto(&app.url("/m/activities")).await;
    let list = b.text("main").await;
    assert!(list.contains("抽签报名中") && list.contains("票已抢完，可以候补"), "{list}");
    b.shot("activities").await;
    b.policy_kept("activity list").await;
    b.click_and_wait(&format!(r#"form[action="/m/activities/{}/book"] button"#, gala.id)).await;
    let registered = b.text("main").await;
    assert!(registered.contains("已报名") && registered.contains("抽签编号"), "{registered}");
    let eid = registered.split("抽签编号：").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    assert_eq!(eid.len(), 64);
    b.shot("registered").await;
    b.policy_kept("registered").await;

    // The sold-out activity's 候补 button puts the student in line.
    b.goto(&app.url("/m/activities")).await;
    assert!(b.text("main").await.contains("已报名"));
    b.click_and_wait(&format!(r#"form[action="/m/activities/{}/wait"] button"#, full.id)).await;
    assert!(b.text("main").await.contains("排第 1 位"));
    b.policy_kept("joined the waiting list").await;

    // The public page before the draw: the commitment, no seed.
    b.goto(&app.url(&format!("/activities/{}/draw", gala.id))).await;
    let before = b.text("main").await;
    assert!(before.contains("报名中：已有 3 人报名") && !before.contains("server_seed\n"), "{before}");
    b.policy_kept("draw, before").await;

    app.close_booking(gala.id).await;
    let mut tx = app.pool.begin().await.unwrap();
    assert!(matches!(lottery::draw(&mut tx, &app.state.notifier, gala.id).await.unwrap(), DrawOutcome::Drawn { .. }));
    tx.commit().await.unwrap();

    b.goto(&app.url("/m/tickets")).await;
    let mine = b.text("#lottery-entries").await;
    assert!(mine.contains(&eid) && (mine.contains("中签（第 1 名）") || mine.contains("现在候补第")), "{mine}");
    b.shot("my-tickets").await;
    b.policy_kept("my tickets").await;

    b.goto(&app.url(&format!("/activities/{}/draw", gala.id))).await;
    assert!(b.text("#eids").await.contains(&eid), "the student's eid is in the published order");
    assert_eq!(b.find_all("#eids li").await.len(), 3);
    assert_eq!(b.find_all("#eids li.won").await.len(), 1);
    b.shot("draw").await;
    b.policy_kept("draw, after").await;
}
