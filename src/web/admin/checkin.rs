//! Check-in at the door, on a phone: the scan screen (camera, a field for a
//! scanned ticket URL, a ticket code or a student ID, a big green or red answer
//! that says why), and the volunteers' check-in links for each gate.

use askama::Template;
use askama_web::WebTemplate;
use axum::{
    Form, Router,
    extract::{Path, State},
    http::header,
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use serde::Deserialize;
use time::OffsetDateTime;

use super::{AdminSession, CsrfForm, activities::parse_id};
use crate::{
    AppState,
    booking::{
        Activity, activities,
        checkin::Scanner,
        checkin_links::{self, DEFAULT_HOURS},
    },
    error::AppError,
    links, local_time,
    web::door::{self, ScanForm, ScanScreen},
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/activities/{id}/checkin", get(page).post(form_scan))
        .route("/admin/activities/{id}/checkin/scan", post(scan))
        .route("/admin/activities/{id}/checkin/status", get(status))
        .route("/admin/activities/{id}/checkin-links", post(create_link))
        .route("/admin/checkin-links/{id}/revoke", post(revoke_link))
}

/// A volunteer link as the page lists it.
struct LinkRow {
    id: i64,
    gate: String,
    /// The URL to hand to the volunteer, while the link is open.
    url: Option<String>,
    state: &'static str,
    expires: String,
    created_by: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/checkin.html")]
struct CheckinPage {
    session: AdminSession,
    screen: ScanScreen,
    links: Vec<LinkRow>,
    default_hours: i64,
}

async fn activity(conn: &mut sqlx::PgConnection, id: &str) -> Result<Activity, AppError> {
    activities::by_id(conn, parse_id(id)?).await?.ok_or(AppError::NotFound)
}

fn scanner(session: &AdminSession) -> Scanner {
    Scanner::Admin(session.admin.username.clone())
}

async fn render(
    state: &AppState,
    session: AdminSession,
    id: &str,
    form: Option<ScanForm>,
) -> Result<Response, AppError> {
    let tz = state.config.timezone;
    let mut tx = state.pool.begin().await?;
    let activity = activity(&mut tx, id).await?;
    let verdict = match &form {
        Some(form) => Some(door::scan_in(&mut tx, state, &activity, form, &scanner(&session)).await?),
        None => None,
    };
    let now = OffsetDateTime::now_utc();
    let links = checkin_links::list(&mut tx, Some(activity.id))
        .await?
        .into_iter()
        .map(|l| LinkRow {
            id: l.id,
            url: l
                .is_open(now)
                .then(|| format!("{}/door/{}", state.config.public_url, links::door_token(&state.secret_key, l.id))),
            state: if l.revoked_at.is_some() {
                "已吊销"
            } else if l.is_open(now) {
                "有效"
            } else {
                "已过期"
            },
            expires: local_time::full(l.expires_at, tz),
            created_by: l.created_by,
            gate: l.gate,
        })
        .collect();
    let base = format!("/admin/activities/{}/checkin", activity.id);
    let csrf = session.csrf_token.clone();
    let counted = verdict.clone().map(|v| (activity.clone(), v));
    let screen = ScanScreen::load(&mut tx, state, activity, base, csrf, None, verdict).await?;
    tx.commit().await?;
    if let Some((activity, verdict)) = counted {
        door::count_scan(&activity, &scanner(&session), &verdict);
    }
    // Open links' URLs are on the page: no cache keeps it.
    Ok((
        [(header::CACHE_CONTROL, "private, no-store")],
        CheckinPage { session, screen, links, default_hours: DEFAULT_HOURS },
    )
        .into_response())
}

async fn page(
    State(state): State<AppState>,
    session: AdminSession,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    render(&state, session, &id, None).await
}

async fn form_scan(
    State(state): State<AppState>,
    session: AdminSession,
    Path(id): Path<String>,
    Form(form): Form<ScanForm>,
) -> Result<impl IntoResponse, AppError> {
    session.check_csrf(&form.csrf)?;
    render(&state, session, &id, Some(form)).await
}

async fn scan(
    State(state): State<AppState>,
    session: AdminSession,
    Path(id): Path<String>,
    Form(form): Form<ScanForm>,
) -> Result<impl IntoResponse, AppError> {
    session.check_csrf(&form.csrf)?;
    let mut tx = state.pool.begin().await?;
    let activity = activity(&mut tx, &id).await?;
    let verdict = door::scan_in(&mut tx, &state, &activity, &form, &scanner(&session)).await?;
    let mut status = door::load_status(&mut tx, &state, activity.id, None).await?;
    tx.commit().await?;
    door::count_scan(&activity, &scanner(&session), &verdict);
    status.verdict = Some(verdict);
    Ok(door::no_store(status))
}

async fn status(
    State(state): State<AppState>,
    _session: AdminSession,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    let mut conn = state.pool.acquire().await?;
    let activity = activity(&mut conn, &id).await?;
    Ok(door::no_store(door::load_status(&mut conn, &state, activity.id, None).await?))
}

#[derive(Deserialize)]
struct LinkForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    gate: String,
    #[serde(default)]
    hours: String,
}

async fn create_link(
    State(state): State<AppState>,
    session: AdminSession,
    Path(id): Path<String>,
    Form(form): Form<LinkForm>,
) -> Result<impl IntoResponse, AppError> {
    session.check_csrf(&form.csrf)?;
    let hours = match form.hours.trim() {
        "" => DEFAULT_HOURS,
        typed => typed.parse().map_err(|_| AppError::Invalid("有效期请填小时数，例如 12。".into()))?,
    };
    let mut tx = state.pool.begin().await?;
    let activity = activity(&mut tx, &id).await?;
    checkin_links::create(&mut tx, &activity, &form.gate, hours, &session.admin.username).await?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/admin/activities/{}/checkin#links", activity.id)))
}

async fn revoke_link(
    State(state): State<AppState>,
    session: AdminSession,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<impl IntoResponse, AppError> {
    session.check_csrf(&form.csrf)?;
    let mut tx = state.pool.begin().await?;
    let link =
        checkin_links::revoke(&mut tx, parse_id(&id)?, &session.admin.username).await?.ok_or(AppError::NotFound)?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/admin/activities/{}/checkin#links", link.activity_id)))
}
