//! Correctness under a ticket rush, against the real server over HTTP.

use std::collections::HashMap;

use futures::future::join_all;

use crate::common::{
    Settings, TestApp,
    fixtures::Window,
    spawn_app, spawn_app_on,
    wx::{self, Reply},
};

#[derive(Default, Debug)]
struct Tally {
    booked: usize,
    sold_out: usize,
    already: usize,
    other: Vec<String>,
}

fn tally(replies: &[(u16, String)]) -> Tally {
    let mut t = Tally::default();
    for (status, body) in replies {
        if *status != 200 {
            t.other.push(format!("HTTP {status}: {body}"));
            continue;
        }
        match Reply::parse(body) {
            Reply::News { title, .. } if title.contains("抢票成功") => t.booked += 1,
            Reply::Text(text) if text.contains("票已经抢完") => t.sold_out += 1,
            Reply::Text(text) if text.contains("已经有这个活动的票") => t.already += 1,
            other => t.other.push(format!("{other:?}")),
        }
    }
    t
}

async fn rush(apps: &[&TestApp], students: &[String], activity_id: i64) -> Vec<(u16, String)> {
    let sends = students.iter().enumerate().map(|(i, openid)| {
        let app = apps[i % apps.len()];
        let xml = wx::click(openid, &format!("BOOK_{activity_id}"));
        async move { app.post_wechat(&xml).await }
    });
    join_all(sends).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_students_fifty_tickets() {
    let app = spawn_app().await;
    let a = app.activity("rush", 50, Window::Open).await;
    let students = app.bound_students(1, 500).await;
    let replies = rush(&[&app], &students, a.id).await;
    let t = tally(&replies);
    assert!(t.other.is_empty(), "unexpected replies: {:?}", &t.other[..t.other.len().min(5)]);
    assert_eq!((t.booked, t.sold_out), (50, 450));
    assert_eq!(app.live_tickets(a.id).await, 50);
    assert_eq!(app.count("SELECT count(DISTINCT student_id) FROM tickets").await, 50);
    assert_eq!(app.count("SELECT coalesce(sum(remaining), 0) FROM activity_slots").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_student_twenty_messages_at_once_gets_one_ticket() {
    let app = spawn_app().await;
    let a = app.activity("eager", 10, Window::Open).await;
    let me = &app.bound_students(2, 1).await[0];
    let sends = (0..20).map(|i| {
        let xml = if i % 2 == 0 { wx::click(me, &format!("BOOK_{}", a.id)) } else { wx::text(me, "抢票 eager") };
        let app = &app;
        async move { app.post_wechat(&xml).await }
    });
    let t = tally(&join_all(sends).await);
    assert!(t.other.is_empty(), "{:?}", t.other);
    assert_eq!((t.booked, t.already), (1, 19));
    assert_eq!(app.live_tickets(a.id).await, 1);
    assert_eq!(app.count("SELECT sum(remaining) FROM activity_slots").await, 9, "no place lost or leaked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_booking_message_three_times_books_once_with_identical_replies() {
    let app = spawn_app().await;
    let a = app.activity("retry", 10, Window::Open).await;
    let me = &app.bound_students(3, 1).await[0];
    let xml = wx::text_with_id(me, "抢票 retry", wx::next_msg_id());
    let (r1, r2, r3) = tokio::join!(app.post_wechat(&xml), app.post_wechat(&xml), app.post_wechat(&xml));
    assert_eq!(r1, r2);
    assert_eq!(r2, r3);
    assert!(matches!(Reply::parse(&r1.1), Reply::News { .. }), "{r1:?}");
    assert_eq!(app.live_tickets(a.id).await, 1);
    // And the same click event retried: one answer too.
    let b = app.activity("retry2", 10, Window::Open).await;
    let click = wx::click(me, &format!("BOOK_{}", b.id));
    let (c1, c2, c3) = tokio::join!(app.post_wechat(&click), app.post_wechat(&click), app.post_wechat(&click));
    assert_eq!(c1, c2);
    assert_eq!(c2, c3);
    assert_eq!(app.live_tickets(b.id).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_a_rush_without_overselling() {
    let one = spawn_app().await;
    let two = spawn_app_on(one.db.clone(), Settings::default()).await;
    let a = one.activity("shared", 40, Window::Open).await;
    let students = one.bound_students(4, 300).await;
    let t = tally(&rush(&[&one, &two], &students, a.id).await);
    assert!(t.other.is_empty(), "{:?}", &t.other[..t.other.len().min(5)]);
    assert_eq!((t.booked, t.sold_out), (40, 260));
    assert_eq!(one.live_tickets(a.id).await, 40);

    // The same message delivered to both instances is still handled once.
    let me = &one.bound_students(5, 1).await[0];
    let b = one.activity("shared2", 5, Window::Open).await;
    let xml = wx::text_with_id(me, "抢票 shared2", wx::next_msg_id());
    let (r1, r2) = tokio::join!(one.post_wechat(&xml), two.post_wechat(&xml));
    assert_eq!(r1, r2);
    assert_eq!(one.live_tickets(b.id).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_rebook_under_concurrency_never_exceed_capacity() {
    let app = spawn_app().await;
    let a = app.activity("churn", 20, Window::Open).await;
    let holders = app.bound_students(6, 20).await;
    let first = tally(&rush(&[&app], &holders, a.id).await);
    assert_eq!(first.booked, 20);
    let others = app.bound_students(7, 60).await;

    // Holders cancel while others rush for the freed places, all at once.
    let cancels = holders.iter().map(|h| {
        let xml = wx::text(h, "退票 churn");
        let app = &app;
        async move { app.post_wechat(&xml).await }
    });
    let apps = [&app];
    let (cancel_replies, rush_replies) = tokio::join!(join_all(cancels), rush(&apps, &others, a.id));
    let cancelled = cancel_replies.iter().filter(|(_, b)| b.contains("已退掉")).count();
    assert_eq!(cancelled, 20, "every holder could cancel");
    let t = tally(&rush_replies);
    assert!(t.other.is_empty(), "{:?}", t.other);
    assert!(t.booked <= 20, "booked {}", t.booked);

    let live = app.live_tickets(a.id).await;
    let remaining = app.count(&format!("SELECT sum(remaining) FROM activity_slots WHERE activity_id = {}", a.id)).await;
    assert!(live <= 20, "live {live}");
    assert_eq!(live + remaining, 20, "every place is either a live ticket or free");
    assert_eq!(live as usize, t.booked);

    // Whatever is free now can be booked at once.
    let late = app.bound_students(8, 30).await;
    let t2 = tally(&rush(&[&app], &late, a.id).await);
    assert_eq!(t2.booked as i64, remaining);
    assert_eq!(app.live_tickets(a.id).await, 20);
    let per_student: HashMap<String, i64> =
        sqlx::query_as("SELECT student_id, count(*) FROM tickets WHERE status <> 'cancelled' GROUP BY student_id")
            .fetch_all(&app.pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    assert!(per_student.values().all(|n| *n == 1));
}
