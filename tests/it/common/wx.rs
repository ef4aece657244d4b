//! Messages as WeChat sends them (signed, optionally encrypted) and readers
//! for the replies.

use std::sync::atomic::{AtomicU64, Ordering};

use quick_xml::events::Event as XmlEvent;
use wechat_ticket::wechat::{crypto::Cipher, message, reply, signature};

use super::{AES_KEY, APPID, TOKEN, TestApp};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A unique MsgId, as WeChat gives every message.
pub fn next_msg_id() -> u64 {
    6_000_000_000_000_000_000 + NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

pub fn text_with_id(from: &str, content: &str, msg_id: u64) -> String {
    format!(
        "<xml><ToUserName><![CDATA[gh_123456789abc]]></ToUserName>\
         <FromUserName><![CDATA[{from}]]></FromUserName><CreateTime>{}</CreateTime>\
         <MsgType><![CDATA[text]]></MsgType><Content>{}</Content>\
         <MsgId>{msg_id}</MsgId></xml>",
        now(),
        reply::cdata(content)
    )
}

pub fn text(from: &str, content: &str) -> String {
    text_with_id(from, content, next_msg_id())
}

pub fn event_at(from: &str, event: &str, key: Option<&str>, create_time: i64) -> String {
    let key = key.map(|k| format!("<EventKey><![CDATA[{k}]]></EventKey>")).unwrap_or_default();
    format!(
        "<xml><ToUserName><![CDATA[gh_123456789abc]]></ToUserName>\
         <FromUserName><![CDATA[{from}]]></FromUserName><CreateTime>{create_time}</CreateTime>\
         <MsgType><![CDATA[event]]></MsgType><Event><![CDATA[{event}]]></Event>{key}</xml>"
    )
}

/// Menu clicks carry no MsgId; a distinct CreateTime per click keeps them
/// distinct messages (WeChat's own de-duplication key for events).
pub fn click(from: &str, key: &str) -> String {
    event_at(from, "CLICK", Some(key), now() * 1000 + (NEXT_ID.fetch_add(1, Ordering::Relaxed) % 1000) as i64)
}

pub fn subscribe(from: &str) -> String {
    event_at(from, "subscribe", None, now())
}

pub fn image(from: &str) -> String {
    format!(
        "<xml><ToUserName><![CDATA[gh_123456789abc]]></ToUserName>\
         <FromUserName><![CDATA[{from}]]></FromUserName><CreateTime>{}</CreateTime>\
         <MsgType><![CDATA[image]]></MsgType><PicUrl><![CDATA[http://example.invalid/a.jpg]]></PicUrl>\
         <MediaId><![CDATA[media]]></MediaId><MsgId>{}</MsgId></xml>",
        now(),
        next_msg_id()
    )
}

/// The query WeChat adds to every POST, signed with the test token.
pub fn signed_query() -> String {
    let timestamp = now().to_string();
    let nonce = format!("{}", next_msg_id() % 1_000_000_007);
    let sig = signature::sign(&[TOKEN, &timestamp, &nonce]);
    format!("signature={sig}&timestamp={timestamp}&nonce={nonce}&openid=test")
}

pub fn cipher() -> Cipher {
    Cipher::new(AES_KEY, APPID).unwrap()
}

impl TestApp {
    /// POSTs a plaintext message, signed; returns (status, body).
    pub async fn post_wechat(&self, xml: &str) -> (u16, String) {
        self.post_wechat_raw(&signed_query(), xml.to_string()).await
    }

    pub async fn post_wechat_raw(&self, query: &str, body: String) -> (u16, String) {
        let resp = self
            .http
            .post(self.url(&format!("/wechat?{query}")))
            .header("content-type", "text/xml")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap())
    }

    /// Sends a plaintext message and returns the reply, asserting a 200.
    pub async fn say(&self, xml: &str) -> Reply {
        let (status, body) = self.post_wechat(xml).await;
        assert_eq!(status, 200, "{body}");
        Reply::parse(&body)
    }

    /// Sends a message in safe mode: an encrypted envelope with msg_signature.
    pub async fn post_encrypted(&self, xml: &str) -> (u16, String) {
        let timestamp = now().to_string();
        // A fresh nonce per delivery, as WeChat sends: a signed pair carries one message.
        let nonce = format!("{}", next_msg_id() % 1_000_000_007);
        let encrypt = cipher().encrypt(xml);
        let sig = signature::sign(&[TOKEN, &timestamp, &nonce]);
        let msg_sig = signature::sign(&[TOKEN, &timestamp, &nonce, &encrypt]);
        let query = format!(
            "signature={sig}&timestamp={timestamp}&nonce={nonce}&openid=test&encrypt_type=aes&msg_signature={msg_sig}"
        );
        let body = format!(
            "<xml><ToUserName><![CDATA[gh_123456789abc]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
        );
        self.post_wechat_raw(&query, body).await
    }
}

/// A passive reply as a student's phone would show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Text(String),
    News { title: String, description: String, url: String, pic_url: String },
    Success,
}

impl Reply {
    pub fn parse(body: &str) -> Reply {
        if body == "success" {
            return Reply::Success;
        }
        let fields = elements(body);
        let get = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
        match get("MsgType").as_str() {
            "text" => Reply::Text(get("Content")),
            "news" => {
                assert_eq!(get("ArticleCount"), "1", "{body}");
                Reply::News {
                    title: get("Title"),
                    description: get("Description"),
                    url: get("Url"),
                    pic_url: get("PicUrl"),
                }
            }
            other => panic!("unexpected reply type {other:?}: {body}"),
        }
    }

    pub fn text(&self) -> &str {
        match self {
            Reply::Text(t) => t,
            other => panic!("expected a text reply, got {other:?}"),
        }
    }

    /// Every `href` in a text reply.
    pub fn links(&self) -> Vec<String> {
        self.text().split("href=\"").skip(1).filter_map(|s| s.split('"').next()).map(str::to_string).collect()
    }
}

/// (element name, text) for every leaf element, in order.
pub fn elements(xml: &str) -> Vec<(String, String)> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut out = Vec::new();
    let mut current = String::new();
    let mut text = String::new();
    loop {
        match reader.read_event().expect("well-formed reply XML") {
            XmlEvent::Start(e) => {
                current = e.name().as_ref().to_string();
                text.clear();
            }
            XmlEvent::CData(t) => text.push_str(&t),
            XmlEvent::Text(t) => text.push_str(&t),
            XmlEvent::GeneralRef(r) => text.push_str(match &*r {
                "amp" => "&",
                "lt" => "<",
                "gt" => ">",
                "quot" => "\"",
                "apos" => "'",
                other => panic!("unexpected entity {other}"),
            }),
            XmlEvent::End(_) if !current.is_empty() => {
                out.push((std::mem::take(&mut current), std::mem::take(&mut text)));
            }
            XmlEvent::Eof => break,
            _ => {}
        }
    }
    out
}

/// Decrypts a safe-mode reply envelope after checking its signature.
pub fn open_reply(body: &str, timestamp: &str, nonce: &str) -> String {
    let fields = elements(body);
    let get = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap();
    let encrypt = get("Encrypt");
    assert_eq!(get("TimeStamp"), timestamp);
    assert_eq!(get("Nonce"), nonce);
    assert!(signature::verify_msg(TOKEN, timestamp, nonce, &encrypt, &get("MsgSignature")), "reply signature");
    cipher().decrypt(&encrypt).unwrap()
}

/// Parses what the app sent back as an incoming-style message (for raw checks).
pub fn parse_as_message(xml: &str) -> Option<message::Message> {
    message::parse(xml).ok()
}
