//! `/static/…`: the stylesheets and pictures, built into the binary, so a
//! binary copied to a server serves them without the source tree beside it.
//!
//! rust-embed's `debug-embed` feature embeds in debug builds too, so what the
//! tests (built in debug) serve is byte for byte what a release build serves.

use axum::{
    body::{Body, Bytes},
    extract::Path,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use rust_embed::Embed;

use crate::AppError;

#[derive(Embed)]
#[folder = "static/"]
struct Files;

/// URLs carry no content hash (templates name `/static/style.css`), so a
/// browser keeps a file an hour and then revalidates it with its ETag.
const CACHE_CONTROL: &str = "public, max-age=3600";

pub async fn serve(Path(path): Path<String>, request: HeaderMap) -> Response {
    // Only names embedded at build time exist: `..` and the like find nothing.
    let Some(file) = Files::get(&path) else {
        return AppError::NotFound.into_response();
    };
    let etag = format!("\"{}\"", hex::encode(file.metadata.sha256_hash()));
    let etag = HeaderValue::from_str(&etag).expect("hex in quotes is a valid header value");
    if request.get_all(header::IF_NONE_MATCH).iter().any(|value| matches(value, &etag)) {
        return (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag), (header::CACHE_CONTROL, HeaderValue::from_static(CACHE_CONTROL))],
        )
            .into_response();
    }
    let content_type =
        HeaderValue::from_str(file.metadata.mimetype()).unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let body = match file.data {
        std::borrow::Cow::Borrowed(bytes) => Bytes::from_static(bytes),
        std::borrow::Cow::Owned(bytes) => Bytes::from(bytes),
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::ETAG, etag),
            (header::CACHE_CONTROL, HeaderValue::from_static(CACHE_CONTROL)),
        ],
        Body::from(body),
    )
        .into_response()
}

/// If-None-Match uses the weak comparison (RFC 9110 §13.1.2): `W/` is ignored, `*` matches anything.
fn matches(if_none_match: &HeaderValue, etag: &HeaderValue) -> bool {
    let Ok(list) = if_none_match.to_str() else { return false };
    let ours = etag.to_str().unwrap_or_default();
    list.split(',').map(str::trim).any(|tag| tag == "*" || tag.trim_start_matches("W/") == ours)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_compares_weakly_and_accepts_a_list() {
        let ours = HeaderValue::from_static("\"abc\"");
        for yes in ["\"abc\"", "W/\"abc\"", "\"x\", \"abc\"", "*"] {
            assert!(matches(&HeaderValue::from_static(yes), &ours), "{yes}");
        }
        for no in ["\"abcd\"", "abc", "\"ab\", \"c\"", ""] {
            assert!(!matches(&HeaderValue::from_static(no), &ours), "{no}");
        }
    }
}
