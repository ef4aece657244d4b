//! The admin console (`/admin`, SPEC §5): server-rendered pages behind a login.
//! Every state-changing request needs the session's CSRF token in its form, and
//! the router-wide CSRF layer also refuses cross-origin browser POSTs.

pub mod access;
mod accounts;
mod activities;
mod announcements;
mod checkin;
mod dashboard;
mod door_chart;
mod export;
mod guests;
mod halls;
mod holder_messages;
mod login;
mod lottery;
pub mod menu;
mod notifications;
mod roster;
mod rush_chart;
mod seats;
pub(crate) mod simulator;
mod students;
mod wechat_scan;

use axum::{
    Router,
    extract::{FromRequestParts, OptionalFromRequestParts},
    http::{HeaderMap, header, request::Parts},
    middleware,
    response::{IntoResponse, Redirect, Response},
};
use subtle::ConstantTimeEq;

use crate::{
    AppState, Config,
    auth::{
        accounts::{Admin, Scope, scope_of},
        sessions,
    },
    error::AppError,
};

/// The session cookie's name. Over https it is `__Host-` prefixed: a browser
/// then keeps it only if this host set it Secure, with `Path=/` and no
/// `Domain`, so neither a sibling subdomain nor a plain-http page can plant or
/// replace the admin's session.
pub fn cookie_name(config: &Config) -> &'static str {
    if config.public_url.starts_with("https://") { "__Host-wt_admin" } else { "wt_admin" }
}

pub fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .merge(login::router())
        .merge(accounts::router())
        .merge(activities::router())
        .merge(announcements::router())
        .merge(crate::web::headers::with_wechat_jssdk(checkin::router()))
        .merge(wechat_scan::router())
        .merge(export::router())
        .merge(halls::router())
        .merge(lottery::router())
        .merge(menu::router())
        .merge(notifications::router())
        .merge(roster::router())
        .merge(seats::router())
        .merge(guests::router())
        .merge(holder_messages::router())
        .merge(simulator::router())
        .merge(students::router())
        // Last, so it wraps every route above: who may open what (see `access`).
        .layer(middleware::from_fn_with_state(state.clone(), access::check))
}

/// A form whose only field is the CSRF token (buttons that change state).
#[derive(serde::Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

/// A logged-in account (an admin or an organizer). Pages that take it
/// redirect anonymous visitors to the login page.
#[derive(Clone)]
pub struct AdminSession {
    pub admin: Admin,
    pub csrf_token: String,
    /// Which activities it sees.
    pub scope: Scope,
}

/// The session as the access layer resolved it, for the handlers behind it.
#[derive(Clone)]
struct Resolved(Option<AdminSession>);

/// The session of the request's cookie, its account's role and teams read now.
async fn resolve(state: &AppState, headers: &HeaderMap) -> Result<Option<AdminSession>, AppError> {
    let Some(cookie) = session_cookie(headers, &state.config) else { return Ok(None) };
    let mut conn = state.pool.acquire().await?;
    let Some(session) = sessions::find(&mut conn, &cookie).await? else { return Ok(None) };
    let scope = scope_of(&mut conn, &session.admin).await?;
    Ok(Some(AdminSession { admin: session.admin, csrf_token: session.csrf_token, scope }))
}

impl AdminSession {
    /// Refuses a state-changing request whose form does not carry this session's token.
    pub fn check_csrf(&self, submitted: &str) -> Result<(), AppError> {
        if bool::from(self.csrf_token.as_bytes().ct_eq(submitted.as_bytes())) {
            Ok(())
        } else {
            Err(AppError::Forbidden("表单已过期，请刷新页面后重试。".into()))
        }
    }
}

pub fn session_cookie(headers: &HeaderMap, config: &Config) -> Option<String> {
    let name = cookie_name(config);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(found, _)| *found == name)
        .map(|(_, value)| value.to_string())
}

impl OptionalFromRequestParts<AppState> for AdminSession {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Option<Self>, AppError> {
        // Behind the access layer the session is already read; elsewhere (the
        // landing page) it is read here.
        match parts.extensions.get::<Resolved>() {
            Some(Resolved(session)) => Ok(session.clone()),
            None => resolve(state, &parts.headers).await,
        }
    }
}

impl FromRequestParts<AppState> for AdminSession {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match <AdminSession as OptionalFromRequestParts<AppState>>::from_request_parts(parts, state).await {
            Ok(Some(session)) => Ok(session),
            // After logging in, the admin lands on the page they asked for.
            Ok(None) => {
                Err(Redirect::to(&login::login_url(parts.uri.path_and_query().map_or("/admin", |p| p.as_str())))
                    .into_response())
            }
            Err(e) => Err(e.into_response()),
        }
    }
}
