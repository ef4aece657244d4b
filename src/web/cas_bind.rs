//! Binding through the campus CAS login (`STUDENT_VERIFY=cas`): the bind link
//! sends the student to CAS, and CAS sends them back here with a service
//! ticket. The signed parts of the bind link ride along inside the service
//! URL, so the callback knows which WeChat user asked without trusting the
//! browser; what CAS says about the ticket decides the student ID.
//!
//! The round trip is also tied to the browser that opened the bind link: a
//! cookie holds a nonce, and the service URL carries a MAC of it (`st`). A
//! CAS login URL passed to another student — already signed in to CAS, whose
//! browser would otherwise come back with *their* ticket for *the sender's*
//! WeChat account — returns without the cookie and binds nothing.

use axum::{
    extract::{Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
};
use serde::Deserialize;

use super::student::{
    LinkParts, already_bound_page, bind_link_used, bind_with_link, link_refused, message_page, open_link,
};
use crate::{
    AppState,
    booking::students::{self, BindOutcome},
    error::AppError,
    identity::{
        cas::{self, CasError, Validation},
        session::{self, Cookie},
    },
    links::{self, Purpose},
};

/// How long a started CAS round trip may take: as long as the bind link lives.
const ROUND_TRIP_SECONDS: i64 = 30 * 60;

/// The service URL CAS returns to: the callback with the bind link's signed
/// parts. Built the same way on the way out and on validation, because CAS
/// compares the two strings.
fn service_url(state: &AppState, link: &LinkParts, st: &str) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("o", &link.o)
        .append_pair("e", &link.e)
        .append_pair("s", &link.s)
        .append_pair("n", &link.n)
        .append_pair("st", st)
        .finish();
    format!("{}/bind/cas?{query}", state.config.public_url)
}

fn cas_base(state: &AppState) -> Result<&str, AppError> {
    state.config.cas_base_url.as_deref().ok_or_else(|| AppError::Config("CAS_BASE_URL is not set".into()))
}

/// From an open, unused bind link to the CAS login page, marking this
/// browser as the one that started the round trip. A nonce this browser
/// already holds is kept, so a second tab of the same link still finishes.
pub(super) fn to_login(state: &AppState, headers: &HeaderMap, link: &LinkParts) -> Response {
    let base = match cas_base(state) {
        Ok(base) => base,
        Err(e) => return e.into_response(),
    };
    let nonce = session::read(&state.config, headers, Cookie::CasBind)
        .filter(|n| (16..=64).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_alphanumeric()))
        .unwrap_or_else(links::nonce);
    let st = session::cas_bind_state(&state.secret_key, &nonce, &link.n);
    let to = cas::login_url(base, &service_url(state, link, &st));
    let cookie = session::set_cookie(&state.config, Cookie::CasBind, &nonce, ROUND_TRIP_SECONDS);
    ([(header::CACHE_CONTROL, "no-store".to_string()), (header::SET_COOKIE, cookie)], Redirect::to(&to)).into_response()
}

/// The bind form posted in CAS mode: a typed ID proves nothing.
pub(super) fn typed_id_refused() -> Response {
    message_page(
        StatusCode::FORBIDDEN,
        "请用统一身份认证绑定",
        "本公众号通过学校统一身份认证确认学号，不能手动输入。请从公众号发给你的绑定链接打开，登录学校账号即可完成绑定。",
        false,
    )
}

#[derive(Deserialize)]
pub(super) struct Callback {
    #[serde(flatten)]
    link: LinkParts,
    #[serde(default)]
    ticket: String,
    /// The MAC of this browser's bind cookie, carried through CAS.
    #[serde(default)]
    st: String,
}

fn refused(status: StatusCode, title: &str, why: impl Into<String>) -> Response {
    message_page(status, title, why, false)
}

/// CAS sent the student back: check the signed parts, spend the ticket,
/// validate it server to server, and bind the student ID it proves.
pub(super) async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<Callback>,
) -> Result<Response, AppError> {
    // A changed service URL is refused here, before CAS is asked anything.
    let openid = match open_link(&state, Purpose::Bind, &q.link.n, &q.link) {
        Ok(openid) => openid,
        Err(e) => return Ok(link_refused(e)),
    };
    // Only the browser that opened the bind link may finish it; the ticket
    // is left unspent, so it proves nothing to anyone.
    let cookie = session::read(&state.config, &headers, Cookie::CasBind);
    if !session::cas_bind_state_ok(&state.secret_key, cookie.as_deref(), &q.link.n, &q.st) {
        tracing::info!("CAS callback without the bind cookie of the browser that started it");
        return Ok(refused(
            StatusCode::FORBIDDEN,
            "请在打开绑定链接的浏览器里完成",
            "这次登录不是从你打开的绑定链接开始的，没有绑定任何学号。请在微信里打开公众号发给你的绑定链接，在同一个页面里登录学校账号。不要打开别人发来的登录链接。",
        ));
    }
    let ticket = q.ticket.trim();
    if ticket.is_empty() || ticket.len() > 256 {
        return Ok(refused(
            StatusCode::BAD_REQUEST,
            "登录没有完成",
            "没有收到统一身份认证的登录结果。请回到公众号重新打开绑定链接。",
        ));
    }
    let mut conn = state.pool.acquire().await?;
    if let Some(student) = students::bound(&mut conn, &openid).await? {
        return Ok(already_bound_page(&student.student_id));
    }
    if students::bind_link_used(&mut conn, &q.link.n).await? {
        return Ok(bind_link_used());
    }
    if !cas::use_ticket(&mut conn, ticket).await? {
        return Ok(refused(
            StatusCode::CONFLICT,
            "登录结果已用过",
            "这次统一身份认证的登录结果已经用过了，不能再用一次。请回到公众号重新打开绑定链接。",
        ));
    }
    drop(conn);
    let service = service_url(&state, &q.link, &q.st);
    let (user, attributes) = match cas::validate(cas_base(&state)?, &service, ticket).await {
        Ok(Validation::Success { user, attributes }) => (user, attributes),
        Ok(Validation::Failure { code, message }) => {
            tracing::info!(%code, %message, "CAS refused a ticket");
            return Ok(refused(
                StatusCode::FORBIDDEN,
                "身份认证没有通过",
                format!("学校统一身份认证没有确认这次登录（{code}），没有绑定任何学号。请回到公众号重新打开绑定链接。"),
            ));
        }
        Err(CasError::Malformed(why)) => {
            tracing::warn!(%why, "CAS answered something that is not a clear answer");
            return Ok(refused(
                StatusCode::BAD_GATEWAY,
                "身份认证结果无法确认",
                "学校统一身份认证的回答无法确认是哪一个学号，没有绑定任何学号。请联系活动组织者。",
            ));
        }
        Err(e) => {
            tracing::warn!(error = %e, "CAS validation failed");
            return Ok(refused(
                StatusCode::BAD_GATEWAY,
                "暂时无法确认身份",
                "暂时联系不上学校统一身份认证，没有绑定任何学号。请稍后回到公众号重新打开绑定链接。",
            ));
        }
    };
    let student_id = match &state.config.cas_student_id_attribute {
        Some(name) => {
            let mut values: Vec<String> = attributes.into_iter().filter(|(k, _)| k == name).map(|(_, v)| v).collect();
            values.sort();
            values.dedup();
            // An attribute given twice with different values names nobody.
            if values.len() > 1 {
                tracing::warn!("CAS released the student-ID attribute with more than one value");
                return Ok(refused(
                    StatusCode::FORBIDDEN,
                    "身份认证结果无法确认",
                    "学校统一身份认证给出了不止一个学号，没有绑定任何学号。请联系活动组织者。",
                ));
            }
            values.pop().unwrap_or_default()
        }
        None => user,
    };
    if !state.config.student_id_pattern.is_match(&student_id) || student_id.chars().count() > 32 {
        tracing::info!("CAS answered a user that is not a student ID");
        return Ok(refused(
            StatusCode::FORBIDDEN,
            "不是学生账号",
            "统一身份认证登录的账号没有可用的学号，没有绑定任何学号。如有疑问请联系活动组织者。",
        ));
    }
    let Some(outcome) = bind_with_link(&state, &q.link, &openid, &student_id, None).await? else {
        return Ok(bind_link_used());
    };
    Ok(match outcome {
        BindOutcome::Bound(student) => message_page(
            StatusCode::OK,
            "绑定成功",
            format!("已通过统一身份认证绑定学号 {}。回到公众号，发送「抢啥」看看有什么活动吧！", student.student_id),
            true,
        ),
        BindOutcome::AlreadyBound(student) => already_bound_page(&student.student_id),
        BindOutcome::TakenByAnother => refused(
            StatusCode::CONFLICT,
            "学号已被绑定",
            format!("学号 {student_id} 已被另一个微信账号绑定。如有疑问请联系活动组织者。"),
        ),
    })
}
