//! The admin console over HTTP: login, CSRF, the activity rules of SPEC §5,
//! poster uploads. Login under attack is in `admin_login`.

use crate::common::{admin::PASSWORD, fixtures::Window, spawn_app, wx};

pub(crate) fn activity_form<'a>(csrf: &'a str, key: &'a str, capacity: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("csrf", csrf),
        ("key", key),
        ("name", "新年音乐会"),
        ("place", "新清华学堂"),
        ("description", "欢迎大家"),
        ("book_start", "2030-01-01T12:00"),
        ("book_end", "2030-01-02T12:00"),
        ("start_at", "2030-01-03T19:00"),
        ("end_at", "2030-01-03T21:00"),
        ("capacity", capacity),
    ]
}

fn with<'a>(mut form: Vec<(&'a str, &'a str)>, field: &'a str, value: &'a str) -> Vec<(&'a str, &'a str)> {
    for pair in form.iter_mut() {
        if pair.0 == field {
            pair.1 = value;
        }
    }
    form
}

#[tokio::test]
async fn pages_need_a_login_and_a_login_gets_a_fresh_session() {
    let app = spawn_app().await;
    let resp = app.get("/admin").await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/admin/login");
    assert_eq!(app.get("/admin/activities/new").await.status(), 303);

    app.add_admin("alice").await;
    let wrong = app.admin_post("/admin/login", &[("username", "alice"), ("password", "nope")]).await;
    assert_eq!(wrong.0, 401);
    assert!(wrong.1.contains("用户名或密码错误") && wrong.1.contains("value=\"alice\""), "keeps the username");

    // A session id planted before login is not the one after it.
    let planted = reqwest::header::HeaderValue::from_static("wt_admin=planted-value");
    let resp = app
        .http
        .post(app.url("/admin/login"))
        .header("cookie", planted)
        .form(&[("username", "alice"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let set_cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(set_cookie.starts_with("wt_admin=") && !set_cookie.contains("planted"), "{set_cookie}");
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"), "{set_cookie}");
    let stored: String = sqlx::query_scalar("SELECT id FROM admin_sessions").fetch_one(&app.pool).await.unwrap();
    assert!(!set_cookie.contains(&stored), "the database keeps only a hash of the cookie");

    let page = app.get("/admin").await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("alice"));

    // Logout ends the session.
    let csrf = app.csrf_token().await;
    assert_eq!(app.admin_post("/admin/logout", &[("csrf", &csrf)]).await.0, 303);
    assert_eq!(app.get("/admin").await.status(), 303);
    assert_eq!(app.count("SELECT count(*) FROM admin_sessions").await, 0);
}

#[tokio::test]
async fn cross_origin_and_tokenless_posts_are_refused() {
    let app = spawn_app().await;
    let csrf = app.login_admin("dave").await;
    let form = activity_form(&csrf, "concert", "100");
    let resp = app
        .http
        .post(app.url("/admin/activities"))
        .header("origin", "https://evil.example")
        .header("sec-fetch-site", "cross-site")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let tokenless = with(form.clone(), "csrf", "");
    assert_eq!(app.admin_post("/admin/activities", &tokenless).await.0, 403);
    let forged = with(form.clone(), "csrf", "forged-token");
    assert_eq!(app.admin_post("/admin/activities", &forged).await.0, 403);
    assert_eq!(app.count("SELECT count(*) FROM activities").await, 0);
    // Same-origin with the token works.
    let resp = app
        .http
        .post(app.url("/admin/activities"))
        .header("origin", app.base.clone())
        .header("sec-fetch-site", "same-origin")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(app.count("SELECT count(*) FROM activities").await, 1);
}

#[tokio::test]
async fn each_edit_rule_is_enforced_with_a_field_error_that_keeps_what_was_typed() {
    let app = spawn_app().await;
    let csrf = app.login_admin("erin").await;
    let form = activity_form(&csrf, "gala", "100");

    // Creation refusals: times out of order, capacity 0, bad key, unreadable time.
    for (field, value, message) in [
        ("book_end", "2029-12-31T12:00", "抢票结束时间应晚于抢票开始时间"),
        ("start_at", "2030-01-01T18:00", "活动开始时间不能早于抢票结束时间"),
        ("end_at", "2030-01-03T18:00", "活动结束时间应晚于开始时间"),
        ("capacity", "0", "票数应在 1 到 1000000 之间"),
        ("capacity", "many", "请填写一个整数"),
        ("key", "Bad Key!", "只能用小写字母"),
        ("book_start", "next week", "YYYY-MM-DD HH:MM"),
    ] {
        let (status, page) = app.admin_post("/admin/activities", &with(form.clone(), field, value)).await;
        assert_eq!(status, 400, "{field}={value}");
        assert!(page.contains(message), "{field}={value}: {page}");
        assert!(page.contains("value=\"新年音乐会\""), "keeps what was typed");
    }
    assert_eq!(app.count("SELECT count(*) FROM activities").await, 0);

    assert_eq!(app.admin_post("/admin/activities", &form).await.0, 303);
    let id: i64 =
        sqlx::query_scalar("SELECT id FROM activities WHERE key = 'gala'").fetch_one(&app.pool).await.unwrap();
    let path = format!("/admin/activities/{id}");
    // A second activity may not take the same key.
    let (status, page) = app.admin_post("/admin/activities", &form).await;
    assert_eq!(status, 400);
    assert!(page.contains("已被使用"), "{page}");

    // While a draft, the key and booking start may change.
    let (status, page) = app.admin_post(&path, &with(form.clone(), "key", "gala2")).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("已保存"));
    let form = with(form, "key", "gala2");

    // Publish; then the key and booking start are fixed.
    assert_eq!(app.admin_post(&format!("{path}/publish"), &[("csrf", &csrf)]).await.0, 303);
    let (status, page) = app.admin_post(&path, &with(form.clone(), "key", "gala3")).await;
    assert_eq!(status, 400);
    assert!(page.contains("活动发布后不能再改代号"));
    let (status, page) = app.admin_post(&path, &with(form.clone(), "book_start", "2030-01-01T11:00")).await;
    assert_eq!(status, 400);
    assert!(page.contains("活动发布后不能再改抢票开始时间"));

    // Capacity never below what is booked: open booking and book 3 tickets.
    sqlx::query("UPDATE activities SET book_start = now() - interval '1 hour', book_end = now() + interval '1 hour' WHERE id = $1")
        .bind(id)
        .execute(&app.pool)
        .await
        .unwrap();
    for openid in app.bound_students(9, 3).await {
        assert!(matches!(app.say(&wx::click(&openid, &format!("BOOK_{id}"))).await, wx::Reply::News { .. }));
    }
    let edit_page = app.get(&path).await.text().await.unwrap();
    let value = |name: &str| {
        let marker = format!("name=\"{name}\" type=\"datetime-local\" value=\"");
        let start = edit_page.find(&marker).unwrap() + marker.len();
        edit_page[start..].split('"').next().unwrap().to_string()
    };
    let (bs, be) = (value("book_start"), value("book_end"));
    let live = with(with(form.clone(), "book_start", &bs), "book_end", &be);
    let (status, page) = app.admin_post(&path, &with(live.clone(), "capacity", "2")).await;
    assert_eq!(status, 400);
    assert!(page.contains("已经抢出 3 张票"), "{page}");
    // Exactly the booked number is fine, and then it is sold out.
    let (status, page) = app.admin_post(&path, &with(live.clone(), "capacity", "3")).await;
    assert_eq!(status, 200, "{page}");
    let late = &app.bound_students(10, 1).await[0];
    assert!(app.say(&wx::click(late, &format!("BOOK_{id}"))).await.text().contains("票已经抢完"));
    // Raising it frees places at once.
    assert_eq!(app.admin_post(&path, &with(live, "capacity", "4")).await.0, 200);
    assert!(matches!(app.say(&wx::click(late, &format!("BOOK_{id}"))).await, wx::Reply::News { .. }));

    // The list shows booked / capacity; archived cannot be published again.
    let list = app.get("/admin").await.text().await.unwrap();
    assert!(list.contains("4 / 4"), "{list}");
    assert_eq!(app.admin_post(&format!("{path}/archive"), &[("csrf", &csrf)]).await.0, 303);
    let (status, page) = app.admin_post(&format!("{path}/publish"), &[("csrf", &csrf)]).await;
    assert_eq!(status, 400);
    assert!(page.contains("已归档"), "{page}");
    assert_eq!(app.count(&format!("SELECT count(*) FROM activities WHERE id = {id} AND status = 'archived'")).await, 1);

    // Every action is in the audit log.
    let audit = app.count("SELECT count(*) FROM audit_log WHERE actor = 'erin'").await;
    assert!(audit >= 6, "{audit}");
}

#[tokio::test]
async fn posters_are_checked_by_content_and_size_and_served_to_every_page() {
    let app = spawn_app().await;
    let csrf = app.login_admin("frank").await;
    let a = app.activity("poster", 10, Window::Open).await;
    let upload = |bytes: Vec<u8>, name: &'static str| {
        let form = reqwest::multipart::Form::new()
            .text("csrf", csrf.clone())
            .part("poster", reqwest::multipart::Part::bytes(bytes).file_name(name).mime_str("image/png").unwrap());
        let req = app.http.post(app.url(&format!("/admin/activities/{}/poster", a.id))).multipart(form);
        async move {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap_or_default())
        }
    };
    let (status, page) = upload(b"just some text, honestly".to_vec(), "poster.png").await;
    assert_eq!(status, 400);
    assert!(page.contains("只能上传 PNG、JPEG、WebP 或 GIF"), "{page}");
    let mut huge = PNG.to_vec();
    huge.resize(6 * 1024 * 1024, 0);
    let (status, _) = upload(huge, "huge.png").await;
    assert!(status == 400 || status == 413, "{status}");
    assert_eq!(app.count("SELECT count(*) FROM images").await, 0);

    let (status, _) = upload(PNG.to_vec(), "ok.png").await;
    assert_eq!(status, 303);
    let poster: String = sqlx::query_scalar("SELECT poster_id::text FROM activities WHERE id = $1")
        .bind(a.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let image = app.get(&format!("/images/{poster}")).await;
    assert_eq!(image.status(), 200);
    assert_eq!(image.headers()["content-type"], "image/png");
    assert!(image.headers()["cache-control"].to_str().unwrap().contains("max-age"));
    assert_eq!(image.bytes().await.unwrap().as_ref(), PNG);
    for page in [format!("/activities/{}", a.id), format!("/admin/activities/{}", a.id)] {
        assert!(app.get(&page).await.text().await.unwrap().contains(&format!("/images/{poster}")), "{page}");
    }
}

/// A 1×1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4, 0x89, 0x00, 0x00, 0x00, 0x0A, 0x49,
    0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0x00, 0x01, 0x00, 0x00, 0x05, 0x00, 0x01, 0x0D, 0x0A, 0x2D, 0xB4, 0x00, 0x00,
    0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
];

#[tokio::test]
async fn the_roster_page_imports_a_csv_and_the_audit_log_shows_who_did_what() {
    let app = spawn_app().await;
    let csrf = app.login_admin("grace").await;
    let upload = |bytes: Vec<u8>| {
        let form = reqwest::multipart::Form::new()
            .text("csrf", csrf.clone())
            .part("roster", reqwest::multipart::Part::bytes(bytes).file_name("roster.csv"));
        let req = app.http.post(app.url("/admin/roster")).multipart(form);
        async move {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    let (status, page) =
        upload("\u{feff}student_id,name\n2024010001,张三\n2024010002,李四\n".as_bytes().to_vec()).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("<strong id=\"roster-count\">2</strong>"), "{page}");
    let (status, page) = upload(b"2024010003\n".to_vec()).await;
    assert_eq!(status, 400);
    assert!(page.contains("第 1 行应有两列"), "{page}");
    let (status, _) = upload(vec![0xff, 0xfe, 0x00]).await;
    assert_eq!(status, 400);
    assert_eq!(app.count("SELECT count(*) FROM roster").await, 2, "refused files change nothing");

    let audit = app.get("/admin/audit").await.text().await.unwrap();
    assert!(audit.contains("grace") && audit.contains("导入名单") && audit.contains("登录"), "{audit}");
}

#[tokio::test]
async fn a_login_returns_to_the_page_asked_for_and_never_off_site() {
    let app = spawn_app().await;
    app.add_admin("ivy").await;
    let resp = app.get("/admin/simulator?student=simulator-a").await;
    assert_eq!(resp.status(), 303);
    let login = resp.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(login, "/admin/login?next=%2Fadmin%2Fsimulator%3Fstudent%3Dsimulator-a");
    let page = app.get(&login).await.text().await.unwrap();
    let next = crate::common::admin::hidden_value(&page, "next").expect("the form remembers where to go");
    assert_eq!(next, "/admin/simulator?student=simulator-a");

    let log_in = |next: String| {
        let app = &app;
        async move {
            let form = [("username", "ivy"), ("password", PASSWORD), ("next", next.as_str())];
            let resp = app.http.post(app.url("/admin/login")).form(&form).send().await.unwrap();
            assert_eq!(resp.status(), 303);
            resp.headers()["location"].to_str().unwrap().to_string()
        }
    };
    assert_eq!(log_in(next).await, "/admin/simulator?student=simulator-a");
    for elsewhere in ["//evil.example/admin", "https://evil.example/", "/\\evil.example"] {
        assert_eq!(log_in(elsewhere.into()).await, "/admin", "{elsewhere}");
    }
}
