//! What an admin does to an activity's seating (README "Seats"): read it
//! back for the form, change it while a draft (fixed once published), and
//! hold seats back for guests or a camera platform.
//!
//! Blocked seats are not offered, so a seat activity's capacity is its hall's
//! seats less those blocked: blocking one takes a place away (refused below
//! the tickets already booked), unblocking one gives it back (to the waiting
//! list first). Without that, a sold-out hall with a blocked seat would hold
//! a ticket the sweep can never place.

use sqlx::{FromRow, PgConnection};
use time::OffsetDateTime;

use super::{Place, Plan, Seating, ZoneQuota, seat_parts, set_up};
use crate::{
    booking::{ActivityStatus, activities, outbox::Outbox},
    error::AppError,
};

/// The refusal of a changed seating once the activity is published.
pub const FIXED: &str = "活动发布后，座位方式、分区和场馆都不能再改。";

/// An activity's seating as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setup {
    pub plan: Plan,
    /// `None`: choices close at the booking end.
    pub deadline: Option<OffsetDateTime>,
}

pub async fn setup_of(conn: &mut PgConnection, activity_id: i64) -> Result<Setup, AppError> {
    let found: Option<(Seating, Option<String>, Option<OffsetDateTime>)> = sqlx::query_as(
        "SELECT a.seating, h.name, a.seat_deadline FROM activities a LEFT JOIN halls h ON h.id = a.hall_id \
         WHERE a.id = $1",
    )
    .bind(activity_id)
    .fetch_optional(&mut *conn)
    .await?;
    let (seating, hall, deadline) = found.ok_or(AppError::NotFound)?;
    let plan = match seating {
        Seating::None => Plan::None,
        Seating::Zone => {
            let zones: Vec<(String, i32)> =
                sqlx::query_as("SELECT zone, quota FROM activity_zones WHERE activity_id = $1 ORDER BY position")
                    .bind(activity_id)
                    .fetch_all(&mut *conn)
                    .await?;
            Plan::Zones(zones.into_iter().map(|(zone, quota)| ZoneQuota { zone, quota }).collect())
        }
        Seating::Seat => Plan::Hall(hall.unwrap_or_default()),
    };
    Ok(Setup { plan, deadline })
}

/// Why a plan's capacity was refused: the plan itself (no such hall, a zone
/// twice…) or the capacity typed beside it.
#[derive(Debug, PartialEq, Eq)]
pub enum CapacityRefused {
    Plan(String),
    Capacity(String),
}

/// The capacity a plan gives an activity (`capacity_of`), less the seats
/// blocked for it when it keeps its hall; `given` must agree.
pub async fn capacity_for(
    conn: &mut PgConnection,
    activity_id: Option<i64>,
    plan: &Plan,
    given: Option<i32>,
) -> Result<Result<i32, CapacityRefused>, AppError> {
    if *plan == Plan::None {
        return Ok(given.ok_or_else(|| CapacityRefused::Capacity("不分区、不选座时要填写票数".into())));
    }
    let derived = match super::capacity_of(conn, plan, None).await {
        Ok(n) => n,
        Err(AppError::Invalid(why)) => return Ok(Err(CapacityRefused::Plan(why))),
        Err(e) => return Err(e),
    };
    let blocked: i64 = match (activity_id, plan) {
        (Some(id), Plan::Hall(name)) => {
            sqlx::query_scalar(
                "SELECT count(*) FROM seat_blocks b JOIN hall_seats s ON s.id = b.seat_id \
                 JOIN halls h ON h.id = s.hall_id WHERE b.activity_id = $1 AND h.name = $2",
            )
            .bind(id)
            .bind(name.trim())
            .fetch_one(&mut *conn)
            .await?
        }
        _ => 0,
    };
    if blocked == 0 {
        // The shell's wording, so the form and `activity create` say the same.
        return Ok(super::capacity_of(conn, plan, given).await.map_err(|e| CapacityRefused::Capacity(e.to_string())));
    }
    let offered = derived - blocked as i32;
    Ok(match given {
        Some(given) if given != offered => Err(CapacityRefused::Capacity(format!(
            "票数 {given} 与座位图不符：{derived} 个座位预留了 {blocked} 个，应为 {offered}（可以不填，由座位图决定）。"
        ))),
        _ => Ok(offered),
    })
}

/// The seat deadline's rule: only with zones or seats, after booking opens
/// and before the activity starts.
pub fn check_deadline(
    plan: &Plan,
    deadline: Option<OffsetDateTime>,
    book_start: OffsetDateTime,
    start_at: OffsetDateTime,
) -> Option<&'static str> {
    let at = deadline?;
    if *plan == Plan::None {
        Some("不分区、不选座的活动没有选座截止时间")
    } else if at <= book_start || at >= start_at {
        Some("选座截止时间应晚于抢票开始、早于活动开始")
    } else {
        None
    }
}

/// Saves an edited activity's seating: the deadline always; the mode, zones
/// and hall only while a draft (then set up afresh: old zones and blocks go).
/// A published or archived activity whose plan differs is refused with
/// [`FIXED`] and nothing changes — whatever the form claimed.
pub async fn replan(
    conn: &mut PgConnection,
    activity_id: i64,
    status: ActivityStatus,
    plan: &Plan,
    deadline: Option<OffsetDateTime>,
) -> Result<(), AppError> {
    let current = setup_of(conn, activity_id).await?;
    if current.plan == *plan {
        sqlx::query("UPDATE activities SET seat_deadline = $2 WHERE id = $1")
            .bind(activity_id)
            .bind(deadline)
            .execute(&mut *conn)
            .await?;
        return Ok(());
    }
    if status != ActivityStatus::Draft {
        return Err(AppError::Invalid(FIXED.into()));
    }
    // A draft sells nothing, but a place already given must not be orphaned.
    let placed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM tickets WHERE activity_id = $1 AND zone IS NOT NULL AND status <> 'cancelled'",
    )
    .bind(activity_id)
    .fetch_one(&mut *conn)
    .await?;
    if placed > 0 {
        return Err(AppError::Invalid(format!("已有 {placed} 张票有了位置，座位方式不能再改。")));
    }
    sqlx::query("DELETE FROM activity_zones WHERE activity_id = $1").bind(activity_id).execute(&mut *conn).await?;
    sqlx::query("DELETE FROM seat_blocks WHERE activity_id = $1").bind(activity_id).execute(&mut *conn).await?;
    set_up(conn, activity_id, plan, deadline).await
}

/// The seats blocked for an activity, as `zone-row-seat`.
pub async fn blocked_keys(conn: &mut PgConnection, activity_id: i64) -> Result<Vec<String>, AppError> {
    Ok(sqlx::query_scalar(
        "SELECT s.zone || '-' || s.row_label || '-' || s.seat_label FROM seat_blocks b \
         JOIN hall_seats s ON s.id = b.seat_id WHERE b.activity_id = $1 ORDER BY s.position",
    )
    .bind(activity_id)
    .fetch_all(conn)
    .await?)
}

/// What a change of blocks did, as an admin reads it (`A区 1排2座`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BlockChange {
    pub blocked: Vec<String>,
    pub unblocked: Vec<String>,
    /// The capacity after it.
    pub capacity: i32,
}

impl BlockChange {
    /// For the audit log.
    pub fn describe(&self, key: &str) -> String {
        let mut parts = vec![key.to_string()];
        if !self.blocked.is_empty() {
            parts.push(format!("预留 {}", self.blocked.join("、")));
        }
        if !self.unblocked.is_empty() {
            parts.push(format!("取消预留 {}", self.unblocked.join("、")));
        }
        if self.blocked.is_empty() && self.unblocked.is_empty() {
            parts.push("没有变化".into());
        }
        parts.push(format!("票数 {}", self.capacity));
        parts.join("；")
    }
}

/// Adds seats (`zone-row-seat`) to an activity's blocks.
pub async fn block(
    conn: &mut PgConnection,
    outbox: &impl Outbox,
    activity_id: i64,
    keys: &[String],
) -> Result<BlockChange, AppError> {
    let mut wanted = blocked_keys(conn, activity_id).await?;
    wanted.extend(keys.iter().map(|k| k.trim().to_string()));
    set_blocks(conn, outbox, activity_id, &wanted).await
}

/// Takes seats out of an activity's blocks; a seat not blocked is an error.
pub async fn unblock(
    conn: &mut PgConnection,
    outbox: &impl Outbox,
    activity_id: i64,
    keys: &[String],
) -> Result<BlockChange, AppError> {
    let current = blocked_keys(conn, activity_id).await?;
    let keys: Vec<&str> = keys.iter().map(|k| k.trim()).collect();
    if let Some(missing) = keys.iter().find(|k| !current.iter().any(|c| c == *k)) {
        return Err(AppError::Invalid(format!("座位 {missing} 没有预留。")));
    }
    let wanted: Vec<String> = current.into_iter().filter(|c| !keys.contains(&c.as_str())).collect();
    set_blocks(conn, outbox, activity_id, &wanted).await
}

/// Makes `wanted` (`zone-row-seat`) exactly the seats blocked for a seat
/// activity, and its capacity the seats left. Refused as a whole, with every
/// offending seat named: a seat of no such place, a seat a live ticket holds,
/// or a capacity below the tickets booked (nothing is written before every
/// check has passed).
///
/// The activity row is locked first, so two admins' changes run one after the
/// other. A student's choice does not take that lock (the rush must not queue
/// behind it): a choice committing in the same instant as a block of its seat
/// can leave both, and the map then shows the seat taken, as it is.
pub async fn set_blocks(
    conn: &mut PgConnection,
    outbox: &impl Outbox,
    activity_id: i64,
    wanted: &[String],
) -> Result<BlockChange, AppError> {
    // The lottery's lock before the activity row: the draw's order.
    let closed_lottery = crate::booking::lottery::closed_for_edit(conn, activity_id).await?;
    let found: Option<(Seating, Option<i64>)> =
        sqlx::query_as("SELECT seating, hall_id FROM activities WHERE id = $1 FOR NO KEY UPDATE")
            .bind(activity_id)
            .fetch_optional(&mut *conn)
            .await?;
    let (seating, hall_id) = found.ok_or(AppError::NotFound)?;
    let (Seating::Seat, Some(hall_id)) = (seating, hall_id) else {
        return Err(AppError::Invalid("只有选座的活动才能预留座位（分区售票没有座位可预留）。".into()));
    };
    let mut wanted: Vec<&str> = wanted.iter().map(|k| k.trim()).filter(|k| !k.is_empty()).collect();
    wanted.sort_unstable();
    wanted.dedup();
    if let Some(bad) = wanted.iter().find(|k| seat_parts(k).is_none()) {
        return Err(AppError::Invalid(format!("座位 {bad} 写法不对：写成 区域-排-座，如 A区-3-12。")));
    }
    // The wanted seats' rows held FOR UPDATE before their holders are read: a
    // student's choice holds its seat's row (KEY SHARE) until it commits, so
    // a choice in flight finishes first and is seen below, and one after this
    // waits and then sees the block.
    sqlx::query(
        "SELECT 1 FROM hall_seats s WHERE s.hall_id = $1 \
         AND s.zone || '-' || s.row_label || '-' || s.seat_label = ANY($2) FOR UPDATE",
    )
    .bind(hall_id)
    .bind(&wanted)
    .execute(&mut *conn)
    .await?;
    // Rows and seats hold no `-`, so `zone-row-seat` names one seat of the hall.
    let seats: Vec<HallSeat> = sqlx::query_as(
        "SELECT s.id, s.zone || '-' || s.row_label || '-' || s.seat_label AS key, s.zone, s.row_label, \
         s.seat_label, b.seat_id IS NOT NULL AS blocked, t.student_id AS holder \
         FROM hall_seats s \
         LEFT JOIN seat_blocks b ON b.activity_id = $2 AND b.seat_id = s.id \
         LEFT JOIN tickets t ON t.activity_id = $2 AND t.seat_id = s.id AND t.status <> 'cancelled' \
         WHERE s.hall_id = $1 AND (b.seat_id IS NOT NULL OR s.zone || '-' || s.row_label || '-' || s.seat_label = ANY($3)) \
         ORDER BY s.position",
    )
    .bind(hall_id)
    .bind(activity_id)
    .bind(&wanted)
    .fetch_all(&mut *conn)
    .await?;
    let missing: Vec<&str> = wanted.iter().filter(|k| !seats.iter().any(|s| s.key == **k)).copied().collect();
    if !missing.is_empty() {
        return Err(AppError::Invalid(format!("场馆里没有这些座位：{}。", missing.join("、"))));
    }
    let is_wanted = |s: &HallSeat| wanted.contains(&s.key.as_str());
    let adding: Vec<&HallSeat> = seats.iter().filter(|s| !s.blocked && is_wanted(s)).collect();
    let removing: Vec<&HallSeat> = seats.iter().filter(|s| s.blocked && !is_wanted(s)).collect();
    let held: Vec<String> =
        adding.iter().filter_map(|s| s.holder.as_ref().map(|student| format!("{}（{student}）", s.label()))).collect();
    if !held.is_empty() {
        return Err(AppError::Invalid(format!("这些座位已有学生的票，不能预留：{}。", held.join("、"))));
    }
    let seats_in_hall: i64 = sqlx::query_scalar("SELECT count(*) FROM hall_seats WHERE hall_id = $1")
        .bind(hall_id)
        .fetch_one(&mut *conn)
        .await?;
    let blocked_now = seats.iter().filter(|s| s.blocked).count();
    let capacity = (seats_in_hall - (blocked_now + adding.len() - removing.len()) as i64) as i32;
    if capacity < 1 {
        return Err(AppError::Invalid("不能把所有座位都预留。".into()));
    }
    if let Some(closed) = closed_lottery
        && !closed.drawn
        && capacity < closed.capacity
    {
        return Err(AppError::Invalid(format!(
            "抽签报名已经截止：抽签前票数只能增加，预留后会少于 {}。",
            closed.capacity
        )));
    }
    // The capacity first: refused, it changes nothing, and neither do the blocks.
    if let Err(booked) = activities::resize(conn, outbox, activity_id, capacity).await? {
        return Err(AppError::Invalid(format!("预留后只剩 {capacity} 个座位，但已经抢出 {booked} 张票。")));
    }
    sqlx::query("INSERT INTO seat_blocks (activity_id, seat_id) SELECT $1, unnest($2::bigint[])")
        .bind(activity_id)
        .bind(adding.iter().map(|s| s.id).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM seat_blocks WHERE activity_id = $1 AND seat_id = ANY($2)")
        .bind(activity_id)
        .bind(removing.iter().map(|s| s.id).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    Ok(BlockChange {
        blocked: adding.iter().map(|s| s.label()).collect(),
        unblocked: removing.iter().map(|s| s.label()).collect(),
        capacity,
    })
}

/// A seat of the hall as a change of blocks reads it.
#[derive(FromRow)]
struct HallSeat {
    id: i64,
    key: String,
    zone: String,
    row_label: String,
    seat_label: String,
    blocked: bool,
    /// The student whose live ticket holds it.
    holder: Option<String>,
}

impl HallSeat {
    fn label(&self) -> String {
        Place {
            zone: self.zone.clone(),
            row_label: Some(self.row_label.clone()),
            seat_label: Some(self.seat_label.clone()),
        }
        .label()
    }
}
