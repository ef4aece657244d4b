//! Disputes over a student ID: which WeChat account holds it, and releasing it
//! so the rightful student can bind it (their tickets stay with the ID).

use askama::Template;
use askama_web::WebTemplate;
use axum::{
    Form, Router,
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;

use super::AdminSession;
use crate::{
    AppState,
    booking::{
        no_show,
        students::{self, MAX_STUDENT_ID_CHARS},
        tickets,
    },
    error::AppError,
    local_time,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/students", get(page))
        .route("/admin/students/unbind", post(unbind))
        .route("/admin/students/forgive", post(forgive))
}

struct HolderView {
    openid: String,
    name: String,
    bound_at: String,
}

struct TicketView {
    activity_name: String,
    status_label: &'static str,
    booked_at: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/students.html")]
struct StudentsPage {
    session: AdminSession,
    student_id: String,
    holder: Option<HolderView>,
    tickets: Vec<TicketView>,
    /// With the no-show rule on: until when the student is paused, if they are.
    paused_until: Option<String>,
    no_show_rule: bool,
    notice: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize, Default)]
struct Lookup {
    #[serde(default)]
    student_id: String,
}

async fn render(
    state: &AppState,
    session: AdminSession,
    student_id: String,
    notice: Option<String>,
    error: Option<String>,
) -> Result<StudentsPage, AppError> {
    let tz = state.config.timezone;
    let mut conn = state.pool.acquire().await?;
    let paused_until = match (&state.config.no_show, student_id.is_empty()) {
        (Some(rule), false) => {
            no_show::paused_until(&mut conn, rule, &student_id).await?.map(|until| local_time::full(until, tz))
        }
        _ => None,
    };
    let (holder, tickets) = if student_id.is_empty() {
        (None, Vec::new())
    } else {
        let holder = students::holder(&mut conn, &student_id).await?.map(|h| HolderView {
            openid: h.openid,
            name: h.name.unwrap_or_default(),
            bound_at: local_time::full(h.bound_at, tz),
        });
        let tickets = tickets::live_for_student(&mut conn, &student_id)
            .await?
            .into_iter()
            .map(|t| TicketView {
                status_label: t.status.label(),
                booked_at: local_time::full(t.booked_at, tz),
                activity_name: t.activity_name,
            })
            .collect();
        (holder, tickets)
    };
    let no_show_rule = state.config.no_show.is_some();
    Ok(StudentsPage { session, student_id, holder, tickets, paused_until, no_show_rule, notice, error })
}

async fn page(
    State(state): State<AppState>,
    session: AdminSession,
    Query(q): Query<Lookup>,
) -> Result<Response, AppError> {
    let student_id = q.student_id.trim().to_string();
    if student_id.chars().count() > MAX_STUDENT_ID_CHARS {
        return too_long(&state, session).await;
    }
    Ok(render(&state, session, student_id, None, None).await?.into_response())
}

/// A typed "student ID" longer than any can be: said so, looked up nowhere, not shown back.
async fn too_long(state: &AppState, session: AdminSession) -> Result<Response, AppError> {
    let error = format!("学号最多 {MAX_STUDENT_ID_CHARS} 个字符。");
    Ok((StatusCode::BAD_REQUEST, render(state, session, String::new(), None, Some(error)).await?).into_response())
}

#[derive(Deserialize)]
struct UnbindForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    student_id: String,
}

async fn unbind(
    State(state): State<AppState>,
    session: AdminSession,
    Form(form): Form<UnbindForm>,
) -> Result<Response, AppError> {
    session.check_csrf(&form.csrf)?;
    let student_id = form.student_id.trim().to_string();
    if student_id.chars().count() > MAX_STUDENT_ID_CHARS {
        return too_long(&state, session).await;
    }
    let mut tx = state.pool.begin().await?;
    let released = students::release(&mut tx, &student_id, &session.admin.username).await?;
    tx.commit().await?;
    Ok(match released {
        Some(holder) => {
            let notice =
                format!("已解除学号 {student_id} 与微信用户 {} 的绑定。该学号的票仍归这个学号。", holder.openid);
            render(&state, session, student_id, Some(notice), None).await?.into_response()
        }
        None => {
            let error = format!("学号 {student_id} 没有绑定任何微信账号。");
            (StatusCode::CONFLICT, render(&state, session, student_id, None, Some(error)).await?).into_response()
        }
    })
}

/// Lifts a student's no-show pause (audited): what they left unused so far no longer counts.
async fn forgive(
    State(state): State<AppState>,
    session: AdminSession,
    Form(form): Form<UnbindForm>,
) -> Result<Response, AppError> {
    session.check_csrf(&form.csrf)?;
    let student_id = form.student_id.trim().to_string();
    if student_id.is_empty() || student_id.chars().count() > MAX_STUDENT_ID_CHARS {
        let error = format!("请填写学号（最多 {MAX_STUDENT_ID_CHARS} 个字符）。");
        return Ok(
            (StatusCode::BAD_REQUEST, render(&state, session, String::new(), None, Some(error)).await?).into_response()
        );
    }
    let mut tx = state.pool.begin().await?;
    no_show::forgive(&mut tx, &student_id, &session.admin.username).await?;
    tx.commit().await?;
    let notice = format!("已原谅学号 {student_id} 此前的爽约，现在可以抢票和候补。");
    Ok(render(&state, session, student_id, Some(notice), None).await?.into_response())
}
