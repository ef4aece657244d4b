//! Login and logout.

use std::net::{IpAddr, SocketAddr};

use askama::Template;
use askama_web::WebTemplate;
use axum::{
    Form, Router,
    extract::{ConnectInfo, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use serde::Deserialize;

use super::{AdminSession, COOKIE, CsrfForm, session_cookie};
use crate::{
    AppState, audit,
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
    error: Option<&'static str>,
    next: String,
}

/// Whom to throttle: the peer, unless the peer is a reverse proxy on this
/// machine (loopback) that says, in `X-Forwarded-For`, whom it serves — else
/// one attacker's failures behind the proxy would lock every admin out. Only
/// the last entry counts: the one the proxy itself added; earlier ones are
/// whatever the client claimed. A proxy elsewhere is not trusted.
fn client_address(peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    if !peer.is_loopback() {
        return peer;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .last()
        .and_then(|last| last.trim().parse().ok())
        .unwrap_or(peer)
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
    let address = client_address(peer.ip(), &headers).to_string();
    let mut conn = state.pool.acquire().await?;
    if throttle::is_throttled(&mut conn, &username, &address).await? {
        let page = LoginPage { username, error: Some("登录失败次数太多，请 15 分钟后再试。"), next };
        return Ok((StatusCode::TOO_MANY_REQUESTS, page).into_response());
    }
    let Some(admin) = accounts::check_password(&mut conn, &username, &form.password).await? else {
        throttle::record_failure(&mut conn, &username, &address).await?;
        let page = LoginPage { username, error: Some("用户名或密码错误。"), next };
        return Ok((StatusCode::UNAUTHORIZED, page).into_response());
    };
    throttle::clear(&mut conn, &admin.username).await?;
    // A new session id at every login; whatever session the browser had ends.
    if let Some(old) = session_cookie(&headers) {
        sessions::end(&mut conn, &old).await?;
    }
    let cookie = sessions::start(&mut conn, admin.id).await?;
    audit::record(&mut conn, &admin.username, "登录", &format!("来自 {address}")).await?;
    let secure = if state.config.public_url.starts_with("https://") { "; Secure" } else { "" };
    let set_cookie = format!(
        "{COOKIE}={cookie}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        sessions::LIFETIME_HOURS * 3600
    );
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
    if let Some(cookie) = session_cookie(&headers) {
        sessions::end(&mut conn, &cookie).await?;
    }
    audit::record(&mut conn, &session.admin.username, "退出登录", "").await?;
    let clear = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0");
    Ok(([(header::SET_COOKIE, clear)], Redirect::to("/admin/login")).into_response())
}

#[cfg(test)]
mod tests {
    use super::{client_address, login_url, safe_next};
    use axum::http::HeaderMap;

    #[test]
    fn behind_a_local_proxy_the_address_it_adds_counts() {
        let headers = |xff: &[&str]| {
            let mut h = HeaderMap::new();
            for v in xff {
                h.append("x-forwarded-for", v.parse().unwrap());
            }
            h
        };
        let local = "127.0.0.1".parse().unwrap();
        let remote = "203.0.113.9".parse().unwrap();
        let client: std::net::IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(
            client_address(local, &headers(&["10.9.9.9, 198.51.100.7"])),
            client,
            "the proxy's entry, not the claim"
        );
        assert_eq!(client_address(local, &headers(&["10.9.9.9", "198.51.100.7"])), client);
        assert_eq!(client_address(local, &headers(&[])), local);
        assert_eq!(client_address(local, &headers(&["not an address"])), local);
        // Only a proxy on this machine is believed.
        assert_eq!(client_address(remote, &headers(&["198.51.100.7"])), remote);
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
