//! Admin accounts: passwords (argon2), sessions in PostgreSQL, login throttling, teams and roles.

pub mod accounts;
pub mod passwords;
pub mod sessions;
pub mod teams;
pub mod throttle;
