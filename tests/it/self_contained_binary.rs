//! The binary copied to a server runs with no source tree beside it: the
//! stylesheets come from inside it, with an ETag and caching headers.
//!
//! The test runs the debug binary (what `cargo test` builds); the release
//! binary embeds the same way, since rust-embed's `debug-embed` feature makes
//! debug builds embed instead of reading from disk.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use crate::{
    common::spawn_app,
    serve_binary::{BIN, Server, free_port, wait_healthy},
};

const SOURCE_STATIC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/static");

/// Root may cover the source tree's `static/` with an empty tmpfs in a
/// mount namespace of the server's own, so a binary that still read it
/// there would find nothing. Elsewhere the binary only runs from another directory.
fn can_hide_source_static() -> bool {
    let root = unsafe { libc::geteuid() } == 0;
    root && Command::new("unshare")
        .args(["--mount", "--propagation", "private", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn copy_of_the_binary() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wt-copied-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("wechat-ticket");
    std::fs::copy(BIN, &copy).unwrap();
    copy
}

fn start(copy: &Path, database_url: &str, port: u16, hide: bool) -> Server {
    let mut command = if hide {
        let mut c = Command::new("unshare");
        c.args(["--mount", "--propagation", "private", "sh", "-c", r#"mount -t tmpfs tmpfs "$0" && exec "$1""#])
            .arg(SOURCE_STATIC)
            .arg(copy);
        c
    } else {
        Command::new(copy)
    };
    let child = command
        .current_dir(copy.parent().unwrap())
        .env("DATABASE_URL", database_url)
        .env("LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run the copied binary");
    Server(Some(child))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copied_binary_serves_its_stylesheets_with_etag_and_caching() {
    let app = spawn_app().await;
    let copy = copy_of_the_binary();
    let hide = can_hide_source_static();
    if !hide {
        eprintln!("not root or no mount namespace: the source tree's static/ stays visible to the copy");
    }
    let port = free_port();
    let _server = start(&copy, &app.database_url(), port, hide);
    wait_healthy(port).await;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");

    let css = http.get(url("/static/style.css")).send().await.unwrap();
    assert_eq!(css.status(), 200);
    let header = |r: &reqwest::Response, name: &str| {
        r.headers().get(name).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
    };
    assert!(header(&css, "content-type").starts_with("text/css"), "{:?}", css.headers());
    assert_eq!(header(&css, "cache-control"), "public, max-age=3600");
    let etag = header(&css, "etag");
    assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2, "a strong ETag: {etag:?}");
    let served = css.bytes().await.unwrap();
    assert_eq!(served, std::fs::read(format!("{SOURCE_STATIC}/style.css")).unwrap(), "the real stylesheet");

    let again = http.get(url("/static/style.css")).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(header(&again, "etag"), etag);
    assert!(again.bytes().await.unwrap().is_empty());
    let changed = http.get(url("/static/style.css")).header("if-none-match", "\"stale\"").send().await.unwrap();
    assert_eq!(changed.status(), 200, "another ETag gets the file");

    let admin = http.get(url("/static/admin.css")).send().await.unwrap();
    assert_eq!(admin.status(), 200);
    assert_ne!(header(&admin, "etag"), etag, "each file its own ETag");
    let picture = http.get(url("/static/screenshots/simulator.png")).send().await.unwrap();
    assert_eq!((picture.status().as_u16(), header(&picture, "content-type")), (200, "image/png".into()));

    // Only what was built in exists; nothing of the file system shows through.
    for missing in ["/static/nosuch.css", "/static/../Cargo.toml", "/static/%2e%2e/Cargo.toml", "/static/"] {
        let r = http.get(url(missing)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{missing}");
    }
    let page = http.get(url("/")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("/static/style.css"), "the landing page links the stylesheet it serves");
    let _ = std::fs::remove_dir_all(copy.parent().unwrap());
}
