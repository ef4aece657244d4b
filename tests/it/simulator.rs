//! The admin simulator over HTTP: a test student follows, binds through the
//! link in the reply, books by tapping the menu — every message through the
//! real `/wechat` route — and the booking rules treat it like anyone else,
//! while the admin's counts and exports leave its ticket out unless asked.

use wechat_ticket::{menu, wechat::menu::Menu};

use crate::common::{Settings, TestApp, admin::hidden_value, fixtures::Window, spawn_app, spawn_app_with, wx};

/// Follows the simulator's "new test student" button; returns the student's openid.
pub(crate) async fn new_test_student(app: &TestApp, csrf: &str) -> String {
    let resp = app.http.post(app.url("/admin/simulator/students")).form(&[("csrf", csrf)]).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let openid = location.strip_prefix("/admin/simulator?student=").expect("back to the simulator").to_string();
    assert!(openid.starts_with("simulator-"), "{openid}");
    openid
}

fn chat_path(openid: &str) -> String {
    format!("/admin/simulator/chat?student={openid}")
}

pub(crate) async fn chat(app: &TestApp, openid: &str) -> String {
    let resp = app.get(&chat_path(openid)).await;
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

/// Taps a menu button (or, with `click` empty, sends `text`) in the phone.
pub(crate) async fn send(app: &TestApp, csrf: &str, openid: &str, text: &str, click: &str) -> (u16, String) {
    let resp = app
        .http
        .post(app.url("/admin/simulator/chat"))
        .form(&[("csrf", csrf), ("student", openid), ("text", text), ("click", click), ("label", "")])
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    if status == 303 {
        let location = resp.headers()["location"].to_str().unwrap();
        assert_eq!(location, format!("{}#latest", chat_path(openid)), "back to the chat, at its end");
    }
    (status, resp.text().await.unwrap())
}

/// A new test student, bound to `student_id` through the link the chat's 绑定 replies with.
pub(crate) async fn bound_test_student(app: &TestApp, csrf: &str, student_id: &str) -> String {
    let openid = new_test_student(app, csrf).await;
    send(app, csrf, &openid, "绑定", "").await;
    let bind = local_links(&chat(app, &openid).await).into_iter().rev().find(|l| l.starts_with("/bind?")).unwrap();
    assert!(app.submit_bind(&app.url(&bind), student_id, "").await.1.contains("绑定成功"));
    openid
}

/// The `href` of every link in the chat that leads into this server.
pub(crate) fn local_links(page: &str) -> Vec<String> {
    page.split("href=\"/")
        .skip(1)
        .map(|rest| format!("/{}", rest.split('"').next().unwrap().replace("&amp;", "&")))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_test_student_binds_and_books_through_the_real_route() {
    let app = spawn_app().await;
    let csrf = app.login_admin("alice").await;
    let concert = app.activity("concert", 1, Window::Open).await;

    let page = app.get("/admin/simulator").await.text().await.unwrap();
    assert!(page.contains("还没有测试学生"), "an empty simulator offers to create one");

    // A new test student follows the account: the welcome arrives through /wechat.
    let openid = new_test_student(&app, &csrf).await;
    assert_eq!(app.count("SELECT count(*) FROM wechat_messages").await, 1, "handled (and recorded) by /wechat");
    let page = app.get(&format!("/admin/simulator?student={openid}")).await.text().await.unwrap();
    assert!(page.contains(&format!("<iframe name=\"phone\" id=\"phone\" src=\"{}#latest\"", chat_path(&openid))));
    let screen = chat(&app, &openid).await;
    assert!(screen.contains("关注了公众号") && screen.contains("欢迎关注"), "{screen}");
    // The menu bar is the composed menu: the open activity is under 抢票.
    assert!(screen.contains(&format!("name=\"click\" value=\"BOOK_{}\"", concert.id)), "{screen}");

    // Booking before binding is refused like anyone's.
    send(&app, &csrf, &openid, "", &format!("BOOK_{}", concert.id)).await;
    assert!(chat(&app, &openid).await.contains("你还没有绑定学号"));

    // 绑定 by text; the link in the reply is relative, so it opens in the phone frame.
    assert_eq!(send(&app, &csrf, &openid, "绑定", "").await.0, 303);
    let screen = chat(&app, &openid).await;
    let bind = local_links(&screen).into_iter().rev().find(|l| l.starts_with("/bind?")).expect("a bind link");
    assert_eq!(app.get(&bind).await.status(), 200);
    let (status, body) = app.submit_bind(&app.url(&bind), "2024010001", "").await;
    assert!(status == 200 && body.contains("绑定成功"), "{body}");

    // Tap 抢票 › concert: the ticket arrives as a news card.
    send(&app, &csrf, &openid, "", &format!("BOOK_{}", concert.id)).await;
    let screen = chat(&app, &openid).await;
    assert!(screen.contains("class=\"wx-news\"") && screen.contains("抢票成功"), "{screen}");
    let ticket = local_links(&screen).into_iter().rev().find(|l| l.starts_with("/tickets/")).expect("a ticket link");
    let ticket_page = app.get(&ticket).await.text().await.unwrap();
    assert!(ticket_page.contains("<svg") && ticket_page.contains("2024010001"), "the ticket page with its QR code");

    // Same capacity: the one place is gone for a real student too.
    let real = app.bound_students(41, 1).await;
    assert!(app.say(&wx::click(&real[0], &format!("BOOK_{}", concert.id))).await.text().contains("票已经抢完了"));
    assert_eq!(app.live_tickets(concert.id).await, 1);
    assert_eq!(app.count("SELECT count(*) FROM tickets WHERE simulated").await, 1);

    // Counts and exports leave the test ticket out unless asked for.
    let list = app.get("/admin").await.text().await.unwrap();
    assert!(list.contains("0 / 1") && list.contains("另有 1 张测试票"), "{list}");
    let list = app.get("/admin?test=1").await.text().await.unwrap();
    assert!(list.contains("1 / 1") && list.contains("export.csv?test=1"), "{list}");
    let csv = app.get(&format!("/admin/activities/{}/export.csv", concert.id)).await.text().await.unwrap();
    assert!(!csv.contains("2024010001"), "{csv}");
    let csv = app.get(&format!("/admin/activities/{}/export.csv?test=1", concert.id)).await.text().await.unwrap();
    assert!(csv.contains("2024010001"), "{csv}");
    let door = app.get(&format!("/admin/activities/{}/checkin", concert.id)).await.text().await.unwrap();
    assert!(door.contains("已抢 <strong id=\"booked\">0</strong>"), "{door}");
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wechat-ticket"))
            .env("DATABASE_URL", app.database_url())
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(!cli(&["export", "concert"]).contains("2024010001"));
    assert!(cli(&["export", "concert", "--include-test"]).contains("2024010001"));
    assert!(cli(&["activity", "list"]).contains("\t0/1\t"));

    // 查票 by text, then the student picks the test student from the list.
    send(&app, &csrf, &openid, "查票", "").await;
    assert!(chat(&app, &openid).await.contains(&concert.name));
    let page = app.get("/admin/simulator").await.text().await.unwrap();
    assert!(page.contains(&format!("{openid}（学号 2024010001）")), "{page}");
    app.stop().await;
}

#[tokio::test]
async fn the_simulator_speaks_only_for_test_students_and_refuses_bad_forms() {
    let app = spawn_app().await;
    let csrf = app.login_admin("alice").await;
    let real = app.bound_students(42, 1).await;
    let activity = app.activity("concert", 5, Window::Open).await;
    let book = format!("BOOK_{}", activity.id);

    // A real openid, a malformed one, a missing CSRF token, an oversized message: refused, nothing sent.
    for (student, form_csrf, text, click, status) in [
        (real[0].as_str(), csrf.as_str(), "", book.as_str(), 400),
        ("simulator-x&y=z", csrf.as_str(), "帮助", "", 400),
        ("simulator-abc", "", "帮助", "", 403),
        ("simulator-abc", csrf.as_str(), &"长".repeat(601), "", 400),
    ] {
        let resp = app
            .http
            .post(app.url("/admin/simulator/chat"))
            .form(&[("csrf", form_csrf), ("student", student), ("text", text), ("click", click)])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{student} {click}");
    }
    assert_eq!(app.get(&chat_path(&real[0])).await.status(), 400, "no chat view of a real student");
    assert_eq!(app.count("SELECT count(*) FROM wechat_messages").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM simulator_messages").await, 0);
    assert_eq!(app.live_tickets(activity.id).await, 0);

    // Anonymous visitors are sent to the login page.
    let anonymous = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let resp = anonymous.get(app.url("/admin/simulator")).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    app.stop().await;
}

#[tokio::test]
async fn the_menu_bar_is_the_composed_one_or_the_last_pushed() {
    let app = spawn_app().await;
    let csrf = app.login_admin("alice").await;
    let first = app.activity("first", 5, Window::Open).await;
    let second = app.activity("second", 5, Window::Open).await;
    let openid = new_test_student(&app, &csrf).await;

    // Nothing pushed yet: the default composition (both bookable activities).
    let screen = chat(&app, &openid).await;
    assert!(screen.contains(&format!("value=\"BOOK_{}\"", first.id)));
    assert!(screen.contains(&format!("value=\"BOOK_{}\"", second.id)));
    assert!(!app.get("/admin/simulator").await.text().await.unwrap().contains("用最近推送的菜单"));

    // A menu with only `first` was pushed; the admin then composes one with only `second`.
    let pushed = menu::compose(std::slice::from_ref(&first)).unwrap();
    menu::remember_pushed(&app.pool, &pushed).await.unwrap();
    let (status, _) =
        app.admin_post("/admin/menu", &[("csrf", &csrf), (&format!("activity_{}", second.id), "on")]).await;
    assert_eq!(status, 200, "the preview");
    let composed: Menu = menu::composed(&app.pool).await.unwrap();
    assert_eq!(composed, menu::compose(std::slice::from_ref(&second)).unwrap());
    // The menu page itself starts from that choice next time.
    let page = app.get("/admin/menu").await.text().await.unwrap();
    assert!(page.contains(&format!("name=\"activity_{}\" value=\"1\" checked", second.id)), "{page}");
    assert!(!page.contains(&format!("name=\"activity_{}\" value=\"1\" checked", first.id)), "{page}");

    let screen = chat(&app, &openid).await;
    assert!(
        screen.contains(&format!("value=\"BOOK_{}\"", second.id)) && !screen.contains(&format!("BOOK_{}\"", first.id))
    );
    let page = app.get(&format!("/admin/simulator?student={openid}")).await.text().await.unwrap();
    assert!(page.contains("用最近推送的菜单"), "the two differ, so the admin can choose");
    let screen = app.get(&format!("{}&menu=pushed", chat_path(&openid))).await.text().await.unwrap();
    assert!(
        screen.contains(&format!("value=\"BOOK_{}\"", first.id)) && !screen.contains(&format!("BOOK_{}\"", second.id))
    );
    assert_eq!(hidden_value(&screen, "menu").as_deref(), Some("pushed"), "taps stay on the pushed menu");
    app.stop().await;
}

#[tokio::test]
async fn in_safe_mode_the_simulator_sends_encrypted_messages() {
    let app = spawn_app_with(Settings::default().encrypted()).await;
    let csrf = app.login_admin("alice").await;
    let openid = new_test_student(&app, &csrf).await;
    send(&app, &csrf, &openid, "帮助", "").await;
    let screen = chat(&app, &openid).await;
    assert!(screen.contains("欢迎关注") && screen.contains("欢迎使用抢票服务"), "{screen}");
    assert!(!screen.contains("发送失败"), "{screen}");
    assert_eq!(app.count("SELECT count(*) FROM wechat_messages").await, 2);
    let page = app.get(&format!("/admin/simulator?student={openid}")).await.text().await.unwrap();
    assert!(page.contains("加密并签名"), "the page says the messages are encrypted");
    app.stop().await;
}

#[tokio::test]
async fn a_real_student_takes_back_an_id_a_test_student_used() {
    let app = spawn_app().await;
    let csrf = app.login_admin("alice").await;
    let concert = app.activity("concert", 1, Window::Open).await;
    let openid = bound_test_student(&app, &csrf, "2024010001").await;
    send(&app, &csrf, &openid, "", &format!("BOOK_{}", concert.id)).await;
    assert_eq!(app.live_tickets(concert.id).await, 1);
    crate::lottery::lottery_activity(&app, "draw", 5).await;
    send(&app, &csrf, &openid, "报名 draw", "").await;
    assert_eq!(app.count("SELECT count(*) FROM lottery_entries").await, 1);

    // The real 2024010001 binds from their phone: the ID is theirs, the test ticket and its place released,
    // the test registration withdrawn.
    app.bind("o_real", "2024010001").await;
    assert_eq!(app.live_tickets(concert.id).await, 0);
    assert_eq!(app.count("SELECT count(*) FROM lottery_entries").await, 0);
    assert!(app.say(&wx::text("o_real", "查票")).await.text().contains("你还没有票"));
    let booked = app.say(&wx::click("o_real", &format!("BOOK_{}", concert.id))).await;
    assert!(matches!(booked, wx::Reply::News { .. }), "the place is free for them: {booked:?}");
    assert!(app.say(&wx::text("o_real", "报名 draw")).await.text().contains("已报名"));
    // The test student is unbound and is told so when it tries again.
    send(&app, &csrf, &openid, "查票", "").await;
    assert!(chat(&app, &openid).await.contains("你还没有绑定学号"));
    app.stop().await;
}

/// What README's demo walk-through promises: test students register for a
/// lottery from the phone, the workers draw it at the close, and each test
/// student's chat shows the result (the winner's with its ticket).
#[tokio::test(flavor = "multi_thread")]
async fn test_students_register_for_a_lottery_and_read_the_draw_in_the_chat() {
    let app = spawn_app_with(Settings::default().set("REMINDER_CHECK_SECONDS", "1").with_notify_workers()).await;
    let csrf = app.login_admin("alice").await;
    let gala = crate::lottery::lottery_activity(&app, "gala", 1).await;
    let mut students = Vec::new();
    for student_id in ["2024010001", "2024010002"] {
        let openid = bound_test_student(&app, &csrf, student_id).await;
        send(&app, &csrf, &openid, "报名 gala", "").await;
        let screen = chat(&app, &openid).await;
        assert!(screen.contains("已报名「"), "{screen}");
        students.push(openid);
    }

    app.close_booking(gala.id).await;
    crate::lottery::drawn(&app, gala.id).await;
    let mut screens = Vec::new();
    for openid in &students {
        let mut screen = String::new();
        for _ in 0..100 {
            screen = chat(&app, openid).await;
            if screen.contains("【中签】") || screen.contains("【未中签】") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        screens.push(screen);
    }
    let won: Vec<_> = screens.iter().filter(|s| s.contains("【中签】")).collect();
    let lost: Vec<_> = screens.iter().filter(|s| s.contains("【未中签】")).collect();
    assert_eq!((won.len(), lost.len()), (1, 1), "{screens:#?}");
    assert!(lost[0].contains("候补名单第 1 位"), "{}", lost[0]);
    assert!(local_links(won[0]).iter().any(|l| l.starts_with("/tickets/")), "the winner's ticket link: {}", won[0]);
    assert!(won[0].contains(&format!("/activities/{}/draw", gala.id)), "and the draw page: {}", won[0]);
}
