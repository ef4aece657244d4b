//! One request over a connection of its own, as a WeChat server delivers a
//! message: TCP handshake, one HTTP/1.1 exchange with `Connection: close`.
//! The handshake is timed apart, since a SYN dropped by a full listen queue
//! costs the kernel's one-second retransmit before anything else happens.

use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::{Uri, body::Bytes, header};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpStream, time::timeout};

use crate::load::{Request, WECHAT_TIMEOUT};

/// (status, timed out, body, connect time); status 0 when no HTTP response arrived.
pub async fn send(request: &Request) -> (u16, bool, String, Option<Duration>) {
    let started = Instant::now();
    let (method, url, body, content_type) = match request {
        Request::Get(url) => (hyper::Method::GET, url, String::new(), "text/xml"),
        Request::Post { url, body } => (hyper::Method::POST, url, body.clone(), "text/xml"),
        Request::Form { url, body } => (hyper::Method::POST, url, body.clone(), "application/x-www-form-urlencoded"),
    };
    let uri: Uri = match url.parse() {
        Ok(uri) => uri,
        Err(e) => return (0, false, format!("bad URL {url}: {e}"), None),
    };
    let Some(authority) = uri.authority().map(|a| a.to_string()) else {
        return (0, false, format!("URL without a host: {url}"), None);
    };
    let stream = match timeout(WECHAT_TIMEOUT, TcpStream::connect(&authority)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return (0, false, format!("connect: {e}"), None),
        Err(_) => return (0, true, "connect timed out".into(), None),
    };
    let connect = started.elapsed();
    let _ = stream.set_nodelay(true);
    let exchange = async {
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
        // Drives the socket until the server closes it after the reply.
        tokio::spawn(connection);
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &authority)
            .header(header::CONNECTION, "close")
            .header(header::CONTENT_TYPE, content_type)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok::<_, String>((status, String::from_utf8_lossy(&body).into_owned()))
    };
    match timeout(WECHAT_TIMEOUT.saturating_sub(connect), exchange).await {
        Ok(Ok((status, body))) => (status, false, body, Some(connect)),
        Ok(Err(e)) => (0, false, e, Some(connect)),
        Err(_) => (0, true, "timed out".into(), Some(connect)),
    }
}
