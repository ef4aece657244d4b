//! Activities: the list with counts, create, edit (SPEC §5 rules), publish,
//! archive, poster upload.

use crate::booking::ActivityStatus;
use askama::Template;
use askama_web::WebTemplate;
use axum::{
    Form, Router,
    extract::{DefaultBodyLimit, Multipart, Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use serde::Deserialize;

use super::{AdminSession, CsrfForm};
use crate::{
    AppState, audit,
    auth::teams::{self, Team},
    booking::{
        Activity, NewActivity,
        activities::{self, EditErrors, EditOutcome, Summary},
        checkin, door, images,
        lottery::Mode,
        poster_check, rush_facts,
        seats::{
            self, Plan, Seating, ZoneQuota,
            admin::{self as seat_admin, CapacityRefused, Setup},
            hall,
        },
        waiting,
    },
    error::AppError,
    local_time,
};

/// Posters larger than this are refused (phones upload big photos; WeChat shows small ones).
pub const MAX_POSTER_BYTES: usize = 5 * 1024 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin", get(list))
        .route("/admin/activities/new", get(new_form))
        .route("/admin/activities", post(create))
        .route("/admin/activities/{id}", get(edit_form).post(update))
        .route(
            "/admin/activities/{id}/publish",
            post(async |State(st), se, Path(id): Path<String>, Form(f)| {
                change_status(st, se, &id, f, StatusChange::Publish).await
            }),
        )
        .route(
            "/admin/activities/{id}/archive",
            post(async |State(st), se, Path(id): Path<String>, Form(f)| {
                change_status(st, se, &id, f, StatusChange::Archive).await
            }),
        )
        .route(
            "/admin/activities/{id}/poster",
            // Room for the multipart framing around the largest allowed image.
            post(upload_poster).layer(DefaultBodyLimit::max(MAX_POSTER_BYTES + 64 * 1024)),
        )
}

pub fn parse_id(id: &str) -> Result<i64, AppError> {
    id.parse().map_err(|_| AppError::NotFound)
}

struct Row {
    s: Summary,
    book_start: String,
    start_at: String,
    /// 售罄用时: how long it took to sell out, `未售罄`, or `—` (not open yet, a lottery).
    sell_out: String,
}

/// `?test=1`: count (and export) the simulator's test tickets too.
#[derive(Deserialize, Default)]
pub struct TestTickets {
    #[serde(default)]
    test: String,
}

impl TestTickets {
    pub fn included(&self) -> bool {
        self.test == "1"
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/activities.html")]
struct ListPage {
    session: AdminSession,
    rows: Vec<Row>,
    include_test: bool,
    dashboard: super::dashboard::Dashboard,
}

impl ListPage {
    fn any_simulated(&self) -> bool {
        self.rows.iter().any(|r| r.s.simulated > 0)
    }
}

async fn list(
    State(state): State<AppState>,
    session: AdminSession,
    Query(asked): Query<TestTickets>,
) -> Result<ListPage, AppError> {
    let tz = state.config.timezone;
    let include_test = asked.included();
    let teams = session.scope.team_filter();
    let mut conn = state.pool.acquire().await?;
    let summaries = activities::summaries(&mut conn, include_test, teams).await?;
    let ids: Vec<i64> = summaries.iter().map(|s| s.activity.id).collect();
    let sold_out = rush_facts::sold_out_moments(&mut conn, &ids).await?;
    drop(conn);
    let now = time::OffsetDateTime::now_utc();
    let dashboard =
        super::dashboard::Dashboard::of(&state, &summaries.iter().collect::<Vec<_>>(), teams.is_none(), now).await?;
    let rows = summaries
        .into_iter()
        .map(|s| Row {
            book_start: local_time::full(s.activity.book_start, tz),
            start_at: local_time::full(s.activity.start_at, tz),
            sell_out: match sold_out.get(&s.activity.id) {
                _ if s.activity.mode == Mode::Lottery || now < s.activity.book_start => "—".into(),
                Some(at) => super::rush_chart::elapsed(*at - s.activity.book_start),
                None => "未售罄".into(),
            },
            s,
        })
        .collect();
    Ok(ListPage { session, rows, include_test, dashboard })
}

/// What the admin typed, kept as typed so a refused form comes back intact.
#[derive(Deserialize, Default, Clone)]
pub struct ActivityForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    place: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    book_start: String,
    #[serde(default)]
    book_end: String,
    #[serde(default)]
    start_at: String,
    #[serde(default)]
    end_at: String,
    #[serde(default)]
    capacity: String,
    /// The checkbox: present ("on") when ticked.
    #[serde(default)]
    live_qr: String,
    /// `rush` or `lottery`; read at creation only.
    #[serde(default)]
    mode: String,
    /// `none`, `zone` or `seat`: fixed once published.
    #[serde(default)]
    seating: String,
    /// Zone mode: one `A区:300` a line.
    #[serde(default)]
    zones: String,
    /// Seat mode: the hall's name.
    #[serde(default)]
    hall: String,
    /// Empty: choices close at the booking end.
    #[serde(default)]
    seat_deadline: String,
    /// The team's id; read at creation only (empty: the first offered).
    #[serde(default)]
    team: String,
}

/// A form read: the activity (its capacity still to be decided), the capacity
/// typed if any, and the seating.
struct Parsed {
    new: NewActivity,
    capacity: Option<i32>,
    plan: Plan,
    deadline: Option<time::OffsetDateTime>,
}

impl ActivityForm {
    fn from_activity(a: &Activity, setup: &Setup, tz: &time_tz::Tz) -> ActivityForm {
        let (seating, zones, hall) = match &setup.plan {
            Plan::None => (Seating::None, String::new(), String::new()),
            Plan::Zones(zones) => (
                Seating::Zone,
                zones.iter().map(|z| format!("{}:{}", z.zone, z.quota)).collect::<Vec<_>>().join("\n"),
                String::new(),
            ),
            Plan::Hall(name) => (Seating::Seat, String::new(), name.clone()),
        };
        ActivityForm {
            csrf: String::new(),
            key: a.key.clone(),
            name: a.name.clone(),
            place: a.place.clone(),
            description: a.description.clone(),
            book_start: local_time::input(a.book_start, tz),
            book_end: local_time::input(a.book_end, tz),
            start_at: local_time::input(a.start_at, tz),
            end_at: local_time::input(a.end_at, tz),
            capacity: a.capacity.to_string(),
            live_qr: if a.live_qr { "on".into() } else { String::new() },
            mode: a.mode.as_str().into(),
            seating: seating.as_str().into(),
            zones,
            hall,
            seat_deadline: setup.deadline.map(|at| local_time::input(at, tz)).unwrap_or_default(),
            team: a.team_id.to_string(),
        }
    }

    fn live_qr(&self) -> bool {
        !self.live_qr.is_empty()
    }

    /// Reads the typed values; unreadable ones become field errors. The
    /// capacity is settled against the seating afterwards (`settle`).
    fn parse(&self, tz: &time_tz::Tz) -> Result<Parsed, EditErrors> {
        let mut errors = EditErrors::default();
        let mut time = |field: &'static str, text: &str| match local_time::read(text, tz) {
            Ok(at) => Some(at),
            Err(refused) => {
                errors.0.push((field, refused.sentence()));
                None
            }
        };
        let times = (
            time("book_start", &self.book_start),
            time("book_end", &self.book_end),
            time("start_at", &self.start_at),
            time("end_at", &self.end_at),
        );
        let deadline = match self.seat_deadline.trim() {
            "" => Some(None),
            text => time("seat_deadline", text).map(Some),
        };
        let plan = self.plan(&mut errors);
        // Zones or a hall decide the capacity: it may be left empty then.
        let capacity = match self.capacity.trim() {
            "" if plan.as_ref().is_some_and(|p| *p != Plan::None) => Some(None),
            text => text.parse::<i32>().ok().map(Some),
        };
        if capacity.is_none() {
            errors.0.push(("capacity", "请填写一个整数".into()));
        }
        let mode = Mode::parse(&self.mode);
        if mode.is_none() {
            errors.0.push(("mode", "请选择抢票或抽签".into()));
        }
        let (
            Some(book_start),
            Some(book_end),
            Some(start_at),
            Some(end_at),
            Some(capacity),
            Some(mode),
            Some(plan),
            Some(deadline),
        ) = (times.0, times.1, times.2, times.3, capacity, mode, plan, deadline)
        else {
            return Err(errors);
        };
        let new = NewActivity {
            key: self.key.trim().to_ascii_lowercase(),
            name: self.name.trim().to_string(),
            place: self.place.trim().to_string(),
            description: self.description.trim().to_string(),
            book_start,
            book_end,
            start_at,
            end_at,
            capacity: 0,
            publish: false,
            mode,
        };
        Ok(Parsed { new, capacity, plan, deadline })
    }

    /// The seating typed; a bad zone line or a missing hall is a field error.
    fn plan(&self, errors: &mut EditErrors) -> Option<Plan> {
        match self.seating.trim() {
            "" | "none" => Some(Plan::None),
            "zone" => {
                let mut zones = Vec::new();
                for line in self.zones.lines().map(str::trim).filter(|l| !l.is_empty()) {
                    match line.parse::<ZoneQuota>() {
                        Ok(zone) => zones.push(zone),
                        Err(why) => {
                            errors.add("zones", why);
                            return None;
                        }
                    }
                }
                if zones.is_empty() {
                    errors.add("zones", "每行写一个区域，如 A区:300");
                    return None;
                }
                Some(Plan::Zones(zones))
            }
            "seat" if !self.hall.trim().is_empty() => Some(Plan::Hall(self.hall.trim().to_string())),
            "seat" => {
                errors.add("hall", "请选择场馆");
                None
            }
            _ => {
                errors.add("seating", "请选择不分区、分区或选座");
                None
            }
        }
    }
}

/// Settles what was read against the database: a published activity's
/// seating is fixed (checked first, so a crafted form learns exactly that);
/// the zones or the hall decide the capacity (less blocked seats); then the
/// field rules of SPEC §5 and the seat deadline's.
async fn settle(
    conn: &mut sqlx::PgConnection,
    activity: Option<&Activity>,
    parsed: Parsed,
) -> Result<Result<Settled, EditErrors>, AppError> {
    let Parsed { mut new, capacity, plan, deadline } = parsed;
    let mut errors = EditErrors::default();
    if let Some(a) = activity
        && a.status != ActivityStatus::Draft
        && seat_admin::setup_of(conn, a.id).await?.plan != plan
    {
        errors.add("seating", seat_admin::FIXED);
        return Ok(Err(errors));
    }
    match seat_admin::capacity_for(conn, activity.map(|a| a.id), &plan, capacity).await? {
        Ok(derived) => new.capacity = derived,
        Err(CapacityRefused::Capacity(why)) => errors.add("capacity", why),
        Err(CapacityRefused::Plan(why)) => {
            errors.add(if matches!(plan, Plan::Hall(_)) { "hall" } else { "zones" }, why)
        }
    }
    if !errors.is_empty() {
        return Ok(Err(errors));
    }
    let mut errors = activities::check_fields(&new);
    if let Some(why) = seat_admin::check_deadline(&plan, deadline, new.book_start, new.start_at) {
        errors.add("seat_deadline", why);
    }
    Ok(if errors.is_empty() { Ok((new, plan, deadline)) } else { Err(errors) })
}

/// A form settled: the activity, its seating and its seat deadline.
type Settled = (NewActivity, Plan, Option<time::OffsetDateTime>);

#[derive(Template, WebTemplate)]
#[template(path = "admin/activity_form.html")]
pub(super) struct FormPage {
    session: AdminSession,
    /// None while creating.
    activity: Option<Activity>,
    form: ActivityForm,
    errors: EditErrors,
    notice: Option<String>,
    /// The zone form times are read in (`TIMEZONE`).
    timezone: &'static str,
    /// What happened at the door (an existing activity only).
    door: Option<Door>,
    /// The waiting list (an existing activity only).
    waiting: Option<Waiting>,
    /// A lottery activity's draw: its state and published inputs.
    lottery: Option<crate::web::lottery::LotteryView>,
    /// The halls a seat activity may use (by name).
    halls: Vec<String>,
    /// A zone or seat activity's places (an existing activity only).
    seats: Option<super::seats::SeatsView>,
    /// The teams a new activity may be made for (an organizer: only theirs).
    teams: Vec<Team>,
    /// An existing activity's team.
    team_name: String,
    /// Its guest tickets (an existing activity only).
    pub(super) guests: Option<super::guests::GuestsView>,
    /// Its messages to ticket holders (an existing activity only).
    pub(super) messages: Option<super::holder_messages::MessagesView>,
    /// The rush chart (an existing activity only).
    rush: Option<super::rush_chart::RushView>,
}

/// The activity page's door section.
struct Door {
    booked: i64,
    checked_in: i64,
    /// Those who booked and did not come, once the activity has ended.
    no_shows: Option<i64>,
    /// The arrivals chart (inline SVG drawn here); `None` before anyone came.
    chart: Option<String>,
    /// Check-ins per gate, most first.
    gates: Vec<(String, i64)>,
}

async fn door(conn: &mut sqlx::PgConnection, activity: &Activity, tz: &time_tz::Tz) -> Result<Door, AppError> {
    let (booked, checked_in) = checkin::counts(conn, activity.id, false).await?;
    let ended = time::OffsetDateTime::now_utc() >= activity.end_at;
    let chart = super::door_chart::arrivals_svg(&door::arrivals(conn, activity.id).await?, tz);
    let gates = door::gates(conn, activity.id).await?;
    Ok(Door { booked, checked_in, no_shows: ended.then_some(booked - checked_in), chart, gates })
}

/// How many of the line the activity page lists.
const WAITING_HEAD: i64 = 10;

/// The activity page's waiting-list section.
struct Waiting {
    line: waiting::Line,
    /// Each head entry's joined time, as the admin reads it.
    joined: Vec<String>,
    /// No place is left, so students may queue.
    sold_out: bool,
    /// A lottery activity: the line forms at the draw, from those not drawn.
    lottery: bool,
}

async fn waiting(conn: &mut sqlx::PgConnection, activity: &Activity, tz: &time_tz::Tz) -> Result<Waiting, AppError> {
    let line = waiting::line(conn, activity.id, WAITING_HEAD).await?;
    let joined = line.head.iter().map(|e| local_time::precise(e.joined_at, tz)).collect();
    let lottery = activity.mode == Mode::Lottery;
    Ok(Waiting { line, joined, sold_out: activity.remaining <= 0, lottery })
}

impl Waiting {
    /// (entry, its joined time) in line order, for the template.
    fn head(&self) -> impl Iterator<Item = (&waiting::InLine, &str)> {
        self.line.head.iter().zip(self.joined.iter().map(String::as_str))
    }
}

impl FormPage {
    fn error(&self, field: &str) -> &str {
        self.errors.get(field).unwrap_or("")
    }
    /// The seating is fixed once published.
    fn seating_locked(&self) -> bool {
        self.activity.as_ref().is_some_and(|a| a.status != ActivityStatus::Draft)
    }
    fn locked(&self, field: &str) -> bool {
        self.activity.as_ref().is_some_and(|a| a.status != ActivityStatus::Draft)
            && (field == "key" || field == "book_start")
    }
}

fn zone(state: &AppState) -> &'static str {
    use time_tz::TimeZone;
    state.config.timezone.name()
}

/// The form for a new activity (blank, or as typed when refused).
async fn new_activity_page(
    state: &AppState,
    session: AdminSession,
    form: ActivityForm,
    errors: EditErrors,
) -> Result<FormPage, AppError> {
    let timezone = zone(state);
    let halls = hall_names(state).await?;
    let teams = offered_teams(state, &session).await?;
    let (door, waiting, lottery, seats, team_name, guests, rush) = (None, None, None, None, String::new(), None, None);
    let activity = None;
    Ok(FormPage {
        session,
        activity,
        form,
        errors,
        notice: None,
        timezone,
        door,
        waiting,
        lottery,
        halls,
        seats,
        teams,
        team_name,
        guests,
        messages: None,
        rush,
    })
}

/// The teams a new activity may be made for: an admin, any; an organizer, their own.
async fn offered_teams(state: &AppState, session: &AdminSession) -> Result<Vec<Team>, AppError> {
    let mut conn = state.pool.acquire().await?;
    match session.scope.team_filter() {
        None => teams::list(&mut conn).await,
        Some(ids) => teams::by_ids(&mut conn, ids).await,
    }
}

/// The team picked on the form, if it is one this account may make an activity for.
fn picked_team(offered: &[Team], typed: &str) -> Option<i64> {
    match typed.trim() {
        "" => offered.first().map(|t| t.id),
        typed => typed.parse::<i64>().ok().filter(|id| offered.iter().any(|t| t.id == *id)),
    }
}

async fn hall_names(state: &AppState) -> Result<Vec<String>, AppError> {
    Ok(hall::list(&mut *state.pool.acquire().await?).await?.into_iter().map(|h| h.name).collect())
}

/// An existing activity's page: its form and the sections read from the database.
async fn activity_page(
    state: &AppState,
    session: AdminSession,
    activity: Activity,
    form: ActivityForm,
    errors: EditErrors,
    notice: Option<String>,
) -> Result<FormPage, AppError> {
    let tz = state.config.timezone;
    let mut conn = state.pool.acquire().await?;
    let door = Some(door(&mut conn, &activity, tz).await?);
    let waiting = Some(waiting(&mut conn, &activity, tz).await?);
    let lottery = crate::web::lottery::view(&mut conn, &activity, tz).await?;
    let seats = super::seats::view(&mut conn, &activity).await?;
    let team_name = teams::by_ids(&mut conn, &[activity.team_id]).await?.pop().map(|t| t.name).unwrap_or_default();
    let guests = Some(super::guests::GuestsView::of(&mut conn, &activity).await?);
    let messages = Some(super::holder_messages::MessagesView::of(&mut conn, &activity, tz).await?);
    let rush = Some(super::rush_chart::view(&mut conn, &activity).await?);
    drop(conn);
    let timezone = zone(state);
    let halls = hall_names(state).await?;
    let activity = Some(activity);
    let teams = Vec::new();
    Ok(FormPage {
        session,
        activity,
        form,
        errors,
        notice,
        timezone,
        door,
        waiting,
        lottery,
        halls,
        seats,
        teams,
        team_name,
        guests,
        messages,
        rush,
    })
}

/// An existing activity's page as saved, for a section's refusal to fill in.
pub(super) async fn page_of(state: &AppState, session: AdminSession, activity: Activity) -> Result<FormPage, AppError> {
    let setup = seat_admin::setup_of(&mut *state.pool.acquire().await?, activity.id).await?;
    let form = ActivityForm::from_activity(&activity, &setup, state.config.timezone);
    activity_page(state, session, activity, form, EditErrors::default(), None).await
}

/// An existing activity's page with what its seat section was refused.
pub(super) async fn page_with_seat_error(
    state: &AppState,
    session: AdminSession,
    activity_id: i64,
    error: String,
) -> Result<Response, AppError> {
    let mut conn = state.pool.acquire().await?;
    let activity = activities::by_id(&mut conn, activity_id).await?.ok_or(AppError::NotFound)?;
    let setup = seat_admin::setup_of(&mut conn, activity_id).await?;
    drop(conn);
    let form = ActivityForm::from_activity(&activity, &setup, state.config.timezone);
    let mut page = activity_page(state, session, activity, form, EditErrors::default(), None).await?;
    if let Some(seats) = page.seats.as_mut() {
        seats.error = Some(error);
    }
    Ok((StatusCode::BAD_REQUEST, page).into_response())
}

async fn new_form(State(state): State<AppState>, session: AdminSession) -> Result<FormPage, AppError> {
    new_activity_page(&state, session, ActivityForm::default(), EditErrors::default()).await
}

async fn create(
    State(state): State<AppState>,
    session: AdminSession,
    Form(form): Form<ActivityForm>,
) -> Result<Response, AppError> {
    session.check_csrf(&form.csrf)?;
    let refuse = async |session, form, errors| {
        Ok((StatusCode::BAD_REQUEST, new_activity_page(&state, session, form, errors).await?).into_response())
    };
    // Only a team this account may make activities for: an organizer, one of theirs.
    let Some(team) = picked_team(&offered_teams(&state, &session).await?, &form.team) else {
        return refuse(session, form, EditErrors(vec![("team", "请选择你所在的团队".into())])).await;
    };
    let parsed = match form.parse(state.config.timezone) {
        Ok(parsed) => parsed,
        Err(errors) => return refuse(session, form, errors).await,
    };
    let mut tx = state.pool.begin().await?;
    let (new, plan, deadline) = match settle(&mut tx, None, parsed).await? {
        Ok(settled) => settled,
        Err(errors) => return refuse(session, form, errors).await,
    };
    let activity = match activities::create(&mut tx, &new).await {
        Ok(a) => a,
        Err(AppError::Invalid(message)) => return refuse(session, form, EditErrors(vec![("key", message)])).await,
        Err(e) => return Err(e),
    };
    activities::set_live_qr(&mut tx, activity.id, form.live_qr()).await?;
    activities::set_team(&mut tx, activity.id, team).await?;
    seats::set_up(&mut tx, activity.id, &plan, deadline).await?;
    audit::record_for(
        &mut tx,
        activity.id,
        &session.admin.username,
        "创建活动",
        &format!("{} {}", activity.key, activity.name),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/admin/activities/{}", activity.id)).into_response())
}

async fn edit_form(
    State(state): State<AppState>,
    session: AdminSession,
    Path(id): Path<String>,
) -> Result<FormPage, AppError> {
    let activity = activities::by_id(&mut *state.pool.acquire().await?, parse_id(&id)?).await?;
    let activity = activity.ok_or(AppError::NotFound)?;
    let setup = seat_admin::setup_of(&mut *state.pool.acquire().await?, activity.id).await?;
    let form = ActivityForm::from_activity(&activity, &setup, state.config.timezone);
    activity_page(&state, session, activity, form, EditErrors::default(), None).await
}

async fn update(
    State(state): State<AppState>,
    session: AdminSession,
    Path(id): Path<String>,
    Form(form): Form<ActivityForm>,
) -> Result<Response, AppError> {
    session.check_csrf(&form.csrf)?;
    let id = parse_id(&id)?;
    let mut tx = state.pool.begin().await?;
    let activity = activities::by_id(&mut tx, id).await?.ok_or(AppError::NotFound)?;
    let settled = match form.parse(state.config.timezone) {
        Ok(parsed) => settle(&mut tx, Some(&activity), parsed).await?,
        Err(errors) => Err(errors),
    };
    let (outcome, seating) = match settled {
        Ok((new, plan, deadline)) => {
            (activities::update(&mut tx, &state.notifier, id, &new).await?, Some((plan, deadline)))
        }
        Err(errors) => (EditOutcome::Refused(errors), None),
    };
    // The rule again, under the edit's lock on the activity row: a publish
    // between reading the form and here still fixes the seating.
    let outcome = match (outcome, seating) {
        (EditOutcome::Saved(saved), Some((plan, deadline))) => {
            match seats::admin::replan(&mut tx, id, saved.status, &plan, deadline).await {
                Ok(()) => EditOutcome::Saved(saved),
                Err(AppError::Invalid(why)) => EditOutcome::Refused(EditErrors(vec![("seating", why)])),
                Err(e) => return Err(e),
            }
        }
        (outcome, _) => outcome,
    };
    match outcome {
        EditOutcome::Saved(mut saved) => {
            activities::set_live_qr(&mut tx, saved.id, form.live_qr()).await?;
            saved.live_qr = form.live_qr();
            // Holders hear of a new time or place (recorded by the edit) only if it commits.
            let tz = state.config.timezone;
            audit::record_for(
                &mut tx,
                saved.id,
                &session.admin.username,
                "修改活动",
                &format!("{} {}", saved.key, saved.name),
            )
            .await?;
            tx.commit().await?;
            let setup = seat_admin::setup_of(&mut *state.pool.acquire().await?, saved.id).await?;
            let form = ActivityForm::from_activity(&saved, &setup, tz);
            let notice = Some("已保存。".to_string());
            Ok(activity_page(&state, session, saved, form, EditErrors::default(), notice).await?.into_response())
        }
        EditOutcome::Refused(errors) => {
            tx.rollback().await?;
            let page = activity_page(&state, session, activity, form, errors, None).await?;
            Ok((StatusCode::BAD_REQUEST, page).into_response())
        }
    }
}

/// What the status buttons do.
#[derive(Clone, Copy)]
enum StatusChange {
    Publish,
    Archive,
}

async fn change_status(
    state: AppState,
    session: AdminSession,
    id: &str,
    form: CsrfForm,
    change: StatusChange,
) -> Result<Response, AppError> {
    session.check_csrf(&form.csrf)?;
    let id = parse_id(id)?;
    let mut tx = state.pool.begin().await?;
    let (action, activity) = match change {
        StatusChange::Publish => ("发布活动", activities::publish(&mut tx, id).await?),
        StatusChange::Archive => ("归档活动", activities::archive(&mut tx, &state.notifier, id).await?),
    };
    audit::record_for(&mut tx, activity.id, &session.admin.username, action, &activity.key).await?;
    tx.commit().await?;
    Ok(Redirect::to("/admin").into_response())
}

async fn upload_poster(
    State(state): State<AppState>,
    session: AdminSession,
    Path(id): Path<String>,
    mut multipart: Multipart,
) -> Result<Response, AppError> {
    let id = parse_id(&id)?;
    let mut csrf = String::new();
    let mut poster: Option<Vec<u8>> = None;
    while let Some(field) = multipart.next_field().await.map_err(|_| poster_refused("上传失败或文件超过 5 MB。"))?
    {
        match field.name() {
            Some("csrf") => csrf = field.text().await.map_err(|_| poster_refused("表单无效。"))?,
            Some("poster") => {
                let bytes = field.bytes().await.map_err(|_| poster_refused("上传失败或文件超过 5 MB。"))?;
                poster = Some(bytes.to_vec());
            }
            _ => {}
        }
    }
    session.check_csrf(&csrf)?;
    let bytes = poster.filter(|b| !b.is_empty()).ok_or_else(|| poster_refused("请选择一张图片。"))?;
    if bytes.len() > MAX_POSTER_BYTES {
        return Err(poster_refused("图片不能超过 5 MB。"));
    }
    // Decoding is CPU work (a big photo takes a while): off the threads that answer students.
    let (bytes, checked) = tokio::task::spawn_blocking(move || {
        let checked = poster_check::check(&bytes);
        (bytes, checked)
    })
    .await
    .map_err(|e| AppError::Internal(format!("poster check: {e}")))?;
    let content_type = checked.map_err(|refusal| poster_refused(&refusal.sentence()))?;
    let mut tx = state.pool.begin().await?;
    let activity = activities::by_id(&mut tx, id).await?.ok_or(AppError::NotFound)?;
    let image = images::store(&mut tx, content_type, &bytes).await?;
    activities::set_poster(&mut tx, id, image).await?;
    audit::record_for(&mut tx, activity.id, &session.admin.username, "上传海报", &activity.key).await?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/admin/activities/{id}")).into_response())
}

fn poster_refused(message: &str) -> AppError {
    AppError::Invalid(message.to_string())
}
