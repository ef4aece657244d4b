//! Nothing leaks to an organizer through pages or exports (issue 22, point 4):
//! the audit log and the notifications page show them only what concerns their
//! teams' activities, a student ID typed at their door reveals only that
//! activity's ticket, and their export holds their activity's tickets only.

use std::io::Cursor;

use calamine::{Data, Reader, Xlsx};
use wechat_ticket::booking::checkin_links;

use crate::{
    checkin_export::{book_all, verdict},
    common::{TestApp, spawn_app},
    teams::{activity_in, organizer, team},
};

/// Two teams with an activity each: (the orchestra's `symphony`, the drama club's `hamlet`).
async fn two_teams(app: &TestApp) -> (wechat_ticket::booking::Activity, wechat_ticket::booking::Activity) {
    let orchestra = team(app, "交响乐团").await;
    let drama = team(app, "话剧社").await;
    (activity_in(app, "symphony", orchestra).await, activity_in(app, "hamlet", drama).await)
}

async fn text_of(http: &reqwest::Client, app: &TestApp, path: &str) -> (u16, String) {
    let resp = http.get(app.url(path)).send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn an_organizer_reads_only_their_teams_audit_entries_and_an_admin_reads_all() {
    let app = spawn_app().await;
    app.login_admin("root").await;
    let (symphony, hamlet) = two_teams(&app).await;
    // Entries about each activity, written where the app writes them.
    for a in [&symphony, &hamlet] {
        assert_eq!(app.get(&format!("/admin/activities/{}/export.csv", a.id)).await.status(), 200);
        checkin_links::create(&mut app.pool.acquire().await.unwrap(), a, "东门", 12, "root").await.unwrap();
    }
    let (ophelia, _) = organizer(&app, "ophelia", &["话剧社"]).await;
    // Her own action on her activity is hers to read too.
    let (status, _) = text_of(&ophelia, &app, &format!("/admin/activities/{}/export.xlsx", hamlet.id)).await;
    assert_eq!(status, 200);

    let (status, page) = text_of(&ophelia, &app, "/admin/audit").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("hamlet csv") && page.contains("hamlet xlsx") && page.contains("hamlet #"), "{page}");
    assert!(page.contains("ophelia") && page.contains("导出票务名单"), "{page}");
    assert!(!page.contains("symphony"), "nothing about another team's activity: {page}");
    // Logins (root's and her own) are account-wide: not hers to read.
    assert!(!page.contains("来自 ") && !page.contains("登录</td>"), "{page}");
    assert!(page.contains("你所在团队的活动"), "the page says what it shows");
    // The console links her to it; the account-wide pages stay closed.
    let (_, list) = text_of(&ophelia, &app, "/admin").await;
    assert!(list.contains("href=\"/admin/audit\"") && !list.contains("href=\"/admin/students\""), "{list}");
    let (status, page) = text_of(&ophelia, &app, "/admin/students?student_id=0003000000").await;
    assert_eq!(status, 403, "releasing and reading a student ID is account-wide: {page}");

    // The admin reads everything, as before.
    let page = app.get("/admin/audit").await.text().await.unwrap();
    for seen in ["symphony csv", "hamlet csv", "hamlet xlsx", "来自 ", "symphony #"] {
        assert!(page.contains(seen), "{seen}: {page}");
    }
    // Every entry above about an activity names it in its column.
    let unattributed = app
        .count(
            "SELECT count(*) FROM audit_log WHERE activity_id IS NULL AND action IN ('导出票务名单', '创建检票链接')",
        )
        .await;
    assert_eq!(unattributed, 0);
}

#[tokio::test]
async fn an_organizer_reads_only_their_teams_notifications_and_none_of_the_account_wide_parts() {
    let app = spawn_app().await;
    app.login_admin("root").await;
    let (symphony, hamlet) = two_teams(&app).await;
    // A reminder for each activity's ticket holder and a simulator test message.
    sqlx::query(
        "INSERT INTO notifications (idempotency_key, kind, student_id, openid, activity_id, body) VALUES \
         ('reminder:s', 'reminder', '0009900001', NULL, $1, '快开始了'), \
         ('reminder:h', 'reminder', '0009900002', NULL, $2, '快开始了'), \
         ('test:1', 'test', NULL, 'sim-tester', NULL, '测试')",
    )
    .bind(symphony.id)
    .bind(hamlet.id)
    .execute(&app.pool)
    .await
    .unwrap();
    let (ophelia, her_csrf) = organizer(&app, "ophelia", &["话剧社"]).await;

    let (status, page) = text_of(&ophelia, &app, "/admin/notifications").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("0009900002"), "her activity's notification: {page}");
    assert!(!page.contains("0009900001") && !page.contains("sim-tester"), "nothing else: {page}");
    assert!(!page.contains("排队待发") && !page.contains("给测试同学"), "no queue, no test form: {page}");
    let (_, list) = text_of(&ophelia, &app, "/admin").await;
    assert!(list.contains("href=\"/admin/notifications\""), "{list}");
    // The test message is refused to her even with a valid form.
    let form = [("csrf", her_csrf.as_str()), ("openid", "sim-tester"), ("text", "hi")];
    let resp = ophelia.post(app.url("/admin/notifications/test")).form(&form).send().await.unwrap();
    assert_eq!(resp.status(), 403);

    // The admin's page is as before: everything, the queue and the test form.
    let page = app.get("/admin/notifications").await.text().await.unwrap();
    for seen in ["0009900001", "0009900002", "sim-tester", "排队待发", "给测试同学发一条测试消息"] {
        assert!(page.contains(seen), "{seen}: {page}");
    }
}

#[tokio::test]
async fn a_student_id_typed_at_an_organizers_door_reveals_only_that_activitys_ticket() {
    let app = spawn_app().await;
    app.login_admin("root").await;
    let (symphony, hamlet) = two_teams(&app).await;
    let students = app.bound_students(30, 2).await;
    // Student 0 holds a ticket for both; student 1 for the orchestra's only.
    book_all(&app, &students, symphony.id).await;
    book_all(&app, &students[..1], hamlet.id).await;
    let (ophelia, csrf) = organizer(&app, "ophelia", &["话剧社"]).await;
    let door = format!("/admin/activities/{}/checkin", hamlet.id);
    let scan = |student_id: &'static str| {
        let (ophelia, csrf, door, app) = (ophelia.clone(), csrf.clone(), door.clone(), &app);
        async move {
            let nonce = wechat_ticket::links::nonce();
            let form = [("csrf", csrf.as_str()), ("code", student_id), ("nonce", nonce.as_str())];
            let resp = ophelia.post(app.url(&door)).form(&form).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            let page = resp.text().await.unwrap();
            assert!(!page.contains("symphony"), "nothing of the other team's activity: {page}");
            verdict(&page)
        }
    };

    let (good, text) = scan("0003000001").await;
    assert!(!good && text.contains("没有本活动的票"), "{text}");
    let (good, text) = scan("0003000000").await;
    assert!(good && text.contains("检票成功"), "{text}");
    // Only the hamlet ticket was checked in; the symphony ones are untouched.
    let used: Vec<i64> =
        sqlx::query_scalar("SELECT activity_id FROM tickets WHERE status = 'used'").fetch_all(&app.pool).await.unwrap();
    assert_eq!(used, [hamlet.id]);
    assert_eq!(app.live_tickets(symphony.id).await, 2);
    // Her door's page (its recent scans list what she typed) knows nothing of the other activity.
    let (_, page) = text_of(&ophelia, &app, &door).await;
    assert!(!page.contains("symphony") && page.contains("学号 0003000001 没有本活动的票"), "{page}");
    // The other team's door is a missing page to her.
    let other_door = format!("/admin/activities/{}/checkin", symphony.id);
    assert_eq!(text_of(&ophelia, &app, &other_door).await.0, 404);
}

#[tokio::test]
async fn an_organizers_export_holds_their_activity_only_and_another_teams_is_not_found() {
    let app = spawn_app().await;
    app.login_admin("root").await;
    let (symphony, hamlet) = two_teams(&app).await;
    let students = app.bound_students(31, 3).await;
    book_all(&app, &students, symphony.id).await;
    let theirs = book_all(&app, &students[1..], hamlet.id).await;
    let (ophelia, _) = organizer(&app, "ophelia", &["话剧社"]).await;

    let resp = ophelia.get(app.url(&format!("/admin/activities/{}/export.csv", hamlet.id))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let bytes = resp.bytes().await.unwrap();
    let mut reader = csv::Reader::from_reader(&bytes[3..]);
    let rows: Vec<(String, String)> =
        reader.records().map(Result::unwrap).map(|r| (r[0].to_string(), r[1].to_string())).collect();
    assert_eq!(rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(), theirs, "hamlet's tickets, no other");
    assert_eq!(rows.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(), ["0003100001", "0003100002"]);

    let resp = ophelia.get(app.url(&format!("/admin/activities/{}/export.xlsx", hamlet.id))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut book: Xlsx<_> = Xlsx::new(Cursor::new(resp.bytes().await.unwrap().to_vec())).unwrap();
    let sheet = book.worksheet_range_at(0).unwrap().unwrap();
    assert_eq!(sheet.height(), 1 + theirs.len(), "a header and hamlet's tickets");
    let codes: Vec<Data> = (1..sheet.height()).map(|r| sheet.get((r, 0)).cloned().unwrap()).collect();
    assert_eq!(codes, theirs.iter().cloned().map(Data::String).collect::<Vec<_>>());

    // The other team's exports answer as if there were no such activity, and nothing is audited.
    let before = app.count("SELECT count(*) FROM audit_log").await;
    for ext in ["csv", "xlsx"] {
        let (status, body) = text_of(&ophelia, &app, &format!("/admin/activities/{}/export.{ext}", symphony.id)).await;
        assert_eq!(status, 404, "{ext}");
        assert!(!body.contains("symphony") && !body.contains("0003100000"), "{body}");
    }
    assert_eq!(app.count("SELECT count(*) FROM audit_log").await, before);
}

#[tokio::test]
async fn older_audit_entries_are_attributed_to_the_activity_their_detail_names() {
    let app = spawn_app().await;
    // A database migrated up to the migration before this one, with entries in it.
    let pool = app.database_migrated_before("0019").await;
    // Two keys, one the other's prefix: each entry must land on its own.
    let ids: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO activities (key, name, place, book_start, book_end, start_at, end_at, capacity, status) \
         SELECT k, k, '礼堂', now(), now() + interval '1 hour', now() + interval '2 hours', \
                now() + interval '3 hours', 10, 'published' FROM unnest(ARRAY['gala', 'gala2']) k RETURNING id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let seal = format!("活动 {}：2 个测试学生的报名不进真实同学的报名池", ids[1]);
    let entries = [
        ("导出票务名单", "gala csv"),
        ("调换位置", "gala2：把 1 从 A 换到 B"),
        ("发布活动", "gala"),
        ("封存抽签报名池", seal.as_str()),
        ("登录", "来自 10.0.0.1"),
        ("修改活动", "gone 没有这个活动"),
    ];
    for (action, detail) in entries {
        sqlx::query("INSERT INTO audit_log (actor, action, detail) VALUES ('root', $1, $2)")
            .bind(action)
            .bind(detail)
            .execute(&pool)
            .await
            .unwrap();
    }

    wechat_ticket::db::migrate(&pool).await.unwrap();
    let attributed: Vec<(String, Option<i64>)> =
        sqlx::query_as("SELECT action, activity_id FROM audit_log ORDER BY id").fetch_all(&pool).await.unwrap();
    let expected = [
        ("导出票务名单", Some(ids[0])),
        ("调换位置", Some(ids[1])),
        ("发布活动", Some(ids[0])),
        ("封存抽签报名池", Some(ids[1])),
        ("登录", None),
        ("修改活动", None),
    ];
    assert_eq!(attributed, expected.map(|(a, id)| (a.to_string(), id)));
    pool.close().await;
}
