//! What happened, as facts: the rules record each event that concerns
//! students into the outbox, in the transaction of the change itself, and
//! know nothing of how — or whether — anyone is told. `notify` implements
//! [`Outbox`] (it words each fact as notices and queues them); the rules only
//! see this trait, so the dependency points one way: `notify` reads
//! `booking`, never the reverse.

use std::future::Future;

use sqlx::PgConnection;

use super::{
    Activity,
    waiting::{Dropped, Promoted},
};
use crate::error::AppError;

/// A fact the rules record. Each carries what the rules knew at the moment,
/// so whoever words it need not guess what changed.
#[derive(Debug, Clone)]
// One event per change, handed over and dropped: never held in bulk, so the
// size of the activity variants costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
pub enum Event {
    /// An edit was saved: the activity as it was and as it is now.
    ActivityChanged { before: Activity, after: Activity },
    /// An activity is being archived; `before` is how it stood.
    ActivityArchived { before: Activity },
    /// Tickets issued to the heads of a waiting list.
    WaitingPromoted(Vec<Promoted>),
    /// Entries still waiting when their list closed.
    WaitingClosed(Vec<Dropped>),
    /// A lottery was drawn: the winners' (ticket id, student ID), and the
    /// others' (waiting-list entry id, student ID, place in line).
    LotteryDrawn { activity_id: i64, won: Vec<(i64, String)>, queued: Vec<(i64, String, i64)> },
    /// The seat deadline passed and the sweep gave these tickets their places:
    /// (ticket id, student ID, the place as a student reads it).
    PlacesAssigned { activity_id: i64, placed: Vec<(i64, String, String)> },
}

/// Where the rules record what happened. `record` runs on the caller's
/// connection (its transaction), so a fact commits with its change or not at
/// all.
pub trait Outbox: Sync {
    fn record(&self, conn: &mut PgConnection, event: Event) -> impl Future<Output = Result<(), AppError>> + Send;
}
