//! Signed, expiring links sent inside WeChat replies (bind page, my tickets):
//! HMAC-SHA256 with the secret key over the purpose, the openid and the expiry,
//! so a link opens only for the WeChat user it was sent to.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// What a signed link is for; a link for one purpose never opens another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Bind,
    MyTickets,
}

impl Purpose {
    fn label(self) -> &'static str {
        match self {
            Purpose::Bind => "bind",
            Purpose::MyTickets => "my-tickets",
        }
    }

    /// How long a link stays valid, in seconds.
    pub fn lifetime(self) -> i64 {
        match self {
            Purpose::Bind => 30 * 60,
            Purpose::MyTickets => 7 * 24 * 3600,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum LinkError {
    Tampered,
    Expired,
}

/// The query string (`o=…&e=…&s=…`) of a link for `openid`, valid until `expires`.
pub fn sign(secret: &[u8], purpose: Purpose, openid: &str, expires: i64) -> String {
    let o = URL_SAFE_NO_PAD.encode(openid);
    let s = URL_SAFE_NO_PAD.encode(mac(secret, purpose, openid, expires).finalize().into_bytes());
    format!("o={o}&e={expires}&s={s}")
}

/// Checks a link's parts; returns the openid it was made for.
pub fn verify(secret: &[u8], purpose: Purpose, o: &str, e: &str, s: &str, now: i64) -> Result<String, LinkError> {
    let openid = URL_SAFE_NO_PAD.decode(o).ok().and_then(|b| String::from_utf8(b).ok()).ok_or(LinkError::Tampered)?;
    let expires: i64 = e.parse().map_err(|_| LinkError::Tampered)?;
    let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| LinkError::Tampered)?;
    // verify_slice compares in constant time.
    mac(secret, purpose, &openid, expires).verify_slice(&sig).map_err(|_| LinkError::Tampered)?;
    if now >= expires {
        return Err(LinkError::Expired);
    }
    Ok(openid)
}

fn mac(secret: &[u8], purpose: Purpose, openid: &str, expires: i64) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    // Length-prefixed fields, so no two (purpose, openid, expiry) share an input.
    for field in [purpose.label().as_bytes(), openid.as_bytes(), expires.to_string().as_bytes()] {
        mac.update(&(field.len() as u64).to_be_bytes());
        mac.update(field);
    }
    mac
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
        let q = sign(b"key", Purpose::Bind, "oUser", 1000);
        let (o, e, s) = parts(&q);
        assert_eq!(verify(b"key", Purpose::Bind, &o, &e, &s, 999), Ok("oUser".into()));
        assert_eq!(verify(b"key", Purpose::Bind, &o, &e, &s, 1000), Err(LinkError::Expired));
    }

    #[test]
    fn tampering_is_refused() {
        let (o, e, s) = parts(&sign(b"key", Purpose::Bind, "oUser", 1000));
        let other = URL_SAFE_NO_PAD.encode("oOther");
        assert_eq!(verify(b"key", Purpose::Bind, &other, &e, &s, 0), Err(LinkError::Tampered));
        assert_eq!(verify(b"key", Purpose::Bind, &o, "2000", &s, 0), Err(LinkError::Tampered));
        assert_eq!(verify(b"other", Purpose::Bind, &o, &e, &s, 0), Err(LinkError::Tampered));
        assert_eq!(verify(b"key", Purpose::MyTickets, &o, &e, &s, 0), Err(LinkError::Tampered));
        assert_eq!(verify(b"key", Purpose::Bind, &o, &e, "!!", 0), Err(LinkError::Tampered));
    }
}
