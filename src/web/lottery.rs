//! A lottery's public pages: `/activities/{id}/draw` (HTML) and
//! `/activities/{id}/draw.json`, open to anyone, before and after the draw,
//! and the student's own entries on their pages.

use askama::Template;
use askama_web::WebTemplate;
use axum::{
    Json, Router,
    extract::{Path, State},
    http::header,
    response::{IntoResponse, Response},
    routing::get,
};
use sqlx::PgConnection;

use crate::{
    AppState,
    booking::{
        Activity, ActivityStatus, activities,
        lottery::{self, Mode, proof::Published},
        waiting,
    },
    error::AppError,
    local_time,
};

pub fn router() -> Router<AppState> {
    Router::new().route("/activities/{id}/draw", get(page)).route("/activities/{id}/draw.json", get(json))
}

/// A published lottery activity (drafts are not public; rush activities have no draw).
async fn lottery_activity(conn: &mut PgConnection, id: &str) -> Result<Activity, AppError> {
    let id: i64 = id.parse().map_err(|_| AppError::NotFound)?;
    activities::by_id(conn, id)
        .await?
        .filter(|a| a.status != ActivityStatus::Draft && a.mode == Mode::Lottery)
        .ok_or(AppError::NotFound)
}

/// A lottery's state in words and times, as its pages show it.
pub(super) struct LotteryView {
    pub(super) state: lottery::State,
    pub(super) committed_at: String,
    /// When the pool was sealed (its hash and size published), at the close.
    pub(super) sealed_at: Option<String>,
    pub(super) drawn_at: Option<String>,
    pub(super) confirmed_at: Option<String>,
    /// One line: registering, waiting for the public value, drawn.
    pub(super) stage: String,
}

pub(super) async fn view(
    conn: &mut PgConnection,
    activity: &Activity,
    tz: &time_tz::Tz,
) -> Result<Option<LotteryView>, AppError> {
    let Some(state) = lottery::state(conn, activity.id).await? else {
        return Ok(None);
    };
    let stage = match (&state.drawn_at, state.closed) {
        (Some(_), _) => {
            format!("已抽签：{} 人报名，{} 人中签，其余同学按抽签顺序候补", state.entries, state.winners.unwrap_or(0))
        }
        (None, true) if state.sealed_at.is_none() => "报名已截止，马上封存报名池并抽签".to_string(),
        (None, true) if state.awaits_public_value() => {
            format!("报名已截止，报名池已封存（{} 人）：等待管理员确认公开值后抽签", state.entries)
        }
        (None, true) => format!("报名已截止，报名池已封存（{} 人）：马上抽签", state.entries),
        (None, false) => {
            format!("报名中：已有 {} 人报名，{} 截止后抽签", state.entries, local_time::short(activity.book_end, tz))
        }
    };
    Ok(Some(LotteryView {
        committed_at: local_time::precise(state.committed_at, tz),
        sealed_at: state.sealed_at.map(|t| local_time::precise(t, tz)),
        drawn_at: state.drawn_at.map(|t| local_time::precise(t, tz)),
        confirmed_at: state.public_value_confirmed_at.map(|t| local_time::precise(t, tz)),
        stage,
        state,
    }))
}

#[derive(Template, WebTemplate)]
#[template(path = "student/draw.html")]
struct DrawPage {
    activity: Activity,
    /// Where draw.json is, for the command that checks it.
    json_url: String,
    lottery: Option<LotteryView>,
    published: Option<Published>,
}

impl DrawPage {
    fn winners(&self) -> usize {
        self.published.as_ref().map_or(0, |p| p.capacity.min(p.entries))
    }
}

async fn page(State(state): State<AppState>, Path(id): Path<String>) -> Result<DrawPage, AppError> {
    let mut conn = state.pool.acquire().await?;
    let activity = lottery_activity(&mut conn, &id).await?;
    let lottery = view(&mut conn, &activity, state.config.timezone).await?;
    let published = lottery::published(&mut conn, activity.id).await?;
    let json_url = format!("{}/activities/{}/draw.json", state.config.public_url, activity.id);
    Ok(DrawPage { activity, json_url, lottery, published })
}

/// 404 until the draw: before it there is nothing to check but the
/// commitment, which the HTML page shows.
async fn json(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, AppError> {
    let mut conn = state.pool.acquire().await?;
    let activity = lottery_activity(&mut conn, &id).await?;
    let published = lottery::published(&mut conn, activity.id).await?.ok_or(AppError::NotFound)?;
    // Published once and for all: caches may keep it.
    Ok(([(header::CACHE_CONTROL, "public, max-age=300")], Json(published)).into_response())
}

/// One of a student's registrations, for their pages.
pub(super) struct EntryLine {
    pub(super) activity_id: i64,
    pub(super) activity_name: String,
    pub(super) eid: String,
    /// The entry's secret (hex), shown only on the student's own pages.
    pub(super) secret: Option<String>,
    /// In words: waiting for the draw, won, or the rank and the waiting list.
    pub(super) outcome: String,
}

pub(super) async fn entry_lines(
    conn: &mut PgConnection,
    student_id: &str,
    tz: &time_tz::Tz,
) -> Result<Vec<EntryLine>, AppError> {
    let queued = waiting::positions(conn, student_id).await?;
    Ok(lottery::entries_of_student(conn, student_id)
        .await?
        .into_iter()
        .map(|e| EntryLine {
            outcome: match (e.rank, queued.iter().find(|w| w.activity_key == e.activity_key)) {
                (None, _) if e.called_off => "活动已取消，报名作废".to_string(),
                (None, _) => format!("已报名，{} 截止后抽签", local_time::short(e.book_end, tz)),
                (Some(rank), _) if e.won => format!("中签（第 {rank} 名）"),
                (Some(rank), Some(w)) => format!("未中签（第 {rank} 名），现在候补第 {} 位", w.position),
                (Some(rank), None) => format!("未中签（第 {rank} 名）"),
            },
            activity_id: e.activity_id,
            activity_name: e.activity_name,
            eid: e.eid,
            secret: e.secret,
        })
        .collect())
}
