//! Who may open which admin route: the one check every admin request passes
//! through (a layer on the whole admin router), so no handler has to remember
//! it. An `admin` may do everything; an `organizer` only what concerns their
//! teams' activities. A route this file does not know is refused to an
//! organizer: a route added later without thought is closed, not open.

use axum::{
    extract::{FromRequestParts, MatchedPath, RawPathParams, Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::{
    AppState,
    booking::{activities, checkin_links},
    error::AppError,
};

/// What a route asks of an organizer.
#[derive(Debug, PartialEq, Eq)]
pub enum Access {
    /// Login, logout, the (filtered) activity list, a new activity's form and
    /// its creation (the handler keeps the team to one of theirs), the
    /// scanner's `wx.config` for their own check-in page, the audit log and
    /// the notifications (their queries show them their teams' activities' only).
    Organizer,
    /// Names an activity by its `{id}`: theirs only.
    Activity,
    /// Names a volunteer check-in link by its `{id}`: their activity's only.
    CheckinLink,
    /// Account-wide: admins only.
    AdminOnly,
}

/// The access of a route, by its path template as the router has it.
pub fn access(route: &str) -> Access {
    match route {
        "/admin/login"
        | "/admin/logout"
        | "/admin"
        | "/admin/activities/new"
        | "/admin/activities"
        | "/checkin/wechat-config"
        // The audit log and the notifications: their queries keep an organizer
        // to what concerns their teams' activities (`audit::recent`,
        // `notifications::recent`). The test message stays an admin's.
        | "/admin/audit"
        | "/admin/notifications" => Access::Organizer,
        "/admin/checkin-links/{id}/revoke" => Access::CheckinLink,
        // 群发 reaches every follower of the account, not an activity's
        // students: an admin's, whichever activity it announces. Named here
        // (not left to the default) so it stays so if it moves under an activity.
        r if r == "/admin/announcements" || r.starts_with("/admin/announcements/") => Access::AdminOnly,
        // Everything under an activity (its page, door, exports, seats, lottery,
        // volunteer links, and what is added there later) is that activity's.
        r if r == "/admin/activities/{id}" || r.starts_with("/admin/activities/{id}/") => Access::Activity,
        _ => Access::AdminOnly,
    }
}

const ADMINS_ONLY: &str = "这个页面只有管理员可以使用。";

/// The layer: resolves the session once (the handlers' `AdminSession` reads
/// it from the request), then lets an admin through and holds an organizer
/// to `access`. Another team's activity answers exactly as a missing one
/// (404), so an organizer cannot learn that it exists; nothing runs.
pub async fn check(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let id = match RawPathParams::from_request_parts(&mut parts, &state).await {
        Ok(params) => params.iter().find(|(name, _)| *name == "id").and_then(|(_, v)| v.parse::<i64>().ok()),
        Err(_) => None,
    };
    let mut request = Request::from_parts(parts, body);
    let session = match super::resolve(&state, request.headers()).await {
        Ok(session) => session,
        Err(e) => return e.into_response(),
    };
    request.extensions_mut().insert(super::Resolved(session.clone()));
    // Anonymous: the handler sends them to the login page (or serves the login page).
    let Some(session) = session else { return next.run(request).await };
    let Some(teams) = session.scope.team_filter() else { return next.run(request).await };
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string());
    let access = route.as_deref().map_or(Access::AdminOnly, access);
    let allowed = match access {
        Access::Organizer => Ok(true),
        Access::AdminOnly => Ok(false),
        Access::Activity | Access::CheckinLink => match id {
            None => Err(AppError::NotFound),
            Some(id) => {
                let team = match state.pool.acquire().await {
                    Ok(mut conn) if access == Access::Activity => activities::team_of(&mut conn, id).await,
                    Ok(mut conn) => checkin_links::team_of(&mut conn, id).await,
                    Err(e) => Err(e.into()),
                };
                match team {
                    Ok(Some(team)) if teams.contains(&team) => Ok(true),
                    Ok(_) => Err(AppError::NotFound),
                    Err(e) => Err(e),
                }
            }
        },
    };
    match allowed {
        Ok(true) => next.run(request).await,
        Ok(false) => AppError::Forbidden(ADMINS_ONLY.into()).into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_under_an_activity_are_its_own_and_unknown_routes_are_for_admins() {
        assert_eq!(access("/admin/activities/{id}"), Access::Activity);
        assert_eq!(access("/admin/activities/{id}/export.csv"), Access::Activity);
        assert_eq!(access("/admin/activities/{id}/anything-added-later"), Access::Activity);
        assert_eq!(access("/admin/checkin-links/{id}/revoke"), Access::CheckinLink);
        assert_eq!(access("/admin"), Access::Organizer);
        assert_eq!(access("/admin/activities"), Access::Organizer);
        assert_eq!(access("/admin/audit"), Access::Organizer);
        assert_eq!(access("/admin/menu"), Access::AdminOnly);
        assert_eq!(access("/admin/students"), Access::AdminOnly);
        assert_eq!(access("/admin/notifications"), Access::Organizer);
        assert_eq!(access("/admin/notifications/test"), Access::AdminOnly);
        assert_eq!(access("/admin/halls/{id}"), Access::AdminOnly);
        assert_eq!(access("/admin/something-new"), Access::AdminOnly);
        assert_eq!(access("/admin/announcements"), Access::AdminOnly);
        assert_eq!(access("/admin/announcements/{id}/send"), Access::AdminOnly);
        assert_eq!(access("/admin/activities/{activity_id}"), Access::AdminOnly, "another name is not guessed at");
    }
}
