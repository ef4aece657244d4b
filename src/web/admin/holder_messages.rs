//! The 给持票人发消息 card of the admin activity page (README "A word to
//! every ticket holder"): write a short message to everyone holding a live
//! ticket (optionally also those waiting), see each message's sending
//! progress by channel. The rule and its limit live in
//! `notify::holder_messages`; this reads the form. The access layer holds the
//! route to the activity's team.

use axum::{
    Form, Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
    routing::post,
};
use serde::Deserialize;
use time_tz::Tz;

use super::{AdminSession, activities::parse_id};
use crate::{
    AppState, audit,
    booking::{Activity, activities},
    error::AppError,
    links, local_time,
    notify::holder_messages::{self, MAX_CHARS, PER_DAY, Sent},
};

pub fn router() -> Router<AppState> {
    Router::new().route("/admin/activities/{id}/messages", post(send))
}

/// One sent message as the card lists it.
pub struct Line {
    pub at: String,
    pub body: String,
    pub sent_by: String,
    pub recipients: i32,
    pub include_waiting: bool,
    pub queued: i64,
    pub customer_service: i64,
    pub template: i64,
    pub simulator: i64,
    pub undelivered: i64,
}

impl Line {
    pub fn delivered(&self) -> i64 {
        self.customer_service + self.template + self.simulator
    }
}

/// What the activity page shows of its messages, and the form.
pub struct MessagesView {
    pub lines: Vec<Line>,
    /// A fresh nonce per page: posting the same form twice sends one message.
    pub nonce: String,
    pub max_chars: usize,
    pub per_day: i64,
    pub error: Option<String>,
    pub text: String,
}

impl MessagesView {
    pub async fn of(conn: &mut sqlx::PgConnection, activity: &Activity, tz: &Tz) -> Result<MessagesView, AppError> {
        let lines = holder_messages::progress(conn, activity.id)
            .await?
            .into_iter()
            .map(|p| Line {
                at: local_time::full(p.created_at, tz),
                body: p.body,
                sent_by: p.sent_by,
                recipients: p.recipients,
                include_waiting: p.include_waiting,
                queued: p.queued,
                customer_service: p.customer_service,
                template: p.template,
                simulator: p.simulator,
                undelivered: p.undelivered,
            })
            .collect();
        Ok(MessagesView {
            lines,
            nonce: links::nonce(),
            max_chars: MAX_CHARS,
            per_day: PER_DAY,
            error: None,
            text: String::new(),
        })
    }
}

#[derive(Debug, Default, Deserialize)]
struct MessageForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    waiting: Option<String>,
    #[serde(default)]
    nonce: String,
}

async fn send(
    State(state): State<AppState>,
    session: AdminSession,
    Path(id): Path<String>,
    Form(form): Form<MessageForm>,
) -> Result<Response, AppError> {
    session.check_csrf(&form.csrf)?;
    let id = parse_id(&id)?;
    if !(8..=64).contains(&form.nonce.len()) {
        return Err(AppError::Invalid("the form is missing its nonce; reload the page".into()));
    }
    let mut tx = state.pool.begin().await?;
    let activity = activities::by_id(&mut tx, id).await?.ok_or(AppError::NotFound)?;
    let by = session.admin.username.clone();
    let waiting = form.waiting.is_some();
    let why = match holder_messages::send(&mut tx, &state.notifier, &activity, &form.text, waiting, &by, &form.nonce)
        .await?
    {
        Sent::Queued { id: message, recipients } => {
            let detail = format!("{} #{message} → {recipients} 人：{}", activity.key, form.text.trim());
            audit::record_for(&mut tx, id, &by, "群发给持票人", &detail).await?;
            tx.commit().await?;
            return Ok(Redirect::to(&format!("/admin/activities/{id}#messages")).into_response());
        }
        Sent::TooMany { next_at } => format!(
            "每个活动 24 小时内最多发 {PER_DAY} 条消息；下一条可以在 {} 之后发。",
            local_time::full(next_at, state.config.timezone)
        ),
        Sent::Empty => "消息是空的。".to_string(),
        Sent::TooLong => format!("消息太长了：最多 {MAX_CHARS} 个字。"),
    };
    tx.rollback().await?;
    let mut page = super::activities::page_of(&state, session, activity).await?;
    if let Some(view) = page.messages.as_mut() {
        view.error = Some(why);
        view.text = form.text;
    }
    Ok((StatusCode::CONFLICT, page).into_response())
}
