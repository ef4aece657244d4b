//! A student picks a seat on a phone-sized page in headless Chromium (issue
//! 21): the ticket link's chooser, a seat tapped on the drawn map, the choice
//! confirmed; a second student, whose page still shows a seat someone took a
//! moment ago, is told and sees the map redrawn. Screenshots land in
//! `target/browser-screenshots/seats/`. Skipped without Chromium, unless `CI=true`.

use std::time::Duration;

use wechat_ticket::{
    booking::seats::{self, Choice},
    links::{self, Purpose},
};

use crate::common::{TestApp, browser::Browser, spawn_app};
use crate::seats::{booked, create, csv_file, text};

const WHOLE_TEST: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread")]
async fn a_student_picks_a_seat_on_a_phone() {
    let Some(browser) = Browser::start("seats").await else { return };
    tokio::time::timeout(WHOLE_TEST, journey(&browser)).await.expect("the browser journey within 90 s");
    browser.close().await;
}

fn chooser(app: &TestApp, openid: &str, code: &str) -> String {
    let expires = time::OffsetDateTime::now_utc().unix_timestamp() + 3600;
    app.url(&format!(
        "/tickets/{code}/seat?{}",
        links::sign(&app.state.secret_key, Purpose::Ticket, openid, code, expires)
    ))
}

async fn take(app: &TestApp, code: &str, student_id: &str, seat: &str) {
    let mut conn = app.pool.acquire().await.unwrap();
    let outcome = seats::choose(&mut conn, code, student_id, Choice::Seat(seat)).await.unwrap();
    assert!(matches!(outcome, seats::ChooseOutcome::Placed(_)), "{outcome:?}");
}

async fn journey(b: &Browser) {
    let app = spawn_app().await;
    // A small theatre: 楼下 rows 1–6 of 12 with an aisle after seat 6, 楼上 rows 7–8 of 10.
    let mut hall = String::from("zone,row,seat,x,y\n");
    for row in 1..=8 {
        let (zone, per_row) = if row <= 6 { ("楼下", 12) } else { ("楼上", 10) };
        for seat in 1..=per_row {
            let x = if zone == "楼下" { seat + (seat > 6) as i32 } else { seat + 1 };
            hall.push_str(&format!("{zone},{row},{seat},{x},{}\n", row + (row > 6) as i32));
        }
    }
    let out = app.cli(&["hall", "import", "小剧场", csv_file("hall.csv", hall.as_bytes()).to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(create(&app, "play", &["--seating", "seat", "--hall", "小剧场"]).status.success());
    let tickets = booked(&app, "play", 91, 12).await;
    // Some seats went already; two are held back for a camera.
    for (i, seat) in ["楼下-1-5", "楼下-1-6", "楼下-2-7", "楼下-4-3", "楼上-7-5", "楼下-3-8"].iter().enumerate()
    {
        let (code, id) = &tickets[2 + i];
        take(&app, code, id, seat).await;
    }
    sqlx::query(
        "INSERT INTO seat_blocks (activity_id, seat_id) SELECT a.id, s.id FROM activities a \
         JOIN hall_seats s ON s.hall_id = a.hall_id WHERE a.key = 'play' AND s.row_label = '8' AND s.seat_label IN ('5', '6')",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let openid = |i: usize| format!("o91_{i}");

    b.client.set_window_size(390, 844).await.expect("a phone-sized window");
    b.goto(&chooser(&app, &openid(0), &tickets[0].0)).await;
    assert_eq!(b.find_all("td.seat.free input[type=radio]").await.len(), 92 - 6 - 2);
    assert_eq!(b.find_all("td.seat.taken").await.len(), 6);
    assert_eq!(b.find_all("td.seat.blocked").await.len(), 2);
    b.shot("map").await;
    b.policy_kept("chooser").await;

    // Tap 楼下 3排6座 (the label is the seat), and confirm.
    b.find(r#"label[title="楼下 3排6座"]"#).await.click().await.unwrap();
    b.wait_until("return document.querySelector('input[value=\"楼下-3-6\"]').checked;", "the tapped seat checked")
        .await;
    b.shot("picked").await;
    b.click_and_wait("form button[type=submit]").await;
    let done = b.text("main").await;
    assert!(done.contains("选座成功") && done.contains("楼下 3排6座"), "{done}");
    b.shot("chosen").await;
    b.policy_kept("chosen").await;

    // The second student's page shows 楼下 3排7座 free; someone takes it before they confirm.
    b.goto(&chooser(&app, &openid(1), &tickets[1].0)).await;
    b.find(r#"label[title="楼下 3排7座"]"#).await.click().await.unwrap();
    take(&app, &tickets[8].0, &tickets[8].1, "楼下-3-7").await;
    b.click_and_wait("form button[type=submit]").await;
    let told = b.text("main").await;
    assert!(told.contains("这个座位刚被选走"), "{told}");
    assert!(b.find_all(r#"input[value="楼下-3-7"]"#).await.is_empty(), "the redrawn map no longer offers it");
    b.shot("just-taken").await;
    b.policy_kept("just taken").await;
    assert_eq!(app.count("SELECT count(*) FROM tickets WHERE seat_id IS NOT NULL").await, 8);
}
