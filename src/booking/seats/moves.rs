//! An admin moves a student to another place (or gives an unplaced ticket
//! one), before or after the seat deadline. The same guarantees as a choice:
//! a seat is held once (the partial unique index `tickets_one_per_seat`), a
//! zone never over its quota (its count moves in this transaction: −1 old,
//! +1 new), and `placed_by` records the admin.

use sqlx::{Connection, FromRow, PgConnection};

use super::{Place, Seating, place_of, seat_parts};
use crate::error::AppError;

#[derive(Debug, PartialEq, Eq)]
pub enum MoveOutcome {
    Moved {
        student_id: String,
        /// `None`: the ticket had no place yet.
        from: Option<Place>,
        to: Place,
    },
    /// No valid (not yet checked-in) ticket of this activity by that student ID or code.
    NoTicket,
    /// Standing room: there is no place to move to.
    NotSeated,
    NoSuchPlace,
    Blocked,
    /// Another live ticket holds that seat.
    SeatTaken,
    ZoneFull,
    /// The ticket is there already.
    Unchanged(Place),
}

impl MoveOutcome {
    /// The refusal as the admin reads it (`Moved` says what was done).
    pub fn sentence(&self, who: &str, to: &str) -> String {
        match self {
            MoveOutcome::Moved { student_id, from: Some(from), to } => {
                format!("把 {student_id} 从 {} 换到 {}", from.label(), to.label())
            }
            MoveOutcome::Moved { student_id, from: None, to } => format!("给 {student_id} 安排了 {}", to.label()),
            MoveOutcome::NoTicket => format!("本活动没有 {who} 的有效票（学号或票号；已检票的不能再换）。"),
            MoveOutcome::NotSeated => "这个活动不分区也不选座，没有位置可换。".into(),
            MoveOutcome::NoSuchPlace => {
                format!("没有位置 {to}：选座活动写成 区域-排-座（如 A区-3-12），分区活动写区域名。")
            }
            MoveOutcome::Blocked => format!("座位 {to} 已预留，先取消预留才能安排。"),
            MoveOutcome::SeatTaken => format!("座位 {to} 已被别人的票占用，没有换。"),
            MoveOutcome::ZoneFull => format!("{to} 已满，没有换。"),
            MoveOutcome::Unchanged(place) => format!("{who} 已经在 {}。", place.label()),
        }
    }
}

#[derive(FromRow)]
struct Held {
    id: i64,
    activity_id: i64,
    student_id: String,
    zone: Option<String>,
    seat_id: Option<i64>,
    seating: Seating,
    hall_id: Option<i64>,
}

/// Moves the valid ticket of `who` (a student ID or a ticket code) at this
/// activity to `to`: `zone-row-seat` in seat mode, a zone's name in zone
/// mode. `by` is the admin, recorded as `placed_by`. The ticket's row is
/// locked first, so the student's own choice or the sweep runs before or
/// after, never across.
pub async fn move_ticket(
    conn: &mut PgConnection,
    activity_id: i64,
    who: &str,
    to: &str,
    by: &str,
) -> Result<MoveOutcome, AppError> {
    let (who, to) = (who.trim(), to.trim());
    let held: Option<Held> = sqlx::query_as(
        "SELECT t.id, t.activity_id, t.student_id, t.zone, t.seat_id, a.seating, a.hall_id FROM tickets t \
         JOIN activities a ON a.id = t.activity_id \
         WHERE t.activity_id = $1 AND t.status = 'valid' AND (t.student_id = $2 OR t.code = $2) \
         ORDER BY t.id LIMIT 1 FOR UPDATE OF t",
    )
    .bind(activity_id)
    .bind(who)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(h) = held else { return Ok(MoveOutcome::NoTicket) };
    let from = place_of(conn, h.id).await?;
    let outcome = match (h.seating, h.hall_id) {
        (Seating::None, _) => MoveOutcome::NotSeated,
        (Seating::Seat, Some(hall_id)) => to_seat(conn, &h, hall_id, to, by).await?,
        (Seating::Zone, _) => to_zone(conn, &h, activity_id, to, by).await?,
        (Seating::Seat, None) => MoveOutcome::NoSuchPlace,
    };
    Ok(match outcome {
        MoveOutcome::Moved { student_id, to, .. } => MoveOutcome::Moved { student_id, from, to },
        other => other,
    })
}

async fn to_seat(conn: &mut PgConnection, h: &Held, hall_id: i64, to: &str, by: &str) -> Result<MoveOutcome, AppError> {
    let Some((zone, row, seat)) = seat_parts(to) else { return Ok(MoveOutcome::NoSuchPlace) };
    let found: Option<(i64, bool)> = sqlx::query_as(
        "SELECT s.id, EXISTS (SELECT 1 FROM seat_blocks b WHERE b.activity_id = $5 AND b.seat_id = s.id) \
         FROM hall_seats s WHERE s.hall_id = $1 AND s.zone = $2 AND s.row_label = $3 AND s.seat_label = $4 \
         FOR KEY SHARE OF s",
    )
    .bind(hall_id)
    .bind(zone)
    .bind(row)
    .bind(seat)
    .bind(h.activity_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((seat_id, blocked)) = found else { return Ok(MoveOutcome::NoSuchPlace) };
    let place = Place { zone: zone.to_string(), row_label: Some(row.to_string()), seat_label: Some(seat.to_string()) };
    if h.seat_id == Some(seat_id) {
        return Ok(MoveOutcome::Unchanged(place));
    }
    if blocked {
        return Ok(MoveOutcome::Blocked);
    }
    // A savepoint: a taken seat fails this statement, not the caller's transaction.
    let mut attempt = conn.begin().await?;
    // As a student's choice (seats::take_seat): the seat's row held above, and
    // a block committed meanwhile seen by this new statement.
    let done = sqlx::query(
        "UPDATE tickets SET seat_id = $2, zone = $3, placed_at = now(), placed_by = $4 WHERE id = $1 \
         AND NOT EXISTS (SELECT 1 FROM seat_blocks b WHERE b.activity_id = $5 AND b.seat_id = $2)",
    )
    .bind(h.id)
    .bind(seat_id)
    .bind(zone)
    .bind(by)
    .bind(h.activity_id)
    .execute(&mut *attempt)
    .await;
    match done {
        Ok(d) if d.rows_affected() == 0 => {
            attempt.rollback().await?;
            Ok(MoveOutcome::Blocked)
        }
        Ok(_) => {
            attempt.commit().await?;
            Ok(MoveOutcome::Moved { student_id: h.student_id.clone(), from: None, to: place })
        }
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            attempt.rollback().await?;
            Ok(MoveOutcome::SeatTaken)
        }
        Err(e) => Err(e.into()),
    }
}

async fn to_zone(
    conn: &mut PgConnection,
    h: &Held,
    activity_id: i64,
    to: &str,
    by: &str,
) -> Result<MoveOutcome, AppError> {
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM activity_zones WHERE activity_id = $1 AND zone = $2)")
            .bind(activity_id)
            .bind(to)
            .fetch_one(&mut *conn)
            .await?;
    let place = Place { zone: to.to_string(), row_label: None, seat_label: None };
    if !exists {
        return Ok(MoveOutcome::NoSuchPlace);
    }
    if h.zone.as_deref() == Some(to) {
        return Ok(MoveOutcome::Unchanged(place));
    }
    let counted = sqlx::query(
        "UPDATE activity_zones SET taken = taken + 1 WHERE activity_id = $1 AND zone = $2 AND taken < quota",
    )
    .bind(activity_id)
    .bind(to)
    .execute(&mut *conn)
    .await?;
    if counted.rows_affected() == 0 {
        return Ok(MoveOutcome::ZoneFull);
    }
    if let Some(old) = &h.zone {
        sqlx::query("UPDATE activity_zones SET taken = taken - 1 WHERE activity_id = $1 AND zone = $2")
            .bind(activity_id)
            .bind(old)
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query("UPDATE tickets SET zone = $2, placed_at = now(), placed_by = $3 WHERE id = $1")
        .bind(h.id)
        .bind(to)
        .bind(by)
        .execute(&mut *conn)
        .await?;
    Ok(MoveOutcome::Moved { student_id: h.student_id.clone(), from: None, to: place })
}
