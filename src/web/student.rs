//! Student pages (SPEC §4): phone-sized, Chinese, no JavaScript. The bind page
//! and "my tickets" open from signed links; a ticket page opens by its code,
//! and offers the cancel button only when its link was signed for the WeChat
//! user holding the ticket. The QR code on it is a check-in credential
//! (`/c/{credential}`), which opens nothing but a "show this at the door" page.

use askama::Template;
use askama_web::WebTemplate;
use axum::{
    Form, Router,
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use serde::Deserialize;

use crate::booking::{ActivityStatus, TicketStatus};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{
    AppState,
    booking::{
        Activity, activities, images,
        students::{self, BindOutcome, MAX_NAME_CHARS, MAX_STUDENT_ID_CHARS},
        tickets::{self, CancelOutcome, Ticket, TicketRef},
    },
    config::StudentVerify,
    error::AppError,
    links::{self, LinkError, Purpose},
    local_time,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/bind", get(bind_page).post(bind_submit))
        .route("/bind/cas", get(super::cas_bind::callback))
        .route("/activities/{id}", get(activity_page))
        .route("/tickets/{code}", get(ticket_page))
        .route("/tickets/{code}/cancel", post(cancel_ticket))
        .route("/tickets/{code}/live-qr", get(live_qr))
        .route("/my/tickets", get(my_tickets_page))
        .route("/c/{credential}", get(credential_page))
        .route("/images/{id}", get(image))
}

/// The parts of a signed link, carried from the link into the bind form.
#[derive(Deserialize, Clone, Default)]
pub(super) struct LinkParts {
    #[serde(default)]
    pub(super) o: String,
    #[serde(default)]
    pub(super) e: String,
    #[serde(default)]
    pub(super) s: String,
    /// A bind link's one-time nonce.
    #[serde(default)]
    pub(super) n: String,
}

impl LinkParts {
    pub(super) fn signed(state: &AppState, purpose: Purpose, openid: &str, subject: &str) -> LinkParts {
        let expires = OffsetDateTime::now_utc().unix_timestamp() + purpose.lifetime();
        let (o, e, s) = links::sign_parts(&state.secret_key, purpose, openid, subject, expires);
        LinkParts { o, e, s, n: String::new() }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "student/message.html")]
struct MessagePage {
    title: String,
    message: String,
    ok: bool,
}

pub(super) fn message_page(status: StatusCode, title: &str, message: impl Into<String>, ok: bool) -> Response {
    (status, MessagePage { title: title.into(), message: message.into(), ok }).into_response()
}

/// Opens a signed link about `subject`: the openid it was made for.
pub(super) fn open_link(
    state: &AppState,
    purpose: Purpose,
    subject: &str,
    link: &LinkParts,
) -> Result<String, LinkError> {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    links::verify(&state.secret_key, purpose, subject, (&link.o, &link.e, &link.s), now)
}

/// Binds `openid` to a student ID the caller has verified, spending the bind
/// link `link` in the same transaction — only when the bind succeeds, so a
/// typo (or an ID taken by someone else) can be corrected with the same link.
/// `None`: the link has bound once already.
pub(super) async fn bind_with_link(
    state: &AppState,
    link: &LinkParts,
    openid: &str,
    student_id: &str,
    name: Option<&str>,
) -> Result<Option<BindOutcome>, AppError> {
    let mut tx = state.pool.begin().await?;
    if !students::use_bind_link(&mut tx, &link.n, link.e.parse().unwrap_or_default()).await? {
        return Ok(None);
    }
    let outcome = students::bind(&mut tx, &state.notifier, openid, student_id, name).await?;
    if matches!(outcome, BindOutcome::Bound(_)) {
        tx.commit().await?;
    } else {
        tx.rollback().await?;
    }
    Ok(Some(outcome))
}

/// The page for a bind link that has bound once already.
pub(super) fn bind_link_used() -> Response {
    message_page(
        StatusCode::GONE,
        "链接已用过",
        "这个绑定链接已经用过了，每个链接只能绑定一次。如需重新绑定，请在公众号里发送「绑定」获取新链接。",
        false,
    )
}

/// The page that says why a signed link will not open.
pub(super) fn link_refused(e: LinkError) -> Response {
    match e {
        LinkError::Tampered => message_page(
            StatusCode::FORBIDDEN,
            "链接无效",
            "这个链接不完整或被改动过。请回到公众号重新获取链接。",
            false,
        ),
        LinkError::Expired => message_page(
            StatusCode::GONE,
            "链接已过期",
            "这个链接已经过期了。请回到公众号重新发送「绑定」或「查票」获取新链接。",
            false,
        ),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "student/bind.html")]
struct BindPage {
    link: LinkParts,
    roster: bool,
    student_id: String,
    name: String,
    error: Option<String>,
}

async fn bind_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(link): Query<LinkParts>,
) -> Result<Response, AppError> {
    let openid = match open_link(&state, Purpose::Bind, &link.n, &link) {
        Ok(openid) => openid,
        Err(e) => return Ok(link_refused(e)),
    };
    let mut conn = state.pool.acquire().await?;
    if let Some(student) = students::bound(&mut conn, &openid).await? {
        return Ok(already_bound_page(&student.student_id));
    }
    if students::bind_link_used(&mut conn, &link.n).await? {
        return Ok(bind_link_used());
    }
    if state.config.student_verify == StudentVerify::Cas {
        return Ok(super::cas_bind::to_login(&state, &headers, &link));
    }
    let roster = state.config.student_verify == StudentVerify::Roster;
    Ok(BindPage { link, roster, student_id: String::new(), name: String::new(), error: None }.into_response())
}

pub(super) fn already_bound_page(student_id: &str) -> Response {
    message_page(
        StatusCode::OK,
        "已绑定",
        format!("你已绑定学号 {student_id}。如需更换，请在公众号里发送「解绑」后重新绑定。"),
        true,
    )
}

#[derive(Deserialize)]
struct BindForm {
    #[serde(flatten)]
    link: LinkParts,
    #[serde(default)]
    student_id: String,
    #[serde(default)]
    name: String,
}

async fn bind_submit(State(state): State<AppState>, Form(form): Form<BindForm>) -> Result<Response, AppError> {
    if state.config.student_verify == StudentVerify::Cas {
        return Ok(super::cas_bind::typed_id_refused());
    }
    let openid = match open_link(&state, Purpose::Bind, &form.link.n, &form.link) {
        Ok(openid) => openid,
        Err(e) => return Ok(link_refused(e)),
    };
    let roster = state.config.student_verify == StudentVerify::Roster;
    let student_id = form.student_id.trim().to_string();
    let name = form.name.trim().to_string();
    if student_id.chars().count() > MAX_STUDENT_ID_CHARS || name.chars().count() > MAX_NAME_CHARS {
        // Nothing bound, and the over-long text not sent back.
        let error = format!("学号最多 {MAX_STUDENT_ID_CHARS} 个字符，姓名最多 {MAX_NAME_CHARS} 个字。");
        let page = BindPage {
            link: form.link.clone(),
            roster,
            student_id: String::new(),
            name: String::new(),
            error: Some(error),
        };
        return Ok((StatusCode::BAD_REQUEST, page).into_response());
    }
    let refuse = |error: &str| {
        let page = BindPage {
            link: form.link.clone(),
            roster,
            student_id: student_id.clone(),
            name: name.clone(),
            error: Some(error.to_string()),
        };
        Ok((StatusCode::BAD_REQUEST, page).into_response())
    };
    if !state.config.student_id_pattern.is_match(&student_id) {
        return refuse("学号格式不正确，请检查后重新输入。");
    }
    let name = if roster {
        match students::roster_name(&mut *state.pool.acquire().await?, &student_id).await? {
            None => return refuse("名单里没有这个学号。如有疑问请联系活动组织者。"),
            Some(listed) if listed != name => return refuse("学号和姓名不匹配，请检查后重新输入。"),
            Some(listed) => Some(listed),
        }
    } else {
        Some(name.clone()).filter(|n| !n.is_empty())
    };
    let Some(outcome) = bind_with_link(&state, &form.link, &openid, &student_id, name.as_deref()).await? else {
        return Ok(bind_link_used());
    };
    Ok(match outcome {
        BindOutcome::Bound(student) => message_page(
            StatusCode::OK,
            "绑定成功",
            format!("已绑定学号 {}。回到公众号，发送「抢啥」看看有什么活动吧！", student.student_id),
            true,
        ),
        BindOutcome::AlreadyBound(student) => already_bound_page(&student.student_id),
        BindOutcome::TakenByAnother => {
            return Ok((
                StatusCode::CONFLICT,
                BindPage {
                    link: form.link.clone(),
                    roster,
                    student_id: student_id.clone(),
                    name: name.unwrap_or_default(),
                    error: Some("这个学号已被另一个微信账号绑定。如有疑问请联系活动组织者。".into()),
                },
            )
                .into_response());
        }
    })
}

/// An activity as its page shows it.
struct ActivityView {
    activity: Activity,
    poster_url: Option<String>,
    book_start: String,
    book_end: String,
    start_at: String,
    end_at: String,
    /// What a student can do now, in one line.
    booking_state: String,
    /// Sold out while booking is open: the waiting list takes students.
    waiting_open: bool,
}

impl ActivityView {
    fn new(activity: Activity, tz: &time_tz::Tz) -> ActivityView {
        let now = OffsetDateTime::now_utc();
        let waiting_open = activity.status == ActivityStatus::Published
            && activity.book_start <= now
            && now < activity.book_end
            && activity.remaining == 0;
        let booking_state = if activity.status == ActivityStatus::Archived || now >= activity.book_end {
            "抢票已结束".to_string()
        } else if now < activity.book_start {
            format!("{} 开抢", local_time::short(activity.book_start, tz))
        } else if activity.remaining == 0 {
            format!("票已抢完，可以候补：发送「候补 {}」", activity.key)
        } else {
            format!("正在抢票，剩余 {} 张", activity.remaining)
        };
        ActivityView {
            poster_url: activity.poster_id.map(|id| format!("/images/{id}")),
            book_start: local_time::full(activity.book_start, tz),
            book_end: local_time::full(activity.book_end, tz),
            start_at: local_time::full(activity.start_at, tz),
            end_at: local_time::full(activity.end_at, tz),
            booking_state,
            waiting_open,
            activity,
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "student/activity.html")]
struct ActivityPage {
    view: ActivityView,
    /// A lottery activity's draw, as its own page shows it.
    lottery: Option<super::lottery::LotteryView>,
}

async fn activity_page(State(state): State<AppState>, Path(id): Path<String>) -> Result<ActivityPage, AppError> {
    let id: i64 = id.parse().map_err(|_| AppError::NotFound)?;
    let mut conn = state.pool.acquire().await?;
    let activity = activities::by_id(&mut conn, id).await?;
    // Drafts are not public yet.
    let activity = activity.filter(|a| a.status != ActivityStatus::Draft).ok_or(AppError::NotFound)?;
    let lottery = super::lottery::view(&mut conn, &activity, state.config.timezone).await?;
    let mut view = ActivityView::new(activity, state.config.timezone);
    if let Some(l) = &lottery {
        view.booking_state = l.stage.clone();
        view.waiting_open = false;
    }
    Ok(ActivityPage { view, lottery })
}

/// A ticket's place as a page shows it. Standing room (and a ticket without
/// a live place: cancelled, or checked in unplaced) has none to show.
pub(super) struct PlaceView {
    /// `座位`, or `区域` in zone mode.
    pub(super) term: &'static str,
    /// The place, once chosen or assigned.
    pub(super) label: Option<String>,
    /// No place yet and choosing is open: until when, in local time.
    pub(super) deadline: Option<String>,
    /// The chooser, for a viewer proved to hold the ticket.
    pub(super) chooser: Option<String>,
}

impl PlaceView {
    /// `chooser` makes the viewer's chooser link; it is asked for only while choosing is open.
    pub(super) fn of(ticket: &Ticket, tz: &time_tz::Tz, chooser: impl FnOnce() -> Option<String>) -> Option<PlaceView> {
        let term = crate::bot::replies::place_term(ticket.seating);
        if ticket.status == TicketStatus::Cancelled {
            return None;
        }
        if let Some(place) = ticket.held_place() {
            return Some(PlaceView { term, label: Some(place.label()), deadline: None, chooser: None });
        }
        if !ticket.needs_place() {
            return None;
        }
        let open = ticket.can_choose();
        Some(PlaceView {
            term,
            label: None,
            deadline: open.then(|| local_time::full(ticket.seat_deadline, tz)),
            chooser: if open { chooser() } else { None },
        })
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "student/ticket.html")]
struct TicketPage {
    /// The cancel form's token: only on a page opened by the ticket's holder.
    cancel: Option<LinkParts>,
    ticket: Ticket,
    status_label: &'static str,
    start_at: String,
    place: String,
    booked_at: String,
    checked_in_at: Option<String>,
    qr_svg: String,
    /// The activity wants a live QR: only its holder's page shows one.
    live_qr: bool,
    /// Where the holder's page fetches the next live QR.
    live_refresh: Option<String>,
    notice: Option<String>,
    /// `/m/tickets` can cancel: WeChat web authorization is on.
    oauth: bool,
    /// The no-show rule is on: a valid ticket warns its holder.
    no_show_warning: Option<&'static str>,
    /// A zone or seat activity's ticket: its place, or how to choose one.
    seat: Option<PlaceView>,
    /// The organizer's messages to the activity's ticket holders: (when, text), newest first.
    messages: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct TicketQuery {
    cancelled: Option<String>,
    #[serde(flatten)]
    link: LinkParts,
}

/// The WeChat user a signed link proves, if that user is bound to the student
/// ID holding `ticket` now (an unbound or rebound account cancels nothing).
pub(super) async fn holder_of(
    state: &AppState,
    conn: &mut sqlx::PgConnection,
    purpose: Purpose,
    link: &LinkParts,
    ticket: &Ticket,
) -> Result<Option<String>, AppError> {
    let Ok(openid) = open_link(state, purpose, &ticket.code, link) else { return Ok(None) };
    let bound = students::bound(conn, &openid).await?;
    Ok(bound.filter(|s| s.student_id == ticket.student_id).map(|_| openid))
}

async fn ticket_page(
    State(state): State<AppState>,
    Path(code): Path<String>,
    Query(q): Query<TicketQuery>,
) -> Result<Response, AppError> {
    let mut conn = state.pool.acquire().await?;
    let ticket = tickets::by_code(&mut conn, &code).await?.ok_or(AppError::NotFound)?;
    let tz = state.config.timezone;
    let holder = holder_of(&state, &mut conn, Purpose::Ticket, &q.link, &ticket).await?;
    let cancel = match &holder {
        Some(openid) if ticket.cancellable => Some(LinkParts::signed(&state, Purpose::Cancel, openid, &ticket.code)),
        _ => None,
    };
    let live_qr = activities::by_id(&mut conn, ticket.activity_id).await?.is_some_and(|a| a.live_qr);
    // Addressed to the holders of live tickets: a cancelled ticket's page no longer shows them.
    let messages = match ticket.status {
        TicketStatus::Cancelled => Vec::new(),
        _ => crate::notify::holder_messages::for_ticket_page(&mut conn, ticket.activity_id)
            .await?
            .into_iter()
            .map(|(at, body)| (local_time::full(at, tz), body))
            .collect(),
    };
    drop(conn);
    // The QR code is the check-in credential, not the ticket code: a photo of
    // it gets someone through the door once, and opens nothing else. A live
    // one is shown to the holder only: the ticket code alone is not enough.
    let (qr_svg, live_refresh) = match (live_qr, &holder) {
        (false, _) => (qr_svg(&state, &links::checkin_credential(&state.secret_key, ticket.id))?, None),
        (true, Some(_)) => {
            let refresh = format!("/tickets/{}/live-qr?o={}&e={}&s={}", ticket.code, q.link.o, q.link.e, q.link.s);
            (qr_svg(&state, &live_credential_now(&state, ticket.id))?, Some(refresh))
        }
        // A guest without a student ID has no WeChat link to prove them: the
        // link the organizer forwarded (its 128-bit code) is theirs, so it
        // shows the live code, which still keeps a screenshot from getting in.
        (true, None) if tickets::is_guest_id(&ticket.student_id) => {
            let refresh = format!("/tickets/{}/live-qr", ticket.code);
            (qr_svg(&state, &live_credential_now(&state, ticket.id))?, Some(refresh))
        }
        (true, None) => (String::new(), None),
    };
    let notice = q.cancelled.map(|_| "已退票，名额已经释放。".to_string());
    // The holder's chooser: the same kind of link as this page's, signed
    // afresh for the openid it proved (the chooser checks it as this page did).
    let seat = PlaceView::of(&ticket, tz, || {
        let url = crate::bot::seat_url(&state, holder.as_deref()?, &ticket.code);
        url.strip_prefix(&state.config.public_url).map(str::to_string)
    });
    let page = TicketPage {
        seat,
        messages,
        status_label: ticket.status.label(),
        start_at: local_time::full(ticket.start_at, tz),
        place: ticket.place.clone(),
        booked_at: local_time::full(ticket.booked_at, tz),
        checked_in_at: ticket.checked_in_at.map(|t| local_time::full(t, tz)),
        qr_svg,
        live_qr,
        live_refresh,
        notice,
        cancel,
        ticket,
        oauth: state.config.wechat_oauth,
        no_show_warning: state.config.no_show.map(|_| crate::bot::replies::NO_SHOW_WARNING),
    };
    // The page is the ticket: no caching by shared proxies.
    Ok(([(header::CACHE_CONTROL, "private, no-store")], page).into_response())
}

/// The QR code of a check-in credential URL, as inline SVG (presentation
/// attributes only, no `style=`, so the page's CSP holds).
fn qr_svg(state: &AppState, credential: &str) -> Result<String, AppError> {
    let url = format!("{}/c/{credential}", state.config.public_url);
    Ok(qrcode::QrCode::new(url.as_bytes())
        .map_err(|e| AppError::Internal(format!("QR code: {e}")))?
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(240, 240)
        .build())
}

fn live_credential_now(state: &AppState, ticket_id: i64) -> String {
    let step = links::live_step(OffsetDateTime::now_utc().unix_timestamp());
    links::live_credential(&state.secret_key, ticket_id, step)
}

/// The next live QR for its holder's ticket page (`static/live-qr.js`). A
/// ticket no longer valid, or an activity without a live QR, has none.
async fn live_qr(
    State(state): State<AppState>,
    Path(code): Path<String>,
    Query(link): Query<LinkParts>,
) -> Result<Response, AppError> {
    let mut conn = state.pool.acquire().await?;
    let ticket = tickets::by_code(&mut conn, &code).await?.ok_or(AppError::NotFound)?;
    // A guest without a student ID holds the forwarded link itself (see the ticket page).
    if !tickets::is_guest_id(&ticket.student_id)
        && holder_of(&state, &mut conn, Purpose::Ticket, &link, &ticket).await?.is_none()
    {
        return Err(AppError::Forbidden("请从公众号发给你的链接打开电子票。".into()));
    }
    let live = activities::by_id(&mut conn, ticket.activity_id).await?.is_some_and(|a| a.live_qr);
    if !live || ticket.status != TicketStatus::Valid {
        return Err(AppError::NotFound);
    }
    let svg = qr_svg(&state, &live_credential_now(&state, ticket.id))?;
    Ok(([(header::CONTENT_TYPE, "image/svg+xml"), (header::CACHE_CONTROL, "private, no-store")], svg).into_response())
}

/// Cancels from the ticket page's button. The code alone proves nothing (it
/// is on the page, and anyone may have seen the page): the form must carry a
/// token signed for the WeChat user who is bound to the ticket's student ID.
async fn cancel_ticket(
    State(state): State<AppState>,
    Path(code): Path<String>,
    token: Result<Form<LinkParts>, axum::extract::rejection::FormRejection>,
) -> Result<Response, AppError> {
    // No form at all is as good as a form without a token: refused below.
    let token = token.map(|Form(t)| t).unwrap_or_default();
    let mut tx = state.pool.begin().await?;
    let Some(ticket) = tickets::by_code(&mut tx, &code).await? else { return Err(AppError::NotFound) };
    let Some(openid) = holder_of(&state, &mut tx, Purpose::Cancel, &token, &ticket).await? else {
        return Ok(message_page(
            StatusCode::FORBIDDEN,
            "不能在这里退票",
            format!(
                "退票需要确认是你本人：请在公众号里发送「退票 {}」，或从公众号发给你的链接打开电子票再退。",
                ticket.activity_key
            ),
            false,
        ));
    };
    let which = TicketRef::CodeOfStudent { code: &code, student_id: &ticket.student_id };
    let outcome = tickets::cancel(&mut tx, &state.notifier, which).await?;
    tx.commit().await?;
    if matches!(outcome, CancelOutcome::Cancelled(_)) {
        crate::meters::cancelled(crate::meters::Via::Web);
    }
    Ok(match outcome {
        CancelOutcome::Cancelled(t) => {
            // Back to the page as its holder saw it.
            let query = crate::bot::ticket_url(&state, &openid, &t.code);
            let path = query.strip_prefix(&state.config.public_url).unwrap_or(&query).to_string();
            Redirect::to(&format!("{path}&cancelled=1")).into_response()
        }
        CancelOutcome::TooLate(t) if t.status == TicketStatus::Used => {
            message_page(StatusCode::CONFLICT, "不能退票", "这张票已经检票入场，不能再退了。", false)
        }
        CancelOutcome::TooLate(_) => {
            message_page(StatusCode::CONFLICT, "不能退票", "活动已经开始，不能再退票了。", false)
        }
        CancelOutcome::NothingToCancel | CancelOutcome::NoSuchActivity => {
            match tickets::by_code(&mut *state.pool.acquire().await?, &code).await? {
                Some(_) => message_page(StatusCode::CONFLICT, "不能退票", "这张票已经退掉了。", false),
                None => return Err(AppError::NotFound),
            }
        }
    })
}

struct TicketLine {
    path: String,
    activity_name: String,
    start_at: String,
    place: String,
    status_label: &'static str,
    status: TicketStatus,
    seat: Option<PlaceView>,
}

#[derive(Template, WebTemplate)]
#[template(path = "student/my_tickets.html")]
struct MyTicketsPage {
    student_id: String,
    tickets: Vec<TicketLine>,
    /// Lottery registrations, each with the student's own eid.
    entries: Vec<super::lottery::EntryLine>,
}

async fn my_tickets_page(State(state): State<AppState>, Query(link): Query<LinkParts>) -> Result<Response, AppError> {
    let openid = match open_link(&state, Purpose::MyTickets, "", &link) {
        Ok(openid) => openid,
        Err(e) => return Ok(link_refused(e)),
    };
    let mut conn = state.pool.acquire().await?;
    let Some(student) = students::bound(&mut conn, &openid).await? else {
        return Ok(message_page(
            StatusCode::OK,
            "还没有绑定学号",
            "你还没有绑定学号。请在公众号里发送「绑定」。",
            false,
        ));
    };
    let tz = state.config.timezone;
    let tickets = tickets::live_for_student(&mut conn, &student.student_id)
        .await?
        .into_iter()
        .map(|t| TicketLine {
            // Signed for this student, as the ticket links are.
            seat: PlaceView::of(&t, tz, || {
                let url = crate::bot::seat_url(&state, &openid, &t.code);
                url.strip_prefix(&state.config.public_url).map(str::to_string)
            }),
            status_label: t.status.label(),
            start_at: local_time::full(t.start_at, tz),
            // Each ticket opened from here is opened by its holder.
            path: crate::bot::ticket_url(&state, &openid, &t.code)
                .strip_prefix(&state.config.public_url)
                .map(str::to_string)
                .unwrap_or_default(),
            activity_name: t.activity_name,
            place: t.place,
            status: t.status,
        })
        .collect();
    let entries = super::lottery::entry_lines(&mut conn, &student.student_id, tz).await?;
    Ok(MyTicketsPage { student_id: student.student_id, tickets, entries }.into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "student/credential.html")]
struct CredentialPage {
    activity_name: String,
    start_at: String,
    place: String,
}

/// What a phone shows when someone scans a ticket's QR code with WeChat: it is
/// for the door. No student ID, no name, no cancel button; a forged or
/// mistyped credential is a 404.
async fn credential_page(State(state): State<AppState>, Path(credential): Path<String>) -> Result<Response, AppError> {
    let id = links::open_checkin_credential(&state.secret_key, &credential)
        .or_else(|| links::open_live_credential(&state.secret_key, &credential).map(|(id, _)| id))
        .ok_or(AppError::NotFound)?;
    let ticket = tickets::by_id(&mut *state.pool.acquire().await?, id).await?.ok_or(AppError::NotFound)?;
    let tz = state.config.timezone;
    let page = CredentialPage {
        activity_name: ticket.activity_name,
        start_at: local_time::full(ticket.start_at, tz),
        place: ticket.place,
    };
    Ok(([(header::CACHE_CONTROL, "private, no-store")], page).into_response())
}

/// Posters, from the database so every instance serves the same bytes. An
/// image never changes under its id, so it may be cached for good.
async fn image(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, AppError> {
    let id: Uuid = id.parse().map_err(|_| AppError::NotFound)?;
    let (content_type, bytes) = images::get(&mut *state.pool.acquire().await?, id).await?.ok_or(AppError::NotFound)?;
    let content_type = HeaderValue::from_str(&content_type).map_err(|e| AppError::Internal(e.to_string()))?;
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable")),
        ],
        bytes,
    )
        .into_response())
}
