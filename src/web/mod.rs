//! HTTP: the router, its layers, and the small pages that need no module of their own.

pub(crate) mod admin;
mod cas_bind;
pub(crate) mod door;
mod headers;
mod lottery;
mod m;
pub mod metrics_listener;
mod request_log;
mod seat_chooser;
pub(crate) mod seat_map;
mod static_files;
mod student;
pub(crate) mod wechat;

use std::time::Duration;

use askama::Template;
use askama_web::WebTemplate;
use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use tower_http::{catch_panic::CatchPanicLayer, csrf::CsrfLayer, timeout::TimeoutLayer, trace::TraceLayer};

use crate::AppState;

pub fn router(state: AppState) -> Router {
    let router = Router::new()
        .route("/", get(landing))
        .route("/healthz", get(healthz))
        .merge(wechat::router())
        .merge(student::router())
        .merge(lottery::router())
        .merge(m::router())
        .merge(seat_chooser::router())
        .merge(admin::router(&state))
        .route("/static/{*path}", get(static_files::serve))
        .merge(headers::with_wechat_jssdk(door::router()))
        .fallback(|| async { crate::AppError::NotFound })
        // Refuses cross-origin browser POSTs (Sec-Fetch-Site / Origin); WeChat's
        // server sends neither header, so /wechat is unaffected.
        .layer(CsrfLayer::new())
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(30)))
        .layer(CatchPanicLayer::new())
        // Per route pattern (a layer on the router runs after routing, so the pattern is known).
        .layer(axum::middleware::from_fn(request_log::measure));
    // Outside the layers above, so their refusals carry the headers too.
    let router = headers::add(router, state.config.public_url.starts_with("https://"));
    router
        // Spans name the path, secrets cut out (ticket codes, credentials); never the query.
        .layer(TraceLayer::new_for_http().make_span_with(request_log::span))
        .with_state(state)
}

/// The request comes from WeChat's built-in browser.
pub(crate) fn in_wechat(headers: &axum::http::HeaderMap) -> bool {
    headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).is_some_and(|ua| ua.contains("MicroMessenger"))
}

async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    let probe = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&state.pool);
    // Known down (or found down while the probe waits for a connection): say
    // why at once rather than when the pool gives up.
    let probed = tokio::select! {
        biased;
        () = state.database.went_down() => None,
        probed = probe => Some(probed),
    };
    match probed {
        None => {
            let why = state.database.outage(state.config.timezone);
            (StatusCode::SERVICE_UNAVAILABLE, why.unwrap_or_else(|| "database down".into()))
        }
        Some(Ok(_)) => (StatusCode::OK, healthy(&state).await),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "health check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable".into())
        }
    }
}

/// `ok`, then what a monitor should know about the backups: when the last
/// good one was taken, `STALE` when that is more than two days ago, and the
/// newest attempt when it failed. Still 200 when stale: a load balancer
/// reading this would take every instance out, and students are not served
/// any better for that.
async fn healthy(state: &AppState) -> String {
    let now = time::OffsetDateTime::now_utc();
    let overview = async {
        let mut conn = state.pool.acquire().await?;
        crate::backups::overview(&mut conn, state.config.backup_at, now).await
    };
    match tokio::time::timeout(Duration::from_secs(2), overview).await {
        Ok(Ok(overview)) => {
            let lines = overview.health_lines(state.config.timezone, now);
            std::iter::once("ok".to_string()).chain(lines).collect::<Vec<_>>().join("\n")
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "health check could not read the backups");
            "ok\nbackup: unknown (the backups' log could not be read)".into()
        }
        Err(_) => "ok\nbackup: unknown (the backups' log was slow to answer)".into(),
    }
}

/// The landing page: what this server is, and what to paste into the WeChat
/// console. The Token and EncodingAESKey are secrets, so only a logged-in
/// admin (not an organizer) sees their values; anyone else learns where they are configured.
#[derive(Template, WebTemplate)]
#[template(path = "landing.html")]
struct Landing {
    wechat_url: String,
    /// `PUBLIC_URL` still points at this machine, which WeChat cannot reach.
    local_only: bool,
    /// `WECHAT_TOKEN` is set (otherwise the development token is in use).
    token_configured: bool,
    /// `WECHAT_AES_KEY` is set.
    encrypted: bool,
    /// The message mode in force: its `WECHAT_MESSAGE_MODE` name and the console's name for it.
    mode: &'static str,
    mode_console: &'static str,
    /// The values, for a logged-in admin only.
    secrets: Option<Secrets>,
}

struct Secrets {
    token: String,
    aes_key: Option<String>,
}

async fn landing(State(state): State<AppState>, session: Option<admin::AdminSession>) -> impl IntoResponse {
    let public_url = &state.config.public_url;
    let host = public_url.split("://").nth(1).unwrap_or_default();
    let page = Landing {
        wechat_url: format!("{public_url}/wechat"),
        local_only: ["127.", "localhost", "0.0.0.0", "[::1]", "[::]"].iter().any(|local| host.starts_with(local)),
        token_configured: state.config.wechat_token.is_some(),
        encrypted: state.cipher.is_some(),
        mode: state.config.message_mode.name(),
        mode_console: state.config.message_mode.console_name(),
        // An admin's only: an organizer manages activities, not the account's secrets.
        secrets: session
            .filter(|s| s.admin.is_admin())
            .map(|_| Secrets { token: state.wechat_token.clone(), aes_key: state.config.wechat_aes_key.clone() }),
    };
    // The page varies with the login and may carry secrets: no cache keeps it.
    ([(header::CACHE_CONTROL, "private, no-store")], page)
}
