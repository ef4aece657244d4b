//! Booking messages answered many at once (src/web/wechat/batch.rs): each
//! member of a batch gets the answer it would have got alone.
//!
//! Every test forces its messages into ONE batch (`hold_every_turn`): a test
//! transaction locks `wechat_signed_queries`, so every batch's claim waits;
//! blockers take every batch turn of the instance; the messages under test
//! queue meanwhile, and once the lock goes the next batch takes them all.
//! Their `wechat_messages.created_at` (the batch transaction's start) are
//! then equal: the proof that they shared one transaction.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use futures::future::join_all;
use sqlx::{Postgres, Transaction};
use tokio::task::JoinHandle;
use wechat_ticket::wechat::{message, signature};

use crate::common::{
    Settings, TOKEN, TestApp,
    fixtures::Window,
    spawn_app, spawn_app_on,
    wx::{self, Reply},
};

type Sent = JoinHandle<(u16, String)>;

/// A query signed for a chosen `timestamp` and `nonce`, as WeChat adds to a POST.
fn query_at(timestamp: i64, nonce: &str) -> String {
    let ts = timestamp.to_string();
    format!("signature={}&timestamp={ts}&nonce={nonce}&openid=test", signature::sign(&[TOKEN, &ts, nonce]))
}

/// A signed query never used before.
fn fresh_query() -> String {
    query_at(wx::now(), &wx::next_msg_id().to_string())
}

/// The message's de-duplication key, as the app computes it.
fn key_of(xml: &str) -> String {
    message::parse(xml).expect("a well-formed message").dedup_key()
}

/// A menu click with a chosen CreateTime (a retry repeats it verbatim).
fn click_at(openid: &str, activity_id: i64, create_time: i64) -> String {
    wx::event_at(openid, "CLICK", Some(&format!("BOOK_{activity_id}")), create_time)
}

/// POSTs `xml` under `query` from a task of its own.
fn send(app: &TestApp, query: String, xml: String) -> Sent {
    let (http, url) = (app.http.clone(), app.url(&format!("/wechat?{query}")));
    tokio::spawn(async move {
        let resp = http.post(url).header("content-type", "text/xml").body(xml).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap())
    })
}

async fn sessions_waiting_on_locks(app: &TestApp) -> i64 {
    app.count("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")
        .await
}

/// Every batch turn of `app` taken by a blocker whose claim waits on the lock.
struct HeldTurns {
    lock: Transaction<'static, Postgres>,
    blockers: Vec<Sent>,
}

/// Takes every batch turn of `app` (whatever `AT_ONCE` is): locks
/// `wechat_signed_queries`, then sends blocker bookings one at a time until
/// one no longer adds a session waiting on the lock (every turn taken: that
/// one queues, harmlessly). The blockers are WeChat users bound to nobody, so
/// their bookings are refused at the check and never take a place.
async fn hold_every_turn(app: &TestApp) -> HeldTurns {
    hold_every_turn_of(&[app]).await
}

/// `hold_every_turn` for several instances on one database, under one lock.
async fn hold_every_turn_of(apps: &[&TestApp]) -> HeldTurns {
    let app = apps[0];
    let target = app.activity("blocker", 1000, Window::Open).await;
    let mut lock = app.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE wechat_signed_queries IN EXCLUSIVE MODE").execute(&mut *lock).await.unwrap();
    let mut blockers = Vec::new();
    let mut waiting = sessions_waiting_on_locks(app).await;
    'apps: for (n, app) in apps.iter().enumerate() {
        for i in 0..32 {
            let openid = format!("oBlocker_{n}_{i}");
            blockers.push(send(app, fresh_query(), click_at(&openid, target.id, wx::now() + i)));
            let since = Instant::now();
            let mut grew = false;
            while since.elapsed() < Duration::from_millis(300) {
                let now = sessions_waiting_on_locks(app).await;
                if now > waiting {
                    waiting = now;
                    grew = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if !grew {
                continue 'apps;
            }
        }
        panic!("32 blockers and still a batch turn free");
    }
    HeldTurns { lock, blockers }
}

impl HeldTurns {
    /// Sends a message that queues for the next batch; in the order queued.
    async fn queue(&self, app: &TestApp, query: String, xml: String) -> Sent {
        let sent = send(app, query, xml);
        // Parsed and queued long before this (no I/O before the queue): keeps the batch's order.
        tokio::time::sleep(Duration::from_millis(50)).await;
        sent
    }

    /// Lets the batches go once everything queued has had time to reach the
    /// queue; the blockers' replies (each "not bound").
    async fn release(self) -> Vec<Sent> {
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.lock.commit().await.unwrap();
        self.blockers
    }
}

async fn replies(sent: Vec<Sent>) -> Vec<(u16, String)> {
    join_all(sent).await.into_iter().map(Result::unwrap).collect()
}

/// The blockers were answered as what they are: WeChat users not bound yet.
async fn blockers_answered(blockers: Vec<Sent>) {
    for (status, body) in replies(blockers).await {
        assert_eq!(status, 200, "{body}");
        assert!(Reply::parse(&body).text().contains("还没有绑定学号"), "{body}");
    }
}

/// (rows, distinct created_at) of these messages' records.
async fn records_of(app: &TestApp, keys: &[String]) -> (i64, i64) {
    sqlx::query_as("SELECT count(*), count(DISTINCT created_at) FROM wechat_messages WHERE dedup_key = ANY($1)")
        .bind(keys)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// Each of these messages was recorded, all in one transaction.
async fn assert_one_batch(app: &TestApp, keys: &[String]) {
    assert_eq!(records_of(app, keys).await, (keys.len() as i64, 1), "one record each, all of one transaction");
}

fn is_booked(body: &str) -> bool {
    matches!(Reply::parse(body), Reply::News { title, .. } if title.contains("抢票成功"))
}

fn is_already(body: &str) -> bool {
    matches!(Reply::parse(body), Reply::Text(text) if text.contains("已经有这个活动的票"))
}

async fn remaining(app: &TestApp, activity_id: i64) -> i64 {
    app.count(&format!("SELECT coalesce(sum(remaining), 0) FROM activity_slots WHERE activity_id = {activity_id}"))
        .await
}

async fn tickets_of(app: &TestApp, student_id: &str) -> i64 {
    app.count(&format!("SELECT count(*) FROM tickets WHERE student_id = '{student_id}' AND status <> 'cancelled'"))
        .await
}

/// Every place of the activity is either a live ticket or free.
async fn assert_capacity_exact(app: &TestApp, activity_id: i64, capacity: i64) {
    let live = app.live_tickets(activity_id).await;
    assert_eq!(live + remaining(app, activity_id).await, capacity, "live {live}: capacity exact");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_and_its_original_in_one_batch_get_one_answer() {
    let app = spawn_app().await;
    let a = app.activity("dup", 10, Window::Open).await;
    let s = app.bound_students(21, 4).await;
    let held = hold_every_turn(&app).await;
    // A text retried under another signed query, as WeChat retries.
    let text = wx::text_with_id(&s[0], "抢票 dup", wx::next_msg_id());
    let t1 = held.queue(&app, fresh_query(), text.clone()).await;
    let t2 = held.queue(&app, fresh_query(), text.clone()).await;
    // A text delivered twice under the same signed query.
    let same_q = fresh_query();
    let text_b = wx::text_with_id(&s[1], "抢票 dup", wx::next_msg_id());
    let u1 = held.queue(&app, same_q.clone(), text_b.clone()).await;
    let u2 = held.queue(&app, same_q, text_b.clone()).await;
    // A menu click retried (same CreateTime), under two signed queries.
    let click = click_at(&s[2], a.id, wx::now() * 1000 + 7);
    let c1 = held.queue(&app, fresh_query(), click.clone()).await;
    let c2 = held.queue(&app, fresh_query(), click.clone()).await;
    // Someone else's booking in the same batch.
    let other = wx::text_with_id(&s[3], "抢票 dup", wx::next_msg_id());
    let o = held.queue(&app, fresh_query(), other.clone()).await;
    let blockers = held.release().await;

    let r = replies(vec![t1, t2, u1, u2, c1, c2, o]).await;
    for (status, body) in &r {
        assert_eq!(*status, 200, "{body}");
        assert!(is_booked(body), "{body}");
    }
    assert_eq!(r[0], r[1], "the retry gets the original's reply, byte for byte");
    assert_eq!(r[2], r[3], "the same delivery twice: the same reply");
    assert_eq!(r[4], r[5], "the retried click: the same reply");
    assert_ne!(r[0], r[2], "different students, different tickets");
    assert_eq!(app.live_tickets(a.id).await, 4, "one ticket per student, none for a retry");
    for i in 0..4 {
        assert_eq!(tickets_of(&app, &format!("{:05}{:05}", 21, i)).await, 1);
    }
    assert_capacity_exact(&app, a.id, 10).await;
    let keys = [key_of(&text), key_of(&text_b), key_of(&click), key_of(&other)];
    assert_one_batch(&app, &keys).await;
    assert_eq!(app.count("SELECT count(*) FROM wechat_messages WHERE dedup_key NOT LIKE 'evt:oBlocker%'").await, 4);
    blockers_answered(blockers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_query_replayed_in_the_batch_of_its_first_use_is_refused() {
    let app = spawn_app().await;
    let a = app.activity("replay", 10, Window::Open).await;
    let s = app.bound_students(22, 3).await;
    let held = hold_every_turn(&app).await;
    let q = fresh_query();
    // A: the genuine message under Q.
    let msg_a = wx::text_with_id(&s[0], "抢票 replay", wx::next_msg_id());
    let ra = held.queue(&app, q.clone(), msg_a.clone()).await;
    // B: another student's booking forged under the same Q.
    let msg_b = click_at(&s[1], a.id, wx::now() * 1000 + 1);
    let rb = held.queue(&app, q.clone(), msg_b.clone()).await;
    // B': the same student's other message under Q.
    let msg_b2 = click_at(&s[0], a.id, wx::now() * 1000 + 2);
    let rb2 = held.queue(&app, q.clone(), msg_b2.clone()).await;
    // Someone else's genuine booking, to show the batch.
    let msg_c = wx::text_with_id(&s[2], "抢票 replay", wx::next_msg_id());
    let rc = held.queue(&app, fresh_query(), msg_c.clone()).await;
    let blockers = held.release().await;

    let r = replies(vec![ra, rb, rb2, rc]).await;
    assert_eq!(r[0].0, 200, "{}", r[0].1);
    assert!(is_booked(&r[0].1), "{}", r[0].1);
    assert_eq!(r[1], (403, "this signature was already used for another message".to_string()));
    assert_eq!(r[2], (403, "this signature was already used for another message".to_string()));
    assert!(is_booked(&r[3].1), "{}", r[3].1);
    // B changed nothing.
    assert_eq!(tickets_of(&app, "0002200001").await, 0, "no ticket for the forger");
    assert_eq!(tickets_of(&app, "0002200000").await, 1);
    assert_eq!(records_of(&app, &[key_of(&msg_b), key_of(&msg_b2)]).await.0, 0, "no record of B");
    assert_eq!(app.live_tickets(a.id).await, 2);
    assert_capacity_exact(&app, a.id, 10).await;
    assert_one_batch(&app, &[key_of(&msg_a), key_of(&msg_c)]).await;
    // Q stays spent on A's message; A's retry under it is still A's answer.
    assert_eq!(app.post_wechat_raw(&q, msg_a).await, r[0]);
    assert_eq!(app.post_wechat_raw(&q, msg_b).await.0, 403, "and B is refused after the batch too");
    assert_eq!(tickets_of(&app, "0002200001").await, 0);
    blockers_answered(blockers).await;
}

/// The ticket code a booking reply points to (the news card's or the "already" text's link).
fn ticket_code_of(body: &str) -> String {
    use crate::common::fixtures::ticket_code;
    match Reply::parse(body) {
        Reply::News { url, .. } => ticket_code(&url),
        text => ticket_code(&text.links().into_iter().next().expect("a ticket link")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_students_several_bookings_in_one_batch_book_once_each_activity() {
    let app = spawn_app().await;
    let a = app.activity("twice", 10, Window::Open).await;
    let b = app.activity("forms", 10, Window::Open).await;
    let s = app.bound_students(23, 2).await;
    let me = &s[0];
    let held = hold_every_turn(&app).await;
    let msgs = [
        wx::text_with_id(me, "抢票 twice", wx::next_msg_id()),
        wx::text_with_id(me, "抢票 twice", wx::next_msg_id()),
        click_at(me, a.id, wx::now() * 1000 + 1),
        // The same student again, for another activity, once by each form.
        click_at(me, b.id, wx::now() * 1000 + 2),
        wx::text_with_id(me, "抢票 FORMS", wx::next_msg_id()),
        // Someone else between them.
        wx::text_with_id(&s[1], "抢票 twice", wx::next_msg_id()),
    ];
    let mut sent = Vec::new();
    for xml in &msgs {
        sent.push(held.queue(&app, fresh_query(), xml.clone()).await);
    }
    let blockers = held.release().await;
    let r = replies(sent).await;
    for (status, body) in &r {
        assert_eq!(*status, 200, "{body}");
    }
    assert!(is_booked(&r[0].1), "the first books: {}", r[0].1);
    assert!(is_already(&r[1].1), "the second holds the first's ticket: {}", r[1].1);
    assert!(is_already(&r[2].1), "and so does the click: {}", r[2].1);
    assert!(is_booked(&r[3].1), "the click books the other activity: {}", r[3].1);
    assert!(is_already(&r[4].1), "the text after it holds that ticket: {}", r[4].1);
    assert!(is_booked(&r[5].1), "another student books too: {}", r[5].1);
    let (code_a, code_b) = (ticket_code_of(&r[0].1), ticket_code_of(&r[3].1));
    assert_eq!(ticket_code_of(&r[1].1), code_a, "\"already\" shows the ticket just booked");
    assert_eq!(ticket_code_of(&r[2].1), code_a);
    assert_eq!(ticket_code_of(&r[4].1), code_b);
    assert_ne!(code_a, code_b);

    assert_eq!(tickets_of(&app, "0002300000").await, 2, "one ticket per activity");
    assert_eq!(app.live_tickets(a.id).await, 2);
    assert_eq!(app.live_tickets(b.id).await, 1);
    assert_capacity_exact(&app, a.id, 10).await;
    assert_capacity_exact(&app, b.id, 10).await;
    let keys: Vec<String> = msgs.iter().map(|m| key_of(m)).collect();
    assert_one_batch(&app, &keys).await;
    blockers_answered(blockers).await;
}

/// Waits (up to 2 s) until some transaction of this database is at the
/// place-taking statement of `take_places_and_issue`.
async fn wait_for_the_take(app: &TestApp) {
    let since = Instant::now();
    while since.elapsed() < Duration::from_secs(2) {
        let at_take = app
            .count(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND query LIKE 'WITH want AS%' AND state <> 'idle'",
            )
            .await;
        if at_take > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("the batch never reached the take");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_student_unbound_while_their_batch_waits_for_places_gets_no_ticket() {
    let app = spawn_app().await;
    let a = app.activity("unbind", 10, Window::Open).await;
    let s = app.bound_students(24, 4).await;
    let victim = &s[0];
    // The victim wrote a moment ago, so the batch's claim leaves their
    // students row alone (it notes a user's last message at most once a
    // minute) and their unbind need not wait for the batch.
    sqlx::query("UPDATE students SET last_interaction_at = now() WHERE openid = $1")
        .bind(victim)
        .execute(&app.pool)
        .await
        .unwrap();
    // Every place of the activity held, as by bookings in flight.
    let mut slots = app.pool.begin().await.unwrap();
    sqlx::query("SELECT slot FROM activity_slots WHERE activity_id = $1 FOR UPDATE")
        .bind(a.id)
        .execute(&mut *slots)
        .await
        .unwrap();
    let held = hold_every_turn(&app).await;
    let msgs = [
        wx::text_with_id(victim, "抢票 unbind", wx::next_msg_id()),
        click_at(&s[1], a.id, wx::now() * 1000 + 1),
        wx::text_with_id(&s[2], "抢票 unbind", wx::next_msg_id()),
        click_at(&s[3], a.id, wx::now() * 1000 + 3),
    ];
    let mut sent = Vec::new();
    for xml in &msgs {
        sent.push(held.queue(&app, fresh_query(), xml.clone()).await);
    }
    let blockers = held.release().await;
    // The batch checked the victim while bound and now waits for places: unbind then.
    wait_for_the_take(&app).await;
    let unbound = app.say(&wx::text(victim, "解绑")).await;
    assert!(unbound.text().contains("已解除学号 0002400000"), "{unbound:?}");
    slots.rollback().await.unwrap();

    let r = replies(sent).await;
    for (status, body) in &r {
        assert_eq!(*status, 200, "{body}");
    }
    assert!(!is_booked(&r[0].1), "no ticket for an account no longer bound: {}", r[0].1);
    assert!(Reply::parse(&r[0].1).text().contains("还没有绑定学号"), "told to bind: {}", r[0].1);
    for (status, body) in &r[1..] {
        assert!(is_booked(body), "HTTP {status}: {body}");
    }
    assert_eq!(tickets_of(&app, "0002400000").await, 0, "the unbound student holds nothing");
    assert_eq!(app.count(&format!("SELECT count(*) FROM tickets WHERE openid = '{victim}'")).await, 0);
    assert_eq!(app.live_tickets(a.id).await, 3);
    assert_capacity_exact(&app, a.id, 10).await;
    let keys: Vec<String> = msgs.iter().map(|m| key_of(m)).collect();
    assert_one_batch(&app, &keys).await;
    blockers_answered(blockers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_fails_is_answered_alone_and_only_the_failing_member_fails() {
    let app = spawn_app().await;
    let a = app.activity("plenty", 10, Window::Open).await;
    let b = app.activity("scarce", 2, Window::Open).await;
    let s = app.bound_students(25, 9).await;
    // A test-only trigger: the victim's ticket can never be inserted. Sequences
    // (which no rollback undoes) count the rows tried: the victim's, everyone else's.
    for sql in [
        "CREATE SEQUENCE victim_tried",
        "CREATE SEQUENCE others_tried",
        "CREATE FUNCTION refuse_victim() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
         IF NEW.student_id = '0002500000' THEN \
             PERFORM nextval('victim_tried'); RAISE EXCEPTION 'test: no ticket for the victim'; END IF; \
         PERFORM nextval('others_tried'); RETURN NEW; END $$",
        "CREATE TRIGGER refuse_victim BEFORE INSERT ON tickets FOR EACH ROW EXECUTE FUNCTION refuse_victim()",
    ] {
        sqlx::query(sql).execute(&app.pool).await.unwrap();
    }
    let held = hold_every_turn(&app).await;
    // Four for the scarce activity first (its places taken before the failure), then the rest.
    let mut msgs: Vec<String> = (5..9).map(|i| click_at(&s[i], b.id, wx::now() * 1000 + i as i64)).collect();
    msgs.push(wx::text_with_id(&s[0], "抢票 plenty", wx::next_msg_id()));
    msgs.extend((1..5).map(|i| wx::text_with_id(&s[i], "抢票 plenty", wx::next_msg_id())));
    let mut sent = Vec::new();
    for xml in &msgs {
        sent.push(held.queue(&app, fresh_query(), xml.clone()).await);
    }
    let blockers = held.release().await;
    let released = Instant::now();
    let r = replies(sent).await;
    assert!(released.elapsed() < Duration::from_secs(5), "inside WeChat's 5 s: {:?}", released.elapsed());
    for (status, body) in &r {
        assert_eq!(*status, 200, "{body}");
    }
    // The scarce activity: two booked, two sold out.
    let booked = r[..4].iter().filter(|(_, body)| is_booked(body)).count();
    let sold_out = r[..4]
        .iter()
        .filter(|(_, body)| matches!(Reply::parse(body), Reply::Text(t) if t.contains("票已经抢完")))
        .count();
    assert_eq!((booked, sold_out), (2, 2), "{:?}", &r[..4]);
    // The victim: busy, nothing booked, nothing recorded (WeChat's retry gets a real chance).
    let victim = Reply::parse(&r[4].1);
    assert!(matches!(&victim, Reply::Text(t) if t.contains("请稍后再试")), "{victim:?}");
    assert_eq!(tickets_of(&app, "0002500000").await, 0);
    assert_eq!(records_of(&app, &[key_of(&msgs[4])]).await.0, 0);
    // The plenty activity: every other student booked.
    for (status, body) in &r[5..] {
        assert!(is_booked(body), "HTTP {status}: {body}");
    }
    assert_eq!(app.live_tickets(a.id).await, 4);
    assert_eq!(app.live_tickets(b.id).await, 2);
    assert_capacity_exact(&app, a.id, 10).await;
    assert_capacity_exact(&app, b.id, 2).await;
    assert_eq!(
        app.count("SELECT count(*) FROM (SELECT student_id FROM tickets GROUP BY student_id HAVING count(*) > 1) d")
            .await,
        0,
        "nobody holds two tickets"
    );
    // The batch's transaction failed as a whole: its members were answered (and recorded) alone.
    let others: Vec<String> = msgs.iter().enumerate().filter(|(i, _)| *i != 4).map(|(_, m)| key_of(m)).collect();
    let (rows, transactions) = records_of(&app, &others).await;
    assert_eq!(rows, 8);
    assert!(transactions > 1, "recorded by the failed batch's single transaction?");
    let tried = |seq: &str| format!("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM {seq}");
    assert_eq!(app.count(&tried("victim_tried")).await, 2, "the victim's ticket tried in the batch, then alone");
    // The scarce activity's places were taken (its two tickets inserted) in the
    // batch before the victim's failed: rolled back, and issued again alone.
    // (Whether the others' tickets were inserted in the batch before the
    // victim's failed depends on the order the batch takes activities in.)
    assert!(app.count(&tried("others_tried")).await >= 6);
    blockers_answered(blockers).await;
}

#[derive(Default, Debug)]
struct Tally {
    booked: usize,
    sold_out: usize,
    other: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_on_two_instances_keep_capacity_exact() {
    let one = spawn_app().await;
    let two = spawn_app_on(one.db.clone(), Settings::default()).await;
    let a = one.activity("pair", 100, Window::Open).await;
    let students = one.bound_students(26, 600).await;
    let sends = students.iter().enumerate().map(|(i, openid)| {
        let app = if i % 2 == 0 { &one } else { &two };
        let xml = wx::click(openid, &format!("BOOK_{}", a.id));
        async move { app.post_wechat(&xml).await }
    });
    let mut t = Tally::default();
    let mut busy = Vec::new();
    for (i, (status, body)) in join_all(sends).await.into_iter().enumerate() {
        match (status, Reply::parse(&body)) {
            (200, Reply::News { title, .. }) if title.contains("抢票成功") => t.booked += 1,
            (200, Reply::Text(text)) if text.contains("票已经抢完") => t.sold_out += 1,
            // Told to try again (a machine overloaded by other tests): the student does.
            (200, Reply::Text(text)) if text.contains("请稍后再试") => busy.push(i),
            (status, other) => t.other.push(format!("HTTP {status}: {other:?}")),
        }
    }
    for i in busy {
        let reply = one.say(&wx::click(&students[i], &format!("BOOK_{}", a.id))).await;
        match reply {
            Reply::News { title, .. } if title.contains("抢票成功") => t.booked += 1,
            Reply::Text(text) if text.contains("票已经抢完") => t.sold_out += 1,
            other => t.other.push(format!("retry: {other:?}")),
        }
    }
    assert!(t.other.is_empty(), "{:?}", &t.other[..t.other.len().min(5)]);
    assert_eq!((t.booked, t.sold_out), (100, 500));
    assert_eq!(one.live_tickets(a.id).await, 100);
    assert_capacity_exact(&one, a.id, 100).await;
    let per_student: HashMap<String, i64> =
        sqlx::query_as("SELECT student_id, count(*) FROM tickets WHERE status <> 'cancelled' GROUP BY student_id")
            .fetch_all(&one.pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    assert_eq!(per_student.len(), 100);
    assert!(per_student.values().all(|n| *n == 1), "no student with two tickets");
    // And they were batched: some transaction recorded several messages.
    let largest = one
        .count("SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM wechat_messages GROUP BY created_at) b")
        .await;
    assert!(largest > 1, "no batch of more than one message in a rush of 600");
}

const REPLAY_REFUSED: &str = "this signature was already used for another message";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn a_retry_under_a_query_spent_on_another_message_of_the_batch_is_refused() {
    let app = spawn_app().await;
    let a = app.activity("spent", 10, Window::Open).await;
    let s = app.bound_students(27, 2).await;
    let held = hold_every_turn(&app).await;
    let (q1, q2) = (fresh_query(), fresh_query());
    let k1 = wx::text_with_id(&s[0], "抢票 spent", wx::next_msg_id());
    let k2 = wx::text_with_id(&s[1], "抢票 spent", wx::next_msg_id());
    let first = held.queue(&app, q1, k1.clone()).await;
    let other = held.queue(&app, q2.clone(), k2.clone()).await;
    // K1 again, under the query that just carried K2: a second message on Q2.
    let forged = held.queue(&app, q2.clone(), k1.clone()).await;
    let blockers = held.release().await;
    let r = replies(vec![first, other, forged]).await;
    assert!(is_booked(&r[0].1) && is_booked(&r[1].1), "{r:?}");
    assert_one_batch(&app, &[key_of(&k1), key_of(&k2)]).await;
    assert_eq!(app.live_tickets(a.id).await, 2);
    blockers_answered(blockers).await;
    // Alone (after the batch), the same request is refused:
    assert_eq!(app.post_wechat_raw(&q2, k1.clone()).await, (403, REPLAY_REFUSED.to_string()));
    // …and inside the batch it must be too (it got K1's reply, ticket link included).
    assert_eq!(r[2], (403, REPLAY_REFUSED.to_string()), "Q2 carried a second message inside the batch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn a_retry_behind_a_replay_of_its_own_query_gets_its_first_answer() {
    let app = spawn_app().await;
    let a = app.activity("behind", 10, Window::Open).await;
    let s = app.bound_students(28, 2).await;
    // K2 answered under Q before the batch.
    let q = fresh_query();
    let k2 = wx::text_with_id(&s[0], "抢票 behind", wx::next_msg_id());
    let first = app.post_wechat_raw(&q, k2.clone()).await;
    assert!(is_booked(&first.1), "{first:?}");
    let held = hold_every_turn(&app).await;
    // A forger replays Q with another booking, just ahead of WeChat's retry of K2 under Q.
    let forged = held.queue(&app, q.clone(), click_at(&s[1], a.id, wx::now() * 1000 + 1)).await;
    let retry = held.queue(&app, q.clone(), k2.clone()).await;
    let blockers = held.release().await;
    let r = replies(vec![forged, retry]).await;
    blockers_answered(blockers).await;
    assert_eq!(r[0], (403, REPLAY_REFUSED.to_string()));
    assert_eq!(tickets_of(&app, "0002800001").await, 0, "nothing for the forger");
    assert_eq!(app.live_tickets(a.id).await, 1);
    // Alone, the retry gets its first answer:
    assert_eq!(app.post_wechat_raw(&q, k2.clone()).await, first);
    // …and in the batch too: Q carried only K2, the forger's message was refused.
    assert_eq!(r[1], first, "WeChat's retry was refused as a replay because a forgery came just before it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn a_message_behind_its_forged_copy_under_a_spent_query_is_still_answered() {
    let app = spawn_app().await;
    let a = app.activity("copied", 10, Window::Open).await;
    let s = app.bound_students(29, 2).await;
    // Q spent on someone else's message before the batch.
    let q = fresh_query();
    assert!(is_booked(&app.post_wechat_raw(&q, wx::text(&s[1], "抢票 copied")).await.1));
    let held = hold_every_turn(&app).await;
    // A forger sends the student's message under spent Q just ahead of WeChat's own delivery.
    let mine = click_at(&s[0], a.id, wx::now() * 1000 + 1);
    let forged = held.queue(&app, q.clone(), mine.clone()).await;
    let genuine = held.queue(&app, fresh_query(), mine.clone()).await;
    let blockers = held.release().await;
    let r = replies(vec![forged, genuine]).await;
    blockers_answered(blockers).await;
    assert_eq!(r[0], (403, REPLAY_REFUSED.to_string()));
    // Alone the genuine delivery books; in the batch it must too.
    assert_eq!(r[1].0, 200, "WeChat's genuine delivery was refused because its forged copy came first: {}", r[1].1);
    assert!(is_booked(&r[1].1), "{}", r[1].1);
    assert_eq!(tickets_of(&app, "0002900000").await, 1);
    assert_capacity_exact(&app, a.id, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn a_batch_past_its_deadline_answers_its_other_members_alone_at_once() {
    let app = spawn_app().await;
    let a = app.activity("late", 10, Window::Open).await;
    let s = app.bound_students(30, 4).await;
    // The first student's row is locked (say, by a slow admin change): the
    // batch's claim, which notes each student's last message, waits for it.
    let mut row = app.pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM students WHERE openid = $1 FOR UPDATE").bind(&s[0]).execute(&mut *row).await.unwrap();
    let held = hold_every_turn(&app).await;
    let msgs: Vec<String> = s.iter().map(|o| wx::text_with_id(o, "抢票 late", wx::next_msg_id())).collect();
    let mut sent = Vec::new();
    for xml in &msgs {
        sent.push(held.queue(&app, fresh_query(), xml.clone()).await);
    }
    let blockers = held.release().await;
    // Past the batch's deadline (2 s), well inside the 4 s each message has.
    tokio::time::sleep(Duration::from_millis(2700)).await;
    let answered_before_release: Vec<bool> = sent.iter().map(JoinHandle::is_finished).collect();
    row.rollback().await.unwrap();
    let r = replies(sent).await;
    blockers_answered(blockers).await;
    for (status, body) in &r {
        assert_eq!(*status, 200, "{body}");
        assert!(is_booked(body), "{body}");
    }
    assert_eq!(app.live_tickets(a.id).await, 4);
    assert_capacity_exact(&app, a.id, 10).await;
    assert_eq!(
        answered_before_release,
        [false, true, true, true],
        "the abandoned batch's members, answered alone, did not wait for the one locked student"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn a_member_stuck_past_every_deadline_fails_alone() {
    let app = spawn_app().await;
    let a = app.activity("stuck", 10, Window::Open).await;
    let s = app.bound_students(31, 4).await;
    let mut row = app.pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM students WHERE openid = $1 FOR UPDATE").bind(&s[0]).execute(&mut *row).await.unwrap();
    let held = hold_every_turn(&app).await;
    let msgs: Vec<String> = s.iter().map(|o| wx::text_with_id(o, "抢票 stuck", wx::next_msg_id())).collect();
    let mut sent = Vec::new();
    for xml in &msgs {
        sent.push(held.queue(&app, fresh_query(), xml.clone()).await);
    }
    let blockers = held.release().await;
    // Locked past the 4 s every message has.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    row.rollback().await.unwrap();
    let r = replies(sent).await;
    // (One blocker shared the stuck batch: it is no member under test.)
    replies(blockers).await;
    assert!(matches!(Reply::parse(&r[0].1), Reply::Text(t) if t.contains("请稍后再试")), "{}", r[0].1);
    for (status, body) in &r[1..] {
        assert_eq!(*status, 200, "{body}");
        assert!(is_booked(body), "a member not stuck was answered busy with its stuck batch-mate: {body}");
    }
    assert_eq!(app.live_tickets(a.id).await, 3);
    assert_eq!(tickets_of(&app, "0003100000").await, 0);
    assert_capacity_exact(&app, a.id, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn two_batches_booking_two_activities_in_opposite_orders_never_deadlock() {
    let one = spawn_app().await;
    let two = spawn_app_on(one.db.clone(), Settings::default()).await;
    let a = one.activity("first", 10, Window::Open).await;
    let b = one.activity("second", 10, Window::Open).await;
    let s = one.bound_students(32, 2).await;
    let (p, q) = (&s[0], &s[1]);
    // Test-only triggers fix the interleaving a rush may produce: the batch
    // that issues P's ticket for A first holds it 0.3 s before going on to B;
    // the one that issues Q's ticket for B first holds it 0.15 s before going on to A.
    let sql = format!(
        "CREATE FUNCTION hold_on() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
         IF NEW.student_id = '0003200000' AND NEW.activity_id = {a} \
             AND coalesce(current_setting('test.did_b', true), '') <> 'yes' THEN \
             PERFORM set_config('test.did_a', 'yes', true); PERFORM pg_sleep(0.3); \
         ELSIF NEW.student_id = '0003200001' AND NEW.activity_id = {b} \
             AND coalesce(current_setting('test.did_a', true), '') <> 'yes' THEN \
             PERFORM set_config('test.did_b', 'yes', true); PERFORM pg_sleep(0.15); \
         END IF; RETURN NULL; END $$",
        a = a.id,
        b = b.id
    );
    sqlx::query(&sql).execute(&one.pool).await.unwrap();
    sqlx::query("CREATE TRIGGER hold_on AFTER INSERT ON tickets FOR EACH ROW EXECUTE FUNCTION hold_on()")
        .execute(&one.pool)
        .await
        .unwrap();
    // Both wrote within the minute (students clicking away in a rush), so a
    // claim leaves their rows alone and does not order the two batches.
    sqlx::query("UPDATE students SET last_interaction_at = now() WHERE openid = ANY($1)")
        .bind(&s)
        .execute(&one.pool)
        .await
        .unwrap();
    let deadlocks_before = one.count("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()").await;
    let held = hold_every_turn_of(&[&one, &two]).await;
    // Batch X on one instance: P for A, then Q for B. Batch Y on the other: Q for B, then P for A.
    let x =
        [wx::text_with_id(p, "抢票 first", wx::next_msg_id()), wx::text_with_id(q, "抢票 second", wx::next_msg_id())];
    let y = [click_at(q, b.id, wx::now() * 1000 + 1), click_at(p, a.id, wx::now() * 1000 + 2)];
    let mut sent = Vec::new();
    for xml in &x {
        sent.push(held.queue(&one, fresh_query(), xml.clone()).await);
    }
    for xml in &y {
        sent.push(held.queue(&two, fresh_query(), xml.clone()).await);
    }
    let blockers = held.release().await;
    let r = replies(sent).await;
    blockers_answered(blockers).await;
    for (status, body) in &r {
        assert_eq!(*status, 200, "{body}");
        assert!(is_booked(body) || is_already(body), "{body}");
    }
    for student in ["0003200000", "0003200001"] {
        assert_eq!(tickets_of(&one, student).await, 1, "{student}: one ticket");
    }
    assert_capacity_exact(&one, a.id, 10).await;
    assert_capacity_exact(&one, b.id, 10).await;
    // Each batch committed as one transaction: neither was a deadlock's victim
    // (whose members are then answered alone).
    let x_keys: Vec<String> = x.iter().map(|m| key_of(m)).collect();
    let y_keys: Vec<String> = y.iter().map(|m| key_of(m)).collect();
    assert_one_batch(&one, &x_keys).await;
    assert_one_batch(&one, &y_keys).await;
    // Backends report their counts within about a second of going idle.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let deadlocks = one.count("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()").await;
    assert_eq!(deadlocks - deadlocks_before, 0, "no lock cycle between the two batches");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_delivered_to_two_instances_at_once_is_answered_once_by_both() {
    // WeChat retrying through a load balancer: every student's one message
    // reaches both instances at the same moment, under two signed queries.
    // Each instance batches it; one batch's claim waits for the other's and
    // then answers with the stored reply.
    let one = spawn_app().await;
    let two = spawn_app_on(one.db.clone(), Settings::default()).await;
    let a = one.activity("twice", 15, Window::Open).await;
    let students = one.bound_students(33, 40).await;
    let msgs: Vec<String> = students.iter().map(|o| wx::text_with_id(o, "抢票 twice", wx::next_msg_id())).collect();
    let sends =
        msgs.iter().flat_map(|xml| [send(&one, fresh_query(), xml.clone()), send(&two, fresh_query(), xml.clone())]);
    let r = replies(sends.collect()).await;
    let mut booked = 0;
    for pair in r.chunks(2) {
        assert_eq!(pair[0], pair[1], "both instances gave the same answer");
        assert_eq!(pair[0].0, 200, "{}", pair[0].1);
        if is_booked(&pair[0].1) {
            booked += 1;
        } else {
            assert!(Reply::parse(&pair[0].1).text().contains("票已经抢完"), "{}", pair[0].1);
        }
    }
    assert_eq!(booked, 15);
    assert_eq!(one.live_tickets(a.id).await, 15);
    let keys: Vec<String> = msgs.iter().map(|m| key_of(m)).collect();
    assert_eq!(records_of(&one, &keys).await.0, 40, "one record per message");
    assert_capacity_exact(&one, a.id, 15).await;
}
