//! Parsing the XML bodies WeChat POSTs to the endpoint.
//!
//! Parsing happens in two passes over the (size-limited) body. A streaming
//! pass checks the document's shape — no DOCTYPE, root `<xml>`, properly
//! closed, no undefined entities — and only then serde reads the fields. The
//! first pass is what keeps hostile bodies cheap: a DTD is refused the moment
//! it is seen, before any entity could be declared, let alone expanded.

use quick_xml::Reader;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::Event as XmlEvent;
use serde::Deserialize;

use super::WechatError;

/// A message or event sent by a user to the Official Account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The Official Account's id (`gh_…`): the reply's `FromUserName`.
    pub to_user: String,
    /// The user's openid: the reply's `ToUserName`.
    pub from_user: String,
    pub create_time: i64,
    /// Present on ordinary messages, absent on events.
    pub msg_id: Option<String>,
    pub kind: MessageKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageKind {
    Text {
        content: String,
    },
    Event(Event),
    /// Image, voice, video, location, link and any type WeChat adds later:
    /// well-formed but not understood, so the caller can answer politely
    /// instead of failing.
    Other {
        msg_type: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `event_key` is `qrscene_…` when the user followed through a QR code.
    Subscribe {
        event_key: Option<String>,
    },
    Unsubscribe,
    /// A menu button of type `click`.
    Click {
        key: String,
    },
    /// A menu button of type `view` (the user opened `url`).
    View {
        url: String,
    },
    /// An already-following user scanned a parametric QR code.
    Scan {
        key: String,
    },
    /// A 群发 finished (`MASSSENDJOBFINISH`): how many it reached.
    MassSendFinished(MassSendResult),
    Other {
        event: String,
        key: Option<String>,
    },
}

/// What WeChat reports when a 群发 job is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MassSendResult {
    /// The `msg_id` the `sendall` call returned (digits, kept as WeChat wrote them).
    pub msg_id: String,
    /// WeChat's words: `send success`, `send fail`, `err(10012001)`, …
    pub status: String,
    /// Followers in the chosen group.
    pub total: i64,
    /// Those the send was meant for after WeChat's filtering (blocked, over their monthly four, …).
    pub filter: i64,
    pub sent: i64,
    pub error: i64,
}

/// The outer body of a safe-mode or compatible-mode request. In compatible
/// mode the same body also carries the plaintext fields, which
/// [`parse`] reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub to_user: Option<String>,
    pub encrypt: Option<String>,
    /// Only in replies: the signature over `Encrypt`, `TimeStamp` and `Nonce`.
    pub msg_signature: Option<String>,
}

impl Message {
    /// Identifies this delivery across WeChat's retries (it resends the same
    /// message up to three times when a reply is slow).
    ///
    /// Messages are keyed by `MsgId`. Events have none, so they are keyed by
    /// sender, time, event and key, which WeChat repeats verbatim on a retry.
    pub fn dedup_key(&self) -> String {
        if let Some(id) = &self.msg_id {
            // Per sender: a MsgId is only unique per user, and one user's
            // MsgId must never answer for another.
            return format!("msg:{}:{id}", self.from_user);
        }
        let (name, key) = match &self.kind {
            MessageKind::Event(event) => (event.name(), event.key()),
            // Non-event messages always carry a MsgId in practice; fall back
            // to the message type so the key is still deterministic.
            MessageKind::Text { .. } => ("text", None),
            MessageKind::Other { msg_type } => (msg_type.as_str(), None),
        };
        format!("evt:{}:{}:{}:{}", self.from_user, self.create_time, name, key.unwrap_or(""))
    }
}

impl Event {
    /// The event's name as WeChat documents it (their case varies by event).
    fn name(&self) -> &str {
        match self {
            Event::Subscribe { .. } => "subscribe",
            Event::Unsubscribe => "unsubscribe",
            Event::Click { .. } => "CLICK",
            Event::View { .. } => "VIEW",
            Event::Scan { .. } => "SCAN",
            Event::MassSendFinished(_) => "MASSSENDJOBFINISH",
            Event::Other { event, .. } => event,
        }
    }

    fn key(&self) -> Option<&str> {
        match self {
            Event::MassSendFinished(result) => Some(&result.msg_id),
            Event::Subscribe { event_key: key } | Event::Other { key, .. } => key.as_deref(),
            Event::Unsubscribe => None,
            Event::Click { key } | Event::Scan { key } => Some(key),
            Event::View { url } => Some(url),
        }
    }
}

/// Every field we read from any body. Unknown elements (`Ticket`, `MsgDataId`,
/// `Latitude`, …) are skipped by serde, and serde accepts both CDATA and plain
/// text for a field.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawXml {
    to_user_name: Option<String>,
    from_user_name: Option<String>,
    create_time: Option<String>,
    msg_type: Option<String>,
    content: Option<String>,
    msg_id: Option<String>,
    event: Option<String>,
    event_key: Option<String>,
    encrypt: Option<String>,
    msg_signature: Option<String>,
    /// `MASSSENDJOBFINISH` spells its id `MsgID`, not `MsgId`.
    #[serde(rename = "MsgID")]
    mass_msg_id: Option<String>,
    status: Option<String>,
    total_count: Option<String>,
    filter_count: Option<String>,
    sent_count: Option<String>,
    error_count: Option<String>,
}

/// Parses a plaintext message (a plaintext-mode body, a compatible-mode body,
/// or the XML decrypted from a safe-mode `Encrypt`).
pub fn parse(xml: &str) -> Result<Message, WechatError> {
    let raw = read(xml)?;
    let to_user = token(raw.to_user_name).ok_or(WechatError::MissingField("ToUserName"))?;
    let from_user = token(raw.from_user_name).ok_or(WechatError::MissingField("FromUserName"))?;
    let create_time = token(raw.create_time)
        .ok_or(WechatError::MissingField("CreateTime"))?
        .parse()
        .map_err(|_| malformed("CreateTime is not an integer"))?;
    let msg_type = token(raw.msg_type).ok_or(WechatError::MissingField("MsgType"))?;

    let kind = match msg_type.to_ascii_lowercase().as_str() {
        // Content is kept verbatim (not trimmed): interpreting it is the
        // caller's business. An empty message is harmless, so no error.
        "text" => MessageKind::Text { content: raw.content.unwrap_or_default() },
        "event" => {
            let event = token(raw.event).ok_or(WechatError::MissingField("Event"))?;
            if event.eq_ignore_ascii_case("MASSSENDJOBFINISH") {
                MessageKind::Event(Event::MassSendFinished(mass_send_result(
                    raw.mass_msg_id,
                    raw.status,
                    [raw.total_count, raw.filter_count, raw.sent_count, raw.error_count],
                )?))
            } else {
                MessageKind::Event(to_event(event, token(raw.event_key)))
            }
        }
        _ => MessageKind::Other { msg_type },
    };
    Ok(Message { to_user, from_user, create_time, msg_id: token(raw.msg_id), kind })
}

/// Reads the `ToUserName` and `Encrypt` of a safe-mode or compatible-mode body.
/// Both are optional here; the caller decides which are required by the mode
/// the query string announces.
pub fn parse_envelope(xml: &str) -> Result<Envelope, WechatError> {
    let raw = read(xml)?;
    Ok(Envelope {
        to_user: token(raw.to_user_name),
        encrypt: token(raw.encrypt),
        msg_signature: token(raw.msg_signature),
    })
}

/// The counts of a `MASSSENDJOBFINISH`. Without a numeric `MsgID` it names
/// no send, so it is refused as malformed; a missing count reads as 0.
fn mass_send_result(
    msg_id: Option<String>,
    status: Option<String>,
    counts: [Option<String>; 4],
) -> Result<MassSendResult, WechatError> {
    let msg_id = token(msg_id)
        .filter(|id| id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit()))
        .ok_or(WechatError::MissingField("MsgID"))?;
    let names = ["TotalCount", "FilterCount", "SentCount", "ErrorCount"];
    let mut read = [0i64; 4];
    for ((field, name), n) in counts.into_iter().zip(names).zip(read.iter_mut()) {
        if let Some(text) = token(field) {
            *n = text.parse().map_err(|_| malformed(&format!("{name} is not an integer")))?;
        }
    }
    let [total, filter, sent, error] = read;
    Ok(MassSendResult { msg_id, status: token(status).unwrap_or_default(), total, filter, sent, error })
}

/// WeChat sends `CLICK`, `VIEW`, `SCAN` in upper case and `subscribe`,
/// `unsubscribe` in lower case; match regardless so a change on their side
/// does not silently turn menu clicks into unknown events.
fn to_event(event: String, key: Option<String>) -> Event {
    match event.to_ascii_lowercase().as_str() {
        "subscribe" => Event::Subscribe { event_key: key },
        "unsubscribe" => Event::Unsubscribe,
        "click" => Event::Click { key: key.unwrap_or_default() },
        "view" => Event::View { url: key.unwrap_or_default() },
        "scan" => Event::Scan { key: key.unwrap_or_default() },
        _ => Event::Other { event, key },
    }
}

/// An identifier-like field: surrounding whitespace removed, empty treated as
/// absent (WeChat sends `<EventKey><![CDATA[]]></EventKey>` for "no key").
fn token(field: Option<String>) -> Option<String> {
    let field = field?;
    let trimmed = field.trim();
    if trimmed.is_empty() {
        None
    } else if trimmed.len() == field.len() {
        Some(field)
    } else {
        Some(trimmed.to_owned())
    }
}

fn read(xml: &str) -> Result<RawXml, WechatError> {
    check_document(xml)?;
    quick_xml::de::from_str(xml).map_err(|e| WechatError::MalformedXml(e.to_string()))
}

fn malformed(why: &str) -> WechatError {
    WechatError::MalformedXml(why.to_owned())
}

/// Streams through the whole document once and refuses anything that is not
/// a single, complete `<xml>` element free of DTDs and undefined entities.
///
/// serde alone would not do: it ignores the root's name, stops reading at the
/// root's end tag, and silently skips the insides of unknown elements.
fn check_document(xml: &str) -> Result<(), WechatError> {
    // The default configuration already refuses mismatched end tags.
    let mut reader = Reader::from_str(xml);
    let mut depth = 0usize;
    let mut seen_root = false;
    loop {
        let event = reader.read_event().map_err(|e| WechatError::MalformedXml(e.to_string()))?;
        match event {
            XmlEvent::DocType(_) => return Err(WechatError::DoctypeRefused),
            XmlEvent::Start(ref e) | XmlEvent::Empty(ref e) if depth == 0 => {
                if seen_root {
                    return Err(malformed("more than one root element"));
                }
                if e.name().as_ref() != "xml" {
                    return Err(malformed("root element is not <xml>"));
                }
                seen_root = true;
                if matches!(event, XmlEvent::Start(_)) {
                    depth = 1;
                }
            }
            XmlEvent::Start(_) => depth += 1,
            XmlEvent::End(_) => {
                depth = depth.checked_sub(1).ok_or_else(|| malformed("unmatched end tag"))?;
            }
            // Only whitespace may surround the root element.
            XmlEvent::Text(ref t) if depth == 0 && !t.chars().all(|c| matches!(c, ' ' | '\t' | '\r' | '\n')) => {
                return Err(malformed("text outside the root element"));
            }
            XmlEvent::CData(_) | XmlEvent::GeneralRef(_) if depth == 0 => {
                return Err(malformed("text outside the root element"));
            }
            XmlEvent::GeneralRef(ref r) => {
                // Only character references and the five predefined entities
                // exist without a DTD; anything else is an error, not text.
                let known = if r.is_char_ref() {
                    r.resolve_char_ref().is_ok_and(|c| c.is_some())
                } else {
                    resolve_predefined_entity(r).is_some()
                };
                if !known {
                    return Err(WechatError::MalformedXml(format!("undefined entity &{};", &**r)));
                }
            }
            XmlEvent::Eof => break,
            // Declarations, comments, processing instructions, text inside.
            _ => {}
        }
    }
    if !seen_root {
        return Err(malformed("no root element"));
    }
    if depth != 0 {
        return Err(malformed("truncated document"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    const TEXT: &str = "<xml><ToUserName><![CDATA[gh_123456789abc]]></ToUserName>
<FromUserName><![CDATA[oUser123]]></FromUserName>
<CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType>
<Content><![CDATA[抢票 concert]]></Content><MsgId>1234567890123456</MsgId></xml>";

    const CLICK: &str = "<xml><ToUserName><![CDATA[gh_123456789abc]]></ToUserName>
<FromUserName><![CDATA[oUser123]]></FromUserName>
<CreateTime>1700000000</CreateTime><MsgType><![CDATA[event]]></MsgType>
<Event><![CDATA[CLICK]]></Event><EventKey><![CDATA[BOOK_42]]></EventKey></xml>";

    fn event_xml(event: &str, extra: &str) -> String {
        format!(
            "<xml><ToUserName><![CDATA[gh_1]]></ToUserName>\
             <FromUserName><![CDATA[oU]]></FromUserName><CreateTime>123</CreateTime>\
             <MsgType><![CDATA[event]]></MsgType><Event><![CDATA[{event}]]></Event>{extra}</xml>"
        )
    }

    fn event_of(xml: &str) -> Event {
        match parse(xml).expect("parses").kind {
            MessageKind::Event(e) => e,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    #[test]
    fn text_example_parses() {
        let msg = parse(TEXT).unwrap();
        assert_eq!(msg.to_user, "gh_123456789abc");
        assert_eq!(msg.from_user, "oUser123");
        assert_eq!(msg.create_time, 1700000000);
        assert_eq!(msg.msg_id.as_deref(), Some("1234567890123456"));
        assert_eq!(msg.kind, MessageKind::Text { content: "抢票 concert".into() });
        assert_eq!(msg.dedup_key(), "msg:oUser123:1234567890123456");
    }

    #[test]
    fn a_mass_send_result_carries_its_msg_id_and_counts() {
        let xml = event_xml(
            "MASSSENDJOBFINISH",
            "<MsgID>1000001625</MsgID><Status><![CDATA[send success]]></Status><TotalCount>100</TotalCount>\
             <FilterCount>80</FilterCount><SentCount>75</SentCount><ErrorCount>5</ErrorCount>\
             <CopyrightCheckResult><Count>0</Count><ResultList></ResultList><CheckState>1</CheckState></CopyrightCheckResult>",
        );
        let expected = MassSendResult {
            msg_id: "1000001625".into(),
            status: "send success".into(),
            total: 100,
            filter: 80,
            sent: 75,
            error: 5,
        };
        assert_eq!(event_of(&xml), Event::MassSendFinished(expected));
        let msg = parse(&xml).unwrap();
        assert_eq!(msg.msg_id, None, "MsgID is the job's, not a message's MsgId");
        assert_eq!(msg.dedup_key(), "evt:oU:123:MASSSENDJOBFINISH:1000001625");
        assert!(matches!(
            parse(&event_xml("MASSSENDJOBFINISH", "<MsgID>abc</MsgID>")),
            Err(WechatError::MissingField("MsgID"))
        ));
        assert!(matches!(
            parse(&event_xml("MASSSENDJOBFINISH", "<MsgID>1</MsgID><SentCount>many</SentCount>")),
            Err(WechatError::MalformedXml(_))
        ));
    }

    #[test]
    fn click_example_parses() {
        let msg = parse(CLICK).unwrap();
        assert_eq!(msg.msg_id, None);
        assert_eq!(msg.kind, MessageKind::Event(Event::Click { key: "BOOK_42".into() }));
        assert_eq!(msg.dedup_key(), "evt:oUser123:1700000000:CLICK:BOOK_42");
    }

    #[test]
    fn plain_text_fields_and_whitespace_are_accepted() {
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xml>\n  <ToUserName>gh_1</ToUserName>\n  \
                   <FromUserName> oU </FromUserName>\n  <CreateTime>\n 5 \n</CreateTime>\n  \
                   <MsgType>text</MsgType>\n  <Content>a &amp; b &#25250;</Content>\n  <MsgId>9</MsgId>\n</xml>\n";
        let msg = parse(xml).unwrap();
        assert_eq!(msg.from_user, "oU");
        assert_eq!(msg.create_time, 5);
        assert_eq!(msg.kind, MessageKind::Text { content: "a & b 抢".into() });
    }

    #[test]
    fn event_names_match_case_insensitively() {
        let click = Event::Click { key: "K".into() };
        for name in ["CLICK", "click", "Click"] {
            assert_eq!(event_of(&event_xml(name, "<EventKey>K</EventKey>")), click);
        }
        assert_eq!(event_of(&event_xml("UNSUBSCRIBE", "")), Event::Unsubscribe);
        assert_eq!(
            event_of(&event_xml("view", "<EventKey>https://x/y?a=1&amp;b=2</EventKey>")),
            Event::View { url: "https://x/y?a=1&b=2".into() }
        );
        assert_eq!(
            event_of(&event_xml("SCAN", "<EventKey>123</EventKey><Ticket>T</Ticket>")),
            Event::Scan { key: "123".into() }
        );
    }

    #[test]
    fn subscribe_with_and_without_qr_scene() {
        let qr = event_xml(
            "subscribe",
            "<EventKey><![CDATA[qrscene_123123]]></EventKey><Ticket><![CDATA[TICKET]]></Ticket>",
        );
        assert_eq!(event_of(&qr), Event::Subscribe { event_key: Some("qrscene_123123".into()) });
        let plain = event_xml("subscribe", "<EventKey><![CDATA[]]></EventKey>");
        assert_eq!(event_of(&plain), Event::Subscribe { event_key: None });
        let msg = parse(&plain).unwrap();
        assert_eq!(msg.dedup_key(), "evt:oU:123:subscribe:");
        assert_eq!(event_of(&event_xml("subscribe", "<EventKey/>")), Event::Subscribe { event_key: None });
    }

    #[test]
    fn unknown_events_keep_their_name() {
        let xml =
            event_xml("LOCATION", "<Latitude>23.1</Latitude><Longitude>113.3</Longitude><Precision>119.4</Precision>");
        assert_eq!(event_of(&xml), Event::Other { event: "LOCATION".into(), key: None });
        assert_eq!(parse(&xml).unwrap().dedup_key(), "evt:oU:123:LOCATION:");
    }

    #[test]
    fn dedup_key_is_stable_across_event_case() {
        let a = parse(&event_xml("CLICK", "<EventKey>K</EventKey>")).unwrap();
        let b = parse(&event_xml("click", "<EventKey>K</EventKey>")).unwrap();
        assert_eq!(a.dedup_key(), b.dedup_key());
        let c = parse(&event_xml("CLICK", "<EventKey>L</EventKey>")).unwrap();
        assert_ne!(a.dedup_key(), c.dedup_key());
    }

    #[test]
    fn unknown_elements_are_ignored() {
        let xml = "<xml><ToUserName>gh</ToUserName><FromUserName>u</FromUserName>\
                   <Unknown attr=\"1\"><Nested><![CDATA[x]]></Nested><Nested/></Unknown>\
                   <CreateTime>1</CreateTime><MsgType>text</MsgType><Content>hi</Content>\
                   <MsgDataId>7</MsgDataId><Idx>1</Idx><MsgId>2</MsgId></xml>";
        let msg = parse(xml).unwrap();
        assert_eq!(msg.kind, MessageKind::Text { content: "hi".into() });
        assert_eq!(msg.msg_id.as_deref(), Some("2"));
    }

    #[test]
    fn media_and_unknown_types_land_in_other() {
        for ty in ["image", "voice", "video", "shortvideo", "location", "link", "hologram"] {
            let xml = format!(
                "<xml><ToUserName>gh</ToUserName><FromUserName>u</FromUserName>\
                 <CreateTime>1</CreateTime><MsgType><![CDATA[{ty}]]></MsgType>\
                 <PicUrl><![CDATA[http://p]]></PicUrl><MediaId>m</MediaId><MsgId>3</MsgId></xml>"
            );
            let msg = parse(&xml).unwrap();
            assert_eq!(msg.kind, MessageKind::Other { msg_type: ty.into() });
        }
    }

    #[test]
    fn missing_required_fields_are_named() {
        let full = [
            ("ToUserName", "<ToUserName>gh</ToUserName>"),
            ("FromUserName", "<FromUserName>u</FromUserName>"),
            ("CreateTime", "<CreateTime>1</CreateTime>"),
            ("MsgType", "<MsgType>text</MsgType>"),
        ];
        for (missing, _) in full {
            let body: String = full.iter().filter(|(name, _)| *name != missing).map(|(_, el)| *el).collect();
            let xml = format!("<xml>{body}<Content>x</Content></xml>");
            assert_eq!(parse(&xml), Err(WechatError::MissingField(missing)));
        }
        assert_eq!(parse(&event_xml("", "")), Err(WechatError::MissingField("Event")));
        let bad_time = TEXT.replace("1700000000", "soon");
        assert!(matches!(parse(&bad_time), Err(WechatError::MalformedXml(_))));
    }

    #[test]
    fn billion_laughs_is_refused_quickly() {
        let mut dtd = String::from("<!ENTITY lol0 \"lol\">");
        for i in 1..10 {
            let refs = format!("&lol{};", i - 1).repeat(10);
            dtd.push_str(&format!("<!ENTITY lol{i} \"{refs}\">"));
        }
        let bomb = format!(
            "<?xml version=\"1.0\"?><!DOCTYPE xml [{dtd}]><xml><ToUserName>a</ToUserName>\
             <FromUserName>b</FromUserName><CreateTime>1</CreateTime>\
             <MsgType>text</MsgType><Content>&lol9;</Content></xml>"
        );
        let start = Instant::now();
        assert_eq!(parse(&bomb), Err(WechatError::DoctypeRefused));
        assert_eq!(parse_envelope(&bomb), Err(WechatError::DoctypeRefused));
        assert!(start.elapsed() < Duration::from_millis(500));
        // A DOCTYPE after the root is refused too, not ignored.
        let late = format!("{TEXT}<!DOCTYPE xml>");
        assert!(parse(&late).is_err());
    }

    #[test]
    fn undefined_entities_are_errors_not_expanded() {
        let with = |content: &str| TEXT.replace("<![CDATA[抢票 concert]]>", content);
        assert!(matches!(parse(&with("&lol9;")), Err(WechatError::MalformedXml(m)) if m.contains("lol9")));
        // Even inside an element serde would skip.
        let hidden = TEXT.replace("<MsgId>", "<Junk>&lol9;</Junk><MsgId>");
        assert!(matches!(parse(&hidden), Err(WechatError::MalformedXml(_))));
        assert!(matches!(parse(&with("&#xFFFFFFFF;")), Err(WechatError::MalformedXml(_))));
        // quick-xml's own serde layer also errors on them (defence in depth:
        // pinned so an upgrade that starts expanding entities is noticed).
        let direct: Result<RawXml, _> = quick_xml::de::from_str(&with("&lol9;"));
        assert!(direct.is_err());
    }

    #[test]
    fn doctype_text_inside_cdata_is_just_text() {
        let xml = TEXT.replace("抢票 concert", "<!DOCTYPE x [<!ENTITY a \"b\">]>&a;");
        assert_eq!(
            parse(&xml).unwrap().kind,
            MessageKind::Text { content: "<!DOCTYPE x [<!ENTITY a \"b\">]>&a;".into() }
        );
    }

    #[test]
    fn not_xml_is_refused() {
        for body in ["", "   ", "hello", "{\"ToUserName\":\"gh\"}", "<", "<<xml>>"] {
            assert!(matches!(parse(body), Err(WechatError::MalformedXml(_))), "{body:?}");
            assert!(parse_envelope(body).is_err(), "{body:?}");
        }
    }

    #[test]
    fn truncated_documents_are_refused() {
        for cut in [10, TEXT.len() / 2, TEXT.len() - 1, TEXT.len() - 6] {
            let cut = (0..=cut).rev().find(|&i| TEXT.is_char_boundary(i)).unwrap();
            let body = &TEXT[..cut];
            assert!(matches!(parse(body), Err(WechatError::MalformedXml(_))), "cut at {cut}: {body:?}");
        }
        let mismatched = TEXT.replace("</MsgId>", "</MsgID>");
        assert!(matches!(parse(&mismatched), Err(WechatError::MalformedXml(_))));
    }

    #[test]
    fn root_must_be_xml() {
        let other = TEXT.replace("<xml>", "<msg>").replace("</xml>", "</msg>");
        assert!(matches!(parse(&other), Err(WechatError::MalformedXml(m)) if m.contains("root")));
        assert!(parse(&format!("{TEXT}{TEXT}")).is_err());
        assert!(parse(&format!("{TEXT}trailing")).is_err());
        assert!(parse(&format!("{TEXT}\n<!-- fine -->\n")).is_ok());
    }

    #[test]
    fn envelopes_for_safe_and_compatible_mode() {
        let safe = "<xml>\n<ToUserName><![CDATA[gh_1]]></ToUserName>\n\
                    <Encrypt><![CDATA[abc+/=]]></Encrypt>\n</xml>";
        assert_eq!(
            parse_envelope(safe).unwrap(),
            Envelope { to_user: Some("gh_1".into()), encrypt: Some("abc+/=".into()), msg_signature: None }
        );
        // A safe-mode body is not a message.
        assert_eq!(parse(safe), Err(WechatError::MissingField("FromUserName")));

        let compatible = TEXT.replace("<MsgId>", "<Encrypt><![CDATA[xyz]]></Encrypt><MsgId>");
        let env = parse_envelope(&compatible).unwrap();
        assert_eq!(env.encrypt.as_deref(), Some("xyz"));
        assert_eq!(parse(&compatible).unwrap(), parse(TEXT).unwrap());

        assert_eq!(
            parse_envelope(TEXT).unwrap(),
            Envelope { to_user: Some("gh_123456789abc".into()), encrypt: None, msg_signature: None }
        );
    }
}
