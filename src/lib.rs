//! wechat-ticket: campus event ticketing over a WeChat Official Account.
//!
//! Data flows one way: `wechat` (protocol) → `bot` (what a message means) →
//! `booking` (rules and SQL) → PostgreSQL; `web` serves the HTTP side.

pub mod app;
pub mod audit;
pub mod auth;
pub mod background;
pub mod backups;
pub mod booking;
pub mod bot;
pub mod cli;
pub mod config;
pub mod db;
pub mod error;
pub mod identity;
pub mod links;
pub mod local_time;
pub mod menu;
pub mod meters;
pub mod notify;
pub mod roster;
pub mod schedule;
pub mod settings;
pub mod state;
pub mod telemetry;
pub mod transcripts;
pub mod web;
pub mod wechat;

pub use app::Application;
pub use config::Config;
pub use error::{AppError, AppResult};
pub use state::AppState;
pub use wechat::install_crypto_provider;
