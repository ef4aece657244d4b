//! The student session: a short-lived cookie naming the openid that WeChat
//! web authorization proved, MAC'd with the secret key so it cannot be made
//! up. Stateless: nothing to store or clean, and it dies by its expiry.

use axum::http::HeaderMap;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::Config;

/// The student's cookies: the session, the one binding a web authorization's
/// `state` to the browser that asked, and the one binding a CAS round trip to
/// the browser that opened the bind link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cookie {
    Session,
    OauthState,
    CasBind,
}

impl Cookie {
    /// Over https every name is `__Host-` prefixed (`Secure`, `Path=/`, no
    /// `Domain`): a browser then refuses the name from anything but this host
    /// over https, so a sibling subdomain of the campus cannot plant one.
    pub fn name(self, config: &Config) -> &'static str {
        let https = config.public_url.starts_with("https://");
        match (self, https) {
            (Cookie::Session, true) => "__Host-wt_student",
            (Cookie::Session, false) => "wt_student",
            (Cookie::OauthState, true) => "__Host-wt_oauth",
            (Cookie::OauthState, false) => "wt_oauth",
            (Cookie::CasBind, true) => "__Host-wt_bind",
            (Cookie::CasBind, false) => "wt_bind",
        }
    }

    /// Over plain http (development) the cookie stays on the pages that read it.
    fn plain_path(self) -> &'static str {
        match self {
            Cookie::Session | Cookie::OauthState => "/m",
            Cookie::CasBind => "/bind",
        }
    }
}

/// Two hours: long enough for a rush, short enough that a borrowed phone forgets.
pub const LIFETIME_SECONDS: i64 = 2 * 3600;

fn mac(secret: &[u8], label: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(label);
    for part in parts {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    mac
}

/// A session cookie value for `openid`, valid until `expires` (unix seconds).
pub fn issue(secret: &[u8], openid: &str, expires: i64) -> String {
    let sig = mac(secret, b"student-session\0", &[openid.as_bytes(), expires.to_string().as_bytes()]);
    let sig = URL_SAFE_NO_PAD.encode(sig.finalize().into_bytes());
    format!("{}.{expires}.{sig}", URL_SAFE_NO_PAD.encode(openid))
}

/// The openid a session cookie proves, if it is genuine and not expired.
pub fn open(secret: &[u8], value: &str, now: i64) -> Option<String> {
    let mut parts = value.splitn(3, '.');
    let openid = String::from_utf8(URL_SAFE_NO_PAD.decode(parts.next()?).ok()?).ok()?;
    let expires: i64 = parts.next()?.parse().ok()?;
    let sig = URL_SAFE_NO_PAD.decode(parts.next()?).ok()?;
    mac(secret, b"student-session\0", &[openid.as_bytes(), expires.to_string().as_bytes()]).verify_slice(&sig).ok()?;
    (now < expires).then_some(openid)
}

/// The CSRF token of the forms on pages shown in a session: a MAC over the
/// session cookie, which another site can neither read nor derive.
pub fn csrf_token(secret: &[u8], session: &str) -> String {
    let sig = mac(secret, b"student-csrf\0", &[session.as_bytes()]);
    URL_SAFE_NO_PAD.encode(&sig.finalize().into_bytes()[..16])
}

pub fn csrf_ok(secret: &[u8], session: &str, given: &str) -> bool {
    let expected = csrf_token(secret, session);
    bool::from(subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), given.as_bytes()))
}

/// The `st` carried through a CAS round trip, derived from the nonce kept in
/// the bind cookie and the bind link's own nonce: the CAS login URL shows it,
/// but only the browser holding the cookie can match it at the callback, so a
/// login URL passed to another student binds nothing.
pub fn cas_bind_state(secret: &[u8], nonce: &str, link_nonce: &str) -> String {
    hex::encode(
        &mac(secret, b"cas-bind-state\0", &[nonce.as_bytes(), link_nonce.as_bytes()]).finalize().into_bytes()[..16],
    )
}

/// Whether `given` is the state this browser's bind cookie makes for the link.
pub fn cas_bind_state_ok(secret: &[u8], cookie_nonce: Option<&str>, link_nonce: &str, given: &str) -> bool {
    let Some(nonce) = cookie_nonce.filter(|n| !n.is_empty()) else { return false };
    let expected = cas_bind_state(secret, nonce, link_nonce);
    bool::from(subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), given.as_bytes()))
}

/// The `state` sent with an authorization, derived from the nonce kept in the
/// state cookie: the URL shows the state, never the nonce, so a leaked
/// callback URL is no good in another browser. Hex, as WeChat takes only
/// `[a-zA-Z0-9]` (at most 128 bytes).
pub fn oauth_state(secret: &[u8], nonce: &str) -> String {
    hex::encode(&mac(secret, b"oauth-state\0", &[nonce.as_bytes()]).finalize().into_bytes()[..16])
}

/// A student cookie's value from the request (by its name under `config`).
pub fn read(config: &Config, headers: &HeaderMap, which: Cookie) -> Option<String> {
    cookie(headers, which.name(config))
}

/// A cookie's value from the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(found, _)| *found == name)
        .map(|(_, value)| value.to_string())
}

/// `Set-Cookie` for a student cookie. SameSite=Lax: WeChat's and CAS's
/// redirects back are top-level GETs from another site, which Lax lets
/// through; another site's POST is not.
pub fn set_cookie(config: &Config, which: Cookie, value: &str, max_age: i64) -> String {
    let name = which.name(config);
    if config.public_url.starts_with("https://") {
        format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}; Secure")
    } else {
        format!("{name}={value}; Path={}; HttpOnly; SameSite=Lax; Max-Age={max_age}", which.plain_path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_proves_its_openid_until_it_expires() {
        let s = issue(b"key", "oStudent", 1000);
        assert_eq!(open(b"key", &s, 999).as_deref(), Some("oStudent"));
        assert_eq!(open(b"key", &s, 1000), None);
        assert_eq!(open(b"other", &s, 0), None);
        let forged = s.replacen(&URL_SAFE_NO_PAD.encode("oStudent"), &URL_SAFE_NO_PAD.encode("oOther"), 1);
        assert_eq!(open(b"key", &forged, 0), None);
        assert_eq!(open(b"key", &s.replace(".1000.", ".2000."), 0), None);
        for junk in ["", "a", "a.b", "a.1.c"] {
            assert_eq!(open(b"key", junk, 0), None);
        }
    }

    #[test]
    fn the_state_is_alphanumeric_and_the_csrf_token_follows_the_session() {
        let state = oauth_state(b"key", "nonce");
        assert!(state.len() <= 128 && state.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(state, oauth_state(b"key", "other"));
        let t = csrf_token(b"key", "session-a");
        assert!(csrf_ok(b"key", "session-a", &t));
        assert!(!csrf_ok(b"key", "session-b", &t));
        assert!(!csrf_ok(b"key", "session-a", ""));
    }
}
