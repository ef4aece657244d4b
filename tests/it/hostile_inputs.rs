//! Inputs that cannot take anything down (issue 19, point 6), attacked over
//! HTTP and the shell: times out of any sane range, extreme times written
//! straight into the database, over-long text in every field, a flood of
//! over-long scans at the door, and posters that are not clean images.

use std::io::Cursor;

use serde_json::Value;

use crate::admin_console::activity_form;
use wechat_ticket::links;

use crate::common::{
    Settings, TestApp,
    fake_wechat::FakeWechat,
    fixtures::{Window, ticket_code},
    spawn_app, spawn_app_with, wx,
};

/// A 100 KB field: far past any limit, well under the body limit of a form.
fn huge() -> String {
    "x".repeat(100 * 1024)
}

fn with<'a>(mut form: Vec<(&'a str, &'a str)>, field: &'a str, value: &'a str) -> Vec<(&'a str, &'a str)> {
    for pair in form.iter_mut().filter(|p| p.0 == field) {
        pair.1 = value;
    }
    form
}

/// The words under a form field (`<span class="error" id="{field}-error">…</span>`).
fn field_error<'a>(page: &'a str, field: &str) -> &'a str {
    let marker = format!("id=\"{field}-error\">");
    let start = page.find(&marker).map_or(page.len(), |at| at + marker.len());
    page[start..].split('<').next().unwrap_or_default()
}

/// `wechat-ticket activity create …` against the test's database.
fn shell_create(app: &TestApp, key: &str, name: &str, end: &str) -> std::process::Output {
    tokio::task::block_in_place(|| {
        std::process::Command::new(env!("CARGO_BIN_EXE_wechat-ticket"))
            .env("DATABASE_URL", app.database_url())
            .env("RUST_LOG", "warn")
            .args(["activity", "create", key, "--name", name, "--place", "礼堂", "--capacity", "5"])
            .args(["--book-start", "2030-01-01 12:00", "--book-end", "2030-01-02 12:00"])
            .args(["--start", "2030-01-03 19:00", "--end", end])
            .output()
            .unwrap()
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn times_outside_2000_to_2100_are_field_errors_in_the_form_and_the_shell() {
    let app = spawn_app().await;
    let csrf = app.login_admin("erin").await;
    let form = activity_form(&csrf, "gala", "100");
    // In order, so only the range can refuse them; 9999-12-31 late evening is past year 9999 in Shanghai.
    for (field, value) in [
        ("end_at", "9999-12-31T23:30"),
        ("end_at", "2101-01-01T00:00"),
        ("book_start", "1999-12-31T23:59"),
        ("book_start", "0001-01-01T00:00"),
    ] {
        let (status, page) = app.admin_post("/admin/activities", &with(form.clone(), field, value)).await;
        assert_eq!(status, 400, "{field}={value}");
        assert_eq!(field_error(&page, field), "时间须在 2000 年到 2100 年之间", "{field}={value}");
        assert!(page.contains(&format!("value=\"{value}\"")), "keeps what was typed");
    }
    assert_eq!(app.count("SELECT count(*) FROM activities").await, 0);

    // An edit is held to the same range, and changes nothing.
    assert_eq!(app.admin_post("/admin/activities", &form).await.0, 303);
    let id: i64 = sqlx::query_scalar("SELECT id FROM activities").fetch_one(&app.pool).await.unwrap();
    let (status, page) =
        app.admin_post(&format!("/admin/activities/{id}"), &with(form, "end_at", "9999-12-31T23:30")).await;
    assert_eq!(status, 400);
    assert_eq!(field_error(&page, "end_at"), "时间须在 2000 年到 2100 年之间");
    let year: f64 = sqlx::query_scalar("SELECT extract(year FROM end_at)::float8 FROM activities")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(year, 2030.0);

    // The shell says which flag, and stores nothing.
    let out = shell_create(&app, "shell", "命令行", "9999-12-31 23:30");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--end") && stderr.contains("2000 to 2100"), "{stderr}");
    assert_eq!(app.count("SELECT count(*) FROM activities WHERE key = 'shell'").await, 0);
    assert!(shell_create(&app, "shell", "命令行", "2030-01-03 21:00").status.success());
}

/// Signs `client` in to the `/m` pages as `openid` through WeChat web authorization.
async fn sign_in_m(app: &TestApp, fake: &FakeWechat, client: &reqwest::Client, openid: &str) {
    fake.oauth_as(openid);
    let first = client.get(app.url("/m/activities")).send().await.unwrap();
    assert_eq!(first.status(), 303);
    let authorize = first.headers()["location"].to_str().unwrap().to_string();
    let back = client.get(authorize.split('#').next().unwrap()).send().await.unwrap();
    let callback = back.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(client.get(&callback).send().await.unwrap().status(), 303);
}

#[tokio::test(flavor = "multi_thread")]
async fn extreme_times_written_into_the_database_break_no_page() {
    let fake = FakeWechat::start().await;
    let app = spawn_app_with(fake.oauth_settings(Settings::default())).await;
    app.login_admin("organiser").await;
    let open = app.activity("forever", 10, Window::Open).await;
    let far = app.activity("far", 10, Window::Open).await;
    let ancient = app.activity("ancient", 10, Window::Closed).await;
    // What PostgreSQL takes and a form never would: 4713 BC, a Shanghai evening that is
    // past 9999 there, the last year PostgreSQL holds, infinity; and the year −4000.
    for (id, times) in [
        (open.id, ["4713-01-01 00:00:00+00 BC", "9999-12-31 23:30:00+00", "294276-12-30 00:00:00+00", "infinity"]),
        (far.id, ["-infinity", "294276-01-01 00:00:00+00", "294276-06-01 00:00:00+00", "294276-12-31 23:59:59+00"]),
        (
            ancient.id,
            [
                "4001-01-01 00:00:00+00 BC",
                "4001-01-02 00:00:00+00 BC",
                "4001-01-03 00:00:00+00 BC",
                "2001-01-01 00:00:00+00",
            ],
        ),
    ] {
        sqlx::query(
            "UPDATE activities SET book_start = $2::timestamptz, book_end = $3::timestamptz, \
             start_at = $4::timestamptz, end_at = $5::timestamptz WHERE id = $1",
        )
        .bind(id)
        .bind(times[0])
        .bind(times[1])
        .bind(times[2])
        .bind(times[3])
        .execute(&app.pool)
        .await
        .unwrap();
    }

    // 抢啥 over signed XML lists both open ones; a student books one and 查票 shows it.
    let student = "o_extreme";
    app.bind(student, "2024019999").await;
    let list = app.say(&wx::text(student, "抢啥")).await;
    let text = list.text();
    assert!(text.contains(&open.name) && text.contains(&far.name), "{text}");
    assert!(text.contains("294276"), "the far closing time is shown as it is: {text}");
    let ticket_url = match app.say(&wx::text(student, "抢票 forever")).await {
        wx::Reply::News { url, .. } => url,
        other => panic!("{other:?}"),
    };
    let mine = app.say(&wx::text(student, "查票")).await;
    assert!(mine.text().contains(&open.name), "{}", mine.text());

    // The console: the list, each activity's page, the door.
    let admin = app.get("/admin").await;
    assert_eq!(admin.status(), 200);
    let admin = admin.text().await.unwrap();
    for a in [&open, &far, &ancient] {
        assert!(admin.contains(&a.name), "{admin}");
    }
    assert!(admin.contains("294276-") && admin.contains("-4000-"), "shown as stored: {admin}");
    for a in [&open, &far, &ancient] {
        for path in [format!("/admin/activities/{}", a.id), format!("/admin/activities/{}/checkin", a.id)] {
            let resp = app.get(&path).await;
            assert_eq!(resp.status(), 200, "{path}");
            assert!(resp.text().await.unwrap().contains(&a.name), "{path}");
        }
    }

    // The student's pages: each activity, the ticket, the list from the menu.
    let anonymous = reqwest::Client::new();
    for a in [&open, &far, &ancient] {
        let resp = anonymous.get(app.url(&format!("/activities/{}", a.id))).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{}", a.key);
        assert!(resp.text().await.unwrap().contains(&a.name));
    }
    let ticket = anonymous.get(&ticket_url).send().await.unwrap();
    assert_eq!(ticket.status(), 200);
    assert!(ticket.text().await.unwrap().contains("294276-"));
    let phone =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).cookie_store(true).build().unwrap();
    sign_in_m(&app, &fake, &phone, student).await;
    for path in ["/m/activities", "/m/tickets"] {
        let resp = phone.get(app.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert!(resp.text().await.unwrap().contains(&open.name), "{path}");
    }
    let export = app.get(&format!("/admin/activities/{}/export.csv", open.id)).await;
    assert_eq!(export.status(), 200);
    assert!(String::from_utf8_lossy(&export.bytes().await.unwrap()).contains(&ticket_code(&ticket_url)));
}

#[tokio::test(flavor = "multi_thread")]
async fn over_long_text_in_any_field_is_refused_and_nothing_is_stored() {
    let app = spawn_app().await;
    let csrf = app.login_admin("organiser").await;
    let huge = huge();

    // The activity's text fields, by form and by shell.
    let long_name = "长".repeat(101);
    let long_description = "长".repeat(5001);
    let form = activity_form(&csrf, "gala", "100");
    for (field, value, words) in [
        ("name", long_name.as_str(), "最多 100 个字"),
        ("name", huge.as_str(), "最多 100 个字"),
        ("place", huge.as_str(), "最多 100 个字"),
        ("description", long_description.as_str(), "最多 5000 个字"),
        ("key", huge.as_str(), "最多 32 个字符"),
    ] {
        let (status, page) = app.admin_post("/admin/activities", &with(form.clone(), field, value)).await;
        assert_eq!(status, 400, "{field}");
        assert!(field_error(&page, field).contains(words), "{field}: {}", field_error(&page, field));
    }
    let out = shell_create(&app, "shell", &"长".repeat(30_000), "2030-01-03 21:00");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("最多 100 个字"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(app.count("SELECT count(*) FROM activities").await, 0);

    // A gate's name.
    let a = app.activity("show", 10, Window::Open).await;
    let path = format!("/admin/activities/{}/checkin-links", a.id);
    let (status, page) = app.admin_post(&path, &[("csrf", &csrf), ("gate", &huge), ("hours", "12")]).await;
    assert_eq!(status, 400);
    assert!(page.contains("入口名最多 32 个字"), "{page}");
    assert_eq!(app.count("SELECT count(*) FROM checkin_links").await, 0);

    // The login form: refused before the throttle writes anything down, and not shown back.
    let stranger = reqwest::Client::new();
    for (username, password) in [(huge.as_str(), "x"), ("someone", huge.as_str())] {
        let resp =
            stranger.post(app.url("/admin/login")).form(&[("username", username), ("password", password)]).send();
        let resp = resp.await.unwrap();
        assert_eq!(resp.status(), 400);
        let page = resp.text().await.unwrap();
        assert!(
            page.contains("用户名最多 64 个字符") && !page.contains(&huge[..100]),
            "{}",
            &page[..page.len().min(2000)]
        );
    }
    assert_eq!(app.count("SELECT count(*) FROM login_failures").await, 0);

    // The bind form: an over-long name binds nothing (it was silently dropped before).
    let link = wx::Reply::parse(&app.post_wechat(&wx::text("o_long", "绑定")).await.1).links().remove(0);
    for (student_id, name) in
        [("2024010001", "名".repeat(65)), ("2024010001", huge.clone()), (huge.as_str(), String::new())]
    {
        let (status, page) = app.submit_bind(&link, student_id, &name).await;
        assert_eq!(status, 400, "{page}");
        assert!(page.contains("姓名最多 64 个字") && !page.contains(&huge[..100]), "{page}");
    }
    assert_eq!(app.count("SELECT count(*) FROM students WHERE student_id IS NOT NULL").await, 0);
    let (status, page) = app.submit_bind(&link, "2024010001", "张三").await;
    assert!(status == 200 && page.contains("绑定成功"), "the link still works: {page}");

    // The student-ID pages: said, not looked up, not shown back.
    let long_query = "x".repeat(2000);
    let resp = app.http.get(app.url("/admin/students")).query(&[("student_id", &long_query)]).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let page = resp.text().await.unwrap();
    assert!(page.contains("学号最多 32 个字符") && !page.contains(&huge[..100]));
    let (status, page) = app.admin_post("/admin/students/unbind", &[("csrf", &csrf), ("student_id", &huge)]).await;
    assert_eq!(status, 400);
    assert!(page.contains("学号最多 32 个字符") && !page.contains(&huge[..100]));

    // The simulator: a tapped button's name is kept in the chat, so it has a limit too.
    let resp = app.http.post(app.url("/admin/simulator/students")).form(&[("csrf", &csrf)]).send().await.unwrap();
    let openid = resp.headers()["location"].to_str().unwrap().rsplit('=').next().unwrap().to_string();
    let before = app.count("SELECT count(*) FROM simulator_messages").await;
    let tap = [("csrf", csrf.as_str()), ("student", &openid), ("click", "HELP"), ("label", &huge)];
    let (status, _) = app.admin_post("/admin/simulator/chat", &tap).await;
    assert_eq!(status, 400);
    assert_eq!(app.count("SELECT count(*) FROM simulator_messages").await, before);

    // A test notification to an "openid" longer than any.
    let to = format!("simulator-{huge}");
    let (status, _) =
        app.admin_post("/admin/notifications/test", &[("csrf", &csrf), ("openid", &to), ("text", "hi")]).await;
    assert_eq!(status, 400);
    assert_eq!(app.count("SELECT count(*) FROM notifications").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_long_scans_stores_nothing_and_the_gates_status_stays_small() {
    let app = spawn_app().await;
    let csrf = app.login_admin("organiser").await;
    let a = app.activity("show", 10, Window::Open).await;
    let gate = crate::door::create_link(&app, &csrf, a.id, "东门").await;
    let student = app.bound_students(50, 1).await.remove(0);
    let code = match app.say(&wx::click(&student, &format!("BOOK_{}", a.id))).await {
        wx::Reply::News { url, .. } => ticket_code(&url),
        other => panic!("{other:?}"),
    };
    let volunteer = reqwest::Client::new();
    let admin_page = app.url(&format!("/admin/activities/{}/checkin", a.id));
    let endpoints = [
        (&app.http, admin_page.clone()),
        (&app.http, format!("{admin_page}/scan")),
        (&volunteer, gate.clone()),
        (&volunteer, format!("{gate}/scan")),
    ];

    // 100 KB in the code field, with the ticket's code in it: 400 at every endpoint, and nothing at all written.
    let flood = format!("{code}{}", huge());
    for (client, url) in &endpoints {
        let resp = client.post(url).form(&[("csrf", csrf.as_str()), ("code", &flood), ("nonce", &links::nonce())]);
        let resp = resp.send().await.unwrap();
        assert_eq!(resp.status(), 400, "{url}");
        assert!(resp.text().await.unwrap().contains("超过 512 个字符"), "{url}");
    }
    assert_eq!(app.count("SELECT count(*) FROM checkin_scans").await, 0);
    let status: String = sqlx::query_scalar("SELECT status FROM tickets WHERE code = $1")
        .bind(&code)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(status, "valid");

    // Just under the limit, many times over: answered, but never echoed back.
    for i in 0..12 {
        let junk = format!("{i:02}{}", "是".repeat(500));
        let resp = volunteer.post(format!("{gate}/scan")).form(&[("code", junk.as_str()), ("nonce", &links::nonce())]);
        let json: Value = resp.send().await.unwrap().json().await.unwrap();
        assert_eq!(json["verdict"]["headline"], "没有这张票", "{json}");
    }
    for (client, url) in [(&volunteer, format!("{gate}/status")), (&app.http, format!("{admin_page}/status"))] {
        let body = client.get(url).send().await.unwrap().text().await.unwrap();
        assert!(body.len() < 4096, "{} bytes: {body}", body.len());
        assert!(!body.contains("是是"), "{body}");
    }
    let page = app.get(&format!("/admin/activities/{}/checkin", a.id)).await.text().await.unwrap();
    assert!(page.contains("maxlength=\"512\""), "the field says its limit");
}

/// A CRC-32 (PNG's), to craft PNG files by hand.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    png.extend((data.len() as u32).to_be_bytes());
    let start = png.len();
    png.extend(kind);
    png.extend(data);
    let crc = crc32(&png[start..]);
    png.extend(crc.to_be_bytes());
}

/// A well-formed PNG that claims `width`×`height` RGBA pixels in a few bytes
/// of deflate: what a decompression bomb looks like to a decoder's first look.
fn claimed_png(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut header = width.to_be_bytes().to_vec();
    header.extend(height.to_be_bytes());
    header.extend([8, 6, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &header);
    chunk(&mut png, b"IDAT", &[0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    chunk(&mut png, b"IEND", &[]);
    png
}

/// A small picture in `format`, made as a phone or an editor would.
fn picture(format: image::ImageFormat) -> Vec<u8> {
    let pixels = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([(x * 4) as u8, (y * 5) as u8, 128]));
    let mut bytes = Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(pixels).write_to(&mut bytes, format).unwrap();
    bytes.into_inner()
}

#[tokio::test(flavor = "multi_thread")]
async fn posters_are_decoded_before_they_are_stored_and_a_trick_file_is_refused() {
    let app = spawn_app().await;
    let csrf = app.login_admin("frank").await;
    let a = app.activity("poster", 10, Window::Open).await;
    let upload = |bytes: Vec<u8>| {
        let form = reqwest::multipart::Form::new().text("csrf", csrf.clone()).part(
            "poster",
            reqwest::multipart::Part::bytes(bytes).file_name("poster.png").mime_str("image/png").unwrap(),
        );
        let req = app.http.post(app.url(&format!("/admin/activities/{}/poster", a.id))).multipart(form);
        async move {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap_or_default())
        }
    };
    let png = picture(image::ImageFormat::Png);
    let gif = picture(image::ImageFormat::Gif);
    let jpeg = picture(image::ImageFormat::Jpeg);
    let with_tail = |image: &[u8], tail: &[u8]| [image, tail].concat();
    // The classic GIF/JS polyglot: `GIF89a/*` opens a script comment, the trailer `;` ends a statement.
    let mut gif_script = gif.clone();
    gif_script[6..8].copy_from_slice(b"/*");
    gif_script.extend_from_slice(b"*/=alert(document.domain);");
    for (what, bytes, words) in [
        ("PNG then a page", with_tail(&png, b"<html><script>alert(1)</script></html>"), "夹带了别的数据"),
        ("GIF then a script", with_tail(&gif, b"/*<script>alert(1)</script>*/"), "夹带了别的数据"),
        ("JPEG then a ZIP", with_tail(&jpeg, b"PK\x03\x04 a jar rides along"), "夹带了别的数据"),
        ("GIF that is a script", gif_script, "10799×48 像素"),
        ("PNG cut off", png[..png.len() - 30].to_vec(), "不完整或已损坏"),
        ("JPEG cut off", jpeg[..jpeg.len() / 2].to_vec(), "不完整或已损坏"),
        ("50,000² bomb", claimed_png(50_000, 50_000), "50000×50000 像素，每边最多 8000 像素"),
        ("8,000² RGBA bomb", claimed_png(8000, 8000), "内存太多"),
        ("PNG header on a page", with_tail(b"\x89PNG\r\n\x1a\n", b"<script>alert(1)</script>"), "不完整或已损坏"),
    ] {
        let (status, page) = upload(bytes).await;
        assert_eq!(status, 400, "{what}");
        assert!(page.contains(words), "{what}: {page}");
    }
    assert_eq!(app.count("SELECT count(*) FROM images").await, 0, "nothing refused is stored");
    assert_eq!(app.count("SELECT count(*) FROM activities WHERE poster_id IS NOT NULL").await, 0);

    // Clean pictures of every accepted type are stored and served byte for byte.
    for (format, content_type) in [
        (image::ImageFormat::Png, "image/png"),
        (image::ImageFormat::Jpeg, "image/jpeg"),
        (image::ImageFormat::Gif, "image/gif"),
        (image::ImageFormat::WebP, "image/webp"),
    ] {
        let bytes = picture(format);
        let (status, page) = upload(bytes.clone()).await;
        assert_eq!(status, 303, "{content_type}: {page}");
        let poster: String = sqlx::query_scalar("SELECT poster_id::text FROM activities WHERE id = $1")
            .bind(a.id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        let served = app.get(&format!("/images/{poster}")).await;
        assert_eq!(served.headers()["content-type"], content_type);
        assert_eq!(served.bytes().await.unwrap().as_ref(), bytes.as_slice(), "{content_type}");
    }
}
