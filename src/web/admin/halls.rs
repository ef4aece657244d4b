//! Halls (`/admin/halls`, README "Seats"): the list, import from CSV, a
//! preview of the seat map, and delete while no activity uses one.

use askama::Template;
use askama_web::WebTemplate;
use axum::{
    Form, Router,
    extract::{DefaultBodyLimit, Multipart, Path, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};

use super::{AdminSession, CsrfForm, activities::parse_id};
use crate::{
    AppState, audit,
    booking::seats::{
        hall::{self, Hall},
        map::{self, ZoneCount},
    },
    error::AppError,
    web::seat_map::{self, Pick},
};

/// A 20,000-seat file is well under a megabyte; room for long zone names.
const MAX_HALL_BYTES: usize = 4 * 1024 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/halls", get(list).post(import).layer(DefaultBodyLimit::max(MAX_HALL_BYTES + 64 * 1024)))
        .route("/admin/halls/{id}", get(preview))
        .route("/admin/halls/{id}/delete", post(delete))
}

struct Row {
    hall: Hall,
    users: Vec<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/halls.html")]
struct ListPage {
    session: AdminSession,
    rows: Vec<Row>,
    notice: Option<String>,
    error: Option<String>,
    /// The name typed, kept when the file is refused.
    name: String,
}

async fn list_page(
    state: &AppState,
    session: AdminSession,
    notice: Option<String>,
    error: Option<String>,
    name: String,
) -> Result<ListPage, AppError> {
    let mut conn = state.pool.acquire().await?;
    let mut rows = Vec::new();
    for hall in hall::list(&mut conn).await? {
        let users = if hall.used_by > 0 { hall::users(&mut conn, hall.id).await? } else { Vec::new() };
        rows.push(Row { hall, users });
    }
    Ok(ListPage { session, rows, notice, error, name })
}

async fn list(State(state): State<AppState>, session: AdminSession) -> Result<ListPage, AppError> {
    list_page(&state, session, None, None, String::new()).await
}

async fn import(
    State(state): State<AppState>,
    session: AdminSession,
    mut multipart: Multipart,
) -> Result<Response, AppError> {
    let (mut csrf, mut name, mut file) = (String::new(), String::new(), None::<Vec<u8>>);
    let too_big = || AppError::Invalid("上传失败或文件超过 4 MB。".into());
    while let Some(field) = multipart.next_field().await.map_err(|_| too_big())? {
        match field.name() {
            Some("csrf") => csrf = field.text().await.map_err(|_| too_big())?,
            Some("name") => name = field.text().await.map_err(|_| too_big())?,
            Some("hall") => file = Some(field.bytes().await.map_err(|_| too_big())?.to_vec()),
            _ => {}
        }
    }
    session.check_csrf(&csrf)?;
    // The whole file is read and checked before anything is stored.
    let parsed = match file.filter(|f| !f.is_empty()) {
        None => Err("请选择一个 CSV 文件。".to_string()),
        Some(bytes) => hall::parse(&bytes).map_err(|bad| bad.to_string()),
    };
    let seats = match parsed {
        Ok(seats) => seats,
        Err(why) => return refused(&state, session, why, name).await,
    };
    let mut tx = state.pool.begin().await?;
    let stored = match hall::import(&mut tx, &name, &seats).await {
        Ok(h) => h,
        Err(AppError::Invalid(why)) => return refused(&state, session, why, name).await,
        Err(e) => return Err(e),
    };
    let detail = format!("{} {} 个座位", stored.name, stored.seats);
    audit::record(&mut tx, &session.admin.username, "导入场馆", &detail).await?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/admin/halls/{}", stored.id)).into_response())
}

async fn refused(state: &AppState, session: AdminSession, why: String, name: String) -> Result<Response, AppError> {
    let page = list_page(state, session, None, Some(why), name).await?;
    Ok((StatusCode::BAD_REQUEST, page).into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/hall.html")]
struct PreviewPage {
    session: AdminSession,
    hall: Hall,
    users: Vec<String>,
    zones: Vec<ZoneCount>,
    /// The seat map's HTML, drawn (and escaped) by `seat_map::draw`.
    map: String,
}

async fn preview(
    State(state): State<AppState>,
    session: AdminSession,
    Path(id): Path<String>,
) -> Result<PreviewPage, AppError> {
    let mut conn = state.pool.acquire().await?;
    let hall = hall::by_id(&mut conn, parse_id(&id)?).await?.ok_or(AppError::NotFound)?;
    let users = hall::users(&mut conn, hall.id).await?;
    let seats = map::of_hall(&mut conn, hall.id).await?;
    let mut zones: Vec<ZoneCount> = Vec::new();
    for seat in &seats {
        match zones.iter_mut().find(|z| z.zone == seat.zone) {
            Some(z) => z.total += 1,
            None => zones.push(ZoneCount {
                zone: seat.zone.clone(),
                total: 1,
                free: 0,
                taken: 0,
                blocked: 0,
                checked_in: 0,
            }),
        }
    }
    let map = seat_map::draw(&seats, Pick::None);
    Ok(PreviewPage { session, hall, users, zones, map })
}

async fn delete(
    State(state): State<AppState>,
    session: AdminSession,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, AppError> {
    session.check_csrf(&form.csrf)?;
    let mut tx = state.pool.begin().await?;
    let hall = hall::by_id(&mut tx, parse_id(&id)?).await?.ok_or(AppError::NotFound)?;
    match hall::delete(&mut tx, &hall.name).await {
        Ok(()) => {}
        Err(AppError::Invalid(why)) => {
            tx.rollback().await?;
            return refused(&state, session, why, String::new()).await;
        }
        Err(e) => return Err(e),
    }
    audit::record(&mut tx, &session.admin.username, "删除场馆", &format!("{} {} 个座位", hall.name, hall.seats))
        .await?;
    tx.commit().await?;
    let notice = Some(format!("已删除场馆 {}。", hall.name));
    Ok(list_page(&state, session, notice, None, String::new()).await?.into_response())
}
