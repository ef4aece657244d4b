//! Guest tickets (嘉宾票, issue 22): issued by an organizer outside the
//! booking window from the activity's places, on the activity page and in the
//! shell; never oversold, one live ticket per student ID, even racing a rush
//! for the last place; a guest without a student ID by name on the ticket
//! page and in the export; revoking gives the place to the waiting list first.

use futures::future::join_all;
use wechat_ticket::{
    auth::{
        accounts::{self, Role},
        teams,
    },
    booking::{Activity, activities},
};

use crate::common::{
    Settings, TestApp,
    admin::{PASSWORD, csrf_in},
    fixtures::Window,
    spawn_app, spawn_app_with,
    wx::{self, Reply},
};

fn guests_path(a: &Activity) -> String {
    format!("/admin/activities/{}/guests", a.id)
}

/// Issues a guest ticket through the activity page's form as the logged-in admin.
async fn issue(app: &TestApp, csrf: &str, a: &Activity, fields: &[(&str, &str)]) -> (u16, String) {
    let mut form = vec![("csrf", csrf)];
    form.extend_from_slice(fields);
    app.admin_post(&guests_path(a), &form).await
}

async fn places_left(app: &TestApp, activity_id: i64) -> i64 {
    sqlx::query_scalar("SELECT coalesce(sum(remaining), 0)::bigint FROM activity_slots WHERE activity_id = $1")
        .bind(activity_id)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// The live guest tickets' codes of an activity, in the order issued.
async fn guest_codes(app: &TestApp, activity_id: i64) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT code FROM tickets WHERE activity_id = $1 AND guest_name IS NOT NULL AND status <> 'cancelled' \
         ORDER BY id",
    )
    .bind(activity_id)
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

async fn say(app: &TestApp, openid: &str, text: &str) -> String {
    match app.say(&wx::text(openid, text)).await {
        Reply::Text(text) => text,
        other => format!("{other:?}"),
    }
}

fn export_rows(bytes: &[u8]) -> (Vec<String>, Vec<csv::StringRecord>) {
    let mut reader = csv::Reader::from_reader(&bytes[3..]);
    let headers = reader.headers().unwrap().iter().map(str::to_string).collect();
    (headers, reader.records().map(Result::unwrap).collect())
}

#[tokio::test]
async fn an_admin_issues_guest_tickets_on_the_page_before_booking_opens_within_the_capacity() {
    let app = spawn_app().await;
    let csrf = app.login_admin("root").await;
    let a = app.activity("gala", 3, Window::NotYetOpen).await;

    let page = app.get(&format!("/admin/activities/{}", a.id)).await.text().await.unwrap();
    assert!(page.contains("id=\"guests\"") && page.contains("发嘉宾票"), "the card is on the activity page");

    // CSRF: a form without the session's token changes nothing.
    let (status, _) = app.admin_post(&guests_path(&a), &[("csrf", "forged"), ("name", "王老师")]).await;
    assert_eq!(status, 403);
    assert_eq!(app.live_tickets(a.id).await, 0);

    // A guest without a student ID, before booking opens.
    let (status, body) = issue(&app, &csrf, &a, &[("name", "王老师"), ("student_id", ""), ("note", "摄影")]).await;
    assert_eq!(status, 303, "{body}");
    assert_eq!((app.live_tickets(a.id).await, places_left(&app, a.id).await), (1, 2), "taken from the capacity");
    let code = guest_codes(&app, a.id).await.pop().unwrap();

    // A guest who is a student: bound, the ticket is in their 查票 like any ticket.
    app.bind("o_guest", "2020010001").await;
    let (status, body) = issue(&app, &csrf, &a, &[("name", "李同学"), ("student_id", "2020010001")]).await;
    assert_eq!(status, 303, "{body}");
    let mine = say(&app, "o_guest", "查票").await;
    assert!(mine.contains(&a.name), "the guest ticket is in 查票: {mine}");

    // The same student ID again: refused, naming the ticket they hold.
    let (status, body) = issue(&app, &csrf, &a, &[("name", "李同学"), ("student_id", "2020010001")]).await;
    assert_eq!(status, 409);
    assert!(body.contains("已经有本活动的票") && body.contains("2020010001"), "{body}");
    // A student ID that is not one.
    let (status, body) = issue(&app, &csrf, &a, &[("name", "某人"), ("student_id", "guest:abc")]).await;
    assert_eq!(status, 400);
    assert!(body.contains("格式不对"), "{body}");
    let (status, _) = issue(&app, &csrf, &a, &[("name", "  ")]).await;
    assert_eq!(status, 400, "a name is needed");

    // The last place, then sold out: a clear refusal, nothing oversold.
    assert_eq!(issue(&app, &csrf, &a, &[("name", "张导演")]).await.0, 303);
    let (status, body) = issue(&app, &csrf, &a, &[("name", "多出来的")]).await;
    assert_eq!(status, 409);
    assert!(body.contains("票已经发完了"), "{body}");
    assert!(body.contains("多出来的"), "the form keeps what was typed");
    assert_eq!((app.live_tickets(a.id).await, places_left(&app, a.id).await), (3, 0));

    // The page lists them with their ticket pages, and counts them.
    let page = app.get(&format!("/admin/activities/{}", a.id)).await.text().await.unwrap();
    assert!(page.contains(&format!("href=\"/tickets/{code}\"")), "the link to forward");
    assert!(page.contains("王老师") && page.contains("摄影") && page.contains("李同学"));
    assert!(page.contains("id=\"guest-count\">3<"), "three guest tickets counted");
    assert!(!page.contains("guest:"), "no synthetic student ID shown");

    // The ticket page of a guest without a student ID: their name, no `guest:…`, a QR to check in with.
    let ticket = app.get(&format!("/tickets/{code}")).await;
    assert_eq!(ticket.status(), 200);
    let ticket = ticket.text().await.unwrap();
    assert!(ticket.contains("王老师") && ticket.contains("<svg"), "{ticket}");
    assert!(!ticket.contains("guest:") && !ticket.contains("<dt>学号</dt>"), "{ticket}");

    // The export marks them 嘉宾, the guest without a student ID by name only.
    let bytes = app.get(&format!("/admin/activities/{}/export.csv", a.id)).await.bytes().await.unwrap();
    let (headers, rows) = export_rows(&bytes);
    assert_eq!(&headers[12..], ["类型", "备注"]);
    let row = rows.iter().find(|r| r[0] == *code).expect("the guest's row");
    assert_eq!((&row[1], &row[2], &row[12], &row[13]), ("", "王老师", "嘉宾", "摄影"));
    let student = rows.iter().find(|r| &r[1] == "2020010001").unwrap();
    assert_eq!((&student[2], &student[12]), ("李同学", "嘉宾"));
    assert!(!String::from_utf8_lossy(&bytes).contains("guest:"));

    // At the door the verdict names the guest, not a synthetic ID; the audit log too.
    let nonce = wechat_ticket::links::nonce();
    let checkin = format!("/admin/activities/{}/checkin", a.id);
    let (status, door) = app.admin_post(&checkin, &[("csrf", &csrf), ("code", &code), ("nonce", &nonce)]).await;
    assert_eq!(status, 200);
    assert!(door.contains("检票成功") && door.contains("嘉宾 王老师") && !door.contains("guest:"), "{door}");
    let logged = app.count("SELECT count(*) FROM audit_log WHERE action = '检票' AND detail LIKE '%王老师%'").await;
    assert_eq!(logged, 1);
    let audit =
        format!("SELECT count(*) FROM audit_log WHERE action = '嘉宾票' AND actor = 'root' AND activity_id = {}", a.id);
    assert_eq!(app.count(&audit).await, 3, "each issue audited, about its activity (its organizers see it)");
}

#[tokio::test]
async fn the_shell_issues_and_revokes_guest_tickets() {
    let app = spawn_app().await;
    let a = app.activity("recital", 1, Window::NotYetOpen).await;

    let out = app.cli(&["ticket", "issue", "recital", "--name", "赵摄影", "--note", "摄影"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let url = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(url.starts_with(&format!("{}/tickets/", app.base)), "{url}");
    let page = app.http.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("赵摄影") && !page.contains("guest:"), "{page}");
    assert_eq!(places_left(&app, a.id).await, 0);

    let out = app.cli(&["ticket", "issue", "recital", "--name", "再一位", "--student-id", "2020010002"]);
    assert!(!out.status.success(), "sold out");
    assert!(String::from_utf8_lossy(&out.stderr).contains("票已经发完了"));
    let out = app.cli(&["ticket", "issue", "nosuch", "--name", "某人"]);
    assert!(!out.status.success());

    let code = url.rsplit('/').next().unwrap();
    let out = app.cli(&["ticket", "revoke", code]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!((app.live_tickets(a.id).await, places_left(&app, a.id).await), (0, 1), "the place is free again");
    assert!(!app.cli(&["ticket", "revoke", code]).status.success(), "revoked already");
    let audit = format!(
        "SELECT count(*) FROM audit_log WHERE action = '嘉宾票' AND actor = 'shell' AND activity_id = {}",
        a.id
    );
    let audit = app.count(&audit).await;
    assert_eq!(audit, 2);

    // A student's own booking is not a guest ticket: the shell does not revoke it.
    app.bind("o_booker", "2020010003").await;
    sqlx::query("UPDATE activities SET book_start = now() - interval '1 minute' WHERE id = $1")
        .bind(a.id)
        .execute(&app.pool)
        .await
        .unwrap();
    assert!(matches!(app.say(&wx::text("o_booker", "抢票 recital")).await, Reply::News { .. }));
    let booked: String =
        sqlx::query_scalar("SELECT code FROM tickets WHERE openid = 'o_booker'").fetch_one(&app.pool).await.unwrap();
    assert!(!app.cli(&["ticket", "revoke", &booked]).status.success());
    assert_eq!(app.live_tickets(a.id).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn revoking_a_guest_ticket_gives_its_place_to_the_first_in_line() {
    let app = spawn_app().await;
    let csrf = app.login_admin("root").await;
    let a = app.activity("opera", 1, Window::Open).await;
    assert_eq!(issue(&app, &csrf, &a, &[("name", "嘉宾甲")]).await.0, 303);
    let line = app.bound_students(3, 2).await;
    assert!(say(&app, &line[0], "抢票 opera").await.contains("票已经抢完"));
    assert!(say(&app, &line[0], "候补 opera").await.contains("排第 1 位"));
    assert!(say(&app, &line[1], "候补 opera").await.contains("排第 2 位"));

    let code = guest_codes(&app, a.id).await.pop().unwrap();
    let revoke = format!("/admin/activities/{}/guests/{code}/revoke", a.id);
    assert_eq!(app.admin_post(&revoke, &[("csrf", "forged")]).await.0, 403);
    let (status, body) = app.admin_post(&revoke, &[("csrf", &csrf)]).await;
    assert_eq!(status, 303, "{body}");
    let first: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM tickets WHERE activity_id = $1 AND openid = $2 AND status <> 'cancelled'",
    )
    .bind(a.id)
    .bind(&line[0])
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(first, 1, "the first in line holds the freed place");
    assert_eq!((app.live_tickets(a.id).await, places_left(&app, a.id).await), (1, 0));
    assert!(say(&app, &line[1], "查票").await.contains("候补第 1 位"));
    // Revoked already: refused, nothing changes.
    assert_eq!(app.admin_post(&revoke, &[("csrf", &csrf)]).await.0, 409);
    let page = app.get(&format!("/admin/activities/{}", a.id)).await.text().await.unwrap();
    assert!(page.contains("id=\"guest-count\">0<") && page.contains("已退票"), "listed as revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_ticket_racing_the_rush_for_the_last_place_never_oversells() {
    let app = spawn_app().await;
    let csrf = app.login_admin("root").await;
    const CAPACITY: usize = 5;
    for round in 0..4u32 {
        let a = app.activity(&format!("race{round}"), CAPACITY as i32, Window::Open).await;
        let early = app.bound_students(10 + round, CAPACITY - 1).await;
        for openid in &early {
            assert!(matches!(app.say(&wx::click(openid, &format!("BOOK_{}", a.id))).await, Reply::News { .. }));
        }
        let rushers = app.bound_students(20 + round, 30).await;
        let bookings = rushers.iter().map(|openid| {
            let xml = wx::click(openid, &format!("BOOK_{}", a.id));
            let app = &app;
            async move { app.post_wechat(&xml).await }
        });
        let guest = issue(&app, &csrf, &a, &[("name", "抢最后一张的嘉宾")]);
        let (replies, (guest_status, guest_body)) = futures::join!(join_all(bookings), guest);
        let booked = replies
            .iter()
            .filter(|(s, body)| {
                *s == 200 && matches!(Reply::parse(body), Reply::News { title, .. } if title.contains("抢票成功"))
            })
            .count();
        assert!(replies.iter().all(|(s, _)| *s == 200), "round {round}");
        let guest_won = match guest_status {
            303 => true,
            409 => {
                assert!(guest_body.contains("票已经发完了"), "{guest_body}");
                false
            }
            other => panic!("round {round}: the guest issue answered {other}: {guest_body}"),
        };
        assert_eq!(booked + usize::from(guest_won), 1, "round {round}: exactly one got the last place");
        assert_eq!(app.live_tickets(a.id).await, CAPACITY as i64, "round {round}: never more than the capacity");
        assert_eq!(places_left(&app, a.id).await, 0);
        assert_eq!(guest_codes(&app, a.id).await.len(), usize::from(guest_won));
    }
}

#[tokio::test]
async fn an_organizer_of_another_team_cannot_issue_or_revoke_for_the_activity() {
    let app = spawn_app().await;
    let csrf = app.login_admin("root").await;
    let mut conn = app.pool.acquire().await.unwrap();
    let orchestra = teams::add(&mut conn, "交响乐团").await.unwrap().id;
    let drama = teams::add(&mut conn, "话剧社").await.unwrap().id;
    let a = app.activity("symphony", 5, Window::NotYetOpen).await;
    activities::set_team(&mut conn, a.id, orchestra).await.unwrap();
    accounts::add_with(&mut conn, "ophelia", PASSWORD, Some(Role::Organizer), &[drama]).await.unwrap();
    drop(conn);
    assert_eq!(issue(&app, &csrf, &a, &[("name", "指挥")]).await.0, 303);
    let code = guest_codes(&app, a.id).await.pop().unwrap();

    let http =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).cookie_store(true).build().unwrap();
    let login = http.post(app.url("/admin/login")).form(&[("username", "ophelia"), ("password", PASSWORD)]);
    assert_eq!(login.send().await.unwrap().status(), 303);
    let page = http.get(app.url("/admin")).send().await.unwrap().text().await.unwrap();
    let theirs = csrf_in(&page).unwrap();
    let resp = http.post(app.url(&guests_path(&a))).form(&[("csrf", theirs.as_str()), ("name", "混进来的")]);
    assert_eq!(resp.send().await.unwrap().status(), 404);
    let revoke = format!("/admin/activities/{}/guests/{code}/revoke", a.id);
    assert_eq!(http.post(app.url(&revoke)).form(&[("csrf", theirs.as_str())]).send().await.unwrap().status(), 404);
    assert_eq!(app.live_tickets(a.id).await, 1, "nothing issued, nothing revoked");

    // An organizer of the activity's own team issues one.
    let mut conn = app.pool.acquire().await.unwrap();
    accounts::add_with(&mut conn, "otto", PASSWORD, Some(Role::Organizer), &[orchestra]).await.unwrap();
    drop(conn);
    let http =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).cookie_store(true).build().unwrap();
    let login = http.post(app.url("/admin/login")).form(&[("username", "otto"), ("password", PASSWORD)]);
    assert_eq!(login.send().await.unwrap().status(), 303);
    let page = http.get(app.url("/admin")).send().await.unwrap().text().await.unwrap();
    let own = csrf_in(&page).unwrap();
    let resp = http.post(app.url(&guests_path(&a))).form(&[("csrf", own.as_str()), ("name", "首席")]);
    assert_eq!(resp.send().await.unwrap().status(), 303);
    let issued_by: String = sqlx::query_scalar("SELECT issued_by FROM tickets WHERE guest_name = '首席'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(issued_by, "otto");
}

#[tokio::test]
async fn an_unused_guest_ticket_is_no_no_show_of_the_student() {
    let app = spawn_app_with(Settings::default().set("NO_SHOW_LIMIT", "1")).await;
    let me = app.bound_students(5, 1).await.remove(0);
    let a = app.activity("past", 5, Window::NotYetOpen).await;
    let out = app.cli(&["ticket", "issue", "past", "--name", "学生嘉宾", "--student-id", "0000500000"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The activity ends with the guest ticket unused.
    sqlx::query(
        "UPDATE activities SET book_start = now() - interval '3 days', book_end = now() - interval '2 days', \
         start_at = now() - interval '2 hours', end_at = now() - interval '1 hour' WHERE id = $1",
    )
    .bind(a.id)
    .execute(&app.pool)
    .await
    .unwrap();
    app.activity("next", 5, Window::Open).await;
    assert!(matches!(app.say(&wx::text(&me, "抢票 next")).await, Reply::News { .. }), "not paused");
    // And an ended activity takes no more guests.
    let out = app.cli(&["ticket", "issue", "past", "--name", "迟到的嘉宾"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("已经结束"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn a_lottery_takes_guests_only_after_its_draw_and_a_draft_none() {
    let app = spawn_app().await;
    let create = |key: &str, extra: &[&str]| {
        let mut args = vec!["activity", "create", key, "--name", "讲座", "--place", "报告厅", "--capacity", "30"];
        args.extend(["--book-start", "2030-01-01 10:00", "--book-end", "2030-01-02 10:00"]);
        args.extend(["--start", "2030-01-03 10:00", "--end", "2030-01-03 12:00"]);
        args.extend_from_slice(extra);
        let out = app.cli(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    create("draw", &["--mode", "lottery", "--publish"]);
    create("draft", &[]);
    // The draw gives out the whole capacity: a guest before it would be a place sold twice.
    let out = app.cli(&["ticket", "issue", "draw", "--name", "嘉宾"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("抽签之后"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = app.cli(&["ticket", "issue", "draft", "--name", "嘉宾"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("草稿"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(app.count("SELECT count(*) FROM tickets").await, 0);
}

#[tokio::test]
async fn a_guest_without_a_student_id_gets_the_live_code_at_a_live_qr_activity() {
    let app = spawn_app().await;
    let a = app.activity("gala", 3, Window::Open).await;
    sqlx::query("UPDATE activities SET live_qr = true WHERE id = $1").bind(a.id).execute(&app.pool).await.unwrap();
    let out = app.cli(&["ticket", "issue", "gala", "--name", "李导演"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let url = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let page = app.http.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("李导演") && page.contains("data-live-qr"), "the forwarded link shows the live code: {page}");
    let refresh = app.http.get(format!("{url}/live-qr")).send().await.unwrap();
    assert_eq!(refresh.status(), 200);
    assert_eq!(refresh.headers()["content-type"], "image/svg+xml");

    // A student's ticket there opened by its code alone still shows no code (the rule is for guests only).
    app.bind("oStudent", "2020010009").await;
    say(&app, "oStudent", "抢票 gala").await;
    let code: String = sqlx::query_scalar("SELECT code FROM tickets WHERE student_id = '2020010009'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let bare = app.http.get(app.url(&format!("/tickets/{code}"))).send().await.unwrap().text().await.unwrap();
    assert!(!bare.contains("data-live-qr"), "{bare}");
    let refresh = app.http.get(app.url(&format!("/tickets/{code}/live-qr"))).send().await.unwrap();
    assert_eq!(refresh.status(), 403);
}
