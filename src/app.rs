//! The application: the HTTP listener, and serving until told to stop.

use std::{future::Future, net::SocketAddr};

use tokio::net::{TcpListener, TcpSocket};

use crate::{AppState, error::AppError};

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
    /// Meanwhile the refusal counts go to the database about once a second,
    /// and once more after the last request.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), AppError> {
        let stop = tokio_util::sync::CancellationToken::new();
        let refusals = tokio::spawn(crate::booking::refusals::keep_flushing(
            self.state.refusals.clone(),
            self.state.pool.clone(),
            stop.clone(),
        ));
        let router = crate::web::router(self.state);
        let served = axum::serve(self.listener, router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(shutdown)
            .await;
        stop.cancel();
        let _ = refusals.await;
        served?;
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
