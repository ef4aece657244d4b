//! Seats, first part (issue 21): halls imported from CSV, the seating chosen
//! at creation deciding the capacity, a place taken once under concurrency,
//! and the clock's sweep placing whoever did not choose. The chooser page,
//! `选座` and the places on every ticket view are not built yet; the rules are
//! attacked here directly, as a request will call them.

use std::process::Output;

use time::{Duration, OffsetDateTime, format_description::well_known::Rfc3339};
use wechat_ticket::booking::seats::{self, Choice, ChooseOutcome};

use crate::common::{TestApp, spawn_app, wx};

pub(crate) fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

pub(crate) fn csv_file(name: &str, body: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("wt-seats-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path
}

pub(crate) fn at(offset: Duration) -> String {
    (OffsetDateTime::now_utc() + offset).format(&Rfc3339).unwrap()
}

/// A published activity open for booking now, made through the shell with `extra` flags.
pub(crate) fn create(app: &TestApp, key: &str, extra: &[&str]) -> Output {
    let (bs, be, s, e) = (
        at(-Duration::hours(1)),
        at(Duration::hours(1)),
        at(Duration::days(1)),
        at(Duration::days(1) + Duration::hours(2)),
    );
    let mut args = vec![
        "activity",
        "create",
        key,
        "--name",
        "晚会",
        "--place",
        "综体",
        "--book-start",
        &bs,
        "--book-end",
        &be,
        "--start",
        &s,
        "--end",
        &e,
        "--publish",
    ];
    args.extend_from_slice(extra);
    app.cli(&args)
}

/// A hall's CSV: `rows` rows of `per_row` seats, zone A but the last row B.
pub(crate) fn hall_csv(rows: usize, per_row: usize) -> String {
    let mut body = String::from("zone,row,seat\n");
    for r in 1..=rows {
        for s in 1..=per_row {
            body.push_str(&format!("{},{r},{s}\n", if r == rows { "B区" } else { "A区" }));
        }
    }
    body
}

/// A hall of `rows` rows of `per_row` seats in zone A (rows 1…) but the last, zone B.
pub(crate) fn import_hall(app: &TestApp, name: &str, rows: usize, per_row: usize) {
    let body = hall_csv(rows, per_row);
    let out = app.cli(&["hall", "import", name, csv_file("hall.csv", body.as_bytes()).to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
}

/// `n` students each book `key` over signed WeChat XML; returns (code, student ID) per ticket.
pub(crate) async fn booked(app: &TestApp, key: &str, group: u32, n: usize) -> Vec<(String, String)> {
    for openid in app.bound_students(group, n).await {
        let reply = app.say(&wx::text(&openid, &format!("抢票 {key}"))).await;
        assert!(matches!(reply, wx::Reply::News { .. }), "{reply:?}");
    }
    sqlx::query_as(
        "SELECT t.code, t.student_id FROM tickets t JOIN activities a ON a.id = t.activity_id \
         WHERE a.key = $1 AND t.status = 'valid' ORDER BY t.id",
    )
    .bind(key)
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

pub(crate) async fn choose(app: &TestApp, code: &str, student_id: &str, choice: Choice<'_>) -> ChooseOutcome {
    let mut tx = app.pool.begin().await.unwrap();
    let outcome = seats::choose(&mut tx, code, student_id, choice).await.unwrap();
    tx.commit().await.unwrap();
    outcome
}

#[tokio::test]
async fn a_hall_comes_from_csv_and_a_bad_file_stores_nothing() {
    let app = spawn_app().await;
    for (body, line) in [
        (&b"zone,row,seat\nA,1,1\nA,1,2\nA,1,1\n"[..], "第 4 行"),
        (b"zone,row,seat\nA,1,1\nA,,2\n", "第 3 行"),
        (b"zone,row,seat\nA,1,1\nA,1,\xff\n", "第 3 行"),
    ] {
        let out = app.cli(&["hall", "import", "bad", csv_file("bad.csv", body).to_str().unwrap()]);
        assert!(!out.status.success());
        assert!(text(&out).contains(line), "{}", text(&out));
    }
    assert_eq!(app.count("SELECT count(*) FROM halls").await, 0, "nothing of a bad file is stored");
    import_hall(&app, "小剧场", 3, 4);
    let list = app.cli(&["hall", "list"]);
    assert_eq!(String::from_utf8_lossy(&list.stdout), "小剧场\t12\t0\n");
    let again = app.cli(&["hall", "import", "小剧场", csv_file("h.csv", b"zone,row,seat\nA,1,1\n").to_str().unwrap()]);
    assert!(!again.status.success() && text(&again).contains("已经有了"), "{}", text(&again));

    // In use, it cannot be deleted.
    assert!(create(&app, "show", &["--seating", "seat", "--hall", "小剧场"]).status.success());
    let delete = app.cli(&["hall", "delete", "小剧场"]);
    assert!(!delete.status.success() && text(&delete).contains("在用"), "{}", text(&delete));
    assert_eq!(app.count("SELECT count(*) FROM hall_seats").await, 12);
}

#[tokio::test]
async fn the_seating_decides_the_capacity_and_a_disagreeing_one_is_an_error() {
    let app = spawn_app().await;
    import_hall(&app, "礼堂", 2, 5);
    let zones = create(&app, "gala", &["--seating", "zone", "--zone", "A区:3", "--zone", "B区:2"]);
    assert!(zones.status.success(), "{}", text(&zones));
    let seat = create(&app, "play", &["--seating", "seat", "--hall", "礼堂"]);
    assert!(seat.status.success(), "{}", text(&seat));
    let capacities: Vec<(String, i32, String)> =
        sqlx::query_as("SELECT key, capacity, seating FROM activities ORDER BY key")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(capacities, [("gala".into(), 5, "zone".into()), ("play".into(), 10, "seat".into())]);

    for (key, extra, says) in [
        ("x1", vec!["--seating", "zone", "--zone", "A区:3", "--capacity", "4"], "应为 3"),
        ("x2", vec!["--seating", "seat", "--hall", "礼堂", "--capacity", "11"], "应为 10"),
        ("x3", vec!["--seating", "seat", "--hall", "没有的"], "没有名为 没有的 的场馆"),
        ("x4", vec!["--seating", "zone", "--zone", "A区:3", "--zone", "A区:2"], "写了两次"),
        ("x5", vec!["--seating", "zone", "--zone", "A区"], "区域名:票数"),
        ("x6", vec!["--capacity", "5", "--seat-deadline", "2030-01-01 10:00"], "--seat-deadline"),
    ] {
        let out = create(&app, key, &extra);
        assert!(!out.status.success(), "{key}");
        assert!(text(&out).contains(says), "{key}: {}", text(&out));
    }
    assert_eq!(app.count("SELECT count(*) FROM activities").await, 2, "a refused create stores nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_seat_is_taken_once_however_it_is_attacked() {
    let app = spawn_app().await;
    import_hall(&app, "礼堂", 3, 10);
    import_hall(&app, "别的厅", 1, 2);
    assert!(create(&app, "play", &["--seating", "seat", "--hall", "礼堂"]).status.success());
    let tickets = booked(&app, "play", 71, 21).await;

    // Twenty students post the same seat at the same instant: one gets it.
    let outcomes = futures::future::join_all(
        tickets[..20].iter().map(|(code, id)| choose(&app, code, id, Choice::Seat("A区-1-5"))),
    )
    .await;
    let placed = outcomes.iter().filter(|o| matches!(o, ChooseOutcome::Placed(_))).count();
    let taken = outcomes.iter().filter(|o| **o == ChooseOutcome::SeatTaken).count();
    assert_eq!((placed, taken), (1, 19), "{outcomes:?}");

    // One student posts two seats at once from two tabs: one place, the other tab told which.
    let (code, id) = &tickets[20];
    let (a, b) =
        tokio::join!(choose(&app, code, id, Choice::Seat("A区-2-1")), choose(&app, code, id, Choice::Seat("A区-2-2")));
    assert!(
        matches!(
            (&a, &b),
            (ChooseOutcome::Placed(_), ChooseOutcome::AlreadyPlaced(_))
                | (ChooseOutcome::AlreadyPlaced(_), ChooseOutcome::Placed(_))
        ),
        "{a:?} {b:?}"
    );
    assert_eq!(app.count("SELECT count(*) FROM tickets WHERE seat_id IS NOT NULL").await, 2);

    // Another student's code, a seat of another hall, no such seat, a blocked seat, a zone in seat mode.
    // Two students the race left without a seat (which ones lost is up to the race).
    let losers: Vec<usize> = (0..20).filter(|i| outcomes[*i] == ChooseOutcome::SeatTaken).collect();
    let (code, id) = &tickets[losers[0]];
    let (other_code, _) = &tickets[losers[1]];
    assert_eq!(choose(&app, other_code, id, Choice::Seat("A区-2-3")).await, ChooseOutcome::NoTicket);
    assert_eq!(
        choose(&app, code, id, Choice::Seat("B区-1-2")).await,
        ChooseOutcome::NoSuchPlace,
        "别的厅 has no B区 row 1"
    );
    assert_eq!(choose(&app, code, id, Choice::Seat("A区-9-9")).await, ChooseOutcome::NoSuchPlace);
    assert_eq!(choose(&app, code, id, Choice::Zone("A区")).await, ChooseOutcome::NoSuchPlace);
    sqlx::query("INSERT INTO seat_blocks (activity_id, seat_id) SELECT a.id, s.id FROM activities a, hall_seats s \
                 JOIN halls h ON h.id = s.hall_id WHERE a.key = 'play' AND h.name = '礼堂' AND s.zone = 'A区' AND s.row_label = '2' AND s.seat_label = '9'")
        .execute(&app.pool).await.unwrap();
    assert_eq!(choose(&app, code, id, Choice::Seat("A区-2-9")).await, ChooseOutcome::Blocked);

    // After the deadline nobody chooses.
    sqlx::query("UPDATE activities SET seat_deadline = now() - interval '1 minute' WHERE key = 'play'")
        .execute(&app.pool)
        .await
        .unwrap();
    assert!(matches!(choose(&app, code, id, Choice::Seat("A区-2-3")).await, ChooseOutcome::PastDeadline { .. }));
    assert_eq!(app.count("SELECT count(*) FROM tickets WHERE seat_id IS NOT NULL").await, 2, "nothing changed");
}

#[tokio::test]
async fn the_sweep_places_whoever_did_not_choose_once_and_tells_them() {
    let app = spawn_app().await;
    import_hall(&app, "礼堂", 3, 4);
    assert!(create(&app, "play", &["--seating", "seat", "--hall", "礼堂"]).status.success());
    assert!(create(&app, "gala", &["--seating", "zone", "--zone", "A区:2", "--zone", "B区:3"]).status.success());
    let play = booked(&app, "play", 72, 11).await;
    let gala = booked(&app, "gala", 73, 5).await;
    assert_eq!(
        choose(&app, &play[0].0, &play[0].1, Choice::Seat("A区-1-1")).await,
        ChooseOutcome::Placed(seats::Place {
            zone: "A区".into(),
            row_label: Some("1".into()),
            seat_label: Some("1".into())
        })
    );
    assert!(matches!(choose(&app, &gala[0].0, &gala[0].1, Choice::Zone("A区")).await, ChooseOutcome::Placed(_)));
    assert!(matches!(choose(&app, &gala[1].0, &gala[1].1, Choice::Zone("A区")).await, ChooseOutcome::Placed(_)));
    assert_eq!(choose(&app, &gala[2].0, &gala[2].1, Choice::Zone("A区")).await, ChooseOutcome::ZoneFull);
    // A cancel gives the zone its room back; booking again fills it.
    let reply = app.say(&wx::text("o73_0", "退票 gala")).await;
    assert!(format!("{reply:?}").contains("退"), "{reply:?}");
    assert!(matches!(choose(&app, &gala[2].0, &gala[2].1, Choice::Zone("A区")).await, ChooseOutcome::Placed(_)));

    // One seat blocked: the sweep never gives it.
    sqlx::query(
        "INSERT INTO seat_blocks (activity_id, seat_id) SELECT a.id, s.id FROM activities a, hall_seats s \
                 WHERE a.key = 'play' AND s.zone = 'A区' AND s.row_label = '1' AND s.seat_label = '2'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    // Nothing is due before the deadline.
    let sweep = || async {
        let mut tx = app.pool.begin().await.unwrap();
        let placed = seats::assign_due(&mut tx, &app.state.notifier).await.unwrap();
        tx.commit().await.unwrap();
        placed
    };
    assert_eq!(sweep().await, 0);
    sqlx::query("UPDATE activities SET book_end = now() - interval '1 second'").execute(&app.pool).await.unwrap();
    assert_eq!(sweep().await, 10 + 2, "the ten of play and the two of gala who had not chosen");
    assert_eq!(sweep().await, 0, "once");
    let seats_given: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT count(*), count(DISTINCT seat_id) FROM tickets t JOIN activities a ON a.id = t.activity_id WHERE a.key = 'play' AND t.status = 'valid'",
    ).fetch_all(&app.pool).await.unwrap();
    assert_eq!(seats_given, [(11, 11)]);
    assert_eq!(app.count("SELECT count(*) FROM tickets t JOIN activities a ON a.id = t.activity_id WHERE a.key = 'play' AND t.seat_id IS NULL AND t.status = 'valid'").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM tickets t JOIN seat_blocks b ON b.seat_id = t.seat_id AND b.activity_id = t.activity_id").await, 0, "a blocked seat is never given");
    let zones: Vec<(String, i32, i32, i64)> = sqlx::query_as(
        "SELECT z.zone, z.quota, z.taken, (SELECT count(*) FROM tickets t WHERE t.activity_id = z.activity_id AND t.zone = z.zone AND t.status = 'valid') \
         FROM activity_zones z ORDER BY z.zone",
    ).fetch_all(&app.pool).await.unwrap();
    for (zone, quota, taken, holders) in &zones {
        assert!(taken <= quota && i64::from(*taken) == *holders, "{zone}: {zones:?}");
    }
    assert_eq!(app.count("SELECT count(*) FROM tickets WHERE zone IS NULL AND status = 'valid'").await, 0);
    let notices = app.count("SELECT count(*) FROM notifications WHERE kind = 'place_assigned'").await;
    assert_eq!(notices, 12, "each placed student is told, once");
    let body: String =
        sqlx::query_scalar("SELECT body FROM notifications WHERE kind = 'place_assigned' ORDER BY id LIMIT 1")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(body.contains("【座位已分配】") && (body.contains("排") || body.contains("区")), "{body}");
}
