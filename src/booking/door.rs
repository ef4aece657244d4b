//! What happened at the door of an activity: arrivals per five minutes, and
//! who came of those who booked. The simulator's test tickets are left out.

use sqlx::PgConnection;
use time::OffsetDateTime;

use crate::error::AppError;

/// The width of one bar of the arrivals chart.
pub const BIN_SECONDS: i64 = 5 * 60;
/// At most this many bars (a day): a door open longer shows its first day.
pub const MAX_BINS: usize = 288;

/// Check-ins in one five-minute bin, starting at `start`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bin {
    pub start: OffsetDateTime,
    pub arrivals: i64,
}

/// The bins from the first check-in to the last, empty ones included, so the
/// chart's gaps are gaps in time.
pub async fn arrivals(conn: &mut PgConnection, activity_id: i64) -> Result<Vec<Bin>, AppError> {
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT (floor(extract(epoch FROM checked_in_at) / $2) * $2)::bigint AS bin, count(*) \
         FROM tickets WHERE activity_id = $1 AND checked_in_at IS NOT NULL AND NOT simulated \
         GROUP BY bin ORDER BY bin",
    )
    .bind(activity_id)
    .bind(BIN_SECONDS)
    .fetch_all(conn)
    .await?;
    Ok(fill_gaps(&rows))
}

/// Check-ins per gate (the volunteer link's gate, or the admin who scanned),
/// most first. Check-ins from before gates were recorded count as 管理员.
pub async fn gates(conn: &mut PgConnection, activity_id: i64) -> Result<Vec<(String, i64)>, AppError> {
    Ok(sqlx::query_as(
        "SELECT coalesce(checked_in_by, '管理员') AS gate, count(*) FROM tickets \
         WHERE activity_id = $1 AND status = 'used' AND NOT simulated GROUP BY gate ORDER BY count(*) DESC, gate",
    )
    .bind(activity_id)
    .fetch_all(conn)
    .await?)
}

/// `(bin start in Unix seconds, count)` in order → consecutive bins, at most [`MAX_BINS`].
pub fn fill_gaps(counted: &[(i64, i64)]) -> Vec<Bin> {
    let Some(&(first, _)) = counted.first() else { return Vec::new() };
    let mut counted = counted.iter().peekable();
    (0..MAX_BINS as i64)
        .map(|i| first + i * BIN_SECONDS)
        .map_while(|start| {
            counted.peek()?;
            let arrivals = match counted.next_if(|(at, _)| *at == start) {
                Some(&(_, n)) => n,
                None => 0,
            };
            Some(Bin { start: OffsetDateTime::from_unix_timestamp(start).ok()?, arrivals })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_bins_between_arrivals_are_kept() {
        let t = 1_700_000_100;
        let bins = fill_gaps(&[(t, 3), (t + 2 * BIN_SECONDS, 1), (t + 3 * BIN_SECONDS, 7)]);
        let counts: Vec<i64> = bins.iter().map(|b| b.arrivals).collect();
        assert_eq!(counts, [3, 0, 1, 7]);
        assert_eq!(bins[1].start.unix_timestamp(), t + BIN_SECONDS);
        assert!(fill_gaps(&[]).is_empty());
    }

    #[test]
    fn a_door_open_for_days_shows_one_day() {
        let t = 1_700_000_100;
        let bins = fill_gaps(&[(t, 1), (t + 3 * 86_400, 1)]);
        assert_eq!(bins.len(), MAX_BINS);
        assert_eq!(bins.iter().map(|b| b.arrivals).sum::<i64>(), 1);
    }
}
