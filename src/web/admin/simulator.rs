//! The simulator: an admin chats as a test student through the real `/wechat`
//! route (signed XML over HTTP to this server), with the menu bar students
//! would see, and the replies drawn as WeChat draws them.

use askama::Template;
use askama_web::WebTemplate;
use axum::{Form, Router, extract::State, routing::get};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{AdminSession, menu::Bar};
use crate::{
    AppState,
    error::AppError,
    menu,
    wechat::{
        reply::{self, Reply},
        signature,
    },
};

/// Bubbles kept in the page (the transcript travels in a hidden field; nothing is stored).
const TRANSCRIPT_LIMIT: usize = 30;

pub fn router() -> Router<AppState> {
    Router::new().route("/admin/simulator", get(page).post(send))
}

#[derive(Serialize, Deserialize, Clone, Default)]
struct Bubble {
    mine: bool,
    text: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    pic_url: String,
}

impl Bubble {
    fn is_news(&self) -> bool {
        !self.title.is_empty()
    }
    /// The text as HTML: escaped, with the reply's own `<a href>` links kept as links.
    fn html(&self) -> String {
        text_html(&self.text)
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/simulator.html")]
struct SimulatorPage {
    session: AdminSession,
    openid: String,
    bubbles: Vec<Bubble>,
    transcript: String,
    menu: Bar,
}

/// The bar students would see: the menu composed by default (as the menu page does).
async fn menu_bar(state: &AppState) -> Result<Bar, AppError> {
    let chosen = menu::default_choice(&mut *state.pool.acquire().await?).await?;
    Ok(Bar::of(&menu::compose(&chosen)?))
}

fn openid_for(session: &AdminSession) -> String {
    format!("simulator-{}", session.admin.username)
}

async fn page(State(state): State<AppState>, session: AdminSession) -> Result<SimulatorPage, AppError> {
    let menu = menu_bar(&state).await?;
    Ok(SimulatorPage { openid: openid_for(&session), session, bubbles: vec![], transcript: "[]".into(), menu })
}

#[derive(Deserialize)]
struct SendForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    click: String,
    #[serde(default)]
    transcript: String,
}

async fn send(
    State(state): State<AppState>,
    session: AdminSession,
    Form(form): Form<SendForm>,
) -> Result<SimulatorPage, AppError> {
    session.check_csrf(&form.csrf)?;
    let openid = openid_for(&session);
    let mut bubbles: Vec<Bubble> = serde_json::from_str(&form.transcript).unwrap_or_default();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let (xml, said) = if !form.click.is_empty() {
        let xml = format!(
            "<xml><ToUserName>{}</ToUserName><FromUserName>{}</FromUserName><CreateTime>{now}</CreateTime>\
             <MsgType><![CDATA[event]]></MsgType><Event><![CDATA[CLICK]]></Event><EventKey>{}</EventKey></xml>",
            reply::cdata("gh_simulator"),
            reply::cdata(&openid),
            reply::cdata(&form.click)
        );
        (xml, format!("[菜单] {}", form.click))
    } else if !form.text.trim().is_empty() {
        let msg_id: u64 = rand::rng().random_range(1..u64::MAX / 2);
        let xml = format!(
            "<xml><ToUserName>{}</ToUserName><FromUserName>{}</FromUserName><CreateTime>{now}</CreateTime>\
             <MsgType><![CDATA[text]]></MsgType><Content>{}</Content><MsgId>{msg_id}</MsgId></xml>",
            reply::cdata("gh_simulator"),
            reply::cdata(&openid),
            reply::cdata(&form.text)
        );
        (xml, form.text.clone())
    } else {
        let menu = menu_bar(&state).await?;
        let transcript = serde_json::to_string(&bubbles).unwrap_or_else(|_| "[]".into());
        return Ok(SimulatorPage { session, openid, bubbles, transcript, menu });
    };
    bubbles.push(Bubble { mine: true, text: said, ..Bubble::default() });
    bubbles.push(match post_to_wechat(&state, xml).await {
        Ok(Reply::Text(text)) => Bubble { text, ..Bubble::default() },
        Ok(Reply::News(a)) => Bubble {
            text: a.description,
            title: a.title,
            url: a.url,
            pic_url: a.pic_url.unwrap_or_default(),
            ..Bubble::default()
        },
        Ok(Reply::Success) => Bubble { text: "（公众号没有回复）".into(), ..Bubble::default() },
        Err(e) => Bubble { text: format!("（发送失败：{e}）"), ..Bubble::default() },
    });
    let keep = bubbles.len().saturating_sub(TRANSCRIPT_LIMIT);
    bubbles.drain(..keep);
    let transcript = serde_json::to_string(&bubbles).unwrap_or_else(|_| "[]".into());
    let menu = menu_bar(&state).await?;
    Ok(SimulatorPage { session, openid, bubbles, transcript, menu })
}

/// Sends a signed message to this server's own `/wechat`, as WeChat would.
async fn post_to_wechat(state: &AppState, xml: String) -> Result<Reply, AppError> {
    let mut addr = state.config.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let timestamp = time::OffsetDateTime::now_utc().unix_timestamp().to_string();
    let nonce = rand::rng().random_range(100_000_000u32..999_999_999).to_string();
    let sig = signature::sign(&[&state.wechat_token, &timestamp, &nonce]);
    let url = format!("http://{addr}/wechat?signature={sig}&timestamp={timestamp}&nonce={nonce}");
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(6))
        .build()
        .map_err(|e| AppError::Internal(e.to_string()))?;
    let resp = client.post(url).body(xml).send().await.map_err(|e| AppError::Internal(e.to_string()))?;
    let status = resp.status();
    let body = resp.text().await.map_err(|e| AppError::Internal(e.to_string()))?;
    if !status.is_success() {
        return Err(AppError::Internal(format!("HTTP {status}")));
    }
    reply::parse(&body).ok_or_else(|| AppError::Internal("无法解析的回复".into()))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// Escapes a text reply, turning back into links only `<a href="http…">label</a>`,
/// the one piece of markup WeChat itself renders in text messages.
fn text_html(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("<a href=\"") {
        let after = &rest[start + 9..];
        let parsed = after.split_once("\">").and_then(|(url, tail)| {
            let (label, tail) = tail.split_once("</a>")?;
            (url.starts_with("http://") || url.starts_with("https://")).then_some((url, label, tail))
        });
        match parsed {
            Some((url, label, tail)) => {
                out.push_str(&escape(&rest[..start]));
                out.push_str(&format!("<a href=\"{}\" target=\"_blank\">{}</a>", escape(url), escape(label)));
                rest = tail;
            }
            None => {
                out.push_str(&escape(&rest[..start + 9]));
                rest = after;
            }
        }
    }
    out.push_str(&escape(rest));
    out.replace('\n', "<br>")
}

#[cfg(test)]
mod tests {
    use super::text_html;

    #[test]
    fn only_reply_links_survive_as_markup() {
        assert_eq!(
            text_html("请<a href=\"http://x/bind?o=1&e=2\">点这里</a>。\n<b>"),
            "请<a href=\"http://x/bind?o=1&amp;e=2\" target=\"_blank\">点这里</a>。<br>&lt;b&gt;"
        );
        assert_eq!(
            text_html("<a href=\"javascript:alert(1)\">x</a>"),
            "&lt;a href=&quot;javascript:alert(1)&quot;&gt;x&lt;/a&gt;"
        );
        assert_eq!(text_html("<script>"), "&lt;script&gt;");
    }
}
