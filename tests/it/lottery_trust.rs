//! What an attacker may try against a lottery (README "The lottery" and
//! "Security"), tried over HTTP: an admin moving a closed lottery's close,
//! shrinking its places or changing its public value; a pool that could
//! change after the close; the console stuffing a real pool with test
//! students; anyone telling from a published draw who registered and who
//! won; a real student inheriting a test student's claim under their ID.

use std::{collections::HashSet, time::Duration};

use serde_json::Value;
use time::OffsetDateTime;
use wechat_ticket::{
    booking::{activities, lottery},
    local_time,
};

use crate::{
    common::{Settings, TestApp, fixtures::Window, spawn_app, spawn_app_with, wx},
    lottery::{entry_secret, lottery_activity, recompute, say, sha256_hex, verify},
    simulator::{bound_test_student, chat, send},
};

const ANNOUNCED: &str = "2026年12月5日 体彩排列3 开奖号码";

/// The text between `id="{id}">` and the next tag.
fn element_text(page: &str, id: &str) -> Option<String> {
    let start = page.find(&format!("id=\"{id}\">"))? + id.len() + 6;
    Some(page[start..].split('<').next()?.to_string())
}

/// `hex(sha256(utf8(join("\n", sorted(eids)))))`.
fn pool_hash_of(mut eids: Vec<String>) -> String {
    eids.sort();
    sha256_hex(&[eids.join("\n").as_bytes()])
}

fn eid_in(reply: &str) -> String {
    let after = reply.split("抽签编号：").nth(1).unwrap_or_else(|| panic!("no eid: {reply}"));
    after.chars().take(64).collect()
}

async fn book_end(app: &TestApp, activity_id: i64) -> OffsetDateTime {
    sqlx::query_scalar("SELECT book_end FROM activities WHERE id = $1")
        .bind(activity_id)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// The scheduled sweep, once, as every instance runs it.
async fn sweep(app: &TestApp) {
    let mut tx = app.pool.begin().await.unwrap();
    lottery::draw_due(&mut tx, &app.state.notifier).await.unwrap();
    tx.commit().await.unwrap();
}

async fn draw_now(app: &TestApp, activity_id: i64) -> lottery::DrawOutcome {
    let mut tx = app.pool.begin().await.unwrap();
    let outcome = lottery::draw(&mut tx, &app.state.notifier, activity_id).await.unwrap();
    tx.commit().await.unwrap();
    outcome
}

#[tokio::test(flavor = "multi_thread")]
async fn after_the_close_an_admin_cannot_reopen_registration_shrink_the_places_or_change_the_public_value() {
    let app = spawn_app().await;
    let csrf = app.login_admin("organiser").await;
    let a = lottery_activity(&app, "sealed", 3).await;
    let [first, late]: [String; 2] = app.bound_students(71, 2).await.try_into().unwrap();
    assert!(say(&app, &first, "报名 sealed").await.contains("已报名"));
    let announce = format!("/admin/activities/{}/lottery/announce", a.id);
    assert_eq!(app.admin_post(&announce, &[("csrf", &csrf), ("public_value", ANNOUNCED)]).await.0, 303);
    app.close_booking(a.id).await;
    let closed_at = book_end(&app, a.id).await;

    // The edit form as the console sends it, the times in minutes.
    let tz = app.state.config.timezone;
    let edit = |book_end: OffsetDateTime, capacity: &str, place: &str| {
        let form = vec![
            ("csrf", csrf.clone()),
            ("key", a.key.clone()),
            ("name", a.name.clone()),
            ("place", place.to_string()),
            ("description", String::new()),
            ("book_start", local_time::input(a.book_start, tz)),
            ("book_end", local_time::input(book_end, tz)),
            ("start_at", local_time::input(a.start_at, tz)),
            ("end_at", local_time::input(a.end_at, tz)),
            ("capacity", capacity.to_string()),
        ];
        let app = &app;
        async move {
            let resp = app.http.post(app.url(&format!("/admin/activities/{}", a.id))).form(&form).send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    // The close an hour later (still before the start): registration would reopen.
    let (status, page) = edit(OffsetDateTime::now_utc() + time::Duration::hours(1), "3", &a.place).await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("抽签报名已经截止，报名池已封存：截止时间不能再改"), "{page}");
    assert_eq!(book_end(&app, a.id).await, closed_at, "the close did not move");
    assert!(say(&app, &late, "报名 sealed").await.contains("报名已经截止"));
    // Fewer places before the draw: refused too.
    let (status, page) = edit(closed_at, "2", &a.place).await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("抽签前票数只能增加，不能少于 3"), "{page}");
    // The same close, more places and another hall: saved (more places are drawn too).
    let (status, page) = edit(closed_at, "4", "大礼堂").await;
    assert!(status == 200 && page.contains("已保存"), "{status} {page}");
    let saved = activities::by_id(&mut app.pool.acquire().await.unwrap(), a.id).await.unwrap().unwrap();
    assert_eq!((saved.capacity, saved.place.as_str(), saved.book_end), (4, "大礼堂", closed_at));

    // The announced public value is frozen: neither changed nor withdrawn after the close.
    for value in ["换一个", ""] {
        let (status, body) = app.admin_post(&announce, &[("csrf", &csrf), ("public_value", value)]).await;
        assert_eq!(status, 400, "{value}: {body}");
    }
    let announced: Option<String> =
        sqlx::query_scalar("SELECT public_value_announced FROM lotteries WHERE activity_id = $1")
            .bind(a.id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(announced.as_deref(), Some(ANNOUNCED));
    assert_eq!(app.count("SELECT count(*) FROM lottery_entries").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pool_is_sealed_at_the_close_and_its_hash_published_before_the_public_value_is_known() {
    let settings = Settings::default().with_notify_workers().set("REMINDER_CHECK_SECONDS", "1");
    let app = spawn_app_with(settings).await;
    let csrf = app.login_admin("organiser").await;
    let a = lottery_activity(&app, "pool", 2).await;
    let openids = app.bound_students(72, 6).await;
    let mut eids = Vec::new();
    for o in &openids[..5] {
        eids.push(eid_in(&say(&app, o, "报名 pool").await));
    }
    let announce = format!("/admin/activities/{}/lottery/announce", a.id);
    assert_eq!(app.admin_post(&announce, &[("csrf", &csrf), ("public_value", ANNOUNCED)]).await.0, 303);
    let draw_page = format!("/activities/{}/draw", a.id);
    assert!(!app.get(&draw_page).await.text().await.unwrap().contains("id=\"pool-hash\""), "nothing sealed yet");

    // The close: the sweep (every second) seals the pool, and the page shows it while the draw waits.
    app.close_booking(a.id).await;
    let mut page = String::new();
    for _ in 0..200 {
        page = app.get(&draw_page).await.text().await.unwrap();
        if page.contains("id=\"pool-hash\"") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let shown = element_text(&page, "pool-hash").unwrap_or_else(|| panic!("no pool_hash after the close: {page}"));
    assert_eq!(shown, pool_hash_of(eids.clone()), "the hash of the registrations' eids");
    assert_eq!(element_text(&page, "entries").as_deref(), Some("5"), "{page}");
    assert!(page.contains("报名池已封存（5 人）：等待管理员确认公开值后抽签"), "{page}");
    let admin = app.get(&format!("/admin/activities/{}", a.id)).await.text().await.unwrap();
    assert_eq!(element_text(&admin, "lottery-pool-hash").as_deref(), Some(shown.as_str()), "the admin page too");
    assert_eq!(app.get(&format!("{draw_page}.json")).await.status(), 404, "not drawn: the seed stays secret");
    assert!(say(&app, &openids[5], "报名 pool").await.contains("报名已经截止"));

    // The admin confirms the value: the draw uses the pool sealed at the close.
    let confirm = format!("/admin/activities/{}/lottery/confirm", a.id);
    let confirmed = format!("{ANNOUNCED}：7 2 9");
    assert_eq!(app.admin_post(&confirm, &[("csrf", &csrf), ("public_value", &confirmed)]).await.0, 303);
    let json: Value = app.get(&format!("{draw_page}.json")).await.json().await.unwrap();
    assert_eq!(json["pool_hash"], shown.as_str());
    assert_eq!(json["entries"], 5);
    let order = recompute(&json);
    assert_eq!(order.iter().cloned().collect::<HashSet<_>>(), eids.into_iter().collect::<HashSet<_>>());
    assert_eq!(app.live_tickets(a.id).await, 2);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn test_students_from_the_simulator_never_enter_a_real_students_lottery() {
    let app = spawn_app().await;
    let csrf = app.login_admin("organiser").await;
    let real = lottery_activity(&app, "real", 1).await;
    let [student, other]: [String; 2] = app.bound_students(73, 2).await.try_into().unwrap();
    assert!(say(&app, &student, "报名 real").await.contains("已报名"));

    // Whoever runs the console makes a test student and registers it: refused, with the reason.
    let tester = bound_test_student(&app, &csrf, "2099000731").await;
    send(&app, &csrf, &tester, "报名 real", "").await;
    let screen = chat(&app, &tester).await;
    assert!(screen.contains("「抽签 real」已有真实同学报名，测试学生不能参加"), "{screen}");
    assert_eq!(app.count("SELECT count(*) FROM lottery_entries WHERE openid LIKE 'simulator-%'").await, 0);

    // A test student that registered before any real student is left out when the pool is sealed.
    let early = lottery_activity(&app, "early", 1).await;
    send(&app, &csrf, &tester, "报名 early", "").await;
    let screen = chat(&app, &tester).await;
    assert!(screen.contains("已报名「抽签 early」"), "a lottery with no real student yet is a rehearsal: {screen}");
    let tester_eid = eid_in(&screen[screen.rfind("已报名「抽签 early」").unwrap()..]);
    assert!(say(&app, &other, "报名 early").await.contains("已报名"));
    for id in [real.id, early.id] {
        app.close_booking(id).await;
        assert!(matches!(draw_now(&app, id).await, lottery::DrawOutcome::Drawn { entries: 1, winners: 1 }));
    }
    let json: Value = app.get(&format!("/activities/{}/draw.json", early.id)).await.json().await.unwrap();
    assert_eq!(json["entries"], 1, "{json}");
    assert!(!json["eids"].as_array().unwrap().iter().any(|e| e == tester_eid.as_str()), "{json}");
    assert_eq!(app.count("SELECT count(*) FROM tickets WHERE simulated").await, 0, "no place went to a test student");
    assert_eq!(app.live_tickets(early.id).await, 1);
    assert_eq!(app.count("SELECT count(*) FROM waiting_list").await, 0, "nor a place in line");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_published_draw_tells_nobody_who_registered_but_each_student_finds_their_own_eid() {
    let app = spawn_app().await;
    let a = lottery_activity(&app, "private", 3).await;
    let openids = app.bound_students(74, 8).await;
    let student_id = |i: usize| format!("{:05}{i:05}", 74);
    let mut replies = Vec::new();
    for o in &openids[..6] {
        let reply = say(&app, o, "报名 private").await;
        assert!(reply.contains("已报名"), "{reply}");
        replies.push(reply);
    }
    app.close_booking(a.id).await;
    assert!(matches!(draw_now(&app, a.id).await, lottery::DrawOutcome::Drawn { entries: 6, winners: 3 }));

    // The attacker has draw.json and guesses student IDs: the published seed alone ties no eid to any.
    let json: Value = app.get(&format!("/activities/{}/draw.json", a.id)).await.json().await.unwrap();
    let seed = hex::decode(json["server_seed"].as_str().unwrap()).unwrap();
    let published: HashSet<String> =
        json["eids"].as_array().unwrap().iter().map(|e| e.as_str().unwrap().to_string()).collect();
    assert_eq!(published.len(), 6);
    for guess in (0..100).map(student_id) {
        let old_formula = sha256_hex(&[&seed, guess.as_bytes()]);
        assert!(!published.contains(&old_formula), "{guess} is found in the published draw by its student ID alone");
    }

    // Each student holds their secret (reply and own page) and finds their eid and rank with it.
    for (i, reply) in replies.iter().enumerate() {
        let (eid, secret) = (eid_in(reply), entry_secret(reply));
        let mine = sha256_hex(&[&seed, &hex::decode(&secret).unwrap(), student_id(i).as_bytes()]);
        assert_eq!(mine, eid, "README's formula over the secret");
        assert!(published.contains(&eid));
        let page = app.http.get(wechat_ticket::bot::my_tickets_url(&app.state, &openids[i])).send().await.unwrap();
        let page = page.text().await.unwrap();
        assert!(page.contains(&eid) && page.contains(&secret), "their page shows the eid and the secret: {page}");
    }
    let out = verify(&app, &["private", "--student-id", &student_id(0), "--secret", &entry_secret(&replies[0])]);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success() && said.contains(&format!("eid {} — rank ", eid_in(&replies[0]))), "{said}");
    let out = verify(&app, &["private", "--student-id", &student_id(0), "--secret", &entry_secret(&replies[1])]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("is not among the entries"), "another's secret");
    let out = verify(&app, &["private", "--student-id", &student_id(0)]);
    assert!(!out.status.success(), "a student ID alone is not enough");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_student_who_binds_an_id_a_test_student_waited_under_is_never_promoted_into_a_test_ticket() {
    let app = spawn_app().await;
    let csrf = app.login_admin("organiser").await;
    let full = app.activity("full", 1, Window::Open).await;
    let holder = app.bound_students(75, 1).await.remove(0);
    assert!(matches!(app.say(&wx::text(&holder, "抢票 full")).await, wx::Reply::News { .. }));

    // Two test students queue under IDs real students will claim; the second unbinds itself first.
    let waiting = bound_test_student(&app, &csrf, "2024750001").await;
    send(&app, &csrf, &waiting, "候补 full", "").await;
    let gone = bound_test_student(&app, &csrf, "2024750002").await;
    send(&app, &csrf, &gone, "候补 full", "").await;
    send(&app, &csrf, &gone, "解绑", "").await;
    assert_eq!(app.count("SELECT count(*) FROM waiting_list WHERE state = 'waiting'").await, 2);

    app.bind("o_real_1", "2024750001").await;
    app.bind("o_real_2", "2024750002").await;
    assert_eq!(app.count("SELECT count(*) FROM waiting_list WHERE state = 'waiting'").await, 0, "both left the line");

    // A place frees: nobody is left in line, so it goes back to be booked; no test ticket under a real ID.
    assert!(say(&app, &holder, "退票 full").await.contains("已退掉"));
    assert_eq!(app.count("SELECT count(*) FROM tickets WHERE simulated").await, 0);
    for real in ["o_real_1", "o_real_2"] {
        assert!(app.say(&wx::text(real, "查票")).await.text().contains("你还没有票"), "{real}");
    }
    assert!(matches!(app.say(&wx::text("o_real_1", "抢票 full")).await, wx::Reply::News { .. }));
    assert_eq!(app.live_tickets(full.id).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_test_students_sealed_rehearsal_entry_gives_nothing_once_a_real_student_claims_its_id() {
    let app = spawn_app().await;
    let csrf = app.login_admin("organiser").await;
    let a = lottery_activity(&app, "rehearsal", 1).await;
    let claimed = bound_test_student(&app, &csrf, "2024760001").await;
    let kept = bound_test_student(&app, &csrf, "2024760002").await;
    for tester in [&claimed, &kept] {
        send(&app, &csrf, tester, "报名 rehearsal", "").await;
    }
    let announce = format!("/admin/activities/{}/lottery/announce", a.id);
    assert_eq!(app.admin_post(&announce, &[("csrf", &csrf), ("public_value", ANNOUNCED)]).await.0, 303);
    app.close_booking(a.id).await;
    sweep(&app).await;

    // The real 2024760001 binds while the sealed pool waits for its public value.
    app.bind("o_real", "2024760001").await;
    assert_eq!(app.count("SELECT count(*) FROM lottery_entries").await, 2, "a sealed pool keeps its entries");
    let confirm = format!("/admin/activities/{}/lottery/confirm", a.id);
    assert_eq!(app.admin_post(&confirm, &[("csrf", &csrf), ("public_value", "7 2 9")]).await.0, 303);
    let json: Value = app.get(&format!("/activities/{}/draw.json", a.id)).await.json().await.unwrap();
    assert_eq!(json["entries"], 2);
    recompute(&json);

    // Whatever its rank, the claimed entry got neither a ticket nor a place in line; the other test student won.
    let count = |sql: &'static str| {
        let app = &app;
        async move { sqlx::query_scalar::<_, i64>(sql).bind("2024760001").fetch_one(&app.pool).await.unwrap() }
    };
    assert_eq!(count("SELECT count(*) FROM tickets WHERE student_id = $1").await, 0);
    assert_eq!(count("SELECT count(*) FROM waiting_list WHERE student_id = $1").await, 0);
    assert_eq!(count("SELECT count(*) FROM tickets WHERE student_id <> $1 AND simulated").await, 1);
    assert!(app.say(&wx::text("o_real", "查票")).await.text().contains("你还没有票"));
}
