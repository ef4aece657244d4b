//! Admin accounts: passwords (argon2), sessions in PostgreSQL, login throttling.

pub mod accounts;
pub mod passwords;
pub mod sessions;
pub mod throttle;
