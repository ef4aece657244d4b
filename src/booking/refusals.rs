//! Refused bookings, counted by reason per activity and second, for the rush
//! chart (README "Rush chart").
//!
//! A refusal writes nothing in the booking's transaction: in a rush nine
//! messages in ten are "sold out", and a counter row per second would be the
//! one hot row the slot design avoids. Each instance counts in memory instead
//! ([`Tally::note`], after the booking call returns) and a background task adds
//! the counts to `booking_refusals` about once a second in one multi-row
//! upsert, and once more at shutdown. A crash loses at most about a second of
//! counts: they are a picture of the rush, not a record.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use sqlx::PgPool;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::{
    lottery::EntryOutcome,
    tickets::{ActivityRef, BookOutcome},
};
use crate::error::AppError;

/// How often the counts go to the database: also the most a crash loses.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Why a booking was refused, as `booking_refusals.reason` stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum Reason {
    SoldOut,
    NotOpenYet,
    Closed,
    AlreadyHolds,
    NotBound,
    Paused,
}

impl Reason {
    /// Every reason, in the chart's stacking and legend order.
    pub const ALL: [Reason; 6] =
        [Reason::SoldOut, Reason::AlreadyHolds, Reason::NotBound, Reason::NotOpenYet, Reason::Closed, Reason::Paused];

    /// The stored value (also the chart's `data-` attribute names).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::SoldOut => "sold_out",
            Reason::NotOpenYet => "not_open_yet",
            Reason::Closed => "closed",
            Reason::AlreadyHolds => "already_holds",
            Reason::NotBound => "not_bound",
            Reason::Paused => "paused",
        }
    }

    /// As an organizer reads it.
    pub fn label(self) -> &'static str {
        match self {
            Reason::SoldOut => "已抢完",
            Reason::NotOpenYet => "未开抢",
            Reason::Closed => "已截止",
            Reason::AlreadyHolds => "已有票",
            Reason::NotBound => "未绑定",
            Reason::Paused => "暂停抢票",
        }
    }

    /// The refusal a booking's outcome is, if it is one that names an activity.
    /// (A key that names no activity is not any activity's refusal.)
    pub fn of(outcome: &BookOutcome) -> Option<Reason> {
        match outcome {
            BookOutcome::SoldOut { .. } => Some(Reason::SoldOut),
            BookOutcome::NotOpenYet { .. } => Some(Reason::NotOpenYet),
            BookOutcome::Closed | BookOutcome::Lottery(EntryOutcome::Closed) => Some(Reason::Closed),
            BookOutcome::AlreadyHolds(_) => Some(Reason::AlreadyHolds),
            BookOutcome::NotBound => Some(Reason::NotBound),
            BookOutcome::Paused { .. } => Some(Reason::Paused),
            BookOutcome::Booked(_) | BookOutcome::NoSuchActivity | BookOutcome::Lottery(_) => None,
        }
    }
}

/// The activity a booking named, as it named it: a typed key is turned into
/// the activity's id when the counts are written, so noting costs no read.
/// (A published activity's key no longer changes, and only a published or
/// archived one can refuse a booking.)
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Named {
    Id(i64),
    Key(String),
}

type Counts = HashMap<(Named, i64, Reason), u32>;

/// This instance's refusals not yet written. Cheap to note into: one short lock.
#[derive(Default)]
pub struct Tally {
    counts: Mutex<Counts>,
}

impl Tally {
    /// Counts `outcome` if it is a refusal (nothing otherwise), in the current second.
    pub fn note(&self, activity: &ActivityRef, outcome: &BookOutcome) {
        let Some(reason) = Reason::of(outcome) else { return };
        let named = match activity {
            ActivityRef::Id(id) => Named::Id(*id),
            ActivityRef::Key(key) => Named::Key(key.to_ascii_lowercase()),
        };
        let second = OffsetDateTime::now_utc().unix_timestamp();
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        *counts.entry((named, second, reason)).or_default() += 1;
    }

    fn take(&self) -> Counts {
        std::mem::take(&mut *self.counts.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Counts a write failed to add: kept for the next one.
    fn put_back(&self, counts: Counts) {
        let mut mine = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        for (k, n) in counts {
            *mine.entry(k).or_default() += n;
        }
    }

    /// Adds the counts noted so far to `booking_refusals` in one statement;
    /// returns how many refusals went. On failure they stay for the next try.
    pub async fn flush(&self, pool: &PgPool) -> Result<u64, AppError> {
        let counts = self.take();
        if counts.is_empty() {
            return Ok(0);
        }
        let (mut ids, mut keys, mut seconds, mut reasons, mut ns) = (vec![], vec![], vec![], vec![], vec![]);
        for ((named, second, reason), n) in &counts {
            let (id, key) = match named {
                Named::Id(id) => (Some(*id), None),
                Named::Key(key) => (None, Some(key.clone())),
            };
            ids.push(id);
            keys.push(key);
            seconds.push(OffsetDateTime::from_unix_timestamp(*second).unwrap_or(OffsetDateTime::UNIX_EPOCH));
            reasons.push(reason.as_str());
            ns.push(*n as i32);
        }
        // Grouped first: one activity named by id and by key in the same
        // second must be one row, or the upsert would touch it twice.
        let written = sqlx::query(
            "INSERT INTO booking_refusals (activity_id, second, reason, count) \
             SELECT a.id, r.second, r.reason, sum(r.n)::int FROM ( \
                 SELECT coalesce(u.id, (SELECT k.id FROM activities k WHERE k.key = u.key)) AS activity_id, \
                     u.second, u.reason, u.n \
                 FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::text[], $5::int[]) \
                     AS u(id, key, second, reason, n)) r \
             JOIN activities a ON a.id = r.activity_id \
             GROUP BY a.id, r.second, r.reason \
             ON CONFLICT (activity_id, second, reason) \
             DO UPDATE SET count = booking_refusals.count + excluded.count",
        )
        .bind(&ids)
        .bind(&keys)
        .bind(&seconds)
        .bind(&reasons)
        .bind(&ns)
        .execute(pool)
        .await;
        match written {
            Ok(_) => Ok(counts.values().map(|n| u64::from(*n)).sum()),
            Err(e) => {
                self.put_back(counts);
                Err(e.into())
            }
        }
    }
}

/// Writes the tally every [`FLUSH_EVERY`] until `stop`, then once more.
pub async fn keep_flushing(tally: Arc<Tally>, pool: PgPool, stop: CancellationToken) {
    let mut every = tokio::time::interval(FLUSH_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.cancelled() => break,
        }
        if let Err(e) = tally.flush(&pool).await {
            tracing::warn!(error = %e, "refusal counts not written yet");
        }
    }
    if let Err(e) = tally.flush(&pool).await {
        tracing::warn!(error = %e, "refusal counts lost at shutdown");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_counted_per_activity_second_and_reason_and_bookings_are_not() {
        let tally = Tally::default();
        let sold_out = BookOutcome::SoldOut { key: "show".into() };
        tally.note(&ActivityRef::Id(7), &sold_out);
        tally.note(&ActivityRef::Id(7), &sold_out);
        tally.note(&ActivityRef::Key("SHOW".into()), &BookOutcome::NotBound);
        tally.note(&ActivityRef::Id(7), &BookOutcome::NoSuchActivity);
        let counts = tally.take();
        let of = |named: Named, reason| counts.iter().filter(|((n, _, r), _)| *n == named && *r == reason).count();
        assert_eq!(counts.values().sum::<u32>(), 3, "{counts:?}");
        assert_eq!(of(Named::Key("show".into()), Reason::NotBound), 1, "keys are read as typed, lower-cased");
        assert!(tally.take().is_empty(), "taken once");
    }

    #[test]
    fn each_reason_has_a_stable_stored_name() {
        let names: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names, ["sold_out", "already_holds", "not_bound", "not_open_yet", "closed", "paused"]);
    }
}
