//! `WECHAT_OAUTH=on`: the `/m` pages know the student through WeChat web
//! authorization (issue 15, points 2 and 4), against the fake WeChat server.

use crate::common::{
    APPID, Settings, TestApp,
    fake_wechat::{FakeWechat, OAUTH_TOKEN_PATH},
    fixtures::{Window, hidden_fields, ticket_code},
    spawn_app_with, wx,
};

pub(crate) async fn app_with_oauth() -> (TestApp, FakeWechat) {
    let fake = FakeWechat::start().await;
    let app = spawn_app_with(fake.oauth_settings(Settings::default())).await;
    (app, fake)
}

fn location(resp: &reqwest::Response) -> String {
    resp.headers().get("location").expect("a redirect").to_str().unwrap().to_string()
}

pub(crate) fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).cookie_store(true).build().unwrap()
}

/// `page` opened in `client` as `openid` from WeChat: up to WeChat's
/// callback; returns the callback URL (with its code).
async fn to_callback(app: &TestApp, fake: &FakeWechat, client: &reqwest::Client, page: &str, openid: &str) -> String {
    fake.oauth_as(openid);
    let first = client.get(app.url(page)).send().await.unwrap();
    assert_eq!(first.status(), 303, "no session: off to WeChat");
    let authorize = location(&first);
    let back = client.get(authorize.split('#').next().unwrap()).send().await.unwrap();
    assert_eq!(back.status(), 302, "{}", back.text().await.unwrap());
    location(&back)
}

/// Signed in through the whole round trip; returns the page's HTML.
pub(crate) async fn signed_in(
    app: &TestApp,
    fake: &FakeWechat,
    client: &reqwest::Client,
    page: &str,
    openid: &str,
) -> String {
    let callback = to_callback(app, fake, client, page, openid).await;
    let landed = client.get(&callback).send().await.unwrap();
    assert_eq!(landed.status(), 303);
    assert_eq!(location(&landed), page);
    let shown = client.get(app.url(page)).send().await.unwrap();
    assert_eq!(shown.status(), 200);
    shown.text().await.unwrap()
}

#[tokio::test]
async fn first_visit_authorizes_then_shows_my_tickets() {
    let (app, fake) = app_with_oauth().await;
    let concert = app.activity("concert", 10, Window::Open).await;
    app.bind("oMe", "2024010001").await;
    app.say(&wx::text("oMe", "抢票 concert")).await;

    let client = browser();
    fake.oauth_as("oMe");
    let first = client.get(app.url("/m/tickets")).send().await.unwrap();
    assert_eq!(first.status(), 303);
    let authorize = location(&first);
    let redirect = format!("{}/m/oauth?next=tickets", app.base);
    let redirect: String = form_urlencoded::byte_serialize(redirect.as_bytes()).collect();
    let prefix = format!(
        "{}/connect/oauth2/authorize?appid={APPID}&redirect_uri={redirect}&response_type=code&scope=snsapi_base&state=",
        fake.base
    );
    assert!(authorize.starts_with(&prefix) && authorize.ends_with("#wechat_redirect"), "{authorize}");
    let state = authorize[prefix.len()..].trim_end_matches("#wechat_redirect");
    assert!(!state.is_empty() && state.chars().all(|c| c.is_ascii_alphanumeric()), "{state}");

    let back = client.get(authorize.split('#').next().unwrap()).send().await.unwrap();
    let callback = location(&back);
    let landed = client.get(&callback).send().await.unwrap();
    assert_eq!(landed.status(), 303);
    assert_eq!(location(&landed), "/m/tickets", "the code leaves the address bar");
    let cookie = landed.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect::<Vec<_>>();
    let session = cookie.iter().find(|c| c.starts_with("wt_student=")).expect("a session cookie");
    assert!(session.contains("HttpOnly") && session.contains("Max-Age=7200"), "{session}");

    let page = client.get(app.url("/m/tickets")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("学号 2024010001") && page.contains(&concert.name), "{page}");
    assert_eq!(fake.count(OAUTH_TOKEN_PATH), 1);
}

#[tokio::test]
async fn a_reused_code_gets_the_page_in_its_browser_and_nothing_elsewhere() {
    let (app, fake) = app_with_oauth().await;
    app.bind("oMe", "2024010001").await;
    let client = browser();
    let callback = to_callback(&app, &fake, &client, "/m/tickets", "oMe").await;
    // WeChat's double callback: the same URL twice, the second maybe before the first finished.
    let (a, b) = tokio::join!(client.get(&callback).send(), client.get(&callback).send());
    for resp in [a.unwrap(), b.unwrap()] {
        assert_eq!(resp.status(), 303);
        assert_eq!(location(&resp), "/m/tickets");
    }
    // The back button, later.
    let again = client.get(&callback).send().await.unwrap();
    assert_eq!(location(&again), "/m/tickets");
    assert_eq!(fake.count(OAUTH_TOKEN_PATH), 1, "the code went to WeChat once");
    assert_eq!(client.get(app.url("/m/tickets")).send().await.unwrap().status(), 200);

    // The same callback URL in another browser (leaked through history or a Referer) proves nothing.
    let thief = browser();
    let stolen = thief.get(&callback).send().await.unwrap();
    assert_eq!(stolen.status(), 403);
    assert!(stolen.text().await.unwrap().contains("授权无效"));
    assert_eq!(thief.get(app.url("/m/tickets")).send().await.unwrap().status(), 303, "still no session");
}

#[tokio::test]
async fn a_forged_state_is_refused_before_the_code_is_exchanged() {
    let (app, fake) = app_with_oauth().await;
    app.bind("oMe", "2024010001").await;
    let client = browser();
    let callback = to_callback(&app, &fake, &client, "/m/tickets", "oMe").await;
    let state = callback.split("state=").nth(1).unwrap().to_string();
    for forged in
        [callback.replace(&state, "0123456789abcdef0123456789abcdef"), callback.replace(&format!("&state={state}"), "")]
    {
        let resp = client.get(&forged).send().await.unwrap();
        assert_eq!(resp.status(), 403, "{forged}");
        assert!(resp.text().await.unwrap().contains("授权无效"));
    }
    assert_eq!(fake.count(OAUTH_TOKEN_PATH), 0);
    assert_eq!(client.get(app.url("/m/tickets")).send().await.unwrap().status(), 303, "no session");
    // A code WeChat refuses (expired, or used by someone else) is a clear page too.
    let made_up = callback.replace("code=", "code=X");
    let resp = client.get(&made_up).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp.text().await.unwrap().contains("授权无效"));
}

/// Books `concert` through the WeChat command; returns the ticket code.
async fn booked(app: &TestApp, openid: &str) -> String {
    match app.say(&wx::text(openid, "抢票 concert")).await {
        wx::Reply::News { url, .. } => ticket_code(&url),
        other => panic!("expected a booked ticket, got {other:?}"),
    }
}

#[tokio::test]
async fn a_session_reads_and_cancels_only_its_own_tickets() {
    let (app, fake) = app_with_oauth().await;
    app.activity("concert", 10, Window::Open).await;
    app.bind("oMe", "2024010001").await;
    app.bind("oOther", "2024010002").await;
    let mine = booked(&app, "oMe").await;
    let theirs = booked(&app, "oOther").await;

    let client = browser();
    let page = signed_in(&app, &fake, &client, "/m/tickets", "oMe").await;
    assert!(page.contains(&mine) && !page.contains(&theirs) && !page.contains("2024010002"), "{page}");
    // The openid is never read from the URL.
    let page = client.get(app.url("/m/tickets?openid=oOther&o=b090aGVy")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("2024010001") && !page.contains("2024010002"), "{page}");

    // Cancelling the other's ticket with my own valid form: refused.
    let form = hidden_fields(&page, &format!("/m/tickets/{mine}/cancel"));
    assert_eq!(form.len(), 1, "{page}");
    let resp = client.post(app.url(&format!("/m/tickets/{theirs}/cancel"))).form(&form).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    // Without the CSRF token, or without a session: refused.
    let resp = client.post(app.url(&format!("/m/tickets/{mine}/cancel"))).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    let resp = browser().post(app.url(&format!("/m/tickets/{mine}/cancel"))).form(&form).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(app.count("SELECT count(*) FROM tickets WHERE status = 'cancelled'").await, 0);

    // My own, with the form: cancelled, back to the list.
    let resp = client.post(app.url(&format!("/m/tickets/{mine}/cancel"))).form(&form).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "/m/tickets?cancelled=1");
    let status: String = sqlx::query_scalar("SELECT status::text FROM tickets WHERE code = $1")
        .bind(&mine)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(status, "cancelled");
    assert_eq!(app.count("SELECT count(*) FROM tickets WHERE status = 'cancelled'").await, 1);
}

#[tokio::test]
async fn an_unbound_student_is_offered_a_bind_link_for_their_own_openid() {
    let (app, fake) = app_with_oauth().await;
    let client = browser();
    let page = signed_in(&app, &fake, &client, "/m/tickets", "oNew").await;
    assert!(page.contains("还没有绑定学号") && page.contains("/bind?"), "{page}");
    let link = page.split("href=\"").nth(2).unwrap().split('"').next().unwrap().replace("&#38;", "&");
    let (status, _) = app.submit_bind(&link, "2024010009", "").await;
    assert_eq!(status, 200);
    assert_eq!(app.count("SELECT count(*) FROM students WHERE openid = 'oNew' AND student_id = '2024010009'").await, 1);
}

#[tokio::test]
async fn without_oauth_the_menu_pages_point_to_the_signed_links() {
    let app = spawn_app_with(Settings::default()).await;
    let resp = app.get("/m/tickets").await;
    assert_eq!(resp.status(), 403);
    assert!(resp.text().await.unwrap().contains("请从公众号打开"));
    assert_eq!(app.get("/m/oauth?code=abc&state=def").await.status(), 404);
}

#[tokio::test]
async fn the_activity_list_books_once_per_student_through_the_same_rules() {
    let (app, fake) = app_with_oauth().await;
    let concert = app.activity("concert", 1, Window::Open).await;
    let soon = app.activity("soon", 10, Window::NotYetOpen).await;
    let lecture = app.activity("lecture", 10, Window::Open).await;
    app.activity("past", 10, Window::Closed).await;
    app.bind("oMe", "2024010001").await;
    app.bind("oLate", "2024010002").await;

    let client = browser();
    let page = signed_in(&app, &fake, &client, "/m/activities", "oMe").await;
    assert!(page.contains(&concert.name) && page.contains(&soon.name) && !page.contains("活动 past"), "{page}");
    let action = format!("/m/activities/{}/book", concert.id);
    assert!(!page.contains(&format!("/m/activities/{}/book", soon.id)), "not open yet: no button");
    let form = hidden_fields(&page, &action);
    assert_eq!(form.len(), 1, "{page}");

    // Without the token: refused, nothing booked.
    assert_eq!(client.post(app.url(&action)).send().await.unwrap().status(), 403);
    assert_eq!(app.live_tickets(concert.id).await, 0);

    // A double tap: both land on the one ticket.
    let (a, b) = tokio::join!(
        client.post(app.url(&action)).form(&form).send(),
        client.post(app.url(&action)).form(&form).send()
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (303, 303));
    assert_eq!(ticket_code(&location(&a)), ticket_code(&location(&b)));
    assert_eq!(app.live_tickets(concert.id).await, 1);
    let ticket = client.get(app.url(&location(&a))).send().await.unwrap().text().await.unwrap();
    assert!(ticket.contains(&concert.name) && ticket.contains("退票"), "the holder's ticket page: {ticket}");
    // The WeChat command sees the same ticket.
    let holds = app.say(&wx::text("oMe", "抢票 concert")).await;
    assert!(holds.text().contains("已经有"), "{holds:?}");

    // The last place is gone: the next student is told so.
    let late = browser();
    let page = signed_in(&app, &fake, &late, "/m/activities", "oLate").await;
    assert!(page.contains("票已抢完"), "{page}");
    assert!(hidden_fields(&page, &action).is_empty(), "sold out: no button");
    // A form posted anyway (a page loaded before the last place went) is told so.
    let form = hidden_fields(&page, &format!("/m/activities/{}/book", lecture.id));
    let resp = late.post(app.url(&action)).form(&form).send().await.unwrap();
    assert_eq!(resp.status(), 409);
    assert!(resp.text().await.unwrap().contains("票已经抢完了"));
    assert_eq!(app.live_tickets(concert.id).await, 1);
}

#[tokio::test]
async fn with_oauth_the_pushed_menu_opens_the_pages() {
    let (app, fake) = app_with_oauth().await;
    let csrf = app.login_admin("menu-admin").await;
    let (status, page) = app.admin_post("/admin/menu", &[("csrf", &csrf), ("action", "push")]).await;
    assert_eq!(status, 200, "{page}");
    let pushed = fake.menu().expect("a menu was created");
    let buttons = pushed["button"].as_array().unwrap();
    assert_eq!(buttons[0]["type"], "view");
    assert_eq!(buttons[0]["url"], app.url("/m/activities"));
    assert_eq!(buttons[1]["type"], "view");
    assert_eq!(buttons[1]["url"], app.url("/m/tickets"));
}

#[tokio::test]
async fn wechat_unreachable_for_the_exchange_is_a_clear_page_and_no_session() {
    let fake = FakeWechat::start().await;
    // The authorize page answers; the API server does not.
    let settings = fake.oauth_settings(Settings::default()).set("WECHAT_API_BASE", "http://127.0.0.1:9");
    let app = spawn_app_with(settings).await;
    let client = browser();
    let callback = to_callback(&app, &fake, &client, "/m/tickets", "oMe").await;
    let resp = client.get(&callback).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    assert!(resp.text().await.unwrap().contains("暂时联系不上微信"));
    assert_eq!(client.get(app.url("/m/tickets")).send().await.unwrap().status(), 303, "no session");
}

/// Issue 19, point 7: over https the student session is a `__Host-` cookie
/// (`Secure; Path=/`, no `Domain`), and a cookie of the plain name — which a
/// sibling subdomain of the campus could plant — is not believed.
#[tokio::test]
async fn over_https_the_student_session_is_a_host_cookie_and_a_planted_one_is_ignored() {
    let fake = FakeWechat::start().await;
    let public = "https://ticket.example.edu";
    let app = spawn_app_with(fake.oauth_settings(Settings::default().set("PUBLIC_URL", public))).await;
    // The bind link points at the public host, which this test cannot reach: bind through the rules.
    let mut conn = app.pool.acquire().await.unwrap();
    wechat_ticket::booking::students::bind(&mut conn, &app.state.notifier, "oMe", "2024010001", None).await.unwrap();
    drop(conn);
    // No cookie store: the test carries cookies by hand, as a browser would over https.
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    fake.oauth_as("oMe");
    let first = client.get(app.url("/m/tickets")).send().await.unwrap();
    assert_eq!(first.status(), 303);
    let state_cookie = first.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(state_cookie.starts_with("__Host-wt_oauth=") && state_cookie.contains("; Path=/;"), "{state_cookie}");
    assert!(state_cookie.ends_with("; Secure") && !state_cookie.to_ascii_lowercase().contains("domain"));
    let nonce = state_cookie.split(';').next().unwrap().to_string();
    let back = client.get(location(&first).split('#').next().unwrap()).send().await.unwrap();
    let callback = location(&back).replace(public, &app.base);
    let landed = client.get(&callback).header("cookie", &nonce).send().await.unwrap();
    assert_eq!(landed.status(), 303);
    let set = landed.headers()["set-cookie"].to_str().unwrap().to_string();
    let value = set.strip_prefix("__Host-wt_student=").expect(&set).split(';').next().unwrap().to_string();
    let attributes: Vec<&str> = set.split(';').skip(1).map(str::trim).collect();
    for wanted in ["Path=/", "HttpOnly", "SameSite=Lax", "Secure"] {
        assert!(attributes.contains(&wanted), "{wanted}: {set}");
    }
    assert!(!set.to_ascii_lowercase().contains("domain"), "{set}");

    let page = |cookie: String| {
        let client = client.clone();
        let url = app.url("/m/tickets");
        async move { client.get(url).header("cookie", cookie).send().await.unwrap() }
    };
    let mine = page(format!("__Host-wt_student={value}")).await;
    assert_eq!(mine.status(), 200);
    assert!(mine.text().await.unwrap().contains("学号 2024010001"));
    // The very same value under the plain name, as a sibling subdomain would set it: not a session.
    let planted = page(format!("wt_student={value}")).await;
    assert_eq!(planted.status(), 303, "a planted cookie signs nobody in");
}
