//! What a rush looked like, read back for the admin's chart (README "Rush
//! chart"): tickets issued, cancelled and waiting-list joins per time bucket
//! from the booking start (from their own tables), the refusals by reason
//! (`booking_refusals`, see `refusals`), and the sold-out moment.

use std::collections::HashMap;

use sqlx::PgConnection;
use time::{Duration, OffsetDateTime};

use super::{Activity, lottery::Mode, refusals::Reason};
use crate::error::AppError;

/// At most this many buckets (bars) in a chart.
pub const MAX_BUCKETS: i64 = 120;

/// Bucket sizes a chart may use, in seconds: round numbers an axis reads well.
const BUCKET_SIZES: [i64; 17] = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400];

/// After a sell-out the chart goes on as long again as the sell-out took (at
/// least this long): the waiting-list joins, cancels and "sold out" refusals
/// that follow are part of the picture.
const AFTER_SELL_OUT: Duration = Duration::seconds(30);

/// When an activity first had no place left, over `activities a`: the moment
/// the booking that took the last place recorded, or — when that statement
/// could not know (concurrent last places) and no place is left now — the
/// first moment its live tickets reached its capacity.
const SOLD_OUT_AT: &str = "coalesce(a.sold_out_at, CASE WHEN a.mode = 'rush' AND NOT EXISTS \
     (SELECT 1 FROM activity_slots s WHERE s.activity_id = a.id AND s.remaining > 0) THEN \
     (SELECT min(e.at) FROM (SELECT ev.at, sum(ev.delta) OVER (ORDER BY ev.at, ev.delta ROWS UNBOUNDED PRECEDING) AS live \
         FROM (SELECT t.booked_at AS at, 1 AS delta FROM tickets t WHERE t.activity_id = a.id \
               UNION ALL SELECT t.cancelled_at, -1 FROM tickets t \
               WHERE t.activity_id = a.id AND t.cancelled_at IS NOT NULL) ev) e \
      WHERE e.live >= a.capacity) END)";

/// The sold-out moments of these activities (those never sold out are absent).
pub async fn sold_out_moments(
    conn: &mut PgConnection,
    activity_ids: &[i64],
) -> Result<HashMap<i64, OffsetDateTime>, AppError> {
    let rows: Vec<(i64, Option<OffsetDateTime>)> =
        sqlx::query_as(&format!("SELECT a.id, {SOLD_OUT_AT} FROM activities a WHERE a.id = ANY($1)"))
            .bind(activity_ids)
            .fetch_all(conn)
            .await?;
    Ok(rows.into_iter().filter_map(|(id, at)| Some((id, at?))).collect())
}

/// One bucket of the chart: what happened in `[start, start + size)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bucket {
    pub booked: i64,
    pub cancelled: i64,
    pub joined: i64,
    /// Refusals, by `Reason::ALL`'s order.
    pub refused: [i64; Reason::ALL.len()],
}

impl Bucket {
    pub fn refused_total(&self) -> i64 {
        self.refused.iter().sum()
    }
}

/// Everything ever, not only the chart's range.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    pub booked: i64,
    pub cancelled: i64,
    pub joined: i64,
    /// Reasons that occurred, in `Reason::ALL`'s order.
    pub refused: Vec<(Reason, i64)>,
}

#[derive(Debug, Clone)]
pub struct Rush {
    pub book_start: OffsetDateTime,
    /// Where the chart's time axis starts: the booking start's whole second,
    /// so buckets line up with the refusals, which are counted per second.
    pub origin: OffsetDateTime,
    /// Seconds per bucket.
    pub bucket_seconds: i64,
    /// From the booking start on.
    pub buckets: Vec<Bucket>,
    pub sold_out_at: Option<OffsetDateTime>,
    pub totals: Totals,
}

/// What the activity page can show of its rush.
#[derive(Debug, Clone)]
pub enum Picture {
    /// Booking has not started.
    NotOpenYet,
    /// A lottery has no rush: places go at the draw.
    Lottery,
    /// Booking started, and nobody has booked or been refused yet.
    Quiet,
    Rush(Rush),
}

/// The smallest round bucket that draws `span` in at most [`MAX_BUCKETS`] bars.
pub fn bucket_for(span: Duration) -> i64 {
    let seconds = span.whole_seconds().max(1);
    let fits = |size: i64| (seconds + size - 1) / size <= MAX_BUCKETS;
    BUCKET_SIZES.into_iter().find(|size| fits(*size)).unwrap_or_else(|| (seconds + MAX_BUCKETS - 1) / MAX_BUCKETS)
}

/// The chart's range: from the booking start to the close (or now, if
/// sooner); after a sell-out, to as long again (at least 30 s) past it.
pub fn range_end(
    book_start: OffsetDateTime,
    book_end: OffsetDateTime,
    sold_out_at: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> OffsetDateTime {
    let close = book_end.min(now);
    match sold_out_at {
        Some(at) => close.min(at + (at - book_start).max(AFTER_SELL_OUT)),
        None => close,
    }
}

/// The rush of `activity`, as of now.
pub async fn picture(conn: &mut PgConnection, activity: &Activity) -> Result<Picture, AppError> {
    if activity.mode == Mode::Lottery {
        return Ok(Picture::Lottery);
    }
    let now = OffsetDateTime::now_utc();
    if now < activity.book_start {
        return Ok(Picture::NotOpenYet);
    }
    let totals = totals(conn, activity.id).await?;
    if totals.booked == 0 && totals.refused.is_empty() && totals.joined == 0 {
        return Ok(Picture::Quiet);
    }
    let sold_out_at = sold_out_moments(conn, &[activity.id]).await?.remove(&activity.id);
    let start = activity.book_start.replace_nanosecond(0).unwrap_or(activity.book_start);
    let end = range_end(start, activity.book_end, sold_out_at, now);
    let bucket_seconds = bucket_for(end - start);
    let (ms, per) = ((end - start).whole_milliseconds().max(0) as u64, bucket_seconds as u64 * 1000);
    let n = ms.div_ceil(per).max(1) as usize;
    let mut buckets = vec![Bucket::default(); n];
    let rows: Vec<(i64, String, i64)> = sqlx::query_as(
        "SELECT i, kind, n::bigint FROM ( \
             SELECT floor(extract(epoch FROM t.booked_at - $2) / $3)::bigint AS i, 'booked' AS kind, count(*) AS n \
             FROM tickets t WHERE t.activity_id = $1 AND t.booked_at >= $2 AND t.booked_at < $4 GROUP BY 1 \
             UNION ALL \
             SELECT floor(extract(epoch FROM t.cancelled_at - $2) / $3)::bigint, 'cancelled', count(*) \
             FROM tickets t WHERE t.activity_id = $1 AND t.cancelled_at >= $2 AND t.cancelled_at < $4 GROUP BY 1 \
             UNION ALL \
             SELECT floor(extract(epoch FROM w.joined_at - $2) / $3)::bigint, 'joined', count(*) \
             FROM waiting_list w WHERE w.activity_id = $1 AND w.joined_at >= $2 AND w.joined_at < $4 GROUP BY 1 \
             UNION ALL \
             SELECT floor(extract(epoch FROM r.second - $2) / $3)::bigint, r.reason, sum(r.count) \
             FROM booking_refusals r WHERE r.activity_id = $1 AND r.second >= $2 AND r.second < $4 GROUP BY 1, 2 \
         ) x",
    )
    .bind(activity.id)
    .bind(start)
    .bind(bucket_seconds)
    .bind(end)
    .fetch_all(&mut *conn)
    .await?;
    for (i, kind, count) in rows {
        let Some(bucket) = buckets.get_mut(i.max(0) as usize) else { continue };
        match kind.as_str() {
            "booked" => bucket.booked += count,
            "cancelled" => bucket.cancelled += count,
            "joined" => bucket.joined += count,
            reason => {
                if let Some(k) = Reason::ALL.iter().position(|r| r.as_str() == reason) {
                    bucket.refused[k] += count;
                }
            }
        }
    }
    Ok(Picture::Rush(Rush {
        book_start: activity.book_start,
        origin: start,
        bucket_seconds,
        buckets,
        sold_out_at,
        totals,
    }))
}

async fn totals(conn: &mut PgConnection, activity_id: i64) -> Result<Totals, AppError> {
    let (booked, cancelled, joined): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE cancelled_at IS NOT NULL), \
             (SELECT count(*) FROM waiting_list WHERE activity_id = $1) \
         FROM tickets WHERE activity_id = $1",
    )
    .bind(activity_id)
    .fetch_one(&mut *conn)
    .await?;
    let by_reason: Vec<(Reason, i64)> = sqlx::query_as(
        "SELECT reason, sum(count)::bigint FROM booking_refusals WHERE activity_id = $1 GROUP BY reason",
    )
    .bind(activity_id)
    .fetch_all(&mut *conn)
    .await?;
    let refused = Reason::ALL
        .into_iter()
        .filter_map(|r| by_reason.iter().find(|(found, _)| *found == r).map(|(_, n)| (r, *n)))
        .collect();
    Ok(Totals { booked, cancelled, joined, refused })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_round_and_at_most_a_chart_wide() {
        assert_eq!(bucket_for(Duration::milliseconds(300)), 1);
        assert_eq!(bucket_for(Duration::seconds(120)), 1);
        assert_eq!(bucket_for(Duration::seconds(121)), 2);
        assert_eq!(bucket_for(Duration::minutes(30)), 15);
        assert_eq!(bucket_for(Duration::minutes(31)), 30);
        assert_eq!(bucket_for(Duration::hours(3)), 120);
        assert_eq!(bucket_for(Duration::days(7)), 7200);
        assert_eq!(bucket_for(Duration::days(400)), 288_000);
        for minutes in [1, 7, 59, 61, 600, 6000, 60000] {
            let span = Duration::minutes(minutes);
            assert!((span.whole_seconds() as u64).div_ceil(bucket_for(span) as u64) <= MAX_BUCKETS as u64);
        }
    }

    #[test]
    fn the_range_runs_past_a_sell_out_as_long_again_but_never_past_the_close_or_now() {
        let start = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let (close, now) = (start + Duration::hours(2), start + Duration::hours(1));
        assert_eq!(range_end(start, close, None, now), now);
        assert_eq!(range_end(start, close, None, close + Duration::hours(1)), close);
        let sold = start + Duration::seconds(12);
        assert_eq!(range_end(start, close, Some(sold), now), sold + Duration::seconds(30));
        let slow = start + Duration::minutes(10);
        assert_eq!(range_end(start, close, Some(slow), now), slow + Duration::minutes(10));
        assert_eq!(range_end(start, close, Some(sold), start + Duration::seconds(20)), start + Duration::seconds(20));
    }
}
