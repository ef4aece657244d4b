//! The shared state every request handler gets: the pool, the settings, the
//! secrets, and the notifier (the rules' outbox).

use std::{net::SocketAddr, sync::Arc};

use sqlx::PgPool;

use crate::{Config, db, error::AppError, wechat::crypto::Cipher};

/// Everything a request handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub pool: PgPool,
    pub config: Config,
    /// `WECHAT_TOKEN`, or the development token stored in the database.
    pub wechat_token: String,
    /// HMAC key for signed links: `SECRET_KEY` or generated once in the database.
    pub secret_key: Vec<u8>,
    /// Present when `WECHAT_AES_KEY` is set: safe and compatible mode.
    pub cipher: Option<Cipher>,
    /// Where this instance listens, once bound: the simulator posts to its own `/wechat` there.
    pub local_addr: std::sync::OnceLock<SocketAddr>,
    /// Whether the database is there, as the managed cluster's supervisor sees it.
    pub database: db::DatabaseHealth,
    /// Enqueues notifications (in the caller's transaction) and runs their workers.
    pub notifier: crate::notify::Notifier,
    /// Refused bookings counted in memory, written about once a second (`booking::refusals`).
    pub refusals: Arc<crate::booking::refusals::Tally>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub async fn new(config: Config, pool: PgPool) -> Result<AppState, AppError> {
        let wechat_token = match &config.wechat_token {
            Some(token) => token.clone(),
            None => crate::settings::get_or_generate(&pool, "dev_wechat_token").await?,
        };
        let secret_key = crate::settings::secret_key(&config, &pool).await?;
        let cipher = match &config.wechat_aes_key {
            Some(key) => {
                let appid = config
                    .wechat_appid
                    .as_deref()
                    .ok_or_else(|| AppError::Config("WECHAT_AES_KEY is set, so WECHAT_APPID must be set too".into()))?;
                Some(Cipher::new(key, appid).map_err(|e| AppError::Config(format!("WECHAT_AES_KEY: {e}")))?)
            }
            None => None,
        };
        let notifier = crate::notify::Notifier::new(pool.clone(), config.clone(), secret_key.clone()).await?;
        Ok(AppState(Arc::new(Inner {
            notifier,
            pool,
            config,
            wechat_token,
            secret_key,
            cipher,
            local_addr: std::sync::OnceLock::new(),
            database: db::DatabaseHealth::default(),
            refusals: Arc::default(),
        })))
    }
}
