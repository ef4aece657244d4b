//! Seats at the door and after the deadline (issue 21): a check-in names the
//! place (on a volunteer's link, JSON and form, and on the admin's page), the
//! exports carry 区域/排/座, and a ticket issued after the seat deadline (a
//! promotion from the waiting list) holds a free place at once.

use std::io::Cursor;

use calamine::{Data, Reader, Xlsx};
use serde_json::Value;
use time::Duration;
use wechat_ticket::{
    booking::{
        lottery,
        seats::{self, Choice, ChooseOutcome, Place},
    },
    links,
};

use crate::{
    common::{TestApp, admin::csrf_in, fixtures::Window, spawn_app, wx},
    door::create_link,
    seats::{at, booked, choose, create, import_hall},
};

/// A scan through a volunteer link's JSON endpoint: the verdict's headline, and whether it is good.
async fn scan(app: &TestApp, door: &str, code: &str) -> (bool, String) {
    let resp = app.http.post(format!("{door}/scan")).form(&[("code", code), ("nonce", &links::nonce())]).send().await;
    let json: Value = resp.unwrap().json().await.unwrap();
    let verdict = &json["verdict"];
    (verdict["good"].as_bool().unwrap(), verdict["headline"].as_str().unwrap().to_string())
}

async fn activity_id(app: &TestApp, key: &str) -> i64 {
    sqlx::query_scalar("SELECT id FROM activities WHERE key = $1").bind(key).fetch_one(&app.pool).await.unwrap()
}

async fn say(app: &TestApp, openid: &str, text: &str) -> String {
    format!("{:?}", app.say(&wx::text(openid, text)).await)
}

#[tokio::test]
async fn the_door_names_the_place_a_ticket_holds() {
    let app = spawn_app().await;
    let csrf = app.login_admin("organiser").await;
    // 礼堂: rows 1 and 2 in A区, row 3 in B区, four seats each.
    import_hall(&app, "礼堂", 3, 4);
    assert!(create(&app, "play", &["--seating", "seat", "--hall", "礼堂"]).status.success());
    let play = booked(&app, "play", 81, 3).await;
    assert!(matches!(choose(&app, &play[0].0, &play[0].1, Choice::Seat("A区-1-2")).await, ChooseOutcome::Placed(_)));
    let door = create_link(&app, &csrf, activity_id(&app, "play").await, "东门").await;

    // The camera page's JSON: the seat, then the same seat on a second scan.
    assert_eq!(scan(&app, &door, &play[0].0).await, (true, "检票成功 · A区 1排2座".into()));
    let (good, again) = scan(&app, &door, &play[0].0).await;
    assert!(!good && again.starts_with("已检票") && again.ends_with(" · A区 1排2座"), "{again}");
    // Before the sweep a ticket may have no seat yet: the volunteer is told so.
    assert_eq!(scan(&app, &door, &play[1].0).await, (true, "检票成功 · 未选座".into()));

    // The form without JavaScript: the verdict, and the list of last scans, name the seat.
    let volunteer = reqwest::Client::new();
    let page = volunteer.get(&door).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("检票成功 · A区 1排2座") && page.contains("检票成功 · 未选座"), "the last scans: {page}");
    assert_eq!(choose(&app, &play[2].0, &play[2].1, Choice::Seat("B区-3-4")).await, seats_placed_at("B区", "3", "4"));
    let form = [("code", play[2].0.as_str()), ("nonce", &links::nonce())];
    let page = volunteer.post(&door).form(&form).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("class=\"result good\" role=\"status\">检票成功 · B区 3排4座<small>"), "{page}");

    // The admin's check-in page, at a zone activity: the zone.
    assert!(create(&app, "gala", &["--seating", "zone", "--zone", "A区:2", "--zone", "B区:2"]).status.success());
    let gala = booked(&app, "gala", 82, 1).await;
    assert!(matches!(choose(&app, &gala[0].0, &gala[0].1, Choice::Zone("B区")).await, ChooseOutcome::Placed(_)));
    let path = format!("/admin/activities/{}/checkin", activity_id(&app, "gala").await);
    let page = app.get(&path).await.text().await.unwrap();
    let csrf = csrf_in(&page).unwrap();
    let (status, page) =
        app.admin_post(&path, &[("csrf", &csrf), ("code", &gala[0].1), ("nonce", &links::nonce())]).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(">检票成功 · B区<small>"), "{page}");

    // Standing room is as it always was.
    let own = app.activity("talk", 5, Window::Open).await;
    let talk = booked(&app, "talk", 83, 1).await;
    let door = create_link(&app, &csrf, own.id, "西门").await;
    assert_eq!(scan(&app, &door, &talk[0].0).await, (true, "检票成功".into()));
}

fn seats_placed_at(zone: &str, row: &str, seat: &str) -> ChooseOutcome {
    ChooseOutcome::Placed(Place { zone: zone.into(), row_label: Some(row.into()), seat_label: Some(seat.into()) })
}

#[tokio::test]
async fn the_exports_say_where_each_ticket_sits() {
    let app = spawn_app().await;
    app.login_admin("organiser").await;
    import_hall(&app, "礼堂", 2, 3);
    assert!(create(&app, "play", &["--seating", "seat", "--hall", "礼堂"]).status.success());
    let play = booked(&app, "play", 84, 3).await;
    assert_eq!(choose(&app, &play[0].0, &play[0].1, Choice::Seat("A区-1-2")).await, seats_placed_at("A区", "1", "2"));
    assert_eq!(choose(&app, &play[2].0, &play[2].1, Choice::Seat("B区-2-3")).await, seats_placed_at("B区", "2", "3"));
    // A cancelled ticket no longer sits anywhere.
    assert!(say(&app, "o84_2", "退票 play").await.contains("退"));
    let id = activity_id(&app, "play").await;

    let bytes = app.get(&format!("/admin/activities/{id}/export.csv")).await.bytes().await.unwrap();
    let mut reader = csv::Reader::from_reader(&bytes[3..]);
    let headers: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(headers[9..12], ["区域", "排", "座"]);
    let rows: Vec<Vec<String>> = reader.records().map(|r| r.unwrap().iter().map(String::from).collect()).collect();
    let place = |row: &Vec<String>| row[9..12].to_vec();
    assert_eq!(rows[0][0], play[0].0);
    assert_eq!(place(&rows[0]), ["A区", "1", "2"]);
    assert_eq!(place(&rows[1]), ["", "", ""], "not chosen yet");
    assert_eq!((rows[2][3].as_str(), place(&rows[2])), ("已退票", vec![String::new(); 3]));

    let xlsx = app.get(&format!("/admin/activities/{id}/export.xlsx")).await.bytes().await.unwrap();
    let mut book: Xlsx<_> = Xlsx::new(Cursor::new(xlsx.to_vec())).unwrap();
    let sheet = book.worksheet_range_at(0).unwrap().unwrap();
    let cell = |r: usize, c: usize| sheet.get((r, c)).cloned().unwrap_or(Data::Empty);
    assert_eq!(cell(0, 9), Data::String("区域".into()));
    // Rows and seats are labels as people write them: text, not numbers.
    assert_eq!([cell(1, 9), cell(1, 10), cell(1, 11)], ["A区", "1", "2"].map(|s| Data::String(s.into())));

    // Standing room: the columns are there, empty.
    let own = app.activity("talk", 5, Window::Open).await;
    booked(&app, "talk", 85, 1).await;
    let bytes = app.get(&format!("/admin/activities/{}/export.csv", own.id)).await.bytes().await.unwrap();
    let mut reader = csv::Reader::from_reader(&bytes[3..]);
    assert_eq!(reader.headers().unwrap().len(), 14, "then 类型 and 备注");
    let row = reader.records().next().unwrap().unwrap();
    assert_eq!((&row[9], &row[10], &row[11], &row[12]), ("", "", "", "学生"));
}

#[tokio::test]
async fn a_promotion_after_the_seat_deadline_holds_a_free_seat_at_once() {
    let app = spawn_app().await;
    // 小厅: A区 row 1 and B区 row 2, three seats each.
    import_hall(&app, "小厅", 2, 3);
    let deadline = at(Duration::minutes(30));
    assert!(
        create(&app, "play", &["--seating", "seat", "--hall", "小厅", "--seat-deadline", &deadline]).status.success()
    );
    let play = booked(&app, "play", 86, 6).await;
    for ((code, id), seat) in play.iter().zip(["A区-1-1", "A区-1-2", "A区-1-3", "B区-2-1", "B区-2-2"]) {
        assert!(matches!(choose(&app, code, id, Choice::Seat(seat)).await, ChooseOutcome::Placed(_)), "{seat}");
    }
    let late = app.bound_students(87, 1).await.remove(0);
    assert!(say(&app, &late, "候补 play").await.contains("排第 1 位"));
    // The last free seat is held back; the deadline passes (the sweep has not run).
    sqlx::query(
        "INSERT INTO seat_blocks (activity_id, seat_id) SELECT a.id, s.id FROM activities a, hall_seats s \
         WHERE a.key = 'play' AND s.zone = 'B区' AND s.row_label = '2' AND s.seat_label = '3'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query("UPDATE activities SET seat_deadline = now() - interval '1 minute' WHERE key = 'play'")
        .execute(&app.pool)
        .await
        .unwrap();

    // A-1-1's holder cancels: the head of the line gets the ticket and, at once, the seat just freed.
    assert!(say(&app, "o86_0", "退票 play").await.contains("退"));
    let (zone, row, seat): (String, String, String) = sqlx::query_as(
        "SELECT s.zone, s.row_label, s.seat_label FROM tickets t JOIN hall_seats s ON s.id = t.seat_id \
         WHERE t.openid = $1 AND t.status = 'valid'",
    )
    .bind(&late)
    .fetch_one(&app.pool)
    .await
    .expect("the promoted ticket holds a seat");
    assert_eq!((zone.as_str(), row.as_str(), seat.as_str()), ("A区", "1", "1"), "never the blocked B区 2排3座");
    assert_eq!(
        app.count(
            "SELECT count(*) FROM (SELECT seat_id FROM tickets WHERE status <> 'cancelled' AND seat_id IS NOT NULL \
             GROUP BY activity_id, seat_id HAVING count(*) > 1) twice"
        )
        .await,
        0
    );
    let notice: String = sqlx::query_scalar("SELECT body FROM notifications WHERE kind = 'waiting_promoted'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(notice.contains("【候补成功】") && notice.contains("你的位置是：A区 1排1座"), "{notice}");
    // Placed at promotion, so the sweep has nobody else to tell about it.
    let mut tx = app.pool.begin().await.unwrap();
    seats::assign_due(&mut tx, &app.state.notifier).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        app.count("SELECT count(*) FROM notifications n JOIN tickets t ON t.id = n.ticket_id WHERE n.kind = 'place_assigned' AND t.openid = 'o87_0'").await,
        0
    );
}

#[tokio::test]
async fn lottery_winners_drawn_after_the_deadline_are_swept_and_a_later_promotion_placed_at_once() {
    let app = spawn_app().await;
    let zones = ["--mode", "lottery", "--seating", "zone", "--zone", "A区:1", "--zone", "B区:1"];
    assert!(create(&app, "ball", &zones).status.success());
    let students = app.bound_students(88, 3).await;
    for openid in &students {
        assert!(say(&app, openid, "报名 ball").await.contains("已报名"));
    }
    let id = activity_id(&app, "ball").await;
    // The draw at the close, which is also the seat deadline: nobody chose.
    app.close_booking(id).await;
    let mut tx = app.pool.begin().await.unwrap();
    lottery::draw(&mut tx, &app.state.notifier, id).await.unwrap();
    let placed = seats::assign_due(&mut tx, &app.state.notifier).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(placed, 2, "the sweep places both winners");
    let winners: Vec<(String, String)> =
        sqlx::query_as("SELECT openid, zone FROM tickets WHERE activity_id = $1 AND status = 'valid' ORDER BY zone")
            .bind(id)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(winners.iter().map(|(_, z)| z.as_str()).collect::<Vec<_>>(), ["A区", "B区"]);

    // A winner cancels: the first in the draw's line is promoted into the zone that has room, at once.
    let (leaver, freed) = &winners[0];
    assert!(say(&app, leaver, "退票 ball").await.contains("退"));
    let promoted: Option<String> = sqlx::query_scalar(
        "SELECT t.zone FROM tickets t JOIN waiting_list w ON w.ticket_id = t.id WHERE w.activity_id = $1 AND w.state = 'promoted'",
    )
    .bind(id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(promoted.as_deref(), Some(freed.as_str()));
    let taken: Vec<(i32, i32)> = sqlx::query_as("SELECT taken, quota FROM activity_zones WHERE activity_id = $1")
        .bind(id)
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(taken, [(1, 1), (1, 1)]);
}

#[tokio::test]
async fn a_booking_after_an_early_seat_deadline_gets_its_place_with_the_ticket() {
    let app = spawn_app().await;
    // Two seats: A区 1排1座 and B区 2排1座.
    import_hall(&app, "小厅", 2, 1);
    let deadline = at(Duration::minutes(30));
    assert!(
        create(&app, "play", &["--seating", "seat", "--hall", "小厅", "--seat-deadline", &deadline]).status.success()
    );
    let zones = ["--seating", "zone", "--zone", "A区:1", "--zone", "B区:1", "--seat-deadline", &deadline];
    assert!(create(&app, "gala", &zones).status.success());
    // Choosing closed; booking runs on until its end.
    sqlx::query("UPDATE activities SET seat_deadline = now() - interval '1 minute'").execute(&app.pool).await.unwrap();
    booked(&app, "play", 89, 2).await;
    booked(&app, "gala", 90, 2).await;
    let places: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT a.key, t.zone, s.row_label FROM tickets t JOIN activities a ON a.id = t.activity_id \
         LEFT JOIN hall_seats s ON s.id = t.seat_id WHERE t.status = 'valid' ORDER BY a.key, t.zone",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        places,
        [
            ("gala".into(), "A区".into(), None),
            ("gala".into(), "B区".into(), None),
            ("play".into(), "A区".into(), Some("1".into())),
            ("play".into(), "B区".into(), Some("2".into())),
        ]
    );
    assert_eq!(app.count("SELECT sum(taken) FROM activity_zones").await, 2);
}
