//! What an attacker may try against a lottery and the simulator's test
//! students (README "Security"), tried over HTTP: a real student inheriting
//! a test student's claim under their ID.

use serde_json::Value;
use wechat_ticket::booking::lottery;

use crate::{
    common::{TestApp, fixtures::Window, spawn_app, wx},
    lottery::{lottery_activity, recompute, say},
    simulator::{bound_test_student, send},
};

const ANNOUNCED: &str = "2026年12月5日 体彩排列3 开奖号码";

/// The scheduled sweep, once, as every instance runs it.
async fn sweep(app: &TestApp) {
    let mut tx = app.pool.begin().await.unwrap();
    lottery::draw_due(&mut tx, &app.state.notifier).await.unwrap();
    tx.commit().await.unwrap();
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
async fn a_test_students_closed_rehearsal_entry_gives_nothing_once_a_real_student_claims_its_id() {
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

    // The real 2024760001 binds while the closed pool waits for its public value.
    app.bind("o_real", "2024760001").await;
    assert_eq!(app.count("SELECT count(*) FROM lottery_entries").await, 2, "a closed pool keeps its entries");
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
