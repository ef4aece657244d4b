//! SPEC §2 through the real `/wechat` route: signatures, modes, bad bodies,
//! de-duplication of WeChat's retries.

use crate::common::{
    Settings, TOKEN, spawn_app, spawn_app_with,
    wx::{self, Reply},
};
use wechat_ticket::wechat::signature;

#[tokio::test]
async fn health_check_answers_when_the_database_does() {
    let app = spawn_app().await;
    let resp = app.get("/healthz").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "ok");
}

#[tokio::test]
async fn server_verification_echoes_only_when_signed() {
    let app = spawn_app().await;
    // Signed with our token, at the current time (an old timestamp is refused).
    let ts = wx::now().to_string();
    let sig = signature::sign(&[TOKEN, &ts, "test"]);
    let ok = app.get(&format!("/wechat?signature={sig}&timestamp={ts}&nonce=test&echostr=X%2By%20z")).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), "X+y z");

    let mut wrong = sig.clone();
    wrong.replace_range(39..40, if sig.ends_with('0') { "1" } else { "0" });
    let bad = app.get(&format!("/wechat?signature={wrong}&timestamp={ts}&nonce=test&echostr=X")).await;
    assert_eq!(bad.status(), 403);
    assert_ne!(bad.text().await.unwrap(), "X");
    let missing = app.get(&format!("/wechat?timestamp={ts}&nonce=test&echostr=X")).await;
    assert_eq!(missing.status(), 403);
}

#[tokio::test]
async fn plaintext_help_gets_the_command_list() {
    let app = spawn_app().await;
    for word in ["帮助", "help", "  HELP  "] {
        let reply = app.say(&wx::text("oStudent", word)).await;
        let text = reply.text();
        assert!(text.contains("抢票") && text.contains("绑定") && text.contains("退票"), "{text}");
    }
}

#[tokio::test]
async fn the_reply_is_addressed_back_to_the_student() {
    let app = spawn_app().await;
    let (_, body) = app.post_wechat(&wx::text("oStudent", "帮助")).await;
    let fields = wx::elements(&body);
    assert!(fields.contains(&("ToUserName".into(), "oStudent".into())), "{body}");
    assert!(fields.contains(&("FromUserName".into(), "gh_123456789abc".into())), "{body}");
}

#[tokio::test]
async fn unknown_text_and_unsupported_messages_get_a_pointer_to_help() {
    let app = spawn_app().await;
    for xml in [wx::text("oStudent", "你好"), wx::image("oStudent")] {
        let reply = app.say(&xml).await;
        assert!(reply.text().contains("帮助"), "{reply:?}");
    }
}

#[tokio::test]
async fn subscribing_gets_a_welcome_with_a_bind_link_and_other_events_get_success() {
    let app = spawn_app().await;
    let welcome = app.say(&wx::subscribe("oNew")).await;
    assert!(welcome.text().contains("欢迎"), "{welcome:?}");
    assert!(welcome.links()[0].starts_with(&app.url("/bind?")), "{welcome:?}");
    let (status, body) = app.post_wechat(&wx::event_at("oNew", "unsubscribe", None, wx::now())).await;
    assert_eq!((status, body.as_str()), (200, "success"));
    let (status, body) = app.post_wechat(&wx::event_at("oNew", "VIEW", Some("http://x.invalid/"), wx::now())).await;
    assert_eq!((status, body.as_str()), (200, "success"));
}

#[tokio::test]
async fn safe_mode_replies_in_an_encrypted_envelope() {
    let app = spawn_app_with(Settings::default().encrypted()).await;
    let (status, body) = app.post_encrypted(&wx::text("oStudent", "帮助")).await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("抢票"), "the reply must not be readable in transit: {body}");
    let field = |name: &str| wx::elements(&body).into_iter().find(|(k, _)| k == name).unwrap().1;
    let inner = wx::open_reply(&body, &field("TimeStamp"), &field("Nonce"));
    assert!(Reply::parse(&inner).text().contains("抢票"), "{inner}");
}

#[tokio::test]
async fn safe_mode_refuses_a_bad_msg_signature_and_undecryptable_bodies() {
    let app = spawn_app_with(Settings::default().encrypted()).await;
    let timestamp = wx::now().to_string();
    let nonce = "77";
    let sig = signature::sign(&[TOKEN, &timestamp, nonce]);
    let encrypt = wx::cipher().encrypt(&wx::text("oStudent", "帮助"));
    let body =
        |e: &str| format!("<xml><ToUserName><![CDATA[gh]]></ToUserName><Encrypt><![CDATA[{e}]]></Encrypt></xml>");
    let query = |msg_sig: &str| {
        format!("signature={sig}&timestamp={timestamp}&nonce={nonce}&encrypt_type=aes&msg_signature={msg_sig}")
    };

    let wrong = signature::sign(&[TOKEN, &timestamp, nonce, "something else"]);
    assert_eq!(app.post_wechat_raw(&query(&wrong), body(&encrypt)).await.0, 403);

    // Correctly signed but truncated / not base64: refused, no panic.
    for bad in [&encrypt[..encrypt.len() - 24], "!!!not base64!!!"] {
        let msg_sig = signature::sign(&[TOKEN, &timestamp, nonce, bad]);
        assert_eq!(app.post_wechat_raw(&query(&msg_sig), body(bad)).await.0, 400, "{bad}");
    }
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.count("SELECT count(*) FROM wechat_messages").await, 0);
}

#[tokio::test]
async fn compatible_mode_bodies_work_both_ways() {
    let app = spawn_app_with(Settings::default().encrypted()).await;
    let plain = wx::text("oStudent", "帮助");
    let encrypt = wx::cipher().encrypt(&plain);
    // Compatible mode: the plaintext fields and the Encrypt element in one body.
    let body = plain.replace("</xml>", &format!("<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"));

    // Read as plaintext when the query does not ask for AES…
    let (status, reply) = app.post_wechat(&body).await;
    assert_eq!(status, 200);
    assert!(Reply::parse(&reply).text().contains("抢票"));

    // …and decrypted (and answered encrypted) when it does.
    let timestamp = wx::now().to_string();
    let sig = signature::sign(&[TOKEN, &timestamp, "5"]);
    let msg_sig = signature::sign(&[TOKEN, &timestamp, "5", &encrypt]);
    let query = format!("signature={sig}&timestamp={timestamp}&nonce=5&encrypt_type=aes&msg_signature={msg_sig}");
    let (status, reply) = app.post_wechat_raw(&query, body).await;
    assert_eq!(status, 200, "{reply}");
    let inner = wx::open_reply(&reply, &timestamp, "5");
    assert!(Reply::parse(&inner).text().contains("抢票"));
}

#[tokio::test]
async fn a_bad_signature_on_post_is_refused_and_nothing_happens() {
    let app = spawn_app().await;
    let query = "signature=0000000000000000000000000000000000000000&timestamp=1&nonce=2";
    let (status, _) = app.post_wechat_raw(query, wx::text("oStudent", "帮助")).await;
    assert_eq!(status, 403);
    let (status, _) = app.post_wechat_raw("", wx::text("oStudent", "帮助")).await;
    assert_eq!(status, 403);
    assert_eq!(app.count("SELECT count(*) FROM wechat_messages").await, 0);
}

#[tokio::test]
async fn garbage_bodies_get_4xx_and_change_nothing() {
    let app = spawn_app().await;
    let bomb = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">{}]><xml><ToUserName>a</ToUserName>\
         <FromUserName>b</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>&lol9;</Content></xml>",
        (1..10).map(|i| format!("<!ENTITY lol{i} \"{}\">", format!("&lol{};", i - 1).repeat(10))).collect::<String>()
    );
    let truncated = wx::text("oStudent", "帮助");
    let truncated = truncated[..truncated.len() / 2].to_string();
    let huge = format!("<xml><Content>{}</Content></xml>", "a".repeat(10 * 1024 * 1024));
    for body in [
        "this is not xml".to_string(),
        "{\"json\": true}".to_string(),
        truncated,
        bomb,
        huge,
        String::from_utf8_lossy(&[0xff, 0xfe, 0x00]).into_owned(),
        "<xml><FromUserName>only</FromUserName></xml>".to_string(),
    ] {
        let (status, _) = app.post_wechat(&body).await;
        assert!((400..500).contains(&status), "status {status} for a {}-byte body", body.len());
    }
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.count("SELECT count(*) FROM wechat_messages").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM students").await, 0);
    // And it still answers real messages.
    assert!(app.say(&wx::text("oStudent", "帮助")).await.text().contains("抢票"));
}

#[tokio::test]
async fn the_same_msgid_three_times_at_once_is_answered_once_identically() {
    let app = spawn_app().await;
    // `绑定` answers with a signed link whose expiry is computed when handled,
    // so three separate handlings a second apart could differ; retries must not.
    let xml = wx::text_with_id("oRetry", "绑定", wx::next_msg_id());
    let (a, b, c) = tokio::join!(app.post_wechat(&xml), app.post_wechat(&xml), app.post_wechat(&xml));
    assert_eq!(a.0, 200);
    assert_eq!(a, b);
    assert_eq!(b, c);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (_, later) = app.post_wechat(&xml).await;
    assert_eq!(later, a.1, "a later retry gets the first answer");
    assert_eq!(app.count("SELECT count(*) FROM wechat_messages").await, 1);
}

#[tokio::test]
async fn the_same_event_three_times_at_once_is_answered_once_identically() {
    let app = spawn_app().await;
    let xml = wx::subscribe("oRetryEvent");
    let (a, b, c) = tokio::join!(app.post_wechat(&xml), app.post_wechat(&xml), app.post_wechat(&xml));
    assert_eq!(a.0, 200);
    assert_eq!(a, b);
    assert_eq!(b, c);
    assert_eq!(app.count("SELECT count(*) FROM wechat_messages").await, 1);
    // A different CreateTime is a different event.
    let other = wx::event_at("oRetryEvent", "subscribe", None, wx::now() + 5);
    assert_eq!(app.post_wechat(&other).await.0, 200);
    assert_eq!(app.count("SELECT count(*) FROM wechat_messages").await, 2);
}
