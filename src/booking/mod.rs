//! The booking rules (SPEC §3) and every SQL statement about activities,
//! students and tickets. No HTTP and no XML here: callers pass a connection
//! (usually their transaction) and get plain outcomes back.

pub mod activities;
pub mod checkin;
pub mod checkin_links;
pub mod door;
pub mod export;
pub mod guests;
pub mod images;
pub mod lottery;
pub mod no_show;
pub mod outbox;
pub mod poster_check;
pub mod refusals;
pub mod rush_facts;
pub mod seats;
pub mod status;
pub mod students;
pub mod tickets;
pub mod waiting;

pub use activities::{Activity, NewActivity};
pub use status::{ActivityStatus, TicketStatus};
pub use students::Student;
pub use tickets::Ticket;
