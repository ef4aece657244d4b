//! The JS-SDK's `wx.config` signature (JS-SDK documentation, appendix 1):
//! `sha1("jsapi_ticket=…&noncestr=…&timestamp=…&url=…")` in lower-case hex,
//! over the page's URL without its `#fragment`.

use serde::Serialize;
use sha1::{Digest, Sha1};

/// What `wx.config` takes besides `jsApiList`, for one page URL.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct JsConfig {
    pub app_id: String,
    pub timestamp: i64,
    pub nonce_str: String,
    pub signature: String,
}

/// The signature of `url` (any `#fragment` dropped, as WeChat drops it).
pub fn signature(jsapi_ticket: &str, noncestr: &str, timestamp: i64, url: &str) -> String {
    let url = url.split('#').next().unwrap_or_default();
    // The fields in ASCII order of their names, as the appendix requires.
    let signed = format!("jsapi_ticket={jsapi_ticket}&noncestr={noncestr}&timestamp={timestamp}&url={url}");
    hex::encode(Sha1::digest(signed.as_bytes()))
}

/// A `wx.config` for `url` now, with a fresh nonce.
pub fn config(appid: &str, jsapi_ticket: &str, url: &str, now: i64) -> JsConfig {
    use rand::{Rng, distr::Alphanumeric};
    let nonce_str: String = rand::rng().sample_iter(&Alphanumeric).take(16).map(char::from).collect();
    JsConfig {
        app_id: appid.to_string(),
        timestamp: now,
        signature: signature(jsapi_ticket, &nonce_str, now, url),
        nonce_str,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICKET: &str = "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg";

    #[test]
    fn the_official_vector_signs() {
        assert_eq!(
            signature(TICKET, "Wm3WZYTPz0wzccnW", 1414587457, "http://mp.weixin.qq.com?params=value"),
            "0f9de62fce790f9a083d5c99e95740ceb90c27ed"
        );
    }

    #[test]
    fn the_fragment_is_not_signed() {
        let url = "http://mp.weixin.qq.com?params=value";
        let plain = signature(TICKET, "Wm3WZYTPz0wzccnW", 1414587457, url);
        assert_eq!(signature(TICKET, "Wm3WZYTPz0wzccnW", 1414587457, &format!("{url}#scan")), plain);
        assert_ne!(signature(TICKET, "Wm3WZYTPz0wzccnX", 1414587457, url), plain);
    }

    #[test]
    fn a_config_signs_its_own_nonce_and_time() {
        let c = config("wx1", TICKET, "https://t.example/admin/activities/1/checkin", 1700000000);
        assert_eq!(c.nonce_str.len(), 16);
        assert_eq!(
            c.signature,
            signature(TICKET, &c.nonce_str, 1700000000, "https://t.example/admin/activities/1/checkin")
        );
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["appId"], "wx1");
        assert_eq!(json["nonceStr"], c.nonce_str.as_str());
    }
}
