//! Seats, the admin's side (issue 21): the halls page, seating on the
//! activity form (fixed once published), blocking seats (page and shell),
//! moving a student, and the per-zone counts on the activity page — over
//! real HTTP as a logged-in admin with the session's CSRF token.

use wechat_ticket::booking::seats::{self, Choice, ChooseOutcome};

use crate::{
    admin_console::activity_form,
    common::{TestApp, spawn_app},
    seats::{booked, hall_csv, text},
};

/// Uploads a hall through the page; returns (status, Location or body).
async fn upload_hall(app: &TestApp, csrf: &str, name: &str, body: Vec<u8>) -> (u16, String) {
    let form = reqwest::multipart::Form::new()
        .text("csrf", csrf.to_string())
        .text("name", name.to_string())
        .part("hall", reqwest::multipart::Part::bytes(body).file_name("hall.csv").mime_str("text/csv").unwrap());
    let resp = app.http.post(app.url("/admin/halls")).multipart(form).send().await.unwrap();
    let status = resp.status().as_u16();
    let location = resp.headers().get("location").map(|l| l.to_str().unwrap().to_string());
    (status, location.unwrap_or(resp.text().await.unwrap()))
}

/// A published activity open for booking now, made through the shell; its id.
fn create(app: &TestApp, key: &str, extra: &[&str]) -> i64 {
    let out = crate::seats::create(app, key, extra);
    assert!(out.status.success(), "{}", text(&out));
    text(&out).split('\t').next().unwrap().trim().parse().unwrap()
}

async fn choose(app: &TestApp, code: &str, student_id: &str, seat: &str) -> ChooseOutcome {
    crate::seats::choose(app, code, student_id, Choice::Seat(seat)).await
}

/// The seat a student's live ticket holds, as `zone-row-seat`.
async fn seat_of(app: &TestApp, student_id: &str) -> Option<String> {
    sqlx::query_scalar(
        "SELECT s.zone || '-' || s.row_label || '-' || s.seat_label FROM tickets t JOIN hall_seats s ON s.id = t.seat_id \
         WHERE t.student_id = $1 AND t.status <> 'cancelled'",
    )
    .bind(student_id)
    .fetch_optional(&app.pool)
    .await
    .unwrap()
}

/// The activity page's per-zone counts are the database's, zone by zone.
async fn counts_match(app: &TestApp, activity_id: i64) {
    let page = app.get(&format!("/admin/activities/{activity_id}")).await.text().await.unwrap();
    let zones: Vec<(String, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT s.zone, count(*), \
         count(*) FILTER (WHERE EXISTS (SELECT 1 FROM tickets t WHERE t.activity_id = $1 AND t.seat_id = s.id AND t.status <> 'cancelled')), \
         count(*) FILTER (WHERE EXISTS (SELECT 1 FROM seat_blocks b WHERE b.activity_id = $1 AND b.seat_id = s.id)), \
         count(*) FILTER (WHERE EXISTS (SELECT 1 FROM tickets t WHERE t.activity_id = $1 AND t.seat_id = s.id AND t.status = 'used')) \
         FROM activities a JOIN hall_seats s ON s.hall_id = a.hall_id WHERE a.id = $1 GROUP BY s.zone ORDER BY s.zone",
    )
    .bind(activity_id)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert!(!zones.is_empty());
    for (zone, total, taken, blocked, checked_in) in zones {
        let free = total - taken - blocked;
        let row = format!(
            "<tr class=\"zone-count\"><th>{zone}</th><td class=\"total\">{total}</td><td class=\"free\">{free}</td>\
             <td class=\"taken\">{taken}</td><td class=\"blocked\">{blocked}</td><td class=\"checked_in\">{checked_in}</td></tr>"
        );
        assert!(page.contains(&row), "{row} in {page}");
    }
}

#[tokio::test]
async fn halls_are_imported_previewed_and_kept_while_an_activity_uses_them() {
    let app = spawn_app().await;
    let csrf = app.login_admin("hana").await;
    let list = app.get("/admin/halls").await.text().await.unwrap();
    assert!(list.contains("href=\"/admin/halls\">场馆</a>") && list.contains("还没有场馆"), "{list}");

    // A bad file: refused with its line, the name kept, nothing stored.
    for (body, says) in [
        (&b"zone,row,seat\nA,1,1\nA,1,2\nA,1,1\n"[..], "第 4 行"),
        (b"zone,row,seat\nA,1,1\nA,,2\n", "第 3 行"),
        (b"zone,row,seat\nA,1,\xff\n", "第 2 行"),
    ] {
        let (status, page) = upload_hall(&app, &csrf, "坏的", body.to_vec()).await;
        assert_eq!(status, 400);
        assert!(page.contains(says) && page.contains("value=\"坏的\""), "{says}: {page}");
    }
    assert_eq!(app.count("SELECT count(*) FROM halls").await, 0, "nothing of a bad file is stored");
    assert_eq!(app.count("SELECT count(*) FROM hall_seats").await, 0);

    // A good one lands on its preview: every seat drawn, zones counted.
    let (status, location) = upload_hall(&app, &csrf, "礼堂", hall_csv(3, 4).into_bytes()).await;
    assert_eq!(status, 303, "{location}");
    assert!(location.starts_with("/admin/halls/"), "{location}");
    let preview = app.get(&location).await.text().await.unwrap();
    assert_eq!(preview.matches("class=\"seat free\"").count(), 12, "{preview}");
    assert!(preview.contains("A区 2排3座") && preview.contains("<span id=\"hall-seats\">12</span>"), "{preview}");
    assert!(preview.contains("<td>A区</td><td>8</td>") && preview.contains("<td>B区</td><td>4</td>"), "{preview}");
    let (status, page) = upload_hall(&app, &csrf, "礼堂", hall_csv(1, 1).into_bytes()).await;
    assert_eq!(status, 400);
    assert!(page.contains("已经有了"), "{page}");
    let list = app.get("/admin/halls").await.text().await.unwrap();
    assert!(list.contains("礼堂</a></td>\n      <td>12</td>\n      <td>2</td>"), "{list}");

    // Used by an activity, it cannot be deleted, and the refusal names the activity.
    let mut form = activity_form(&csrf, "play", "");
    form.extend([("seating", "seat"), ("hall", "礼堂")]);
    assert_eq!(app.admin_post("/admin/activities", &form).await.0, 303);
    let hall_id = location.rsplit('/').next().unwrap();
    let (status, page) = app.admin_post(&format!("/admin/halls/{hall_id}/delete"), &[("csrf", &csrf)]).await;
    assert_eq!(status, 400);
    assert!(page.contains("在用") && page.contains("play 新年音乐会"), "{page}");
    assert_eq!(app.count("SELECT count(*) FROM hall_seats").await, 12);
    let list = app.get("/admin/halls").await.text().await.unwrap();
    assert!(list.contains("play 新年音乐会"), "the list names who uses it: {list}");

    // An unused hall goes; both actions are in the audit log.
    let (status, location) = upload_hall(&app, &csrf, "小厅", hall_csv(1, 2).into_bytes()).await;
    assert_eq!(status, 303);
    let id = location.rsplit('/').next().unwrap();
    let (status, page) = app.admin_post(&format!("/admin/halls/{id}/delete"), &[("csrf", &csrf)]).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("已删除场馆 小厅"), "{page}");
    assert_eq!(app.count("SELECT count(*) FROM halls").await, 1);
    assert_eq!(app.admin_post(&format!("/admin/halls/{hall_id}/delete"), &[("csrf", "forged")]).await.0, 403);
    let audit =
        app.count("SELECT count(*) FROM audit_log WHERE actor = 'hana' AND action IN ('导入场馆', '删除场馆')").await;
    assert_eq!(audit, 3);
}

#[tokio::test]
async fn the_form_sets_the_seating_which_decides_the_capacity_and_is_fixed_once_published() {
    let app = spawn_app().await;
    let csrf = app.login_admin("ivan").await;
    assert_eq!(upload_hall(&app, &csrf, "礼堂", hall_csv(2, 5).into_bytes()).await.0, 303);
    assert_eq!(upload_hall(&app, &csrf, "别的厅", hall_csv(1, 3).into_bytes()).await.0, 303);
    let new_page = app.get("/admin/activities/new").await.text().await.unwrap();
    assert!(new_page.contains("<option value=\"礼堂\">礼堂</option>"), "{new_page}");

    // Capacity left empty: the zones or the hall decide it.
    let mut gala = activity_form(&csrf, "gala", "");
    gala.extend([("seating", "zone"), ("zones", "A区:3\r\nB区：2\r\n"), ("hall", "")]);
    assert_eq!(app.admin_post("/admin/activities", &gala).await.0, 303);
    let mut play = activity_form(&csrf, "play", "");
    play.extend([("seating", "seat"), ("zones", ""), ("hall", "礼堂"), ("seat_deadline", "2030-01-02T10:00")]);
    assert_eq!(app.admin_post("/admin/activities", &play).await.0, 303);
    let made: Vec<(String, i32, String, bool)> =
        sqlx::query_as("SELECT key, capacity, seating, seat_deadline IS NOT NULL FROM activities ORDER BY key")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(made, [("gala".into(), 5, "zone".into(), false), ("play".into(), 10, "seat".into(), true)]);
    assert_eq!(app.count("SELECT count(*) FROM activity_zones").await, 2);

    // A disagreeing capacity, a bad zone line, no hall, no capacity without seating, a deadline out of range.
    for (key, fields, field, says) in [
        ("x1", vec![("seating", "zone"), ("zones", "A区:3\nB区:2"), ("capacity", "4")], "capacity", "应为 5"),
        ("x2", vec![("seating", "seat"), ("hall", "礼堂"), ("capacity", "11")], "capacity", "应为 10"),
        ("x3", vec![("seating", "zone"), ("zones", "A区")], "zones", "区域名:票数"),
        ("x4", vec![("seating", "seat"), ("hall", "")], "hall", "请选择场馆"),
        ("x5", vec![("seating", "none")], "capacity", "请填写一个整数"),
        (
            "x6",
            vec![("seating", "seat"), ("hall", "礼堂"), ("seat_deadline", "2030-01-05T10:00")],
            "seat_deadline",
            "早于活动开始",
        ),
    ] {
        let mut form: Vec<(&str, &str)> =
            activity_form(&csrf, key, "").into_iter().filter(|(f, _)| !fields.iter().any(|(g, _)| g == f)).collect();
        form.extend(fields);
        let (status, page) = app.admin_post("/admin/activities", &form).await;
        assert_eq!(status, 400, "{key}");
        let error = page.split(&format!("id=\"{field}-error\">")).nth(1).unwrap_or_default();
        assert!(error.split("</span>").next().unwrap().contains(says), "{key}: {page}");
        assert!(page.contains("value=\"新年音乐会\""), "keeps what was typed");
    }
    assert_eq!(app.count("SELECT count(*) FROM activities").await, 2, "a refused form stores nothing");

    // A draft changes its seating freely: the old zones go.
    let gala_id: i64 =
        sqlx::query_scalar("SELECT id FROM activities WHERE key = 'gala'").fetch_one(&app.pool).await.unwrap();
    let play_id: i64 =
        sqlx::query_scalar("SELECT id FROM activities WHERE key = 'play'").fetch_one(&app.pool).await.unwrap();
    let mut to_hall = activity_form(&csrf, "gala", "");
    to_hall.extend([("seating", "seat"), ("hall", "别的厅")]);
    let (status, page) = app.admin_post(&format!("/admin/activities/{gala_id}"), &to_hall).await;
    assert_eq!(status, 200, "{page}");
    let (seating, capacity): (String, i32) = sqlx::query_as("SELECT seating, capacity FROM activities WHERE id = $1")
        .bind(gala_id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!((seating.as_str(), capacity), ("seat", 3));
    assert_eq!(app.count("SELECT count(*) FROM activity_zones").await, 0);
    let (status, _) = app.admin_post(&format!("/admin/activities/{gala_id}"), &gala).await;
    assert_eq!(status, 200, "and back to zones");

    // Published: the page shows the seating read-only, and crafted POSTs change nothing.
    for id in [gala_id, play_id] {
        assert_eq!(app.admin_post(&format!("/admin/activities/{id}/publish"), &[("csrf", &csrf)]).await.0, 303);
    }
    let page = app.get(&format!("/admin/activities/{gala_id}")).await.text().await.unwrap();
    assert!(page.contains("id=\"seating-fixed\"") && page.contains("readonly>A区:3\nB区:2</textarea>"), "{page}");
    let before: Vec<(i64, String, Option<i64>, i32)> =
        sqlx::query_as("SELECT id, seating, hall_id, capacity FROM activities ORDER BY id")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    let crafted: [(i64, Vec<(&str, &str)>); 4] = [
        (gala_id, vec![("seating", "zone"), ("zones", "A区:30\nB区:2"), ("capacity", "")]),
        (gala_id, vec![("seating", "none"), ("capacity", "5")]),
        (play_id, vec![("seating", "seat"), ("hall", "别的厅"), ("capacity", "")]),
        (play_id, vec![("seating", "zone"), ("zones", "A区:10"), ("capacity", "")]),
    ];
    for (id, fields) in crafted {
        let key = if id == gala_id { "gala" } else { "play" };
        let mut form: Vec<(&str, &str)> =
            activity_form(&csrf, key, "").into_iter().filter(|(f, _)| !fields.iter().any(|(g, _)| g == f)).collect();
        form.extend(fields.clone());
        let (status, page) = app.admin_post(&format!("/admin/activities/{id}"), &form).await;
        assert_eq!(status, 400, "{fields:?}");
        assert!(page.contains("活动发布后，座位方式、分区和场馆都不能再改"), "{fields:?}: {page}");
    }
    let after: Vec<(i64, String, Option<i64>, i32)> =
        sqlx::query_as("SELECT id, seating, hall_id, capacity FROM activities ORDER BY id")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(before, after, "nothing changed");
    let zones: Vec<(String, i32)> =
        sqlx::query_as("SELECT zone, quota FROM activity_zones ORDER BY position").fetch_all(&app.pool).await.unwrap();
    assert_eq!(zones, [("A区".into(), 3), ("B区".into(), 2)]);

    // The same seating posted back (as the read-only form does) saves the rest.
    let mut same = activity_form(&csrf, "play", "");
    same.extend([("seating", "seat"), ("hall", "礼堂"), ("name", "话剧")]);
    let same: Vec<(&str, &str)> = same.into_iter().filter(|p| *p != ("name", "新年音乐会")).collect();
    let (status, page) = app.admin_post(&format!("/admin/activities/{play_id}"), &same).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(app.count("SELECT count(*) FROM activities WHERE name = '话剧' AND seat_deadline IS NULL").await, 1);
}

#[tokio::test]
async fn blocked_seats_are_never_offered_nor_assigned_and_a_held_seat_cannot_be_blocked() {
    let app = spawn_app().await;
    let csrf = app.login_admin("jun").await;
    assert_eq!(upload_hall(&app, &csrf, "礼堂", hall_csv(3, 4).into_bytes()).await.0, 303);
    let play = create(&app, "play", &["--seating", "seat", "--hall", "礼堂"]);
    let tickets = booked(&app, "play", 81, 9).await;
    assert!(matches!(choose(&app, &tickets[0].0, &tickets[0].1, "A区-1-1").await, ChooseOutcome::Placed(_)));

    // The page's block form: every seat ticked is blocked, the capacity follows.
    let page = app.get(&format!("/admin/activities/{play}")).await.text().await.unwrap();
    assert_eq!(page.matches("type=\"checkbox\" name=\"seat\"").count(), 11, "free seats can be ticked, taken ones not");
    let blocks = format!("/admin/activities/{play}/seats/blocks");
    let (status, _) = app.admin_post(&blocks, &[("csrf", &csrf), ("seat", "A区-1-2"), ("seat", "A区-1-3")]).await;
    assert_eq!(status, 303);
    assert_eq!(app.count("SELECT count(*) FROM seat_blocks").await, 2);
    assert_eq!(app.count(&format!("SELECT capacity::bigint FROM activities WHERE id = {play}")).await, 10);
    assert_eq!(choose(&app, &tickets[1].0, &tickets[1].1, "A区-1-2").await, ChooseOutcome::Blocked);
    let page = app.get(&format!("/admin/activities/{play}")).await.text().await.unwrap();
    assert!(page.contains("value=\"A区-1-2\" aria-label=\"A区 1排2座\" checked"), "blocked seats start ticked");
    counts_match(&app, play).await;

    // A seat a live ticket holds cannot be blocked: the refusal names it, nothing changes.
    let (status, page) = app
        .admin_post(&blocks, &[("csrf", &csrf), ("seat", "A区-1-2"), ("seat", "A区-1-3"), ("seat", "A区-1-1")])
        .await;
    assert_eq!(status, 400);
    assert!(page.contains("不能预留：A区 1排1座（0008100000）"), "{page}");
    assert_eq!(app.count("SELECT count(*) FROM seat_blocks").await, 2);
    assert_eq!(app.admin_post(&blocks, &[("csrf", "forged"), ("seat", "A区-2-1")]).await.0, 403);
    assert_eq!(app.count("SELECT count(*) FROM seat_blocks").await, 2);

    // The shell blocks and unblocks too; a held seat is refused there as well.
    let out = app.cli(&["activity", "block-seats", "play", "B区-3-1"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = app.cli(&["activity", "block-seats", "play", "B区-3-2", "B区-3-3"]);
    assert!(!out.status.success() && text(&out).contains("已经抢出 9 张票"), "{}", text(&out));
    let out = app.cli(&["activity", "unblock-seats", "play", "A区-1-3"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = app.cli(&["activity", "block-seats", "play", "A区-1-1"]);
    assert!(!out.status.success() && text(&out).contains("A区 1排1座"), "{}", text(&out));
    let blocked: Vec<String> = sqlx::query_scalar(
        "SELECT s.zone || '-' || s.row_label || '-' || s.seat_label FROM seat_blocks b JOIN hall_seats s ON s.id = b.seat_id ORDER BY s.position",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(blocked, ["A区-1-2", "B区-3-1"]);
    assert_eq!(app.count(&format!("SELECT capacity::bigint FROM activities WHERE id = {play}")).await, 10);
    // Zone mode has nothing to block.
    create(&app, "gala", &["--seating", "zone", "--zone", "A区:3"]);
    let out = app.cli(&["activity", "block-seats", "gala", "A区-1-1"]);
    assert!(!out.status.success() && text(&out).contains("分区售票没有座位可预留"), "{}", text(&out));
    let audit = app.count("SELECT count(*) FROM audit_log WHERE action = '预留座位'").await;
    assert_eq!(audit, 3, "the page's and the shell's changes");

    // Ten seats offered, nine tickets: the sweep places all of them, never on a blocked seat.
    sqlx::query("UPDATE activities SET book_end = now() - interval '1 second' WHERE id = $1")
        .bind(play)
        .execute(&app.pool)
        .await
        .unwrap();
    let mut tx = app.pool.begin().await.unwrap();
    let placed = seats::assign_due(&mut tx, &app.state.notifier).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(placed, 8);
    assert_eq!(app.count("SELECT count(*) FROM tickets WHERE seat_id IS NULL AND status = 'valid'").await, 0);
    let on_blocked =
        "SELECT count(*) FROM tickets t JOIN seat_blocks b ON b.seat_id = t.seat_id AND b.activity_id = t.activity_id";
    assert_eq!(app.count(on_blocked).await, 0, "a blocked seat is never given");
    // One checked in: the page counts them apart.
    sqlx::query("UPDATE tickets SET status = 'used', checked_in_at = now() WHERE student_id = $1")
        .bind(&tickets[0].1)
        .execute(&app.pool)
        .await
        .unwrap();
    counts_match(&app, play).await;
}

#[tokio::test]
async fn an_admin_moves_a_student_and_a_taken_seat_is_refused_with_nothing_changed() {
    let app = spawn_app().await;
    let csrf = app.login_admin("kai").await;
    assert_eq!(upload_hall(&app, &csrf, "礼堂", hall_csv(3, 4).into_bytes()).await.0, 303);
    let play = create(&app, "play", &["--seating", "seat", "--hall", "礼堂"]);
    let tickets = booked(&app, "play", 82, 3).await;
    let (code0, s0) = &tickets[0];
    let (code1, s1) = &tickets[1];
    assert!(matches!(choose(&app, code0, s0, "A区-1-1").await, ChooseOutcome::Placed(_)));
    assert!(matches!(choose(&app, code1, s1, "A区-1-2").await, ChooseOutcome::Placed(_)));
    let path = format!("/admin/activities/{play}/seats/move");

    // By student ID: moved, audited, the old seat free, placed_by the admin.
    let (status, page) = app.admin_post(&path, &[("csrf", &csrf), ("who", s0), ("to", "A区-2-3")]).await;
    assert_eq!(status, 303, "{page}");
    assert_eq!(seat_of(&app, s0).await.as_deref(), Some("A区-2-3"));
    let by: String = sqlx::query_scalar("SELECT placed_by FROM tickets WHERE student_id = $1")
        .bind(s0)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(by, "kai");
    let audit: String = sqlx::query_scalar("SELECT detail FROM audit_log WHERE action = '调换位置' AND actor = 'kai'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(audit.contains(&format!("把 {s0} 从 A区 1排1座 换到 A区 2排3座")), "{audit}");
    assert!(
        matches!(choose(&app, &tickets[2].0, &tickets[2].1, "A区-1-1").await, ChooseOutcome::Placed(_)),
        "the old seat is free again"
    );

    // By ticket code onto a taken seat: refused, nothing changed.
    let (status, page) = app.admin_post(&path, &[("csrf", &csrf), ("who", code0), ("to", "A区-1-2")]).await;
    assert_eq!(status, 400);
    assert!(page.contains("座位 A区-1-2 已被别人的票占用，没有换"), "{page}");
    assert_eq!(seat_of(&app, s0).await.as_deref(), Some("A区-2-3"));
    assert_eq!(seat_of(&app, s1).await.as_deref(), Some("A区-1-2"));
    // A blocked seat, no such seat, no such student, a forged token.
    assert_eq!(
        app.admin_post(&format!("/admin/activities/{play}/seats/blocks"), &[("csrf", &csrf), ("seat", "A区-2-4")])
            .await
            .0,
        303
    );
    for (who, to, says) in [
        (s0.as_str(), "A区-2-4", "已预留"),
        (s0.as_str(), "A区-9-9", "没有位置 A区-9-9"),
        ("9999999999", "A区-2-1", "没有 9999999999 的有效票"),
    ] {
        let (status, page) = app.admin_post(&path, &[("csrf", &csrf), ("who", who), ("to", to)]).await;
        assert_eq!(status, 400, "{who} {to}");
        assert!(page.contains(says), "{says}: {page}");
    }
    assert_eq!(app.admin_post(&path, &[("csrf", "forged"), ("who", s0), ("to", "A区-2-1")]).await.0, 403);
    assert_eq!(seat_of(&app, s0).await.as_deref(), Some("A区-2-3"));
    assert_eq!(app.count("SELECT count(*) FROM audit_log WHERE action = '调换位置'").await, 1);

    // After the deadline an admin still moves students.
    sqlx::query("UPDATE activities SET seat_deadline = now() - interval '1 minute' WHERE id = $1")
        .bind(play)
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(app.admin_post(&path, &[("csrf", &csrf), ("who", s1), ("to", "B区-3-4")]).await.0, 303);
    assert_eq!(seat_of(&app, s1).await.as_deref(), Some("B区-3-4"));
    counts_match(&app, play).await;

    // Zones: the counts move with the student (−1 old, +1 new), never over a quota.
    let gala = create(&app, "gala", &["--seating", "zone", "--zone", "A区:2", "--zone", "B区:1"]);
    let fans = booked(&app, "gala", 83, 2).await;
    let mut tx = app.pool.begin().await.unwrap();
    let chosen = seats::choose(&mut tx, &fans[0].0, &fans[0].1, Choice::Zone("A区")).await.unwrap();
    tx.commit().await.unwrap();
    assert!(matches!(chosen, ChooseOutcome::Placed(_)));
    let path = format!("/admin/activities/{gala}/seats/move");
    assert_eq!(app.admin_post(&path, &[("csrf", &csrf), ("who", &fans[0].1), ("to", "B区")]).await.0, 303);
    let (status, page) = app.admin_post(&path, &[("csrf", &csrf), ("who", &fans[1].1), ("to", "B区")]).await;
    assert_eq!(status, 400);
    assert!(page.contains("B区 已满"), "{page}");
    assert_eq!(app.admin_post(&path, &[("csrf", &csrf), ("who", &fans[1].1), ("to", "A区")]).await.0, 303);
    let taken: Vec<(String, i32)> =
        sqlx::query_as("SELECT zone, taken FROM activity_zones WHERE activity_id = $1 ORDER BY position")
            .bind(gala)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(taken, [("A区".into(), 1), ("B区".into(), 1)]);
    let page = app.get(&format!("/admin/activities/{gala}")).await.text().await.unwrap();
    assert!(
        page.contains("<tr class=\"zone-count\"><th>A区</th><td class=\"total\">2</td><td class=\"free\">1</td><td class=\"taken\">1</td>"),
        "{page}"
    );
}

/// In Chromium (skipped where it is not installed): the halls page and a
/// hall's preview keep the CSP, and ticking a seat on the activity page's map
/// blocks it without JavaScript. Screenshots in `target/browser-screenshots/seats-admin/`.
#[tokio::test]
async fn an_admin_blocks_a_seat_by_ticking_it_on_the_map() {
    use crate::common::{admin::PASSWORD, browser::Browser};
    let Some(b) = Browser::start("seats-admin").await else { return };
    let app = spawn_app().await;
    app.add_admin("lin").await;
    let csv = std::env::temp_dir().join(format!("wt-seats-admin-{}.csv", uuid::Uuid::new_v4()));
    std::fs::write(&csv, hall_csv(4, 8)).unwrap();
    let out = app.cli(&["hall", "import", "礼堂", csv.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let play = create(&app, "play", &["--seating", "seat", "--hall", "礼堂"]);
    let tickets = booked(&app, "play", 84, 3).await;
    assert!(matches!(choose(&app, &tickets[0].0, &tickets[0].1, "A区-1-4").await, ChooseOutcome::Placed(_)));

    b.goto(&app.url("/admin/halls")).await;
    b.type_into("#username", "lin").await;
    b.type_into("#password", PASSWORD).await;
    b.click_and_wait(r#"form[action="/admin/login"] button[type=submit]"#).await;
    assert!(b.text("#halls").await.contains("礼堂"));
    b.policy_kept("halls").await;
    b.shot("halls").await;
    b.click_and_wait("#halls a").await;
    assert_eq!(b.find_all(".seat-map td.seat").await.len(), 32);
    b.policy_kept("hall preview").await;
    b.shot("hall-preview").await;

    b.goto(&app.url(&format!("/admin/activities/{play}"))).await;
    b.policy_kept("activity with seats").await;
    b.find(r#"#seat-blocks label[title="A区 1排5座"]"#).await.click().await.expect("tick A区 1排5座");
    b.shot("ticked").await;
    b.click_and_wait("#seat-blocks button[type=submit]").await;
    assert_eq!(b.find_all("#seat-blocks td.seat.blocked").await.len(), 1);
    assert!(b.text("#zone-counts").await.contains("预留"));
    b.shot("blocked").await;
    let blocked: String = sqlx::query_scalar(
        "SELECT s.zone || '-' || s.row_label || '-' || s.seat_label FROM seat_blocks b JOIN hall_seats s ON s.id = b.seat_id",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(blocked, "A区-1-5");
    b.close().await;
}
