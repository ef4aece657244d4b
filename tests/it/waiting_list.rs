//! The waiting list (候补), over HTTP as students use it: who may join and how
//! often, positions in 查票, leaving, a freed place going to the first in line
//! in the cancel's own transaction (told through the fake WeChat API), the
//! close at book_end, and capacity kept exact under hundreds of cancels, rush
//! bookings and joins at once.

use std::time::Duration;

use futures::future::join_all;
use wechat_ticket::{booking::Activity, local_time};

use crate::common::{
    Settings, TestApp,
    fake_wechat::{CUSTOM_SEND_PATH, FakeWechat},
    fixtures::Window,
    spawn_app, spawn_app_with,
    wx::{self, Reply},
};

async fn say(app: &TestApp, openid: &str, text: &str) -> String {
    match app.say(&wx::text(openid, text)).await {
        Reply::Text(text) => text,
        other => format!("{other:?}"),
    }
}

/// `n` bound students of `group` who each book `a` (so it can sell out).
async fn holders(app: &TestApp, group: u32, n: usize, a: &Activity) -> Vec<String> {
    let openids = app.bound_students(group, n).await;
    for openid in &openids {
        assert!(matches!(app.say(&wx::click(openid, &format!("BOOK_{}", a.id))).await, Reply::News { .. }));
    }
    openids
}

async fn post(app: &TestApp, xml: String) -> (u16, String) {
    app.post_wechat(&xml).await
}

async fn tickets_of(app: &TestApp, openid: &str, activity_id: i64) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM tickets WHERE openid = $1 AND activity_id = $2 AND status <> 'cancelled'")
        .bind(openid)
        .bind(activity_id)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

async fn places_left(app: &TestApp, activity_id: i64) -> i64 {
    sqlx::query_scalar("SELECT coalesce(sum(remaining), 0)::bigint FROM activity_slots WHERE activity_id = $1")
        .bind(activity_id)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// Waits (up to 30 s) for a customer-service message to `openid` and returns its text.
async fn message_to(fake: &FakeWechat, openid: &str) -> String {
    for _ in 0..300 {
        let sent = fake.requests(CUSTOM_SEND_PATH);
        if let Some(r) = sent.iter().find(|r| r.body.as_ref().unwrap()["touser"] == openid) {
            return r.body.as_ref().unwrap()["text"]["content"].as_str().unwrap().to_string();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("nothing was sent to {openid}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancel_gives_the_place_to_the_first_in_line_at_once_and_tells_them_with_the_ticket_link() {
    let fake = FakeWechat::start().await;
    let app = spawn_app_with(fake.settings(Settings::default()).with_notify_workers()).await;
    let a = app.activity("concert", 2, Window::Open).await;
    let held = holders(&app, 1, 2, &a).await;
    let late = app.bound_students(2, 3).await;
    let (first, second, rusher) = (&late[0], &late[1], &late[2]);

    let sold_out = say(&app, first, "抢票 concert").await;
    assert!(sold_out.contains("票已经抢完") && sold_out.contains("候补 concert"), "{sold_out}");
    let page = app.http.get(app.url(&format!("/activities/{}", a.id))).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("候补 concert"), "the activity page says how to queue");

    assert!(say(&app, first, "候补 concert").await.contains("排第 1 位"));
    assert!(say(&app, second, "候补 concert").await.contains("排第 2 位"));
    assert!(say(&app, second, "查票").await.contains("候补第 2 位"));

    let cancelled = say(&app, &held[0], "退票 concert").await;
    assert!(cancelled.contains("已退掉"), "{cancelled}");
    // When the cancel's answer arrives, its transaction has committed: the
    // ticket, the line and the notice changed with it, and no place is free.
    assert_eq!(tickets_of(&app, first, a.id).await, 1, "the first in line holds the ticket");
    assert_eq!(places_left(&app, a.id).await, 0, "the place did not go back to be booked");
    assert_eq!(app.count("SELECT count(*) FROM notifications WHERE kind = 'waiting_promoted'").await, 1);
    assert!(say(&app, second, "查票").await.contains("候补第 1 位"), "the second moved up");
    let rush = say(&app, rusher, "抢票 concert").await;
    assert!(rush.contains("票已经抢完"), "a rush request does not get the freed place: {rush}");
    assert_eq!(tickets_of(&app, rusher, a.id).await, 0);

    let told = message_to(&fake, first).await;
    assert!(told.contains("候补到票") && told.contains("/tickets/"), "told with the ticket link: {told}");
    assert!(matches!(app.say(&wx::text(first, "取票 concert")).await, Reply::News { .. }), "a ticket like any other");
    assert_eq!(app.live_tickets(a.id).await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn joining_twice_or_with_a_ticket_or_while_places_are_left_is_refused_and_leaving_works() {
    let app = spawn_app().await;
    let a = app.activity("talk", 1, Window::Open).await;
    let held = holders(&app, 1, 1, &a).await;
    let me = &app.bound_students(2, 1).await[0];

    let twice = say(&app, &held[0], "候补 talk").await;
    assert!(twice.contains("已经有这个活动的票"), "{twice}");
    assert!(say(&app, me, "候补 talk").await.contains("排第 1 位"));
    let again = say(&app, me, "候补 talk").await;
    assert!(again.contains("不能重复排队") && again.contains("第 1 位"), "{again}");
    assert_eq!(app.count("SELECT count(*) FROM waiting_list WHERE state = 'waiting'").await, 1);
    // One entry per WeChat account too: rebound under another student ID, it may not queue again.
    assert!(say(&app, me, "解绑").await.contains("已解除"));
    app.bind(me, "2024990001").await;
    let rebound = say(&app, me, "候补 talk").await;
    assert!(rebound.contains("不能重复排队"), "{rebound}");
    assert_eq!(app.count("SELECT count(*) FROM waiting_list WHERE state = 'waiting'").await, 1);
    assert!(say(&app, me, "候补 nosuch").await.contains("没有代号为「nosuch」的活动"));
    assert!(say(&app, "o_unbound", "候补 talk").await.contains("绑定"));

    let left = say(&app, me, "取消候补 talk").await;
    assert!(left.contains("已退出"), "{left}");
    assert!(!say(&app, me, "查票").await.contains("候补"), "no longer shown");
    assert!(say(&app, me, "取消候补 talk").await.contains("没有在排"));
    // Leaving gave up the place in line: a cancel now frees the place for anyone.
    assert!(say(&app, &held[0], "退票 talk").await.contains("已退掉"));
    assert_eq!(places_left(&app, a.id).await, 1);
    let open = say(&app, me, "候补 talk").await;
    assert!(open.contains("还有票") && open.contains("抢票 talk"), "{open}");
    assert_eq!(app.count("SELECT count(*) FROM waiting_list WHERE state = 'waiting'").await, 0);

    let later = app.activity("later", 1, Window::NotYetOpen).await;
    assert!(say(&app, me, "候补 later").await.contains("还没开始抢票"));
    let over = app.activity("over", 1, Window::Closed).await;
    assert!(say(&app, me, "候补 over").await.contains("候补也已截止"));
    let _ = (later, over);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_raised_capacity_goes_to_the_line_in_join_order() {
    let app = spawn_app().await;
    let a = app.activity("lecture", 1, Window::Open).await;
    holders(&app, 1, 1, &a).await;
    let line = app.bound_students(2, 3).await;
    for (i, openid) in line.iter().enumerate() {
        assert!(say(&app, openid, "候补 lecture").await.contains(&format!("排第 {} 位", i + 1)));
    }
    // The admin raises the capacity from 1 to 3 on the console's edit form.
    let csrf = app.login_admin("alice").await;
    let tz = time_tz::timezones::get_by_name("Asia/Shanghai").unwrap();
    let t = |at| local_time::input(at, tz);
    let form = [
        ("csrf", csrf),
        ("key", a.key.clone()),
        ("name", a.name.clone()),
        ("place", a.place.clone()),
        ("description", a.description.clone()),
        ("book_start", t(a.book_start)),
        ("book_end", t(a.book_end)),
        ("start_at", t(a.start_at)),
        ("end_at", t(a.end_at)),
        ("capacity", "3".to_string()),
    ];
    let resp = app.http.post(app.url(&format!("/admin/activities/{}", a.id))).form(&form).send().await.unwrap();
    let (status, page) = (resp.status().as_u16(), resp.text().await.unwrap());
    assert!(status == 200 && page.contains("已保存"), "{status} {page}");
    assert_eq!((tickets_of(&app, &line[0], a.id).await, tickets_of(&app, &line[1], a.id).await), (1, 1));
    assert_eq!(tickets_of(&app, &line[2], a.id).await, 0);
    assert!(say(&app, &line[2], "查票").await.contains("候补第 1 位"));
    assert_eq!(places_left(&app, a.id).await, 0);
    assert_eq!(app.count("SELECT count(*) FROM notifications WHERE kind = 'waiting_promoted'").await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_list_closes_at_book_end_and_those_still_waiting_are_told() {
    let fake = FakeWechat::start().await;
    let settings = fake.settings(Settings::default()).with_notify_workers().set("REMINDER_CHECK_SECONDS", "1");
    let app = spawn_app_with(settings).await;
    let a = app.activity("gala", 1, Window::Open).await;
    holders(&app, 1, 1, &a).await;
    let me = &app.bound_students(2, 1).await[0];
    assert!(say(&app, me, "候补 gala").await.contains("排第 1 位"));
    app.close_booking(a.id).await;

    let told = message_to(&fake, me).await;
    assert!(told.contains("候补结束") && told.contains("没有候补到票"), "{told}");
    assert_eq!(app.count("SELECT count(*) FROM waiting_list WHERE state = 'waiting'").await, 0);
    assert!(!say(&app, me, "查票").await.contains("候补第"));
}

/// The capacity invariant, and that promotions went in join order: every
/// promoted entry joined before every entry still waiting, and tickets were
/// issued to them in the order they joined.
async fn assert_exact_and_in_order(app: &TestApp, a: &Activity) {
    let live = app.live_tickets(a.id).await;
    assert_eq!(live + places_left(app, a.id).await, i64::from(a.capacity), "live tickets + places left = capacity");
    let doubles = app
        .count(&format!(
            "SELECT count(*) FROM (SELECT student_id FROM tickets WHERE activity_id = {} AND status <> 'cancelled' \
             GROUP BY student_id HAVING count(*) > 1) d",
            a.id
        ))
        .await;
    assert_eq!(doubles, 0, "nobody holds two tickets");
    let promoted: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT id, ticket_id FROM waiting_list WHERE activity_id = $1 AND state = 'promoted' ORDER BY id",
    )
    .bind(a.id)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert!(promoted.windows(2).all(|w| w[0].1 < w[1].1), "tickets issued in join order");
    let first_waiting: Option<i64> =
        sqlx::query_scalar("SELECT min(id) FROM waiting_list WHERE activity_id = $1 AND state = 'waiting'")
            .bind(a.id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    if let (Some((last_promoted, _)), Some(first_waiting)) = (promoted.last(), first_waiting) {
        assert!(*last_promoted < first_waiting, "nobody was passed over in line");
    }
    let waiting_with_places = places_left(app, a.id).await > 0 && first_waiting.is_some();
    assert!(!waiting_with_places, "a free place while someone waits");
}

/// 200 holders' cancels, 200 joins and 200 rush bookings of `a`, interleaved,
/// all at once, after `early` students joined the line. Returns (rush
/// bookings that got a ticket, tickets that went to the line).
async fn all_at_once(app: &TestApp, a: &Activity, group: u32, early: usize) -> (usize, i64) {
    let held = app.bound_students(group, 300).await;
    let booked = join_all(held.iter().map(|o| post(app, wx::click(o, &format!("BOOK_{}", a.id))))).await;
    assert!(booked.iter().all(|(s, _)| *s == 200));
    assert_eq!(app.live_tickets(a.id).await, 300);
    let waiting = app.bound_students(group + 1, early).await;
    let key = format!("候补 {}", a.key);
    let joined = join_all(waiting.iter().map(|o| post(app, wx::text(o, &key)))).await;
    assert!(joined.iter().all(|(_, body)| format!("{:?}", Reply::parse(body)).contains("已加入")), "all joined");

    let joiners = app.bound_students(group + 2, 200).await;
    let rushers = app.bound_students(group + 3, 200).await;
    let mut sends = Vec::new();
    for i in 0..200 {
        sends.push(wx::text(&held[i], &format!("退票 {}", a.key)));
        sends.push(wx::text(&joiners[i], &key));
        sends.push(wx::click(&rushers[i], &format!("BOOK_{}", a.id)));
    }
    let replies = join_all(sends.into_iter().map(|xml| post(app, xml))).await;
    let failed: Vec<_> = replies.iter().filter(|(s, _)| *s != 200).collect();
    assert!(failed.is_empty(), "{} requests failed, e.g. {:?}", failed.len(), failed.first());
    let texts: Vec<String> = replies.iter().map(|(_, body)| format!("{:?}", Reply::parse(body))).collect();
    let count = |needle: &str| texts.iter().filter(|t| t.contains(needle)).count();
    assert_eq!(count("已退掉"), 200, "every cancel went through");
    assert_eq!(count("已加入") + count("还有票"), 200, "every join was answered: joined, or told to book");
    let rushed = count("抢票成功");
    let promoted = app
        .count(&format!("SELECT count(*) FROM waiting_list WHERE activity_id = {} AND state = 'promoted'", a.id))
        .await;
    let live = app.live_tickets(a.id).await;
    assert_eq!(rushed as i64 + promoted + 100, live, "every ticket is a holder's, a rush's or the line's");
    for openid in &waiting {
        assert_eq!(tickets_of(app, openid, a.id).await, 1, "those already in line were served first");
    }
    eprintln!(
        "{}: {rushed} rush bookings got a ticket, {promoted} went to the line, {} joined",
        a.key,
        count("已加入")
    );
    assert_exact_and_in_order(app, a).await;

    // Then the other holders cancel at once: still exact, still in order.
    let rest = join_all(held[200..].iter().map(|o| post(app, wx::text(o, &format!("退票 {}", a.key))))).await;
    assert!(rest.iter().all(|(s, _)| *s == 200));
    assert_exact_and_in_order(app, a).await;
    (rushed, promoted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_cancels_rush_bookings_and_joins_at_once_keep_capacity_exact_and_the_line_in_order() {
    let app = spawn_app().await;
    // The line starts empty: cancels, joins and rush bookings race for every place.
    let open = app.activity("crowd", 300, Window::Open).await;
    all_at_once(&app, &open, 10, 0).await;
    // A hundred wait already: every freed place goes to the line, none to a rush.
    let queued = app.activity("queued", 300, Window::Open).await;
    let (rushed, promoted) = all_at_once(&app, &queued, 20, 100).await;
    assert_eq!((rushed, promoted), (0, 200), "more wait than places free: the line gets every one");
}
