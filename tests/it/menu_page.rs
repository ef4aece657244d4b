//! The admin menu page against a fake WeChat API: what is on WeChat now, the
//! composer, the push, and WeChat's refusals in words.

use serde_json::json;

use crate::common::{
    Settings,
    fake_wechat::{CREATE_PATH, FakeWechat},
    fixtures::Window,
    spawn_app_with,
};

#[tokio::test]
async fn an_admin_composes_previews_and_pushes_the_menu() {
    let fake = FakeWechat::start().await;
    let app = spawn_app_with(fake.settings(Settings::default())).await;
    let csrf = app.login_admin("menu-admin").await;
    let concert = app.activity("concert", 100, Window::Open).await;
    let drama = app.activity("drama", 100, Window::NotYetOpen).await;
    app.activity("past", 100, Window::Closed).await;

    let page = app.get("/admin/menu").await.text().await.unwrap();
    assert!(page.contains("公众号还没有自定义菜单"), "{page}");
    assert!(
        page.contains(&format!("name=\"activity_{}\"", concert.id)) && !page.contains("<code>past</code>"),
        "{page}"
    );

    // Preview changes nothing on WeChat.
    let chosen = format!("activity_{}", drama.id);
    let (status, page) = app.admin_post("/admin/menu", &[("csrf", &csrf), (&chosen, "1"), ("action", "preview")]).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(&format!("BOOK_{}", drama.id)) && page.contains("MY_TICKETS"), "{page}");
    assert_eq!(fake.count(CREATE_PATH), 0);

    let (status, page) = app.admin_post("/admin/menu", &[("csrf", &csrf), (&chosen, "1"), ("action", "push")]).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("菜单已推送到微信"), "{page}");
    let pushed = fake.menu().expect("a menu was created");
    assert_eq!(
        pushed["button"][0]["sub_button"][0],
        json!({"type": "click", "name": "活动 drama", "key": format!("BOOK_{}", drama.id)})
    );
    assert_eq!(pushed["button"][1], json!({"type": "click", "name": "查票", "key": "MY_TICKETS"}));
    // The page now shows what WeChat has.
    let page = app.get("/admin/menu").await.text().await.unwrap();
    assert!(page.contains("活动 drama") && !page.contains("公众号还没有自定义菜单"), "{page}");
    assert_eq!(app.count("SELECT count(*) FROM audit_log WHERE action = '推送菜单'").await, 1);
}

#[tokio::test]
async fn wechat_refusals_and_missing_settings_are_shown_in_words() {
    let fake = FakeWechat::start().await;
    let app = spawn_app_with(fake.settings(Settings::default())).await;
    let csrf = app.login_admin("menu-admin").await;
    fake.script(CREATE_PATH, json!({"errcode": 40164, "errmsg": "invalid ip 1.2.3.4, not in whitelist"}));
    let (status, page) = app.admin_post("/admin/menu", &[("csrf", &csrf), ("action", "push")]).await;
    assert_eq!(status, 502);
    assert!(page.contains("推送失败") && page.contains("IP 不在公众号的 IP 白名单中"), "{page}");

    // Six activities do not fit under one button.
    let mut form = vec![("csrf".to_string(), csrf.clone()), ("action".into(), "preview".into())];
    for i in 0..6 {
        let a = app.activity(&format!("a{i}"), 10, Window::Open).await;
        form.push((format!("activity_{}", a.id), "1".into()));
    }
    let resp = app.http.post(app.url("/admin/menu")).form(&form).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("最多放 5 个活动"));

    // Without WECHAT_APPID / WECHAT_SECRET: a clear sentence, not a crash.
    let bare = spawn_app_with(Settings::default()).await;
    let csrf = bare.login_admin("menu-admin").await;
    let page = bare.get("/admin/menu").await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("WECHAT_APPID"));
    let (status, page) = bare.admin_post("/admin/menu", &[("csrf", &csrf), ("action", "push")]).await;
    assert_eq!(status, 502);
    assert!(page.contains("WECHAT_SECRET"), "{page}");
}
