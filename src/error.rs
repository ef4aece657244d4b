//! The one error type. Users see a plain sentence; the cause goes to the log.

use askama::Template;
use axum::{
    http::StatusCode,
    response::{Html, IntoResponse, Response},
};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("local PostgreSQL: {0}")]
    LocalPostgres(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A call to another service (the WeChat API) failed; the message is a
    /// sentence for the admin. The feature making the call converts its
    /// client's error into this, so the rules never depend on a protocol.
    #[error("{0}")]
    External(String),
    #[error("not found")]
    NotFound,
    /// It existed and is over for good (an expired or revoked link).
    #[error("gone: {0}")]
    Gone(String),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("{0}")]
    Invalid(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("timed out")]
    Timeout,
    /// Nothing is wrong, but the request could not be served in time (places
    /// held by bookings in flight, the database restarting): try again.
    #[error("busy")]
    Busy,
    #[error("{0}")]
    Internal(String),
}

pub type AppResult<T> = Result<T, AppError>;

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    message: &'a str,
}

impl AppError {
    fn status_and_message(&self) -> (StatusCode, &str) {
        match self {
            AppError::NotFound => (StatusCode::NOT_FOUND, "找不到这个页面。"),
            AppError::Gone(msg) => (StatusCode::GONE, msg.as_str()),
            AppError::BadRequest(msg) | AppError::Invalid(msg) => (StatusCode::BAD_REQUEST, msg.as_str()),
            AppError::Forbidden(msg) => (StatusCode::FORBIDDEN, msg.as_str()),
            AppError::Timeout | AppError::Busy => (StatusCode::SERVICE_UNAVAILABLE, "服务器繁忙，请稍后再试。"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "服务器出了点问题，请稍后再试。"),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, message) = self.status_and_message();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        } else {
            tracing::debug!(error = %self, "request refused");
        }
        let title = status.canonical_reason().unwrap_or("Error");
        let body = ErrorPage { title, message }.render().unwrap_or_else(|_| message.to_string());
        (status, Html(body)).into_response()
    }
}
