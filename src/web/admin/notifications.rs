//! "通知": what was pushed to students and how it went, the queue's depth, and
//! a test message to one of the simulator's test students. An organizer sees
//! the notifications about their teams' activities only (the query filters);
//! the queue's depth, the settings and test messages are account-wide, for
//! admins (not rendered for an organizer, and the test route refuses them).

use askama::Template;
use askama_web::WebTemplate;
use axum::{
    Form, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;

use super::AdminSession;
use crate::{
    AppState,
    error::AppError,
    local_time,
    notify::{notices, notifications},
    transcripts,
};

pub fn router() -> Router<AppState> {
    Router::new().route("/admin/notifications", get(page)).route("/admin/notifications/test", post(send_test))
}

struct Line {
    kind: &'static str,
    recipient: String,
    channel: &'static str,
    state: String,
    state_class: &'static str,
    at: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/notifications.html")]
struct NotificationsPage {
    session: AdminSession,
    lines: Vec<Line>,
    /// The queue, the settings and the test form: an admin's only.
    account_wide: bool,
    queued: i64,
    jobs: i64,
    reminder_hours: u32,
    test_students: Vec<(String, String)>,
    max_text: usize,
    notice: Option<String>,
    error: Option<String>,
}

async fn render(
    state: &AppState,
    session: AdminSession,
    notice: Option<String>,
    error: Option<String>,
) -> Result<NotificationsPage, AppError> {
    let tz = state.config.timezone;
    let teams = session.scope.team_filter();
    let account_wide = teams.is_none();
    let (queued, jobs) =
        if account_wide { notifications::depth(state.notifier.background_pool()).await? } else { (0, 0) };
    let lines = notifications::recent(&state.pool, 200, teams)
        .await?
        .into_iter()
        .map(|n| Line {
            kind: n.kind.label(),
            channel: n.channel.map_or("—", |c| c.label()),
            state: n.state_text(),
            state_class: match n.state {
                notifications::State::Sent => "ok",
                notifications::State::Queued => "muted",
                notifications::State::Undelivered => "error",
            },
            at: local_time::precise(n.updated_at, tz),
            recipient: n.recipient,
        })
        .collect();
    let simulated = if account_wide { transcripts::test_students(&state.pool).await? } else { Vec::new() };
    let test_students = simulated
        .into_iter()
        .map(|s| {
            let label = match &s.student_id {
                Some(id) => format!("{} · 学号 {id}", s.openid),
                None => format!("{} · 未绑定学号", s.openid),
            };
            (s.openid, label)
        })
        .collect();
    Ok(NotificationsPage {
        session,
        lines,
        account_wide,
        queued,
        jobs,
        reminder_hours: state.config.reminder_hours,
        test_students,
        max_text: notices::MAX_TEST_TEXT,
        notice,
        error,
    })
}

async fn page(State(state): State<AppState>, session: AdminSession) -> Result<NotificationsPage, AppError> {
    render(&state, session, None, None).await
}

#[derive(Deserialize)]
struct TestForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    openid: String,
    #[serde(default)]
    text: String,
}

/// Only enqueues: the worker sends, as for every other notification.
async fn send_test(
    State(state): State<AppState>,
    session: AdminSession,
    Form(form): Form<TestForm>,
) -> Result<Response, AppError> {
    session.check_csrf(&form.csrf)?;
    // Longer than any openid, WeChat's (28) or a test student's: nothing is queued for it.
    if form.openid.trim().len() > 64 {
        let error = Some("测试消息只能发给模拟器里的测试同学。".to_string());
        return Ok((StatusCode::BAD_REQUEST, render(&state, session, None, error).await?).into_response());
    }
    let mut tx = state.pool.begin().await?;
    match notices::test_message(&mut tx, &state.notifier, form.openid.trim(), &form.text).await {
        Ok(_) => {
            tx.commit().await?;
            let notice = format!("已排队，稍后出现在 {} 的模拟聊天里。", form.openid.trim());
            Ok(render(&state, session, Some(notice), None).await?.into_response())
        }
        Err(AppError::Invalid(why)) => {
            tx.rollback().await?;
            Ok((StatusCode::BAD_REQUEST, render(&state, session, None, Some(why)).await?).into_response())
        }
        Err(e) => Err(e),
    }
}
