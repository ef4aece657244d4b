//! Lottery mode (抽签): register during the booking window, one verifiable
//! draw at `book_end` (README "The lottery"; the arithmetic is in [`proof`]).
//!
//! Exactly once, on any number of instances: at the close the pool is sealed
//! — its hash and size stored, never to change — under the activity's
//! `lotteries` row locked `FOR UPDATE`, and the draw (at once, or when an
//! admin confirms the announced public value) ranks that pool under the same
//! lock, doing nothing if `drawn_at` is set. A registration holds that row
//! `FOR SHARE` while it checks the clock and inserts, so the seal waits for
//! registrations in flight and every one that was accepted is in the pool;
//! one arriving after the seal sees `sealed_at`.
//!
//! The simulator's test students never share a pool with real students: a
//! test student is refused a lottery a real student has registered for, and
//! the seal leaves out any test registration when the pool has a real one.

pub mod proof;

use rand::Rng;
use sqlx::{FromRow, PgConnection};
use time::OffsetDateTime;

use super::outbox::{Event, Outbox};
use super::{
    students::{TEST_OPENID_PREFIX, is_test},
    tickets::new_code,
};
use crate::error::AppError;

/// How an activity gives its places, chosen at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum Mode {
    /// First come, first served (抢票).
    #[default]
    Rush,
    /// Register, then a draw at `book_end` (抽签).
    Lottery,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Rush => "rush",
            Mode::Lottery => "lottery",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Mode::Rush => "抢票（先到先得）",
            Mode::Lottery => "抽签",
        }
    }

    pub fn parse(text: &str) -> Option<Mode> {
        match text.trim() {
            "" | "rush" => Some(Mode::Rush),
            "lottery" => Some(Mode::Lottery),
            _ => None,
        }
    }
}

/// The longest public value (announced or confirmed).
pub const MAX_PUBLIC_VALUE: usize = 200;

/// Makes the lottery's secret seed and its commitment, when a lottery
/// activity is published. Publishing again changes nothing.
pub async fn commit_seed(conn: &mut PgConnection, activity_id: i64) -> Result<(), AppError> {
    let seed: [u8; 32] = rand::rng().random();
    sqlx::query(
        "INSERT INTO lotteries (activity_id, server_seed, commitment) \
         SELECT id, $2, $3 FROM activities WHERE id = $1 AND mode = 'lottery' ON CONFLICT DO NOTHING",
    )
    .bind(activity_id)
    .bind(&seed[..])
    .bind(proof::commitment(&seed))
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug)]
pub enum EntryOutcome {
    Entered {
        activity_name: String,
        /// For the reply's hint on how to withdraw.
        key: String,
        eid: String,
        /// The entry's secret (hex), which only this student is given.
        secret: String,
        close_at: OffsetDateTime,
    },
    AlreadyEntered {
        activity_name: String,
        eid: String,
        secret: String,
        close_at: OffsetDateTime,
    },
    /// The pool is sealed (booking ended): too late.
    Closed,
    /// A simulator test student, and a real student has registered: test
    /// students rehearse only on a lottery no real student is in.
    RealStudentsOnly {
        activity_name: String,
    },
}

/// The row a registration or withdrawal holds `FOR SHARE` (module docs).
#[derive(FromRow)]
struct Open {
    server_seed: Vec<u8>,
    name: String,
    key: String,
    book_end: OffsetDateTime,
    open: bool,
}

async fn hold_open(conn: &mut PgConnection, activity_id: i64) -> Result<Option<Open>, AppError> {
    // clock_timestamp(), not now(): the clock when the lock is held, not when
    // the transaction began.
    Ok(sqlx::query_as(
        "SELECT l.server_seed, a.name, a.key, a.book_end, \
         (l.sealed_at IS NULL AND a.book_end > clock_timestamp() AND a.status = 'published') AS open \
         FROM lotteries l JOIN activities a ON a.id = l.activity_id WHERE l.activity_id = $1 FOR SHARE OF l",
    )
    .bind(activity_id)
    .fetch_optional(conn)
    .await?
    .filter(|o: &Open| o.open))
}

/// Whether a real student (not one of the simulator's test students) has
/// registered for the lottery.
async fn has_real_entrant(conn: &mut PgConnection, activity_id: i64) -> Result<bool, AppError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM lottery_entries WHERE activity_id = $1 AND NOT starts_with(openid, $2))",
    )
    .bind(activity_id)
    .bind(TEST_OPENID_PREFIX)
    .fetch_one(conn)
    .await?)
}

/// Registers `student_id` (bound to `openid`): once per student ID and per
/// WeChat account. The caller has checked the booking window and the no-show rule.
pub async fn enter(
    conn: &mut PgConnection,
    activity_id: i64,
    student_id: &str,
    openid: &str,
) -> Result<EntryOutcome, AppError> {
    let Some(open) = hold_open(conn, activity_id).await? else {
        return Ok(EntryOutcome::Closed);
    };
    let (activity_name, close_at) = (open.name, open.book_end);
    // A courtesy to the admin rehearsing: the seal keeps a test student out of
    // a real pool anyway, even one that raced a real student's registration.
    if is_test(openid) && has_real_entrant(conn, activity_id).await? {
        return Ok(EntryOutcome::RealStudentsOnly { activity_name });
    }
    let secret: [u8; proof::SECRET_BYTES] = rand::rng().random();
    let eid = proof::eid(&open.server_seed, &secret, student_id);
    let inserted = sqlx::query(
        "INSERT INTO lottery_entries (activity_id, student_id, openid, eid, secret) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT DO NOTHING",
    )
    .bind(activity_id)
    .bind(student_id)
    .bind(openid)
    .bind(&eid)
    .bind(&secret[..])
    .execute(&mut *conn)
    .await?;
    if inserted.rows_affected() == 1 {
        let secret = hex::encode(secret);
        return Ok(EntryOutcome::Entered { activity_name, key: open.key, eid, secret, close_at });
    }
    // This student ID, or this WeChat account under the ID it was bound to before.
    let (eid, secret): (String, Option<Vec<u8>>) = sqlx::query_as(
        "SELECT eid, secret FROM lottery_entries WHERE activity_id = $1 AND (student_id = $2 OR openid = $3) LIMIT 1",
    )
    .bind(activity_id)
    .bind(student_id)
    .bind(openid)
    .fetch_one(&mut *conn)
    .await?;
    let secret = secret.map(hex::encode).unwrap_or_default();
    Ok(EntryOutcome::AlreadyEntered { activity_name, eid, secret, close_at })
}

#[derive(Debug)]
pub enum WithdrawOutcome {
    Withdrawn { activity_name: String },
    NotEntered,
    Closed,
    NoSuchActivity,
}

/// Takes a registration back, until the close.
pub async fn withdraw(
    conn: &mut PgConnection,
    key: &str,
    student_id: &str,
    openid: &str,
) -> Result<WithdrawOutcome, AppError> {
    let id: Option<i64> =
        sqlx::query_scalar("SELECT id FROM activities WHERE key = $1 AND status <> 'draft' AND mode = 'lottery'")
            .bind(key.to_ascii_lowercase())
            .fetch_optional(&mut *conn)
            .await?;
    let Some(id) = id else {
        return Ok(WithdrawOutcome::NoSuchActivity);
    };
    let Some(open) = hold_open(conn, id).await? else {
        return Ok(WithdrawOutcome::Closed);
    };
    let gone = sqlx::query("DELETE FROM lottery_entries WHERE activity_id = $1 AND (student_id = $2 OR openid = $3)")
        .bind(id)
        .bind(student_id)
        .bind(openid)
        .execute(&mut *conn)
        .await?;
    Ok(if gone.rows_affected() == 0 {
        WithdrawOutcome::NotEntered
    } else {
        WithdrawOutcome::Withdrawn { activity_name: open.name }
    })
}

/// Withdraws the simulator's test students' registrations under
/// `student_id` from the lotteries still open, when a real student claims
/// the ID (their tickets are cancelled then too). Each under its lottery's
/// lock, as a student's own withdrawal, so a sealed pool never loses an entry;
/// a sealed pool's test entry stays in it, and the draw gives it nothing
/// (see [`draw`]).
pub async fn withdraw_test_entries(conn: &mut PgConnection, student_id: &str) -> Result<(), AppError> {
    let entered: Vec<i64> = sqlx::query_scalar(
        "SELECT activity_id FROM lottery_entries WHERE student_id = $1 AND starts_with(openid, $2) AND rank IS NULL",
    )
    .bind(student_id)
    .bind(TEST_OPENID_PREFIX)
    .fetch_all(&mut *conn)
    .await?;
    for activity_id in entered {
        if hold_open(conn, activity_id).await?.is_some() {
            sqlx::query(
                "DELETE FROM lottery_entries WHERE activity_id = $1 AND student_id = $2 AND starts_with(openid, $3)",
            )
            .bind(activity_id)
            .bind(student_id)
            .bind(TEST_OPENID_PREFIX)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// A student's registration, for `查票` and their pages.
#[derive(Debug, Clone, FromRow)]
pub struct Entry {
    pub activity_id: i64,
    pub activity_key: String,
    pub activity_name: String,
    pub start_at: OffsetDateTime,
    pub book_end: OffsetDateTime,
    pub eid: String,
    /// The entry's secret (hex): `None` for an entry drawn before entries had one.
    pub secret: Option<String>,
    /// Set by the draw.
    pub rank: Option<i32>,
    pub won: bool,
    /// The activity was called off (archived) before its draw.
    pub called_off: bool,
}

const ENTRY_COLUMNS: &str = "a.id AS activity_id, a.key AS activity_key, a.name AS activity_name, a.start_at, \
     a.book_end, e.eid, encode(e.secret, 'hex') AS secret, e.rank, (e.ticket_id IS NOT NULL) AS won, \
     (a.status = 'archived' AND e.rank IS NULL) AS called_off \
     FROM lottery_entries e JOIN activities a ON a.id = e.activity_id";

/// The registrations of a student ID still waiting for their draw, soonest first.
pub async fn undrawn_entries(conn: &mut PgConnection, student_id: &str) -> Result<Vec<Entry>, AppError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {ENTRY_COLUMNS} WHERE e.student_id = $1 AND e.rank IS NULL AND a.status = 'published' \
         ORDER BY a.book_end, a.id"
    ))
    .bind(student_id)
    .fetch_all(conn)
    .await?)
}

/// Every registration of a student ID, drawn or not, newest activity first.
pub async fn entries_of_student(conn: &mut PgConnection, student_id: &str) -> Result<Vec<Entry>, AppError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {ENTRY_COLUMNS} WHERE e.student_id = $1 AND a.status <> 'draft' ORDER BY a.start_at DESC, a.id"
    ))
    .bind(student_id)
    .fetch_all(conn)
    .await?)
}

/// A student ID's registration for one activity, drawn or not.
pub async fn entry_of(conn: &mut PgConnection, activity_id: i64, student_id: &str) -> Result<Option<Entry>, AppError> {
    Ok(sqlx::query_as(&format!("SELECT {ENTRY_COLUMNS} WHERE e.activity_id = $1 AND e.student_id = $2"))
        .bind(activity_id)
        .bind(student_id)
        .fetch_optional(conn)
        .await?)
}

/// Where a lottery stands, for its pages.
#[derive(Debug, Clone, FromRow)]
pub struct State {
    pub commitment: String,
    pub committed_at: OffsetDateTime,
    pub public_value_announced: Option<String>,
    pub public_value: Option<String>,
    pub public_value_confirmed_by: Option<String>,
    pub public_value_confirmed_at: Option<OffsetDateTime>,
    /// Registrations so far (those that would be the pool), or the sealed pool.
    pub entries: i64,
    /// Stored when the pool was sealed, at the close.
    pub pool_hash: Option<String>,
    pub sealed_at: Option<OffsetDateTime>,
    pub winners: Option<i32>,
    pub drawn_at: Option<OffsetDateTime>,
    /// Booking has ended.
    pub closed: bool,
}

impl State {
    /// The draw waits for an admin to confirm the announced public value.
    pub fn awaits_public_value(&self) -> bool {
        self.drawn_at.is_none() && self.closed && self.public_value_announced.is_some() && self.public_value.is_none()
    }
}

pub async fn state(conn: &mut PgConnection, activity_id: i64) -> Result<Option<State>, AppError> {
    // Before the seal: the real registrations, or, when there are none, the
    // test students' (a rehearsal) — what the seal would take.
    Ok(sqlx::query_as(
        "SELECT l.commitment, l.committed_at, l.public_value_announced, l.public_value, l.public_value_confirmed_by, \
         l.public_value_confirmed_at, coalesce(l.entries, \
             (SELECT coalesce(nullif(count(*) FILTER (WHERE NOT starts_with(e.openid, $2)), 0), count(*)) \
              FROM lottery_entries e WHERE e.activity_id = l.activity_id))::bigint AS entries, \
         l.pool_hash, l.sealed_at, l.winners, l.drawn_at, a.book_end <= now() AS closed \
         FROM lotteries l JOIN activities a ON a.id = l.activity_id WHERE l.activity_id = $1",
    )
    .bind(activity_id)
    .bind(TEST_OPENID_PREFIX)
    .fetch_optional(conn)
    .await?)
}

#[derive(FromRow)]
struct Drawn {
    key: String,
    commitment: String,
    server_seed: Vec<u8>,
    pool_hash: String,
    public_value: Option<String>,
    public_value_announced: Option<String>,
    entries: i32,
    capacity: i32,
}

/// What the draw published, rebuilt from the stored draw (`None` before it).
pub async fn published(conn: &mut PgConnection, activity_id: i64) -> Result<Option<proof::Published>, AppError> {
    let drawn: Option<Drawn> = sqlx::query_as(
        "SELECT a.key, l.commitment, l.server_seed, l.pool_hash, l.public_value, l.public_value_announced, \
         l.entries, l.capacity FROM lotteries l JOIN activities a ON a.id = l.activity_id \
         WHERE l.activity_id = $1 AND l.drawn_at IS NOT NULL",
    )
    .bind(activity_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(d) = drawn else {
        return Ok(None);
    };
    let eids: Vec<String> =
        sqlx::query_scalar("SELECT eid FROM lottery_entries WHERE activity_id = $1 AND rank IS NOT NULL ORDER BY rank")
            .bind(activity_id)
            .fetch_all(conn)
            .await?;
    Ok(Some(proof::Published {
        activity: d.key,
        commitment: d.commitment,
        server_seed: hex::encode(d.server_seed),
        pool_hash: d.pool_hash,
        public_value: d.public_value,
        public_value_announced: d.public_value_announced,
        entries: d.entries as usize,
        capacity: d.capacity as usize,
        eids,
    }))
}

/// Announces (or, with `None`, withdraws) the public value before the close.
pub async fn announce_public_value(
    conn: &mut PgConnection,
    activity_id: i64,
    value: Option<&str>,
) -> Result<(), AppError> {
    let value = checked_value(value)?;
    // Frozen with the pool at the close: the lottery row's lock orders this
    // after a seal in flight, and the clock is read once that lock is held.
    let done = sqlx::query(
        "UPDATE lotteries l SET public_value_announced = $2 FROM activities a \
         WHERE l.activity_id = $1 AND a.id = l.activity_id AND l.sealed_at IS NULL \
         AND a.book_end > clock_timestamp()",
    )
    .bind(activity_id)
    .bind(value)
    .execute(conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(AppError::Invalid("报名已经截止：公开值只能在截止前公布。".into()));
    }
    Ok(())
}

fn checked_value(value: Option<&str>) -> Result<Option<&str>, AppError> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        Some(v) if v.chars().count() > MAX_PUBLIC_VALUE || v.chars().any(char::is_control) => {
            Err(AppError::Invalid(format!("公开值最多 {MAX_PUBLIC_VALUE} 个字，不能换行。")))
        }
        other => Ok(other),
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum DrawOutcome {
    Drawn {
        entries: usize,
        winners: usize,
    },
    AlreadyDrawn,
    /// Booking has not ended yet (or the activity was archived: called off).
    NotYet,
    /// A public value was announced and no admin has confirmed it yet.
    AwaitsPublicValue,
    NotALottery,
}

/// After the close: an admin confirms the announced public value (as finally
/// known, e.g. with the lottery numbers now drawn), and the draw runs at once.
pub async fn confirm_public_value(
    conn: &mut PgConnection,
    outbox: &impl Outbox,
    activity_id: i64,
    value: &str,
    admin: &str,
) -> Result<DrawOutcome, AppError> {
    let value = checked_value(Some(value))?.ok_or_else(|| AppError::Invalid("请填写公开值。".into()))?;
    let done = sqlx::query(
        "UPDATE lotteries l SET public_value = $2, public_value_confirmed_by = $3, public_value_confirmed_at = now() \
         FROM activities a WHERE l.activity_id = $1 AND a.id = l.activity_id AND l.drawn_at IS NULL \
         AND l.public_value_announced IS NOT NULL AND a.book_end <= now()",
    )
    .bind(activity_id)
    .bind(value)
    .bind(admin)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(AppError::Invalid("只有截止后、抽签前，且公布过公开值的抽签才需要确认公开值。".into()));
    }
    draw(conn, outbox, activity_id).await
}

/// Seals the pools of lotteries whose booking has ended and runs the draws
/// that are due (the clock's sweep calls this on every instance; a
/// lottery another instance holds is skipped). A lottery waiting for its
/// public value is sealed now and drawn when an admin confirms the value.
pub async fn draw_due(conn: &mut PgConnection, outbox: &impl Outbox) -> Result<usize, AppError> {
    let due: Vec<(i64, bool)> = sqlx::query_as(
        "SELECT l.activity_id, (l.public_value_announced IS NULL OR l.public_value IS NOT NULL) AS ready \
         FROM lotteries l JOIN activities a ON a.id = l.activity_id \
         WHERE l.drawn_at IS NULL AND a.status = 'published' AND a.book_end <= now() \
         AND (l.sealed_at IS NULL OR l.public_value_announced IS NULL OR l.public_value IS NOT NULL) \
         ORDER BY a.book_end FOR UPDATE OF l SKIP LOCKED",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut drawn = 0;
    for (id, ready) in due {
        if !ready {
            seal(conn, id).await?;
        } else if matches!(draw(conn, outbox, id).await?, DrawOutcome::Drawn { .. }) {
            drawn += 1;
        }
    }
    Ok(drawn)
}

/// What sealing found, or found sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub entries: usize,
    pub pool_hash: String,
}

#[derive(FromRow)]
struct Sealing {
    entries: Option<i32>,
    pool_hash: Option<String>,
    closed: bool,
    published: bool,
}

/// Seals a lottery's pool once booking has ended (README "The lottery"):
/// leaves out the test students' registrations when a real student has
/// registered, then stores the pool's hash and size, which never change
/// afterwards. Holds the lottery's row `FOR UPDATE`, so registrations in
/// flight are waited for and none comes after. `None` while booking is open
/// (or the activity is not published); the stored seal when already sealed.
pub async fn seal(conn: &mut PgConnection, activity_id: i64) -> Result<Option<Sealed>, AppError> {
    sqlx::query("SELECT 1 FROM lotteries WHERE activity_id = $1 FOR UPDATE")
        .bind(activity_id)
        .execute(&mut *conn)
        .await?;
    // A statement of its own, after the lock: it sees an edit of the close
    // that committed while this waited (a locking read would not re-read the
    // joined activity row).
    let sealing: Option<Sealing> = sqlx::query_as(
        "SELECT l.entries, l.pool_hash, a.book_end <= clock_timestamp() AS closed, \
         a.status = 'published' AS published \
         FROM lotteries l JOIN activities a ON a.id = l.activity_id WHERE l.activity_id = $1",
    )
    .bind(activity_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(s) = sealing else { return Ok(None) };
    if let (Some(entries), Some(pool_hash)) = (s.entries, s.pool_hash) {
        return Ok(Some(Sealed { entries: entries as usize, pool_hash }));
    }
    if !s.closed || !s.published {
        return Ok(None);
    }
    if has_real_entrant(conn, activity_id).await? {
        let left_out = sqlx::query("DELETE FROM lottery_entries WHERE activity_id = $1 AND starts_with(openid, $2)")
            .bind(activity_id)
            .bind(TEST_OPENID_PREFIX)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        if left_out > 0 {
            let detail = format!("活动 {activity_id}：{left_out} 个测试学生的报名不进真实同学的报名池");
            crate::audit::record_for(conn, activity_id, "系统", "封存抽签报名池", &detail).await?;
        }
    }
    let eids: Vec<String> = sqlx::query_scalar("SELECT eid FROM lottery_entries WHERE activity_id = $1")
        .bind(activity_id)
        .fetch_all(&mut *conn)
        .await?;
    let sealed = Sealed { entries: eids.len(), pool_hash: proof::pool_hash(&eids) };
    sqlx::query(
        "UPDATE lotteries SET entries = $2, pool_hash = $3, sealed_at = clock_timestamp() WHERE activity_id = $1",
    )
    .bind(activity_id)
    .bind(sealed.entries as i32)
    .bind(&sealed.pool_hash)
    .execute(&mut *conn)
    .await?;
    Ok(Some(sealed))
}

/// A lottery whose booking has ended, as an edit of its activity finds it.
#[derive(Debug, Clone, FromRow)]
pub struct ClosedLottery {
    pub book_end: OffsetDateTime,
    pub capacity: i32,
    pub drawn: bool,
    closed: bool,
}

/// What an edit of a lottery activity meets once booking has ended: the
/// close and the places as they were then. `None` while registration is open
/// (or for a draft or a rush activity). Locks the lottery's row first — the
/// order the draw takes, lottery then activity — whether closed or not, so an
/// edit and the seal happen one after the other: a seal waiting for the edit
/// reads the close the edit saved.
pub async fn closed_for_edit(conn: &mut PgConnection, activity_id: i64) -> Result<Option<ClosedLottery>, AppError> {
    sqlx::query("SELECT 1 FROM lotteries WHERE activity_id = $1 FOR UPDATE")
        .bind(activity_id)
        .execute(&mut *conn)
        .await?;
    // Read once the lock is held, so a seal that just committed is seen.
    let found: Option<ClosedLottery> = sqlx::query_as(
        "SELECT a.book_end, a.capacity, l.drawn_at IS NOT NULL AS drawn, \
         (l.sealed_at IS NOT NULL OR a.book_end <= clock_timestamp()) AS closed \
         FROM lotteries l JOIN activities a ON a.id = l.activity_id WHERE l.activity_id = $1",
    )
    .bind(activity_id)
    .fetch_optional(conn)
    .await?;
    Ok(found.filter(|c| c.closed))
}

#[derive(FromRow)]
struct Drawing {
    server_seed: Vec<u8>,
    drawn: bool,
    announced: bool,
    public_value: Option<String>,
    capacity: i32,
    published: bool,
}

#[derive(FromRow)]
struct Registered {
    student_id: String,
    openid: String,
    eid: String,
    /// A test student's registration whose student ID a real student has
    /// claimed since the seal: it keeps its rank but gets neither a ticket nor
    /// a place in line, so no real student inherits a test student's claim.
    void: bool,
}

/// The draw (README "The lottery"): seals the pool if that has not happened,
/// ranks it, issues the first `capacity` their tickets, puts the rest on the
/// waiting list in draw order and tells everyone, in the caller's
/// transaction. At most once.
pub async fn draw(conn: &mut PgConnection, outbox: &impl Outbox, activity_id: i64) -> Result<DrawOutcome, AppError> {
    sqlx::query("SELECT 1 FROM lotteries WHERE activity_id = $1 FOR UPDATE")
        .bind(activity_id)
        .execute(&mut *conn)
        .await?;
    // After the lock, in a statement of its own: the capacity an edit saved while this waited.
    let drawing: Option<Drawing> = sqlx::query_as(
        "SELECT l.server_seed, l.drawn_at IS NOT NULL AS drawn, l.public_value_announced IS NOT NULL AS announced, \
         l.public_value, a.capacity, a.status = 'published' AS published \
         FROM lotteries l JOIN activities a ON a.id = l.activity_id WHERE l.activity_id = $1",
    )
    .bind(activity_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(d) = drawing else {
        return Ok(DrawOutcome::NotALottery);
    };
    if d.drawn {
        return Ok(DrawOutcome::AlreadyDrawn);
    }
    // An activity archived before its draw is called off, sealed or not.
    let Some(sealed) = seal(conn, activity_id).await?.filter(|_| d.published) else {
        return Ok(DrawOutcome::NotYet);
    };
    if d.announced && d.public_value.is_none() {
        return Ok(DrawOutcome::AwaitsPublicValue);
    }
    // The waiting list's rule (booking/waiting.rs): its changes hold the activity row.
    sqlx::query("SELECT id FROM activities WHERE id = $1 FOR NO KEY UPDATE")
        .bind(activity_id)
        .execute(&mut *conn)
        .await?;
    let pool: Vec<Registered> = sqlx::query_as(
        "SELECT e.student_id, e.openid, e.eid, (starts_with(e.openid, $2) AND NOT EXISTS \
             (SELECT 1 FROM students s WHERE s.openid = e.openid AND s.student_id = e.student_id)) AS void \
         FROM lottery_entries e WHERE e.activity_id = $1",
    )
    .bind(activity_id)
    .bind(TEST_OPENID_PREFIX)
    .fetch_all(&mut *conn)
    .await?;
    let eids: Vec<String> = pool.iter().map(|r| r.eid.clone()).collect();
    if proof::pool_hash(&eids) != sealed.pool_hash || eids.len() != sealed.entries {
        // Nothing registers or withdraws after the seal; were it otherwise,
        // drawing would publish a pool other than the one committed to.
        return Err(AppError::Internal(format!("lottery {activity_id}: the pool changed after it was sealed")));
    }
    let order = proof::ranked(&proof::draw_seed(&d.server_seed, &sealed.pool_hash, d.public_value.as_deref()), &eids);
    let by_eid: std::collections::HashMap<&str, &Registered> = pool.iter().map(|r| (r.eid.as_str(), r)).collect();
    let ranked: Vec<&Registered> = order.iter().map(|eid| by_eid[eid.as_str()]).filter(|r| !r.void).collect();
    let capacity = d.capacity as usize;
    let (winners, others) = ranked.split_at(capacity.min(ranked.len()));

    let column = |rows: &[&Registered], f: fn(&Registered) -> String| rows.iter().map(|r| f(r)).collect::<Vec<_>>();
    let codes: Vec<String> = winners.iter().map(|_| new_code()).collect();
    let simulated: Vec<bool> = winners.iter().map(|r| is_test(&r.openid)).collect();
    // Places are recorded against slot 0, as for a raised capacity; the free
    // ones are spread again below.
    let issued: Vec<(i64, String)> = sqlx::query_as(
        "INSERT INTO tickets (code, activity_id, student_id, slot, simulated, openid) \
         SELECT c, $1, s, 0, t, o FROM unnest($2::text[], $3::text[], $4::bool[], $5::text[]) AS u(c, s, t, o) \
         ON CONFLICT DO NOTHING RETURNING id, student_id",
    )
    .bind(activity_id)
    .bind(&codes)
    .bind(column(winners, |r| r.student_id.clone()))
    .bind(&simulated)
    .bind(column(winners, |r| r.openid.clone()))
    .fetch_all(&mut *conn)
    .await?;
    let ranks: Vec<i32> = (1..=order.len() as i32).collect();
    let winning: std::collections::HashSet<&str> = winners.iter().map(|w| w.eid.as_str()).collect();
    let won: Vec<bool> = order.iter().map(|eid| winning.contains(eid.as_str())).collect();
    sqlx::query(
        "UPDATE lottery_entries e SET rank = u.rank, \
         ticket_id = CASE WHEN u.won THEN (SELECT t.id FROM tickets t WHERE t.activity_id = e.activity_id \
             AND t.student_id = e.student_id AND t.status = 'valid') END \
         FROM unnest($2::text[], $3::int[], $4::bool[]) AS u(eid, rank, won) WHERE e.activity_id = $1 AND e.eid = u.eid",
    )
    .bind(activity_id)
    .bind(&order)
    .bind(&ranks)
    .bind(&won)
    .execute(&mut *conn)
    .await?;
    // The rest queue in draw order: the line's order is its ids'.
    let queued: Vec<(i64, String, i64)> = sqlx::query_as(
        "WITH q AS (INSERT INTO waiting_list (activity_id, student_id, openid) \
             SELECT $1, s, o FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS u(s, o, n) ORDER BY n \
             ON CONFLICT DO NOTHING RETURNING id, student_id) \
         SELECT id, student_id, row_number() OVER (ORDER BY id) FROM q",
    )
    .bind(activity_id)
    .bind(column(others, |r| r.student_id.clone()))
    .bind(column(others, |r| r.openid.clone()))
    .fetch_all(&mut *conn)
    .await?;
    super::activities::spread_places(conn, activity_id, d.capacity - issued.len() as i32).await?;
    sqlx::query("UPDATE lotteries SET winners = $2, capacity = $3, drawn_at = now() WHERE activity_id = $1")
        .bind(activity_id)
        .bind(issued.len() as i32)
        .bind(d.capacity)
        .execute(&mut *conn)
        .await?;
    let winners = issued.len();
    outbox.record(conn, Event::LotteryDrawn { activity_id, won: issued, queued }).await?;
    Ok(DrawOutcome::Drawn { entries: order.len(), winners })
}
