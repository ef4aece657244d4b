//! Lottery mode (抽签) over HTTP as students, admins and a sceptic use it:
//! registering three ways on two instances, one draw at the close however
//! many try, the draw recomputed here from draw.json alone (this file does
//! its own hashing, not the server's), `lottery verify` passing on the real
//! file and failing on tampered ones, the public value an admin announces
//! and confirms, and registrations racing the close.

use std::{collections::HashMap, time::Duration};

use futures::future::join_all;
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use wechat_ticket::booking::{
    Activity, NewActivity, activities,
    lottery::{self, DrawOutcome, Mode},
};

use crate::common::{
    Settings, TestApp,
    fake_wechat::{CUSTOM_SEND_PATH, FakeWechat},
    spawn_app, spawn_app_on, spawn_app_with,
    wx::{self, Reply},
};

/// A published lottery activity whose registration is open for an hour.
pub(crate) async fn lottery_activity(app: &TestApp, key: &str, capacity: i32) -> Activity {
    let now = OffsetDateTime::now_utc();
    let h = time::Duration::hours(1);
    let new = NewActivity {
        key: key.into(),
        name: format!("抽签 {key}"),
        place: "新清华学堂".into(),
        description: String::new(),
        book_start: now - h,
        book_end: now + h,
        start_at: now + 2 * h,
        end_at: now + 3 * h,
        capacity,
        publish: true,
        mode: Mode::Lottery,
    };
    activities::create(&mut app.pool.acquire().await.unwrap(), &new).await.unwrap()
}

pub(crate) async fn say(app: &TestApp, openid: &str, text: &str) -> String {
    match app.say(&wx::text(openid, text)).await {
        Reply::Text(text) => text,
        other => format!("{other:?}"),
    }
}

/// Waits (up to 60 s) for the draw to have run.
pub(crate) async fn drawn(app: &TestApp, activity_id: i64) {
    for _ in 0..600 {
        let done: bool = sqlx::query_scalar("SELECT drawn_at IS NOT NULL FROM lotteries WHERE activity_id = $1")
            .bind(activity_id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        if done {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the draw did not run");
}

pub(crate) fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// The draw recomputed from draw.json alone, by the README's formula:
/// returns the eids in draw order.
pub(crate) fn recompute(json: &Value) -> Vec<String> {
    let seed = hex::decode(json["server_seed"].as_str().unwrap()).unwrap();
    assert_eq!(seed.len(), 32);
    assert_eq!(sha256_hex(&[&seed]), json["commitment"].as_str().unwrap(), "commitment = sha256(server_seed)");
    let mut eids: Vec<String> = json["eids"].as_array().unwrap().iter().map(|e| e.as_str().unwrap().into()).collect();
    assert_eq!(eids.len() as u64, json["entries"].as_u64().unwrap());
    eids.sort();
    let pool_hash = sha256_hex(&[eids.join("\n").as_bytes()]);
    assert_eq!(pool_hash, json["pool_hash"].as_str().unwrap());
    let public_value = json["public_value"].as_str().unwrap_or("");
    let draw_seed = hex::decode(sha256_hex(&[&seed, pool_hash.as_bytes(), public_value.as_bytes()])).unwrap();
    eids.sort_by_key(|eid| sha256_hex(&[&draw_seed, eid.as_bytes()]));
    eids
}

/// The registration's secret, as a reply gives it (hex).
pub(crate) fn entry_secret(reply: &str) -> String {
    let line = reply.split("报名密钥（只给你，核对抽签用）：").nth(1).unwrap_or_else(|| panic!("no secret: {reply}"));
    line.split_whitespace().next().unwrap().to_string()
}

pub(crate) fn verify(app: &TestApp, args: &[&str]) -> std::process::Output {
    app.cli(&[&["lottery", "verify"][..], args].concat())
}

#[tokio::test(flavor = "multi_thread")]
async fn five_hundred_register_for_fifty_places_two_instances_draw_once_and_anyone_can_check_the_draw() {
    let fake = FakeWechat::start().await;
    // Reminders are off (the workers' test default): only the draw's notices are counted here.
    let settings = || fake.settings(Settings::default()).with_notify_workers().set("REMINDER_CHECK_SECONDS", "1");
    let one = spawn_app_with(settings()).await;
    let two = spawn_app_on(one.db.clone(), settings()).await;
    let a = lottery_activity(&one, "gala", 50).await;
    let openids = one.bound_students(61, 500).await;
    let student_of = |i: usize| format!("{:05}{i:05}", 61);

    // Before the draw: the commitment is public, the draw's inputs are not.
    let commitment: String = sqlx::query_scalar("SELECT commitment FROM lotteries WHERE activity_id = $1")
        .bind(a.id)
        .fetch_one(&one.pool)
        .await
        .unwrap();
    let page = two.get(&format!("/activities/{}", a.id)).await.text().await.unwrap();
    assert!(page.contains(&commitment) && page.contains("报名 gala"), "{page}");
    assert_eq!(two.get(&format!("/activities/{}/draw.json", a.id)).await.status(), 404);
    let draw_page = one.get(&format!("/activities/{}/draw", a.id)).await.text().await.unwrap();
    assert!(draw_page.contains(&commitment) && !draw_page.contains("server_seed</dt>"), "{draw_page}");

    // 500 register: 报名, 抢票 and the menu click, alternating between the instances, 50 at once.
    let mut eid_of: HashMap<String, String> = HashMap::new();
    let mut secret_of: HashMap<String, String> = HashMap::new();
    for (c, chunk) in openids.chunks(50).enumerate() {
        let replies = join_all(chunk.iter().enumerate().map(|(i, openid)| {
            let app = if i % 2 == 0 { &one } else { &two };
            let xml = match (c * 50 + i) % 3 {
                0 => wx::text(openid, "报名 gala"),
                1 => wx::text(openid, "抢票 gala"),
                _ => wx::click(openid, &format!("BOOK_{}", a.id)),
            };
            async move { (openid.clone(), app.say(&xml).await) }
        }))
        .await;
        for (openid, reply) in replies {
            let text = reply.text().to_string();
            assert!(text.contains("已报名「抽签 gala」的抽签"), "{text}");
            let eid = text.split("抽签编号：").nth(1).unwrap().lines().next().unwrap().to_string();
            secret_of.insert(openid.clone(), entry_secret(&text));
            eid_of.insert(openid, eid);
        }
    }
    assert_eq!(one.count("SELECT count(*) FROM lottery_entries").await, 500);
    assert_eq!(one.live_tickets(a.id).await, 0, "registering books nothing");
    // Each reply's eid is the formula's, over the entry's secret (given in the reply) and the student ID.
    let seed: Vec<u8> = sqlx::query_scalar("SELECT server_seed FROM lotteries WHERE activity_id = $1")
        .bind(a.id)
        .fetch_one(&one.pool)
        .await
        .unwrap();
    for (i, openid) in openids.iter().enumerate() {
        let secret = hex::decode(&secret_of[openid]).unwrap();
        assert_eq!(secret.len(), 16);
        assert_eq!(eid_of[openid], sha256_hex(&[&seed, &secret, student_of(i).as_bytes()]));
    }
    // Once per student ID: again, by any path, on either instance.
    assert!(say(&two, &openids[0], "抢票 gala").await.contains("已经报名"));
    assert!(
        matches!(one.say(&wx::click(&openids[1], &format!("BOOK_{}", a.id))).await, Reply::Text(t) if t.contains("已经报名"))
    );
    assert!(say(&one, &openids[2], "查票").await.contains("【抽签 gala】已报名"));
    assert_eq!(one.count("SELECT count(*) FROM lottery_entries").await, 500);

    // The close: both instances' sweeps run every second, and six more draws are asked for at once.
    one.close_booking(a.id).await;
    let asked = join_all((0..6).map(|i| {
        let app = if i % 2 == 0 { &one } else { &two };
        async move {
            let mut tx = app.pool.begin().await.unwrap();
            let outcome = lottery::draw(&mut tx, &app.state.notifier, a.id).await.unwrap();
            tx.commit().await.unwrap();
            outcome
        }
    }))
    .await;
    drawn(&one, a.id).await;
    let won_here = asked.iter().filter(|o| matches!(o, DrawOutcome::Drawn { .. })).count();
    assert!(won_here <= 1, "{asked:?}");
    assert!(
        asked.iter().all(|o| matches!(o, DrawOutcome::Drawn { entries: 500, winners: 50 } | DrawOutcome::AlreadyDrawn))
    );
    // Once: 50 tickets, no place left over, 450 in line, the published counts right.
    assert_eq!(one.live_tickets(a.id).await, 50);
    assert_eq!(
        one.count(&format!("SELECT coalesce(sum(remaining), 0) FROM activity_slots WHERE activity_id = {}", a.id))
            .await,
        0
    );
    assert_eq!(one.count("SELECT count(*) FROM waiting_list WHERE state = 'waiting'").await, 450);
    assert_eq!(one.count("SELECT count(*) FROM lotteries WHERE entries = 500 AND winners = 50").await, 1);

    // Anyone recomputes the draw from draw.json alone, and it is what happened.
    let json: Value = two.get(&format!("/activities/{}/draw.json", a.id)).await.json().await.unwrap();
    assert_eq!(json["commitment"], commitment.as_str());
    assert_eq!((json["entries"].as_u64(), json["capacity"].as_u64()), (Some(500), Some(50)));
    let order = recompute(&json);
    let published: Vec<String> = json["eids"].as_array().unwrap().iter().map(|e| e.as_str().unwrap().into()).collect();
    assert_eq!(order, published, "the published order is the formula's");
    let rank_of: HashMap<&str, usize> = order.iter().enumerate().map(|(r, e)| (e.as_str(), r + 1)).collect();
    let holders: Vec<String> = sqlx::query_scalar("SELECT openid FROM tickets WHERE activity_id = $1")
        .bind(a.id)
        .fetch_all(&one.pool)
        .await
        .unwrap();
    assert_eq!(holders.len(), 50);
    assert!(holders.iter().all(|o| rank_of[eid_of[o].as_str()] <= 50), "every ticket went to a top-50 eid");
    // The others queue in draw order.
    let line: Vec<String> =
        sqlx::query_scalar("SELECT openid FROM waiting_list WHERE activity_id = $1 AND state = 'waiting' ORDER BY id")
            .bind(a.id)
            .fetch_all(&one.pool)
            .await
            .unwrap();
    let line_ranks: Vec<usize> = line.iter().map(|o| rank_of[eid_of[o].as_str()]).collect();
    assert_eq!(line_ranks, (51..=500).collect::<Vec<_>>());

    // The shell's check passes on the server's JSON, from the database or over HTTP …
    let out = verify(&one, &["gala"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let url = two.url(&format!("/activities/{}/draw.json", a.id));
    let loser = &line[0];
    let loser_id = student_of(openids.iter().position(|o| o == loser).unwrap());
    let out = verify(&one, &["gala", "--url", &url, "--student-id", &loser_id, "--secret", &secret_of[loser]]);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success() && said.contains("rank 51 of 500"), "{said}{}", String::from_utf8_lossy(&out.stderr));
    // … and fails on every tampering: a loser moved up, another public value, an eid dropped, another seed.
    let dir = std::env::temp_dir().join(format!("wechat-ticket-draw-{}", wx::next_msg_id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tampered = |f: &dyn Fn(&mut Value)| {
        let mut j = json.clone();
        f(&mut j);
        let path = dir.join(format!("draw-{}.json", wx::next_msg_id()));
        std::fs::write(&path, serde_json::to_vec(&j).unwrap()).unwrap();
        verify(&one, &["gala", "--file", path.to_str().unwrap()])
    };
    let swaps: [&dyn Fn(&mut Value); 4] = [
        &|j| j["eids"].as_array_mut().unwrap().swap(3, 70),
        &|j| j["public_value"] = Value::String("今天的天气".into()),
        &|j| {
            j["eids"].as_array_mut().unwrap().remove(10);
            j["entries"] = 499.into();
        },
        &|j| j["server_seed"] = Value::String(hex::encode([1u8; 32])),
    ];
    for tamper in swaps {
        let out = tampered(tamper);
        assert!(!out.status.success(), "a tampered draw.json verified");
        assert!(String::from_utf8_lossy(&out.stderr).contains("does NOT verify"));
    }
    let out = verify(&one, &["another", "--url", &url]);
    assert!(!out.status.success(), "a draw.json checked against another activity's key");
    let _ = std::fs::remove_dir_all(&dir);

    // Everyone is told, once: winners with their ticket, the others their place in line.
    for _ in 0..600 {
        if fake.count(CUSTOM_SEND_PATH) >= 500 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sent = fake.requests(CUSTOM_SEND_PATH);
    let mut told: HashMap<String, Vec<String>> = HashMap::new();
    for r in &sent {
        let body = r.body.as_ref().unwrap();
        let text = body["text"]["content"].as_str().unwrap_or("").to_string();
        told.entry(body["touser"].as_str().unwrap().to_string()).or_default().push(text);
    }
    assert_eq!(told.len(), 500);
    for (openid, texts) in &told {
        assert_eq!(texts.len(), 1, "{openid}: {texts:?}");
        let rank = rank_of[eid_of[openid].as_str()];
        if rank <= 50 {
            assert!(texts[0].contains("【中签】") && texts[0].contains("/tickets/"), "{}", texts[0]);
        } else {
            assert!(texts[0].contains(&format!("候补名单第 {} 位", rank - 50)), "{}", texts[0]);
        }
    }

    // A loser's own page shows their eid and rank; 查票 shows the place in line.
    let reply = one.say(&wx::text(loser, "查票")).await;
    assert!(reply.text().contains("候补第 1 位"), "{}", reply.text());
    let all = reply.links().into_iter().find(|l| l.contains("/my/tickets")).unwrap();
    let mine = one.http.get(&all).send().await.unwrap().text().await.unwrap();
    assert!(mine.contains(&eid_of[loser]) && mine.contains("未中签（第 51 名），现在候补第 1 位"), "{mine}");

    // A winner's place given back goes to rank 51, in the cancel's transaction.
    let winner = &holders[0];
    assert!(say(&two, winner, "退票 gala").await.contains("已退掉"));
    let got: i64 = sqlx::query_scalar("SELECT count(*) FROM tickets WHERE openid = $1 AND status = 'valid'")
        .bind(loser)
        .fetch_one(&one.pool)
        .await
        .unwrap();
    assert_eq!(got, 1);
    assert_eq!(one.live_tickets(a.id).await, 50);
    // A raised capacity goes to the line; the published draw stays as it was drawn.
    sqlx::query("UPDATE activities SET capacity = 60 WHERE id = $1").bind(a.id).execute(&one.pool).await.unwrap();
    let again: Value = one.get(&format!("/activities/{}/draw.json", a.id)).await.json().await.unwrap();
    assert_eq!(again, json);
    two.stop().await;
    one.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn registration_is_once_per_student_id_and_per_wechat_account_and_can_be_withdrawn_until_the_close() {
    let app = spawn_app().await;
    let a = lottery_activity(&app, "ball", 2).await;
    let [me, other, stranger, late]: [String; 4] = app.bound_students(62, 4).await.try_into().unwrap();

    let entered = say(&app, &me, "报名 ball").await;
    assert!(entered.contains("已报名") && entered.contains("发送「取消报名 ball」可退出"), "{entered}");
    // The same WeChat account under another student ID: still one entry.
    sqlx::query("UPDATE students SET student_id = 'other-id' WHERE openid = $1")
        .bind(&me)
        .execute(&app.pool)
        .await
        .unwrap();
    assert!(say(&app, &me, "报名 ball").await.contains("已经报名"));
    // The same student ID on another WeChat account: still one entry.
    sqlx::query("UPDATE students SET student_id = NULL, bound_at = NULL WHERE openid = $1")
        .bind(&me)
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE students SET student_id = '0006200000' WHERE openid = $1")
        .bind(&other)
        .execute(&app.pool)
        .await
        .unwrap();
    assert!(say(&app, &other, "报名 ball").await.contains("已经报名"));
    assert_eq!(app.count("SELECT count(*) FROM lottery_entries").await, 1);

    assert!(say(&app, &stranger, "抢啥").await.contains("发送「报名 ball」"));
    // The waiting list of a lottery is the draw's: nobody joins it by hand.
    assert!(say(&app, &stranger, "候补 ball").await.contains("抽签活动"));
    // Unbound: told to bind first.
    assert!(say(&app, "o-nobody", "报名 ball").await.contains("绑定"));
    // Withdraw, and register again.
    assert!(say(&app, &other, "取消报名 ball").await.contains("已取消"));
    assert!(say(&app, &other, "取消报名 ball").await.contains("没有报名"));
    assert_eq!(app.count("SELECT count(*) FROM lottery_entries").await, 0);
    assert!(say(&app, &other, "报名 ball").await.contains("已报名"));
    // On a first-come activity, 报名 books as 抢票 does.
    let rush = app.activity("rush", 5, crate::common::fixtures::Window::Open).await;
    assert!(matches!(app.say(&wx::text(&stranger, "报名 rush")).await, Reply::News { .. }));
    assert_eq!(app.live_tickets(rush.id).await, 1);

    // After the close: no registering, no withdrawing; the draw gives both places (2 entries).
    assert!(say(&app, &stranger, "报名 ball").await.contains("已报名"));
    app.close_booking(a.id).await;
    assert!(say(&app, &late, "报名 ball").await.contains("报名已经截止"));
    assert!(say(&app, &other, "取消报名 ball").await.contains("报名已经截止"));
    let mut tx = app.pool.begin().await.unwrap();
    assert_eq!(
        lottery::draw(&mut tx, &app.state.notifier, a.id).await.unwrap(),
        DrawOutcome::Drawn { entries: 2, winners: 2 }
    );
    tx.commit().await.unwrap();
    assert!(
        matches!(app.say(&wx::text(&other, "抢票 ball")).await, Reply::Text(t) if t.contains("已经有这个活动的票"))
    );
    assert_eq!(app.live_tickets(a.id).await, 2);
    let mut tx = app.pool.begin().await.unwrap();
    assert_eq!(lottery::draw(&mut tx, &app.state.notifier, a.id).await.unwrap(), DrawOutcome::AlreadyDrawn);
}

#[tokio::test(flavor = "multi_thread")]
async fn registrations_racing_the_close_are_each_either_in_the_pool_or_told_it_closed() {
    let app = spawn_app().await;
    let a = lottery_activity(&app, "race", 20).await;
    let openids = app.bound_students(63, 200).await;
    let early = join_all(openids[..50].iter().map(|o| say(&app, o, "报名 race"))).await;
    assert!(early.iter().all(|r| r.contains("已报名")));

    // 150 register, one every millisecond or so, while the booking closes and four draws are asked for.
    let late = openids[50..].iter().enumerate().map(|(i, o)| {
        let app = &app;
        async move {
            tokio::time::sleep(Duration::from_millis(i as u64)).await;
            (o.clone(), say(app, o, "报名 race").await)
        }
    });
    let closing = async {
        tokio::time::sleep(Duration::from_millis(60)).await;
        app.close_booking(a.id).await;
        join_all((0..4).map(|_| async {
            let mut tx = app.pool.begin().await.unwrap();
            let outcome = lottery::draw(&mut tx, &app.state.notifier, a.id).await.unwrap();
            tx.commit().await.unwrap();
            outcome
        }))
        .await
    };
    let (late, draws) = tokio::join!(join_all(late), closing);
    let drawn_now = draws.iter().filter(|o| matches!(o, DrawOutcome::Drawn { .. })).count();
    assert_eq!(drawn_now, 1, "{draws:?}");
    let ranked: Vec<String> =
        sqlx::query_scalar("SELECT openid FROM lottery_entries WHERE activity_id = $1 AND rank IS NOT NULL")
            .bind(a.id)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    let unranked = app.count("SELECT count(*) FROM lottery_entries WHERE rank IS NULL").await;
    assert_eq!(unranked, 0, "a registration accepted but left out of the pool");
    for (openid, reply) in &late {
        let in_pool = ranked.contains(openid);
        assert!(
            (reply.contains("已报名") && in_pool) || (reply.contains("报名已经截止") && !in_pool),
            "{openid}: {reply} (in pool: {in_pool})"
        );
    }
    let entries: i64 = sqlx::query_scalar("SELECT entries::bigint FROM lotteries WHERE activity_id = $1")
        .bind(a.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(entries, ranked.len() as i64);
    assert!(entries >= 50);
    assert!(late.iter().any(|(_, r)| r.contains("报名已经截止")), "nothing raced the close: the test proves nothing");
    assert_eq!(app.live_tickets(a.id).await, 20);
    eprintln!("{} of 150 late registrations made it before the close", entries - 50);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_creates_a_lottery_announces_a_public_value_and_the_draw_waits_for_its_confirmation() {
    let fake = FakeWechat::start().await;
    let settings = fake.settings(Settings::default()).with_notify_workers().set("REMINDER_CHECK_SECONDS", "1");
    let app = spawn_app_with(settings).await;
    let csrf = app.login_admin("organiser").await;
    let tz = app.state.config.timezone;
    let now = OffsetDateTime::now_utc();
    let at = |minutes: i64| wechat_ticket::local_time::input(now + time::Duration::minutes(minutes), tz);
    let form = |mode: &'static str| {
        vec![
            ("csrf", csrf.clone()),
            ("key", "draw".to_string()),
            ("name", "新年音乐会".into()),
            ("place", "大礼堂".into()),
            ("book_start", at(-60)),
            ("book_end", at(60)),
            ("start_at", at(120)),
            ("end_at", at(180)),
            ("capacity", "3".into()),
            ("mode", mode.into()),
        ]
    };
    let resp = app.http.post(app.url("/admin/activities")).form(&form("by-magic")).send().await.unwrap();
    assert_eq!(resp.status(), 400, "an unknown mode is refused");
    assert!(resp.text().await.unwrap().contains("请选择抢票或抽签"));
    let resp = app.http.post(app.url("/admin/activities")).form(&form("lottery")).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    let a = activities::by_key(&mut app.pool.acquire().await.unwrap(), "draw").await.unwrap().unwrap();
    assert_eq!(a.mode, Mode::Lottery);
    assert_eq!(app.count("SELECT count(*) FROM lotteries").await, 0, "a draft has no seed yet");
    let (status, _) = app.admin_post(&format!("/admin/activities/{}/publish", a.id), &[("csrf", &csrf)]).await;
    assert_eq!(status, 303);
    let page = app.get(&format!("/admin/activities/{}", a.id)).await.text().await.unwrap();
    assert!(
        page.contains("id=\"lottery-commitment\"") && page.contains("抽签") && page.contains("创建时选定"),
        "{page}"
    );
    let list = app.get("/admin").await.text().await.unwrap();
    assert!(list.contains("<span class=\"badge\">抽签</span>"), "the list tells a lottery apart");

    let openids = app.bound_students(64, 8).await;
    for o in &openids {
        assert!(say(&app, o, "报名 draw").await.contains("已报名"));
    }
    let announced = "2026年12月5日 体彩排列3 开奖号码";
    let path = format!("/admin/activities/{}/lottery/announce", a.id);
    assert_eq!(app.admin_post(&path, &[("csrf", &csrf), ("public_value", announced)]).await.0, 303);
    assert_eq!(app.admin_post(&path, &[("public_value", "改一下")]).await.0, 403, "no CSRF token, no change");

    // The close: the sweep runs every second, but the draw waits for the value.
    app.close_booking(a.id).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(app.count("SELECT count(*) FROM lotteries WHERE drawn_at IS NOT NULL").await, 0);
    let public = app.get(&format!("/activities/{}/draw", a.id)).await.text().await.unwrap();
    assert!(public.contains("等待管理员确认公开值") && public.contains(announced), "{public}");
    // Announced values are frozen at the close.
    let (status, body) = app.admin_post(&path, &[("csrf", &csrf), ("public_value", "换一个")]).await;
    assert_eq!(status, 400, "{body}");
    let confirmed = "2026年12月5日 体彩排列3 开奖号码：7 2 9";
    let confirm = format!("/admin/activities/{}/lottery/confirm", a.id);
    assert_eq!(app.admin_post(&confirm, &[("csrf", &csrf), ("public_value", confirmed)]).await.0, 303);
    assert_eq!(app.live_tickets(a.id).await, 3);
    assert_eq!(app.admin_post(&confirm, &[("csrf", &csrf), ("public_value", "再来一次")]).await.0, 400, "once");

    let json: Value = app.get(&format!("/activities/{}/draw.json", a.id)).await.json().await.unwrap();
    assert_eq!(json["public_value"], confirmed);
    assert_eq!(json["public_value_announced"], announced);
    assert_eq!(
        recompute(&json),
        json["eids"].as_array().unwrap().iter().map(|e| e.as_str().unwrap().to_string()).collect::<Vec<_>>()
    );
    let out = verify(&app, &["draw"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let page = app.get(&format!("/admin/activities/{}", a.id)).await.text().await.unwrap();
    assert!(page.contains("id=\"lottery-pool-hash\"") && page.contains(confirmed) && page.contains("organiser"));
    for action in ["公布抽签公开值", "确认抽签公开值", "抽签"] {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = $1 AND actor = 'organiser'")
            .bind(action)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        assert_eq!(n, 1, "{action}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_shell_creates_a_lottery_with_its_commitment() {
    let app = spawn_app().await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wechat-ticket"))
        .env("DATABASE_URL", app.database_url())
        .args(["activity", "create", "shell-draw", "--name", "讲座", "--place", "报告厅", "--capacity", "30"])
        .args(["--book-start", "2030-01-01 10:00", "--book-end", "2030-01-02 10:00"])
        .args(["--start", "2030-01-03 10:00", "--end", "2030-01-03 12:00", "--mode", "lottery", "--publish"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("lottery"));
    assert_eq!(app.count("SELECT count(*) FROM activities WHERE key = 'shell-draw' AND mode = 'lottery'").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM lotteries WHERE commitment ~ '^[0-9a-f]{64}$'").await, 1);
    let out = verify(&app, &["shell-draw"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no draw yet"));
}

/// The narrow case the race above rarely hits, made certain: a registration
/// accepted but not yet committed when the booking closes. The draw waits
/// for it, and it is in the pool.
#[tokio::test(flavor = "multi_thread")]
async fn a_registration_still_committing_at_the_close_is_waited_for_and_drawn() {
    let app = spawn_app().await;
    let a = lottery_activity(&app, "inflight", 1).await;
    let [first, second]: [String; 2] = app.bound_students(65, 2).await.try_into().unwrap();
    assert!(say(&app, &first, "报名 inflight").await.contains("已报名"));
    let mut registering = app.pool.begin().await.unwrap();
    let entered = lottery::enter(&mut registering, a.id, "0006500001", &second).await.unwrap();
    assert!(matches!(entered, lottery::EntryOutcome::Entered { .. }), "{entered:?}");
    app.close_booking(a.id).await;
    let drawing = tokio::spawn({
        let (pool, notifier) = (app.pool.clone(), app.state.notifier.clone());
        async move {
            let mut tx = pool.begin().await.unwrap();
            let outcome = lottery::draw(&mut tx, &notifier, a.id).await.unwrap();
            tx.commit().await.unwrap();
            outcome
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!drawing.is_finished(), "the draw did not wait for the registration in flight");
    registering.commit().await.unwrap();
    assert_eq!(drawing.await.unwrap(), DrawOutcome::Drawn { entries: 2, winners: 1 });
    assert_eq!(app.count("SELECT count(*) FROM lottery_entries WHERE rank IS NOT NULL").await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn archiving_a_lottery_before_its_draw_tells_the_registrants_and_nothing_is_drawn() {
    let app = spawn_app_with(Settings::default().set("REMINDER_CHECK_SECONDS", "1").with_notify_workers()).await;
    let csrf = app.login_admin("organiser").await;
    let a = lottery_activity(&app, "called-off", 2).await;
    for openid in app.bound_students(66, 3).await {
        assert!(say(&app, &openid, "报名 called-off").await.contains("已报名"));
    }
    let (status, _) = app.admin_post(&format!("/admin/activities/{}/archive", a.id), &[("csrf", &csrf)]).await;
    assert_eq!(status, 303);
    let told = app.count("SELECT count(*) FROM notifications WHERE body LIKE '%抽签报名随之作废%'").await;
    assert_eq!(told, 3, "each registrant is told");
    app.close_booking(a.id).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(app.count("SELECT count(*) FROM lotteries WHERE drawn_at IS NOT NULL").await, 0);
    assert_eq!(app.live_tickets(a.id).await, 0);
    assert_eq!(app.get(&format!("/activities/{}/draw.json", a.id)).await.status(), 404);
    let reply = app.say(&wx::text("o66_0", "查票")).await;
    assert!(!reply.text().contains("已报名"), "{}", reply.text());
    let all = wechat_ticket::bot::my_tickets_url(&app.state, "o66_0");
    let page = app.http.get(&all).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("活动已取消，报名作废"), "{page}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_student_registering_many_times_at_once_is_one_entry() {
    let app = spawn_app().await;
    let a = lottery_activity(&app, "twice", 5).await;
    let me = app.bound_students(67, 1).await.remove(0);
    let replies = join_all((0..12).map(|i| {
        let (app, me) = (&app, &me);
        async move {
            match i % 3 {
                0 => say(app, me, "报名 twice").await,
                1 => say(app, me, "抢票 twice").await,
                _ => app.say(&wx::click(me, &format!("BOOK_{}", a.id))).await.text().to_string(),
            }
        }
    }))
    .await;
    assert_eq!(app.count("SELECT count(*) FROM lottery_entries").await, 1);
    assert_eq!(replies.iter().filter(|r| r.contains("已报名「")).count(), 1, "{replies:?}");
    assert!(replies.iter().all(|r| r.contains("已报名「") || r.contains("已经报名")), "{replies:?}");
}
