//! What a request's log span says about it: the method and the path, with the
//! secrets that paths carry cut out. Query strings (signatures, signed links)
//! are never logged at all.

use std::borrow::Cow;

use axum::{
    extract::{MatchedPath, Request},
    middleware::Next,
    response::Response,
};
use tracing::Span;

/// Paths whose next segment is a bearer secret: a ticket code, a check-in
/// credential, a volunteer's check-in link. A new kind of secret link adds its prefix here.
const SECRET_AFTER: &[&str] = &["/tickets/", "/c/", "/door/"];

/// `path` with the secret segment after any prefix of [`SECRET_AFTER`] replaced by `…`:
/// `/tickets/{code}/cancel` → `/tickets/…/cancel`. Prefixes match in any letter
/// case and past doubled slashes, since a mistyped link still carries the real secret.
pub fn redacted(path: &str) -> Cow<'_, str> {
    for prefix in SECRET_AFTER {
        let Some(head) = path.get(..prefix.len()).filter(|head| head.eq_ignore_ascii_case(prefix)) else {
            continue;
        };
        let rest = path[prefix.len()..].trim_start_matches('/');
        let after = rest.find('/').map_or("", |end| &rest[end..]);
        if rest.len() == after.len() {
            return Cow::Borrowed(path);
        }
        return Cow::Owned(format!("{head}…{after}"));
    }
    Cow::Borrowed(path)
}

pub fn span(req: &Request) -> Span {
    tracing::info_span!("request", method = %req.method(), path = %redacted(req.uri().path()))
}

/// Counts and times the request under its route's pattern (`/tickets/{code}`),
/// never its path: a path carries ticket codes and credentials. A path no
/// route matched is `unmatched`, so probes cannot mint labels.
pub async fn measure(req: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string());
    let method = req.method().clone();
    let response = next.run(req).await;
    let route = route.as_deref().unwrap_or("unmatched");
    crate::meters::http_request(method.as_str(), route, response.status().as_u16(), started.elapsed());
    response
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn secret_segments_are_cut_out() {
        assert_eq!(redacted("/tickets/AbCdEfGhIjKlMnOpQrStUv"), "/tickets/…");
        assert_eq!(redacted("/tickets/AbCdEfGhIjKlMnOpQrStUv/cancel"), "/tickets/…/cancel");
        assert_eq!(redacted("/c/AbCdEfGhIjKlMnOpQrStUv"), "/c/…");
        assert_eq!(redacted("/TICKETS/secret"), "/TICKETS/…");
        assert_eq!(redacted("/tickets//secret/cancel"), "/tickets/…/cancel");
        assert_eq!(redacted("/door/5.AbCdEfGhIjKlMnOpQrStUv/scan"), "/door/…/scan");
    }

    #[test]
    fn other_paths_are_logged_as_they_are() {
        for path in
            ["/", "/my/tickets", "/tickets/", "/tickets", "/c/", "/admin/activities/3/checkin", "/cx/y", "/wechat"]
        {
            assert_eq!(redacted(path), path);
        }
    }
}
