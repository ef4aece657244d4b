//! The seat chooser over HTTP (issue 21, point 3 and the attacks of point 6):
//! opened only by the ticket's holder (the signed ticket link or `/m/`), no
//! JavaScript, a seat given once however the posts race, and every refused
//! post changing nothing.

use reqwest::StatusCode;
use wechat_ticket::{
    booking::seats::Choice,
    links::{self, Purpose},
};

use crate::common::{TestApp, fixtures::hidden_fields, spawn_app};
use crate::seats::{booked, create, import_hall};

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// The openid bound to a student ID.
async fn openid_of(app: &TestApp, student_id: &str) -> String {
    sqlx::query_scalar("SELECT openid FROM students WHERE student_id = $1")
        .bind(student_id)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// The chooser link the account sends the holder: the ticket link with `/seat`.
fn chooser_link(app: &TestApp, openid: &str, code: &str) -> String {
    let expires = time::OffsetDateTime::now_utc().unix_timestamp() + 3600;
    let query = links::sign(&app.state.secret_key, Purpose::Ticket, openid, code, expires);
    app.url(&format!("/tickets/{code}/seat?{query}"))
}

/// The chooser page a student opens from their link, and its form's hidden fields.
async fn open_chooser(app: &TestApp, openid: &str, code: &str) -> (String, Vec<(String, String)>) {
    let page = app.http.get(chooser_link(app, openid, code)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    let fields = hidden_fields(&page, &format!("/tickets/{code}/seat"));
    (page, fields)
}

/// Posts the chooser form (its hidden fields plus `extra`); returns status, Location and body.
async fn post_choice(
    app: &TestApp,
    code: &str,
    fields: &[(String, String)],
    extra: (&str, &str),
) -> (StatusCode, String, String) {
    let mut form = fields.to_vec();
    form.push((extra.0.to_string(), extra.1.to_string()));
    let resp = no_redirects().post(app.url(&format!("/tickets/{code}/seat"))).form(&form).send().await.unwrap();
    let status = resp.status();
    let location = resp.headers().get("location").map(|l| l.to_str().unwrap().to_string()).unwrap_or_default();
    (status, location, resp.text().await.unwrap())
}

/// The seat a ticket holds, as `zone-row-seat`.
async fn seat_of(app: &TestApp, code: &str) -> Option<String> {
    sqlx::query_scalar(
        "SELECT s.zone || '-' || s.row_label || '-' || s.seat_label FROM tickets t \
         JOIN hall_seats s ON s.id = t.seat_id WHERE t.code = $1",
    )
    .bind(code)
    .fetch_optional(&app.pool)
    .await
    .unwrap()
}

async fn placed_count(app: &TestApp) -> i64 {
    app.count("SELECT count(*) FROM tickets WHERE zone IS NOT NULL").await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_student_picks_a_seat_on_the_map_and_the_next_student_finds_it_taken() {
    let app = spawn_app().await;
    import_hall(&app, "小剧场", 3, 4);
    assert!(create(&app, "play", &["--seating", "seat", "--hall", "小剧场"]).status.success());
    let tickets = booked(&app, "play", 81, 2).await;
    let (code1, id1) = &tickets[0];
    let (code2, id2) = &tickets[1];
    let (me, other) = (openid_of(&app, id1).await, openid_of(&app, id2).await);

    // Both open their choosers: every seat is a radio button, nothing chosen yet.
    let (page1, fields1) = open_chooser(&app, &me, code1).await;
    assert_eq!(page1.matches("type=\"radio\" name=\"seat\"").count(), 12, "{page1}");
    assert!(page1.contains("value=\"A区-1-2\""));
    assert!(!page1.contains("<script"), "the chooser works without JavaScript");
    let (_, fields2) = open_chooser(&app, &other, code2).await;

    let (status, location, _) = post_choice(&app, code1, &fields1, ("seat", "A区-1-2")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let done = app.http.get(app.url(&location)).send().await.unwrap().text().await.unwrap();
    assert!(done.contains("选座成功") && done.contains("A区 1排2座"), "{done}");
    assert_eq!(seat_of(&app, code1).await.as_deref(), Some("A区-1-2"));

    // The other student posts the same seat from the page they opened before: told, map redrawn without it.
    let (status, _, body) = post_choice(&app, code2, &fields2, ("seat", "A区-1-2")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body.contains("这个座位刚被选走"), "{body}");
    assert_eq!(body.matches("type=\"radio\" name=\"seat\"").count(), 11, "the redrawn map offers the 11 left");
    assert!(!body.contains("value=\"A区-1-2\""));
    assert_eq!(seat_of(&app, code2).await, None);

    // Once placed, a second choice changes nothing.
    let (status, _, body) = post_choice(&app, code1, &fields1, ("seat", "A区-2-1")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body.contains("已经有座位了：A区 1排2座"), "{body}");
    assert_eq!(seat_of(&app, code1).await.as_deref(), Some("A区-1-2"));
}

#[tokio::test]
async fn the_code_the_qr_or_another_students_link_cannot_choose() {
    let app = spawn_app().await;
    import_hall(&app, "小剧场", 2, 3);
    assert!(create(&app, "play", &["--seating", "seat", "--hall", "小剧场"]).status.success());
    let tickets = booked(&app, "play", 82, 2).await;
    let (victim_code, victim_id) = &tickets[0];
    let (my_code, my_id) = &tickets[1];
    let (victim, me) = (openid_of(&app, victim_id).await, openid_of(&app, my_id).await);

    // The ticket code alone (read off a shared screenshot) opens no chooser.
    let bare = app.http.get(app.url(&format!("/tickets/{victim_code}/seat"))).send().await.unwrap();
    assert_eq!(bare.status(), StatusCode::FORBIDDEN);
    // My own link's signature does not open another ticket's chooser.
    let mine = chooser_link(&app, &me, my_code);
    let swapped = mine.replace(&format!("/tickets/{my_code}/"), &format!("/tickets/{victim_code}/"));
    assert_eq!(app.http.get(swapped).send().await.unwrap().status(), StatusCode::FORBIDDEN);
    // A genuine link for the victim's code but made for my openid: not my ticket.
    let page = app.http.get(chooser_link(&app, &me, victim_code)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::FORBIDDEN);
    assert!(page.text().await.unwrap().contains("这张票不是你的"));

    // My form's token posted against the victim's ticket: refused.
    let (_, my_fields) = open_chooser(&app, &me, my_code).await;
    let (status, _, _) = post_choice(&app, victim_code, &my_fields, ("seat", "A区-1-1")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // No token at all (a cross-site form): refused.
    let (status, _, _) = post_choice(&app, victim_code, &[], ("seat", "A区-1-1")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(placed_count(&app).await, 0, "nothing was placed");

    // After the victim rebinds their WeChat to someone else, their old link chooses nothing.
    let (_, victim_fields) = open_chooser(&app, &victim, victim_code).await;
    sqlx::query("UPDATE students SET student_id = '9999999999' WHERE openid = $1")
        .bind(&victim)
        .execute(&app.pool)
        .await
        .unwrap();
    let (status, _, _) = post_choice(&app, victim_code, &victim_fields, ("seat", "A区-1-1")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(placed_count(&app).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn posts_racing_for_one_seat_or_from_two_tabs_place_once() {
    let app = spawn_app().await;
    import_hall(&app, "礼堂", 4, 10);
    assert!(create(&app, "gala", &["--seating", "seat", "--hall", "礼堂"]).status.success());
    let tickets = booked(&app, "gala", 83, 17).await;
    let mut forms = Vec::new();
    for (code, id) in &tickets {
        let (_, fields) = open_chooser(&app, &openid_of(&app, id).await, code).await;
        forms.push((code.clone(), fields));
    }

    // Sixteen students post the same seat at the same instant, over their own connections.
    let race = futures::future::join_all(
        forms[..16].iter().map(|(code, fields)| post_choice(&app, code, fields, ("seat", "A区-1-5"))),
    )
    .await;
    let won = race.iter().filter(|(s, _, _)| *s == StatusCode::SEE_OTHER).count();
    let told = race.iter().filter(|(s, _, b)| *s == StatusCode::CONFLICT && b.contains("这个座位刚被选走")).count();
    assert_eq!((won, told), (1, 15));
    assert_eq!(app.count("SELECT count(*) FROM tickets WHERE seat_id IS NOT NULL").await, 1);

    // One student posts eight different seats at once from eight tabs: one seat, the others told.
    let (code, fields) = &forms[16];
    let seats: Vec<String> = (1..=8).map(|n| format!("A区-2-{n}")).collect();
    let tabs =
        futures::future::join_all(seats.iter().map(|seat| post_choice(&app, code, fields, ("seat", seat)))).await;
    assert_eq!(tabs.iter().filter(|(s, _, _)| *s == StatusCode::SEE_OTHER).count(), 1);
    assert!(
        tabs.iter()
            .filter(|(s, _, _)| *s != StatusCode::SEE_OTHER)
            .all(|(s, _, b)| *s == StatusCode::CONFLICT && b.contains("已经有座位了"))
    );
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM tickets WHERE code = $1 AND seat_id IS NOT NULL")
        .bind(code)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(held, 1);
    assert_eq!(
        app.count("SELECT count(*) FROM tickets t JOIN hall_seats s ON s.id = t.seat_id WHERE s.row_label = '2'").await,
        1,
        "the other seven seats are still free"
    );
}

#[tokio::test]
async fn blocked_seats_other_halls_and_a_passed_deadline_are_refused() {
    let app = spawn_app().await;
    import_hall(&app, "小剧场", 2, 3);
    import_hall(&app, "大礼堂", 3, 3);
    assert!(create(&app, "play", &["--seating", "seat", "--hall", "小剧场"]).status.success());
    let tickets = booked(&app, "play", 84, 1).await;
    let (code, id) = &tickets[0];
    let me = openid_of(&app, id).await;
    sqlx::query(
        "INSERT INTO seat_blocks (activity_id, seat_id) SELECT a.id, s.id FROM activities a \
         JOIN hall_seats s ON s.hall_id = a.hall_id WHERE a.key = 'play' AND s.row_label = '1' AND s.seat_label = '1'",
    )
    .execute(&app.pool)
    .await
    .unwrap();

    let (page, fields) = open_chooser(&app, &me, code).await;
    assert!(!page.contains("value=\"A区-1-1\""), "a blocked seat is not offered");
    assert!(page.contains("seat blocked"), "it is drawn as held back");
    let (status, _, body) = post_choice(&app, code, &fields, ("seat", "A区-1-1")).await;
    assert_eq!((status, body.contains("不对外开放")), (StatusCode::CONFLICT, true));
    // 大礼堂's back row is B区 row 3; 小剧场 has no row 3.
    let (status, _, body) = post_choice(&app, code, &fields, ("seat", "B区-3-1")).await;
    assert_eq!((status, body.contains("没有这个座位")), (StatusCode::BAD_REQUEST, true));
    let (status, _, body) = post_choice(&app, code, &fields, ("zone", "A区")).await;
    assert_eq!((status, body.contains("没有这个座位")), (StatusCode::BAD_REQUEST, true));
    let (status, _, body) = post_choice(&app, code, &fields, ("seat", "")).await;
    assert_eq!((status, body.contains("请先在图上选一个座位")), (StatusCode::BAD_REQUEST, true));

    sqlx::query("UPDATE activities SET seat_deadline = now() - interval '1 minute' WHERE key = 'play'")
        .execute(&app.pool)
        .await
        .unwrap();
    let (status, _, body) = post_choice(&app, code, &fields, ("seat", "A区-1-2")).await;
    assert_eq!((status, body.contains("选座已经截止")), (StatusCode::CONFLICT, true));
    let (page, _) = open_chooser(&app, &me, code).await;
    assert!(page.contains("选座已经截止") && !page.contains("type=\"radio\""), "{page}");
    assert_eq!(placed_count(&app).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn zones_are_chosen_within_their_quota() {
    let app = spawn_app().await;
    let out = create(&app, "gala", &["--seating", "zone", "--zone", "内场:1", "--zone", "看台:3"]);
    assert!(out.status.success());
    let tickets = booked(&app, "gala", 85, 4).await;
    let mut forms = Vec::new();
    for (code, id) in &tickets {
        let (page, fields) = open_chooser(&app, &openid_of(&app, id).await, code).await;
        assert!(page.contains("内场") && page.contains("剩余 1") && page.contains("剩余 3"), "{page}");
        forms.push((code.clone(), fields));
    }
    // Three students want the one place of 内场 at once.
    let race = futures::future::join_all(
        forms[..3].iter().map(|(code, fields)| post_choice(&app, code, fields, ("zone", "内场"))),
    )
    .await;
    assert_eq!(race.iter().filter(|(s, _, _)| *s == StatusCode::SEE_OTHER).count(), 1);
    assert!(race.iter().filter(|(s, _, _)| *s != StatusCode::SEE_OTHER).all(|(_, _, b)| b.contains("刚刚满了")));
    let taken: Vec<(String, i32)> =
        sqlx::query_as("SELECT zone, taken FROM activity_zones ORDER BY position").fetch_all(&app.pool).await.unwrap();
    assert_eq!(taken, [("内场".to_string(), 1), ("看台".to_string(), 0)]);
    // The full zone is shown full and cannot be picked.
    let (code, id) = &tickets[3];
    let (page, _) = open_chooser(&app, &openid_of(&app, id).await, code).await;
    assert!(page.contains("value=\"内场\" disabled") && page.contains("已满"), "{page}");
    let (status, location, _) = post_choice(&app, code, &forms[3].1, ("zone", "看台")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let done = app.http.get(app.url(&location)).send().await.unwrap().text().await.unwrap();
    assert!(done.contains("看台"), "{done}");
}

#[tokio::test]
async fn a_standing_room_ticket_has_nothing_to_choose() {
    let app = spawn_app().await;
    assert!(create(&app, "talk", &["--capacity", "5"]).status.success());
    let tickets = booked(&app, "talk", 86, 1).await;
    let (code, id) = &tickets[0];
    let page = app.http.get(chooser_link(&app, &openid_of(&app, id).await, code)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("不设座位"));
}

#[tokio::test]
async fn under_m_the_session_and_its_csrf_token_choose() {
    let (app, fake) = crate::oauth_pages::app_with_oauth().await;
    import_hall(&app, "小剧场", 2, 3);
    assert!(create(&app, "play", &["--seating", "seat", "--hall", "小剧场"]).status.success());
    app.bind("oMe", "2024010001").await;
    app.bind("oYou", "2024010002").await;
    for openid in ["oMe", "oYou"] {
        app.say(&crate::common::wx::text(openid, "抢票 play")).await;
    }
    let code_of = |student: &'static str| {
        let pool = app.pool.clone();
        async move {
            sqlx::query_scalar::<_, String>("SELECT code FROM tickets WHERE student_id = $1")
                .bind(student)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let (mine, yours) = (code_of("2024010001").await, code_of("2024010002").await);
    let client = crate::oauth_pages::browser();
    crate::oauth_pages::signed_in(&app, &fake, &client, "/m/tickets", "oMe").await;

    // Someone else's ticket under my session: not mine.
    let other = client.get(app.url(&format!("/m/tickets/{yours}/seat"))).send().await.unwrap();
    assert_eq!(other.status(), StatusCode::FORBIDDEN);
    let page = client.get(app.url(&format!("/m/tickets/{mine}/seat"))).send().await.unwrap().text().await.unwrap();
    let mut form = hidden_fields(&page, &format!("/m/tickets/{mine}/seat"));
    assert_eq!(form.len(), 1, "the session's CSRF field: {page}");
    // Without the CSRF field: refused.
    let refused =
        client.post(app.url(&format!("/m/tickets/{mine}/seat"))).form(&[("seat", "A区-1-3")]).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    // My CSRF field against your ticket: not mine.
    let mut theirs = form.clone();
    theirs.push(("seat".into(), "A区-1-1".into()));
    let refused = client.post(app.url(&format!("/m/tickets/{yours}/seat"))).form(&theirs).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(placed_count(&app).await, 0);

    form.push(("seat".into(), "A区-1-3".into()));
    let chosen = client.post(app.url(&format!("/m/tickets/{mine}/seat"))).form(&form).send().await.unwrap();
    assert_eq!(chosen.status(), StatusCode::SEE_OTHER);
    assert_eq!(seat_of(&app, &mine).await.as_deref(), Some("A区-1-3"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_organiser_blocking_a_seat_while_students_choose_it_never_leaves_a_ticket_on_it() {
    let app = spawn_app().await;
    import_hall(&app, "礼堂", 3, 20);
    assert!(create(&app, "gala", &["--seating", "seat", "--hall", "礼堂"]).status.success());
    let activity_id: i64 =
        sqlx::query_scalar("SELECT id FROM activities WHERE key = 'gala'").fetch_one(&app.pool).await.unwrap();
    let tickets = booked(&app, "gala", 87, 40).await;
    let mut blocked: Vec<String> = Vec::new();
    let (mut refused, mut held_back) = (0, 0);
    // Round after round, two students choose a seat at the instant the organiser blocks it.
    for round in 0..20 {
        let seat = format!("A区-{}-{}", round / 10 + 1, round % 10 + 1);
        let mut wanted = blocked.clone();
        wanted.push(seat.clone());
        let block = async {
            let mut tx = app.pool.begin().await.unwrap();
            match wechat_ticket::booking::seats::admin::set_blocks(&mut tx, &app.state.notifier, activity_id, &wanted)
                .await
            {
                Ok(_) => {
                    tx.commit().await.unwrap();
                    true
                }
                Err(_) => false,
            }
        };
        let students = &tickets[round * 2..round * 2 + 2];
        let (was_blocked, _, _) = tokio::join!(
            block,
            crate::seats::choose(&app, &students[0].0, &students[0].1, Choice::Seat(&seat)),
            crate::seats::choose(&app, &students[1].0, &students[1].1, Choice::Seat(&seat)),
        );
        if was_blocked {
            blocked.push(seat);
            held_back += 1;
        } else {
            refused += 1;
        }
    }
    assert_eq!(
        app.count(
            "SELECT count(*) FROM tickets t JOIN seat_blocks b ON b.activity_id = t.activity_id \
             AND b.seat_id = t.seat_id WHERE t.status <> 'cancelled'"
        )
        .await,
        0,
        "no live ticket sits on a blocked seat ({held_back} blocked, {refused} refused as taken)"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM seat_blocks").await
            + app.count("SELECT count(*) FROM tickets WHERE seat_id IS NOT NULL").await,
        20,
        "each contested seat ended either blocked or held by one student"
    );
}

#[tokio::test]
async fn a_large_hall_is_chosen_zone_by_zone_and_a_redraw_stays_in_the_zone() {
    let app = spawn_app().await;
    // Ten rows of forty in A区, one of forty in B区: 440 seats, more than a phone shows at once.
    import_hall(&app, "体育馆", 11, 40);
    assert!(create(&app, "gala", &["--seating", "seat", "--hall", "体育馆"]).status.success());
    let tickets = booked(&app, "gala", 88, 2).await;
    let (code, id) = &tickets[0];
    let me = openid_of(&app, id).await;

    let (page, fields) = open_chooser(&app, &me, code).await;
    assert!(page.contains("class=\"zone-tabs\""), "{page}");
    assert_eq!(page.matches("type=\"radio\" name=\"seat\"").count(), 400, "A区 first, drawn alone");
    let b_tab = page
        .split("href=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().replace("&#38;", "&").replace("&amp;", "&"))
        .find(|href| href.ends_with("zone=B%E5%8C%BA"))
        .expect("a tab for B区");
    let b = app.http.get(app.url(&b_tab)).send().await.unwrap().text().await.unwrap();
    assert_eq!(b.matches("type=\"radio\" name=\"seat\"").count(), 40, "B区's row");
    assert!(b.contains("value=\"B区-11-5\""));

    // Someone takes B区 11排5座 first: the redraw shows B区 again, without it.
    crate::seats::choose(&app, &tickets[1].0, &tickets[1].1, Choice::Seat("B区-11-5")).await;
    let (status, _, body) = post_choice(&app, code, &fields, ("seat", "B区-11-5")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body.contains("这个座位刚被选走"));
    assert_eq!(body.matches("type=\"radio\" name=\"seat\"").count(), 39, "B区 redrawn, less the taken seat");
    assert!(body.contains("class=\"current\" aria-current=\"page\">B区"), "{body}");
}
