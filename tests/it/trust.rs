//! Issue "trust at the WeChat edge", tried as an attacker would: requests
//! signed by hand, replayed, stale, from another account, and a photographed QR.

use futures::future::join_all;
use wechat_ticket::{
    links,
    wechat::{reply::cdata, signature},
};

use crate::common::{
    Settings, TOKEN, TestApp,
    admin::csrf_in,
    fixtures::{Window, hidden_fields, ticket_code},
    spawn_app, spawn_app_with,
    wx::{self, Reply},
};

/// A query signed by hand for `timestamp` and `nonce`.
fn query_at(timestamp: i64, nonce: &str) -> String {
    let ts = timestamp.to_string();
    format!("signature={}&timestamp={ts}&nonce={nonce}", signature::sign(&[TOKEN, &ts, nonce]))
}

async fn writes(app: &TestApp) -> (i64, i64, i64) {
    (
        app.count("SELECT count(*) FROM wechat_messages").await,
        app.count("SELECT count(*) FROM tickets").await,
        app.count("SELECT count(*) FROM wechat_signed_queries").await,
    )
}

#[tokio::test]
async fn a_stale_or_future_timestamp_is_refused_and_writes_nothing() {
    let app = spawn_app().await;
    let a = app.activity("gala", 10, Window::Open).await;
    app.bind("oAlice", "2024010001").await;
    let before = writes(&app).await;
    let now = wx::now();
    for ts in [now - 3600, now - 301, now + 301, 0] {
        let (status, body) =
            app.post_wechat_raw(&query_at(ts, "42"), wx::click("oAlice", &format!("BOOK_{}", a.id))).await;
        assert_eq!(status, 403, "timestamp {ts}: {body}");
        let get = app.get(&format!("/wechat?{}&echostr=hi", query_at(ts, "42"))).await;
        assert_eq!(get.status(), 403, "server verification with timestamp {ts}");
    }
    let (status, _) = app.post_wechat_raw(&query_at(wx::now() - 3600, "x"), "not even xml".into()).await;
    assert_eq!(status, 403, "a stale query is refused before its body is read");
    assert_eq!(writes(&app).await, before, "nothing written");
    // Inside the window it is answered.
    let (status, body) =
        app.post_wechat_raw(&query_at(now - 250, "43"), wx::click("oAlice", &format!("BOOK_{}", a.id))).await;
    assert_eq!(status, 200);
    assert!(matches!(Reply::parse(&body), Reply::News { .. }), "{body}");
}

#[tokio::test]
async fn a_signed_query_carries_one_message_only() {
    let app = spawn_app().await;
    let a = app.activity("gala", 10, Window::Open).await;
    app.bind("oAlice", "2024010001").await;
    app.bind("oMallory", "2024010002").await;

    // Alice's genuine message, as an eavesdropper saw it go by.
    let captured = query_at(wx::now(), "1234567");
    let alice = wx::text("oAlice", "帮助");
    let (status, first) = app.post_wechat_raw(&captured, alice.clone()).await;
    assert_eq!(status, 200);

    // The same signed query with another body: Mallory books under it.
    let book = wx::click("oMallory", &format!("BOOK_{}", a.id));
    let (status, body) = app.post_wechat_raw(&captured, book).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(app.live_tickets(a.id).await, 0, "no ticket for the forger");
    let other_text = wx::text("oAlice", &format!("抢票 {}", a.key));
    assert_eq!(app.post_wechat_raw(&captured, other_text).await.0, 403, "not even for Alice's own account");
    assert_eq!(app.live_tickets(a.id).await, 0);

    // The same body again under the same query is WeChat retrying: the same answer.
    let (status, again) = app.post_wechat_raw(&captured, alice).await;
    assert_eq!((status, again.as_str()), (200, first.as_str()));
}

#[tokio::test]
async fn many_bodies_racing_under_one_signed_query_get_one_answer() {
    let app = spawn_app().await;
    let a = app.activity("gala", 100, Window::Open).await;
    let students = app.bound_students(3, 20).await;
    let captured = query_at(wx::now(), "999");
    let sends = students.iter().map(|openid| {
        let (app, q, xml) = (&app, captured.clone(), wx::click(openid, &format!("BOOK_{}", a.id)));
        async move { app.post_wechat_raw(&q, xml).await.0 }
    });
    let statuses = join_all(sends).await;
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 403).count(), 19, "{statuses:?}");
    assert_eq!(app.live_tickets(a.id).await, 1);
}

#[tokio::test]
async fn one_users_msg_id_never_answers_for_another() {
    let app = spawn_app().await;
    let a = app.activity("gala", 10, Window::Open).await;
    app.bind("oAlice", "2024010001").await;
    app.bind("oBob", "2024010002").await;
    // Someone pre-records MsgId 77 with a harmless text from their own account…
    let help = app.say(&wx::text_with_id("oAlice", "帮助", 77)).await;
    assert!(help.text().contains("抢票"));
    // …and Bob's real message that happens to carry MsgId 77 is still handled as his.
    let booked = app.say(&wx::text_with_id("oBob", &format!("抢票 {}", a.key), 77)).await;
    assert!(matches!(&booked, Reply::News { title, .. } if title.contains("抢票成功")), "{booked:?}");
    assert_eq!(app.live_tickets(a.id).await, 1);
}

/// A plaintext POST signed by hand: what anyone who saw one signed query can send.
async fn post_plain(app: &TestApp, body: String) -> u16 {
    app.post_wechat_raw(&query_at(wx::now(), &wx::next_msg_id().to_string()), body).await.0
}

/// A compatible-mode body: the plaintext fields and an encrypted copy.
fn compatible_body(plain: &str) -> String {
    let inner = plain.trim_start_matches("<xml>").trim_end_matches("</xml>");
    format!("<xml>{inner}<Encrypt>{}</Encrypt></xml>", cdata(&wx::cipher().encrypt(plain)))
}

#[tokio::test]
async fn safe_mode_accepts_only_the_encrypted_envelope() {
    let app = spawn_app_with(Settings::default().encrypted().set("WECHAT_MESSAGE_MODE", "safe")).await;
    let a = app.activity("gala", 10, Window::Open).await;
    // Bound directly: in safe mode the harness's plaintext 绑定 is refused too.
    let alice = app.bound_students(1, 1).await.remove(0);
    let book = |_: &str| wx::click(&alice, &format!("BOOK_{}", a.id));

    assert_eq!(post_plain(&app, book("oAlice")).await, 403, "plaintext");
    assert_eq!(post_plain(&app, compatible_body(&book("oAlice"))).await, 403, "a compatible-mode body");
    assert_eq!(app.live_tickets(a.id).await, 0);

    // encrypt_type=aes with a msg_signature that does not cover this Encrypt.
    let ts = wx::now().to_string();
    let nonce = "31337";
    let sig = signature::sign(&[TOKEN, &ts, nonce]);
    let encrypt = wx::cipher().encrypt(&book("oAlice"));
    let wrong = signature::sign(&[TOKEN, &ts, nonce, "other"]);
    let q = format!("signature={sig}&timestamp={ts}&nonce={nonce}&encrypt_type=aes&msg_signature={wrong}");
    let envelope = format!("<xml><ToUserName>gh</ToUserName><Encrypt>{}</Encrypt></xml>", cdata(&encrypt));
    assert_eq!(app.post_wechat_raw(&q, envelope).await.0, 403);
    let q = format!("signature={sig}&timestamp={ts}&nonce={nonce}&encrypt_type=aes");
    assert_eq!(app.post_wechat_raw(&q, compatible_body(&book("oAlice"))).await.0, 403, "no msg_signature");
    assert_eq!(app.live_tickets(a.id).await, 0);

    // The real thing books.
    let (status, body) = app.post_encrypted(&book("oAlice")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.live_tickets(a.id).await, 1);
}

#[tokio::test]
async fn compatible_mode_accepts_both_and_plaintext_mode_is_the_default_without_a_key() {
    let app = spawn_app_with(Settings::default().encrypted()).await;
    assert_eq!(post_plain(&app, wx::text("oAlice", "帮助")).await, 200);
    assert_eq!(post_plain(&app, compatible_body(&wx::text("oAlice", "帮助"))).await, 200);
    assert_eq!(app.post_encrypted(&wx::text("oAlice", "帮助")).await.0, 200);
    let plain = spawn_app().await;
    assert_eq!(plain.state.config.message_mode.name(), "plaintext");
    assert_eq!(post_plain(&plain, wx::text("oAlice", "帮助")).await, 200);
}

#[test]
fn a_mode_that_needs_the_key_without_one_stops_the_start_in_one_sentence() {
    for mode in ["safe", "compatible"] {
        let out = std::process::Command::new(crate::serve_binary::BIN)
            .env_remove("WECHAT_AES_KEY")
            .env("WECHAT_MESSAGE_MODE", mode)
            .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
            .env("RUST_LOG", "off")
            .arg("migrate")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("WECHAT_MESSAGE_MODE") && err.contains("needs WECHAT_AES_KEY"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

#[tokio::test]
async fn one_wechat_account_holds_one_live_ticket_per_activity_whatever_it_binds() {
    let app = spawn_app().await;
    let a = app.activity("gala", 10, Window::Open).await;
    let me = "oSwitcher";
    let first_link = app.say(&wx::text(me, "绑定")).await.links()[0].clone();
    let (status, _) = app.submit_bind(&first_link, "2024010001", "").await;
    assert_eq!(status, 200);
    assert!(matches!(app.say(&wx::text(me, "抢票 gala")).await, Reply::News { .. }));

    // Unbind and reuse the spent bind link with another ID: refused.
    assert!(app.say(&wx::text(me, "解绑")).await.text().contains("已解除"));
    assert_eq!(app.http.get(&first_link).send().await.unwrap().status(), 410);
    let (status, page) = app.submit_bind(&first_link, "2024010002", "").await;
    assert_eq!(status, 410, "{page}");
    assert!(page.contains("已经用过"), "{page}");
    assert_eq!(app.count("SELECT count(*) FROM students WHERE student_id = '2024010002'").await, 0);

    // A new 绑定 gives a new link, which binds; booking again is refused.
    app.bind(me, "2024010002").await;
    let again = app.say(&wx::text(me, "抢票 gala")).await;
    assert!(again.text().contains("已经有这个活动的票"), "{again:?}");
    let clicked = app.say(&wx::click(me, &format!("BOOK_{}", a.id))).await;
    assert!(clicked.text().contains("已经有这个活动的票"), "{clicked:?}");
    assert_eq!(app.live_tickets(a.id).await, 1);

    // It is the database that says no, not only the code.
    let insert = sqlx::query(
        "INSERT INTO tickets (code, activity_id, student_id, slot, openid) VALUES ('ZZZZZZZZZZZZZZZZZZZZZZ', $1, '2024010002', 0, $2)",
    )
    .bind(a.id)
    .bind(me)
    .execute(&app.pool)
    .await;
    assert!(insert.unwrap_err().to_string().contains("tickets_one_live_per_openid"));

    // Binds, unbinds and rebinds are in the audit log.
    let actions: Vec<String> = sqlx::query_scalar("SELECT action FROM audit_log WHERE actor = $1 ORDER BY id")
        .bind(format!("微信用户 {me}"))
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(actions, ["绑定学号", "解绑学号", "重新绑定学号"]);
}

#[tokio::test]
async fn one_account_booking_twenty_times_at_once_gets_one_ticket() {
    let app = spawn_app().await;
    let a = app.activity("gala", 50, Window::Open).await;
    app.bind("oTwice", "2024010001").await;
    // Book many times at once, from one account.
    let sends = (0..20).map(|_| {
        let xml = wx::click("oTwice", &format!("BOOK_{}", a.id));
        let app = &app;
        async move { app.say(&xml).await }
    });
    let replies = join_all(sends).await;
    assert_eq!(replies.iter().filter(|r| matches!(r, Reply::News { .. })).count(), 1);
    assert_eq!(app.live_tickets(a.id).await, 1);
    assert_eq!(app.count("SELECT coalesce(sum(remaining), 0) FROM activity_slots").await, 49, "places add up");
}

#[tokio::test]
async fn an_admin_sees_who_holds_a_student_id_and_releases_it() {
    let app = spawn_app().await;
    let a = app.activity("gala", 10, Window::Open).await;
    app.bind("oSquatter", "2024010001").await;
    assert!(matches!(app.say(&wx::text("oSquatter", "抢票 gala")).await, Reply::News { .. }));

    let csrf = app.login_admin("admin").await;
    let page = app.get("/admin/students?student_id=2024010001").await.text().await.unwrap();
    assert!(page.contains("oSquatter") && page.contains("活动 gala"), "{page}");
    let csrf_here = csrf_in(&page).unwrap();
    assert_eq!(csrf_here, csrf);
    // Without the CSRF token: nothing happens.
    let (status, _) = app.admin_post("/admin/students/unbind", &[("student_id", "2024010001")]).await;
    assert_eq!(status, 403);
    let (status, page) =
        app.admin_post("/admin/students/unbind", &[("csrf", &csrf), ("student_id", "2024010001")]).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("已解除学号 2024010001"), "{page}");
    assert!(page.contains("id=\"holder-none\""), "{page}");
    // The ticket stays with the student ID; the rightful student binds it and sees it.
    assert_eq!(app.live_tickets(a.id).await, 1);
    app.bind("oRightful", "2024010001").await;
    assert!(app.say(&wx::text("oRightful", "查票")).await.text().contains("活动 gala"));
    let (status, page) =
        app.admin_post("/admin/students/unbind", &[("csrf", &csrf), ("student_id", "2099999999")]).await;
    assert_eq!(status, 409);
    assert!(page.contains("没有绑定"), "{page}");
    let audited = app.count("SELECT count(*) FROM audit_log WHERE actor = 'admin' AND action = '管理员解绑学号'").await;
    assert_eq!(audited, 1);
}

#[tokio::test]
async fn the_shell_releases_a_student_id_too() {
    let app = spawn_app().await;
    app.bind("oSquatter", "2024010001").await;
    let run = |id: &str| {
        std::process::Command::new(crate::serve_binary::BIN)
            .env("DATABASE_URL", app.database_url())
            .env("RUST_LOG", "off")
            .args(["student", "unbind", id])
            .output()
            .unwrap()
    };
    let out = run("2024010001");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("released from WeChat account oSquatter"));
    assert_eq!(app.count("SELECT count(*) FROM students WHERE student_id IS NOT NULL").await, 0);
    let out = run("2024010001");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not bound"));
    assert_eq!(
        app.count("SELECT count(*) FROM audit_log WHERE actor = 'shell' AND action = '管理员解绑学号'").await,
        1
    );
}

/// The inline SVG QR code on a page.
fn qr_svg(page: &str) -> &str {
    let start = page.find("<svg").expect("a QR code");
    &page[start..start + page[start..].find("</svg>").unwrap() + "</svg>".len()]
}

fn qr_of(text: &str) -> String {
    qrcode::QrCode::new(text.as_bytes())
        .unwrap()
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(240, 240)
        .build()
}

#[tokio::test]
async fn the_qr_is_for_the_door_and_cancels_nothing() {
    let app = spawn_app().await;
    let a = app.activity("gala", 10, Window::Open).await;
    app.bind("oAlice", "2024010001").await;
    let Reply::News { url, .. } = app.say(&wx::text("oAlice", "抢票 gala")).await else { panic!("booked") };
    let code = ticket_code(&url);
    let id: i64 =
        sqlx::query_scalar("SELECT id FROM tickets WHERE code = $1").bind(&code).fetch_one(&app.pool).await.unwrap();

    // The QR encodes the check-in credential, not the ticket URL.
    let page = app.http.get(&url).send().await.unwrap().text().await.unwrap();
    let credential = links::checkin_credential(&app.state.secret_key, id);
    let credential_url = app.url(&format!("/c/{credential}"));
    // (Compared without printing: a QR code's SVG is kilobytes of path.)
    assert!(qr_svg(&page) == qr_svg(&qr_of(&credential_url)), "the QR code is the credential URL");
    assert!(qr_svg(&page) != qr_svg(&qr_of(&app.url(&format!("/tickets/{code}")))));
    assert!(!credential.contains(&code));

    // Scanned with a phone, the credential opens no personal data and no cancel button.
    let scanned = app.get(&format!("/c/{credential}")).await;
    assert_eq!(scanned.status(), 200);
    let scanned = scanned.text().await.unwrap();
    assert!(
        scanned.contains("活动 gala") && !scanned.contains("2024010001") && !scanned.contains("cancel"),
        "{scanned}"
    );
    let forged = format!("{}.{}", id + 1, credential.split_once('.').unwrap().1);
    assert_eq!(app.get(&format!("/c/{forged}")).await.status(), 404);

    // Whoever has only the code cancels nothing: no token, a made-up token,
    // another ticket's token, or the holder's link replayed as a cancel token.
    let action = format!("/tickets/{code}/cancel");
    let holder_form = hidden_fields(&page, &action);
    assert_eq!(holder_form.len(), 3, "the holder's page has the cancel form");
    let bare = app.http.post(app.url(&action)).send().await.unwrap();
    assert_eq!(bare.status(), 403);
    assert!(bare.text().await.unwrap().contains("退票 gala"), "says how to cancel");
    let mut tampered = holder_form.clone();
    tampered[2].1 = "AAAA".into();
    let link_query = url.split_once('?').unwrap().1.to_string();
    let link_as_token: Vec<(String, String)> =
        crate::common::fixtures::url_pairs(&link_query).into_iter().filter(|(k, _)| k != "n").collect();
    let other = app.activity("other", 10, Window::Open).await;
    let Reply::News { url: other_url, .. } = app.say(&wx::text("oAlice", "抢票 other")).await else { panic!() };
    let other_page = app.http.get(&other_url).send().await.unwrap().text().await.unwrap();
    let other_form = hidden_fields(&other_page, &format!("/tickets/{}/cancel", ticket_code(&other_url)));
    for form in [tampered, link_as_token, other_form] {
        let resp = app.http.post(app.url(&action)).form(&form).send().await.unwrap();
        assert_eq!(resp.status(), 403);
    }
    // The page without the holder's link (a shared or guessed URL) offers no cancel form.
    let anonymous = app.get(&format!("/tickets/{code}")).await.text().await.unwrap();
    assert!(hidden_fields(&anonymous, &action).is_empty(), "{anonymous}");
    assert_eq!(app.live_tickets(a.id).await, 1, "still valid");
    assert_eq!(app.live_tickets(other.id).await, 1);

    // After unbinding, the holder's own token cancels nothing either.
    assert!(app.say(&wx::text("oAlice", "解绑")).await.text().contains("已解除"));
    assert_eq!(app.http.post(app.url(&action)).form(&holder_form).send().await.unwrap().status(), 403);
    assert_eq!(app.live_tickets(a.id).await, 1);

    // At the door, the credential checks the ticket in; a forged one does not.
    app.login_admin("admin").await;
    let csrf = app.csrf_token().await;
    let door = format!("/admin/activities/{}/checkin", a.id);
    let nonce = || wechat_ticket::links::nonce();
    let (_, page) = app.admin_post(&door, &[("csrf", &csrf), ("code", &forged), ("nonce", &nonce())]).await;
    assert!(page.contains("没有这张票"), "{page}");
    let (_, page) = app.admin_post(&door, &[("csrf", &csrf), ("code", &credential_url), ("nonce", &nonce())]).await;
    assert!(page.contains("检票成功") && page.contains("2024010001"), "{page}");
    assert_eq!(app.count("SELECT count(*) FROM tickets WHERE status = 'used'").await, 1);
}

#[tokio::test]
async fn the_holder_cancels_from_the_page_their_link_opened() {
    let app = spawn_app().await;
    let a = app.activity("gala", 1, Window::Open).await;
    app.bind("oAlice", "2024010001").await;
    let Reply::News { url, .. } = app.say(&wx::text("oAlice", "抢票 gala")).await else { panic!("booked") };
    let code = ticket_code(&url);
    let page = app.http.get(&url).send().await.unwrap().text().await.unwrap();
    let action = format!("/tickets/{code}/cancel");
    let resp = app.http.post(app.url(&action)).form(&hidden_fields(&page, &action)).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(app.live_tickets(a.id).await, 0, "the place is free at once");
    let back = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(app.get(&back).await.text().await.unwrap().contains("名额已经释放"));
}

#[tokio::test]
async fn a_signed_query_spent_on_one_instance_is_spent_on_every_instance() {
    let one = spawn_app().await;
    let two = crate::common::spawn_app_on(one.db.clone(), Settings::default()).await;
    let a = one.activity("gala", 10, Window::Open).await;
    one.bind("oAlice", "2024010001").await;
    one.bind("oMallory", "2024010002").await;
    let captured = query_at(wx::now(), "555");
    let alice = wx::text("oAlice", "帮助");
    let (status, first) = one.post_wechat_raw(&captured, alice.clone()).await;
    assert_eq!(status, 200);
    let (status, _) = two.post_wechat_raw(&captured, wx::click("oMallory", &format!("BOOK_{}", a.id))).await;
    assert_eq!(status, 403);
    assert_eq!(one.live_tickets(a.id).await, 0);
    // WeChat's retry reaching the other instance gets the first answer.
    assert_eq!(two.post_wechat_raw(&captured, alice).await, (200, first));
}
