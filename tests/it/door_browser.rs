//! The scan screen with a real camera stream: headless Chromium's fake camera
//! plays a video made by this test from a screenshot of a real ticket page, and
//! the page checks the ticket in with no key pressed; a second gate scanning
//! the same ticket is told when and where it was used. Screenshots land in
//! `target/browser-screenshots/door/`.

use std::{io::Write, path::Path, time::Duration};

use wechat_ticket::{booking::checkin_links, links};

use crate::common::{
    admin::PASSWORD,
    browser::{Browser, screenshot_dir},
    fixtures::Window,
    spawn_app, wx,
};

const WHOLE_TEST: Duration = Duration::from_secs(120);
const WIDTH: u32 = 640;
const HEIGHT: u32 = 480;

/// A y4m video (the fake camera's format): `frames` identical frames of the
/// PNG centred on white at 640x480, in I420 (BT.601, limited range).
fn y4m_of_png(png: &[u8], frames: usize) -> Vec<u8> {
    let picture = image::load_from_memory_with_format(png, image::ImageFormat::Png).expect("a PNG").to_rgb8();
    // Fit into the frame with a white margin all round: a QR code needs its quiet zone.
    let room = (HEIGHT * 9 / 10) as f64;
    let scale = (room / picture.width() as f64).min(room / picture.height() as f64);
    let (w, h) = ((picture.width() as f64 * scale) as u32, (picture.height() as f64 * scale) as u32);
    let picture = image::imageops::resize(&picture, w, h, image::imageops::FilterType::Nearest);
    let mut canvas = image::RgbImage::from_pixel(WIDTH, HEIGHT, image::Rgb([255, 255, 255]));
    image::imageops::overlay(&mut canvas, &picture, ((WIDTH - w) / 2) as i64, ((HEIGHT - h) / 2) as i64);

    let (cw, ch) = (WIDTH as usize / 2, HEIGHT as usize / 2);
    let mut y_plane = Vec::with_capacity((WIDTH * HEIGHT) as usize);
    let (mut u_plane, mut v_plane) = (vec![0f64; cw * ch], vec![0f64; cw * ch]);
    for (x, y, px) in canvas.enumerate_pixels() {
        let [r, g, b] = px.0.map(f64::from);
        y_plane.push((16.0 + 0.257 * r + 0.504 * g + 0.098 * b).round() as u8);
        // Each chroma sample is the mean of its 2x2 block.
        let at = (y as usize / 2) * cw + x as usize / 2;
        u_plane[at] += (128.0 - 0.148 * r - 0.291 * g + 0.439 * b) / 4.0;
        v_plane[at] += (128.0 + 0.439 * r - 0.368 * g - 0.071 * b) / 4.0;
    }
    let mut frame = y_plane;
    frame.extend(u_plane.iter().map(|c| c.round().clamp(0.0, 255.0) as u8));
    frame.extend(v_plane.iter().map(|c| c.round().clamp(0.0, 255.0) as u8));

    let mut out = format!("YUV4MPEG2 W{WIDTH} H{HEIGHT} F10:1 Ip A1:1 C420jpeg\n").into_bytes();
    for _ in 0..frames {
        out.extend_from_slice(b"FRAME\n");
        out.extend_from_slice(&frame);
    }
    out
}

#[test]
fn the_fake_camera_video_is_a_valid_y4m() {
    let y4m = y4m_of_png(&crate::common::browser::png(100, 50), 3);
    let header_end = y4m.iter().position(|&b| b == b'\n').unwrap() + 1;
    assert!(y4m.starts_with(b"YUV4MPEG2 W640 H480 "));
    let frame = 6 + (WIDTH * HEIGHT * 3 / 2) as usize;
    assert_eq!(y4m.len(), header_end + 3 * frame);
    assert!(y4m[header_end..].starts_with(b"FRAME\n"));
    // The margin is white: full luma, neutral chroma.
    assert_eq!(y4m[header_end + 6], 235);
    assert_eq!(y4m[header_end + 6 + (WIDTH * HEIGHT) as usize], 128);
}

#[tokio::test]
async fn a_phone_camera_checks_a_ticket_in_and_a_second_gate_sees_it_used() {
    let video = std::env::temp_dir().join(format!("wt-fake-camera-{}.y4m", std::process::id()));
    let flags = vec![
        "--use-fake-device-for-media-stream".to_string(),
        "--use-fake-ui-for-media-stream".to_string(),
        format!("--use-file-for-fake-video-capture={}", video.display()),
        "--autoplay-policy=no-user-gesture-required".to_string(),
    ];
    let Some(browser) = Browser::start_with("door", &flags).await else { return };
    let result = tokio::time::timeout(WHOLE_TEST, journey(&browser, &video)).await;
    browser.close().await;
    let _ = std::fs::remove_file(&video);
    result.expect("the door journey within 120 s");
}

async fn journey(b: &Browser, video: &Path) {
    let app = spawn_app().await;
    app.add_admin("organiser").await;
    let a = app.activity("concert", 50, Window::Open).await;
    let students = app.bound_students(50, 2).await;
    let mut tickets = Vec::new();
    for openid in &students {
        match app.say(&wx::click(openid, &format!("BOOK_{}", a.id))).await {
            wx::Reply::News { url, .. } => tickets.push(url),
            other => panic!("booking should answer with the ticket: {other:?}"),
        }
    }
    let code = crate::common::fixtures::ticket_code(&tickets[0]);

    // The camera's video: the QR code of the first ticket's page, as its holder's phone shows it.
    b.goto(&tickets[0]).await;
    let qr = b.shot_of(".qr", "ticket-qr").await;
    let mut file = std::fs::File::create(video).unwrap();
    file.write_all(&y4m_of_png(&std::fs::read(&qr).unwrap(), 10)).unwrap();
    drop(file);

    // Two gates' links (making them on the page is tested in `door`).
    let mut doors = Vec::new();
    for gate in ["东门", "西门"] {
        let link =
            checkin_links::create(&mut app.pool.acquire().await.unwrap(), &a, gate, 12, "organiser").await.unwrap();
        doors.push(app.url(&format!("/door/{}", links::door_token(&app.state.secret_key, link.id))));
    }

    // A phone at the east gate: the camera finds the code and checks it in, no key pressed.
    b.client.set_window_size(430, 932).await.expect("a phone-sized window");
    b.goto(&doors[0]).await;
    b.find(".result.good").await;
    let text = b.text(".result").await;
    assert!(text.contains("检票成功") && text.contains("0005000000"), "{text}");
    let (status, by): (String, Option<String>) =
        sqlx::query_as("SELECT status, checked_in_by FROM tickets WHERE code = $1")
            .bind(&code)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!((status.as_str(), by.as_deref()), ("used", Some("东门")));
    b.wait_until("return document.getElementById('checked-in').textContent === '1';", "the counter at 1").await;
    let green = b.shot("scan-green").await;
    b.policy_kept("volunteer scan").await;

    // A second phone, at the west gate, shown the same ticket: red, when and where.
    b.goto(&doors[1]).await;
    b.find(".result.bad").await;
    let text = b.text(".result").await;
    let hhmm = text.strip_prefix("已检票 ").and_then(|t| t.split('（').next()).unwrap_or_default();
    assert!(hhmm.len() == 5 && hhmm.as_bytes()[2] == b':' && text.contains("（东门）"), "{text}");
    b.shot("scan-red").await;
    // Another gate's scan moves this page's counter (it polls).
    let other = crate::common::fixtures::ticket_code(&tickets[1]);
    let scanned = app
        .http
        .post(format!("{}/scan", doors[0]))
        .form(&[("code", other.as_str()), ("nonce", &links::nonce())])
        .send()
        .await
        .unwrap();
    assert_eq!(scanned.status(), 200);
    b.wait_until("return document.getElementById('checked-in').textContent === '2';", "the counter moved to 2").await;
    b.policy_kept("second gate").await;

    // The admin's screen scans too, and is told the same.
    b.goto(&app.url(&format!("/admin/activities/{}/checkin", a.id))).await;
    b.type_into("#username", "organiser").await;
    b.type_into("#password", PASSWORD).await;
    b.click_and_wait(r#"form[action="/admin/login"] button[type=submit]"#).await;
    b.find(".result.bad").await;
    assert!(b.text(".result").await.contains("（东门）"));
    assert_eq!(app.count("SELECT count(*) FROM tickets WHERE status = 'used'").await, 2);
    b.policy_kept("admin scan").await;

    // The README's picture is `green` copied by hand to static/screenshots/:
    // copying it here would change an embedded file, and so the binary, at every run.
    assert!(green.is_file());
    eprintln!("scan screenshots in {}", screenshot_dir("door").display());
    app.stop().await;
}
