//! The WeChat `access_token` and the JS-SDK's `jsapi_ticket`, shared by every
//! instance through `wechat_access_tokens` and `wechat_jsapi_tickets`.
//!
//! A refresh holds a transaction-scoped advisory lock on the appid, so one
//! instance fetches while the others wait, then find the new token and reuse
//! it: WeChat rations fetches, and each one invalidates the previous token.

use sqlx::PgPool;

use crate::wechat::api::{AccessToken, ApiClient, ApiError, Kind, Refreshed, StoreError, TokenStore};

/// The API client this app uses.
pub type WechatApi = ApiClient<PgTokenStore>;

#[derive(Clone)]
pub struct PgTokenStore {
    pool: PgPool,
}

impl PgTokenStore {
    pub fn new(pool: PgPool) -> PgTokenStore {
        PgTokenStore { pool }
    }
}

/// The statements for one kind: fixed text, never built from input.
struct Table {
    select: &'static str,
    lock: &'static str,
    upsert: &'static str,
}

fn table(kind: Kind) -> Table {
    match kind {
        Kind::AccessToken => Table {
            select: "SELECT access_token, expires_at FROM wechat_access_tokens WHERE appid = $1",
            lock: "SELECT pg_advisory_xact_lock(hashtext('wechat_access_tokens'), hashtext($1))",
            upsert: "INSERT INTO wechat_access_tokens (appid, access_token, expires_at, refreshed_at) \
                     VALUES ($1, $2, $3, now()) ON CONFLICT (appid) DO UPDATE \
                     SET access_token = EXCLUDED.access_token, expires_at = EXCLUDED.expires_at, refreshed_at = now()",
        },
        Kind::JsapiTicket => Table {
            select: "SELECT ticket, expires_at FROM wechat_jsapi_tickets WHERE appid = $1",
            lock: "SELECT pg_advisory_xact_lock(hashtext('wechat_jsapi_tickets'), hashtext($1))",
            upsert: "INSERT INTO wechat_jsapi_tickets (appid, ticket, expires_at, refreshed_at) \
                     VALUES ($1, $2, $3, now()) ON CONFLICT (appid) DO UPDATE \
                     SET ticket = EXCLUDED.ticket, expires_at = EXCLUDED.expires_at, refreshed_at = now()",
        },
    }
}

fn storage(e: sqlx::Error) -> ApiError {
    ApiError::Storage(Box::new(e))
}

impl TokenStore for PgTokenStore {
    async fn current(&self, kind: Kind, appid: &str) -> Result<Option<AccessToken>, StoreError> {
        let row: Option<(String, time::OffsetDateTime)> =
            sqlx::query_as(table(kind).select).bind(appid).fetch_optional(&self.pool).await?;
        Ok(row.map(|(token, expires_at)| AccessToken { token, expires_at }))
    }

    async fn refresh_locked<F, Fut>(&self, kind: Kind, appid: &str, refresh: F) -> Result<AccessToken, ApiError>
    where
        F: FnOnce(Option<AccessToken>) -> Fut + Send,
        Fut: Future<Output = Result<Refreshed, ApiError>> + Send + 'static,
    {
        let table = table(kind);
        let mut tx = self.pool.begin().await.map_err(storage)?;
        // A refresh takes at most one bounded HTTP call (10 s, plus backoff);
        // a waiter that waits far longer than that is better told so.
        sqlx::query("SET LOCAL lock_timeout = '30s'").execute(&mut *tx).await.map_err(storage)?;
        sqlx::query(table.lock).bind(appid).execute(&mut *tx).await.map_err(storage)?;
        let stored: Option<(String, time::OffsetDateTime)> =
            sqlx::query_as(table.select).bind(appid).fetch_optional(&mut *tx).await.map_err(storage)?;
        let stored = stored.map(|(token, expires_at)| AccessToken { token, expires_at });
        let token = match refresh(stored).await? {
            Refreshed::Reused(token) => token,
            Refreshed::Fetched(token) => {
                sqlx::query(table.upsert)
                    .bind(appid)
                    .bind(&token.token)
                    .bind(token.expires_at)
                    .execute(&mut *tx)
                    .await
                    .map_err(storage)?;
                token
            }
        };
        tx.commit().await.map_err(storage)?;
        Ok(token)
    }
}
