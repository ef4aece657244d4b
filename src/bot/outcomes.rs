//! A message's outcome as the operator counts it (`/metrics`): one word from a
//! fixed set per outcome of the rule the command called, never anything the
//! student typed.

use crate::booking::{
    lottery::EntryOutcome,
    tickets::{BookOutcome, CancelOutcome},
    waiting::JoinOutcome,
};

/// Every command without outcomes of its own: it was answered.
pub const ANSWERED: &str = "answered";
pub const NOT_BOUND: &str = "not_bound";

pub fn book(outcome: &BookOutcome) -> &'static str {
    match outcome {
        BookOutcome::Booked(_) => "booked",
        BookOutcome::NoSuchActivity => "no_such_activity",
        BookOutcome::NotOpenYet { .. } => "not_open_yet",
        BookOutcome::Closed => "closed",
        BookOutcome::SoldOut { .. } => "sold_out",
        BookOutcome::AlreadyHolds(_) => "already_holds",
        BookOutcome::NotBound => NOT_BOUND,
        BookOutcome::Paused { .. } => "paused",
        BookOutcome::Lottery(EntryOutcome::Entered { .. }) => "lottery_entered",
        BookOutcome::Lottery(EntryOutcome::AlreadyEntered { .. }) => "lottery_already_entered",
        BookOutcome::Lottery(EntryOutcome::Closed) => "lottery_closed",
        BookOutcome::Lottery(EntryOutcome::RealStudentsOnly { .. }) => "lottery_real_students_only",
    }
}

pub fn cancel(outcome: &CancelOutcome) -> &'static str {
    match outcome {
        CancelOutcome::Cancelled(_) => "cancelled",
        CancelOutcome::NoSuchActivity => "no_such_activity",
        CancelOutcome::NothingToCancel => "nothing_to_cancel",
        CancelOutcome::TooLate(_) => "too_late",
    }
}

pub fn waiting(outcome: &JoinOutcome) -> &'static str {
    match outcome {
        JoinOutcome::Joined { .. } => "joined",
        JoinOutcome::AlreadyWaiting { .. } => "already_waiting",
        JoinOutcome::HoldsTicket => "already_holds",
        JoinOutcome::NotSoldOut { .. } => "not_sold_out",
        JoinOutcome::NotOpenYet { .. } => "not_open_yet",
        JoinOutcome::Closed => "closed",
        JoinOutcome::NoSuchActivity => "no_such_activity",
        JoinOutcome::NotBound => NOT_BOUND,
        JoinOutcome::Paused { .. } => "paused",
        JoinOutcome::Lottery { .. } => "lottery",
    }
}
