//! Passive replies: the XML returned in the HTTP response to WeChat's POST.

use std::borrow::Cow;

/// What to answer a message with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Text(String),
    /// A `news` reply. WeChat only shows one article, so only one is offered.
    News(Article),
    /// Nothing to say: WeChat wants the literal body `success`, otherwise it
    /// tells the user the account "cannot provide service".
    Success,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Article {
    pub title: String,
    pub description: String,
    pub pic_url: Option<String>,
    pub url: String,
}

/// Renders `reply` as WeChat expects it.
///
/// `to_user` is the recipient (the student's openid, i.e. the incoming
/// message's `FromUserName`) and `from_user` is the account (the incoming
/// `ToUserName`).
pub fn render(reply: &Reply, to_user: &str, from_user: &str, create_time: i64) -> String {
    let head = |msg_type: &str| {
        format!(
            "<xml><ToUserName>{}</ToUserName><FromUserName>{}</FromUserName>\
             <CreateTime>{create_time}</CreateTime><MsgType>{}</MsgType>",
            cdata(to_user),
            cdata(from_user),
            cdata(msg_type),
        )
    };
    match reply {
        Reply::Success => "success".to_owned(),
        Reply::Text(content) => format!("{}<Content>{}</Content></xml>", head("text"), cdata(content)),
        Reply::News(a) => format!(
            "{}<ArticleCount>1</ArticleCount><Articles><item>\
             <Title>{}</Title><Description>{}</Description>\
             <PicUrl>{}</PicUrl><Url>{}</Url></item></Articles></xml>",
            head("news"),
            cdata(&a.title),
            cdata(&a.description),
            cdata(a.pic_url.as_deref().unwrap_or("")),
            cdata(&a.url),
        ),
    }
}

/// Reads a passive reply back (the admin simulator shows replies as WeChat
/// draws them). `None` for anything that is not a text or news reply.
pub fn parse(xml: &str) -> Option<Reply> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Raw {
        msg_type: Option<String>,
        content: Option<String>,
        articles: Option<Articles>,
    }
    #[derive(serde::Deserialize)]
    struct Articles {
        item: Option<Item>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Item {
        title: Option<String>,
        description: Option<String>,
        pic_url: Option<String>,
        url: Option<String>,
    }
    if xml.trim() == "success" {
        return Some(Reply::Success);
    }
    let raw: Raw = quick_xml::de::from_str(xml).ok()?;
    match raw.msg_type.as_deref()? {
        "text" => Some(Reply::Text(raw.content.unwrap_or_default())),
        "news" => {
            let item = raw.articles?.item?;
            Some(Reply::News(Article {
                title: item.title.unwrap_or_default(),
                description: item.description.unwrap_or_default(),
                pic_url: item.pic_url.filter(|p| !p.is_empty()),
                url: item.url.unwrap_or_default(),
            }))
        }
        _ => None,
    }
}

/// Wraps `text` in a CDATA section that stays well-formed whatever it holds.
///
/// A literal `]]>` would end the section early, so it is split across two
/// sections (`]]]]><![CDATA[>`); a parser concatenates adjacent sections and
/// reads back the original text. Characters XML 1.0 forbids outright (most C0
/// controls) are dropped, since not even CDATA may carry them.
pub fn cdata(text: &str) -> String {
    format!("<![CDATA[{}]]>", xml_chars(text).replace("]]>", "]]]]><![CDATA[>"))
}

/// Escapes `text` for use as element content outside CDATA.
pub fn escape(text: &str) -> String {
    quick_xml::escape::escape(xml_chars(text)).into_owned()
}

/// `text` without the characters XML 1.0 cannot represent in any form.
fn xml_chars(text: &str) -> Cow<'_, str> {
    fn allowed(c: char) -> bool {
        matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
    }
    if text.chars().all(allowed) {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(text.chars().filter(|&c| allowed(c)).collect())
    }
}

#[cfg(test)]
mod parse_back {
    use super::*;

    #[test]
    fn rendered_replies_parse_back() {
        for reply in [
            Reply::Text("你好 ]]> <a href=\"x\">链接</a>".into()),
            Reply::News(Article {
                title: "抢票成功".into(),
                description: "d".into(),
                pic_url: None,
                url: "http://u/?a=1&b=2".into(),
            }),
            Reply::Success,
        ] {
            assert_eq!(parse(&render(&reply, "o", "gh", 1)), Some(reply));
        }
        assert_eq!(parse("<xml><MsgType>image</MsgType></xml>"), None);
        assert_eq!(parse("not xml"), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wechat::message::{self, MessageKind};
    use serde::Deserialize;

    #[test]
    fn success_is_the_literal_word() {
        assert_eq!(render(&Reply::Success, "u", "a", 1), "success");
    }

    #[test]
    fn text_renders_exactly() {
        let xml = render(&Reply::Text("hi".into()), "oUser", "gh_1", 1700000000);
        assert_eq!(
            xml,
            "<xml><ToUserName><![CDATA[oUser]]></ToUserName>\
             <FromUserName><![CDATA[gh_1]]></FromUserName>\
             <CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType>\
             <Content><![CDATA[hi]]></Content></xml>"
        );
    }

    fn text_round_trip(content: &str) -> String {
        let xml = render(&Reply::Text(content.into()), "oUser", "gh_1", 42);
        let msg = message::parse(&xml).expect("rendered reply parses");
        assert_eq!(msg.to_user, "oUser");
        assert_eq!(msg.from_user, "gh_1");
        assert_eq!(msg.create_time, 42);
        match msg.kind {
            MessageKind::Text { content } => content,
            other => panic!("expected text, got {other:?}"),
        }
    }

    #[test]
    fn text_round_trips_chinese_and_markup() {
        let s = "抢票成功！<活动> & \"引号\" 'x' 🎫\n第二行";
        assert_eq!(text_round_trip(s), s);
    }

    #[test]
    fn cdata_terminator_in_content_round_trips() {
        for s in ["]]>", "a]]>b", "]]>]]>", "]]]>>", "x]]", "]]><xml>"] {
            assert_eq!(text_round_trip(s), s, "for {s:?}");
        }
        assert_eq!(cdata("a]]>b"), "<![CDATA[a]]]]><![CDATA[>b]]>");
    }

    #[test]
    fn characters_xml_forbids_are_dropped() {
        assert_eq!(text_round_trip("a\u{0}b\u{1b}c\td"), "abc\td");
        assert_eq!(escape("1<2&\u{1}"), "1&lt;2&amp;");
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct NewsBack {
        to_user_name: String,
        from_user_name: String,
        create_time: i64,
        msg_type: String,
        article_count: u32,
        articles: ArticlesBack,
    }
    #[derive(Deserialize)]
    struct ArticlesBack {
        item: Vec<ItemBack>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct ItemBack {
        title: String,
        description: String,
        pic_url: String,
        url: String,
    }

    #[test]
    fn news_renders_one_article_and_reads_back() {
        let article = Article {
            title: "抢票成功]]>".into(),
            description: "新年音乐会 <b> & 1".into(),
            pic_url: Some("https://example.com/p.png?a=1&b=2".into()),
            url: "https://example.com/tickets/abc?x=1&y=2".into(),
        };
        let xml = render(&Reply::News(article.clone()), "oUser", "gh_1", 7);
        let back: NewsBack = quick_xml::de::from_str(&xml).expect("news parses");
        assert_eq!(back.to_user_name, "oUser");
        assert_eq!(back.from_user_name, "gh_1");
        assert_eq!(back.create_time, 7);
        assert_eq!(back.msg_type, "news");
        assert_eq!(back.article_count, 1);
        assert_eq!(back.articles.item.len(), 1);
        let item = &back.articles.item[0];
        assert_eq!(item.title, article.title);
        assert_eq!(item.description, article.description);
        assert_eq!(Some(&item.pic_url), article.pic_url.as_ref());
        assert_eq!(item.url, article.url);
    }

    #[test]
    fn news_without_picture_has_empty_pic_url() {
        let article = Article { title: "t".into(), description: "d".into(), pic_url: None, url: "u".into() };
        let xml = render(&Reply::News(article), "o", "g", 1);
        assert!(xml.contains("<PicUrl><![CDATA[]]></PicUrl>"), "{xml}");
        assert!(xml.contains("<ArticleCount>1</ArticleCount><Articles><item><Title>"), "{xml}");
    }
}
