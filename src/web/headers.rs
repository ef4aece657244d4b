//! Headers on every response that tell the browser what these pages may load,
//! run and be framed by, and (behind https) never to use plain http again.

use axum::{
    Router,
    http::{HeaderValue, header},
};
use tower_http::set_header::SetResponseHeaderLayer;

/// Scripts are files from /static (the check-in page's scanner) and no page has
/// a `style=` attribute, so neither inline scripts nor inline styles are
/// allowed: injected markup can neither run nor restyle a page into a phishing
/// form. Posters come from /images, the QR code is inline SVG; `data:` images
/// cover what the browser draws itself. The simulator frames this site's own
/// pages, hence `frame-ancestors 'self'`.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'";

/// One year; no `includeSubDomains`: other hosts of the campus domain may still be plain http.
pub const STRICT_TRANSPORT_SECURITY: &str = "max-age=31536000";

/// Adds the headers to every response of `router`, error pages and the
/// answers of outer layers (CSRF refusal, timeout, panic) included when
/// applied outside them. `https`: `PUBLIC_URL` is https.
pub fn add<S: Clone + Send + Sync + 'static>(router: Router<S>, https: bool) -> Router<S> {
    let hsts = https.then(|| HeaderValue::from_static(STRICT_TRANSPORT_SECURITY));
    router
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(header::REFERRER_POLICY, HeaderValue::from_static("same-origin")))
        // Older browsers without frame-ancestors: no other site may frame these pages (clickjacking the admin forms).
        .layer(SetResponseHeaderLayer::if_not_present(header::X_FRAME_OPTIONS, HeaderValue::from_static("SAMEORIGIN")))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(header::STRICT_TRANSPORT_SECURITY, hsts))
}

/// The JS-SDK's host, allowed to serve scripts on the check-in pages only.
pub const WECHAT_JSSDK_ORIGIN: &str = "https://res.wx.qq.com";

/// [`CONTENT_SECURITY_POLICY`] with the JS-SDK's host among the script
/// sources: the WeChat scanner on a check-in page opened in WeChat.
pub fn policy_with_wechat_jssdk() -> String {
    CONTENT_SECURITY_POLICY.replacen("script-src 'self'", &format!("script-src 'self' {WECHAT_JSSDK_ORIGIN}"), 1)
}

/// Lets the pages of `router` load the JS-SDK when opened in WeChat's browser
/// (its User-Agent says MicroMessenger); every other browser gets the strict policy.
pub fn with_wechat_jssdk<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    static POLICY: std::sync::OnceLock<HeaderValue> = std::sync::OnceLock::new();
    router.layer(axum::middleware::from_fn(async |request: axum::extract::Request, next: axum::middleware::Next| {
        let in_wechat = crate::web::in_wechat(request.headers());
        let mut response = next.run(request).await;
        if in_wechat {
            let policy =
                POLICY.get_or_init(|| HeaderValue::from_str(&policy_with_wechat_jssdk()).expect("the policy is ASCII"));
            response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, policy.clone());
        }
        response
    }))
}
