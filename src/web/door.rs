//! The scan screen, shared by the admin's check-in page and a volunteer's
//! check-in link (`/door/{token}`): the camera, the field for typed codes and
//! USB scanners, the verdict, the counter and the last scans. A volunteer's
//! page is scan-only: one activity, one gate, no search, no export.
//!
//! Every scan carries a nonce (the page's JavaScript makes one per scan; the
//! form without JavaScript gets one from the server each time it renders), so
//! a repeated request is answered with the first answer.

use askama::Template;
use askama_web::WebTemplate;
use axum::{
    Form, Json, Router,
    extract::{Path, State},
    http::header,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use time::OffsetDateTime;

use crate::{
    AppState,
    booking::{
        Activity, activities,
        checkin::{self, Scanner, Verdict},
        checkin_links::{self, CheckinLink},
    },
    error::AppError,
    links, local_time,
};

/// How many scans the screen lists.
const RECENT: i64 = 10;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/door/{token}", get(page).post(form_scan))
        .route("/door/{token}/scan", post(scan))
        .route("/door/{token}/status", get(status))
}

/// A scan in the screen's list.
#[derive(Serialize)]
pub struct ScanRow {
    pub time: String,
    pub good: bool,
    pub headline: String,
    pub detail: String,
}

/// What the screen shows and where its requests go.
pub struct ScanScreen {
    pub activity: Activity,
    pub booked: i64,
    pub checked_in: i64,
    pub verdict: Option<Verdict>,
    /// For the form without JavaScript: this render's scan nonce.
    pub nonce: String,
    /// The CSRF token an admin's scans carry (empty for a volunteer's link: its URL is the secret).
    pub csrf: String,
    pub base: String,
    pub recent: Vec<ScanRow>,
    /// Whether the field takes a student ID: everywhere but a volunteer's gate of a live-QR activity.
    pub takes_student_ids: bool,
}

/// The counter and the last scans: what the screen polls (and a scan returns, with its verdict).
#[derive(Serialize)]
pub struct Status {
    pub checked_in: i64,
    pub booked: i64,
    pub recent: Vec<ScanRow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
}

/// The form's and the JSON endpoint's fields.
#[derive(Deserialize)]
pub struct ScanForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub nonce: String,
}

impl ScanScreen {
    /// The screen for `activity` at `base` (the path its requests go under);
    /// the list shows `list_of`'s scans, or everyone's.
    pub async fn load(
        conn: &mut PgConnection,
        state: &AppState,
        activity: Activity,
        base: String,
        csrf: String,
        list_of: Option<&Scanner>,
        verdict: Option<Verdict>,
    ) -> Result<ScanScreen, AppError> {
        let status = load_status(conn, state, activity.id, list_of).await?;
        let gate = matches!(list_of, Some(Scanner::Gate { .. }));
        Ok(ScanScreen {
            takes_student_ids: !(activity.live_qr && gate),
            activity,
            booked: status.booked,
            checked_in: status.checked_in,
            verdict,
            nonce: links::nonce(),
            csrf,
            base,
            recent: status.recent,
        })
    }

    /// What the field asks for, as the door's rules take it here.
    pub fn prompt(&self) -> &'static str {
        match (self.activity.live_qr, self.takes_student_ids) {
            (false, _) => "扫码枪扫电子票二维码，或输入票号、学号",
            (true, true) => "扫电子票上的动态二维码，或输入学号",
            (true, false) => "扫电子票上的动态二维码（本活动不能按票号或学号检票）",
        }
    }

    /// The field's `maxlength`: what the server reads of a scan.
    pub fn max_chars(&self) -> usize {
        checkin::MAX_SCAN_CHARS
    }
}

pub async fn load_status(
    conn: &mut PgConnection,
    state: &AppState,
    activity_id: i64,
    list_of: Option<&Scanner>,
) -> Result<Status, AppError> {
    let (booked, checked_in) = checkin::counts(conn, activity_id, false).await?;
    let tz = state.config.timezone;
    let recent = checkin::recent_scans(conn, activity_id, list_of, RECENT)
        .await?
        .into_iter()
        .map(|s| ScanRow {
            time: local_time::clock_seconds(s.scanned_at, tz),
            good: s.good,
            headline: s.headline,
            detail: s.detail,
        })
        .collect();
    Ok(Status { checked_in, booked, recent, verdict: None })
}

/// One scan, in the caller's transaction: the verdict (the first answer, for a repeated nonce).
pub async fn scan_in(
    conn: &mut PgConnection,
    state: &AppState,
    activity: &Activity,
    form: &ScanForm,
    by: &Scanner,
) -> Result<Verdict, AppError> {
    checkin::scan(conn, activity, &form.code, &form.nonce, by, &state.secret_key, state.config.timezone).await
}

/// Counts a committed scan for `/metrics`: by activity key and gate (an
/// admin's scan is `admin`, not their username).
pub fn count_scan(activity: &Activity, by: &Scanner, verdict: &Verdict) {
    let gate = match by {
        Scanner::Gate { gate, .. } => gate.as_str(),
        Scanner::Admin(_) => "admin",
    };
    crate::meters::checkin(&activity.key, gate, if verdict.good { "checked_in" } else { "refused" });
}

/// Status JSON changes with every scan anywhere: never cached.
pub fn no_store(json: Status) -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-store")], Json(json))
}

#[derive(Template, WebTemplate)]
#[template(path = "door/scan.html")]
struct DoorPage {
    gate: String,
    screen: ScanScreen,
}

/// The open link a token names: 404 for a token that was never made here,
/// 410 for a link that expired or was revoked.
async fn open_link(
    conn: &mut PgConnection,
    state: &AppState,
    token: &str,
) -> Result<(CheckinLink, Activity), AppError> {
    let id = links::open_door_token(&state.secret_key, token).ok_or(AppError::NotFound)?;
    let link = checkin_links::by_id(conn, id).await?.ok_or(AppError::NotFound)?;
    if link.revoked_at.is_some() {
        return Err(AppError::Gone("这个检票链接已被吊销，请向管理员要新的链接。".into()));
    }
    if !link.is_open(OffsetDateTime::now_utc()) {
        return Err(AppError::Gone("这个检票链接已过期，请向管理员要新的链接。".into()));
    }
    let activity = activities::by_id(conn, link.activity_id).await?.ok_or(AppError::NotFound)?;
    Ok((link, activity))
}

/// Whether a volunteer link's token opens a link that is still open (for the
/// WeChat scanner's signature, which the volunteer page asks for too).
pub(crate) async fn link_is_open(state: &AppState, token: &str) -> bool {
    let Ok(mut conn) = state.pool.acquire().await else { return false };
    open_link(&mut conn, state, token).await.is_ok()
}

fn scanner(link: &CheckinLink) -> Scanner {
    Scanner::Gate { link_id: link.id, gate: link.gate.clone() }
}

async fn page(State(state): State<AppState>, Path(token): Path<String>) -> Result<impl IntoResponse, AppError> {
    door_page(&state, &token, None).await
}

async fn door_page(state: &AppState, token: &str, form: Option<&ScanForm>) -> Result<Response, AppError> {
    // The link is checked in the scan's transaction: a revoked link scans nothing more.
    let mut tx = state.pool.begin().await?;
    let (link, activity) = open_link(&mut tx, state, token).await?;
    let by = scanner(&link);
    let verdict = match form {
        Some(form) => Some(scan_in(&mut tx, state, &activity, form, &by).await?),
        None => None,
    };
    let base = format!("/door/{token}");
    let counted = verdict.clone().map(|v| (activity.clone(), v));
    let screen = ScanScreen::load(&mut tx, state, activity, base, String::new(), Some(&by), verdict).await?;
    tx.commit().await?;
    if let Some((activity, verdict)) = counted {
        count_scan(&activity, &by, &verdict);
    }
    // The page carries its URL's secret and live counts: nothing keeps it.
    Ok(([(header::CACHE_CONTROL, "no-store")], DoorPage { gate: link.gate, screen }).into_response())
}

async fn form_scan(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Form(form): Form<ScanForm>,
) -> Result<impl IntoResponse, AppError> {
    door_page(&state, &token, Some(&form)).await
}

async fn scan(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Form(form): Form<ScanForm>,
) -> Result<impl IntoResponse, AppError> {
    let mut tx = state.pool.begin().await?;
    let (link, activity) = open_link(&mut tx, &state, &token).await?;
    let by = scanner(&link);
    let verdict = scan_in(&mut tx, &state, &activity, &form, &by).await?;
    let mut status = load_status(&mut tx, &state, activity.id, Some(&by)).await?;
    tx.commit().await?;
    count_scan(&activity, &by, &verdict);
    status.verdict = Some(verdict);
    Ok(no_store(status))
}

async fn status(State(state): State<AppState>, Path(token): Path<String>) -> Result<impl IntoResponse, AppError> {
    let mut conn = state.pool.acquire().await?;
    let (link, activity) = open_link(&mut conn, &state, &token).await?;
    Ok(no_store(load_status(&mut conn, &state, activity.id, Some(&scanner(&link))).await?))
}
