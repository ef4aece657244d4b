//! The simulator: an admin chats as a test student through the real `/wechat`
//! route — signed (and in safe mode encrypted) XML over HTTP to this very
//! instance, de-duplication and all — with the menu bar students see, and the
//! replies drawn as WeChat draws them.
//!
//! The page is a phone frame around an iframe: the chat screen loads in it,
//! and the links in replies (bind page, ticket page) open in it too, as they
//! do in WeChat's own browser.

use std::{
    sync::{
        LazyLock,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use askama::Template;
use askama_web::WebTemplate;
use axum::{
    Form, Router,
    extract::{Query, State},
    response::Redirect,
    routing::{get, post},
};
use rand::Rng;
use serde::Deserialize;

use super::{AdminSession, CsrfForm, menu::Bar};
use crate::transcripts::{self, Entry, TestStudent};
use crate::{
    AppState,
    booking::students::{self, TEST_OPENID_PREFIX, is_test},
    error::AppError,
    menu,
    wechat::{
        delivery::{self, UserAction},
        reply::{self, Reply},
    },
};

/// Lines of chat the phone shows.
const SHOWN: i64 = 60;
/// WeChat caps a text message near this; longer is not something a phone sends.
const MAX_TEXT_CHARS: usize = 600;
/// WeChat's limit for a menu button's key.
const MAX_KEY_BYTES: usize = 128;
/// A tapped button's name, as the chat records it: WeChat's own limit for a sub-button.
const MAX_LABEL_BYTES: usize = 60;
/// The account name the test messages are addressed to (WeChat's `ToUserName`).
const ACCOUNT: &str = "gh_simulator";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/simulator", get(page))
        .route("/admin/simulator/students", post(new_student))
        .route("/admin/simulator/chat", get(chat).post(send))
}

/// Which test student, and which menu bar: the one composed on the menu page
/// (`composed`, the default) or the one last pushed to WeChat (`pushed`).
#[derive(Deserialize, Default, Clone)]
struct Phone {
    #[serde(default)]
    student: String,
    #[serde(default)]
    menu: String,
}

impl Phone {
    fn pushed(&self) -> bool {
        self.menu == "pushed"
    }

    /// The test student, refused unless it is one: the simulator must never
    /// speak for a real WeChat user.
    fn openid(&self) -> Result<&str, AppError> {
        let id = self.student.as_str();
        let well_formed = id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if is_test(id) && id.len() > TEST_OPENID_PREFIX.len() && well_formed {
            Ok(id)
        } else {
            Err(AppError::Invalid("只能以模拟器的测试学生身份发消息。".into()))
        }
    }

    fn chat_url(&self) -> String {
        let menu = if self.pushed() { "&menu=pushed" } else { "" };
        format!("/admin/simulator/chat?student={}{menu}", self.student)
    }
}

/// The menu bar of the chat, and whether the other one (composed or pushed) differs.
struct Menus {
    bar: Bar,
    /// The last pushed menu differs from the composed one (so there is a choice).
    differ: bool,
    /// A menu was pushed from this server at some time.
    ever_pushed: bool,
}

async fn menus(state: &AppState, phone: &Phone) -> Result<Menus, AppError> {
    let composed = menu::composed(&state.pool).await?;
    let pushed = menu::last_pushed(&state.pool).await?;
    let differ = pushed.as_ref().is_some_and(|p| *p != composed);
    let shown = match (&pushed, phone.pushed()) {
        (Some(p), true) => p,
        _ => &composed,
    };
    Ok(Menus { bar: Bar::of(shown), differ, ever_pushed: pushed.is_some() })
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/simulator.html")]
struct SimulatorPage {
    session: AdminSession,
    students: Vec<TestStudent>,
    phone: Phone,
    chat_url: Option<String>,
    menus: Menus,
    encrypted: bool,
}

async fn page(
    State(state): State<AppState>,
    session: AdminSession,
    Query(mut phone): Query<Phone>,
) -> Result<SimulatorPage, AppError> {
    let students = transcripts::test_students(&state.pool).await?;
    if phone.student.is_empty()
        && let Some(latest) = students.first()
    {
        phone.student = latest.openid.clone();
    }
    let chat_url = if phone.student.is_empty() { None } else { Some(phone.openid().map(|_| phone.chat_url())?) };
    let menus = menus(&state, &phone).await?;
    Ok(SimulatorPage { session, students, phone, chat_url, menus, encrypted: state.cipher.is_some() })
}

/// A new test student follows the account, as a newcomer's first step would be.
async fn new_student(
    State(state): State<AppState>,
    session: AdminSession,
    Form(form): Form<CsrfForm>,
) -> Result<Redirect, AppError> {
    session.check_csrf(&form.csrf)?;
    let suffix: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(8)
        .map(|c| char::from(c).to_ascii_lowercase())
        .collect();
    let phone = Phone { student: format!("{TEST_OPENID_PREFIX}{suffix}"), menu: String::new() };
    say(&state, phone.openid()?, UserAction::Subscribe, None).await?;
    Ok(Redirect::to(&format!("/admin/simulator?student={}", phone.student)))
}

/// One line of chat, ready to draw.
struct Line {
    kind: String,
    html: String,
    title: String,
    url: String,
    pic_url: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/simulator_chat.html")]
struct ChatScreen {
    session: AdminSession,
    phone: Phone,
    /// The student ID the test student is bound to (the page above the frame
    /// does not reload when binding happens inside it).
    student_id: Option<String>,
    lines: Vec<Line>,
    bar: Bar,
}

async fn chat(
    State(state): State<AppState>,
    session: AdminSession,
    Query(phone): Query<Phone>,
) -> Result<ChatScreen, AppError> {
    let openid = phone.openid()?;
    let base = state.config.public_url.trim_end_matches('/');
    let lines = transcripts::recent(&state.pool, openid, SHOWN)
        .await?
        .into_iter()
        .map(|e| Line {
            html: text_html(&e.body, base),
            url: local_link(&e.url, base),
            pic_url: local_link(&e.pic_url, base),
            kind: e.kind,
            title: e.title,
        })
        .collect();
    let bar = menus(&state, &phone).await?.bar;
    let student_id = students::bound(&mut *state.pool.acquire().await?, openid).await?.map(|s| s.student_id);
    Ok(ChatScreen { session, phone, student_id, lines, bar })
}

#[derive(Deserialize)]
struct SendForm {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    phone: Phone,
    #[serde(default)]
    text: String,
    #[serde(default)]
    click: String,
    /// The button's label, for the line that says what was tapped.
    #[serde(default)]
    label: String,
}

/// Sends what the admin typed or tapped, then shows the chat again (a reload
/// of the chat does not send twice).
async fn send(
    State(state): State<AppState>,
    session: AdminSession,
    Form(form): Form<SendForm>,
) -> Result<Redirect, AppError> {
    session.check_csrf(&form.csrf)?;
    let openid = form.phone.openid()?;
    let action = if !form.click.is_empty() {
        if form.click.len() > MAX_KEY_BYTES {
            return Err(AppError::Invalid("菜单按钮的 key 太长。".into()));
        }
        Some(UserAction::Click { key: form.click.clone() })
    } else if form.text.trim().is_empty() {
        None
    } else if form.text.chars().count() > MAX_TEXT_CHARS {
        return Err(AppError::Invalid(format!("消息太长：最多 {MAX_TEXT_CHARS} 个字。")));
    } else {
        Some(UserAction::Text { content: form.text.clone(), msg_id: rand::rng().random_range(1..i64::MAX as u64) })
    };
    if form.label.len() > MAX_LABEL_BYTES {
        return Err(AppError::Invalid("菜单按钮的名字太长。".into()));
    }
    if let Some(action) = action {
        let tapped = (!form.label.is_empty()).then_some(form.label.as_str());
        say(&state, openid, action, tapped).await?;
    }
    Ok(Redirect::to(&format!("{}#latest", form.phone.chat_url())))
}

/// Writes the student's side of the chat, delivers it to `/wechat` and writes the reply.
async fn say(state: &AppState, openid: &str, action: UserAction, tapped: Option<&str>) -> Result<(), AppError> {
    let mine = match &action {
        UserAction::Text { content, .. } => Entry::of("sent", content.clone()),
        UserAction::Click { key } => Entry::of("action", format!("点击菜单「{}」", tapped.unwrap_or(key))),
        UserAction::Subscribe => Entry::of("action", "关注了公众号"),
    };
    transcripts::add(&state.pool, openid, &mine).await?;
    let answer = match deliver(state, openid, &action).await {
        Ok(Reply::Text(text)) => Entry::of("text", text),
        Ok(Reply::News(a)) => Entry {
            kind: "news".into(),
            body: a.description,
            title: a.title,
            url: a.url,
            pic_url: a.pic_url.unwrap_or_default(),
        },
        // WeChat shows nothing for `success`; say so, or the admin waits for a reply.
        Ok(Reply::Success) => Entry::of("action", "公众号没有回复"),
        Err(why) => Entry::of("action", format!("发送失败：{why}")),
    };
    transcripts::add(&state.pool, openid, &answer).await
}

/// WeChat stamps events in whole seconds and de-duplicates them by sender,
/// second and key, so two taps of one button in a second would count as one
/// retried delivery. A phone's taps are distinct, so each gets its own second
/// (running ahead of the clock by a second or two in a burst).
fn create_time() -> i64 {
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let previous = LAST.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| Some(now.max(last + 1)));
    now.max(previous.unwrap_or(now) + 1)
}

/// Talks to this instance over HTTP: bound here, not through PUBLIC_URL, which
/// may point at a proxy or at an address this machine cannot reach.
static CLIENT: LazyLock<reqwest::Client> = LazyLock::new(|| {
    reqwest::Client::builder().timeout(Duration::from_secs(6)).no_proxy().build().expect("a plain HTTP client builds")
});

/// Posts `action` to this instance's `/wechat` exactly as WeChat's server
/// would, and reads the passive reply as WeChat would.
async fn deliver(state: &AppState, openid: &str, action: &UserAction) -> Result<Reply, String> {
    let mut addr = *state.local_addr.get().ok_or("服务器还没有开始监听")?;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let now = create_time();
    let timestamp = now.to_string();
    let nonce = rand::rng().random_range(100_000_000u32..1_000_000_000).to_string();
    let xml = delivery::message_xml(ACCOUNT, openid, action, now);
    let token = state.wechat_token.as_str();
    let sent = delivery::deliver(token, state.cipher.as_ref(), ACCOUNT, &xml, &timestamp, &nonce);
    let response = CLIENT
        .post(format!("http://{addr}/wechat?{}", sent.query))
        .header(reqwest::header::CONTENT_TYPE, "text/xml")
        .body(sent.body)
        .send()
        .await
        .map_err(|e| format!("连接 /wechat 失败（{e}）"))?;
    let status = response.status();
    let body = response.text().await.map_err(|e| format!("读取回复失败（{e}）"))?;
    if !status.is_success() {
        return Err(format!("/wechat 回答 HTTP {status}：{}", body.chars().take(200).collect::<String>()));
    }
    let plain = delivery::open_reply(token, state.cipher.as_ref(), &body, &timestamp, &nonce)
        .map_err(|e| format!("回复无法解密或签名不对（{e}）"))?;
    reply::parse(&plain).ok_or_else(|| "无法解析的回复".to_string())
}

/// A link of this server, made relative, so it opens in the phone frame
/// whatever address the admin reached the console by.
fn local_link(url: &str, base: &str) -> String {
    match url.strip_prefix(base) {
        Some(path) if path.starts_with('/') => path.to_string(),
        _ => url.to_string(),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// Escapes a text reply, turning back into links only `<a href="http…">label</a>`,
/// the one piece of markup WeChat itself renders in text messages.
fn text_html(text: &str, base: &str) -> String {
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
                out.push_str(&format!("<a href=\"{}\">{}</a>", escape(&local_link(url, base)), escape(label)));
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
    use super::{Phone, local_link, text_html};

    #[test]
    fn only_reply_links_survive_as_markup_and_this_servers_become_relative() {
        let base = "https://ticket.example.edu";
        assert_eq!(
            text_html("请<a href=\"https://ticket.example.edu/bind?o=1&e=2\">点这里</a>。\n<b>", base),
            "请<a href=\"/bind?o=1&amp;e=2\">点这里</a>。<br>&lt;b&gt;"
        );
        assert_eq!(
            text_html("<a href=\"http://other.example/x\">x</a>", base),
            "<a href=\"http://other.example/x\">x</a>"
        );
        assert_eq!(
            text_html("<a href=\"javascript:alert(1)\">x</a>", base),
            "&lt;a href=&quot;javascript:alert(1)&quot;&gt;x&lt;/a&gt;"
        );
        assert_eq!(text_html("<script>", base), "&lt;script&gt;");
        // A look-alike host is not this server.
        assert_eq!(local_link("https://ticket.example.edu.evil/t/1", base), "https://ticket.example.edu.evil/t/1");
    }

    #[test]
    fn only_test_students_can_be_spoken_for() {
        let phone = |s: &str| Phone { student: s.into(), menu: String::new() };
        assert_eq!(phone("simulator-ab12").openid().unwrap(), "simulator-ab12");
        for refused in ["oABCDEF123", "simulator-", "simulator-a&b=c", "", "simulator-<x>"] {
            assert!(phone(refused).openid().is_err(), "{refused}");
        }
    }
}
