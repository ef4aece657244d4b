//! The custom menu reaching WeChat: what is pushed, one shared access_token
//! across callers and instances, and WeChat's errors handled or explained.

use std::time::{Duration, Instant};

use futures::future::join_all;
use serde_json::json;
use wechat_ticket::{
    menu,
    wechat::menu::{Button, Menu},
    wechat::token_store::WechatApi,
};

use crate::common::{
    APPID, Settings, TestApp,
    fake_wechat::{CREATE_PATH, FakeWechat, GET_PATH, SECRET, TOKEN_PATH},
    fixtures::Window,
    spawn_app_on, spawn_app_with,
};

async fn app_and_fake() -> (TestApp, FakeWechat) {
    let fake = FakeWechat::start().await;
    let app = spawn_app_with(fake.settings(Settings::default())).await;
    (app, fake)
}

/// A client built the way a page builds one: per request, on the app's config and pool.
fn api(app: &TestApp) -> WechatApi {
    menu::wechat_api(&app.state.config, app.pool.clone()).expect("credentials are set")
}

fn simple_menu() -> Menu {
    menu::compose(&[]).unwrap()
}

async fn stored_token(app: &TestApp) -> String {
    sqlx::query_scalar("SELECT access_token FROM wechat_access_tokens WHERE appid = $1")
        .bind(APPID)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_chosen_activities_are_pushed_with_names_cut_to_wechats_limits() {
    let (app, fake) = app_and_fake().await;
    let concert = app.activity("concert", 300, Window::Open).await;
    let drama = app.activity("drama", 100, Window::NotYetOpen).await;
    let long = "清华大学学生艺术团二零二五年新年音乐会暨优秀节目展演专场";
    sqlx::query("UPDATE activities SET name = $1 WHERE id = $2")
        .bind(long)
        .bind(concert.id)
        .execute(&app.pool)
        .await
        .unwrap();

    let chosen =
        menu::choose(&mut app.pool.acquire().await.unwrap(), &["drama".into(), concert.id.to_string()]).await.unwrap();
    let composed = menu::compose(&chosen).unwrap();
    menu::push(&api(&app), &app.pool, &composed).await.unwrap();

    let pushed = fake.requests(CREATE_PATH);
    assert_eq!(pushed.len(), 1);
    let cut = "清华大学学生艺术团二零二五年新年音乐会…";
    assert_eq!(cut.len(), 60);
    assert_eq!(
        pushed[0].body,
        Some(json!({"button": [
            {"name": "抢票", "sub_button": [
                {"type": "click", "name": "活动 drama", "key": format!("BOOK_{}", drama.id)},
                {"type": "click", "name": cut, "key": format!("BOOK_{}", concert.id)},
            ]},
            {"type": "click", "name": "查票", "key": "MY_TICKETS"},
            {"name": "服务", "sub_button": [
                {"type": "click", "name": "活动列表", "key": "LIST_ACTIVITIES"},
                {"type": "click", "name": "绑定学号", "key": "BIND"},
                {"type": "click", "name": "帮助", "key": "HELP"},
            ]},
        ]}))
    );
    // The call carried the shared token, fetched with the account's credentials.
    assert_eq!(pushed[0].query["access_token"], stored_token(&app).await);
    let token_request = &fake.requests(TOKEN_PATH)[0];
    assert_eq!(
        (token_request.query["grant_type"].as_str(), token_request.query["appid"].as_str()),
        ("client_credential", APPID)
    );
    assert_eq!(token_request.query["secret"], SECRET);
    // What the page shows as "the menu on WeChat now" is what was pushed.
    assert_eq!(menu::current(&api(&app)).await.unwrap(), Some(composed));
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_menu_current_says_none_and_delete_clears_it() {
    let (app, fake) = app_and_fake().await;
    assert_eq!(menu::current(&api(&app)).await.unwrap(), None);
    menu::push(&api(&app), &app.pool, &simple_menu()).await.unwrap();
    assert!(menu::current(&api(&app)).await.unwrap().is_some());
    api(&app).delete_menu().await.unwrap();
    assert_eq!(menu::current(&api(&app)).await.unwrap(), None);
    assert_eq!(fake.count(GET_PATH), 3);
    assert_eq!(fake.count(TOKEN_PATH), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_concurrent_pushes_fetch_the_token_once() {
    let (app, fake) = app_and_fake().await;
    fake.slow_tokens(Duration::from_millis(300));
    let pushes = (0..20).map(|_| async { menu::push(&api(&app), &app.pool, &simple_menu()).await });
    for result in join_all(pushes).await {
        result.unwrap();
    }
    assert_eq!(fake.count(TOKEN_PATH), 1);
    assert_eq!(fake.count(CREATE_PATH), 20);
    let token = stored_token(&app).await;
    assert!(fake.requests(CREATE_PATH).iter().all(|r| r.query["access_token"] == token));
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_on_one_database_share_one_token() {
    let fake = FakeWechat::start().await;
    let first = spawn_app_with(fake.settings(Settings::default())).await;
    let second = spawn_app_on(first.db.clone(), fake.settings(Settings::default())).await;
    fake.slow_tokens(Duration::from_millis(300));
    let pushes = (0..20).map(|i| {
        let app = if i % 2 == 0 { &first } else { &second };
        async move { menu::push(&api(app), &app.pool, &simple_menu()).await }
    });
    for result in join_all(pushes).await {
        result.unwrap();
    }
    assert_eq!(fake.count(TOKEN_PATH), 1);
    assert_eq!(fake.count(CREATE_PATH), 20);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_token_is_refreshed_once_and_the_call_retried_once() {
    let (app, fake) = app_and_fake().await;
    menu::push(&api(&app), &app.pool, &simple_menu()).await.unwrap();
    let old = stored_token(&app).await;

    fake.expire_tokens();
    menu::push(&api(&app), &app.pool, &simple_menu()).await.unwrap();
    assert_eq!(fake.count(TOKEN_PATH), 2);
    let creates = fake.requests(CREATE_PATH);
    assert_eq!(creates.len(), 3);
    let new = stored_token(&app).await;
    assert_ne!(new, old);
    assert_eq!((creates[1].query["access_token"].as_str(), creates[2].query["access_token"].as_str()), (&*old, &*new));

    // Refused again after the refresh: reported, not refreshed in a loop.
    let expired = json!({"errcode": 42001, "errmsg": "access_token expired"});
    fake.script(CREATE_PATH, expired.clone());
    fake.script(CREATE_PATH, expired);
    let err = menu::push(&api(&app), &app.pool, &simple_menu()).await.unwrap_err().to_string();
    assert!(err.contains("42001") && err.contains("access_token expired"), "{err}");
    assert_eq!(fake.count(TOKEN_PATH), 3);
    assert_eq!(fake.count(CREATE_PATH), 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_about_to_expire_is_refreshed_before_use() {
    let (app, fake) = app_and_fake().await;
    sqlx::query(
        "INSERT INTO wechat_access_tokens (appid, access_token, expires_at) \
         VALUES ($1, 'DYING_TOKEN', now() + interval '4 minutes')",
    )
    .bind(APPID)
    .execute(&app.pool)
    .await
    .unwrap();
    menu::push(&api(&app), &app.pool, &simple_menu()).await.unwrap();
    assert_eq!(fake.count(TOKEN_PATH), 1);
    assert_eq!(fake.requests(CREATE_PATH)[0].query["access_token"], "ACCESS_TOKEN_1");
    assert_eq!(stored_token(&app).await, "ACCESS_TOKEN_1");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ip_outside_the_whitelist_is_explained_and_not_retried() {
    let (app, fake) = app_and_fake().await;
    fake.script(
        TOKEN_PATH,
        json!({"errcode": 40164, "errmsg": "invalid ip 10.0.0.7 ipv6 ::ffff:10.0.0.7, not in whitelist"}),
    );
    let err = menu::push(&api(&app), &app.pool, &simple_menu()).await.unwrap_err().to_string();
    assert!(
        err.starts_with("本服务器的 IP 不在公众号的 IP 白名单中（40164），请在公众平台「基本配置」里添加"),
        "{err}"
    );
    assert!(err.contains("invalid ip 10.0.0.7"), "{err}");
    assert_eq!(fake.count(TOKEN_PATH), 1);
    assert_eq!(fake.count(CREATE_PATH), 0);

    // A quota error on the call itself is reported after one attempt.
    fake.script(CREATE_PATH, json!({"errcode": 45009, "errmsg": "reach max api daily quota limit"}));
    let err = menu::push(&api(&app), &app.pool, &simple_menu()).await.unwrap_err().to_string();
    assert!(err.contains("次数已经用完") && err.contains("45009"), "{err}");
    assert_eq!(fake.count(CREATE_PATH), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn busy_is_retried_with_backoff_then_reported() {
    let (app, fake) = app_and_fake().await;
    let busy = json!({"errcode": -1, "errmsg": "system error"});
    fake.script(CREATE_PATH, busy.clone());
    fake.script(CREATE_PATH, busy.clone());
    let started = Instant::now();
    menu::push(&api(&app), &app.pool, &simple_menu()).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(600), "backed off 200 ms, then 400 ms");
    assert_eq!(fake.count(CREATE_PATH), 3);
    assert!(fake.menu().is_some());

    for _ in 0..3 {
        fake.script(CREATE_PATH, busy.clone());
    }
    let err = menu::push(&api(&app), &app.pool, &simple_menu()).await.unwrap_err().to_string();
    assert!(err.contains("繁忙") && err.contains("-1"), "{err}");
    assert_eq!(fake.count(CREATE_PATH), 6);
    assert_eq!(fake.count(TOKEN_PATH), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_appid_or_secret_is_a_clear_error() {
    let fake = FakeWechat::start().await;
    let neither = spawn_app_with(Settings::default().set("WECHAT_API_BASE", &fake.base)).await;
    let err = menu::wechat_api(&neither.state.config, neither.pool.clone()).err().unwrap().to_string();
    assert!(err.starts_with("没有设置 WECHAT_APPID 和 WECHAT_SECRET，"), "{err}");

    let no_secret = spawn_app_on(
        neither.db.clone(),
        Settings::default().set("WECHAT_API_BASE", &fake.base).set("WECHAT_APPID", APPID),
    )
    .await;
    let err = menu::wechat_api(&no_secret.state.config, no_secret.pool.clone()).err().unwrap().to_string();
    assert!(err.starts_with("没有设置 WECHAT_SECRET，"), "{err}");
    assert_eq!(fake.total_requests(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn choosing_refuses_what_students_cannot_book() {
    let (app, _fake) = app_and_fake().await;
    for key in ["a1", "a2", "a3", "a4", "a5", "a6"] {
        app.activity(key, 10, Window::Open).await;
    }
    let draft = app.activity("draft", 10, Window::Open).await;
    sqlx::query("UPDATE activities SET status = 'draft' WHERE id = $1")
        .bind(draft.id)
        .execute(&app.pool)
        .await
        .unwrap();
    let mut conn = app.pool.acquire().await.unwrap();
    let keys = |keys: &[&str]| keys.iter().map(|k| k.to_string()).collect::<Vec<String>>();

    let err = menu::choose(&mut conn, &keys(&["a1", "a2", "a3", "a4", "a5", "a6"])).await.unwrap_err();
    assert!(err.to_string().contains("最多放 5 个"), "{err}");
    let err = menu::choose(&mut conn, &keys(&["a1", "nosuch"])).await.unwrap_err();
    assert!(err.to_string().contains("「nosuch」"), "{err}");
    let err = menu::choose(&mut conn, &keys(&["draft"])).await.unwrap_err();
    assert!(err.to_string().contains("还没有发布"), "{err}");

    // With no choice, the five whose booking opens soonest.
    let default = menu::default_choice(&mut conn).await.unwrap();
    assert_eq!(default.iter().map(|a| a.key.as_str()).collect::<Vec<_>>(), ["a1", "a2", "a3", "a4", "a5"]);
    let composed = menu::compose(&default).unwrap();
    assert_eq!(composed.button[0].sub_button.len(), 5);

    // A menu beyond WeChat's limits is refused before anything is sent.
    let too_wide = Menu { button: vec![Button::click("查票", "MY_TICKETS"); 4] };
    let err = menu::push(&api(&app), &app.pool, &too_wide).await.unwrap_err().to_string();
    assert!(err.contains("1 到 3 个按钮"), "{err}");
}

fn cli(app: &TestApp, fake: &FakeWechat, args: &[&str], secret: bool) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_wechat-ticket"));
    command
        .env("DATABASE_URL", app.database_url())
        .env("WECHAT_API_BASE", &fake.base)
        .env("WECHAT_APPID", APPID)
        .env("RUST_LOG", "warn")
        .args(args);
    if secret {
        command.env("WECHAT_SECRET", SECRET);
    } else {
        command.env_remove("WECHAT_SECRET");
    }
    command.output().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_menu_commands_show_and_push_with_the_shared_token() {
    let (app, fake) = app_and_fake().await;
    let concert = app.activity("concert", 300, Window::Open).await;
    // The server already holds a token: the shell reuses it.
    menu::push(&api(&app), &app.pool, &simple_menu()).await.unwrap();

    // The fake answers on this runtime's other worker while the command runs.
    let run = |args: &[&str], secret: bool| tokio::task::block_in_place(|| cli(&app, &fake, args, secret));
    let pushed = run(&["menu", "push", "--activity", "concert"], true);
    assert!(pushed.status.success(), "{}", String::from_utf8_lossy(&pushed.stderr));
    let key = format!("BOOK_{}", concert.id);
    assert_eq!(fake.menu().unwrap()["button"][0]["sub_button"][0]["key"], key);

    let shown = run(&["menu", "show"], true);
    assert!(shown.status.success(), "{}", String::from_utf8_lossy(&shown.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(printed, fake.menu().unwrap());
    assert_eq!(fake.count(TOKEN_PATH), 1);

    let refused = run(&["menu", "push"], false);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("没有设置 WECHAT_SECRET"));
    assert_eq!(fake.count(CREATE_PATH), 2);

    api(&app).delete_menu().await.unwrap();
    let none = run(&["menu", "show"], true);
    assert_eq!(String::from_utf8_lossy(&none.stdout).trim(), "no menu");
}

/// 群发 (issue 24, point 2): the preview and the send to all as WeChat takes
/// them; a busy WeChat is retried under the same `clientmsgid`, and WeChat's
/// "already have it" (45065) is the first job's msg_id, not an error.
#[tokio::test(flavor = "multi_thread")]
async fn mass_sends_are_shaped_as_wechat_takes_them_and_a_resubmission_names_the_first_job() {
    use crate::common::fake_wechat::{MASS_PREVIEW_PATH, MASS_SENDALL_PATH};
    let (app, fake) = app_and_fake().await;
    let api = api(&app);
    api.mass_preview_text("oFollower", "你好").await.unwrap();
    assert_eq!(
        fake.requests(MASS_PREVIEW_PATH)[0].body.clone().unwrap(),
        json!({"touser": "oFollower", "msgtype": "text", "text": {"content": "你好"}})
    );

    fake.script(MASS_SENDALL_PATH, json!({"errcode": -1, "errmsg": "system error"}));
    let first = api.mass_send_text_to_all("大家好", "job-1").await.unwrap();
    assert!(!first.repeated && first.msg_data_id.is_some());
    let sent = fake.requests(MASS_SENDALL_PATH);
    assert_eq!(sent.len(), 2, "busy, then accepted");
    assert_eq!(
        sent[1].body.clone().unwrap(),
        json!({"filter": {"is_to_all": true}, "msgtype": "text", "text": {"content": "大家好"}, "clientmsgid": "job-1"})
    );
    let again = api.mass_send_text_to_all("大家好", "job-1").await.unwrap();
    assert_eq!((again.msg_id, again.repeated), (first.msg_id, true));

    fake.script(MASS_SENDALL_PATH, json!({"errcode": 48001, "errmsg": "api unauthorized"}));
    let refused = api.mass_send_text_to_all("大家好", "job-2").await.unwrap_err().to_string();
    assert!(refused.contains("群发接口") && refused.contains("认证"), "{refused}");
}
