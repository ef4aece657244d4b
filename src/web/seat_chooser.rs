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
    /// Seat mode: the drawn map and the counts per zone; a large hall is
    /// drawn one zone at a time, with a tab per zone.
    Seats { map: String, zones: Vec<map::ZoneCount>, tabs: Vec<ZoneTab> },
}

/// A zone of a large hall, as a link to its part of the map.
struct ZoneTab {
    zone: String,
    free: i64,
    href: String,
    current: bool,
}

/// A hall with more seats than this (and more than one zone) is drawn zone
/// by zone: a phone shows a zone's rows, not two thousand seats at once,
/// and a redraw after "刚被选走" costs a zone, not the hall.
const WHOLE_MAP_SEATS: i64 = 400;

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
    /// The zone of a large hall to draw.
    #[serde(default)]
    zone: Option<String>,
}

/// Where the chooser's pages live: the signed link's path and query, or `/m/`.
struct Paths {
    /// The form's action.
    action: String,
    /// A zone tab's link, the zone appended.
    zone_prefix: String,
    /// Back to the ticket (signed for the holder), or 我的票.
    ticket: String,
}

impl Paths {
    fn linked(code: &str, link: &LinkParts) -> Paths {
        let query = format!("o={}&e={}&s={}", link.o, link.e, link.s);
        Paths {
            action: format!("/tickets/{code}/seat"),
            zone_prefix: format!("/tickets/{code}/seat?{query}&zone="),
            ticket: format!("/tickets/{code}?{query}"),
        }
    }

    fn session(code: &str) -> Paths {
        Paths {
            action: format!("/m/tickets/{code}/seat"),
            zone_prefix: format!("/m/tickets/{code}/seat?zone="),
            ticket: "/m/tickets".into(),
        }
    }
}

/// The zone part of a posted `zone-row-seat` (rows and seats hold no `-`).
fn zone_of(seat: &str) -> Option<&str> {
    let mut parts = seat.trim().rsplitn(3, '-');
    parts.nth(2).filter(|z| !z.is_empty())
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
    let notice = q.done.map(|_| ("选座成功！入场时请按座位就座。".to_string(), true));
    let paths = Paths::linked(&code, &q.link);
    page(&state, &code, &student_id, proof, &paths, q.zone.as_deref(), notice, StatusCode::OK).await
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
    let proof = FormProof::Link(LinkParts::signed(&state, Purpose::ChooseSeat, &openid, &code));
    choose(&state, &code, &student_id, &posted, proof, &Paths::linked(&code, &back), done).await
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
    let paths = Paths::session(&code);
    let response = page(&state, &code, &student_id, proof, &paths, q.zone.as_deref(), notice, StatusCode::OK).await?;
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
    let response = choose(&state, &code, &student_id, &posted, proof, &Paths::session(&code), done).await?;
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
    paths: &Paths,
    done: String,
) -> Result<Response, AppError> {
    let choice = match (posted.seat.trim(), posted.zone.trim()) {
        ("", "") => None,
        ("", zone) => Some(Choice::Zone(zone)),
        (seat, _) => Some(Choice::Seat(seat)),
    };
    let Some(choice) = choice else {
        let notice = Some(("请先在图上选一个座位（或一个区域）。".to_string(), false));
        return page(state, code, student_id, proof, paths, None, notice, StatusCode::BAD_REQUEST).await;
    };
    // A plain connection: `choose` opens the one short transaction it needs.
    let outcome = {
        let mut conn = state.pool.acquire().await?;
        seats::choose(&mut conn, code, student_id, choice).await?
    };
    crate::meters::seat_choice(match outcome {
        ChooseOutcome::Placed(_) => "placed",
        ChooseOutcome::SeatTaken | ChooseOutcome::ZoneFull => "taken",
        _ => "refused",
    });
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
    // Redrawn where the student was looking: the posted seat's zone.
    page(state, code, student_id, proof, paths, zone_of(&posted.seat), Some((why, false)), status).await
}

/// The chooser as it stands now; a large hall at zone `zone` (or the first
/// with seats left).
#[allow(clippy::too_many_arguments)]
async fn page(
    state: &AppState,
    code: &str,
    student_id: &str,
    proof: FormProof,
    paths: &Paths,
    zone: Option<&str>,
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
            // One query for the whole hall (the counts need every seat); only the shown zone is drawn.
            let map::SeatMap { seats, zones } = map::of_activity(&mut conn, activity_id).await?;
            let whole = zones.len() < 2 || zones.iter().map(|z| z.total).sum::<i64>() <= WHOLE_MAP_SEATS;
            let shown = match whole {
                true => None,
                false => zone
                    .and_then(|wanted| zones.iter().find(|z| z.zone == wanted))
                    .or_else(|| zones.iter().find(|z| z.free > 0))
                    .or(zones.first())
                    .map(|z| z.zone.clone()),
            };
            let seats = match &shown {
                Some(zone) => map::zone_only(seats, zone),
                None => seats,
            };
            let tabs = match &shown {
                None => Vec::new(),
                Some(shown) => zones
                    .iter()
                    .map(|z| ZoneTab {
                        zone: z.zone.clone(),
                        free: z.free,
                        href: format!(
                            "{}{}",
                            paths.zone_prefix,
                            form_urlencoded::byte_serialize(z.zone.as_bytes()).collect::<String>()
                        ),
                        current: &z.zone == shown,
                    })
                    .collect(),
            };
            Stage::Seats { map: seat_map::draw(&seats, Pick::One), zones, tabs }
        }
    };
    let page = ChooserPage {
        activity_name,
        student_id: student_id.to_string(),
        deadline: local_time::full(deadline, state.config.timezone),
        notice,
        stage,
        proof,
        action: paths.action.clone(),
        ticket_path: paths.ticket.clone(),
    };
    Ok((status, page).into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_posted_seat_names_its_zone() {
        assert_eq!(super::zone_of("楼座-B-2-7"), Some("楼座-B"));
        assert_eq!(super::zone_of("A区-3-12"), Some("A区"));
        assert_eq!(super::zone_of("3-12"), None);
        assert_eq!(super::zone_of(""), None);
    }
}
