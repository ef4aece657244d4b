//! The live QR: a ticket code that changes every 30 s, so a screenshot passed
//! around does not get a second person in; off by default.

use std::time::Duration;

use time::OffsetDateTime;
use wechat_ticket::{bot, links};

use crate::common::{TestApp, fixtures::Window, spawn_app, wx};

/// Books over WeChat; (ticket id, the holder's ticket page URL) per student.
async fn book(app: &TestApp, openids: &[String], activity_id: i64) -> Vec<(i64, String)> {
    let mut booked = Vec::new();
    for openid in openids {
        let url = match app.say(&wx::click(openid, &format!("BOOK_{activity_id}"))).await {
            wx::Reply::News { url, .. } => url,
            other => panic!("{other:?}"),
        };
        let code = crate::common::fixtures::ticket_code(&url);
        let id: i64 = sqlx::query_scalar("SELECT id FROM tickets WHERE code = $1")
            .bind(&code)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        booked.push((id, bot::ticket_url(&app.state, openid, &code)));
    }
    booked
}

async fn set_live(app: &TestApp, activity_id: i64) {
    sqlx::query("UPDATE activities SET live_qr = true WHERE id = $1")
        .bind(activity_id)
        .execute(&app.pool)
        .await
        .unwrap();
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// Waits out the last seconds of a step, so a test's "current" step is still
/// current when the server judges it.
async fn away_from_a_step_boundary() {
    let into = now().rem_euclid(links::LIVE_STEP_SECONDS);
    if into >= links::LIVE_STEP_SECONDS - 4 {
        tokio::time::sleep(Duration::from_secs((links::LIVE_STEP_SECONDS - into + 1) as u64)).await;
    }
}

/// Scans `input` at the admin check-in page; (green, the verdict's words).
async fn scan(app: &TestApp, csrf: &str, activity_id: i64, input: &str) -> (bool, String) {
    let path = format!("/admin/activities/{activity_id}/checkin");
    let nonce = links::nonce();
    let (status, page) = app.admin_post(&path, &[("csrf", csrf), ("code", input), ("nonce", &nonce)]).await;
    assert_eq!(status, 200, "{page}");
    let start = page.find("class=\"result").expect("a verdict");
    let text = &page[start..];
    let words = text[text.find('>').unwrap() + 1..text.find("</div>").unwrap()].replace("<small>", " ");
    (text.starts_with("class=\"result good\""), words.replace("</small>", ""))
}

async fn status_of(app: &TestApp, ticket_id: i64) -> String {
    sqlx::query_scalar("SELECT status FROM tickets WHERE id = $1").bind(ticket_id).fetch_one(&app.pool).await.unwrap()
}

fn live_url(app: &TestApp, ticket_id: i64, step: i64) -> String {
    app.url(&format!("/c/{}", links::live_credential(&app.state.secret_key, ticket_id, step)))
}

fn static_url(app: &TestApp, ticket_id: i64) -> String {
    app.url(&format!("/c/{}", links::checkin_credential(&app.state.secret_key, ticket_id)))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_door_takes_a_live_code_of_this_step_or_the_last_only() {
    let app = spawn_app().await;
    let csrf = app.login_admin("door").await;
    let live = app.activity("live", 10, Window::Open).await;
    set_live(&app, live.id).await;
    let students = app.bound_students(30, 6).await;
    let t = book(&app, &students, live.id).await;

    away_from_a_step_boundary().await;
    let step = links::live_step(now());
    let (good, text) = scan(&app, &csrf, live.id, &live_url(&app, t[0].0, step)).await;
    assert!(good && text.contains("检票成功"), "current step: {text}");
    let (good, text) = scan(&app, &csrf, live.id, &live_url(&app, t[1].0, step - 1)).await;
    assert!(good && text.contains("检票成功"), "previous step: {text}");

    // A screenshot a minute old, the static code, a code from the future: refused, nothing used.
    for (ticket, input) in [
        (t[2].0, live_url(&app, t[2].0, step - 2)),
        (t[3].0, static_url(&app, t[3].0)),
        (t[3].0, links::checkin_credential(&app.state.secret_key, t[3].0)),
        (t[4].0, live_url(&app, t[4].0, step + 1)),
    ] {
        let (good, text) = scan(&app, &csrf, live.id, &input).await;
        assert!(!good && text.contains("二维码已过期，请让同学刷新电子票"), "{input}: {text}");
        assert_eq!(status_of(&app, ticket).await, "valid", "{input}");
    }
    // The same live code shown twice is used, not accepted twice.
    let (good, text) = scan(&app, &csrf, live.id, &live_url(&app, t[0].0, step)).await;
    assert!(!good && text.contains("已检票"), "{text}");
    // A forged live code is no ticket at all.
    let forged = live_url(&app, t[5].0, step).replacen(&format!("{}.", t[5].0), &format!("{}.", t[4].0), 1);
    let (good, text) = scan(&app, &csrf, live.id, &forged).await;
    assert!(!good && text.contains("没有这张票"), "{text}");
    // Door staff typing a student ID is their own judgement, not a screenshot.
    let (good, _) = scan(&app, &csrf, live.id, "0003000002").await;
    assert!(good);
    assert_eq!(app.count("SELECT count(*) FROM tickets WHERE status = 'used'").await, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_live_qr_the_static_code_still_checks_in() {
    let app = spawn_app().await;
    let csrf = app.login_admin("door").await;
    let plain = app.activity("plain", 10, Window::Open).await;
    assert!(!plain.live_qr, "off by default");
    let students = app.bound_students(31, 2).await;
    let t = book(&app, &students, plain.id).await;
    let (good, text) = scan(&app, &csrf, plain.id, &static_url(&app, t[0].0)).await;
    assert!(good && text.contains("检票成功"), "{text}");
    // A live code left over from when the option was on still proves its ticket.
    let (good, text) = scan(&app, &csrf, plain.id, &live_url(&app, t[1].0, 1)).await;
    assert!(good, "{text}");

    // The page shows the static code and needs no script.
    let page = app.http.get(&t[0].1).send().await.unwrap().text().await.unwrap();
    assert!(!page.contains("<script") && !page.contains("data-live-qr") && !page.contains("http-equiv"), "{page}");
}

/// The inline SVG of a ticket page's (or a refresh's) QR code.
fn svg_in(page: &str) -> &str {
    let start = page.find("<svg").expect("an SVG QR code");
    &page[start..start + page[start..].find("</svg>").unwrap() + "</svg>".len()]
}

/// The QR code the ticket page draws for `url`.
fn qr_of(url: &str) -> String {
    qrcode::QrCode::new(url.as_bytes()).unwrap().render::<qrcode::render::svg::Color>().min_dimensions(240, 240).build()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_holders_page_shows_the_current_code_and_fetches_the_next() {
    let app = spawn_app().await;
    let csrf = app.login_admin("door").await;
    let live = app.activity("live", 10, Window::Open).await;
    set_live(&app, live.id).await;
    let students = app.bound_students(32, 1).await;
    let (id, holder_url) = book(&app, &students, live.id).await.remove(0);

    away_from_a_step_boundary().await;
    let step = links::live_step(now());
    let resp = app.http.get(&holder_url).send().await.unwrap();
    assert_eq!(resp.headers()["cache-control"], "private, no-store");
    let page = resp.text().await.unwrap();
    assert_eq!(svg_in(&page), svg_in(&qr_of(&live_url(&app, id, step))), "the QR is this step's live code");
    assert!(page.contains("<script src=\"/static/live-qr.js\" defer></script>"), "{page}");
    assert!(page.contains("<noscript><meta http-equiv=\"refresh\" content=\"20\"></noscript>"), "no-JS fallback");
    assert!(!page.contains("style="), "the CSP allows no inline style");

    // What the script fetches: the same kind of code, never cached.
    let refresh = page.split("data-live-qr=\"").nth(1).unwrap().split('"').next().unwrap().replace("&#38;", "&");
    assert!(refresh.starts_with("/tickets/"), "{refresh}");
    let resp = app.get(&refresh).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "image/svg+xml");
    assert_eq!(resp.headers()["cache-control"], "private, no-store");
    assert_eq!(resp.text().await.unwrap(), qr_of(&live_url(&app, id, links::live_step(now()))), "a whole SVG file");
    let script = app.get("/static/live-qr.js").await.text().await.unwrap();
    assert!(script.contains("data-live-qr") && script.contains("10000"), "refreshes every 10 s");

    // The code alone (no holder's link) shows no QR, and fetches none.
    let code = crate::common::fixtures::ticket_code(&holder_url);
    let bare = app.get(&format!("/tickets/{code}")).await.text().await.unwrap();
    assert!(!bare.contains("<svg") && bare.contains("请从公众号发给你的链接打开电子票"), "{bare}");
    assert_eq!(app.get(&format!("/tickets/{code}/live-qr")).await.status(), 403);
    let tampered = refresh.replacen("&s=", "&s=A", 1);
    assert_eq!(app.get(&tampered).await.status(), 403);

    // Scanned with WeChat, a live code opens the "show this at the door" page.
    let shown = app.http.get(live_url(&app, id, step)).send().await.unwrap();
    assert_eq!(shown.status(), 200);
    assert!(shown.text().await.unwrap().contains("入场凭证"));

    // Once used, there is no next code, and the page says so.
    let (good, _) = scan(&app, &csrf, live.id, &live_url(&app, id, links::live_step(now()))).await;
    assert!(good);
    assert_eq!(app.get(&refresh).await.status(), 404);
    let page = app.http.get(&holder_url).send().await.unwrap().text().await.unwrap();
    assert!(!page.contains("<svg") && page.contains("已检票"), "{page}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_turns_the_live_qr_on_and_off() {
    let app = spawn_app().await;
    let csrf = app.login_admin("organiser").await;
    let form = |key: &'static str, live: bool| {
        let mut form = vec![
            ("csrf", csrf.clone()),
            ("key", key.to_string()),
            ("name", "动态码专场".to_string()),
            ("place", "大礼堂".to_string()),
            ("book_start", "2030-01-01T12:00".to_string()),
            ("book_end", "2030-01-02T12:00".to_string()),
            ("start_at", "2030-01-03T19:00".to_string()),
            ("end_at", "2030-01-03T21:00".to_string()),
            ("capacity", "100".to_string()),
        ];
        if live {
            form.push(("live_qr", "on".to_string()));
        }
        form
    };
    let live_of = |key: &'static str| {
        let app = &app;
        async move {
            sqlx::query_scalar::<_, bool>("SELECT live_qr FROM activities WHERE key = $1")
                .bind(key)
                .fetch_one(&app.pool)
                .await
                .unwrap()
        }
    };
    let resp = app.http.post(app.url("/admin/activities")).form(&form("live", true)).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    let path = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(live_of("live").await);
    let page = app.get(&path).await.text().await.unwrap();
    assert!(page.contains("name=\"live_qr\" checked"), "{page}");

    let (status, page) =
        app.admin_post(&path, &form("live", false).iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>()).await;
    assert_eq!(status, 200, "{page}");
    assert!(!live_of("live").await);
    assert!(page.contains("name=\"live_qr\"") && !page.contains("name=\"live_qr\" checked"), "{page}");

    let resp = app.http.post(app.url("/admin/activities")).form(&form("plain", false)).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    assert!(!live_of("plain").await);

    // And from the shell.
    let created = tokio::task::block_in_place(|| {
        std::process::Command::new(env!("CARGO_BIN_EXE_wechat-ticket"))
            .env("DATABASE_URL", app.database_url())
            .env("RUST_LOG", "warn")
            .args(["activity", "create", "shell", "--name", "命令行", "--place", "礼堂", "--capacity", "5"])
            .args(["--book-start", "2030-01-01 12:00", "--book-end", "2030-01-02 12:00"])
            .args(["--start", "2030-01-03 19:00", "--end", "2030-01-03 21:00", "--live-qr"])
            .output()
            .unwrap()
    });
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    assert!(String::from_utf8_lossy(&created.stdout).contains("live QR"));
    assert!(live_of("shell").await);
}

/// One of the ways a scan reaches the door of an activity.
#[derive(Clone, Copy, Debug)]
enum Door {
    /// The admin's check-in page, as a form (no JavaScript, or a USB scanner).
    AdminForm,
    /// The admin's page's JSON endpoint: its camera, and WeChat's 扫一扫 (JS-SDK) inside WeChat.
    AdminScan,
    /// A volunteer's link, as a form.
    GateForm,
    /// A volunteer's link's JSON endpoint (camera and JS-SDK scanner).
    GateScan,
}

const DOORS: [Door; 4] = [Door::AdminForm, Door::AdminScan, Door::GateForm, Door::GateScan];

const WECHAT_UA: &str = "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Mobile MicroMessenger/8.0.47.2560";

/// Posts `input` by hand through `door`, as the page (or WeChat's scanner) would;
/// (green, the verdict's words).
async fn scan_at(app: &TestApp, csrf: &str, activity_id: i64, gate: &str, door: Door, input: &str) -> (bool, String) {
    let nonce = links::nonce();
    // A volunteer has no admin session: a client without the admin's cookie.
    let volunteer = reqwest::Client::new();
    let (request, json) = match door {
        Door::AdminForm => (app.http.post(app.url(&format!("/admin/activities/{activity_id}/checkin"))), false),
        Door::AdminScan => (app.http.post(app.url(&format!("/admin/activities/{activity_id}/checkin/scan"))), true),
        Door::GateForm => (volunteer.post(gate), false),
        Door::GateScan => (volunteer.post(format!("{gate}/scan")), true),
    };
    let resp = request
        .header("user-agent", WECHAT_UA)
        .form(&[("csrf", csrf), ("code", input), ("nonce", &nonce)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{door:?} {input}");
    if json {
        let status: serde_json::Value = resp.json().await.unwrap();
        let v = &status["verdict"];
        (v["good"].as_bool().unwrap(), format!("{} {}", v["headline"].as_str().unwrap(), v["detail"].as_str().unwrap()))
    } else {
        let page = resp.text().await.unwrap();
        let start = page.find("class=\"result").expect("a verdict");
        let text = &page[start..];
        let words = text[text.find('>').unwrap() + 1..text.find("</div>").unwrap()].replace("<small>", " ");
        (text.starts_with("class=\"result good\""), words.replace("</small>", ""))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn at_a_live_qr_door_only_the_live_code_gets_in_whichever_way_it_is_posted() {
    let app = spawn_app().await;
    let csrf = app.login_admin("door").await;
    let live = app.activity("live", 20, Window::Open).await;
    set_live(&app, live.id).await;
    let gate = crate::door::create_link(&app, &csrf, live.id, "东门").await;
    let students = app.bound_students(33, 8).await;
    let t = book(&app, &students, live.id).await;
    let secret = &app.state.secret_key;

    // Everything that names the ticket but the live code: refused in the same words, nothing used.
    for door in DOORS {
        let (id, holder_link) = &t[0];
        let code = crate::common::fixtures::ticket_code(holder_link);
        let credential = links::checkin_credential(secret, *id);
        for input in [
            holder_link.clone(),
            app.url(&format!("/tickets/{code}")),
            code.clone(),
            app.url(&format!("/c/{credential}")),
            credential.clone(),
            live_url(&app, *id, links::live_step(now()) - 2),
        ] {
            let (good, text) = scan_at(&app, &csrf, live.id, &gate, door, &input).await;
            assert!(!good, "{door:?} {input}: {text}");
            assert!(text.starts_with("二维码已过期 二维码已过期，请让同学刷新电子票"), "{door:?} {input}: {text}");
            assert_eq!(status_of(&app, *id).await, "valid", "{door:?} {input}");
        }
    }

    // A student ID: not at a volunteer's gate (before any lookup), still at the admin's page.
    for door in [Door::GateForm, Door::GateScan] {
        let (good, text) = scan_at(&app, &csrf, live.id, &gate, door, "0003300000").await;
        assert!(!good && text.contains("志愿者入口不能按学号检票"), "{door:?}: {text}");
        let (_, nobody) = scan_at(&app, &csrf, live.id, &gate, door, "0009999999").await;
        assert_eq!(nobody, text, "{door:?}: the same answer whether or not the ID holds a ticket");
    }
    assert_eq!(status_of(&app, t[0].0).await, "valid");
    let (good, text) = scan_at(&app, &csrf, live.id, &gate, Door::AdminScan, "0003300000").await;
    assert!(good && text.contains("检票成功"), "{text}");

    // The live code of this step or the last gets in, by every way.
    away_from_a_step_boundary().await;
    for (door, (id, _)) in DOORS.into_iter().zip(&t[1..]) {
        let step = links::live_step(now());
        let (good, text) = scan_at(&app, &csrf, live.id, &gate, door, &live_url(&app, *id, step)).await;
        assert!(good && text.contains("检票成功"), "{door:?}: {text}");
    }
    for (door, (id, _)) in DOORS.into_iter().zip(&t[5..]) {
        let step = links::live_step(now()) - 1;
        let bare = links::live_credential(secret, *id, step);
        let (good, text) = scan_at(&app, &csrf, live.id, &gate, door, &bare).await;
        assert!(good, "{door:?}, the previous step, bare: {text}");
    }
    assert_eq!(app.count("SELECT count(*) FROM tickets WHERE status = 'used'").await, 8);

    // The volunteer's page asks for the live code only; the admin's offers the student ID too.
    let page = reqwest::get(&gate).await.unwrap().text().await.unwrap();
    assert!(page.contains("扫电子票上的动态二维码（本活动不能按票号或学号检票）"), "{page}");
    let page = app.get(&format!("/admin/activities/{}/checkin", live.id)).await.text().await.unwrap();
    assert!(page.contains("扫电子票上的动态二维码，或输入学号"), "{page}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_live_qr_every_door_takes_codes_urls_and_student_ids_as_before() {
    let app = spawn_app().await;
    let csrf = app.login_admin("door").await;
    let plain = app.activity("plain", 20, Window::Open).await;
    let gate = crate::door::create_link(&app, &csrf, plain.id, "东门").await;
    let students = app.bound_students(34, 16).await;
    let t = book(&app, &students, plain.id).await;
    let student_id = |id: i64| {
        let app = &app;
        async move {
            sqlx::query_scalar::<_, String>("SELECT student_id FROM tickets WHERE id = $1")
                .bind(id)
                .fetch_one(&app.pool)
                .await
                .unwrap()
        }
    };
    for (door, t) in DOORS.into_iter().zip(t.chunks(4)) {
        let code = crate::common::fixtures::ticket_code(&t[1].1);
        for input in [t[0].1.clone(), code, static_url(&app, t[2].0), student_id(t[3].0).await] {
            let (good, text) = scan_at(&app, &csrf, plain.id, &gate, door, &input).await;
            assert!(good && text.contains("检票成功"), "{door:?} {input}: {text}");
        }
    }
    assert_eq!(app.count("SELECT count(*) FROM tickets WHERE status = 'used'").await, 16);
    let page = reqwest::get(&gate).await.unwrap().text().await.unwrap();
    assert!(page.contains("扫码枪扫电子票二维码，或输入票号、学号"), "{page}");
}
