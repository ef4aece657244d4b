//! Announcements to followers (issue 24, point 2): an admin 群发es a published
//! activity to every follower after previewing the same text to one, once
//! across instances and double submits; WeChat's quota refusals read in
//! words; WeChat's MASSSENDJOBFINISH report, posted signed to /wechat, is
//! recorded once and shown.

use serde_json::json;

use crate::{
    common::{
        Settings, TestApp,
        fake_wechat::{FakeWechat, MASS_PREVIEW_PATH, MASS_SENDALL_PATH},
        fixtures::Window,
        spawn_app_on, spawn_app_with,
        wx::now,
    },
    teams::{organizer, team},
};

const FOLLOWER: &str = "oAdminFollower0000000000000x";

/// A new announcement of `activity_id` from the list page's form; its id.
async fn new_announcement(app: &TestApp, csrf: &str, activity_id: i64) -> i64 {
    let resp = app
        .http
        .post(app.url("/admin/announcements"))
        .form(&[("csrf", csrf), ("activity", &activity_id.to_string())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let to = resp.headers()["location"].to_str().unwrap().to_string();
    to.strip_prefix("/admin/announcements/").unwrap().parse().unwrap()
}

async fn page(app: &TestApp, id: i64) -> String {
    let resp = app.get(&format!("/admin/announcements/{id}")).await;
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

/// The text in the page's textarea, as the browser would submit it.
fn textarea(page: &str) -> String {
    let start = page.find("name=\"body\"").unwrap();
    let open = start + page[start..].find('>').unwrap() + 1;
    let close = open + page[open..].find("</textarea>").unwrap();
    page[open..close]
        .replace("&#60;", "<")
        .replace("&#62;", ">")
        .replace("&#38;", "&")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
}

async fn preview(app: &TestApp, csrf: &str, id: i64, body: &str, openid: &str) -> (u16, String) {
    app.admin_post(&format!("/admin/announcements/{id}/preview"), &[("csrf", csrf), ("body", body), ("openid", openid)])
        .await
}

async fn send(app: &TestApp, csrf: &str, id: i64, body: &str) -> (u16, String) {
    app.admin_post(&format!("/admin/announcements/{id}/send"), &[("csrf", csrf), ("body", body)]).await
}

fn finished(msg_id: i64, create_time: i64, sent: u32) -> String {
    format!(
        "<xml><ToUserName><![CDATA[gh_123456789abc]]></ToUserName>\
         <FromUserName><![CDATA[{FOLLOWER}]]></FromUserName><CreateTime>{create_time}</CreateTime>\
         <MsgType><![CDATA[event]]></MsgType><Event><![CDATA[MASSSENDJOBFINISH]]></Event>\
         <MsgID>{msg_id}</MsgID><Status><![CDATA[send success]]></Status><TotalCount>100</TotalCount>\
         <FilterCount>80</FilterCount><SentCount>{sent}</SentCount><ErrorCount>5</ErrorCount></xml>"
    )
}

async fn status_of(app: &TestApp, id: i64) -> (String, Option<i64>) {
    sqlx::query_as("SELECT status, msg_id FROM announcements WHERE id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn an_admin_previews_the_text_then_announces_it_to_every_follower_once() {
    let fake = FakeWechat::start().await;
    let app = spawn_app_with(fake.settings(Settings::default())).await;
    let csrf = app.login_admin("root").await;
    let concert = app.activity("concert", 100, Window::NotYetOpen).await;
    app.activity("draft", 100, Window::Open).await;
    sqlx::query("UPDATE activities SET status = 'draft' WHERE key = 'draft'").execute(&app.pool).await.unwrap();

    let activity_page = app.get(&format!("/admin/activities/{}", concert.id)).await.text().await.unwrap();
    assert!(activity_page.contains(&format!("href=\"/admin/announcements?activity={}\"", concert.id)));
    let list = app.get(&format!("/admin/announcements?activity={}", concert.id)).await.text().await.unwrap();
    assert!(list.contains(&format!("<option value=\"{}\" selected>", concert.id)), "{list}");
    assert!(list.contains("活动 concert（concert）") && !list.contains("（draft）"), "published only: {list}");
    let id = new_announcement(&app, &csrf, concert.id).await;
    let shown = page(&app, id).await;
    let text = textarea(&shown);
    assert!(text.starts_with("【活动 concert】") && text.contains("新清华学堂"), "{text}");
    assert!(text.contains("回复「抢票 concert」") && text.contains(&format!("/activities/{}", concert.id)), "{text}");
    assert!(shown.contains("id=\"send-all\" disabled"), "no send before a preview: {shown}");

    // The server refuses a send of a text never previewed (a crafted POST).
    let (status, body) = send(&app, &csrf, id, &text).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("还没有发送预览"), "{body}");
    assert_eq!(fake.count(MASS_SENDALL_PATH), 0);

    let (status, body) = preview(&app, &csrf, id, &text, FOLLOWER).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("预览已发给") && !body.contains("id=\"send-all\" disabled"), "{body}");
    let previews = fake.requests(MASS_PREVIEW_PATH);
    assert_eq!(previews.len(), 1);
    assert_eq!(
        previews[0].body.clone().unwrap(),
        json!({"touser": FOLLOWER, "msgtype": "text", "text": {"content": text}})
    );

    // Changed since the preview: refused, and the changed text stays in the form.
    let changed = format!("{text}\n今晚加场！");
    let (status, body) = send(&app, &csrf, id, &changed).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("内容在预览之后改过了") && body.contains("今晚加场！"), "{body}");
    assert_eq!(fake.count(MASS_SENDALL_PATH), 0);

    // The previewed text, as a browser posts a textarea (CRLF line ends).
    let (status, body) = send(&app, &csrf, id, &text.replace('\n', "\r\n")).await;
    assert_eq!(status, 200, "{body}");
    let sent = fake.requests(MASS_SENDALL_PATH);
    assert_eq!(sent.len(), 1);
    let request = sent[0].body.clone().unwrap();
    assert_eq!(request["filter"], json!({"is_to_all": true}));
    assert_eq!(request["msgtype"], "text");
    assert_eq!(request["text"]["content"], text.as_str());
    let (state, msg_id) = status_of(&app, id).await;
    let msg_id = msg_id.expect("the msg_id is recorded");
    assert_eq!(state, "sent");
    assert!(body.contains(&format!("<strong id=\"msg-id\">{msg_id}</strong>")), "{body}");
    assert!(body.contains("微信已接受群发"), "{body}");

    // Sent means sent: neither another send nor a preview reaches WeChat.
    let (status, body) = send(&app, &csrf, id, &text).await;
    assert_eq!(status, 409, "{body}");
    let (status, _) = preview(&app, &csrf, id, &text, FOLLOWER).await;
    assert_eq!(status, 409);
    assert_eq!((fake.count(MASS_SENDALL_PATH), fake.count(MASS_PREVIEW_PATH)), (1, 1));
    for action in ["群发预览", "群发"] {
        let sql = format!("SELECT count(*) FROM audit_log WHERE action = '{action}' AND activity_id = {}", concert.id);
        assert_eq!(app.count(&sql).await, 1, "{action} audited once");
    }
    let list = app.get("/admin/announcements").await.text().await.unwrap();
    assert!(list.contains(&msg_id.to_string()), "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_and_double_submits_announce_once() {
    let fake = FakeWechat::start().await;
    let settings = fake.settings(Settings::default());
    let one = spawn_app_with(settings.clone()).await;
    let two = spawn_app_on(one.db.clone(), settings).await;
    let csrf_one = one.login_admin("root").await;
    let csrf_two = two.login_admin("other-root").await;
    let gala = one.activity("gala", 100, Window::Open).await;
    let id = new_announcement(&one, &csrf_one, gala.id).await;
    let text = textarea(&page(&one, id).await);
    assert_eq!(preview(&one, &csrf_one, id, &text, FOLLOWER).await.0, 200);

    let (a, b, c, d) = tokio::join!(
        send(&one, &csrf_one, id, &text),
        send(&two, &csrf_two, id, &text),
        send(&one, &csrf_one, id, &text),
        send(&two, &csrf_two, id, &text),
    );
    let mut statuses = [a.0, b.0, c.0, d.0];
    statuses.sort();
    assert_eq!(statuses, [200, 409, 409, 409], "{} | {} | {} | {}", a.1, b.1, c.1, d.1);
    assert_eq!(fake.count(MASS_SENDALL_PATH), 1, "one 群发");
    assert_eq!(one.count("SELECT count(*) FROM audit_log WHERE action = '群发'").await, 1);
    assert_eq!(status_of(&one, id).await.0, "sent");
    two.stop().await;
    one.stop().await;
}

#[tokio::test]
async fn a_quota_refusal_reads_in_words_sends_nothing_and_may_be_retried() {
    let fake = FakeWechat::start().await;
    let app = spawn_app_with(fake.settings(Settings::default())).await;
    let csrf = app.login_admin("root").await;
    let show = app.activity("show", 100, Window::Open).await;
    let id = new_announcement(&app, &csrf, show.id).await;
    let text = textarea(&page(&app, id).await);
    assert_eq!(preview(&app, &csrf, id, &text, FOLLOWER).await.0, 200);

    fake.script(MASS_SENDALL_PATH, json!({"errcode": 45028, "errmsg": "has no masssend quota"}));
    let (status, body) = send(&app, &csrf, id, &text).await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("群发次数已经用完") && body.contains("订阅号每天只能群发 1 次"), "{body}");
    assert_eq!(status_of(&app, id).await, ("previewed".into(), None), "nothing recorded as sent");
    // The refusal stays on the page, and the send may be tried again.
    let shown = page(&app, id).await;
    assert!(shown.contains("上次没有成功") && shown.contains("45028"), "{shown}");
    assert!(!shown.contains("id=\"send-all\" disabled"), "{shown}");
    assert_eq!(app.count("SELECT count(*) FROM audit_log WHERE action = '群发失败'").await, 1);

    // A preview to someone who does not follow the account: WeChat's words, nothing stored as previewed.
    fake.script(MASS_PREVIEW_PATH, json!({"errcode": 40003, "errmsg": "invalid openid"}));
    let (status, body) = preview(&app, &csrf, id, "另一段文字", "oNotAFollower").await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("openid 无效"), "{body}");
    assert_eq!(textarea(&page(&app, id).await), text, "the previewed text is still the one to send");

    // An instance died mid-send after WeChat took the job: its claim is taken
    // over later, and WeChat names the job it already has (45065): no second 群发.
    sqlx::query("UPDATE announcements SET status = 'sending', claimed_at = now() - interval '3 minutes' WHERE id = $1")
        .bind(id)
        .execute(&app.pool)
        .await
        .unwrap();
    assert!(!page(&app, id).await.contains("id=\"send-all\" disabled"), "the stale send may be tried again");
    fake.script(MASS_SENDALL_PATH, json!({"errcode": 45065, "errmsg": "clientmsgid exist", "msg_id": 3147494441_i64}));
    let (status, body) = send(&app, &csrf, id, &text).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("没有重复发送"), "{body}");
    assert_eq!(status_of(&app, id).await, ("sent".into(), Some(3147494441)));
    let clientmsgids: Vec<String> = fake
        .requests(MASS_SENDALL_PATH)
        .iter()
        .map(|r| r.body.as_ref().unwrap()["clientmsgid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(clientmsgids.len(), 2);
    assert_eq!(clientmsgids[0], clientmsgids[1], "every try names the same send");
}

#[tokio::test]
async fn wechats_report_of_the_finished_broadcast_is_recorded_once_and_shown() {
    let fake = FakeWechat::start().await;
    let app = spawn_app_with(fake.settings(Settings::default())).await;
    let csrf = app.login_admin("root").await;
    let talk = app.activity("talk", 100, Window::Open).await;
    let id = new_announcement(&app, &csrf, talk.id).await;
    let text = textarea(&page(&app, id).await);
    preview(&app, &csrf, id, &text, FOLLOWER).await;
    assert_eq!(send(&app, &csrf, id, &text).await.0, 200);
    let msg_id = status_of(&app, id).await.1.unwrap();
    assert!(page(&app, id).await.contains("微信发完后会把结果推送过来"));

    // Forged: refused by the signature check, nothing recorded.
    let event = finished(msg_id, now(), 75);
    let (status, _) = app.post_wechat_raw("signature=forged&timestamp=1&nonce=2", event.clone()).await;
    assert_eq!(status, 403);
    assert_eq!(status_of(&app, id).await.0, "sent");

    let (status, body) = app.post_wechat(&event).await;
    assert_eq!((status, body.as_str()), (200, "success"));
    let shown = page(&app, id).await;
    assert!(shown.contains("群发完成") && shown.contains("微信报告：成功"), "{shown}");
    assert!(shown.contains("<td>100</td><td>80</td><td>75</td><td>5</td>"), "{shown}");
    let recorded: String = sqlx::query_scalar("SELECT finished_at::text FROM announcements WHERE id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();

    // WeChat's retry, and a second report of the same job: nothing changes.
    assert_eq!(app.post_wechat(&event).await, (200, "success".to_string()));
    assert_eq!(app.post_wechat(&finished(msg_id, now() + 7, 1)).await, (200, "success".to_string()));
    let again: (String, i32) = sqlx::query_as("SELECT finished_at::text, sent_count FROM announcements WHERE id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(again, (recorded, 75));
    // A 群发 made elsewhere (on the WeChat platform): ignored, still answered.
    assert_eq!(app.post_wechat(&finished(424242, now(), 9)).await, (200, "success".to_string()));
    assert_eq!(app.count("SELECT count(*) FROM announcements WHERE status = 'finished'").await, 1);
}

#[tokio::test]
async fn organizers_are_refused_forms_need_their_token_and_names_are_escaped() {
    let fake = FakeWechat::start().await;
    let app = spawn_app_with(fake.settings(Settings::default())).await;
    let csrf = app.login_admin("root").await;
    let club = team(&app, "话剧社").await;
    let play = app.activity("play", 100, Window::Open).await;
    sqlx::query("UPDATE activities SET name = '<script>alert(1)</script>', team_id = $1 WHERE id = $2")
        .bind(club)
        .bind(play.id)
        .execute(&app.pool)
        .await
        .unwrap();
    let id = new_announcement(&app, &csrf, play.id).await;
    let shown = page(&app, id).await;
    assert!(!shown.contains("<script>alert") && shown.contains("&#60;script&#62;alert(1)"), "{shown}");
    let list = app.get("/admin/announcements").await.text().await.unwrap();
    assert!(!list.contains("<script>alert"), "{list}");

    // Without the form's token: refused, nothing sent.
    let text = textarea(&shown);
    let (status, _) = preview(&app, "", id, &text, FOLLOWER).await;
    assert_eq!(status, 403);
    let (status, _) = preview(&app, "not-the-token", id, &text, FOLLOWER).await;
    assert_eq!(status, 403);
    let resp =
        app.http.post(app.url("/admin/announcements")).form(&[("activity", play.id.to_string())]).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(fake.count(MASS_PREVIEW_PATH), 0);

    // Even the organizer of the activity's own team: 群发 reaches every follower.
    let (ophelia, her_csrf) = organizer(&app, "ophelia", &["话剧社"]).await;
    let hers = ophelia.get(app.url(&format!("/admin/activities/{}", play.id))).send().await.unwrap();
    assert_eq!(hers.status(), 200, "her team's activity");
    assert!(!hers.text().await.unwrap().contains("announce-link"), "no 群发 link for an organizer");
    for path in ["/admin/announcements".to_string(), format!("/admin/announcements/{id}")] {
        assert_eq!(ophelia.get(app.url(&path)).send().await.unwrap().status(), 403, "{path}");
    }
    for action in ["preview", "send"] {
        let resp = ophelia
            .post(app.url(&format!("/admin/announcements/{id}/{action}")))
            .form(&[("csrf", her_csrf.as_str()), ("body", text.as_str()), ("openid", FOLLOWER)])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{action}");
    }
    assert_eq!((fake.count(MASS_PREVIEW_PATH), fake.count(MASS_SENDALL_PATH)), (0, 0));
    assert!(!app.get("/admin").await.text().await.unwrap().is_empty());
}
