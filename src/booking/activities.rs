//! Activities and their places.

use sqlx::{FromRow, PgConnection};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    ActivityStatus,
    lottery::Mode,
    outbox::{Event, Outbox},
};
use crate::error::AppError;

/// Places are split over this many slot rows (see `activity_slots`): enough
/// that a rush rarely finds them all locked, few enough to scan in a moment.
const SLOTS: i32 = 32;

#[derive(Debug, Clone, FromRow)]
pub struct Activity {
    pub id: i64,
    pub key: String,
    pub name: String,
    pub place: String,
    pub description: String,
    pub poster_id: Option<Uuid>,
    pub book_start: OffsetDateTime,
    pub book_end: OffsetDateTime,
    pub start_at: OffsetDateTime,
    pub end_at: OffsetDateTime,
    pub capacity: i32,
    pub status: ActivityStatus,
    /// Places not yet taken by a live ticket.
    pub remaining: i32,
    /// The ticket page shows a QR code that changes every 30 s, and the door
    /// takes only a current one.
    pub live_qr: bool,
    pub mode: Mode,
    /// The team (社团/部门) it belongs to: its organizers manage it.
    pub team_id: i64,
}

impl Activity {
    pub fn is_published(&self) -> bool {
        self.status == ActivityStatus::Published
    }
}

#[derive(Debug, Clone)]
pub struct NewActivity {
    pub key: String,
    pub name: String,
    pub place: String,
    pub description: String,
    pub book_start: OffsetDateTime,
    pub book_end: OffsetDateTime,
    pub start_at: OffsetDateTime,
    pub end_at: OffsetDateTime,
    pub capacity: i32,
    pub publish: bool,
    /// Chosen at creation; an edit leaves it as it is.
    pub mode: Mode,
}

/// The columns of `Activity`, for `SELECT … FROM activities a`.
pub(crate) const COLUMNS: &str = "a.id, a.key, a.name, a.place, a.description, a.poster_id, a.book_start, a.book_end, \
     a.start_at, a.end_at, a.capacity, a.status, a.live_qr, a.mode, a.team_id, \
     (SELECT coalesce(sum(s.remaining), 0) FROM activity_slots s WHERE s.activity_id = a.id)::int AS remaining";

/// Checks what the database also checks, to say which rule was broken in words.
pub fn validate(new: &NewActivity) -> Result<(), AppError> {
    match check_fields(new).0.first() {
        None => Ok(()),
        Some((field, message)) => Err(AppError::Invalid(format!("{field}: {message}"))),
    }
}

pub async fn create(conn: &mut PgConnection, new: &NewActivity) -> Result<Activity, AppError> {
    validate(new)?;
    let status = if new.publish { ActivityStatus::Published } else { ActivityStatus::Draft };
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO activities (key, name, place, description, book_start, book_end, start_at, end_at, capacity, status, \
         mode) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
    )
    .bind(&new.key)
    .bind(new.name.trim())
    .bind(new.place.trim())
    .bind(new.description.trim())
    .bind(new.book_start)
    .bind(new.book_end)
    .bind(new.start_at)
    .bind(new.end_at)
    .bind(new.capacity)
    .bind(status)
    .bind(new.mode)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            AppError::Invalid(format!("活动代号 {} 已被使用", new.key))
        }
        _ => e.into(),
    })?;
    spread_places(conn, id, new.capacity).await?;
    if new.publish {
        super::lottery::commit_seed(conn, id).await?;
    }
    by_id(conn, id).await?.ok_or(AppError::NotFound)
}

/// Sets the free places of an activity, spread evenly over its slot rows.
/// Every activity has the same slot rows for life, so a ticket's slot always
/// exists when its place is given back. The caller holds the activity (a new
/// row, or all slot rows locked) so no booking runs in between.
pub(crate) async fn spread_places(conn: &mut PgConnection, activity_id: i64, free: i32) -> Result<(), AppError> {
    sqlx::query(
        "INSERT INTO activity_slots (activity_id, slot, remaining) \
         SELECT $1, s, $2 / $3 + CASE WHEN s < $2 % $3 THEN 1 ELSE 0 END FROM generate_series(0, $3 - 1) AS s \
         ON CONFLICT (activity_id, slot) DO UPDATE SET remaining = EXCLUDED.remaining",
    )
    .bind(activity_id)
    .bind(free)
    .bind(SLOTS)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn by_id(conn: &mut PgConnection, id: i64) -> Result<Option<Activity>, AppError> {
    Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM activities a WHERE a.id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?)
}

pub async fn by_key(conn: &mut PgConnection, key: &str) -> Result<Option<Activity>, AppError> {
    Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM activities a WHERE a.key = $1"))
        .bind(key.to_ascii_lowercase())
        .fetch_optional(conn)
        .await?)
}

/// The team an activity belongs to; None when there is no such activity.
/// (The admin console's access check reads this before any handler runs.)
pub async fn team_of(conn: &mut PgConnection, id: i64) -> Result<Option<i64>, AppError> {
    Ok(sqlx::query_scalar("SELECT team_id FROM activities WHERE id = $1").bind(id).fetch_optional(conn).await?)
}

/// Puts an activity in a team (at creation: the column's default is the default team).
pub async fn set_team(conn: &mut PgConnection, id: i64, team_id: i64) -> Result<(), AppError> {
    sqlx::query("UPDATE activities SET team_id = $2, updated_at = now() WHERE id = $1 AND team_id <> $2")
        .bind(id)
        .bind(team_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Turns the live QR on or off; tickets already booked follow at once.
pub async fn set_live_qr(conn: &mut PgConnection, id: i64, live_qr: bool) -> Result<(), AppError> {
    sqlx::query("UPDATE activities SET live_qr = $2, updated_at = now() WHERE id = $1 AND live_qr <> $2")
        .bind(id)
        .bind(live_qr)
        .execute(conn)
        .await?;
    Ok(())
}

/// Every activity, newest first (admin and CLI).
pub async fn all(conn: &mut PgConnection) -> Result<Vec<Activity>, AppError> {
    Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM activities a ORDER BY a.id DESC")).fetch_all(conn).await?)
}

/// At most this many from [`bookable`]; [`bookable_count`] says how many there are in all.
pub const BOOKABLE_AT_MOST: usize = 10;

/// Published activities whose booking has not closed: what students can book now or soon.
pub async fn bookable(conn: &mut PgConnection) -> Result<Vec<Activity>, AppError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM activities a WHERE a.status = 'published' AND a.book_end > now() \
         ORDER BY a.book_start, a.id LIMIT $1"
    ))
    .bind(BOOKABLE_AT_MOST as i64)
    .fetch_all(conn)
    .await?)
}

pub async fn bookable_count(conn: &mut PgConnection) -> Result<usize, AppError> {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM activities WHERE status = 'published' AND book_end > now()")
        .fetch_one(conn)
        .await?;
    Ok(n as usize)
}

/// Publishes a draft. Published stays published; archived cannot come back.
pub async fn publish(conn: &mut PgConnection, id: i64) -> Result<Activity, AppError> {
    let activity = by_id(conn, id).await?.ok_or(AppError::NotFound)?;
    match activity.status {
        ActivityStatus::Published => Ok(activity),
        ActivityStatus::Archived => Err(AppError::Invalid(format!("活动 {} 已归档，不能再发布", activity.key))),
        ActivityStatus::Draft => {
            sqlx::query(
                "UPDATE activities SET status = 'published', updated_at = now() WHERE id = $1 AND status = 'draft'",
            )
            .bind(id)
            .execute(&mut *conn)
            .await?;
            // A lottery's seed is fixed, and its commitment shown, from publication on.
            super::lottery::commit_seed(conn, id).await?;
            by_id(conn, id).await?.ok_or(AppError::NotFound)
        }
    }
}

/// An activity with its ticket counts, for the admin list. `booked` and
/// `checked_in` leave the simulator's test tickets out unless asked to include
/// them; `simulated` counts the live test tickets either way.
#[derive(Debug, Clone, FromRow)]
pub struct Summary {
    #[sqlx(flatten)]
    pub activity: Activity,
    pub booked: i64,
    pub checked_in: i64,
    pub simulated: i64,
    /// The name of its team.
    pub team: String,
}

/// The activities `teams` covers (None: every team), with their counts: an
/// organizer's list and counts never include another team's activities.
pub async fn summaries(
    conn: &mut PgConnection,
    include_test: bool,
    teams: Option<&[i64]>,
) -> Result<Vec<Summary>, AppError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS}, c.booked, c.checked_in, c.simulated, tm.name AS team FROM activities a \
         JOIN teams tm ON tm.id = a.team_id \
         CROSS JOIN LATERAL (SELECT \
             count(*) FILTER (WHERE t.status <> 'cancelled' AND ($1 OR NOT t.simulated)) AS booked, \
             count(*) FILTER (WHERE t.status = 'used' AND ($1 OR NOT t.simulated)) AS checked_in, \
             count(*) FILTER (WHERE t.status <> 'cancelled' AND t.simulated) AS simulated \
             FROM tickets t WHERE t.activity_id = a.id) c \
         WHERE $2::bigint[] IS NULL OR a.team_id = ANY($2) \
         ORDER BY (a.status = 'archived'), a.start_at DESC, a.id DESC"
    ))
    .bind(include_test)
    .bind(teams)
    .fetch_all(conn)
    .await?)
}

/// Why an edit was refused, per field, in words an admin reads.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct EditErrors(pub Vec<(&'static str, String)>);

impl EditErrors {
    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.iter().find(|(f, _)| *f == field).map(|(_, m)| m.as_str())
    }
    /// Keeps the first refusal of a field (the one to fix first).
    pub fn add(&mut self, field: &'static str, message: impl Into<String>) {
        if self.get(field).is_none() {
            self.0.push((field, message.into()));
        }
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Field-level checks shared by create and edit (SPEC §5).
pub fn check_fields(new: &NewActivity) -> EditErrors {
    let mut errors = EditErrors::default();
    let key_ok = !new.key.is_empty()
        && new.key.len() <= 32
        && new.key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && new.key.as_bytes()[0].is_ascii_alphanumeric();
    if !key_ok {
        errors.add("key", "只能用小写字母、数字、- 和 _，以字母或数字开头，最多 32 个字符");
    }
    if new.name.trim().is_empty() || new.name.chars().count() > 100 {
        errors.add("name", "不能为空，最多 100 个字");
    }
    if new.place.trim().is_empty() || new.place.chars().count() > 100 {
        errors.add("place", "不能为空，最多 100 个字");
    }
    if new.description.chars().count() > 5000 {
        errors.add("description", "最多 5000 个字");
    }
    // Forms and the shell refuse such a time as they read it; this keeps any other caller to the same.
    for (field, at) in
        [("book_start", new.book_start), ("book_end", new.book_end), ("start_at", new.start_at), ("end_at", new.end_at)]
    {
        if !crate::local_time::within_years(at) {
            errors.add(field, crate::local_time::Refused::OutOfRange.sentence());
        }
    }
    if new.book_start >= new.book_end {
        errors.add("book_end", "抢票结束时间应晚于抢票开始时间");
    }
    if new.book_end > new.start_at {
        errors.add("start_at", "活动开始时间不能早于抢票结束时间");
    }
    if new.start_at >= new.end_at {
        errors.add("end_at", "活动结束时间应晚于开始时间");
    }
    if !(1..=1_000_000).contains(&new.capacity) {
        errors.add("capacity", "票数应在 1 到 1000000 之间");
    }
    errors
}

#[derive(Debug)]
pub enum EditOutcome {
    Saved(Activity),
    Refused(EditErrors),
}

/// Edits an activity under the rules of SPEC §5: times in order; capacity at
/// least 1 and never below the tickets already booked; once published, the
/// key and the booking start stay. The activity row and all its slot rows are
/// locked (slots in order, as bookings never wait on them) so no booking or
/// cancel slips in between counting tickets and re-spreading the free places.
///
/// The activity row is locked `FOR NO KEY UPDATE`, not `FOR UPDATE`: a booking
/// holding a slot row inserts a ticket, whose foreign key takes `FOR KEY SHARE`
/// on the activity row. `FOR UPDATE` conflicts with that, so the edit (waiting
/// for the booking's slot) and the booking (waiting for the edit's activity
/// row) would wait for each other; `FOR NO KEY UPDATE` does not, and the edit
/// changes no key of a row that has tickets (a published activity keeps its key).
///
/// Places a raised capacity frees go first to the waiting list, in join
/// order (each promotion recorded in this transaction), and the saved edit
/// is recorded as a fact, before and after, for holders to hear of it.
///
/// A lottery is sealed at its close (README "The lottery"): from then on its
/// close does not move, and until its draw its places do not shrink.
pub async fn update(
    conn: &mut PgConnection,
    outbox: &impl Outbox,
    id: i64,
    new: &NewActivity,
) -> Result<EditOutcome, AppError> {
    let mut new = new.clone();
    let new = &mut new;
    let mut errors = check_fields(new);
    // Before the activity row: the draw's lock order.
    let closed_lottery = super::lottery::closed_for_edit(conn, id).await?;
    let current: Option<(ActivityStatus, String, OffsetDateTime)> =
        sqlx::query_as("SELECT status, key, book_start FROM activities WHERE id = $1 FOR NO KEY UPDATE")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
    let (status, key, book_start) = current.ok_or(AppError::NotFound)?;
    let before = by_id(conn, id).await?.ok_or(AppError::NotFound)?;
    sqlx::query("SELECT slot FROM activity_slots WHERE activity_id = $1 ORDER BY slot FOR UPDATE")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    let booked: i64 =
        sqlx::query_scalar("SELECT count(*) FROM tickets WHERE activity_id = $1 AND status <> 'cancelled'")
            .bind(id)
            .fetch_one(&mut *conn)
            .await?;
    if i64::from(new.capacity) < booked {
        errors.add("capacity", format!("已经抢出 {booked} 张票，票数不能少于 {booked}"));
    }
    if status != ActivityStatus::Draft {
        if new.key != key {
            errors.add("key", "活动发布后不能再改代号");
        }
        // Forms show minutes; a time stored with seconds (from the shell) is
        // unchanged when the form sends back the same minute.
        if same_minute(new.book_start, book_start) {
            new.book_start = book_start;
        } else {
            errors.add("book_start", "活动发布后不能再改抢票开始时间");
        }
    }
    if let Some(closed) = closed_lottery {
        if same_minute(new.book_end, closed.book_end) {
            new.book_end = closed.book_end;
        } else {
            errors.add("book_end", "抽签报名已经截止，报名池已封存：截止时间不能再改");
        }
        if !closed.drawn && new.capacity < closed.capacity {
            errors.add("capacity", format!("抽签报名已经截止：抽签前票数只能增加，不能少于 {}", closed.capacity));
        }
    }
    if !errors.is_empty() {
        return Ok(EditOutcome::Refused(errors));
    }
    let result = sqlx::query(
        "UPDATE activities SET key = $2, name = $3, place = $4, description = $5, book_start = $6, book_end = $7, \
         start_at = $8, end_at = $9, capacity = $10, updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(&new.key)
    .bind(new.name.trim())
    .bind(new.place.trim())
    .bind(new.description.trim())
    .bind(new.book_start)
    .bind(new.book_end)
    .bind(new.start_at)
    .bind(new.end_at)
    .bind(new.capacity)
    .execute(&mut *conn)
    .await;
    if let Err(sqlx::Error::Database(e)) = &result
        && e.is_unique_violation()
    {
        errors.add("key", format!("代号 {} 已被其他活动使用", new.key));
        return Ok(EditOutcome::Refused(errors));
    }
    result?;
    let free = i64::from(new.capacity) - booked;
    let promoted = if free > 0 { super::waiting::promote(conn, outbox, id, free, 0).await? } else { 0 };
    spread_places(conn, id, (free - promoted) as i32).await?;
    let after = by_id(conn, id).await?.ok_or(AppError::NotFound)?;
    outbox.record(conn, Event::ActivityChanged { before, after: after.clone() }).await?;
    Ok(EditOutcome::Saved(after))
}

/// Sets an activity's capacity outside an edit (a seat activity's blocked
/// seats are not offered, so blocking one takes a place away), under the
/// edit's locks and rules: the activity row, then its slot rows in order;
/// never below the tickets booked (then `Err(booked)` and nothing changes);
/// places it frees go to the waiting list first.
pub(crate) async fn resize(
    conn: &mut PgConnection,
    outbox: &impl Outbox,
    id: i64,
    capacity: i32,
) -> Result<Result<(), i64>, AppError> {
    sqlx::query("SELECT 1 FROM activities WHERE id = $1 FOR NO KEY UPDATE").bind(id).execute(&mut *conn).await?;
    sqlx::query("SELECT slot FROM activity_slots WHERE activity_id = $1 ORDER BY slot FOR UPDATE")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    let booked: i64 =
        sqlx::query_scalar("SELECT count(*) FROM tickets WHERE activity_id = $1 AND status <> 'cancelled'")
            .bind(id)
            .fetch_one(&mut *conn)
            .await?;
    if i64::from(capacity) < booked {
        return Ok(Err(booked));
    }
    sqlx::query("UPDATE activities SET capacity = $2, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(capacity)
        .execute(&mut *conn)
        .await?;
    let free = i64::from(capacity) - booked;
    let promoted = if free > 0 { super::waiting::promote(conn, outbox, id, free, 0).await? } else { 0 };
    spread_places(conn, id, (free - promoted) as i32).await?;
    Ok(Ok(()))
}

fn same_minute(a: OffsetDateTime, b: OffsetDateTime) -> bool {
    a.unix_timestamp().div_euclid(60) == b.unix_timestamp().div_euclid(60)
}

/// Archives an activity: booking closes and it leaves the students' lists.
pub async fn archive(conn: &mut PgConnection, outbox: &impl Outbox, id: i64) -> Result<Activity, AppError> {
    let before = by_id(conn, id).await?.ok_or(AppError::NotFound)?;
    outbox.record(conn, Event::ActivityArchived { before }).await?;
    sqlx::query("UPDATE activities SET status = 'archived', updated_at = now() WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    by_id(conn, id).await?.ok_or(AppError::NotFound)
}

pub async fn set_poster(conn: &mut PgConnection, id: i64, image: Uuid) -> Result<(), AppError> {
    let done = sqlx::query("UPDATE activities SET poster_id = $2, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(image)
        .execute(conn)
        .await?;
    if done.rows_affected() == 0 {
        return Err(AppError::NotFound);
    }
    Ok(())
}

/// Removes an activity that never had a ticket (its slot rows go with it).
/// Any ticket, even a cancelled one, is history an organiser may look for, so
/// such an activity stays. (`serve --demo` uses it on its own samples only.)
pub async fn delete_if_never_booked(conn: &mut PgConnection, activity_id: i64) -> Result<bool, AppError> {
    let deleted = sqlx::query(
        "DELETE FROM activities a WHERE a.id = $1 AND NOT EXISTS (SELECT 1 FROM tickets t WHERE t.activity_id = a.id)",
    )
    .bind(activity_id)
    .execute(conn)
    .await?;
    Ok(deleted.rows_affected() == 1)
}
