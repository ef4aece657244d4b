//! The seat chooser (README "Seats"): a student picks a zone or a seat for
//! their ticket. It opens for the ticket's holder only — from the ticket
//! link the account sent them (signed for their openid) or from `/m/` web
//! authorization — never from the ticket's code or QR code alone, the same
//! rule as cancelling. No JavaScript: the map is a table of radio buttons
//! drawn on the server, and a seat taken a moment earlier redraws it with
//! "这个座位刚被选走".

use askama::Template;
use askama_web::WebTemplate;
use axum::{
    Form, Router,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Redirect, Response},
    routing::get,
};
use serde::Deserialize;

use super::{
    m,
    seat_map::{self, Pick},
    student::{self, LinkParts, link_refused, message_page},
};
use crate::{
    AppState,
    booking::seats::{self, Choice, ChooseOutcome, Seating, Situation, map},
    error::AppError,
    identity::session,
    links::Purpose,
    local_time,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/tickets/{code}/seat", get(linked_page).post(linked_choose))
        .route("/m/tickets/{code}/seat", get(session_page).post(session_choose))
}

/// How the page's form proves it came from the holder's page.
enum FormProof {
    /// Opened from a signed link: a token signed for the openid and the ticket.
    Link(LinkParts),
    /// Opened under `/m/`: the session's CSRF token.
    Session(String),
}

/// What the page offers.
enum Stage {
    /// The ticket has its place.
    Placed(String),
    /// Choices closed before this ticket chose: the sweep gives it a place.
    Closed,
    /// Zone mode: each zone with the places it has left.
    Zones(Vec<(String, i64)>),
    /// Seat mode: the drawn map and the counts per zone.
    Seats { map: String, zones: Vec<map::ZoneCount> },
}

#[derive(Template, WebTemplate)]
#[template(path = "student/seat_chooser.html")]
struct ChooserPage {
    activity_name: String,
    student_id: String,
    deadline: String,
    /// What happened to the last post: (text, good news).
    notice: Option<(String, bool)>,
    stage: Stage,
    proof: FormProof,
    action: String,
    /// Back to the ticket (signed for the holder, or 我的票).
    ticket_path: String,
}

#[derive(Deserialize, Default)]
struct Posted {
    #[serde(default)]
    zone: String,
    #[serde(default)]
    seat: String,
    #[serde(default)]
    o: String,
    #[serde(default)]
    e: String,
    #[serde(default)]
    s: String,
    #[serde(default)]
    csrf: String,
}

#[derive(Deserialize)]
struct PageQuery {
    #[serde(flatten)]
    link: LinkParts,
    /// Back from a successful choice.
    #[serde(default)]
    done: Option<String>,
}

/// The student an openid is bound to, if that student holds ticket `code`.
async fn holder(state: &AppState, code: &str, openid: &str) -> Result<Option<String>, AppError> {
    seats::holder(&mut *state.pool.acquire().await?, code, openid).await
}

fn not_yours() -> Response {
    message_page(
        StatusCode::FORBIDDEN,
        "不能选座",
        "这张票不是你的，或已经退掉了。请在公众号里发送「选座 活动代码」获取你自己的选座链接。",
        false,
    )
}

async fn linked_page(
    State(state): State<AppState>,
    Path(code): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, AppError> {
    let openid = match student::open_link(&state, Purpose::Ticket, &code, &q.link) {
        Ok(openid) => openid,
        Err(e) => return Ok(link_refused(e)),
    };
    let Some(student_id) = holder(&state, &code, &openid).await? else { return Ok(not_yours()) };
    let proof = FormProof::Link(LinkParts::signed(&state, Purpose::ChooseSeat, &openid, &code));
    let ticket_path = format!("/tickets/{code}?o={}&e={}&s={}", q.link.o, q.link.e, q.link.s);
    let notice = q.done.map(|_| ("选座成功！入场时请按座位就座。".to_string(), true));
    page(&state, &code, &student_id, proof, ticket_path, notice, StatusCode::OK).await
}

async fn linked_choose(
    State(state): State<AppState>,
    Path(code): Path<String>,
    form: Result<Form<Posted>, axum::extract::rejection::FormRejection>,
) -> Result<Response, AppError> {
    let posted = form.map(|Form(f)| f).unwrap_or_default();
    let token = LinkParts { o: posted.o.clone(), e: posted.e.clone(), s: posted.s.clone(), n: String::new() };
    let openid = match student::open_link(&state, Purpose::ChooseSeat, &code, &token) {
        Ok(openid) => openid,
        Err(e) => return Ok(link_refused(e)),
    };
    let Some(student_id) = holder(&state, &code, &openid).await? else { return Ok(not_yours()) };
    let back = LinkParts::signed(&state, Purpose::Ticket, &openid, &code);
    let done = format!("/tickets/{code}/seat?o={}&e={}&s={}&done=1", back.o, back.e, back.s);
    let ticket_path = format!("/tickets/{code}?o={}&e={}&s={}", back.o, back.e, back.s);
    let proof = FormProof::Link(LinkParts::signed(&state, Purpose::ChooseSeat, &openid, &code));
    choose(&state, &code, &student_id, &posted, proof, ticket_path, done).await
}

async fn session_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(code): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, AppError> {
    let Some(me) = m::student(&state, &headers) else { return Ok(m::sign_in_to_tickets(&state)) };
    let mut conn = state.pool.acquire().await?;
    if let Err(page) = m::bound_student(&state, &mut conn, &me.openid).await? {
        return Ok(page);
    }
    drop(conn);
    let Some(student_id) = holder(&state, &code, &me.openid).await? else { return Ok(not_yours()) };
    let proof = FormProof::Session(session::csrf_token(&state.secret_key, &me.session));
    let notice = q.done.map(|_| ("选座成功！入场时请按座位就座。".to_string(), true));
    let response = page(&state, &code, &student_id, proof, "/m/tickets".into(), notice, StatusCode::OK).await?;
    Ok(m::no_store(response))
}

async fn session_choose(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(code): Path<String>,
    form: Result<Form<Posted>, axum::extract::rejection::FormRejection>,
) -> Result<Response, AppError> {
    let posted = form.map(|Form(f)| f).unwrap_or_default();
    let me = match m::form_student(&state, &headers, &m::CsrfForm { csrf: posted.csrf.clone() }) {
        Ok(me) => me,
        Err(why) => return Ok(m::form_refused(why)),
    };
    let Some(student_id) = holder(&state, &code, &me.openid).await? else { return Ok(not_yours()) };
    let proof = FormProof::Session(session::csrf_token(&state.secret_key, &me.session));
    let done = format!("/m/tickets/{code}/seat?done=1");
    let response = choose(&state, &code, &student_id, &posted, proof, "/m/tickets".into(), done).await?;
    Ok(m::no_store(response))
}

/// Takes the posted place; on success back to the page (so a reload posts
/// nothing), otherwise the page again with why.
async fn choose(
    state: &AppState,
    code: &str,
    student_id: &str,
    posted: &Posted,
    proof: FormProof,
    ticket_path: String,
    done: String,
) -> Result<Response, AppError> {
    let choice = match (posted.seat.trim(), posted.zone.trim()) {
        ("", "") => None,
        ("", zone) => Some(Choice::Zone(zone)),
        (seat, _) => Some(Choice::Seat(seat)),
    };
    let Some(choice) = choice else {
        let notice = Some(("请先在图上选一个座位（或一个区域）。".to_string(), false));
        return page(state, code, student_id, proof, ticket_path, notice, StatusCode::BAD_REQUEST).await;
    };
    // A plain connection: `choose` opens the one short transaction it needs.
    let outcome = {
        let mut conn = state.pool.acquire().await?;
        seats::choose(&mut conn, code, student_id, choice).await?
    };
    let (status, why) = match outcome {
        ChooseOutcome::Placed(_) => return Ok(Redirect::to(&done).into_response()),
        ChooseOutcome::AlreadyPlaced(place) => {
            (StatusCode::CONFLICT, format!("这张票已经有座位了：{}。每张票只能选一次。", place.label()))
        }
        ChooseOutcome::SeatTaken => (StatusCode::CONFLICT, "这个座位刚被选走，请另选一个。".to_string()),
        ChooseOutcome::ZoneFull => (StatusCode::CONFLICT, "这个区域刚刚满了，请另选一个。".to_string()),
        ChooseOutcome::Blocked => (StatusCode::CONFLICT, "这个座位不对外开放，请另选一个。".to_string()),
        ChooseOutcome::NoSuchPlace => (StatusCode::BAD_REQUEST, "没有这个座位，请在图上重新选。".to_string()),
        ChooseOutcome::PastDeadline { .. } => {
            (StatusCode::CONFLICT, "选座已经截止，系统会为你随机分配座位。".to_string())
        }
        ChooseOutcome::NoTicket => return Ok(not_yours()),
        ChooseOutcome::NotSeated => {
            return Ok(message_page(StatusCode::BAD_REQUEST, "不用选座", "这个活动不设座位，凭票入场即可。", true));
        }
    };
    page(state, code, student_id, proof, ticket_path, Some((why, false)), status).await
}

/// The chooser as it stands now.
async fn page(
    state: &AppState,
    code: &str,
    student_id: &str,
    proof: FormProof,
    ticket_path: String,
    notice: Option<(String, bool)>,
    status: StatusCode,
) -> Result<Response, AppError> {
    let mut conn = state.pool.acquire().await?;
    let Some(situation) = seats::situation(&mut conn, code, student_id).await? else { return Ok(not_yours()) };
    let Situation { activity_id, activity_name, seating, deadline, open, place, .. } = situation;
    let stage = match (seating, place, open) {
        (Seating::None, _, _) => {
            return Ok(message_page(StatusCode::OK, "不用选座", "这个活动不设座位，凭票入场即可。", true));
        }
        (_, Some(place), _) => Stage::Placed(place.label()),
        (_, None, false) => Stage::Closed,
        (Seating::Zone, None, true) => Stage::Zones(
            map::of_activity(&mut conn, activity_id).await?.zones.into_iter().map(|z| (z.zone, z.free)).collect(),
        ),
        (Seating::Seat, None, true) => {
            let seat_map = map::of_activity(&mut conn, activity_id).await?;
            Stage::Seats { map: seat_map::draw(&seat_map.seats, Pick::One), zones: seat_map.zones }
        }
    };
    let page = ChooserPage {
        activity_name,
        student_id: student_id.to_string(),
        deadline: local_time::full(deadline, state.config.timezone),
        notice,
        stage,
        proof,
        action: if ticket_path.starts_with("/m/") {
            format!("/m/tickets/{code}/seat")
        } else {
            format!("/tickets/{code}/seat")
        },
        ticket_path,
    };
    Ok((status, page).into_response())
}
