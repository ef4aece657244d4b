//! 群发 pages (README "Announcements to followers"): announce a published
//! activity to every follower — compose, preview to one follower, then send
//! the previewed text to all; see WeChat's msg_id and, later, its counts.
//! Account-wide, so admins only (`access`). The rules and the SQL live in
//! `notify::announcements`; this reads forms and shows pages.

use askama::Template;
use askama_web::WebTemplate;
use axum::{
    Form, Router,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use serde::Deserialize;

use super::{AdminSession, activities::parse_id};
use crate::{
    AppState,
    booking::{Activity, activities},
    error::AppError,
    local_time, menu,
    notify::announcements::{self, Announcement, MAX_CHARS, Outcome, Status},
    transcripts,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/announcements", get(list).post(create))
        .route("/admin/announcements/{id}", get(page))
        .route("/admin/announcements/{id}/preview", post(preview))
        .route("/admin/announcements/{id}/send", post(send))
}

/// One announcement as the pages show it.
struct Line {
    a: Announcement,
    created_at: String,
    previewed_at: String,
    sent_at: String,
    finished_at: String,
    result: String,
}

impl Line {
    fn of(a: Announcement, state: &AppState) -> Line {
        let tz = state.config.timezone;
        let at = |t: Option<time::OffsetDateTime>| t.map(|t| local_time::full(t, tz)).unwrap_or_default();
        Line {
            created_at: local_time::full(a.created_at, tz),
            previewed_at: at(a.previewed_at),
            sent_at: at(a.sent_at),
            finished_at: at(a.finished_at),
            result: a.result.as_deref().map(announcements::result_words).unwrap_or_default(),
            a,
        }
    }

    fn status(&self) -> Status {
        self.a.status
    }

    /// The form shows while the text may be previewed or sent (also a send
    /// left unfinished by an instance that died, to be tried again).
    fn editable(&self) -> bool {
        self.a.status == Status::Draft || self.a.sendable()
    }

    fn count(n: &Option<i32>) -> String {
        n.map_or_else(|| "—".into(), |n| n.to_string())
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/announcements.html")]
struct ListPage {
    session: AdminSession,
    lines: Vec<Line>,
    activities: Vec<Activity>,
    chosen: Option<i64>,
}

impl ListPage {
    fn is_chosen(&self, id: &i64) -> bool {
        self.chosen == Some(*id)
    }
}

#[derive(Deserialize)]
struct ListQuery {
    activity: Option<i64>,
}

/// Published activities not yet over: what is worth announcing.
async fn announceable(state: &AppState) -> Result<Vec<Activity>, AppError> {
    let now = time::OffsetDateTime::now_utc();
    let all = activities::all(&mut *state.pool.acquire().await?).await?;
    Ok(all.into_iter().filter(|a| a.is_published() && a.end_at > now).collect())
}

async fn list(
    State(state): State<AppState>,
    session: AdminSession,
    Query(query): Query<ListQuery>,
) -> Result<ListPage, AppError> {
    let lines = announcements::recent(&mut *state.pool.acquire().await?, 100)
        .await?
        .into_iter()
        .map(|a| Line::of(a, &state))
        .collect();
    Ok(ListPage { session, lines, activities: announceable(&state).await?, chosen: query.activity })
}

#[derive(Deserialize)]
struct CreateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    activity: String,
}

/// A new announcement, its text composed from the activity; then its page.
async fn create(
    State(state): State<AppState>,
    session: AdminSession,
    Form(form): Form<CreateForm>,
) -> Result<Response, AppError> {
    session.check_csrf(&form.csrf)?;
    let activity_id = form.activity.parse().map_err(|_| AppError::Invalid("请选择一个活动。".into()))?;
    let mut tx = state.pool.begin().await?;
    let activity = activities::by_id(&mut tx, activity_id).await?.ok_or(AppError::NotFound)?;
    if !activity.is_published() {
        return Err(AppError::Invalid("只能群发已发布的活动。".into()));
    }
    let text = announcements::default_text(&activity, &state.config.public_url, state.config.timezone);
    let id = announcements::create(&mut tx, &activity, &text, &session.admin.username).await?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/admin/announcements/{id}")).into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/announcement.html")]
struct AnnouncementPage {
    session: AdminSession,
    line: Line,
    /// The text in the form: the stored one, or what the admin just typed.
    text: String,
    openid: String,
    test_students: Vec<String>,
    max_chars: usize,
    notice: Option<String>,
    error: Option<String>,
}

impl AnnouncementPage {
    /// The send button works only on a previewed text (the server checks it again).
    fn can_send(&self) -> bool {
        self.line.a.sendable() && announcements::normalized(&self.text) == self.line.a.body
    }
}

async fn render(
    state: &AppState,
    session: AdminSession,
    id: i64,
    typed: Option<(String, String)>,
    notice: Option<String>,
    error: Option<String>,
) -> Result<AnnouncementPage, AppError> {
    let a = announcements::by_id(&mut *state.pool.acquire().await?, id).await?.ok_or(AppError::NotFound)?;
    let test_students = transcripts::test_students(&state.pool).await?.into_iter().map(|s| s.openid).collect();
    let (text, openid) = typed.unwrap_or_else(|| (a.body.clone(), a.preview_openid.clone().unwrap_or_default()));
    Ok(AnnouncementPage {
        session,
        line: Line::of(a, state),
        text,
        openid,
        test_students,
        max_chars: MAX_CHARS,
        notice,
        error,
    })
}

async fn page(
    State(state): State<AppState>,
    session: AdminSession,
    Path(id): Path<String>,
) -> Result<AnnouncementPage, AppError> {
    render(&state, session, parse_id(&id)?, None, None, None).await
}

#[derive(Deserialize)]
struct AnnounceForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    openid: String,
}

async fn preview(
    State(state): State<AppState>,
    session: AdminSession,
    Path(id): Path<String>,
    Form(form): Form<AnnounceForm>,
) -> Result<Response, AppError> {
    session.check_csrf(&form.csrf)?;
    let id = parse_id(&id)?;
    let api = menu::wechat_api(&state.config, state.pool.clone()).map_err(AppError::from);
    let by = session.admin.username.clone();
    let outcome = announcements::preview(&state.pool, api, id, &form.body, &form.openid, &by).await?;
    respond(&state, session, id, form, outcome).await
}

async fn send(
    State(state): State<AppState>,
    session: AdminSession,
    Path(id): Path<String>,
    Form(form): Form<AnnounceForm>,
) -> Result<Response, AppError> {
    session.check_csrf(&form.csrf)?;
    let id = parse_id(&id)?;
    let api = menu::wechat_api(&state.config, state.pool.clone()).map_err(AppError::from);
    let by = session.admin.username.clone();
    let outcome = announcements::send(&state.pool, api, id, &form.body, &by).await?;
    respond(&state, session, id, form, outcome).await
}

/// The announcement's page again, saying what happened. A refused request
/// keeps what the admin typed in the form.
async fn respond(
    state: &AppState,
    session: AdminSession,
    id: i64,
    form: AnnounceForm,
    outcome: Outcome,
) -> Result<Response, AppError> {
    let openid = form.openid.trim().to_string();
    let typed = Some((form.body, openid.clone()));
    let (status, typed, notice, error) = match outcome {
        Outcome::Previewed => (
            StatusCode::OK,
            None,
            Some(format!("预览已发给 {openid}：请在微信里看一眼，无误后再群发给所有关注者。")),
            None,
        ),
        Outcome::Sent { msg_id, repeated: false } => {
            (StatusCode::OK, None, Some(format!("微信已接受群发（msg_id {msg_id}），群发结果稍后显示在这里。")), None)
        }
        Outcome::Sent { msg_id, repeated: true } => {
            (StatusCode::OK, None, Some(format!("微信已经有这次群发（msg_id {msg_id}），没有重复发送。")), None)
        }
        Outcome::Refused(why) => (StatusCode::CONFLICT, typed, None, Some(why)),
        Outcome::Taken(now) => {
            (StatusCode::CONFLICT, None, None, Some(format!("这条群发已经在发或已发出（{}），没有再发。", now.label())))
        }
        Outcome::Failed(why) => (StatusCode::BAD_GATEWAY, typed, None, Some(format!("微信没有接受：{why}"))),
    };
    let page = render(state, session, id, typed, notice, error).await?;
    Ok((status, page).into_response())
}
