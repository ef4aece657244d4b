//! The WeChat scanner on the check-in page: `wx.config` for the page's URL,
//! signed with the shared `jsapi_ticket`, so `wx.scanQRCode` can read tickets
//! inside WeChat's browser.

use axum::{
    Json, Router,
    extract::{Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;

use super::AdminSession;
use crate::{AppState, menu, wechat::jssdk};

/// The longest page URL signed; a check-in page's is far shorter.
const MAX_URL_LEN: usize = 2048;

pub fn router() -> Router<AppState> {
    Router::new().route("/checkin/wechat-config", get(wechat_config))
}

/// Whether the page asking may scan tickets at the door: a logged-in admin's,
/// or a volunteer's check-in page whose link is still open (its token is in
/// the page's URL, which is what gets signed).
async fn may_scan(state: &AppState, admin: bool, page_url: &str) -> bool {
    if admin {
        return true;
    }
    let own = format!("{}/door/", state.config.public_url.trim_end_matches('/'));
    let Some(rest) = page_url.strip_prefix(&own) else { return false };
    let token = rest.split(['/', '?', '#']).next().unwrap_or_default();
    crate::web::door::link_is_open(state, token).await
}

fn refusal(status: StatusCode, error: String) -> Response {
    (status, Json(json!({ "error": error }))).into_response()
}

#[derive(Deserialize)]
struct PageUrl {
    #[serde(default)]
    url: String,
}

/// `wx.config`'s fields for `?url=` (the page's `location.href`), which must be
/// a page of this site: a signature for someone else's page is no one's business.
async fn wechat_config(
    State(state): State<AppState>,
    session: Option<AdminSession>,
    Query(page): Query<PageUrl>,
) -> Response {
    let url = page.url.split('#').next().unwrap_or_default();
    if !may_scan(&state, session.is_some(), url).await {
        return refusal(StatusCode::UNAUTHORIZED, "请先登录管理后台，或从有效的志愿者检票链接打开。".into());
    }
    let own = format!("{}/", state.config.public_url.trim_end_matches('/'));
    if !url.starts_with(&own) || url.len() > MAX_URL_LEN {
        return refusal(StatusCode::BAD_REQUEST, format!("只能为本站（{own}）的页面签名。"));
    }
    let api = match menu::wechat_api(&state.config, state.pool.clone()) {
        Ok(api) => api,
        // No AppID/AppSecret: the page keeps its other ways of reading tickets.
        Err(e) => return refusal(StatusCode::NOT_FOUND, e.to_string()),
    };
    match api.jsapi_ticket().await {
        Ok(ticket) => {
            let now = OffsetDateTime::now_utc().unix_timestamp();
            let appid = state.config.wechat_appid.as_deref().unwrap_or_default();
            // A signature is good for this page now; no cache keeps it.
            ([(header::CACHE_CONTROL, "no-store")], Json(jssdk::config(appid, &ticket.token, url, now))).into_response()
        }
        Err(e) => refusal(StatusCode::BAD_GATEWAY, e.to_string()),
    }
}
