//! The seat section of the admin activity page (README "Seats"): counts per
//! zone, the map with each seat's state, blocking seats, and moving a
//! student. The rules live in `booking::seats`; this only reads forms.

use axum::{
    Form, Router,
    extract::{Path, State},
    response::{IntoResponse, Redirect, Response},
    routing::post,
};
use serde::Deserialize;

use super::{
    AdminSession,
    activities::{page_with_seat_error, parse_id},
};
use crate::{
    AppState, audit,
    booking::{
        Activity, activities,
        seats::{
            Plan, Seating, admin as seat_admin,
            map::{self, ZoneCount},
            moves::{self, MoveOutcome},
        },
    },
    error::AppError,
    web::seat_map::{self, Pick},
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/activities/{id}/seats/blocks", post(set_blocks))
        .route("/admin/activities/{id}/seats/move", post(move_student))
}

/// What the activity page shows of a zone or seat activity's places.
pub struct SeatsView {
    pub seating: Seating,
    pub zones: Vec<ZoneCount>,
    /// The zones summed (named 合计).
    pub all: ZoneCount,
    /// Seat mode: the map (escaped HTML), free and blocked seats ticked to block.
    pub map: Option<String>,
    /// A refused block or move, shown above the forms.
    pub error: Option<String>,
}

/// `None` for standing room.
pub async fn view(conn: &mut sqlx::PgConnection, activity: &Activity) -> Result<Option<SeatsView>, AppError> {
    let seating = match seat_admin::setup_of(conn, activity.id).await?.plan {
        Plan::None => return Ok(None),
        Plan::Zones(_) => Seating::Zone,
        Plan::Hall(_) => Seating::Seat,
    };
    let drawn = map::of_activity(conn, activity.id).await?;
    let map = (seating == Seating::Seat).then(|| seat_map::draw(&drawn.seats, Pick::Many));
    let sum = |count: fn(&ZoneCount) -> i64| drawn.zones.iter().map(count).sum();
    let all = ZoneCount {
        zone: "合计".into(),
        total: sum(|z| z.total),
        free: sum(|z| z.free),
        taken: sum(|z| z.taken),
        blocked: sum(|z| z.blocked),
        checked_in: sum(|z| z.checked_in),
    };
    Ok(Some(SeatsView { seating, zones: drawn.zones, all, map, error: None }))
}

/// The block form posts every ticked seat: exactly those are to be blocked.
async fn set_blocks(
    State(state): State<AppState>,
    session: AdminSession,
    Path(id): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    let csrf = fields.iter().find(|(k, _)| k == "csrf").map_or("", |(_, v)| v.as_str());
    session.check_csrf(csrf)?;
    let id = parse_id(&id)?;
    let wanted: Vec<String> = fields.iter().filter(|(k, _)| k == "seat").map(|(_, v)| v.clone()).collect();
    let mut tx = state.pool.begin().await?;
    let activity = activities::by_id(&mut tx, id).await?.ok_or(AppError::NotFound)?;
    let change = match seat_admin::set_blocks(&mut tx, &state.notifier, id, &wanted).await {
        Ok(change) => change,
        Err(AppError::Invalid(why)) => {
            tx.rollback().await?;
            return page_with_seat_error(&state, session, id, why).await;
        }
        Err(e) => return Err(e),
    };
    audit::record_for(&mut tx, activity.id, &session.admin.username, "预留座位", &change.describe(&activity.key))
        .await?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/admin/activities/{id}#seats")).into_response())
}

#[derive(Deserialize)]
struct MoveForm {
    #[serde(default)]
    csrf: String,
    /// A student ID or a ticket code.
    #[serde(default)]
    who: String,
    /// `zone-row-seat`, or a zone's name.
    #[serde(default)]
    to: String,
}

async fn move_student(
    State(state): State<AppState>,
    session: AdminSession,
    Path(id): Path<String>,
    Form(form): Form<MoveForm>,
) -> Result<Response, AppError> {
    session.check_csrf(&form.csrf)?;
    let id = parse_id(&id)?;
    let mut tx = state.pool.begin().await?;
    let activity = activities::by_id(&mut tx, id).await?.ok_or(AppError::NotFound)?;
    let outcome = moves::move_ticket(&mut tx, id, &form.who, &form.to, &session.admin.username).await?;
    let sentence = outcome.sentence(form.who.trim(), form.to.trim());
    if !matches!(outcome, MoveOutcome::Moved { .. }) {
        tx.rollback().await?;
        return page_with_seat_error(&state, session, id, sentence).await;
    }
    audit::record_for(
        &mut tx,
        activity.id,
        &session.admin.username,
        "调换位置",
        &format!("{}：{sentence}", activity.key),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/admin/activities/{id}#seats")).into_response())
}
