//! A seat activity's map as the chooser and the admin page draw it: every
//! seat of the hall with its state for this activity, placed on a grid, and
//! the counts per zone (zone mode has counts only).
//!
//! The grid is a seat's line and column: with `x,y` in the hall's file, the
//! rank of its `y` and `x` among the hall's distinct values (so a file in
//! pixels or in metres draws the same, and gaps stay gaps); without, one line
//! per row in file order and seats in file order along it.

use std::collections::BTreeMap;

use sqlx::{FromRow, PgConnection};

use super::Seating;
use crate::error::AppError;

/// A seat for one activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum SeatState {
    Free,
    /// Held by a valid ticket.
    Taken,
    /// Held back by the organisers: never offered, never assigned.
    Blocked,
    /// Held by a ticket checked in at the door.
    CheckedIn,
}

impl SeatState {
    /// Also the CSS class.
    pub fn as_str(self) -> &'static str {
        match self {
            SeatState::Free => "free",
            SeatState::Taken => "taken",
            SeatState::Blocked => "blocked",
            SeatState::CheckedIn => "checked_in",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            SeatState::Free => "可选",
            SeatState::Taken => "已选",
            SeatState::Blocked => "预留",
            SeatState::CheckedIn => "已入场",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MapSeat {
    pub id: i64,
    pub zone: String,
    pub row_label: String,
    pub seat_label: String,
    pub state: SeatState,
    /// Where it is drawn: line (from the front) and column, both from 0.
    pub line: u32,
    pub col: u32,
}

impl MapSeat {
    /// As the chooser's form posts it: `zone-row-seat`.
    pub fn key(&self) -> String {
        format!("{}-{}-{}", self.zone, self.row_label, self.seat_label)
    }

    /// As a student reads it: `A区 3排12座`.
    pub fn label(&self) -> String {
        format!("{} {}排{}座", self.zone, self.row_label, self.seat_label)
    }
}

/// One zone's places. `taken` counts every live ticket in it, checked in or not.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct ZoneCount {
    pub zone: String,
    pub total: i64,
    pub free: i64,
    pub taken: i64,
    pub blocked: i64,
    pub checked_in: i64,
}

#[derive(Debug, Clone, Default)]
pub struct SeatMap {
    /// Seat mode only.
    pub seats: Vec<MapSeat>,
    /// In the hall's (or the activity's) zone order.
    pub zones: Vec<ZoneCount>,
}

#[derive(FromRow)]
struct SeatRow {
    id: i64,
    zone: String,
    row_label: String,
    seat_label: String,
    x: Option<f32>,
    y: Option<f32>,
    state: SeatState,
}

/// The map of an activity: its hall's seats (seat mode) or its zones (zone
/// mode); empty for standing room or no such activity.
pub async fn of_activity(conn: &mut PgConnection, activity_id: i64) -> Result<SeatMap, AppError> {
    let seating: Option<Seating> = sqlx::query_scalar("SELECT seating FROM activities WHERE id = $1")
        .bind(activity_id)
        .fetch_optional(&mut *conn)
        .await?;
    match seating {
        Some(Seating::Seat) => {
            let rows: Vec<SeatRow> = sqlx::query_as(
                "SELECT s.id, s.zone, s.row_label, s.seat_label, s.x, s.y, \
                 CASE WHEN t.status = 'used' THEN 'checked_in' WHEN t.id IS NOT NULL THEN 'taken' \
                      WHEN b.seat_id IS NOT NULL THEN 'blocked' ELSE 'free' END AS state \
                 FROM activities a JOIN hall_seats s ON s.hall_id = a.hall_id \
                 LEFT JOIN tickets t ON t.activity_id = a.id AND t.seat_id = s.id AND t.status <> 'cancelled' \
                 LEFT JOIN seat_blocks b ON b.activity_id = a.id AND b.seat_id = s.id \
                 WHERE a.id = $1 ORDER BY s.position",
            )
            .bind(activity_id)
            .fetch_all(&mut *conn)
            .await?;
            let seats = laid_out(rows);
            let zones = count_seats(&seats);
            Ok(SeatMap { seats, zones })
        }
        Some(Seating::Zone) => {
            let zones = sqlx::query_as(
                "SELECT z.zone, z.quota::bigint AS total, (z.quota - z.taken)::bigint AS free, \
                 z.taken::bigint AS taken, 0::bigint AS blocked, \
                 (SELECT count(*) FROM tickets t WHERE t.activity_id = z.activity_id AND t.zone = z.zone \
                  AND t.status = 'used') AS checked_in \
                 FROM activity_zones z WHERE z.activity_id = $1 ORDER BY z.position",
            )
            .bind(activity_id)
            .fetch_all(&mut *conn)
            .await?;
            Ok(SeatMap { seats: Vec::new(), zones })
        }
        Some(Seating::None) | None => Ok(SeatMap::default()),
    }
}

/// One zone's seats of a map, drawn from its own first column (so a zone
/// on the right of the hall is not drawn after an empty stretch).
pub fn zone_only(seats: Vec<MapSeat>, zone: &str) -> Vec<MapSeat> {
    let mut kept: Vec<MapSeat> = seats.into_iter().filter(|s| s.zone == zone).collect();
    let first = kept.iter().map(|s| s.col).min().unwrap_or(0);
    for seat in &mut kept {
        seat.col -= first;
    }
    kept
}

/// A hall's seats as its preview draws them (every seat free).
pub async fn of_hall(conn: &mut PgConnection, hall_id: i64) -> Result<Vec<MapSeat>, AppError> {
    let rows: Vec<SeatRow> = sqlx::query_as(
        "SELECT id, zone, row_label, seat_label, x, y, 'free' AS state FROM hall_seats \
         WHERE hall_id = $1 ORDER BY position",
    )
    .bind(hall_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(laid_out(rows))
}

/// Counts per zone, zones in the order they first appear.
fn count_seats(seats: &[MapSeat]) -> Vec<ZoneCount> {
    let mut zones: Vec<ZoneCount> = Vec::new();
    for seat in seats {
        let i = match zones.iter().position(|z| z.zone == seat.zone) {
            Some(i) => i,
            None => {
                zones.push(ZoneCount {
                    zone: seat.zone.clone(),
                    total: 0,
                    free: 0,
                    taken: 0,
                    blocked: 0,
                    checked_in: 0,
                });
                zones.len() - 1
            }
        };
        let z = &mut zones[i];
        z.total += 1;
        match seat.state {
            SeatState::Free => z.free += 1,
            SeatState::Taken => z.taken += 1,
            SeatState::Blocked => z.blocked += 1,
            SeatState::CheckedIn => {
                z.taken += 1;
                z.checked_in += 1;
            }
        }
    }
    zones
}

/// Places seats (given in file order) on the grid.
fn laid_out(rows: Vec<SeatRow>) -> Vec<MapSeat> {
    // A file gives x,y for every seat or for none (the importer checks it).
    let drawn = rows.iter().all(|r| r.x.is_some() && r.y.is_some());
    let (lines, cols): (Vec<u32>, Vec<u32>) = if drawn && !rows.is_empty() {
        let rank = |values: Vec<f32>| {
            let mut sorted = values.clone();
            sorted.sort_by(f32::total_cmp);
            sorted.dedup();
            values.iter().map(|v| sorted.binary_search_by(|p| p.total_cmp(v)).unwrap_or(0) as u32).collect::<Vec<u32>>()
        };
        (
            rank(rows.iter().map(|r| r.y.unwrap_or_default()).collect()),
            rank(rows.iter().map(|r| r.x.unwrap_or_default()).collect()),
        )
    } else {
        // One line per (zone, row) in the order rows first appear; seats along it in file order.
        let mut line_of: BTreeMap<(&str, &str), (u32, u32)> = BTreeMap::new();
        let mut next_line = 0;
        rows.iter()
            .map(|r| {
                let entry = line_of.entry((&r.zone, &r.row_label)).or_insert_with(|| {
                    next_line += 1;
                    (next_line - 1, 0)
                });
                let at = (entry.0, entry.1);
                entry.1 += 1;
                at
            })
            .unzip()
    };
    rows.into_iter()
        .zip(lines.into_iter().zip(cols))
        .map(|(r, (line, col))| MapSeat {
            id: r.id,
            zone: r.zone,
            row_label: r.row_label,
            seat_label: r.seat_label,
            state: r.state,
            line,
            col,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(zone: &str, row: &str, seat: &str, at: Option<(f32, f32)>) -> SeatRow {
        SeatRow {
            id: 0,
            zone: zone.into(),
            row_label: row.into(),
            seat_label: seat.into(),
            x: at.map(|a| a.0),
            y: at.map(|a| a.1),
            state: SeatState::Free,
        }
    }

    #[test]
    fn without_coordinates_each_row_is_a_line_in_file_order() {
        let seats = laid_out(vec![
            row("A区", "1", "1", None),
            row("A区", "1", "2", None),
            row("A区", "2", "1", None),
            row("B区", "1", "1", None),
        ]);
        let at: Vec<(u32, u32)> = seats.iter().map(|s| (s.line, s.col)).collect();
        assert_eq!(at, [(0, 0), (0, 1), (1, 0), (2, 0)]);
    }

    #[test]
    fn coordinates_keep_their_order_and_gaps_whatever_the_unit() {
        let seats = laid_out(vec![
            row("A", "1", "1", Some((100.0, 40.0))),
            row("A", "1", "3", Some((300.0, 40.0))),
            row("A", "2", "1", Some((100.0, 80.0))),
            row("A", "2", "2", Some((200.0, 80.0))),
        ]);
        let at: Vec<(u32, u32)> = seats.iter().map(|s| (s.line, s.col)).collect();
        assert_eq!(at, [(0, 0), (0, 2), (1, 0), (1, 1)]);
    }

    #[test]
    fn a_zone_alone_starts_at_its_own_first_column() {
        let seats = laid_out(vec![
            row("左", "1", "1", Some((0.0, 0.0))),
            row("右", "1", "1", Some((5.0, 0.0))),
            row("右", "1", "2", Some((7.0, 0.0))),
        ]);
        let right: Vec<(String, u32)> = zone_only(seats, "右").into_iter().map(|s| (s.seat_label, s.col)).collect();
        assert_eq!(right, [("1".to_string(), 0), ("2".to_string(), 1)]);
    }

    #[test]
    fn counts_take_checked_in_seats_as_taken() {
        let mut seats = laid_out(vec![
            row("A", "1", "1", None),
            row("A", "1", "2", None),
            row("A", "1", "3", None),
            row("B", "1", "1", None),
        ]);
        seats[0].state = SeatState::Taken;
        seats[1].state = SeatState::CheckedIn;
        seats[3].state = SeatState::Blocked;
        let zones = count_seats(&seats);
        assert_eq!(
            zones,
            [
                ZoneCount { zone: "A".into(), total: 3, free: 1, taken: 2, blocked: 0, checked_in: 1 },
                ZoneCount { zone: "B".into(), total: 1, free: 0, taken: 0, blocked: 1, checked_in: 0 },
            ]
        );
    }
}
