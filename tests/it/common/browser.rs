//! A real browser for the admin console: headless Chromium driven over
//! WebDriver (chromedriver on a free port on 127.0.0.1) with fantoccini.
//!
//! Chromedriver and every browser process it starts run in their own process
//! group, killed when the [`Browser`] is dropped (also when a test panics).
//! Without `chromium` / `chromedriver` installed, [`Browser::start`] returns
//! `None` (the test is skipped), unless `CI=true`, where it panics.

use std::{
    fs,
    net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use fantoccini::{Client, ClientBuilder, Locator, elements::Element};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

/// The longest any single wait (an element, a page load, a download) may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// Flags the closed network needs (without the background-networking ones it
/// refuses many connections), plus a fixed window size for the screenshots.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--no-default-browser-check",
    "--window-size=1280,1600",
    "--lang=zh-CN",
];

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Where a journey's screenshots go: `target/browser-screenshots/<journey>` in the package.
pub fn screenshot_dir(journey: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("browser-screenshots").join(journey)
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|dir| Path::new(dir).join(name)).find(|p| p.is_file())
}

/// The Chromium executable. Debian's `/usr/bin/chromium` is a shell wrapper
/// around `/usr/lib/chromium/chromium`; the binary itself is used when present.
fn find_chromium() -> Option<PathBuf> {
    let debian = PathBuf::from("/usr/lib/chromium/chromium");
    if debian.is_file() {
        return Some(debian);
    }
    ["chromium", "chromium-browser", "google-chrome"].into_iter().find_map(on_path)
}

/// The chromedriver process group; killed (and reaped) on drop.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group holds chromedriver and the Chromium it started; both go.
        let pgid = self.child.id() as libc::pid_t;
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port()
}

/// Starts chromedriver on a free port and waits (bounded) until it accepts connections.
fn start_driver(chromedriver: &Path, log: &Path) -> Driver {
    for _attempt in 0..3 {
        let port = free_port();
        let log_file = fs::File::create(log).expect("chromedriver log file");
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let mut driver = Driver { child, port };
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if TcpStream::connect_timeout(&SocketAddrV4::new(Ipv4Addr::LOCALHOST, port).into(), WAIT).is_ok() {
                return driver;
            }
            if driver.child.try_wait().unwrap().is_some() {
                break; // Lost the port to someone else, most likely: try another.
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("chromedriver did not start listening; see {}", log.display());
}

/// A headless Chromium session with its own empty profile and download directory.
pub struct Browser {
    pub client: Client,
    /// Where downloads land.
    pub downloads: PathBuf,
    /// Screenshots taken so far (their files are numbered in order).
    shots: AtomicU32,
    shots_dir: PathBuf,
    // Dropped after `client` (fields drop in order): kills the browser, then removes its files.
    driver: Driver,
    scratch: Scratch,
}

/// The profile and download directories, removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium. `None` when they are not
    /// installed (the caller skips its test), except under `CI=true`, where
    /// that is a failure.
    /// A browser for the journey named `journey` (its screenshots' folder).
    pub async fn start(journey: &str) -> Option<Browser> {
        Browser::start_with(journey, &[]).await
    }

    /// [`Browser::start`] with more Chromium flags, e.g. a fake camera:
    /// `--use-fake-device-for-media-stream --use-file-for-fake-video-capture=FILE.y4m`.
    pub async fn start_with(journey: &str, extra_flags: &[String]) -> Option<Browser> {
        let (Some(chromium), Some(chromedriver)) = (find_chromium(), on_path("chromedriver")) else {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "CI=true but chromium and/or chromedriver are not installed: \
                     apt-get install -y chromium chromium-driver fonts-noto-cjk (.ci/run does this)"
                );
            }
            println!("skipped: install chromium and chromium-driver");
            return None;
        };

        let scratch = Scratch(std::env::temp_dir().join(format!(
            "wt-browser-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        )));
        let _ = fs::remove_dir_all(&scratch.0);
        let profile = scratch.0.join("profile");
        let downloads = scratch.0.join("downloads");
        fs::create_dir_all(&profile).unwrap();
        fs::create_dir_all(&downloads).unwrap();
        let shots = screenshot_dir(journey);
        fs::create_dir_all(&shots).unwrap();
        // Old screenshots would be mistaken for this run's.
        for entry in fs::read_dir(&shots).unwrap().flatten() {
            if entry.path().extension().is_some_and(|e| e == "png") {
                let _ = fs::remove_file(entry.path());
            }
        }

        let driver = start_driver(&chromedriver, &shots.join("chromedriver.log"));
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        args.extend(extra_flags.iter().cloned());
        let capabilities = json!({
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "timeouts": { "pageLoad": WAIT.as_millis() as u64, "script": WAIT.as_millis() as u64 },
            "goog:chromeOptions": {
                "binary": chromium,
                "args": args,
                "prefs": {
                    "download.default_directory": downloads,
                    "download.prompt_for_download": false,
                    "download.directory_upgrade": true,
                    "safebrowsing.enabled": false,
                },
            },
        });
        let Value::Object(capabilities) = capabilities else { unreachable!() };
        let mut builder = ClientBuilder::new(HttpConnector::new());
        builder.capabilities(capabilities);
        let webdriver = format!("http://127.0.0.1:{}", driver.port);
        let connect = builder.connect(&webdriver);
        let client =
            tokio::time::timeout(3 * WAIT, connect).await.expect("a Chromium session within 30 s").unwrap_or_else(
                |e| panic!("start a Chromium session: {e}; see {}", shots.join("chromedriver.log").display()),
            );
        Some(Browser { client, downloads, shots: AtomicU32::new(0), shots_dir: shots, driver, scratch })
    }

    /// Ends the WebDriver session (Chromium quits); dropping then stops chromedriver.
    pub async fn close(self) {
        let _ = tokio::time::timeout(WAIT, self.client.clone().close()).await;
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// The path of the page in the current frame (WebDriver's current URL is
    /// always the top-level page's, even inside an iframe).
    pub async fn path(&self) -> String {
        match self.client.execute("return location.pathname;", vec![]).await {
            Ok(Value::String(path)) => path,
            other => panic!("the current path: {other:?}"),
        }
    }

    /// Saves a screenshot as `target/browser-screenshots/NN-name.png`; returns its path.
    pub async fn shot(&self, name: &str) -> PathBuf {
        let n = self.shots.fetch_add(1, Ordering::Relaxed) + 1;
        let path = self.shots_dir.join(format!("{n:02}-{name}.png"));
        let png = self.client.screenshot().await.expect("screenshot");
        fs::write(&path, png).unwrap();
        path
    }

    /// Saves a screenshot of just the element matching `css` (in the current frame).
    pub async fn shot_of(&self, css: &str, name: &str) -> PathBuf {
        let n = self.shots.fetch_add(1, Ordering::Relaxed) + 1;
        let path = self.shots_dir.join(format!("{n:02}-{name}.png"));
        let png = self.find(css).await.screenshot().await.expect("element screenshot");
        fs::write(&path, png).unwrap();
        path
    }

    /// Switches into the `<iframe>` matching `css`: later finds and clicks happen inside it.
    pub async fn enter_frame(&self, css: &str) {
        self.find(css).await.enter_frame().await.unwrap_or_else(|e| panic!("enter the frame {css}: {e}"));
    }

    /// Back from a frame to the page around it.
    pub async fn leave_frame(&self) {
        self.client.enter_parent_frame().await.expect("leave the frame");
    }

    /// Saves a screenshot of the page as it is, then panics with `message`.
    pub async fn fail(&self, message: String) -> ! {
        let shot = self.shot("FAILED").await;
        let url = self.client.current_url().await.map(|u| u.to_string()).unwrap_or_default();
        panic!("{message}\n  at {url}\n  screenshot: {}", shot.display());
    }

    /// Waits (at most [`WAIT`]) for an element matching the CSS selector.
    pub async fn find(&self, css: &str) -> Element {
        match self.client.wait().at_most(WAIT).for_element(Locator::Css(css)).await {
            Ok(element) => element,
            Err(e) => self.fail(format!("no element `{css}` within {WAIT:?}: {e}")).await,
        }
    }

    /// Every element matching the CSS selector now (no waiting).
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        self.client.find_all(Locator::Css(css)).await.unwrap()
    }

    /// The visible text of the first element matching the selector (waited for).
    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    /// Types into a field after clearing it.
    pub async fn type_into(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    /// Sets a field's value from script (for `datetime-local` inputs, which
    /// take typed keys per locale-dependent segment) and fires `input`/`change`.
    pub async fn set_value(&self, css: &str, value: &str) {
        let field = self.find(css).await;
        let arg = serde_json::to_value(&field).unwrap();
        self.client
            .execute(
                "arguments[0].value = arguments[1];\
                 arguments[0].dispatchEvent(new Event('input', {bubbles: true}));\
                 arguments[0].dispatchEvent(new Event('change', {bubbles: true}));\
                 return arguments[0].value;",
                vec![arg, json!(value)],
            )
            .await
            .unwrap();
        let now = field.prop("value").await.unwrap().unwrap_or_default();
        assert_eq!(now, value, "{css} took the value");
    }

    /// Clicks the element (usually a submit button) and waits, bounded, until
    /// the page it leads to has replaced this one and finished loading.
    pub async fn click_and_wait(&self, css: &str) {
        let element = self.find(css).await;
        self.client.execute("window.__wtOldPage = true;", vec![]).await.unwrap();
        element.click().await.unwrap_or_else(|e| panic!("click {css}: {e}"));
        self.wait_for_new_page(&format!("a new page after clicking `{css}`")).await;
    }

    async fn wait_for_new_page(&self, what: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let loaded =
                self.client.execute("return !window.__wtOldPage && document.readyState === 'complete';", vec![]).await;
            // A script can fail while the old page is being torn down; that is not the answer yet.
            if let Ok(Value::Bool(true)) = loaded {
                return;
            }
            if Instant::now() >= deadline {
                self.fail(format!("no {what} within {WAIT:?}")).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (at most [`WAIT`]) until `script` (a function body) returns true in the page.
    pub async fn wait_until(&self, script: &str, what: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(Value::Bool(true)) = self.client.execute(script, vec![]).await {
                return;
            }
            if Instant::now() >= deadline {
                self.fail(format!("not {what} within {WAIT:?}")).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// True when the `<img>` matching the selector has loaded and decoded (not a broken image).
    pub async fn image_loaded(&self, css: &str) -> bool {
        let img = self.find(css).await;
        let arg = serde_json::to_value(&img).unwrap();
        // `decode()` settles once the image has loaded; a broken image rejects it.
        let result = self
            .client
            .execute_async(
                "const [img, done] = arguments;\
                 img.decode().then(() => done(img.naturalWidth > 0), () => done(false));",
                vec![arg],
            )
            .await
            .unwrap();
        result == Value::Bool(true)
    }

    /// The Content-Security-Policy violations of the document in the current
    /// frame since it started loading, as "directive blocked-URL": a buffered
    /// ReportingObserver is handed the reports made before it existed.
    pub async fn csp_violations(&self) -> Vec<String> {
        let reports = self
            .client
            .execute_async(
                "const done = arguments[0];\
                 new ReportingObserver(\
                   reports => done(reports.map(r => r.body.effectiveDirective + ' ' + r.body.blockedURL)),\
                   {types: ['csp-violation'], buffered: true}).observe();\
                 setTimeout(() => done([]), 300);",
                vec![],
            )
            .await
            .expect("read the CSP reports");
        serde_json::from_value(reports).expect("a list of reports")
    }

    /// Fails the test (with a screenshot) when the page in the current frame
    /// had something blocked by its Content-Security-Policy.
    pub async fn policy_kept(&self, page: &str) {
        let violations = self.csp_violations().await;
        if !violations.is_empty() {
            self.fail(format!("the {page} page broke its Content-Security-Policy: {violations:?}")).await;
        }
    }

    /// The HTTP status of a GET of `path` from inside the page (same cookies as the user).
    pub async fn fetch_status(&self, path: &str) -> u16 {
        let status = self
            .client
            .execute_async(
                "const [path, done] = arguments;\
                 fetch(path, {credentials: 'same-origin', redirect: 'manual'})\
                   .then(r => done(r.status), e => done(String(e)));",
                vec![json!(path)],
            )
            .await
            .unwrap();
        status.as_u64().unwrap_or_else(|| panic!("fetch {path}: {status}")) as u16
    }

    /// Waits (at most [`WAIT`]) for a finished download called `name`; returns its bytes.
    pub async fn downloaded(&self, name: &str) -> Vec<u8> {
        let path = self.downloads.join(name);
        let deadline = Instant::now() + WAIT;
        loop {
            // Chromium writes `name.crdownload` and renames it when complete.
            if path.is_file() {
                return fs::read(&path).unwrap();
            }
            if Instant::now() >= deadline {
                let present: Vec<_> = fs::read_dir(&self.downloads).unwrap().flatten().map(|e| e.file_name()).collect();
                self.fail(format!("no download {name} within {WAIT:?}; the directory has {present:?}")).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A small valid PNG: `width`×`height`, an RGB gradient (stored, uncompressed deflate).
pub fn png(width: u32, height: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    let mut raw = Vec::new();
    for y in 0..height {
        raw.push(0); // filter: none
        for x in 0..width {
            raw.extend_from_slice(&[(x * 255 / width) as u8, (y * 255 / height) as u8, 0xc0]);
        }
    }
    // zlib stream of stored deflate blocks (at most 65535 bytes each).
    let mut zlib = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65535).collect();
    for (i, block) in blocks.iter().enumerate() {
        zlib.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        zlib.extend_from_slice(&len.to_le_bytes());
        zlib.extend_from_slice(&(!len).to_le_bytes());
        zlib.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in &raw {
        a = (a + byte as u32) % 65521;
        b = (b + a) % 65521;
    }
    zlib.extend_from_slice(&((b << 16) | a).to_be_bytes());

    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut header = Vec::new();
    header.extend_from_slice(&width.to_be_bytes());
    header.extend_from_slice(&height.to_be_bytes());
    header.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, no interlace
    chunk(&mut out, b"IHDR", &header);
    chunk(&mut out, b"IDAT", &zlib);
    chunk(&mut out, b"IEND", &[]);
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}
