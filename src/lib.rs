//! wechat-ticket: campus event ticketing over a WeChat Official Account.
//!
//! Data flows one way: `wechat` (protocol) → `bot` (what a message means) →
//! `booking` (rules and SQL) → PostgreSQL; `web` serves the HTTP side.

pub mod app;
pub mod audit;
pub mod auth;
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
pub mod notify;
pub mod roster;
pub mod settings;
pub mod telemetry;
pub mod web;
pub mod wechat;

pub use app::{AppState, Application};
pub use config::Config;
pub use error::{AppError, AppResult};

/// rustls needs one process-wide crypto provider; ring builds without a C toolchain dance.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
