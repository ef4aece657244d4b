//! The landing page `/`: what to paste into the WeChat console. The URL and
//! the mode are for anyone; the Token and EncodingAESKey only for an admin.

use crate::common::{AES_KEY, Settings, TOKEN, TestApp, spawn_app_with};

async fn landing(app: &TestApp) -> String {
    let resp = app.get("/").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "private, no-store", "secrets never sit in a cache");
    resp.text().await.unwrap()
}

#[tokio::test]
async fn anyone_sees_url_mode_and_links_but_only_an_admin_sees_the_token() {
    let app = spawn_app_with(Settings::default().set("PUBLIC_URL", "https://ticket.example.edu/")).await;

    let page = landing(&app).await;
    assert!(page.contains("<code style=\"word-break: break-all\">https://ticket.example.edu/wechat</code>"), "{page}");
    assert!(page.contains("选「明文模式」") && page.contains("WECHAT_MESSAGE_MODE=plaintext"), "{page}");
    assert!(page.contains("href=\"/admin\"") && page.contains("href=\"/admin/simulator\""), "{page}");
    assert!(page.contains("没有公众号也能试用"), "{page}");
    assert!(page.contains("WECHAT_TOKEN") && page.contains("登录管理后台"), "says where the token is: {page}");
    assert!(!page.contains(TOKEN), "the token is a secret: {page}");
    assert!(!page.contains("PUBLIC_URL 现在指向本机"), "a public address needs no warning: {page}");

    // A made-up session cookie shows nothing more.
    let forged = reqwest::Client::new()
        .get(app.url("/"))
        .header("cookie", "wt_admin=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 200);
    assert!(!forged.text().await.unwrap().contains(TOKEN));

    app.login_admin("admin").await;
    let page = landing(&app).await;
    assert!(page.contains(&format!("<code style=\"word-break: break-all\">{TOKEN}</code>")), "{page}");
    assert!(!page.contains("登录管理后台</a>后再打开本页"), "{page}");
}

#[tokio::test]
async fn with_a_key_the_mode_is_compatible_and_only_an_admin_sees_the_key() {
    let app = spawn_app_with(Settings::default().encrypted()).await;

    let page = landing(&app).await;
    assert!(page.contains("选「兼容模式」") && page.contains("WECHAT_MESSAGE_MODE=compatible"), "{page}");
    assert!(page.contains("WECHAT_AES_KEY"), "{page}");
    assert!(!page.contains(AES_KEY) && !page.contains(TOKEN), "{page}");
    // The default PUBLIC_URL is this machine, which WeChat cannot reach.
    assert!(page.contains(&format!("{}/wechat", app.base)) && page.contains("PUBLIC_URL 现在指向本机"), "{page}");

    app.login_admin("admin").await;
    let page = landing(&app).await;
    assert!(page.contains(AES_KEY) && page.contains(TOKEN), "{page}");
}

#[tokio::test]
async fn the_development_token_is_shown_to_an_admin_and_said_to_be_printed_at_start_up() {
    // An empty WECHAT_TOKEN counts as unset: the development token is in use.
    let app = spawn_app_with(Settings::default().set("WECHAT_TOKEN", "")).await;
    let token = app.state.wechat_token.clone();
    assert!(app.state.config.wechat_token.is_none());

    let page = landing(&app).await;
    assert!(page.contains("启动时打印在终端里"), "{page}");
    assert!(!page.contains(&token), "{page}");

    app.login_admin("admin").await;
    let page = landing(&app).await;
    assert!(page.contains(&token) && page.contains("这是开发用 Token"), "{page}");
}

#[tokio::test]
async fn safe_mode_is_named_as_the_console_names_it() {
    let app = spawn_app_with(Settings::default().encrypted().set("WECHAT_MESSAGE_MODE", "safe")).await;
    let page = landing(&app).await;
    assert!(page.contains("选「安全模式」") && page.contains("WECHAT_MESSAGE_MODE=safe"), "{page}");
}
