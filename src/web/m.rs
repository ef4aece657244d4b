//! The pages opened from the menu bar (`/m/…`): the student is whoever WeChat
//! web authorization proved, remembered in a short-lived session cookie. The
//! openid never comes from the URL. Without `WECHAT_OAUTH=on` these pages say
//! how to get a signed link instead; the signed links work either way.

use askama::Template;
use askama_web::WebTemplate;
use axum::{
    Form, Router,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use serde::Deserialize;
use time::OffsetDateTime;

use super::student::message_page;
use crate::{
    AppState,
    booking::{
        ActivityStatus, TicketStatus, activities,
        lottery::{self, EntryOutcome, Mode},
        students,
        tickets::{self, ActivityRef, BookOutcome, CancelOutcome, TicketRef},
        waiting::{self, JoinOutcome},
    },
    error::AppError,
    identity::{
        oauth::{self, Exchange},
        session,
    },
    links, local_time,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/m/oauth", get(oauth_callback))
        .route("/m/tickets", get(tickets_page))
        .route("/m/tickets/{code}/cancel", post(cancel))
        .route("/m/activities", get(activities_page))
        .route("/m/activities/{id}/book", post(book))
        .route("/m/activities/{id}/wait", post(wait))
}

/// Where an authorization returns to; named in the redirect URI, so nothing
/// but these two pages can be asked for.
#[derive(Clone, Copy)]
enum Page {
    Tickets,
    Activities,
}

impl Page {
    fn name(self) -> &'static str {
        match self {
            Page::Tickets => "tickets",
            Page::Activities => "activities",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Page::Tickets => "/m/tickets",
            Page::Activities => "/m/activities",
        }
    }

    fn named(name: &str) -> Page {
        if name == "activities" { Page::Activities } else { Page::Tickets }
    }
}

/// The student a session cookie proves, and the cookie (the CSRF token's base).
pub(super) struct Student {
    pub(super) openid: String,
    pub(super) session: String,
}

pub(super) fn student(state: &AppState, headers: &HeaderMap) -> Option<Student> {
    let value = session::read(&state.config, headers, session::Cookie::Session)?;
    let openid = session::open(&state.secret_key, &value, OffsetDateTime::now_utc().unix_timestamp())?;
    Some(Student { openid, session: value })
}

pub(super) fn no_store(response: impl IntoResponse) -> Response {
    ([(header::CACHE_CONTROL, "private, no-store")], response).into_response()
}

/// No session: off to WeChat's authorize page, or, without OAuth, a page
/// that says how to get a signed link.
fn sign_in(state: &AppState, page: Page) -> Response {
    let config = &state.config;
    let Some(appid) = config.wechat_appid.as_deref().filter(|_| config.wechat_oauth) else {
        return message_page(
            StatusCode::FORBIDDEN,
            "请从公众号打开",
            "这个页面需要从公众号打开：在公众号里发送「查票」或「抢啥」，点回复里的链接即可。",
            false,
        );
    };
    let nonce = links::nonce();
    let oauth_state = session::oauth_state(&state.secret_key, &nonce);
    let redirect_uri = format!("{}/m/oauth?next={}", config.public_url, page.name());
    let to = oauth::authorize_url(&config.wechat_oauth_base, appid, &redirect_uri, &oauth_state);
    let cookie = session::set_cookie(config, session::Cookie::OauthState, &nonce, 600);
    no_store(([(header::SET_COOKIE, cookie)], Redirect::to(&to)))
}

/// No session on a page reached from 我的票 (the seat chooser): sign in, back to 我的票.
pub(super) fn sign_in_to_tickets(state: &AppState) -> Response {
    sign_in(state, Page::Tickets)
}

#[derive(Deserialize)]
struct CallbackQuery {
    #[serde(default)]
    code: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    next: String,
}

fn authorization_refused() -> Response {
    message_page(
        StatusCode::FORBIDDEN,
        "授权无效",
        "这次微信授权无效或已过期。请回到公众号，从菜单重新打开页面。",
        false,
    )
}

/// WeChat sends the student back with a code: exchange it (once), start the
/// session, and redirect so the code leaves the address bar and history.
async fn oauth_callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Result<Response, AppError> {
    if !state.config.wechat_oauth {
        return Err(AppError::NotFound);
    }
    let page = Page::named(&q.next);
    // The state must be the one this browser's cookie was made for.
    let expected = session::read(&state.config, &headers, session::Cookie::OauthState)
        .map(|nonce| session::oauth_state(&state.secret_key, &nonce))
        .unwrap_or_default();
    let state_ok =
        !expected.is_empty() && bool::from(subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), q.state.as_bytes()));
    if !state_ok || q.code.is_empty() || q.code.len() > 512 {
        return Ok(authorization_refused());
    }
    match oauth::exchange(&state, &q.code, &q.state).await? {
        Exchange::Openid(openid) => {
            let expires = OffsetDateTime::now_utc().unix_timestamp() + session::LIFETIME_SECONDS;
            let value = session::issue(&state.secret_key, &openid, expires);
            let cookie =
                session::set_cookie(&state.config, session::Cookie::Session, &value, session::LIFETIME_SECONDS);
            Ok(no_store(([(header::SET_COOKIE, cookie)], Redirect::to(page.path()))))
        }
        Exchange::Refused(why) => {
            tracing::info!(%why, "WeChat authorization refused");
            Ok(authorization_refused())
        }
        Exchange::Unreachable(why) => {
            tracing::warn!(%why, "WeChat authorization could not be checked");
            Ok(message_page(
                StatusCode::BAD_GATEWAY,
                "暂时联系不上微信",
                "暂时无法向微信确认你的身份。请稍后回到公众号，从菜单重新打开页面。",
                false,
            ))
        }
    }
}

/// The bound student of a session, or the page that asks to bind first (with
/// a bind link signed for the openid WeChat just proved).
pub(super) async fn bound_student(
    state: &AppState,
    conn: &mut sqlx::PgConnection,
    openid: &str,
) -> Result<Result<students::Student, Response>, AppError> {
    Ok(match students::bound(conn, openid).await? {
        Some(student) => Ok(student),
        None => Err(no_store(NotBoundPage { bind_url: crate::bot::bind_url(state, openid) })),
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "student/m_not_bound.html")]
struct NotBoundPage {
    bind_url: String,
}

struct TicketLine {
    code: String,
    path: String,
    activity_name: String,
    start_at: String,
    place: String,
    status_label: &'static str,
    status: TicketStatus,
    cancellable: bool,
    seat: Option<super::student::PlaceView>,
}

#[derive(Template, WebTemplate)]
#[template(path = "student/m_tickets.html")]
struct TicketsPage {
    student_id: String,
    tickets: Vec<TicketLine>,
    /// Lottery registrations, each with the student's own eid.
    entries: Vec<super::lottery::EntryLine>,
    csrf: String,
    notice: Option<String>,
}

#[derive(Deserialize)]
struct TicketsQuery {
    cancelled: Option<String>,
}

async fn tickets_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<TicketsQuery>,
) -> Result<Response, AppError> {
    let Some(me) = student(&state, &headers) else { return Ok(sign_in(&state, Page::Tickets)) };
    let mut conn = state.pool.acquire().await?;
    let student = match bound_student(&state, &mut conn, &me.openid).await? {
        Ok(student) => student,
        Err(page) => return Ok(page),
    };
    let tz = state.config.timezone;
    let tickets = tickets::live_for_student(&mut conn, &student.student_id)
        .await?
        .into_iter()
        .map(|t| TicketLine {
            // The session proves the student here, so the chooser needs no signature.
            seat: super::student::PlaceView::of(&t, tz, || Some(format!("/m/tickets/{}/seat", t.code))),
            path: crate::bot::ticket_url(&state, &me.openid, &t.code)
                .strip_prefix(&state.config.public_url)
                .map(str::to_string)
                .unwrap_or_default(),
            status_label: t.status.label(),
            start_at: local_time::full(t.start_at, tz),
            cancellable: t.cancellable,
            code: t.code,
            activity_name: t.activity_name,
            place: t.place,
            status: t.status,
        })
        .collect();
    let csrf = session::csrf_token(&state.secret_key, &me.session);
    let notice = q.cancelled.map(|_| "已退票，名额已经释放。".to_string());
    let entries = super::lottery::entry_lines(&mut conn, &student.student_id, state.config.timezone).await?;
    Ok(no_store(TicketsPage { student_id: student.student_id, tickets, entries, csrf, notice }))
}

#[derive(Deserialize, Default)]
pub(super) struct CsrfForm {
    #[serde(default)]
    pub(super) csrf: String,
}

/// A form from a `/m` page: the session and its CSRF token, or why not.
pub(super) fn form_student(state: &AppState, headers: &HeaderMap, form: &CsrfForm) -> Result<Student, &'static str> {
    let Some(me) = student(state, headers) else {
        return Err("登录已过期。请回到公众号，从菜单重新打开页面。");
    };
    if !session::csrf_ok(&state.secret_key, &me.session, &form.csrf) {
        return Err("这个表单不是从本页面提交的，或页面已过期。请重新打开页面再试。");
    }
    Ok(me)
}

/// The page for a form [`form_student`] refused.
pub(super) fn form_refused(why: &str) -> Response {
    message_page(StatusCode::FORBIDDEN, "请重新打开页面", why.to_string(), false)
}

/// Cancels from `/m/tickets`: the session's student must hold the ticket now.
async fn cancel(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(code): Path<String>,
    form: Result<Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, AppError> {
    // No form is a form without a token: refused below.
    let form = form.map(|Form(f)| f).unwrap_or_default();
    let me = match form_student(&state, &headers, &form) {
        Ok(me) => me,
        Err(why) => return Ok(form_refused(why)),
    };
    let mut tx = state.pool.begin().await?;
    let Some(ticket) = tickets::by_code(&mut tx, &code).await? else { return Err(AppError::NotFound) };
    let holder = students::bound(&mut tx, &me.openid).await?.filter(|s| s.student_id == ticket.student_id);
    if holder.is_none() {
        return Ok(message_page(StatusCode::FORBIDDEN, "不能退票", "这张票不是你的。", false));
    }
    let outcome = tickets::cancel(
        &mut tx,
        &state.notifier,
        TicketRef::CodeOfStudent { code: &code, student_id: &ticket.student_id },
    )
    .await?;
    tx.commit().await?;
    if matches!(outcome, CancelOutcome::Cancelled(_)) {
        crate::meters::cancelled(crate::meters::Via::Web);
    }
    Ok(match outcome {
        CancelOutcome::Cancelled(_) => Redirect::to("/m/tickets?cancelled=1").into_response(),
        CancelOutcome::TooLate(t) if t.status == TicketStatus::Used => {
            message_page(StatusCode::CONFLICT, "不能退票", "这张票已经检票入场，不能再退了。", false)
        }
        CancelOutcome::TooLate(_) => {
            message_page(StatusCode::CONFLICT, "不能退票", "活动已经开始，不能再退票了。", false)
        }
        CancelOutcome::NothingToCancel | CancelOutcome::NoSuchActivity => {
            message_page(StatusCode::CONFLICT, "不能退票", "这张票已经退掉了。", false)
        }
    })
}

struct ActivityLine {
    id: i64,
    name: String,
    start_at: String,
    place: String,
    state_line: String,
    /// The button: the form's path under `/m/activities/{id}/` and its label.
    action: Option<(&'static str, &'static str)>,
}

#[derive(Template, WebTemplate)]
#[template(path = "student/m_activities.html")]
struct ActivitiesPage {
    student_id: String,
    activities: Vec<ActivityLine>,
    csrf: String,
}

/// What can be booked now or soon, each with its 抢票 button.
async fn activities_page(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, AppError> {
    let Some(me) = student(&state, &headers) else { return Ok(sign_in(&state, Page::Activities)) };
    let mut conn = state.pool.acquire().await?;
    let student = match bound_student(&state, &mut conn, &me.openid).await? {
        Ok(student) => student,
        Err(page) => return Ok(page),
    };
    let tz = state.config.timezone;
    let now = OffsetDateTime::now_utc();
    let queued = waiting::positions(&mut conn, &student.student_id).await?;
    let mut lines = Vec::new();
    for a in activities::bookable(&mut conn).await? {
        if a.status != ActivityStatus::Published {
            continue;
        }
        let open = a.book_start <= now && now < a.book_end;
        let (state_line, action) = if a.mode == Mode::Lottery {
            let entered = lottery::entry_of(&mut conn, a.id, &student.student_id).await?.is_some();
            let close = local_time::short(a.book_end, tz);
            if now < a.book_start {
                (format!("抽签活动，{} 开始报名", local_time::short(a.book_start, tz)), None)
            } else if entered {
                (format!("已报名，{close} 截止后公开抽签"), None)
            } else {
                (format!("抽签报名中，{} 个名额，{close} 截止", a.capacity), Some(("book", "报名抽签")))
            }
        } else if now < a.book_start {
            (format!("{} 开抢", local_time::short(a.book_start, tz)), None)
        } else if let Some(w) = queued.iter().find(|w| w.activity_key == a.key) {
            (format!("票已抢完，你在候补第 {} 位", w.position), None)
        } else if a.remaining == 0 {
            ("票已抢完，可以候补：有人退票按顺序补给候补的同学".to_string(), open.then_some(("wait", "候补")))
        } else {
            (format!("正在抢票，剩余 {} 张", a.remaining), open.then_some(("book", "抢票")))
        };
        lines.push(ActivityLine {
            id: a.id,
            start_at: local_time::full(a.start_at, tz),
            state_line,
            action,
            name: a.name,
            place: a.place,
        });
    }
    let activities = lines;
    let csrf = session::csrf_token(&state.secret_key, &me.session);
    Ok(no_store(ActivitiesPage { student_id: student.student_id, activities, csrf }))
}

/// The 抢票 button: the same rules and the same kind of transaction as the
/// WeChat command. A second tap finds the ticket the first one booked.
async fn book(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, AppError> {
    let form = form.map(|Form(f)| f).unwrap_or_default();
    let me = match form_student(&state, &headers, &form) {
        Ok(me) => me,
        Err(why) => return Ok(form_refused(why)),
    };
    let id: i64 = id.parse().map_err(|_| AppError::NotFound)?;
    let mut tx = state.pool.begin().await?;
    let outcome = tickets::book(&mut tx, &ActivityRef::Id(id), &me.openid, state.config.no_show.as_ref()).await?;
    tx.commit().await?;
    if matches!(outcome, BookOutcome::Booked(_)) {
        crate::meters::booked(crate::meters::Via::Web);
    }
    state.refusals.note(&ActivityRef::Id(id), &outcome);
    let to_ticket = |code: &str| {
        let url = crate::bot::ticket_url(&state, &me.openid, code);
        let path = url.strip_prefix(&state.config.public_url).unwrap_or(&url).to_string();
        Redirect::to(&path).into_response()
    };
    let sorry = |why: String| message_page(StatusCode::CONFLICT, "没有抢到", why, false);
    Ok(match outcome {
        BookOutcome::Booked(ticket) | BookOutcome::AlreadyHolds(ticket) => to_ticket(&ticket.code),
        BookOutcome::NoSuchActivity => return Err(AppError::NotFound),
        BookOutcome::NotOpenYet { opens_at } => {
            sorry(format!("还没开抢，{} 开抢。", local_time::short(opens_at, state.config.timezone)))
        }
        BookOutcome::Closed => sorry("抢票已经结束了。".into()),
        BookOutcome::Paused { until } => {
            sorry(crate::bot::replies::paused(&local_time::short(until, state.config.timezone)))
        }
        BookOutcome::SoldOut { key } => {
            sorry(format!("票已经抢完了。可以在公众号发送「候补 {key}」排队，有人退票时按顺序补给候补的同学。"))
        }
        BookOutcome::NotBound => no_store(NotBoundPage { bind_url: crate::bot::bind_url(&state, &me.openid) }),
        BookOutcome::Lottery(EntryOutcome::Entered { activity_name, key, eid, secret, close_at }) => {
            let close = local_time::short(close_at, state.config.timezone);
            message_page(
                StatusCode::OK,
                "已报名",
                crate::bot::replies::lottery_entered(&activity_name, &key, &close, &eid, &secret),
                true,
            )
        }
        BookOutcome::Lottery(EntryOutcome::AlreadyEntered { activity_name, eid, secret, close_at }) => {
            let close = local_time::short(close_at, state.config.timezone);
            let said = crate::bot::replies::lottery_already_entered(&activity_name, &close, &eid, &secret);
            message_page(StatusCode::OK, "已报名", said, true)
        }
        BookOutcome::Lottery(EntryOutcome::Closed) => sorry(crate::bot::replies::LOTTERY_CLOSED.into()),
        BookOutcome::Lottery(EntryOutcome::RealStudentsOnly { activity_name }) => {
            sorry(crate::bot::replies::lottery_real_students_only(&activity_name))
        }
    })
}

/// The 候补 button of a sold-out activity: the same rules as `候补 <key>`.
async fn wait(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, AppError> {
    use crate::bot::replies;
    let form = form.map(|Form(f)| f).unwrap_or_default();
    let me = match form_student(&state, &headers, &form) {
        Ok(me) => me,
        Err(why) => return Ok(form_refused(why)),
    };
    let id: i64 = id.parse().map_err(|_| AppError::NotFound)?;
    let tz = state.config.timezone;
    let mut tx = state.pool.begin().await?;
    let outcome = waiting::join(&mut tx, &ActivityRef::Id(id), &me.openid, state.config.no_show.as_ref()).await?;
    tx.commit().await?;
    let sorry = |why: String| message_page(StatusCode::CONFLICT, "没有加入候补", why, false);
    Ok(match outcome {
        JoinOutcome::Joined { activity_name, position } => {
            message_page(StatusCode::OK, "已加入候补", replies::waiting_joined(&activity_name, position), true)
        }
        JoinOutcome::AlreadyWaiting { activity_name, position } => {
            message_page(StatusCode::OK, "已在候补中", replies::already_waiting(&activity_name, position), true)
        }
        JoinOutcome::HoldsTicket => sorry(replies::WAIT_HOLDS_TICKET.into()),
        JoinOutcome::NotSoldOut { .. } => sorry("这个活动还有票，不用候补，直接抢票。".into()),
        JoinOutcome::NotOpenYet { opens_at } => sorry(replies::waiting_not_open(&local_time::short(opens_at, tz))),
        JoinOutcome::Closed => sorry(replies::WAIT_CLOSED.into()),
        JoinOutcome::NoSuchActivity => return Err(AppError::NotFound),
        JoinOutcome::NotBound => no_store(NotBoundPage { bind_url: crate::bot::bind_url(&state, &me.openid) }),
        JoinOutcome::Paused { until } => sorry(replies::paused(&local_time::short(until, tz))),
        JoinOutcome::Lottery { key } => sorry(replies::waiting_lottery(&key)),
    })
}
