//! Ticket list downloads (CSV and XLSX).

use axum::{
    Router,
    extract::{Path, Query, State},
    http::header,
    response::{IntoResponse, Response},
    routing::get,
};

use super::{AdminSession, activities::parse_id};
use crate::{
    AppState, audit,
    booking::{activities, export},
    error::AppError,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/activities/{id}/export.csv", get(async |st, se, id, q| download(st, se, id, q, "csv").await))
        .route("/admin/activities/{id}/export.xlsx", get(async |st, se, id, q| download(st, se, id, q, "xlsx").await))
}

async fn download(
    State(state): State<AppState>,
    session: AdminSession,
    Path(id): Path<String>,
    Query(asked): Query<super::activities::TestTickets>,
    extension: &'static str,
) -> Result<Response, AppError> {
    let content_type = match extension {
        "csv" => "text/csv; charset=utf-8",
        _ => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    };
    let mut conn = state.pool.acquire().await?;
    let activity = activities::by_id(&mut conn, parse_id(&id)?).await?.ok_or(AppError::NotFound)?;
    let rows = export::rows(&mut conn, activity.id, asked.included()).await?;
    let tz = state.config.timezone;
    let bytes = if extension == "csv" { export::csv(&rows, tz)? } else { export::xlsx(&rows, tz, &activity.name)? };
    audit::record_for(
        &mut conn,
        activity.id,
        &session.admin.username,
        "导出票务名单",
        &format!("{} {extension}", activity.key),
    )
    .await?;
    let disposition = format!("attachment; filename=\"{}-tickets.{extension}\"", activity.key);
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, "private, no-store".to_string()),
        ],
        bytes,
    )
        .into_response())
}
