//! The other side of the wire: what WeChat's server POSTs when a user writes
//! to the account, taps its menu or follows it — the message XML, signed, and
//! in safe mode encrypted and signed again — and how such a caller reads the
//! passive reply. The admin simulator talks to this server's own `/wechat`
//! with it, so its messages take exactly the path a phone's do.

use super::{WechatError, crypto::Cipher, message, reply::cdata, signature};

/// What a user does in the chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserAction {
    /// Sends a text message; WeChat numbers each one with a `MsgId`.
    Text { content: String, msg_id: u64 },
    /// Taps a menu button of type `click`.
    Click { key: String },
    /// Follows the account.
    Subscribe,
}

/// The plaintext XML WeChat posts for `action` by `openid` to the account `account`.
pub fn message_xml(account: &str, openid: &str, action: &UserAction, create_time: i64) -> String {
    let head = format!(
        "<xml><ToUserName>{}</ToUserName><FromUserName>{}</FromUserName><CreateTime>{create_time}</CreateTime>",
        cdata(account),
        cdata(openid)
    );
    let body = match action {
        UserAction::Text { content, msg_id } => {
            format!("<MsgType><![CDATA[text]]></MsgType><Content>{}</Content><MsgId>{msg_id}</MsgId>", cdata(content))
        }
        UserAction::Click { key } => format!(
            "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[CLICK]]></Event><EventKey>{}</EventKey>",
            cdata(key)
        ),
        UserAction::Subscribe => {
            "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event><EventKey><![CDATA[]]></EventKey>"
                .to_string()
        }
    };
    format!("{head}{body}</xml>")
}

/// A POST as WeChat sends it: the query string (after `?`) and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub query: String,
    pub body: String,
}

/// Signs `xml` for the server holding `token`; with a cipher (safe mode) the
/// body is the encrypted envelope and the query also carries `msg_signature`.
pub fn deliver(
    token: &str,
    cipher: Option<&Cipher>,
    account: &str,
    xml: &str,
    timestamp: &str,
    nonce: &str,
) -> Delivery {
    let signature = signature::sign(&[token, timestamp, nonce]);
    let query = format!("signature={signature}&timestamp={timestamp}&nonce={nonce}");
    match cipher {
        None => Delivery { query, body: xml.to_string() },
        Some(cipher) => {
            let encrypt = cipher.encrypt(xml);
            let msg_signature = signature::sign(&[token, timestamp, nonce, &encrypt]);
            Delivery {
                query: format!("{query}&encrypt_type=aes&msg_signature={msg_signature}"),
                body: format!(
                    "<xml><ToUserName>{}</ToUserName><Encrypt>{}</Encrypt></xml>",
                    cdata(account),
                    cdata(&encrypt)
                ),
            }
        }
    }
}

/// The reply's plaintext XML (or `success`). With a cipher, the reply must be
/// an envelope whose signature checks out for the `timestamp` and `nonce`
/// that were sent, as WeChat would insist.
pub fn open_reply(
    token: &str,
    cipher: Option<&Cipher>,
    body: &str,
    timestamp: &str,
    nonce: &str,
) -> Result<String, WechatError> {
    let Some(cipher) = cipher else { return Ok(body.to_string()) };
    if body.trim() == "success" || body.trim().is_empty() {
        return Ok(body.trim().to_string());
    }
    let envelope = message::parse_envelope(body)?;
    let encrypt = envelope.encrypt.ok_or(WechatError::MissingField("Encrypt"))?;
    let msg_signature = envelope.msg_signature.ok_or(WechatError::MissingField("MsgSignature"))?;
    if !signature::verify_msg(token, timestamp, nonce, &encrypt, &msg_signature) {
        return Err(WechatError::BadSignature);
    }
    cipher.decrypt(&encrypt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wechat::{
        crypto,
        message::{Event, MessageKind, parse},
    };

    const TOKEN: &str = "123456";
    const AES_KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
    const APPID: &str = "wx49f0ab532d5d035a";

    #[test]
    fn every_action_parses_back_as_the_message_a_phone_sends() {
        let text = message_xml("gh_1", "simulator-a", &UserAction::Text { content: "抢票 a]]>b".into(), msg_id: 7 }, 9);
        let msg = parse(&text).unwrap();
        assert_eq!((msg.from_user.as_str(), msg.create_time, msg.msg_id.as_deref()), ("simulator-a", 9, Some("7")));
        assert_eq!(msg.kind, MessageKind::Text { content: "抢票 a]]>b".into() });
        let click = parse(&message_xml("gh_1", "simulator-a", &UserAction::Click { key: "BOOK_3".into() }, 9)).unwrap();
        assert_eq!(click.kind, MessageKind::Event(Event::Click { key: "BOOK_3".into() }));
        let follow = parse(&message_xml("gh_1", "simulator-a", &UserAction::Subscribe, 9)).unwrap();
        assert_eq!(follow.kind, MessageKind::Event(Event::Subscribe { event_key: None }));
    }

    #[test]
    fn plaintext_delivery_is_signed_with_the_token() {
        let d = deliver(TOKEN, None, "gh_1", "<xml/>", "1411525903", "461056294");
        let sig = signature::sign(&[TOKEN, "1411525903", "461056294"]);
        assert_eq!(d.query, format!("signature={sig}&timestamp=1411525903&nonce=461056294"));
        assert!(signature::verify(TOKEN, "1411525903", "461056294", &sig));
        assert_eq!(d.body, "<xml/>");
    }

    #[test]
    fn safe_mode_delivery_decrypts_and_the_reply_opens() {
        let cipher = crypto::Cipher::new(AES_KEY, APPID).unwrap();
        let xml = message_xml("gh_1", "simulator-a", &UserAction::Click { key: "HELP".into() }, 9);
        let d = deliver(TOKEN, Some(&cipher), "gh_1", &xml, "100", "200");
        assert!(d.query.contains("&encrypt_type=aes&msg_signature="), "{}", d.query);
        let env = message::parse_envelope(&d.body).unwrap();
        let encrypt = env.encrypt.unwrap();
        let msg_sig = d.query.rsplit("msg_signature=").next().unwrap();
        assert!(signature::verify_msg(TOKEN, "100", "200", &encrypt, msg_sig));
        assert_eq!(cipher.decrypt(&encrypt).unwrap(), xml);

        let reply = crypto::reply_envelope(&cipher, TOKEN, "<xml>hi</xml>", "100", "200");
        assert_eq!(open_reply(TOKEN, Some(&cipher), &reply, "100", "200").unwrap(), "<xml>hi</xml>");
        // Signed for another request, or tampered with: refused.
        assert_eq!(open_reply(TOKEN, Some(&cipher), &reply, "101", "200"), Err(WechatError::BadSignature));
        assert_eq!(open_reply(TOKEN, Some(&cipher), "success", "100", "200").unwrap(), "success");
    }
}
