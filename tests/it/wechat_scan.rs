//! The WeChat scanner on the check-in page: `wx.config` signed with one
//! shared `jsapi_ticket`, for admins and for this site's pages only.

use std::time::Duration;

use futures::future::join_all;
use serde_json::{Value, json};
use wechat_ticket::wechat::jssdk;

use crate::common::{
    APPID, Settings, TestApp,
    fake_wechat::{FakeWechat, TICKET_PATH, TOKEN_PATH},
    fixtures::Window,
    spawn_app_on, spawn_app_with,
};

const WECHAT_UA: &str = "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Mobile MicroMessenger/8.0.47.2560";

async fn stored_ticket(app: &TestApp) -> String {
    sqlx::query_scalar("SELECT ticket FROM wechat_jsapi_tickets WHERE appid = $1")
        .bind(APPID)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

fn checkin_url(app: &TestApp) -> String {
    app.url("/admin/activities/1/checkin")
}

/// Asks for `wx.config` as the check-in page's script does; (status, JSON).
async fn wechat_config(app: &TestApp, page_url: &str) -> (u16, Value) {
    let resp = app.http.get(app.url("/checkin/wechat-config")).query(&[("url", page_url)]).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

/// The signature checks out against the ticket WeChat issued, for `url` without its fragment.
fn assert_signed(config: &Value, ticket: &str, url: &str) {
    assert_eq!(config["appId"], APPID);
    let (nonce, timestamp) = (config["nonceStr"].as_str().unwrap(), config["timestamp"].as_i64().unwrap());
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!((now - timestamp).abs() < 60, "{config}");
    let url = url.split('#').next().unwrap();
    assert_eq!(config["signature"], jssdk::signature(ticket, nonce, timestamp, url), "{config}");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_asking_at_once_fetch_one_jsapi_ticket() {
    let fake = FakeWechat::start().await;
    let first = spawn_app_with(fake.settings(Settings::default())).await;
    let second = spawn_app_on(first.db.clone(), fake.settings(Settings::default())).await;
    first.login_admin("door1").await;
    second.login_admin("door2").await;
    fake.slow_tickets(Duration::from_millis(300));
    let asks = (0..10).map(|i| {
        let app = if i % 2 == 0 { &first } else { &second };
        async move {
            let url = format!("{}#scan", checkin_url(app));
            (url.clone(), wechat_config(app, &url).await)
        }
    });
    let answers = join_all(asks).await;
    assert_eq!(fake.count(TICKET_PATH), 1, "one getticket for both instances");
    assert_eq!(fake.count(TOKEN_PATH), 1);
    let ticket = stored_ticket(&first).await;
    assert_eq!(ticket, "JSAPI_TICKET_1");
    // getticket carried the shared access token and asked for the JS-SDK's ticket.
    let asked = &fake.requests(TICKET_PATH)[0];
    assert_eq!((asked.query["type"].as_str(), asked.query["access_token"].as_str()), ("jsapi", "ACCESS_TOKEN_1"));
    for (url, (status, config)) in answers {
        assert_eq!(status, 200, "{config}");
        assert_signed(&config, &ticket, &url);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ticket_about_to_expire_is_refreshed_before_use() {
    let fake = FakeWechat::start().await;
    let app = spawn_app_with(fake.settings(Settings::default())).await;
    app.login_admin("door").await;
    let (status, _) = wechat_config(&app, &checkin_url(&app)).await;
    assert_eq!((status, fake.count(TICKET_PATH)), (200, 1));
    // Reused while fresh.
    wechat_config(&app, &checkin_url(&app)).await;
    assert_eq!(fake.count(TICKET_PATH), 1);

    sqlx::query("UPDATE wechat_jsapi_tickets SET expires_at = now() + interval '4 minutes'")
        .execute(&app.pool)
        .await
        .unwrap();
    let (status, config) = wechat_config(&app, &checkin_url(&app)).await;
    assert_eq!(status, 200, "{config}");
    assert_eq!(fake.count(TICKET_PATH), 2);
    assert_eq!(stored_ticket(&app).await, "JSAPI_TICKET_2");
    assert_signed(&config, "JSAPI_TICKET_2", &checkin_url(&app));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_access_token_is_refreshed_once_for_getticket() {
    let fake = FakeWechat::start().await;
    let app = spawn_app_with(fake.settings(Settings::default())).await;
    app.login_admin("door").await;
    wechat_config(&app, &checkin_url(&app)).await;
    sqlx::query("UPDATE wechat_jsapi_tickets SET expires_at = now() - interval '1 minute'")
        .execute(&app.pool)
        .await
        .unwrap();

    // The stored access token is dead (42001): refreshed once, getticket retried once.
    fake.expire_tokens();
    let (status, config) = wechat_config(&app, &checkin_url(&app)).await;
    assert_eq!(status, 200, "{config}");
    assert_eq!(fake.count(TOKEN_PATH), 2);
    let asked: Vec<String> = fake.requests(TICKET_PATH).iter().map(|r| r.query["access_token"].clone()).collect();
    assert_eq!(asked, ["ACCESS_TOKEN_1", "ACCESS_TOKEN_1", "ACCESS_TOKEN_2"]);
    assert_signed(&config, &stored_ticket(&app).await, &checkin_url(&app));

    // Refused again after the refresh: said, not retried in a loop.
    sqlx::query("UPDATE wechat_jsapi_tickets SET expires_at = now() - interval '1 minute'")
        .execute(&app.pool)
        .await
        .unwrap();
    let invalid = json!({"errcode": 40001, "errmsg": "invalid credential"});
    fake.script(TICKET_PATH, invalid.clone());
    fake.script(TICKET_PATH, invalid);
    let (status, refused) = wechat_config(&app, &checkin_url(&app)).await;
    assert_eq!(status, 502);
    assert!(refused["error"].as_str().unwrap().contains("40001"), "{refused}");
    assert_eq!((fake.count(TOKEN_PATH), fake.count(TICKET_PATH)), (3, 5));
}

#[tokio::test(flavor = "multi_thread")]
async fn only_an_admin_gets_a_signature_and_only_for_this_sites_pages() {
    let fake = FakeWechat::start().await;
    let app = spawn_app_with(fake.settings(Settings::default())).await;
    let (status, refused) = wechat_config(&app, &checkin_url(&app)).await;
    assert_eq!(status, 401);
    assert!(refused["error"].as_str().unwrap().contains("登录"), "{refused}");

    app.login_admin("door").await;
    for foreign in ["https://evil.example/phish", "", "javascript:alert(1)", &app.base.clone()] {
        let (status, refused) = wechat_config(&app, foreign).await;
        assert_eq!(status, 400, "{foreign:?}");
        assert!(refused["error"].as_str().unwrap().contains("只能为本站"), "{refused}");
    }
    let long = format!("{}?{}", checkin_url(&app), "x".repeat(3000));
    assert_eq!(wechat_config(&app, &long).await.0, 400);
    assert_eq!(fake.total_requests(), 0, "nothing asked of WeChat");

    // Without the account's credentials there is no scanner, and it says why.
    let bare = spawn_app_on(app.db.clone(), Settings::default().set("WECHAT_API_BASE", &fake.base)).await;
    bare.login_admin("door2").await;
    let (status, refused) = wechat_config(&bare, &checkin_url(&bare)).await;
    assert_eq!(status, 404);
    assert!(refused["error"].as_str().unwrap().contains("WECHAT_APPID"), "{refused}");
    assert_eq!(fake.total_requests(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_checkin_page_may_load_the_jssdk_inside_wechat_only() {
    let fake = FakeWechat::start().await;
    let app = spawn_app_with(fake.settings(Settings::default())).await;
    app.login_admin("door").await;
    let a = app.activity("show", 10, Window::Open).await;
    let get = |path: String, ua: Option<&'static str>| {
        let app = &app;
        async move {
            let mut request = app.http.get(app.url(&path));
            if let Some(ua) = ua {
                request = request.header("User-Agent", ua);
            }
            let resp = request.send().await.unwrap();
            let csp = resp.headers()["content-security-policy"].to_str().unwrap().to_string();
            (csp, resp.text().await.unwrap())
        }
    };
    let checkin = format!("/admin/activities/{}/checkin", a.id);
    let (csp, page) = get(checkin.clone(), Some(WECHAT_UA)).await;
    assert!(csp.contains("script-src 'self' https://res.wx.qq.com;"), "{csp}");
    assert!(csp.contains("object-src 'none'") && csp.contains("style-src 'self';"), "{csp}");
    assert!(page.contains("id=\"wechat-scan\"") && page.contains("src=\"/static/wechat-scan.js\""), "{page}");
    // Hidden until WeChat accepts wx.config.
    assert!(page.contains("<button id=\"wechat-scan\" type=\"button\" hidden>微信扫一扫</button>"), "{page}");

    let (csp, _) = get(checkin, None).await;
    assert!(!csp.contains("res.wx.qq.com"), "{csp}");
    let (csp, _) = get(format!("/admin/activities/{}", a.id), Some(WECHAT_UA)).await;
    assert!(!csp.contains("res.wx.qq.com"), "other pages keep the strict policy: {csp}");

    let script = app.get("/static/wechat-scan.js").await.text().await.unwrap();
    for needed in
        ["needResult: 1", "window.checkinSubmit", "checkin-input", "jweixin-1.6.0.js", "/checkin/wechat-config"]
    {
        assert!(script.contains(needed), "{needed}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_volunteer_page_gets_a_signature_while_its_link_is_open() {
    let fake = FakeWechat::start().await;
    let app = spawn_app_with(fake.settings(Settings::default())).await;
    let csrf = app.login_admin("door").await;
    let a = app.activity("show", 10, Window::Open).await;
    let door = crate::door::create_link(&app, &csrf, a.id, "东门").await;
    // The volunteer has no admin session: a client without the admin's cookie.
    let volunteer = reqwest::Client::new();
    let ask = |page: String| {
        let volunteer = volunteer.clone();
        let url = app.url("/checkin/wechat-config");
        async move { volunteer.get(url).query(&[("url", page)]).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(ask(door.clone()).await, 200, "the open link's own page");
    let forged = format!("{}X", door);
    assert_eq!(ask(forged).await, 401, "a token that is not a link's");
    assert_eq!(ask(app.url("/admin/activities/1/checkin")).await, 401, "not the admin's page");
    let id: i64 = sqlx::query_scalar("SELECT max(id) FROM checkin_links").fetch_one(&app.pool).await.unwrap();
    let (status, _) = app.admin_post(&format!("/admin/checkin-links/{id}/revoke"), &[("csrf", &csrf)]).await;
    assert_eq!(status, 303);
    assert_eq!(ask(door).await, 401, "a revoked link's page");
}
