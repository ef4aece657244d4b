//! Binding through the campus CAS login (`STUDENT_VERIFY=cas`): the bind link
//! sends the student to CAS, and CAS sends them back here with a service
//! ticket. The signed parts of the bind link ride along inside the service
//! URL, so the callback knows which WeChat user asked without trusting the
//! browser; what CAS says about the ticket decides the student ID.

use axum::{
    extract::{Query, State},
    http::{StatusCode, header},
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
    identity::cas::{self, Validation},
    links::Purpose,
};

/// The service URL CAS returns to: the callback with the bind link's signed
/// parts. Built the same way on the way out and on validation, because CAS
/// compares the two strings.
fn service_url(state: &AppState, link: &LinkParts) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("o", &link.o)
        .append_pair("e", &link.e)
        .append_pair("s", &link.s)
        .append_pair("n", &link.n)
        .finish();
    format!("{}/bind/cas?{query}", state.config.public_url)
}

fn cas_base(state: &AppState) -> Result<&str, AppError> {
    state.config.cas_base_url.as_deref().ok_or_else(|| AppError::Config("CAS_BASE_URL is not set".into()))
}

/// From an open, unused bind link to the CAS login page.
pub(super) fn to_login(state: &AppState, link: &LinkParts) -> Response {
    match cas_base(state) {
        Ok(base) => {
            let to = cas::login_url(base, &service_url(state, link));
            ([(header::CACHE_CONTROL, "no-store")], Redirect::to(&to)).into_response()
        }
        Err(e) => e.into_response(),
    }
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
}

fn refused(status: StatusCode, title: &str, why: impl Into<String>) -> Response {
    message_page(status, title, why, false)
}

/// CAS sent the student back: check the signed parts, spend the ticket,
/// validate it server to server, and bind the student ID it proves.
pub(super) async fn callback(State(state): State<AppState>, Query(q): Query<Callback>) -> Result<Response, AppError> {
    // A changed service URL is refused here, before CAS is asked anything.
    let openid = match open_link(&state, Purpose::Bind, &q.link.n, &q.link) {
        Ok(openid) => openid,
        Err(e) => return Ok(link_refused(e)),
    };
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
    let service = service_url(&state, &q.link);
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
        Some(name) => attributes.into_iter().find(|(k, _)| k == name).map(|(_, v)| v).unwrap_or_default(),
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
