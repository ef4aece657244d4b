//! The student roster (for STUDENT_VERIFY=roster) and the audit log.

use askama::Template;
use askama_web::WebTemplate;
use axum::{
    Router,
    extract::{DefaultBodyLimit, Multipart, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};

use super::AdminSession;
use crate::{AppState, audit, booking::students, config::StudentVerify, error::AppError, local_time, roster};

/// Ten thousand rows of `student_id,name` are a few hundred kilobytes.
const MAX_ROSTER_BYTES: usize = 8 * 1024 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/roster", get(page).post(import).layer(DefaultBodyLimit::max(MAX_ROSTER_BYTES + 64 * 1024)))
        .route("/admin/audit", get(audit_page))
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/roster.html")]
struct RosterPage {
    session: AdminSession,
    count: i64,
    roster_mode: bool,
    notice: Option<String>,
    error: Option<String>,
}

async fn page(State(state): State<AppState>, session: AdminSession) -> Result<RosterPage, AppError> {
    let count = students::roster_count(&mut *state.pool.acquire().await?).await?;
    let roster_mode = state.config.student_verify == StudentVerify::Roster;
    Ok(RosterPage { session, count, roster_mode, notice: None, error: None })
}

async fn import(
    State(state): State<AppState>,
    session: AdminSession,
    mut multipart: Multipart,
) -> Result<Response, AppError> {
    let mut csrf = String::new();
    let mut file: Option<Vec<u8>> = None;
    let too_big = || AppError::Invalid("上传失败或文件超过 8 MB。".into());
    while let Some(field) = multipart.next_field().await.map_err(|_| too_big())? {
        match field.name() {
            Some("csrf") => csrf = field.text().await.map_err(|_| too_big())?,
            Some("roster") => file = Some(field.bytes().await.map_err(|_| too_big())?.to_vec()),
            _ => {}
        }
    }
    session.check_csrf(&csrf)?;
    let roster_mode = state.config.student_verify == StudentVerify::Roster;
    let mut tx = state.pool.begin().await?;
    let parsed = file.filter(|f| !f.is_empty()).ok_or_else(|| AppError::Invalid("请选择一个 CSV 文件。".into()));
    let rows = match parsed.and_then(|bytes| roster::parse(&bytes)) {
        Ok(rows) => rows,
        Err(AppError::Invalid(message)) => {
            let count = students::roster_count(&mut tx).await?;
            let page = RosterPage { session, count, roster_mode, notice: None, error: Some(message) };
            return Ok((StatusCode::BAD_REQUEST, page).into_response());
        }
        Err(e) => return Err(e),
    };
    let written = students::import_roster(&mut tx, &rows).await?;
    audit::record(&mut tx, &session.admin.username, "导入名单", &format!("{written} 行")).await?;
    let count = students::roster_count(&mut tx).await?;
    tx.commit().await?;
    let notice = Some(format!("已导入 {written} 行。"));
    Ok(RosterPage { session, count, roster_mode, notice, error: None }.into_response())
}

struct AuditLine {
    at: String,
    actor: String,
    action: String,
    detail: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/audit.html")]
struct AuditPage {
    session: AdminSession,
    lines: Vec<AuditLine>,
}

async fn audit_page(State(state): State<AppState>, session: AdminSession) -> Result<AuditPage, AppError> {
    let tz = state.config.timezone;
    // An organizer's entries are their teams' activities' only; the query filters.
    let lines = audit::recent(&mut *state.pool.acquire().await?, 200, session.scope.team_filter())
        .await?
        .into_iter()
        .map(|e| AuditLine { at: local_time::precise(e.at, tz), actor: e.actor, action: e.action, detail: e.detail })
        .collect();
    Ok(AuditPage { session, lines })
}
