//! The 嘉宾票 card of the admin activity page (README "Guest tickets"):
//! issue a guest ticket, list the activity's guest tickets with their ticket
//! page links, revoke one. The rules live in `booking::guests`; this reads
//! forms. The access layer holds every route here to the activity's team.

use axum::{
    Form, Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
    routing::post,
};
use serde::Deserialize;

use super::{AdminSession, CsrfForm, activities::parse_id};
use crate::{
    AppState, audit,
    booking::{
        Activity, activities,
        guests::{self, GuestRequest, IssueOutcome, Listed, RevokeOutcome},
    },
    error::AppError,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/activities/{id}/guests", post(issue))
        .route("/admin/activities/{id}/guests/{code}/revoke", post(revoke))
}

/// What the activity page shows of its guest tickets.
pub struct GuestsView {
    pub tickets: Vec<Listed>,
    /// Live guest tickets: they count among the booked.
    pub live: usize,
    /// What the last issue or revoke was refused, and the form as typed.
    pub error: Option<String>,
    pub form: GuestForm,
}

impl GuestsView {
    /// The activity's guest tickets, nothing refused.
    pub async fn of(conn: &mut sqlx::PgConnection, activity: &Activity) -> Result<GuestsView, AppError> {
        let tickets = guests::of_activity(conn, activity.id).await?;
        let live = tickets.iter().filter(|t| t.live()).count();
        Ok(GuestsView { tickets, live, error: None, form: GuestForm::default() })
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct GuestForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub student_id: String,
    #[serde(default)]
    pub note: String,
}

async fn issue(
    State(state): State<AppState>,
    session: AdminSession,
    Path(id): Path<String>,
    Form(form): Form<GuestForm>,
) -> Result<Response, AppError> {
    session.check_csrf(&form.csrf)?;
    let id = parse_id(&id)?;
    let mut tx = state.pool.begin().await?;
    let activity = activities::by_id(&mut tx, id).await?.ok_or(AppError::NotFound)?;
    let request = GuestRequest {
        activity_id: id,
        name: &form.name,
        student_id: Some(form.student_id.as_str()),
        note: Some(form.note.as_str()),
        issued_by: &session.admin.username,
    };
    match guests::issue(&mut tx, &request, &state.config.student_id_pattern).await? {
        IssueOutcome::Issued(ticket) => {
            let detail = format!("{} {} {}", activity.key, ticket.holder(), ticket.code);
            audit::record_for(&mut tx, id, &session.admin.username, "嘉宾票", &detail).await?;
            tx.commit().await?;
            crate::meters::booked(crate::meters::Via::Guest);
            Ok(Redirect::to(&format!("/admin/activities/{id}#guests")).into_response())
        }
        refused => {
            tx.rollback().await?;
            let status = match refused {
                IssueOutcome::Invalid(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::CONFLICT,
            };
            refuse(&state, session, activity, status, refused.refusal().unwrap_or_default(), form).await
        }
    }
}

async fn revoke(
    State(state): State<AppState>,
    session: AdminSession,
    Path((id, code)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, AppError> {
    session.check_csrf(&form.csrf)?;
    let id = parse_id(&id)?;
    let mut tx = state.pool.begin().await?;
    let activity = activities::by_id(&mut tx, id).await?.ok_or(AppError::NotFound)?;
    let why = match guests::revoke(&mut tx, &state.notifier, &code, Some(id)).await? {
        RevokeOutcome::Revoked(ticket) => {
            let detail = format!("撤销 {} {} {}", activity.key, ticket.holder(), ticket.code);
            audit::record_for(&mut tx, id, &session.admin.username, "嘉宾票", &detail).await?;
            tx.commit().await?;
            crate::meters::cancelled(crate::meters::Via::Admin);
            return Ok(Redirect::to(&format!("/admin/activities/{id}#guests")).into_response());
        }
        RevokeOutcome::TooLate(_) => "这张嘉宾票已经检票，或活动已经开始，不能撤销。",
        RevokeOutcome::NoSuchGuestTicket => "本活动没有这张有效的嘉宾票（也许已经撤销了）。",
    };
    tx.rollback().await?;
    refuse(&state, session, activity, StatusCode::CONFLICT, why.to_string(), GuestForm::default()).await
}

/// The activity page again, its 嘉宾票 card saying why, the form as typed.
async fn refuse(
    state: &AppState,
    session: AdminSession,
    activity: Activity,
    status: StatusCode,
    why: String,
    form: GuestForm,
) -> Result<Response, AppError> {
    let form = GuestForm { csrf: String::new(), ..form };
    let mut page = super::activities::page_of(state, session, activity).await?;
    if let Some(view) = page.guests.as_mut() {
        view.error = Some(why);
        view.form = form;
    }
    Ok((status, page).into_response())
}
