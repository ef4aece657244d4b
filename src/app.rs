//! The application: shared state, the HTTP listener, and serving until told to stop.

use std::{future::Future, net::SocketAddr, sync::Arc};

use sqlx::PgPool;
use tokio::net::{TcpListener, TcpSocket};

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
        let secret_key = match &config.secret_key {
            Some(key) => key.as_bytes().to_vec(),
            None => crate::settings::get_or_generate(&pool, "secret_key").await?.into_bytes(),
        };
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
        })))
    }
}

pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    /// Binds the listener (port 0 picks a free port, as tests do).
    pub async fn build(state: AppState) -> Result<Application, AppError> {
        let listener = bind_listener(state.config.listen)
            .map_err(|e| AppError::Config(format!("LISTEN {}: {e}", state.config.listen)))?;
        Ok(Application::with_listener(listener, state))
    }

    /// Serves on a listener the caller bound (tests bind first to learn the port).
    pub fn with_listener(listener: TcpListener, state: AppState) -> Application {
        if let Ok(addr) = listener.local_addr() {
            let _ = state.local_addr.set(addr);
        }
        Application { listener, state }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then finishes the requests in flight.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), AppError> {
        let router = crate::web::router(self.state);
        axum::serve(self.listener, router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(shutdown)
            .await?;
        Ok(())
    }
}

/// Binds `addr` with SO_REUSEADDR and the longest accept queue the kernel allows.
///
/// WeChat delivers a rush as a burst of fresh connections. tokio's (and std's)
/// `bind` asks for a backlog of 128: past that the kernel drops SYNs and those
/// students wait a second for the retransmit, so every listener is bound here.
pub fn bind_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    bind_listener_with_backlog(addr, max_backlog())
}

/// As [`bind_listener`], with a chosen backlog (the rush benchmark compares against 128).
pub fn bind_listener_with_backlog(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    // A restart must not wait for the old process's connections in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// `net.core.somaxconn` on Linux (the kernel caps any larger request to it anyway); 4096 elsewhere.
pub fn max_backlog() -> u32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(4096)
        // listen(2) takes an int.
        .min(i32::MAX as u32)
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

/// Forgets what is no longer needed, every ten minutes (see `tidy`). Any
/// number of instances may run it; the deletes are idempotent.
pub async fn housekeeping(pool: PgPool) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(600));
    loop {
        every.tick().await;
        match tidy(&pool).await {
            Ok(forgotten) => tracing::debug!(forgotten, "housekeeping"),
            Err(e) => tracing::warn!(error = %e, "housekeeping failed"),
        }
    }
}

/// One round of housekeeping over every table that grows: de-duplication
/// records older than WeChat's retries and signed queries older than the
/// freshness window, expired admin sessions, failed logins too old to count,
/// spent bind links past their expiry, posters no activity uses, old
/// simulator chats. Returns how many rows went.
pub async fn tidy(pool: &PgPool) -> Result<u64, AppError> {
    let mut conn = pool.acquire().await?;
    let mut forgotten = crate::web::wechat::records::forget_old(&mut conn).await?;
    forgotten += crate::auth::sessions::forget_expired(&mut conn).await?;
    forgotten += crate::auth::throttle::forget_old(&mut conn).await?;
    forgotten += crate::booking::students::forget_expired_bind_links(&mut conn).await?;
    forgotten += crate::booking::images::forget_unused(&mut conn).await?;
    forgotten += crate::identity::forget_old(&mut conn).await?;
    forgotten += crate::booking::checkin::forget_old_scans(&mut conn).await?;
    forgotten += crate::web::admin::simulator::transcripts::forget_old(&mut conn).await?;
    forgotten += crate::notify::notifications::forget_old(&mut conn).await?;
    Ok(forgotten)
}
