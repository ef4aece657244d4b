//! A lottery's admin controls: announce the public value before the close,
//! confirm it after (which draws at once). Both audited.

use axum::{
    Form, Router,
    extract::{Path, State},
    response::{IntoResponse, Redirect, Response},
    routing::post,
};
use serde::Deserialize;

use super::{AdminSession, activities::parse_id};
use crate::{
    AppState, audit,
    booking::{
        activities,
        lottery::{self, DrawOutcome},
    },
    error::AppError,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/activities/{id}/lottery/announce", post(announce))
        .route("/admin/activities/{id}/lottery/confirm", post(confirm))
}

#[derive(Deserialize, Default)]
struct ValueForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    public_value: String,
}

fn back_to(id: i64) -> Response {
    Redirect::to(&format!("/admin/activities/{id}#lottery")).into_response()
}

/// Before the close: what the draw will wait for (empty: none, draw at the close).
async fn announce(
    State(state): State<AppState>,
    session: AdminSession,
    Path(id): Path<String>,
    Form(form): Form<ValueForm>,
) -> Result<Response, AppError> {
    session.check_csrf(&form.csrf)?;
    let id = parse_id(&id)?;
    let mut tx = state.pool.begin().await?;
    let activity = activities::by_id(&mut tx, id).await?.ok_or(AppError::NotFound)?;
    let value = Some(form.public_value.as_str()).filter(|v| !v.trim().is_empty());
    lottery::announce_public_value(&mut tx, id, value).await?;
    let what = format!("{} {}", activity.key, value.unwrap_or("（不用公开值）"));
    audit::record_for(&mut tx, activity.id, &session.admin.username, "公布抽签公开值", &what).await?;
    tx.commit().await?;
    Ok(back_to(id))
}

/// After the close: the value as finally known; the draw runs in this transaction.
async fn confirm(
    State(state): State<AppState>,
    session: AdminSession,
    Path(id): Path<String>,
    Form(form): Form<ValueForm>,
) -> Result<Response, AppError> {
    session.check_csrf(&form.csrf)?;
    let id = parse_id(&id)?;
    let mut tx = state.pool.begin().await?;
    let activity = activities::by_id(&mut tx, id).await?.ok_or(AppError::NotFound)?;
    let who = &session.admin.username;
    let outcome = lottery::confirm_public_value(&mut tx, &state.notifier, id, &form.public_value, who).await?;
    let what = format!("{} {}", activity.key, form.public_value.trim());
    audit::record_for(&mut tx, activity.id, who, "确认抽签公开值", &what).await?;
    if let DrawOutcome::Drawn { entries, winners } = outcome {
        audit::record_for(
            &mut tx,
            activity.id,
            who,
            "抽签",
            &format!("{}：{entries} 人报名，{winners} 人中签", activity.key),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(back_to(id))
}
