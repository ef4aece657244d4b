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

/// An admin saving the activity over and over while it is being rushed, as
/// the admin handler does it: one transaction per save.
async fn edit_capacity_until(app: &TestApp, id: i64, stop: &std::sync::atomic::AtomicBool) -> (usize, Vec<String>) {
    use wechat_ticket::booking::{NewActivity, activities};
    let (mut saves, mut errors) = (0, Vec::new());
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let mut tx = app.pool.begin().await.unwrap();
        let a = activities::by_id(&mut tx, id).await.unwrap().unwrap();
        let new = NewActivity {
            key: a.key.clone(),
            name: a.name.clone(),
            place: a.place.clone(),
            description: a.description.clone(),
            book_start: a.book_start,
            book_end: a.book_end,
            start_at: a.start_at,
            end_at: a.end_at,
            capacity: if a.capacity == 300 { 320 } else { 300 },
            publish: true,
            mode: Default::default(),
        };
        match activities::update(&mut tx, &app.state.notifier, id, &new).await {
            Ok(activities::EditOutcome::Saved(_)) => {
                tx.commit().await.unwrap();
                saves += 1;
            }
            Ok(activities::EditOutcome::Refused(e)) => errors.push(format!("refused: {e:?}")),
            Err(e) => errors.push(e.to_string()),
        }
    }
    (saves, errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_edits_during_a_rush_neither_deadlock_nor_say_sold_out_wrongly() {
    let app = spawn_app().await;
    let a = app.activity("edited", 300, Window::Open).await;
    let students = app.bound_students(11, 250).await;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let rush_then_stop = async {
        let replies = rush(&[&app], &students, a.id).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        replies
    };
    let (replies, (saves, edit_errors)) = tokio::join!(rush_then_stop, edit_capacity_until(&app, a.id, &stop));
    assert!(edit_errors.is_empty(), "the admin's saves failed: {edit_errors:?}");
    assert!(saves > 0);

    // At least 300 places throughout for 250 students: "sold out" would be a lie.
    let mut retry = Vec::new();
    for (openid, (status, body)) in students.iter().zip(&replies) {
        assert_eq!(*status, 200, "{body}");
        match Reply::parse(body) {
            Reply::News { title, .. } if title.contains("抢票成功") => {}
            Reply::Text(text) if text.contains("请稍后再试") => retry.push(openid.clone()),
            other => panic!("{other:?}"),
        }
    }
    // Those told to try again get their ticket when they do.
    for openid in &retry {
        let reply = app.say(&wx::click(openid, &format!("BOOK_{}", a.id))).await;
        assert!(matches!(&reply, Reply::News { title, .. } if title.contains("抢票成功")), "{reply:?}");
    }
    assert_eq!(app.live_tickets(a.id).await, 250);
    let capacity = app.count(&format!("SELECT capacity::bigint FROM activities WHERE id = {}", a.id)).await;
    let remaining = app.count(&format!("SELECT sum(remaining) FROM activity_slots WHERE activity_id = {}", a.id)).await;
    assert_eq!(250 + remaining, capacity, "capacity exact: every place a live ticket or free");
    assert_eq!(app.count("SELECT count(DISTINCT student_id) FROM tickets WHERE status <> 'cancelled'").await, 250);
    // A deadlock's victim may be a booking, answered "busy" and retried above:
    // PostgreSQL's own count says whether there was one. (Backends report their
    // counts within about a second of going idle.)
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let deadlocks = app.count("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()").await;
    assert_eq!(deadlocks, 0, "no lock cycle between the edits and the bookings");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_and_a_booking_holding_a_slot_never_wait_for_each_other() {
    use wechat_ticket::booking::{NewActivity, activities};
    let app = spawn_app().await;
    let a = app.activity("locks", 10, Window::Open).await;
    app.bound_students(12, 1).await;
    // A booking, paused half-way: it holds a slot row, as the booking statement
    // does between taking a place and inserting the ticket.
    let mut booking = app.pool.begin().await.unwrap();
    sqlx::query("UPDATE activity_slots SET remaining = remaining - 1 WHERE activity_id = $1 AND slot = 0")
        .bind(a.id)
        .execute(&mut *booking)
        .await
        .unwrap();
    // The admin saves meanwhile: it locks the activity row, then waits for that slot.
    let (pool, notifier) = (app.pool.clone(), app.state.notifier.clone());
    let edit = tokio::spawn(async move {
        let mut tx = pool.begin().await.unwrap();
        let current = activities::by_id(&mut tx, a.id).await.unwrap().unwrap();
        let new = NewActivity {
            key: current.key,
            name: current.name,
            place: current.place,
            description: current.description,
            book_start: current.book_start,
            book_end: current.book_end,
            start_at: current.start_at,
            end_at: current.end_at,
            capacity: 12,
            publish: true,
            mode: Default::default(),
        };
        let saved = activities::update(&mut tx, &notifier, a.id, &new).await;
        tx.commit().await.unwrap();
        saved.map(|_| ())
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // The booking now issues its ticket: the foreign key check on the activity
    // row must not wait behind the edit that waits behind the booking.
    let issued = sqlx::query(
        "INSERT INTO tickets (code, activity_id, student_id, slot, openid) VALUES ('LoCkSLoCkSLoCkSLoCkS01', $1, '0001200000', 0, 'o12_0')",
    )
    .bind(a.id)
    .execute(&mut *booking)
    .await;
    assert!(issued.is_ok(), "the booking was the victim of a lock cycle: {issued:?}");
    booking.commit().await.unwrap();
    let saved =
        tokio::time::timeout(std::time::Duration::from_secs(5), edit).await.expect("the edit finished").unwrap();
    assert!(saved.is_ok(), "the edit failed: {saved:?}");
    assert_eq!(app.live_tickets(a.id).await, 1);
    assert_eq!(app.count(&format!("SELECT sum(remaining) FROM activity_slots WHERE activity_id = {}", a.id)).await, 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn places_held_too_long_are_busy_not_sold_out_and_the_retry_books() {
    let app = spawn_app().await;
    let a = app.activity("held", 5, Window::Open).await;
    let me = &app.bound_students(13, 1).await[0];
    // Every place is held by transactions in flight (bookings that may yet roll back).
    let mut holder = app.pool.begin().await.unwrap();
    sqlx::query("SELECT slot FROM activity_slots WHERE activity_id = $1 FOR UPDATE")
        .bind(a.id)
        .execute(&mut *holder)
        .await
        .unwrap();
    let xml = wx::text_with_id(me, "抢票 held", wx::next_msg_id());
    let started = std::time::Instant::now();
    let reply = app.say(&xml).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(4), "inside WeChat's deadline");
    assert!(reply.text().contains("请稍后再试") && !reply.text().contains("抢完"), "{reply:?}");
    holder.rollback().await.unwrap();
    // Not recorded: WeChat's retry of the same message gets a real answer.
    let retry = app.say(&xml).await;
    assert!(matches!(&retry, Reply::News { title, .. } if title.contains("抢票成功")), "{retry:?}");
    assert_eq!(app.live_tickets(a.id).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_student_racing_themself_for_the_last_place_is_told_they_hold_it() {
    for round in 0..5 {
        let app = spawn_app().await;
        let a = app.activity("last", 1, Window::Open).await;
        let me = &app.bound_students(14 + round, 1).await[0];
        let sends = (0..6).map(|_| {
            let xml = wx::click(me, &format!("BOOK_{}", a.id));
            let app = &app;
            async move { app.post_wechat(&xml).await }
        });
        let t = tally(&join_all(sends).await);
        assert!(t.other.is_empty(), "{:?}", t.other);
        assert_eq!((t.booked, t.already, t.sold_out), (1, 5, 0), "round {round}");
    }
}
