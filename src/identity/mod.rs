//! Who a student is: the campus CAS login that proves a student ID at binding,
//! WeChat web authorization that proves an openid on the `/m` pages, and the
//! short-lived student session that remembers it. The bind rules themselves
//! stay in `booking::students`.

pub mod cas;
pub mod oauth;
pub mod session;

use sqlx::PgConnection;

use crate::error::AppError;

/// The HTTP client for calls to CAS and WeChat's OAuth endpoint: short
/// timeouts, because a student is waiting on the page.
pub(crate) fn http() -> Result<reqwest::Client, AppError> {
    static HTTP: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    if let Some(http) = HTTP.get() {
        return Ok(http.clone());
    }
    crate::install_crypto_provider();
    let http = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(3))
        .timeout(std::time::Duration::from_secs(10))
        // A validation answer is read as it came; a redirect would be someone else's answer.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| AppError::Internal(format!("HTTP client: {e}")))?;
    Ok(HTTP.get_or_init(|| http).clone())
}

/// Housekeeping: used CAS tickets (CAS expires a ticket within minutes) and
/// remembered OAuth codes (WeChat's expire in five) are forgotten after a day.
pub async fn forget_old(conn: &mut PgConnection) -> Result<u64, AppError> {
    let mut forgotten = sqlx::query("DELETE FROM used_cas_tickets WHERE used_at < now() - interval '1 day'")
        .execute(&mut *conn)
        .await?
        .rows_affected();
    forgotten += sqlx::query("DELETE FROM oauth_codes WHERE exchanged_at < now() - interval '1 day'")
        .execute(&mut *conn)
        .await?
        .rows_affected();
    Ok(forgotten)
}
