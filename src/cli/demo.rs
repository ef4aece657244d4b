//! `serve --demo`: five sample activities, one in each state a first visitor
//! should see — booking open now, booking opening in ten minutes, sold out,
//! a lottery whose registration closes (and is drawn) in fifteen minutes, and
//! a play in a small hall whose seats are chosen after booking — and an
//! `admin` account whose password is printed once.
//!
//! Running it again never duplicates anything: demo activities are known by
//! their fixed keys and demo students by their openids. What is already there
//! is brought back to its state as far as the booking rules allow (a published
//! activity keeps its booking start), and whatever could not be is said so.
//! A lottery that was drawn keeps its draw: its results are public and checkable.
//! The play's hall is imported once, under its own name, and never changed.

use crate::booking::ActivityStatus;
use crate::notify::Notifier;
use rand::Rng;
use sqlx::{Connection, PgConnection};
use time::{Duration, OffsetDateTime, macros::time};
use time_tz::{OffsetDateTimeExt, PrimitiveDateTimeExt, Tz};

use crate::{
    audit,
    auth::accounts,
    booking::{
        Activity, NewActivity, activities,
        activities::EditOutcome,
        lottery::{self, Mode},
        seats::{self, Plan, Seating, hall},
        students::{self, BindOutcome},
        tickets::{self, ActivityRef, BookOutcome},
    },
    error::AppError,
    local_time,
};

/// The demo admin's username.
const ADMIN: &str = "admin";

/// Places of the sold-out activity, and so the number of demo students: few
/// enough that filling it at start-up takes a moment.
const SOLD_OUT_CAPACITY: i32 = 20;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shows {
    OpenNow,
    OpensSoon,
    SoldOut,
    /// Registration for a lottery, closing in [`LOTTERY_CLOSES_IN`].
    LotteryOpen,
    /// Booking open now for the seats of [`DEMO_HALL`], chosen after booking.
    SeatsOpen,
}

/// The play's hall: a name of its own, so an organiser's hall is never used or changed.
pub const DEMO_HALL: &str = "小剧场（演示）";

/// The hall's zones: (zone, first row, last row, seats per row).
const DEMO_HALL_ZONES: [(&str, u32, u32, u32); 2] = [("A区", 1, 4, 10), ("B区", 5, 6, 8)];

/// Its seats: 40 in A区 and 16 in B区.
const DEMO_HALL_SEATS: i32 = 56;

fn demo_hall() -> Vec<hall::SeatLine> {
    DEMO_HALL_ZONES
        .iter()
        .flat_map(|&(zone, first, last, per_row)| {
            (first..=last).flat_map(move |row| {
                (1..=per_row).map(move |seat| hall::SeatLine {
                    zone: zone.into(),
                    row: row.to_string(),
                    seat: seat.to_string(),
                    at: None,
                })
            })
        })
        .collect()
}

/// Soon enough that a visitor registers a few test students in the simulator
/// and sees the draw, its notices and its public page within one sitting.
const LOTTERY_CLOSES_IN: Duration = Duration::minutes(15);

struct Sample {
    key: &'static str,
    name: &'static str,
    place: &'static str,
    description: &'static str,
    capacity: i32,
    /// The activity is at 19:00 this many days from today.
    days_ahead: i64,
    shows: Shows,
}

const SAMPLES: [Sample; 5] = [
    Sample {
        key: "demo-concert",
        name: "校园歌手大赛决赛",
        place: "新清华学堂",
        description: "十位决赛选手同台演唱，评委现场点评，观众投票选出最受欢迎歌手。\n\
                      凭电子票入场，请提前 15 分钟到场。\n\n（示例活动，由 serve --demo 生成。）",
        capacity: 300,
        days_ahead: 3,
        shows: Shows::OpenNow,
    },
    Sample {
        key: "demo-lecture",
        name: "人工智能前沿讲座",
        place: "主楼后厅",
        description: "计算机系教授介绍大模型的最新进展，讲座约 90 分钟，之后是现场问答。\n\
                      抢票开始前可以先绑定学号。\n\n（示例活动，由 serve --demo 生成。）",
        capacity: 120,
        days_ahead: 5,
        shows: Shows::OpensSoon,
    },
    Sample {
        key: "demo-workshop",
        name: "陶艺体验工作坊",
        place: "学生活动中心 203 室",
        description: "在老师指导下亲手拉坯、修坯，作品烧制后一周内可领取。名额有限，每人限一张票。\n\n\
                      （示例活动，由 serve --demo 生成。）",
        capacity: SOLD_OUT_CAPACITY,
        days_ahead: 2,
        shows: Shows::SoldOut,
    },
    Sample {
        key: "demo-lottery",
        name: "新年音乐会",
        place: "新清华学堂",
        description: "座位按抽签分配：报名截止时系统公开抽签，中签的同学自动拿到电子票，\
                      其余同学按抽签顺序候补。发送「报名 demo-lottery」参加，\
                      人人都能在抽签页核对结果。\n\n（示例活动，由 serve --demo 生成。）",
        capacity: 50,
        days_ahead: 4,
        shows: Shows::LotteryOpen,
    },
    Sample {
        key: "demo-seats",
        name: "话剧《雷雨》",
        place: "小剧场",
        description: "曹禺名作，学生话剧队年度大戏，演出约两个半小时。\n\
                      先抢票，再在电子票上选座（A区、B区）；选座截止时还没选的同学会被随机分配一个空座。\n\n\
                      （示例活动，由 serve --demo 生成。）",
        capacity: DEMO_HALL_SEATS,
        days_ahead: 6,
        shows: Shows::SeatsOpen,
    },
];

impl Sample {
    /// The activity as a fresh demo would create it, relative to `now`.
    fn fresh(&self, now: OffsetDateTime, tz: &Tz) -> NewActivity {
        let start_at = evening(now, self.days_ahead, tz);
        let book_start = match self.shows {
            Shows::OpensSoon => now + Duration::minutes(10),
            Shows::OpenNow | Shows::SoldOut | Shows::LotteryOpen | Shows::SeatsOpen => now - Duration::hours(1),
        };
        let (book_end, mode) = match self.shows {
            Shows::LotteryOpen => (now + LOTTERY_CLOSES_IN, Mode::Lottery),
            // Booking closes two hours before the doors open, as organisers usually want.
            _ => (start_at - Duration::hours(2), Mode::Rush),
        };
        NewActivity {
            key: self.key.into(),
            name: self.name.into(),
            place: self.place.into(),
            description: self.description.into(),
            book_start,
            book_end,
            start_at,
            end_at: start_at + Duration::hours(2),
            capacity: self.capacity,
            publish: true,
            mode,
        }
    }
}

/// 19:00 local time, `days` days from now: when campus evening events start.
fn evening(now: OffsetDateTime, days: i64, tz: &Tz) -> OffsetDateTime {
    let day = (now + Duration::days(days)).to_timezone(tz).date();
    // A 19:00 that a DST change skips has no local meaning; fall back to the same instant a day later.
    day.with_time(time!(19:00)).assume_timezone(tz).take_first().unwrap_or(now + Duration::days(days))
}

/// Seeds the demo; prints the admin's password (when it creates the account)
/// and one line per demo activity. Only database errors are errors: a demo
/// activity that cannot be brought back to its state is reported and left.
pub async fn seed(conn: &mut PgConnection, notifier: &Notifier, tz: &Tz) -> Result<(), AppError> {
    seed_admin(conn).await?;
    let now = OffsetDateTime::now_utc();
    println!("demo activities (students book with `抢票 <key>`):");
    for sample in &SAMPLES {
        let (activity, note) = seed_activity(conn, notifier, sample, now, tz).await?;
        let note = note.map(|n| format!(" — {n}")).unwrap_or_default();
        let shows = match lottery::state(conn, activity.id).await? {
            Some(drawing) => lottery_state(&activity, &drawing, now, tz),
            None if sample.shows == Shows::SeatsOpen => format!(
                "{} (hall {DEMO_HALL}; seats are chosen until booking closes)",
                state(&activity, now, tz, "seats")
            ),
            None => state(&activity, now, tz, "places"),
        };
        println!("  {:<14} {}: {shows}{note}", activity.key, activity.name);
    }
    Ok(())
}

async fn seed_admin(conn: &mut PgConnection) -> Result<(), AppError> {
    if accounts::exists(conn, ADMIN).await? {
        // `admin add` overwrites an existing password, so it is the way to a new one.
        println!(
            "demo admin: account `{ADMIN}` already exists, password unchanged \
             (set a new one with `wechat-ticket admin add {ADMIN}`)"
        );
        return Ok(());
    }
    let password: String = rand::rng().sample_iter(rand::distr::Alphanumeric).take(16).map(char::from).collect();
    accounts::add(conn, ADMIN, &password).await?;
    audit::record(conn, "serve --demo", "添加管理员", ADMIN).await?;
    println!("demo admin: username `{ADMIN}`, password `{password}` (shown once)");
    Ok(())
}

/// Creates the sample, or brings an existing one back to what it shows.
/// Returns the activity and, when something was left as is, why.
async fn seed_activity(
    conn: &mut PgConnection,
    notifier: &Notifier,
    sample: &Sample,
    now: OffsetDateTime,
    tz: &Tz,
) -> Result<(Activity, Option<String>), AppError> {
    let fresh = sample.fresh(now, tz);
    let Some(existing) = activities::by_key(conn, sample.key).await? else {
        let created = create(conn, sample, &fresh).await?;
        return fill_if_sold_out(conn, notifier, sample, created, None).await;
    };
    if existing.status == ActivityStatus::Archived {
        return Ok((existing, Some("archived by an admin, left as is".into())));
    }
    if sample.shows == Shows::SeatsOpen && seating(conn, existing.id).await? != Seating::Seat {
        // Seating is fixed at creation; an activity under this key made some other way is not the demo's.
        return Ok((existing, Some("not a seat activity, left as is".into())));
    }
    if let Some(drawing) = lottery::state(conn, existing.id).await?
        && (drawing.drawn_at.is_some() || drawing.closed)
    {
        // A lottery is sealed at its close: its close never moves again (the
        // edit rules refuse it), and a drawn one's results are public. One
        // nobody registered for is made again.
        let drawn = drawing.drawn_at.is_some();
        if drawing.entries == 0 && activities::delete_if_never_booked(conn, existing.id).await? {
            let created = create(conn, sample, &fresh).await?;
            let why = if drawn { "it was drawn with nobody registered" } else { "it closed with nobody registered" };
            return Ok((created, Some(format!("{why}, so it was created again"))));
        }
        let note = if drawn {
            "drawn already; its draw stays as it was"
        } else {
            "registration closed; its close stays as it was"
        };
        return Ok((existing, Some(note.into())));
    }
    if sample.shows == Shows::OpensSoon && existing.is_published() && existing.book_start <= now {
        // A published activity's booking start never moves (SPEC §5). One that
        // nobody ever booked can be made again with a start in ten minutes;
        // one with tickets keeps them, and its state.
        if activities::delete_if_never_booked(conn, existing.id).await? {
            let created = create(conn, sample, &fresh).await?;
            return Ok((created, Some("its booking had opened and nobody had booked, so it was created again".into())));
        }
        let note = "booking opened already and it has tickets, so it stays open";
        return refresh(conn, notifier, sample, &existing, &fresh, Some(note)).await;
    }
    let (refreshed, note) = refresh(conn, notifier, sample, &existing, &fresh, None).await?;
    fill_if_sold_out(conn, notifier, sample, refreshed, note).await
}

/// Creates a sample; the play in [`DEMO_HALL`] (imported first when absent),
/// its seating set in the creation's transaction as `activity create` does.
async fn create(conn: &mut PgConnection, sample: &Sample, fresh: &NewActivity) -> Result<Activity, AppError> {
    if sample.shows != Shows::SeatsOpen {
        return activities::create(conn, fresh).await;
    }
    let mut tx = conn.begin().await?;
    if hall::by_name(&mut tx, DEMO_HALL).await?.is_none() {
        hall::import(&mut tx, DEMO_HALL, &demo_hall()).await?;
    }
    let plan = Plan::Hall(DEMO_HALL.into());
    // The hall decides the capacity, as for `activity create --seating seat`.
    let new = NewActivity { capacity: seats::capacity_of(&mut tx, &plan, None).await?, ..fresh.clone() };
    let created = activities::create(&mut tx, &new).await?;
    seats::set_up(&mut tx, created.id, &plan, None).await?;
    tx.commit().await?;
    Ok(created)
}

async fn seating(conn: &mut PgConnection, activity_id: i64) -> Result<Seating, AppError> {
    Ok(sqlx::query_scalar("SELECT seating FROM activities WHERE id = $1").bind(activity_id).fetch_one(conn).await?)
}

/// Moves the demo's times forward through the same edit rules an admin meets
/// (the booking start stays once published) and publishes a draft. An admin's
/// edits to the name, place and description are kept.
async fn refresh(
    conn: &mut PgConnection,
    notifier: &Notifier,
    sample: &Sample,
    current: &Activity,
    fresh: &NewActivity,
    note: Option<&str>,
) -> Result<(Activity, Option<String>), AppError> {
    let live = current.capacity - current.remaining;
    let wanted = NewActivity {
        key: current.key.clone(),
        name: current.name.clone(),
        place: current.place.clone(),
        description: current.description.clone(),
        book_start: if current.is_published() { current.book_start } else { fresh.book_start },
        // The sold-out sample gets back its small capacity, or as many places as are
        // booked when more are; the others keep theirs.
        capacity: if sample.shows == Shows::SoldOut { live.max(sample.capacity) } else { current.capacity },
        ..fresh.clone()
    };
    let updated = match activities::update(conn, notifier, current.id, &wanted).await? {
        EditOutcome::Saved(activity) => activity,
        EditOutcome::Refused(errors) => {
            let why: Vec<String> = errors.0.iter().map(|(field, message)| format!("{field}: {message}")).collect();
            return Ok((current.clone(), Some(format!("not refreshed ({})", why.join("; ")))));
        }
    };
    let updated = if updated.is_published() { updated } else { activities::publish(conn, updated.id).await? };
    Ok((updated, note.map(Into::into)))
}

/// Books the sold-out sample's free places for demo students, through the
/// same booking students use. Demo students are bound only when a place
/// needs one, so a re-run over a sold-out activity adds nobody.
async fn fill_if_sold_out(
    conn: &mut PgConnection,
    notifier: &Notifier,
    sample: &Sample,
    activity: Activity,
    note: Option<String>,
) -> Result<(Activity, Option<String>), AppError> {
    if sample.shows != Shows::SoldOut || activity.remaining == 0 {
        return Ok((activity, note));
    }
    let mut left = activity.remaining;
    let mut trouble = None;
    for n in 1..=SOLD_OUT_CAPACITY {
        if left == 0 {
            break;
        }
        // Plain openids (not the simulator's prefix): these tickets count like real ones.
        let openid = format!("demo-student-{n:03}");
        // Ten digits, as the default STUDENT_ID_PATTERN wants; year 2099 marks them as made up.
        let student_id = format!("2099{n:06}");
        let name = format!("演示同学{n:02}");
        if students::bind(conn, notifier, &openid, &student_id, Some(&name)).await? == BindOutcome::TakenByAnother {
            continue; // a real student holds that ID: leave them be
        }
        match tickets::book(conn, &ActivityRef::Id(activity.id), &openid, None).await? {
            BookOutcome::Booked(_) => left -= 1,
            BookOutcome::AlreadyHolds(_) => {}
            BookOutcome::SoldOut { .. } => left = 0,
            refused => {
                let why = match refused {
                    BookOutcome::NotOpenYet { .. } => "booking has not opened",
                    BookOutcome::Closed => "booking is closed",
                    _ => "the booking was refused",
                };
                trouble = Some(format!("demo students could not book: {why}"));
                break;
            }
        }
    }
    let filled = activities::by_id(conn, activity.id).await?.ok_or(AppError::NotFound)?;
    Ok((filled, trouble.or(note)))
}

/// A lottery's stage, as the demo's summary line says it.
fn lottery_state(a: &Activity, drawing: &lottery::State, now: OffsetDateTime, tz: &Tz) -> String {
    if a.status != ActivityStatus::Published {
        return state(a, now, tz, "places");
    }
    let registered = drawing.entries;
    match drawing.drawn_at {
        Some(at) => format!(
            "lottery drawn {}: {registered} registered, {} won (draw page /activities/{}/draw)",
            local_time::full(at, tz),
            drawing.winners.unwrap_or(0),
            a.id
        ),
        _ if now < a.book_start => state(a, now, tz, "places"),
        _ if now >= a.book_end => format!("lottery closed, {registered} registered, waiting for its draw"),
        _ => format!(
            "lottery open until {} (drawn then), {registered} registered for {} places",
            local_time::full(a.book_end, tz),
            a.capacity
        ),
    }
}

/// What a student would find: the state each sample is there to show.
/// `unit` is what a ticket gives: places, or seats.
fn state(a: &Activity, now: OffsetDateTime, tz: &Tz, unit: &str) -> String {
    let booked = a.capacity - a.remaining;
    match a.status {
        ActivityStatus::Archived => return "archived".into(),
        ActivityStatus::Draft => return "draft (not published)".into(),
        ActivityStatus::Published => {}
    }
    if now < a.book_start {
        let minutes = ((a.book_start - now).whole_seconds() + 59).div_euclid(60);
        format!("booking opens {} (in about {minutes} min)", local_time::full(a.book_start, tz))
    } else if now >= a.book_end {
        "booking closed".into()
    } else if a.remaining == 0 {
        format!("sold out ({booked}/{})", a.capacity)
    } else {
        format!(
            "booking open until {}, {} of {} {unit} left",
            local_time::full(a.book_end, tz),
            a.remaining,
            a.capacity
        )
    }
}
