//! The no-show rule (NO_SHOW_LIMIT): a student ID that left that many valid
//! tickets unused at activities that ended within the window is refused
//! booking and queueing until the pause ends, is told until when, tickets warn
//! while the rule is on, and an admin can forgive (audited).

use time::{Duration, OffsetDateTime};
use wechat_ticket::local_time;

use crate::common::{
    Settings, TestApp,
    fixtures::Window,
    spawn_app_with,
    wx::{self, Reply},
};

/// Books `key` for `openid`, then moves the activity into the past, so the
/// ticket is one left unused.
async fn no_show(app: &TestApp, openid: &str, key: &str, ended_days_ago: i64) -> OffsetDateTime {
    let a = app.activity(key, 5, Window::Open).await;
    assert!(matches!(app.say(&wx::text(openid, &format!("抢票 {key}"))).await, Reply::News { .. }));
    let end = OffsetDateTime::now_utc() - Duration::days(ended_days_ago);
    sqlx::query(
        "UPDATE activities SET book_start = $2 - interval '3 days', book_end = $2 - interval '2 days', \
         start_at = $2 - interval '1 hour', end_at = $2 WHERE id = $1",
    )
    .bind(a.id)
    .bind(end)
    .execute(&app.pool)
    .await
    .unwrap();
    end
}

#[tokio::test(flavor = "multi_thread")]
async fn two_unused_tickets_pause_booking_and_queueing_until_an_admin_forgives() {
    let app = spawn_app_with(Settings::default().set("NO_SHOW_LIMIT", "2").set("NO_SHOW_PAUSE_DAYS", "30")).await;
    let students = app.bound_students(1, 2).await;
    let (me, other) = (&students[0], &students[1]);
    // One left unused long ago, outside the 90-day window, counts for nothing.
    no_show(&app, me, "old", 100).await;
    no_show(&app, me, "first", 5).await;
    app.activity("next", 1, Window::Open).await;
    app.activity("spare", 5, Window::Open).await;
    assert!(
        matches!(app.say(&wx::text(me, "抢票 spare")).await, Reply::News { .. }),
        "one no-show in the window is no pause"
    );

    // Below the limit: booking works, and the ticket warns.
    let Reply::News { description, url, .. } = app.say(&wx::text(other, "抢票 next")).await else { panic!("booked") };
    assert!(description.contains("不来请提前退票"), "{description}");
    let page = app.http.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("不来请提前退票"), "the ticket page warns");
    let second_end = no_show(&app, me, "second", 2).await;

    let tz = time_tz::timezones::get_by_name("Asia/Shanghai").unwrap();
    let until = local_time::short(second_end + Duration::days(30), tz);
    let refused = app.say(&wx::text(me, "抢票 next")).await.text().to_string();
    assert!(refused.contains("暂停抢票") && refused.contains(&until), "says until when: {refused}");
    let queue = app.say(&wx::text(me, "候补 next")).await.text().to_string();
    assert!(queue.contains("暂停抢票") && queue.contains(&until), "{queue}");
    assert_eq!(app.count("SELECT count(*) FROM waiting_list").await, 0, "refused, nothing recorded");
    let lottery = crate::lottery::lottery_activity(&app, "draw", 5).await;
    let register = app.say(&wx::text(me, "报名 draw")).await.text().to_string();
    assert!(register.contains("抽签报名") && register.contains(&until), "{register}");
    assert_eq!(app.count("SELECT count(*) FROM lottery_entries").await, 0, "refused, nothing recorded");
    assert_eq!(
        app.count("SELECT count(*) FROM tickets WHERE activity_id = (SELECT id FROM activities WHERE key = 'next')")
            .await,
        1
    );

    let csrf = app.login_admin("alice").await;
    let lookup = app.http.get(app.url("/admin/students?student_id=0000100000")).send().await.unwrap();
    let page = lookup.text().await.unwrap();
    assert!(page.contains("no-show-paused") && page.contains("暂停抢票和候补到"), "the console shows the pause");
    let (status, page) =
        app.admin_post("/admin/students/forgive", &[("csrf", "wrong"), ("student_id", "0000100000")]).await;
    assert_ne!(status, 200, "a forged form forgives nobody: {page}");
    assert!(app.say(&wx::text(me, "候补 next")).await.text().contains("暂停抢票"));
    let (status, page) =
        app.admin_post("/admin/students/forgive", &[("csrf", &csrf), ("student_id", "0000100000")]).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("已原谅") && page.contains("no-show-none"), "{page}");
    assert!(app.say(&wx::text(me, "报名 draw")).await.text().contains("已报名"), "forgiven, {} registers", lottery.key);
    assert_eq!(app.count("SELECT count(*) FROM audit_log WHERE action = '原谅爽约' AND actor = 'alice'").await, 1);

    let queued = app.say(&wx::text(me, "候补 next")).await.text().to_string();
    assert!(queued.contains("排第 1 位"), "forgiven, the student may queue again: {queued}");
}
