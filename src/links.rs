//! Signed, expiring links sent inside WeChat replies (bind page, ticket page,
//! my tickets) and the tokens of the forms on those pages: HMAC-SHA256 with the
//! secret key over the purpose, the openid, a subject (the ticket code for a
//! ticket, a one-time nonce for a bind link) and the expiry, so a link opens
//! only for the WeChat user it was sent to and only for what it names.
//!
//! Also the ticket's check-in credential, the QR code's content: a MAC over
//! the ticket's id. It proves a ticket at the door and nothing else — it is
//! not the ticket code, so it opens no ticket page and cancels nothing. An
//! activity with a live QR shows instead a credential that changes every 30 s
//! (a MAC over the credential and the time step, like TOTP).
//!
//! And the token of a volunteer's check-in link (`/door/{token}`): a MAC over
//! the link's id. Whether the link is still open (expiry, revocation) is the
//! database's word; the MAC makes the ids unguessable.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// What a signed link is for; a link for one purpose never opens another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Bind,
    MyTickets,
    /// A ticket page opened by its holder: the page may offer the cancel button.
    Ticket,
    /// The cancel button's form on a ticket page.
    Cancel,
    /// The seat chooser's form (opened from a ticket link).
    ChooseSeat,
}

impl Purpose {
    fn label(self) -> &'static str {
        match self {
            Purpose::Bind => "bind",
            Purpose::MyTickets => "my-tickets",
            Purpose::Ticket => "ticket",
            Purpose::Cancel => "cancel",
            Purpose::ChooseSeat => "choose-seat",
        }
    }

    /// How long a link stays valid, in seconds.
    pub fn lifetime(self) -> i64 {
        match self {
            Purpose::Bind => 30 * 60,
            Purpose::MyTickets | Purpose::Ticket => 7 * 24 * 3600,
            Purpose::Cancel | Purpose::ChooseSeat => 3600,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum LinkError {
    Tampered,
    Expired,
}

/// The query string (`o=…&e=…&s=…`) of a link for `openid` about `subject`
/// (which the link carries elsewhere: in its path, or as `n=`), valid until `expires`.
pub fn sign(secret: &[u8], purpose: Purpose, openid: &str, subject: &str, expires: i64) -> String {
    let (o, e, s) = sign_parts(secret, purpose, openid, subject, expires);
    format!("o={o}&e={e}&s={s}")
}

/// The same link's parts `(o, e, s)`, for a form that carries them as fields
/// (all three URL-safe as they are).
pub fn sign_parts(
    secret: &[u8],
    purpose: Purpose,
    openid: &str,
    subject: &str,
    expires: i64,
) -> (String, String, String) {
    let o = URL_SAFE_NO_PAD.encode(openid);
    let s = URL_SAFE_NO_PAD.encode(mac(secret, purpose, openid, subject, expires).finalize().into_bytes());
    (o, expires.to_string(), s)
}

/// Checks a link's parts for `subject`; returns the openid it was made for.
pub fn verify(
    secret: &[u8],
    purpose: Purpose,
    subject: &str,
    (o, e, s): (&str, &str, &str),
    now: i64,
) -> Result<String, LinkError> {
    let openid = URL_SAFE_NO_PAD.decode(o).ok().and_then(|b| String::from_utf8(b).ok()).ok_or(LinkError::Tampered)?;
    let expires: i64 = e.parse().map_err(|_| LinkError::Tampered)?;
    let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| LinkError::Tampered)?;
    // verify_slice compares in constant time.
    mac(secret, purpose, &openid, subject, expires).verify_slice(&sig).map_err(|_| LinkError::Tampered)?;
    if now >= expires {
        return Err(LinkError::Expired);
    }
    Ok(openid)
}

/// The path of a ticket page, with the signed query of its holder's link.
pub fn ticket_path(code: &str, signed_query: &str) -> String {
    format!("/tickets/{code}?{signed_query}")
}

/// A fresh random nonce for a one-time link (128 bits, URL-safe).
pub fn nonce() -> String {
    use rand::Rng;
    URL_SAFE_NO_PAD.encode(rand::rng().random::<[u8; 16]>())
}

fn mac(secret: &[u8], purpose: Purpose, openid: &str, subject: &str, expires: i64) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    // Length-prefixed fields, so no two (purpose, openid, subject, expiry) share an input.
    for field in [purpose.label().as_bytes(), openid.as_bytes(), subject.as_bytes(), expires.to_string().as_bytes()] {
        mac.update(&(field.len() as u64).to_be_bytes());
        mac.update(field);
    }
    mac
}

/// The check-in credential of the ticket with this id: `{id}.{mac}`, the MAC
/// cut to 128 bits. The QR code on the ticket page carries it.
pub fn checkin_credential(secret: &[u8], ticket_id: i64) -> String {
    format!("{ticket_id}.{}", credential_mac(secret, ticket_id))
}

/// The ticket id a check-in credential proves, if it is genuine.
pub fn open_checkin_credential(secret: &[u8], credential: &str) -> Option<i64> {
    let (id, given) = credential.split_once('.')?;
    let id: i64 = id.parse().ok().filter(|id| *id > 0)?;
    let expected = credential_mac(secret, id);
    bool::from(subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), given.as_bytes())).then_some(id)
}

/// A live QR changes this often (seconds), like a TOTP code.
pub const LIVE_STEP_SECONDS: i64 = 30;

/// The time step a live QR shown at `unix` (seconds) belongs to.
pub fn live_step(unix: i64) -> i64 {
    unix.div_euclid(LIVE_STEP_SECONDS)
}

/// The door takes the current step and the one before it: a code shown a
/// moment before its step ended still works, a screenshot a minute old does not.
pub fn live_step_is_current(step: i64, now_unix: i64) -> bool {
    let now = live_step(now_unix);
    step == now || step == now - 1
}

/// The live check-in credential of a ticket for one time step:
/// `{id}.{step}.{mac}`, the MAC over the static credential and the step.
pub fn live_credential(secret: &[u8], ticket_id: i64, step: i64) -> String {
    format!("{ticket_id}.{step}.{}", live_mac(secret, ticket_id, step))
}

/// The (ticket id, step) a live credential proves, if it is genuine; how old
/// the step is is for the door to judge.
pub fn open_live_credential(secret: &[u8], credential: &str) -> Option<(i64, i64)> {
    let mut parts = credential.splitn(3, '.');
    let id: i64 = parts.next()?.parse().ok().filter(|id| *id > 0)?;
    let step: i64 = parts.next()?.parse().ok().filter(|step| *step >= 0)?;
    let given = parts.next()?;
    let expected = live_mac(secret, id, step);
    bool::from(subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), given.as_bytes())).then_some((id, step))
}

fn live_mac(secret: &[u8], ticket_id: i64, step: i64) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(b"checkin-live\0");
    mac.update(checkin_credential(secret, ticket_id).as_bytes());
    mac.update(&step.to_be_bytes());
    URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..16])
}

fn credential_mac(secret: &[u8], ticket_id: i64) -> String {
    id_mac(secret, b"checkin-credential\0", ticket_id)
}

/// The token of the volunteer check-in link with this id: `{id}.{mac}`.
pub fn door_token(secret: &[u8], link_id: i64) -> String {
    format!("{link_id}.{}", id_mac(secret, b"door-link\0", link_id))
}

/// The link id a door token names, if the token is genuine.
pub fn open_door_token(secret: &[u8], token: &str) -> Option<i64> {
    let (id, given) = token.split_once('.')?;
    let id: i64 = id.parse().ok().filter(|id| *id > 0)?;
    let expected = id_mac(secret, b"door-link\0", id);
    bool::from(subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), given.as_bytes())).then_some(id)
}

/// A MAC over an id for one purpose (the label), cut to 128 bits.
fn id_mac(secret: &[u8], label: &[u8], id: i64) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(label);
    mac.update(&id.to_be_bytes());
    URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(query: &str) -> (String, String, String) {
        let get = |k: &str| query.split('&').find_map(|p| p.strip_prefix(&format!("{k}="))).unwrap().to_string();
        (get("o"), get("e"), get("s"))
    }

    #[test]
    fn a_signed_link_opens_for_its_openid_until_it_expires() {
        let q = sign(b"key", Purpose::Bind, "oUser", "n1", 1000);
        let (o, e, s) = parts(&q);
        assert_eq!(verify(b"key", Purpose::Bind, "n1", (&o, &e, &s), 999), Ok("oUser".into()));
        assert_eq!(verify(b"key", Purpose::Bind, "n1", (&o, &e, &s), 1000), Err(LinkError::Expired));
    }

    #[test]
    fn tampering_is_refused() {
        let (o, e, s) = parts(&sign(b"key", Purpose::Bind, "oUser", "code1", 1000));
        let other = URL_SAFE_NO_PAD.encode("oOther");
        let check =
            |purpose, subject, o: &str, e: &str, s: &str, secret: &[u8]| verify(secret, purpose, subject, (o, e, s), 0);
        assert_eq!(check(Purpose::Bind, "code1", &other, &e, &s, b"key"), Err(LinkError::Tampered));
        assert_eq!(check(Purpose::Bind, "code1", &o, "2000", &s, b"key"), Err(LinkError::Tampered));
        assert_eq!(check(Purpose::Bind, "code1", &o, &e, &s, b"other"), Err(LinkError::Tampered));
        assert_eq!(check(Purpose::MyTickets, "code1", &o, &e, &s, b"key"), Err(LinkError::Tampered));
        assert_eq!(check(Purpose::Bind, "code2", &o, &e, &s, b"key"), Err(LinkError::Tampered), "another ticket");
        assert_eq!(check(Purpose::Bind, "code1", &o, &e, "!!", b"key"), Err(LinkError::Tampered));
    }

    #[test]
    fn a_checkin_credential_proves_its_ticket_only() {
        let c = checkin_credential(b"key", 42);
        assert_eq!(open_checkin_credential(b"key", &c), Some(42));
        let (_, mac) = c.split_once('.').unwrap();
        assert!(mac.len() >= 22, "128 bits");
        assert_eq!(open_checkin_credential(b"key", &format!("43.{mac}")), None);
        assert_eq!(open_checkin_credential(b"other", &c), None);
        for junk in ["", "42", "42.", ".abc", "x.y", "-1.abc"] {
            assert_eq!(open_checkin_credential(b"key", junk), None, "{junk:?}");
        }
    }

    #[test]
    fn a_live_credential_proves_its_ticket_and_step_only() {
        let live = live_credential(b"key", 42, 56_000_000);
        assert_eq!(open_live_credential(b"key", &live), Some((42, 56_000_000)));
        // Neither kind opens as the other.
        assert_eq!(open_checkin_credential(b"key", &live), None);
        assert_eq!(open_live_credential(b"key", &checkin_credential(b"key", 42)), None);
        let mac = live.rsplit('.').next().unwrap();
        assert!(mac.len() >= 22, "128 bits");
        assert_eq!(open_live_credential(b"key", &format!("42.56000001.{mac}")), None, "another step");
        assert_eq!(open_live_credential(b"key", &format!("43.56000000.{mac}")), None, "another ticket");
        assert_eq!(open_live_credential(b"other", &live), None);
        for junk in ["", "42.1", "42.1.", "42.-1.abc", "x.1.abc", "0.1.abc"] {
            assert_eq!(open_live_credential(b"key", junk), None, "{junk:?}");
        }
    }

    #[test]
    fn the_door_takes_the_current_and_the_previous_step() {
        let now = 1_699_999_995; // 15 s into its step
        let step = live_step(now);
        assert_eq!(live_step(now - 15), step);
        assert_eq!(live_step(now + 15), step + 1);
        assert!(live_step_is_current(step, now));
        assert!(live_step_is_current(step - 1, now));
        assert!(!live_step_is_current(step - 2, now), "a minute old");
        assert!(!live_step_is_current(step + 1, now), "not shown yet");
    }

    #[test]
    fn a_door_token_names_its_link_only() {
        let t = door_token(b"key", 5);
        assert_eq!(open_door_token(b"key", &t), Some(5));
        let (_, mac) = t.split_once('.').unwrap();
        assert_eq!(open_door_token(b"key", &format!("6.{mac}")), None);
        assert_eq!(open_door_token(b"other", &t), None);
        // A ticket's credential is not a door token, nor the other way round.
        assert_eq!(open_door_token(b"key", &checkin_credential(b"key", 5)), None);
        assert_eq!(open_checkin_credential(b"key", &t), None);
    }
}
