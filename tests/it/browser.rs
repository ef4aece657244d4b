//! The admin console in a real browser (headless Chromium over WebDriver), as
//! an organiser uses it: log in, create an activity, upload its poster and
//! publish it, look at the menu page, check tickets in at the door, download
//! the ticket list; and a newcomer trying the product in the simulator. A
//! screenshot of each step lands in `target/browser-screenshots/<journey>/`.
//!
//! Skipped (with a message) where Chromium and chromedriver are not installed,
//! unless `CI=true`.

use std::time::Duration;

use time::OffsetDateTime;
use wechat_ticket::{
    booking::{NewActivity, activities, images},
    local_time,
};

use crate::common::{
    admin::PASSWORD,
    browser::{self, Browser},
    spawn_app, wx,
};

/// The whole journey, bounded: a hung browser fails the test rather than the CI job.
const WHOLE_TEST: Duration = Duration::from_secs(90);

#[tokio::test]
async fn an_organiser_runs_an_activity_in_the_browser() {
    let Some(browser) = Browser::start("organiser").await else { return };
    tokio::time::timeout(WHOLE_TEST, journey(&browser)).await.expect("the browser journey within 90 s");
    browser.close().await;
}

async fn journey(b: &Browser) {
    let app = spawn_app().await;
    app.add_admin("organiser").await;

    // 1. /admin sends a visitor to the login page; logging in leads back to the list.
    b.goto(&app.url("/admin")).await;
    b.find("#username").await;
    assert_eq!(b.path().await, "/admin/login");
    b.shot("login").await;
    b.policy_kept("login").await;
    b.type_into("#username", "organiser").await;
    b.type_into("#password", PASSWORD).await;
    b.click_and_wait(r#"form[action="/admin/login"] button[type=submit]"#).await;
    assert_eq!(b.path().await, "/admin");
    assert!(b.text(".topbar").await.contains("organiser"), "the admin's name in the top bar");
    assert!(b.text("main").await.contains("还没有活动"));
    b.shot("logged-in").await;
    b.policy_kept("activity list").await;

    // 2. Create an activity whose booking window is open now, so students can book it below.
    let tz = app.state.config.timezone;
    let now = OffsetDateTime::now_utc();
    let at = |hours: i64| local_time::input(now + time::Duration::hours(hours), tz);
    b.goto(&app.url("/admin/activities/new")).await;
    b.type_into("#key", "concert").await;
    b.type_into("#name", "新年音乐会").await;
    b.type_into("#place", "新清华学堂").await;
    b.set_value("#book_start", &at(-1)).await;
    b.set_value("#book_end", &at(1)).await;
    b.set_value("#start_at", &at(2)).await;
    b.set_value("#end_at", &at(4)).await;
    b.type_into("#capacity", "100").await;
    b.type_into("#description", "欢迎大家来听新年音乐会。").await;
    b.shot("new-activity").await;
    b.policy_kept("new activity").await;
    b.click_and_wait(r#"form[action="/admin/activities"] button[type=submit]"#).await;
    let path = b.path().await;
    let id: i64 = match path.strip_prefix("/admin/activities/").and_then(|id| id.parse().ok()) {
        Some(id) => id,
        None => b.fail(format!("creating should lead to the edit page, not {path}")).await,
    };
    assert!(b.text("main h1").await.contains("新年音乐会"));
    assert!(b.text("main").await.contains("草稿"));

    // The poster: a real PNG file chosen in the file input.
    let poster = std::env::temp_dir().join(format!("wt-poster-{}-{id}.png", std::process::id()));
    std::fs::write(&poster, browser::png(160, 90)).unwrap();
    b.find(r#"input[name=poster]"#).await.send_keys(poster.to_str().unwrap()).await.expect("choose the poster file");
    let poster_form = format!(r#"form[action="/admin/activities/{id}/poster"]"#);
    b.click_and_wait(&format!("{poster_form} button[type=submit]")).await;
    let _ = std::fs::remove_file(&poster);
    assert_eq!(b.path().await, format!("/admin/activities/{id}"), "back on the edit page after the upload");
    assert!(b.image_loaded("img.poster").await, "the uploaded poster shows on the edit page");
    b.shot("poster-uploaded").await;
    b.policy_kept("edit activity").await;

    // Publish (the 发布 button on the edit page); the list shows it as published.
    let publish = format!(r#"form[action="/admin/activities/{id}/publish"] button[type=submit]"#);
    assert_eq!(b.text(&publish).await, "发布");
    b.click_and_wait(&publish).await;
    assert_eq!(b.path().await, "/admin");
    let row = format!(r#"//tr[td/a[@href="/admin/activities/{id}"]]"#);
    let row = b.client.find(fantoccini::Locator::XPath(&row)).await.expect("the activity's row in the list");
    let row_text = row.text().await.unwrap();
    assert!(row_text.contains("新年音乐会") && row_text.contains("已发布"), "{row_text}");
    assert!(row_text.contains("0 / 100"), "booked / capacity: {row_text}");
    assert!(b.find_all(&format!(r#"form[action="/admin/activities/{id}/publish"]"#)).await.is_empty());
    b.shot("published").await;

    b.goto(&app.url(&format!("/admin/activities/{id}"))).await;
    assert!(b.text("main").await.contains("已发布"));
    assert!(b.image_loaded("img.poster").await, "the poster on the edit page after publishing");
    b.goto(&app.url(&format!("/activities/{id}"))).await;
    assert!(b.text("body").await.contains("新年音乐会"));
    assert!(b.image_loaded("img.poster").await, "the poster on the student page");
    b.shot("student-page").await;
    b.policy_kept("student activity").await;

    // 3. The menu page.
    // 3. The menu page: the composer offers the published activity.
    assert_eq!(b.fetch_status("/admin/menu").await, 200, "/admin/menu");
    b.goto(&app.url("/admin/menu")).await;
    let menu = b.text("main").await;
    assert!(menu.contains("自定义菜单") && menu.contains("推送到微信"), "the menu page's content: {menu}");
    b.shot("menu").await;
    b.policy_kept("menu").await;

    // 4. Check-in at the door. Two students book through the real WeChat endpoint.
    let openids = app.bound_students(31, 2).await;
    let mut codes = Vec::new();
    for openid in &openids {
        match app.say(&wx::click(openid, &format!("BOOK_{id}"))).await {
            wx::Reply::News { url, .. } => codes.push(crate::common::fixtures::ticket_code(&url)),
            other => panic!("booking should answer with the ticket: {other:?}"),
        }
    }
    let student_ids: Vec<String> = (0..2).map(|i| format!("{:05}{i:05}", 31)).collect();

    b.goto(&app.url(&format!("/admin/activities/{id}/checkin"))).await;
    assert!(b.text("main h1").await.contains("新年音乐会"));
    // With JavaScript, the button (or a USB scanner's Enter) checks in without leaving the page.
    let check_in = |input: String| async move {
        let seq = b.find("#verdict").await.attr("data-seq").await.unwrap().unwrap_or_default();
        b.type_into("#checkin-input", &input).await;
        b.find("#checkin-submit").await.click().await.expect("click 检票");
        let changed = format!("return document.getElementById('verdict').getAttribute('data-seq') !== '{seq}';");
        b.wait_until(&changed, "a verdict after 检票").await;
        let good = !b.find_all(".result.good").await.is_empty();
        let bad = !b.find_all(".result.bad").await.is_empty();
        if good == bad {
            b.fail(format!("exactly one of .result.good / .result.bad after checking in {input}")).await;
        }
        (good, b.text(".result").await)
    };
    let (good, text) = check_in(codes[0].clone()).await;
    assert!(good && text.contains("检票成功") && text.contains(&student_ids[0]), "{text}");
    b.shot("checkin-good").await;
    let (good, text) = check_in(codes[0].clone()).await;
    assert!(!good && text.contains("已检票"), "the same ticket again: {text}");
    b.shot("checkin-again").await;
    let (good, text) = check_in(student_ids[1].clone()).await;
    assert!(good && text.contains("检票成功") && text.contains(&student_ids[1]), "by student ID: {text}");
    assert_eq!(b.text("#checked-in").await, "2");
    b.shot("checkin-student-id").await;
    b.policy_kept("check-in").await;

    // 5. Downloads from the list page.
    b.goto(&app.url("/admin")).await;
    b.find(&format!(r#"a[href="/admin/activities/{id}/export.csv"]"#)).await.click().await.expect("click CSV");
    let csv = b.downloaded("concert-tickets.csv").await;
    assert!(csv.starts_with("\u{feff}".as_bytes()), "the CSV starts with the UTF-8 BOM");
    let text = String::from_utf8(csv).expect("UTF-8");
    for student_id in &student_ids {
        assert!(text.contains(student_id), "{student_id} in the CSV:\n{text}");
    }
    b.find(&format!(r#"a[href="/admin/activities/{id}/export.xlsx"]"#)).await.click().await.expect("click XLSX");
    let xlsx = b.downloaded("concert-tickets.xlsx").await;
    assert!(xlsx.starts_with(b"PK\x03\x04"), "the XLSX is a zip");
    // The list's counts after the check-ins.
    let row = format!(r#"//tr[td/a[@href="/admin/activities/{id}"]]"#);
    let row_text = b.client.find(fantoccini::Locator::XPath(&row)).await.expect("the row").text().await.unwrap();
    assert!(row_text.contains("2 / 100"), "{row_text}");
    b.shot("exported").await;
    b.policy_kept("activity list").await;

    // The check above sees a violation when there is one: an image from elsewhere, injected.
    b.client
        .execute("const img = document.createElement('img'); img.src = 'http://example.invalid/x.png'; document.body.append(img);", vec![])
        .await
        .unwrap();
    let violations = b.csp_violations().await;
    assert!(violations.iter().any(|v| v.starts_with("img-src")), "{violations:?}");

    app.stop().await;
}

#[tokio::test]
async fn a_newcomer_books_and_cancels_in_the_simulator() {
    let Some(browser) = Browser::start("simulator").await else { return };
    tokio::time::timeout(WHOLE_TEST, simulator_journey(&browser)).await.expect("the simulator journey within 90 s");
    browser.close().await;
}

async fn simulator_journey(b: &Browser) {
    let app = spawn_app().await;
    app.add_admin("newcomer").await;
    // An open activity with a poster, so the ticket card shows its picture.
    let now = OffsetDateTime::now_utc();
    let h = time::Duration::hours(1);
    let mut conn = app.pool.acquire().await.unwrap();
    let concert = NewActivity {
        key: "concert".into(),
        name: "新年音乐会".into(),
        place: "新清华学堂".into(),
        description: "欢迎大家来听新年音乐会。".into(),
        book_start: now - h,
        book_end: now + 24 * h,
        start_at: now + 48 * h,
        end_at: now + 50 * h,
        capacity: 100,
        publish: true,
        mode: Default::default(),
    };
    let concert = activities::create(&mut conn, &concert).await.unwrap();
    let poster = images::store(&mut conn, "image/png", &browser::png(360, 200)).await.unwrap();
    activities::set_poster(&mut conn, concert.id, poster).await.unwrap();
    drop(conn);

    // The landing page says what to paste into the WeChat console and leads to the simulator,
    // which asks for a login first and then comes back to it.
    b.goto(&app.url("/")).await;
    let landing = b.text("main").await;
    assert!(landing.contains(&app.url("/wechat")) && landing.contains("明文模式"), "{landing}");
    assert!(!landing.contains(crate::common::TOKEN), "the Token is for admins only");
    b.shot("landing").await;
    b.policy_kept("landing").await;
    b.click_and_wait(r#"main a[href="/admin/simulator"]"#).await;
    assert_eq!(b.path().await, "/admin/login");
    b.type_into("#username", "newcomer").await;
    b.type_into("#password", PASSWORD).await;
    b.click_and_wait(r#"form[action="/admin/login"] button[type=submit]"#).await;
    assert_eq!(b.path().await, "/admin/simulator");
    assert!(b.text(".phone-empty").await.contains("还没有测试学生"));

    // A test student follows the account; the welcome shows in the phone.
    b.click_and_wait("#new-student-empty").await;
    let student = b.find("#student-select").await.prop("value").await.unwrap().unwrap_or_default();
    assert!(student.starts_with("simulator-"), "{student}");
    b.enter_frame("#phone").await;
    let chat = b.text("#chat").await;
    assert!(chat.contains("关注了公众号") && chat.contains("欢迎关注"), "{chat}");
    b.policy_kept("simulator chat").await;

    // The bind link in the reply opens in the phone.
    b.click_and_wait(r#".wx-bubble a[href^="/bind?"]"#).await;
    assert_eq!(b.path().await, "/bind");
    b.type_into("#student_id", "2024010001").await;
    b.shot("bind-page").await;
    b.policy_kept("bind").await;
    b.click_and_wait(r#"form[action="/bind"] button[type=submit]"#).await;
    assert!(b.text("body").await.contains("绑定成功"));
    b.leave_frame().await;
    b.shot("bound").await;
    b.policy_kept("simulator").await;

    // Back to the chat, then 抢票 › the concert from the menu bar.
    b.find("#phone-back").await.click().await.expect("back to the chat");
    b.enter_frame("#phone").await;
    b.find(".wx-menubar").await;
    assert_eq!(b.text("#who").await, format!("{student} · 学号 2024010001"), "the phone says who is bound");
    b.find(".wx-menu-parent summary").await.click().await.expect("open 抢票");
    let book = format!(r#".wx-submenu button[value="BOOK_{}"]"#, concert.id);
    assert_eq!(b.text(&book).await, concert.name);
    b.click_and_wait(&book).await;
    let card = b.text(".wx-news").await;
    assert!(card.contains(&format!("抢票成功：{}", concert.name)) && card.contains("新清华学堂"), "{card}");
    assert!(b.image_loaded(".wx-news img").await, "the card shows the poster");
    b.policy_kept("simulator chat with a ticket card").await;
    b.leave_frame().await;
    let readme = b.shot_of(".simulator", "ticket-card").await;
    b.shot("ticket-card-page").await;

    // The card opens the ticket page with its QR code, in the phone; cancel there.
    b.enter_frame("#phone").await;
    b.click_and_wait(".wx-news").await;
    assert!(b.path().await.starts_with("/tickets/"));
    assert!(!b.find_all(".qr svg").await.is_empty(), "the QR code on the ticket page");
    assert!(b.text("body").await.contains("2024010001"));
    b.policy_kept("ticket").await;
    b.leave_frame().await;
    b.shot("ticket-page").await;
    b.enter_frame("#phone").await;
    b.click_and_wait(r#"form[action$="/cancel"] button[type=submit]"#).await;
    assert!(b.text("body").await.contains("已退"), "the ticket page after cancelling");
    b.policy_kept("cancelled ticket").await;
    assert_eq!(app.live_tickets(concert.id).await, 0, "the place is free again");
    b.leave_frame().await;
    b.shot("cancelled").await;
    eprintln!("simulator screenshot for the README: {}", readme.display());
    app.stop().await;
}
