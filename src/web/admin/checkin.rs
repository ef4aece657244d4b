//! Check-in at the door, on a phone: one field for a scanned ticket URL, a
//! ticket code or a student ID, and a big green or red answer that says why.

use askama::Template;
use askama_web::WebTemplate;
use axum::{
    Form, Router,
    extract::{Path, State},
    routing::get,
};
use serde::Deserialize;

use super::{AdminSession, activities::parse_id};
use crate::{
    AppState, audit,
    booking::{
        Activity, activities,
        checkin::{self, CheckinOutcome},
    },
    error::AppError,
    local_time,
};

pub fn router() -> Router<AppState> {
    Router::new().route("/admin/activities/{id}/checkin", get(page).post(check_in))
}

struct Verdict {
    good: bool,
    headline: String,
    detail: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/checkin.html")]
struct CheckinPage {
    session: AdminSession,
    activity: Activity,
    booked: i64,
    checked_in: i64,
    verdict: Option<Verdict>,
}

async fn page(
    State(state): State<AppState>,
    session: AdminSession,
    Path(id): Path<String>,
) -> Result<CheckinPage, AppError> {
    let mut conn = state.pool.acquire().await?;
    let activity = activities::by_id(&mut conn, parse_id(&id)?).await?.ok_or(AppError::NotFound)?;
    let (booked, checked_in) = checkin::counts(&mut conn, activity.id, false).await?;
    Ok(CheckinPage { session, activity, booked, checked_in, verdict: None })
}

#[derive(Deserialize)]
struct CheckinForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
}

async fn check_in(
    State(state): State<AppState>,
    session: AdminSession,
    Path(id): Path<String>,
    Form(form): Form<CheckinForm>,
) -> Result<CheckinPage, AppError> {
    session.check_csrf(&form.csrf)?;
    let tz = state.config.timezone;
    let mut tx = state.pool.begin().await?;
    let activity = activities::by_id(&mut tx, parse_id(&id)?).await?.ok_or(AppError::NotFound)?;
    let presented = checkin::read_input(&form.code, &state.secret_key);
    let outcome = checkin::check_in(&mut tx, activity.id, presented).await?;
    let bad = |headline: &str, detail: String| Verdict { good: false, headline: headline.into(), detail };
    let verdict = match outcome {
        CheckinOutcome::CheckedIn(t) => {
            audit::record(&mut tx, &session.admin.username, "检票", &format!("{} {}", activity.key, t.student_id))
                .await?;
            Verdict { good: true, headline: "检票成功".into(), detail: format!("学号 {}", t.student_id) }
        }
        CheckinOutcome::AlreadyUsed(t, at) => {
            bad("已检票", format!("学号 {} 的这张票已在 {} 检过票", t.student_id, local_time::clock(at, tz)))
        }
        CheckinOutcome::Cancelled(t) => bad("票已退", format!("学号 {} 的这张票已经退掉了", t.student_id)),
        CheckinOutcome::OtherActivity(t) => bad("不是本活动的票", format!("这是「{}」的票", t.activity_name)),
        CheckinOutcome::UnknownTicket => bad("没有这张票", "票号无效，请让同学重新打开电子票".into()),
        CheckinOutcome::NoTicketForStudent(id) => bad("没有票", format!("学号 {id} 没有本活动的票")),
        CheckinOutcome::QrExpired(_) => bad("二维码已过期", checkin::QR_EXPIRED.into()),
    };
    let (booked, checked_in) = checkin::counts(&mut tx, activity.id, false).await?;
    tx.commit().await?;
    Ok(CheckinPage { session, activity, booked, checked_in, verdict: Some(verdict) })
}
