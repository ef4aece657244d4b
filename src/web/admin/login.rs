//! Login and logout.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use askama::Template;
use askama_web::WebTemplate;
use axum::{
    Form, Router,
    extract::{ConnectInfo, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use ipnet::IpNet;
use serde::Deserialize;

use super::{AdminSession, CsrfForm, cookie_name, session_cookie};
use crate::{
    AppState, Config, audit,
    auth::{accounts, sessions, throttle},
    error::AppError,
};

pub fn router() -> Router<AppState> {
    Router::new().route("/admin/login", get(login_page).post(login)).route("/admin/logout", post(logout))
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/login.html")]
struct LoginPage {
    username: String,
    error: Option<String>,
    next: String,
}

/// Whom to throttle: the peer, unless the peer is one of `TRUSTED_PROXIES`.
/// Then the client is the right-most `X-Forwarded-For` entry that is not
/// itself a trusted proxy: each proxy appends whom it got the request from, so
/// entries further left are only what the client claimed. Without this, every
/// client behind the proxy would share one address and one attacker's failures
/// would count against them all; believing the header from anyone else would
/// let an attacker pick a fresh address for every guess.
fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = peer.to_canonical();
    if !is_trusted(&client) {
        return client;
    }
    let forwarded: Vec<&str> =
        headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).collect();
    for entry in forwarded.into_iter().rev() {
        // A trusted proxy appends a well-formed address; anything else is not its entry.
        let Ok(hop) = entry.trim().parse::<IpAddr>().map(|ip| ip.to_canonical()) else { break };
        client = hop;
        if !is_trusted(&hop) {
            break;
        }
    }
    client
}

/// The `Set-Cookie` value for the session cookie (an empty `value` and `max_age` 0 remove it).
fn session_set_cookie(config: &Config, value: &str, max_age: i32) -> String {
    let secure = if config.public_url.starts_with("https://") { "; Secure" } else { "" };
    format!("{}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}", cookie_name(config))
}

/// "Try again in …", in the unit a person would use.
fn wait_message(wait: Duration) -> String {
    let secs = wait.as_secs().max(1);
    if secs < 60 {
        format!("登录失败次数太多，请 {secs} 秒后再试。")
    } else {
        format!("登录失败次数太多，请 {} 分钟后再试。", secs.div_ceil(60))
    }
}

/// The login page, remembering where to go afterwards.
pub fn login_url(next: &str) -> String {
    if next == "/admin" {
        return "/admin/login".into();
    }
    let query: String = form_urlencoded::Serializer::new(String::new()).append_pair("next", next).finish();
    format!("/admin/login?{query}")
}

/// Where to go after logging in: a page of the console (or the landing page,
/// which shows admins the Token), never another site (`//evil.example` and
/// `/\evil.example` are other sites to a browser).
fn safe_next(next: &str) -> &str {
    let console = next == "/" || next == "/admin" || next.starts_with("/admin/") || next.starts_with("/admin?");
    if console && !next.contains('\\') && !next.chars().any(char::is_control) { next } else { "/admin" }
}

#[derive(Deserialize, Default)]
struct NextQuery {
    #[serde(default)]
    next: String,
}

async fn login_page(session: Option<AdminSession>, Query(q): Query<NextQuery>) -> Response {
    let next = safe_next(&q.next).to_string();
    if session.is_some() {
        return Redirect::to(&next).into_response();
    }
    LoginPage { username: String::new(), error: None, next }.into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, AppError> {
    let username = form.username.trim().to_string();
    let next = safe_next(&form.next).to_string();
    // No account has such a name or password: refused before the throttle
    // records anything, and the name is not shown back.
    if username.len() > accounts::MAX_USERNAME_BYTES || form.password.chars().count() > accounts::MAX_PASSWORD_CHARS {
        let error = format!(
            "用户名最多 {} 个字符，密码最多 {} 个字符。",
            accounts::MAX_USERNAME_BYTES,
            accounts::MAX_PASSWORD_CHARS
        );
        let page = LoginPage { username: String::new(), error: Some(error), next };
        return Ok((StatusCode::BAD_REQUEST, page).into_response());
    }
    let address = client_address(peer.ip(), &headers, &state.config.trusted_proxies);
    let bucket = throttle::bucket(address);
    // Each step takes a pooled connection for its own queries only: none is held while the hash runs.
    if let throttle::Verdict::Wait(wait) = throttle::begin_attempt(&state.pool, &username, &bucket).await? {
        let page = LoginPage { username, error: Some(wait_message(wait)), next };
        let retry_after = [(header::RETRY_AFTER, wait.as_secs().max(1).to_string())];
        return Ok((StatusCode::TOO_MANY_REQUESTS, retry_after, page).into_response());
    }
    let Some(admin) = accounts::check_password(&state.pool, &username, &form.password).await? else {
        let page = LoginPage { username, error: Some("用户名或密码错误。".into()), next };
        return Ok((StatusCode::UNAUTHORIZED, page).into_response());
    };
    let mut conn = state.pool.acquire().await?;
    throttle::succeeded(&mut conn, &username, &bucket).await?;
    // A new session id at every login; whatever session the browser had ends.
    if let Some(old) = session_cookie(&headers, &state.config) {
        sessions::end(&mut conn, &old).await?;
    }
    let cookie = sessions::start(&mut conn, admin.id).await?;
    audit::record(&mut conn, &admin.username, "登录", &format!("来自 {address}")).await?;
    let set_cookie = session_set_cookie(&state.config, &cookie, sessions::LIFETIME_HOURS * 3600);
    Ok(([(header::SET_COOKIE, set_cookie)], Redirect::to(&next)).into_response())
}

async fn logout(
    State(state): State<AppState>,
    session: AdminSession,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Result<Response, AppError> {
    session.check_csrf(&form.csrf)?;
    let mut conn = state.pool.acquire().await?;
    if let Some(cookie) = session_cookie(&headers, &state.config) {
        sessions::end(&mut conn, &cookie).await?;
    }
    audit::record(&mut conn, &session.admin.username, "退出登录", "").await?;
    let clear = session_set_cookie(&state.config, "", 0);
    Ok(([(header::SET_COOKIE, clear)], Redirect::to("/admin/login")).into_response())
}

#[cfg(test)]
mod tests {
    use std::{net::IpAddr, time::Duration};

    use super::{client_address, login_url, safe_next, wait_message};
    use axum::http::HeaderMap;

    #[test]
    fn forwarded_for_counts_only_from_a_trusted_proxy() {
        let headers = |xff: &[&str]| {
            let mut h = HeaderMap::new();
            for v in xff {
                h.append("x-forwarded-for", v.parse().unwrap());
            }
            h
        };
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        let nets = |list: &[&str]| -> Vec<ipnet::IpNet> { list.iter().map(|n| n.parse().unwrap()).collect() };
        let proxy = ip("127.0.0.1");
        let client = ip("198.51.100.7");

        // Nobody is trusted by default: not even a proxy on this machine.
        assert_eq!(client_address(proxy, &headers(&["198.51.100.7"]), &[]), proxy);

        let trusted = nets(&["127.0.0.1/32", "10.0.0.0/8"]);
        let from_proxy = |xff: &[&str]| client_address(proxy, &headers(xff), &trusted);
        assert_eq!(from_proxy(&["203.0.113.66, 198.51.100.7"]), client, "the proxy's entry, not the claim");
        assert_eq!(from_proxy(&["203.0.113.66", "198.51.100.7"]), client, "several headers read as one list");
        assert_eq!(from_proxy(&["203.0.113.66, 198.51.100.7, 10.1.2.3"]), client, "a chain of trusted proxies");
        assert_eq!(from_proxy(&[]), proxy);
        assert_eq!(from_proxy(&["not an address"]), proxy);
        assert_eq!(from_proxy(&["198.51.100.7, garbage"]), proxy, "nothing left of what the proxy did not add");
        assert_eq!(from_proxy(&["2001:db8::1"]), ip("2001:db8::1"));
        // An IPv4 peer seen through an IPv6 socket is the same peer.
        assert_eq!(client_address(ip("::ffff:127.0.0.1"), &headers(&["198.51.100.7"]), &trusted), client);
        // A peer outside the list is the client, whatever it says.
        assert_eq!(client_address(ip("203.0.113.9"), &headers(&["198.51.100.7"]), &trusted), ip("203.0.113.9"));
    }

    #[test]
    fn the_wait_is_said_in_seconds_or_minutes() {
        let said = |secs| wait_message(Duration::from_secs(secs));
        assert_eq!(said(5), "登录失败次数太多，请 5 秒后再试。");
        assert_eq!(said(59), "登录失败次数太多，请 59 秒后再试。");
        assert_eq!(said(61), "登录失败次数太多，请 2 分钟后再试。");
        assert_eq!(said(900), "登录失败次数太多，请 15 分钟后再试。");
    }

    #[test]
    fn after_login_only_console_pages() {
        for kept in
            ["/", "/admin", "/admin/simulator", "/admin/simulator?student=simulator-a&menu=pushed", "/admin?test=1"]
        {
            assert_eq!(safe_next(kept), kept);
        }
        for refused in
            ["", "//evil.example/admin", "/\\evil.example", "https://evil.example/admin", "/administrator", "/admin/\n"]
        {
            assert_eq!(safe_next(refused), "/admin", "{refused:?}");
        }
        assert_eq!(login_url("/admin"), "/admin/login");
        assert_eq!(
            login_url("/admin/simulator?student=a&menu=pushed"),
            "/admin/login?next=%2Fadmin%2Fsimulator%3Fstudent%3Da%26menu%3Dpushed"
        );
    }
}
