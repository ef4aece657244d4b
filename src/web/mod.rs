//! HTTP: the router, its layers, and the small pages that need no module of their own.

mod admin;
mod student;
mod wechat;

use std::time::Duration;

use askama::Template;
use askama_web::WebTemplate;
use axum::{
    Router,
    extract::{Request, State},
    http::{HeaderValue, StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use tower_http::{
    catch_panic::CatchPanicLayer, csrf::CsrfLayer, services::ServeDir, set_header::SetResponseHeaderLayer,
    timeout::TimeoutLayer, trace::TraceLayer,
};

use crate::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(landing))
        .route("/healthz", get(healthz))
        .merge(wechat::router())
        .merge(student::router())
        .merge(admin::router())
        .nest_service("/static", ServeDir::new(concat!(env!("CARGO_MANIFEST_DIR"), "/static")))
        .fallback(|| async { crate::AppError::NotFound })
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(header::REFERRER_POLICY, HeaderValue::from_static("same-origin")))
        // Refuses cross-origin browser POSTs (Sec-Fetch-Site / Origin); WeChat's
        // server sends neither header, so /wechat is unaffected.
        .layer(CsrfLayer::new())
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(30)))
        .layer(CatchPanicLayer::new())
        // Spans name the path only: query strings carry signatures and signed links.
        .layer(TraceLayer::new_for_http().make_span_with(
            |req: &Request| tracing::info_span!("request", method = %req.method(), path = %req.uri().path()),
        ))
        .with_state(state)
}

async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    match sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&state.pool).await {
        Ok(_) => (StatusCode::OK, "ok"),
        Err(e) => {
            tracing::warn!(error = %e, "health check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "landing.html")]
struct Landing {
    wechat_url: String,
    token_hint: &'static str,
    mode: &'static str,
}

async fn landing(State(state): State<AppState>) -> Landing {
    Landing {
        wechat_url: format!("{}/wechat", state.config.public_url),
        token_hint: if state.config.wechat_token.is_some() {
            "WECHAT_TOKEN 环境变量中配置的 Token"
        } else {
            "开发用 Token（启动时打印在终端里；正式使用请设置 WECHAT_TOKEN）"
        },
        mode: if state.cipher.is_some() { "安全模式或兼容模式" } else { "明文模式" },
    }
}
