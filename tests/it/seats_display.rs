//! Seats, shown (issue 21, point 3 and 5): a zone or seat activity's ticket
//! says it has no place yet and how to choose one — in the booking reply,
//! `查票`, `选座`, the ticket page, 我的票 and `/m/tickets` — and, once it has
//! one, says which. Through signed WeChat XML and real HTTP, as a student
//! meets it. The chooser page is the lead's: its links are checked, not opened.

use time::OffsetDateTime;
use wechat_ticket::{
    booking::seats::{Choice, ChooseOutcome},
    links::{self, LinkError, Purpose},
};

use crate::{
    common::{
        TestApp,
        fixtures::{ticket_code, url_pairs},
        spawn_app, wx,
    },
    oauth_pages::{app_with_oauth, browser, signed_in},
    seats::{choose, create, import_hall, text},
};

/// A hall of two rows of three (row 2 is B区), a seat activity `play` in it,
/// a zone activity `gala`, and a standing-room one `talk`.
fn activities(app: &TestApp) {
    import_hall(app, "礼堂", 2, 3);
    for (key, extra) in [
        ("play", &["--seating", "seat", "--hall", "礼堂"][..]),
        ("gala", &["--seating", "zone", "--zone", "A区:2", "--zone", "B区:2"]),
        ("talk", &["--capacity", "5"]),
    ] {
        let out = create(app, key, extra);
        assert!(out.status.success(), "{key}: {}", text(&out));
    }
}

/// An `href` as the browser follows it (askama escapes `&` and `=` in attributes).
fn unescape(href: &str) -> String {
    href.replace("&#38;", "&").replace("&amp;", "&").replace("&#61;", "=").replace("&#43;", "+")
}

/// Every `href` on a page that contains `needle`.
fn hrefs_with(page: &str, needle: &str) -> Vec<String> {
    page.split("href=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(unescape)
        .filter(|h| h.contains(needle))
        .collect()
}

/// The path of an absolute URL this app made.
fn path_of(app: &TestApp, url: &str) -> String {
    url.strip_prefix(&app.base).unwrap_or(url).to_string()
}

fn news(reply: &wx::Reply) -> (String, String, String) {
    match reply {
        wx::Reply::News { title, description, url, .. } => (title.clone(), description.clone(), url.clone()),
        other => panic!("expected a news card, got {other:?}"),
    }
}

async fn page(app: &TestApp, path: &str) -> String {
    let resp = app.get(path).await;
    assert_eq!(resp.status(), 200, "{path}");
    resp.text().await.unwrap()
}

/// The (o, e, s) of a signed link's query.
fn signed_parts(url: &str) -> (String, String, String) {
    let pairs = url_pairs(url.split_once('?').expect("a signed link").1);
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
    (get("o"), get("e"), get("s"))
}

async fn student_id_of(app: &TestApp, code: &str) -> String {
    sqlx::query_scalar("SELECT student_id FROM tickets WHERE code = $1").bind(code).fetch_one(&app.pool).await.unwrap()
}

#[tokio::test]
async fn a_seat_ticket_says_how_to_choose_until_it_has_its_place_then_shows_it_everywhere() {
    let app = spawn_app().await;
    activities(&app);
    app.bind("oMe", "2024010001").await;
    app.bind("oOther", "2024010002").await;

    // The booking reply: booked, no place yet, how to choose and until when.
    let (title, description, ticket_url) = news(&app.say(&wx::text("oMe", "抢票 play")).await);
    assert!(title.contains("抢票成功"), "{title}");
    assert!(description.contains("还没有选座") && description.contains("「选座 play」"), "{description}");
    assert!(description.contains("逾期由系统随机分配"), "{description}");
    let code = ticket_code(&ticket_url);
    assert!(path_of(&app, &ticket_url).starts_with(&format!("/tickets/{code}?")), "the card opens the ticket");

    // 查票 says so per ticket.
    let list = app.say(&wx::text("oMe", "查票")).await;
    assert!(list.text().contains("未选座（发送「选座 play」）"), "{}", list.text());

    // 选座 play: the chooser, signed for this student's WeChat account and this ticket.
    let (title, description, chooser) = news(&app.say(&wx::text("oMe", "选座 play")).await);
    assert!(title.contains("选座") && description.contains("逾期由系统随机分配"), "{title} {description}");
    let path = path_of(&app, &chooser);
    assert!(path.starts_with(&format!("/tickets/{code}/seat?")), "{path}");
    let (o, e, s) = signed_parts(&path);
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let secret = &app.state.secret_key;
    assert_eq!(links::verify(secret, Purpose::Ticket, &code, (&o, &e, &s), now), Ok("oMe".to_string()));
    // Nobody else's link: another account's signature differs, and this one does not open as theirs.
    let expires: i64 = e.parse().unwrap();
    assert_ne!(links::sign(secret, Purpose::Ticket, "oOther", &code, expires), format!("o={o}&e={e}&s={s}"));
    let (other_o, _, _) = signed_parts(&format!("?{}", links::sign(secret, Purpose::Ticket, "oOther", &code, expires)));
    assert_eq!(links::verify(secret, Purpose::Ticket, &code, (&other_o, &e, &s), now), Err(LinkError::Tampered));
    assert!(links::verify(secret, Purpose::Cancel, &code, (&o, &e, &s), now).is_err(), "for the chooser only");

    // 选座 without a key: the one ticket waiting for its place.
    let (_, _, only) = news(&app.say(&wx::text("oMe", "选座")).await);
    assert!(path_of(&app, &only).starts_with(&format!("/tickets/{code}/seat?")), "{only}");

    // The holder's ticket page: the 选座 button (the page's own signed link, with /seat) and the deadline.
    let holder_page = page(&app, &path_of(&app, &ticket_url)).await;
    let buttons = hrefs_with(&holder_page, "/seat");
    assert_eq!(buttons.len(), 1, "{holder_page}");
    assert!(buttons[0].starts_with(&format!("/tickets/{code}/seat?")), "{buttons:?}");
    let (bo, be, bs) = signed_parts(&buttons[0]);
    assert_eq!(links::verify(secret, Purpose::Ticket, &code, (&bo, &be, &bs), now), Ok("oMe".to_string()));
    assert!(holder_page.contains("前选座，逾期由系统随机分配"), "{holder_page}");
    // Opened by its code alone: no chooser, the account's command instead.
    let by_code = page(&app, &format!("/tickets/{code}")).await;
    assert!(hrefs_with(&by_code, "/seat").is_empty(), "{by_code}");
    assert!(by_code.contains("发送「选座 play」"), "{by_code}");

    // 我的票 (from 查票's link): a 选座 link signed for this student.
    let all = list.links().into_iter().find(|l| l.contains("/my/tickets?")).expect("a my-tickets link");
    let mine = page(&app, &path_of(&app, &all)).await;
    let choosers = hrefs_with(&mine, "/seat");
    assert_eq!(choosers.len(), 1, "{mine}");
    assert!(choosers[0].starts_with(&format!("/tickets/{code}/seat?")), "{choosers:?}");
    let (mo, me, ms) = signed_parts(&choosers[0]);
    assert_eq!(links::verify(secret, Purpose::Ticket, &code, (&mo, &me, &ms), now), Ok("oMe".to_string()));

    // Placed (as the chooser will place it): every view shows the seat, none offers to choose.
    let student = student_id_of(&app, &code).await;
    assert!(matches!(choose(&app, &code, &student, Choice::Seat("A区-1-2")).await, ChooseOutcome::Placed(_)));
    let said = app.say(&wx::text("oMe", "选座 play")).await;
    assert!(said.text().starts_with("你的座位：A区 1排2座"), "{}", said.text());
    let list = app.say(&wx::text("oMe", "查票")).await;
    assert!(list.text().contains("· A区 1排2座") && !list.text().contains("未选座"), "{}", list.text());
    let (_, description, _) = news(&app.say(&wx::text("oMe", "取票 play")).await);
    assert!(description.contains("座位：A区 1排2座"), "{description}");
    assert_eq!(app.say(&wx::text("oMe", "选座")).await.text(), "你没有需要选座的票。发送「查票」查看你的票和座位。");
    for path in [path_of(&app, &ticket_url), format!("/tickets/{code}"), path_of(&app, &all)] {
        let shown = page(&app, &path).await;
        assert!(shown.contains("A区 1排2座"), "{path}: {shown}");
        assert!(hrefs_with(&shown, "/seat").is_empty() && !shown.contains("选座"), "{path}: {shown}");
    }
}

#[tokio::test]
async fn choosing_is_refused_with_a_reason_where_there_is_nothing_to_choose() {
    let app = spawn_app().await;
    activities(&app);
    app.bind("oMe", "2024010001").await;
    app.bind("oNone", "2024010003").await;

    // Not bound: bind first.
    let stranger = app.say(&wx::text("oStranger", "选座 play")).await;
    assert!(stranger.text().contains("还没有绑定学号"), "{}", stranger.text());
    // No ticket there, nothing at all.
    assert!(app.say(&wx::text("oNone", "选座 play")).await.text().contains("你没有「play」的票"));
    assert_eq!(app.say(&wx::text("oNone", "选座")).await.text(), "你没有需要选座的票。发送「查票」查看你的票和座位。");

    // Standing room: nothing to choose, and its ticket looks as it always did.
    let (_, description, talk_url) = news(&app.say(&wx::text("oMe", "抢票 talk")).await);
    assert!(!description.contains("选座") && !description.contains("座位"), "{description}");
    assert!(app.say(&wx::text("oMe", "选座 talk")).await.text().contains("这个活动不用选座"));
    let talk_page = page(&app, &path_of(&app, &talk_url)).await;
    assert!(!talk_page.contains("选座") && !talk_page.contains("座位"), "{talk_page}");
    assert!(!app.say(&wx::text("oMe", "查票")).await.text().contains("选座"));

    // Two tickets waiting for a place: 选座 alone says which keys.
    let (_, gala_description, gala_url) = news(&app.say(&wx::text("oMe", "抢票 gala")).await);
    assert!(gala_description.contains("「选座 gala」"), "{gala_description}");
    news(&app.say(&wx::text("oMe", "抢票 play")).await);
    let which = app.say(&wx::text("oMe", "选座")).await;
    assert!(which.text().contains("选座 play") && which.text().contains("选座 gala"), "{}", which.text());

    // A zone is a 区域.
    let gala = ticket_code(&gala_url);
    let student = student_id_of(&app, &gala).await;
    assert!(matches!(choose(&app, &gala, &student, Choice::Zone("B区")).await, ChooseOutcome::Placed(_)));
    assert!(app.say(&wx::text("oMe", "选座 gala")).await.text().starts_with("你的区域：B区"));
    let gala_page = page(&app, &path_of(&app, &gala_url)).await;
    assert!(gala_page.contains("区域") && gala_page.contains("B区") && !gala_page.contains("选座"), "{gala_page}");

    // After the deadline: the system assigns.
    sqlx::query("UPDATE activities SET seat_deadline = now() - interval '1 minute' WHERE key = 'play'")
        .execute(&app.pool)
        .await
        .unwrap();
    let late = app.say(&wx::text("oMe", "选座 play")).await;
    assert!(late.text().contains("截止") && late.text().contains("系统会为你随机分配"), "{}", late.text());
    let list = app.say(&wx::text("oMe", "查票")).await;
    assert!(list.text().contains("未选座，将由系统随机分配"), "{}", list.text());
    let (_, _, play_url) = news(&app.say(&wx::text("oMe", "取票 play")).await);
    let late_page = page(&app, &path_of(&app, &play_url)).await;
    assert!(late_page.contains("座位将由系统分配") && hrefs_with(&late_page, "/seat").is_empty(), "{late_page}");
}

#[tokio::test]
async fn m_tickets_offers_its_own_chooser_then_shows_the_seat() {
    let (app, fake) = app_with_oauth().await;
    activities(&app);
    app.bind("oMe", "2024010001").await;
    let (_, _, ticket_url) = news(&app.say(&wx::text("oMe", "抢票 play")).await);
    news(&app.say(&wx::text("oMe", "抢票 talk")).await);
    let code = ticket_code(&ticket_url);

    let client = browser();
    let shown = signed_in(&app, &fake, &client, "/m/tickets", "oMe").await;
    // One chooser, the session's own (no signature needed: the session proves the student).
    assert_eq!(hrefs_with(&shown, "/seat"), [format!("/m/tickets/{code}/seat")], "{shown}");
    assert!(shown.contains("未选座"), "{shown}");

    let student = student_id_of(&app, &code).await;
    assert!(matches!(choose(&app, &code, &student, Choice::Seat("A区-1-2")).await, ChooseOutcome::Placed(_)));
    let shown = client.get(app.url("/m/tickets")).send().await.unwrap().text().await.unwrap();
    assert!(shown.contains("A区 1排2座") && hrefs_with(&shown, "/seat").is_empty(), "{shown}");
}
