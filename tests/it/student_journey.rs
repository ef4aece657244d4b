//! SPEC §2–§4 as a student lives them: only `/wechat` and the student pages.

use crate::common::{
    Settings,
    fixtures::{Window, hidden_fields, ticket_code},
    spawn_app, spawn_app_with,
    wx::{self, Reply},
};

fn news_url(reply: &Reply) -> String {
    match reply {
        Reply::News { url, .. } => url.clone(),
        other => panic!("expected a news reply, got {other:?}"),
    }
}

#[tokio::test]
async fn a_student_binds_books_checks_cancels_and_books_again() {
    let app = spawn_app().await;
    let concert = app.activity("concert", 100, Window::Open).await;
    app.activity("lecture", 100, Window::Open).await;
    app.activity("future", 10, Window::NotYetOpen).await;
    app.activity("past", 10, Window::Closed).await;
    let full = app.activity("full", 1, Window::Open).await;
    app.bind("oSomeoneElse", "2024999999").await;
    assert!(matches!(app.say(&wx::text("oSomeoneElse", "抢票 full")).await, Reply::News { .. }));

    let me = "oStudentA";
    // Subscribe: welcome and a bind link.
    let welcome = app.say(&wx::subscribe(me)).await;
    assert!(welcome.text().contains("欢迎"));

    // Booking before binding: refused, with the bind link.
    let refused = app.say(&wx::click(me, &format!("BOOK_{}", concert.id))).await;
    assert!(refused.text().contains("还没有绑定学号"), "{refused:?}");
    assert!(refused.links()[0].contains("/bind?"));
    let refused = app.say(&wx::text(me, "查票")).await;
    assert!(refused.text().contains("还没有绑定学号"), "{refused:?}");

    // Bind through the link, with a bad student ID first.
    let link = welcome.links()[0].clone();
    let (status, page) = app.submit_bind(&link, "12ab", "").await;
    assert_eq!(status, 400);
    assert!(page.contains("学号格式不正确") && page.contains("value=\"12ab\""), "keeps what was typed: {page}");
    assert_eq!(app.count("SELECT count(*) FROM students").await, 1, "nothing written");
    let (status, page) = app.submit_bind(&link, "2024010001", "小明").await;
    assert_eq!(status, 200);
    assert!(page.contains("绑定成功") && page.contains("2024010001"), "{page}");
    let again = app.say(&wx::text(me, "绑定")).await;
    assert!(again.text().contains("已绑定学号 2024010001"), "{again:?}");

    // What can be booked: the open and the upcoming, not the closed one.
    let list = app.say(&wx::text(me, "抢啥")).await;
    let text = list.text();
    assert!(text.contains("concert") && text.contains("lecture") && text.contains("future"), "{text}");
    assert!(!text.contains("past"), "{text}");
    assert!(list.links().iter().any(|l| l.ends_with(&format!("/activities/{}", concert.id))));

    // Book by menu click: a one-article news linking to the ticket.
    let booked = app.say(&wx::click(me, &format!("BOOK_{}", concert.id))).await;
    let Reply::News { title, url, .. } = &booked else { panic!("{booked:?}") };
    assert!(title.contains("抢票成功") && title.contains("活动 concert"), "{title}");
    assert!(url.starts_with(&app.url("/tickets/")), "{url}");
    let concert_ticket = url.clone();

    // The same activity again: already holds one, with its link.
    let twice = app.say(&wx::click(me, &format!("BOOK_{}", concert.id))).await;
    assert!(twice.text().contains("已经有这个活动的票"), "{twice:?}");
    let twice_codes: Vec<String> = twice.links().iter().map(|l| ticket_code(l)).collect();
    assert_eq!(twice_codes, vec![ticket_code(&concert_ticket)]);

    // Book by text for another activity, any case and spacing.
    let lecture_ticket = news_url(&app.say(&wx::text(me, "  BOOK   Lecture ")).await);
    assert_ne!(ticket_code(&lecture_ticket), ticket_code(&concert_ticket));

    // Every refusal of SPEC §2, each in words.
    let app = &app;
    let say = |t: &'static str| {
        let xml = wx::text(me, t);
        async move { app.say(&xml).await }
    };
    assert!(say("抢票 nosuch").await.text().contains("没有代号为「nosuch」的活动"));
    assert!(app.say(&wx::click(me, "BOOK_999999")).await.text().contains("不存在"));
    assert!(say("抢票 future").await.text().contains("还没开始抢票"));
    assert!(say("抢票 past").await.text().contains("抢票已经结束"));
    assert!(say("抢票 full").await.text().contains("票已经抢完"));
    assert!(say("抢票").await.text().contains("加上活动代号"));
    assert!(say("退票 lecture2").await.text().contains("没有代号为"));
    assert!(say("退票 future").await.text().contains("没有这个活动可以退的票"));
    assert!(say("抢票 a]]>b").await.text().contains("a]]>b"), "CDATA survives");

    // 查票 lists both, with links that open the ticket pages.
    let mine = app.say(&wx::click(me, "MY_TICKETS")).await;
    let links = mine.links();
    let codes: Vec<String> = links.iter().map(|l| ticket_code(l)).collect();
    assert!(codes.contains(&ticket_code(&concert_ticket)) && codes.contains(&ticket_code(&lecture_ticket)));
    let page = app.http.get(&concert_ticket).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains("<svg") && page.contains("活动 concert") && page.contains("2024010001"), "{page}");
    assert!(page.contains("退票"), "a cancel button while cancelling is allowed");

    // The "my tickets" page from the signed link.
    let all = links.iter().find(|l| l.contains("/my/tickets?")).expect("a my-tickets link");
    let page = app.http.get(all).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("活动 concert") && page.contains("活动 lecture"), "{page}");

    // 取票 <key>: the one ticket as an article.
    assert_eq!(ticket_code(&news_url(&say("取票 lecture").await)), ticket_code(&lecture_ticket));

    // Cancel gives the place back at once; a second cancel has nothing to cancel.
    let before = app.live_tickets(concert.id).await;
    assert!(say("退票 concert").await.text().contains("已退掉"));
    assert_eq!(app.live_tickets(concert.id).await, before - 1);
    assert!(say("退票 concert").await.text().contains("没有这个活动可以退的票"));
    let page = app.http.get(&concert_ticket).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("已退票") && !page.contains("<svg"), "a cancelled ticket shows no QR code");

    // …and booking again works, with a new ticket.
    let rebooked = news_url(&say("抢票 concert").await);
    assert_ne!(ticket_code(&rebooked), ticket_code(&concert_ticket));

    // Cancel from the ticket page's button, on the page the student's link opened.
    let code = ticket_code(&lecture_ticket);
    let page = app.http.get(&lecture_ticket).send().await.unwrap().text().await.unwrap();
    let action = format!("/tickets/{code}/cancel");
    let form = hidden_fields(&page, &action);
    assert_eq!(form.len(), 3, "the cancel form carries its token: {page}");
    let resp = app.http.post(app.url(&action)).form(&form).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    let back = resp.headers()["location"].to_str().unwrap().to_string();
    let page = app.get(&back).await.text().await.unwrap();
    assert!(page.contains("已退票") && page.contains("已退票，名额已经释放"), "{page}");

    // Too late to cancel: checked in, or the activity has started.
    let rebooked_code = ticket_code(&rebooked);
    let rebooked_code = rebooked_code.as_str();
    sqlx::query("UPDATE tickets SET status = 'used', checked_in_at = now() WHERE code = $1")
        .bind(rebooked_code)
        .execute(&app.pool)
        .await
        .unwrap();
    assert!(say("退票 concert").await.text().contains("已经检票入场"));
    let started = app.activity("started", 10, Window::Open).await;
    assert!(matches!(say("抢票 started").await, Reply::News { .. }));
    sqlx::query(
        "UPDATE activities SET book_start = now() - interval '3 hours', book_end = now() - interval '2 hours', \
         start_at = now() - interval '1 hour' WHERE id = $1",
    )
    .bind(started.id)
    .execute(&app.pool)
    .await
    .unwrap();
    assert!(say("退票 started").await.text().contains("活动已经开始"));

    // Unbind: tickets stay with the student ID; 查票 now asks to bind.
    assert!(say("解绑").await.text().contains("已解除学号 2024010001"));
    assert!(say("解绑").await.text().contains("还没有绑定"));
    assert!(say("查票").await.text().contains("还没有绑定学号"));
    assert_eq!(app.live_tickets(concert.id).await, before);

    // Full activity still full; nothing oversold anywhere.
    assert_eq!(app.live_tickets(full.id).await, 1);
}

#[tokio::test]
async fn unknown_or_malformed_ticket_codes_get_a_404_page() {
    let app = spawn_app().await;
    for path in [
        "/tickets/nope",
        "/tickets/AAAAAAAAAAAAAAAAAAAAAA",
        "/tickets/%3Cscript%3E",
        "/activities/abc",
        "/activities/999",
    ] {
        let resp = app.get(path).await;
        assert_eq!(resp.status(), 404, "{path}");
        let page = resp.text().await.unwrap();
        assert!(page.contains("找不到"), "{page}");
        assert!(!page.contains("<script>"));
    }
    let resp = app.http.post(app.url("/tickets/AAAAAAAAAAAAAAAAAAAAAA/cancel")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn the_activity_page_shows_times_place_and_tickets_left() {
    let app = spawn_app().await;
    let a = app.activity("gala", 30, Window::Open).await;
    let page = app.get(&format!("/activities/{}", a.id)).await.text().await.unwrap();
    assert!(page.contains("活动 gala") && page.contains("新清华学堂") && page.contains("剩余 30 张"), "{page}");
    assert!(page.contains("抢票 gala"), "how to book");
}

#[tokio::test]
async fn tampered_and_expired_bind_links_are_refused_and_write_nothing() {
    let app = spawn_app().await;
    let link = app.say(&wx::text("oTamper", "绑定")).await.links()[0].clone();

    // Another user's openid in a genuinely signed link's place.
    let other =
        wechat_ticket::links::sign(b"not-the-key", wechat_ticket::links::Purpose::Bind, "oTamper", "", 4_000_000_000);
    let forged = format!("{}?{other}", app.url("/bind"));
    let changed_expiry = link.replace("&e=", "&e=9");
    for bad in [forged, changed_expiry] {
        let page = app.http.get(&bad).send().await.unwrap();
        assert_eq!(page.status(), 403, "{bad}");
        assert!(page.text().await.unwrap().contains("链接无效"));
        let (status, page) = app.submit_bind(&bad, "2024010001", "").await;
        assert_eq!(status, 403);
        assert!(page.contains("链接无效"));
    }

    let expired =
        wechat_ticket::links::sign(&app.state.secret_key, wechat_ticket::links::Purpose::Bind, "oTamper", "", 1000);
    let expired = format!("{}?{expired}", app.url("/bind"));
    let page = app.http.get(&expired).send().await.unwrap();
    assert_eq!(page.status(), 410);
    assert!(page.text().await.unwrap().contains("链接已过期"));
    let (status, _) = app.submit_bind(&expired, "2024010001", "").await;
    assert_eq!(status, 410);

    assert_eq!(app.count("SELECT count(*) FROM students").await, 0);
}

#[tokio::test]
async fn a_student_id_bound_to_someone_else_is_refused() {
    let app = spawn_app().await;
    app.bind("oFirst", "2024010001").await;
    let link = app.say(&wx::text("oSecond", "绑定")).await.links()[0].clone();
    let (status, page) = app.submit_bind(&link, "2024010001", "").await;
    assert_eq!(status, 409);
    assert!(page.contains("已被另一个微信账号绑定"), "{page}");
    assert_eq!(app.count("SELECT count(*) FROM students WHERE openid = 'oSecond'").await, 0);
    // After the first unbinds, the ID is free again.
    app.say(&wx::text("oFirst", "解绑")).await;
    let (status, _) = app.submit_bind(&link, "2024010001", "").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn roster_mode_needs_the_listed_id_and_matching_name() {
    let app = spawn_app_with(Settings::default().set("STUDENT_VERIFY", "roster")).await;
    let rows = wechat_ticket::roster::parse("学号,姓名\n2024010001,张三\n".as_bytes()).unwrap();
    wechat_ticket::booking::students::import_roster(&mut app.pool.acquire().await.unwrap(), &rows).await.unwrap();
    let link = app.say(&wx::text("oRoster", "绑定")).await.links()[0].clone();
    let page = app.http.get(&link).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("name=\"name\"") && page.contains("required"), "roster mode asks for the name");

    let (status, page) = app.submit_bind(&link, "2024010002", "李四").await;
    assert_eq!(status, 400);
    assert!(page.contains("名单里没有这个学号"));
    let (status, page) = app.submit_bind(&link, "2024010001", "李四").await;
    assert_eq!(status, 400);
    assert!(page.contains("学号和姓名不匹配"));
    assert_eq!(app.count("SELECT count(*) FROM students").await, 0);
    let (status, page) = app.submit_bind(&link, "2024010001", "张三").await;
    assert_eq!(status, 200, "{page}");
}
