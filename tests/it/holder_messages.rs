//! A word to every ticket holder (issue 24, point 1): written on the activity
//! page or with `wechat-ticket message`, queued one per student, sent once
//! across instances and retries, shown with its progress and under the
//! ticket; a few per activity per day, audited.

use std::time::{Duration, Instant};

use futures::future::join_all;

use crate::common::{
    Settings, TestApp,
    admin::hidden_value,
    fake_wechat::{CUSTOM_SEND_PATH, FakeWechat},
    fixtures::{Window, ticket_code},
    spawn_app_on, spawn_app_with,
    wx::{self, Reply},
};

/// `n` students who book `activity_id` by tapping its menu button (each has
/// just talked to the account, so a customer-service message reaches them);
/// returns (openid, ticket code) of each.
async fn holders(app: &TestApp, group: u32, n: usize, activity_id: i64) -> Vec<(String, String)> {
    let openids = app.bound_students(group, n).await;
    let replies = join_all(openids.iter().map(|openid| {
        let xml = wx::click(openid, &format!("BOOK_{activity_id}"));
        async move { app.say(&xml).await }
    }))
    .await;
    openids
        .into_iter()
        .zip(replies)
        .map(|(openid, reply)| match reply {
            Reply::News { url, .. } => (openid, ticket_code(&url)),
            other => panic!("{openid}: {other:?}"),
        })
        .collect()
}

/// The message form as the activity page serves it: (csrf, nonce).
async fn message_form(app: &TestApp, activity_id: i64) -> (String, String) {
    let page = app.get(&format!("/admin/activities/{activity_id}")).await.text().await.unwrap();
    let start = page.find("id=\"message-form\"").expect("the message card");
    let form = &page[start..];
    (hidden_value(form, "csrf").unwrap(), hidden_value(form, "nonce").unwrap())
}

async fn post_message(app: &TestApp, activity_id: i64, form: &[(&str, &str)]) -> (u16, String) {
    app.admin_post(&format!("/admin/activities/{activity_id}/messages"), form).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_to_500_holders_sends_500_once_across_two_instances_and_a_double_submit() {
    let fake = FakeWechat::start().await;
    let settings = fake.settings(Settings::default()).set("REMINDER_HOURS", "0").with_notify_workers();
    let one = spawn_app_with(settings.clone()).await;
    let two = spawn_app_on(one.db.clone(), settings).await;
    let concert = one.activity("concert", 500, Window::Open).await;
    let held = holders(&one, 31, 500, concert.id).await;
    one.login_admin("organiser").await;

    let (csrf, nonce) = message_form(&one, concert.id).await;
    let text = "演出改在新清华学堂小剧场，19:30 开始。";
    let form = [("csrf", csrf.as_str()), ("nonce", nonce.as_str()), ("text", text)];
    // A double tap: the same form twice, at once.
    let (first, second) = tokio::join!(post_message(&one, concert.id, &form), post_message(&one, concert.id, &form));
    assert_eq!((first.0, second.0), (303, 303), "{} {}", first.1, second.1);
    assert_eq!(one.count("SELECT count(*) FROM holder_messages").await, 1, "one message");

    let deadline = Instant::now() + Duration::from_secs(90);
    while one.count("SELECT count(*) FROM notifications WHERE state = 'queued'").await > 0 {
        assert!(Instant::now() < deadline, "the queue did not drain");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Both instances' senders had their chance to send anything twice.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sent = fake.requests(CUSTOM_SEND_PATH);
    assert_eq!(sent.len(), 500, "500 sends, not one more");
    let mut to: Vec<String> =
        sent.iter().map(|r| r.body.as_ref().unwrap()["touser"].as_str().unwrap().into()).collect();
    to.sort();
    to.dedup();
    assert_eq!(to.len(), 500, "one each");
    for r in &sent {
        let content = r.body.as_ref().unwrap()["text"]["content"].as_str().unwrap().to_string();
        assert!(
            content.starts_with("【活动 concert】演出改在新清华学堂小剧场") && content.contains("/tickets/"),
            "{content}"
        );
    }

    // The card shows the progress by channel.
    let page = one.get(&format!("/admin/activities/{}", concert.id)).await.text().await.unwrap();
    assert!(page.contains("500 人"), "{page}");
    assert!(page.contains("已送达 <strong class=\"delivered\">500</strong>（客服消息 500"), "{page}");
    assert!(page.contains("排队中 <strong class=\"queued\">0</strong>"), "{page}");
    // And each holder's ticket page shows it.
    let ticket = one.get(&format!("/tickets/{}", held[7].1)).await.text().await.unwrap();
    assert!(ticket.contains("主办方消息") && ticket.contains(text), "{ticket}");
    two.stop().await;
    one.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_waiting_list_the_shell_the_daily_limit_and_what_students_see() {
    let app = spawn_app_with(Settings::default().set("REMINDER_HOURS", "0")).await;
    let show = app.activity("show", 2, Window::Open).await;
    let held = holders(&app, 32, 2, show.id).await;
    let late = app.bound_students(33, 2).await;
    // One waits; the other held a ticket and cancelled it.
    assert!(app.say(&wx::text(&late[0], "候补 show")).await.text().contains("候补"));
    app.say(&wx::text(&held[1].0, "退票 show")).await;
    // The cancel promoted late[0]: now two live tickets, nobody waiting. A second waits.
    assert!(app.say(&wx::text(&late[1], "候补 show")).await.text().contains("候补"));
    let cancelled = held[1].1.clone();

    // The shell: holders and the waiting list, escaped on every page.
    let out = app.cli(&["message", "show", "--text", "请带学生证 <b>入场</b>", "--waiting"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("queued for 3 students"), "{:?}", out);
    let to: Vec<String> = sqlx::query_scalar(
        "SELECT coalesce(s.openid, n.student_id) FROM notifications n LEFT JOIN students s USING (student_id) \
         WHERE n.kind = 'holder_message' ORDER BY 1",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let mut expected = vec![held[0].0.clone(), late[0].clone(), late[1].clone()];
    expected.sort();
    assert_eq!(to, expected, "the two live holders and the one waiting; not the cancelled ticket");

    let ticket = app.get(&format!("/tickets/{}", held[0].1)).await.text().await.unwrap();
    assert!(ticket.contains("请带学生证 &#60;b&#62;入场") && !ticket.contains("<b>入场"), "escaped: {ticket}");
    let gone = app.get(&format!("/tickets/{cancelled}")).await.text().await.unwrap();
    assert!(!gone.contains("请带学生证"), "a cancelled ticket's page shows none");

    // Two more from the page, then the fourth in 24 hours is refused and sends nothing.
    app.login_admin("organiser").await;
    for text in ["第二条", "第三条"] {
        let (csrf, nonce) = message_form(&app, show.id).await;
        let (status, body) = post_message(&app, show.id, &[("csrf", &csrf), ("nonce", &nonce), ("text", text)]).await;
        assert_eq!(status, 303, "{body}");
    }
    let before = app.count("SELECT count(*) FROM notifications").await;
    let (csrf, nonce) = message_form(&app, show.id).await;
    let (status, page) = post_message(&app, show.id, &[("csrf", &csrf), ("nonce", &nonce), ("text", "第四条")]).await;
    assert_eq!(status, 409);
    assert!(page.contains("24 小时内最多发 3 条消息"), "{page}");
    assert!(page.contains(">第四条</textarea>"), "the text kept to send later: {page}");
    assert_eq!(app.count("SELECT count(*) FROM holder_messages").await, 3);
    assert_eq!(app.count("SELECT count(*) FROM notifications").await, before);
    assert_eq!(app.count("SELECT count(*) FROM audit_log WHERE action = '群发给持票人'").await, 3);

    // A form without the CSRF token, or empty, changes nothing.
    let other = app.activity("other", 5, Window::Open).await;
    let (_, nonce) = message_form(&app, other.id).await;
    let (status, _) = post_message(&app, other.id, &[("nonce", &nonce), ("text", "x")]).await;
    assert!(status == 403 || status == 400, "{status}");
    let (csrf, nonce) = message_form(&app, other.id).await;
    let (status, _) = post_message(&app, other.id, &[("csrf", &csrf), ("nonce", &nonce), ("text", "  ")]).await;
    assert_eq!(status, 409);
    let too_long = "长".repeat(301);
    let (status, _) = post_message(&app, other.id, &[("csrf", &csrf), ("nonce", &nonce), ("text", &too_long)]).await;
    assert_eq!(status, 409);
    assert_eq!(app.count("SELECT count(*) FROM holder_messages").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_student_reads_the_message_in_the_simulators_chat() {
    let app = spawn_app_with(Settings::default().set("REMINDER_HOURS", "0").with_notify_workers()).await;
    let csrf = app.login_admin("organiser").await;
    let play = app.activity("play", 5, Window::Open).await;
    let student = crate::simulator::bound_test_student(&app, &csrf, "2024990001").await;
    crate::simulator::send(&app, &csrf, &student, "", &format!("BOOK_{}", play.id)).await;
    assert_eq!(app.live_tickets(play.id).await, 1, "the test student booked");

    let (csrf, nonce) = message_form(&app, play.id).await;
    let text = "开场前 15 分钟在东门集合。";
    let (status, body) = post_message(&app, play.id, &[("csrf", &csrf), ("nonce", &nonce), ("text", text)]).await;
    assert_eq!(status, 303, "{body}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let chat = crate::simulator::chat(&app, &student).await;
        if chat.contains(text) {
            assert!(chat.contains("【活动 play】"), "{chat}");
            break;
        }
        assert!(Instant::now() < deadline, "the message never reached the chat: {chat}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let page = app.get(&format!("/admin/activities/{}", play.id)).await.text().await.unwrap();
    assert!(page.contains("模拟器 1"), "{page}");
    app.stop().await;
}
