//! The test harness: the real app on a random port with a fresh database, a
//! builder for signed (and encrypted) WeChat messages, and reply readers.
//!
//! With `DATABASE_URL` unset, one throwaway PostgreSQL cluster is started per
//! test process (from the installed server binaries) and removed when the
//! process exits. Each test gets its own database cloned from a migrated template.

#![allow(dead_code)]

pub mod admin;
pub mod browser;
pub mod fake_cas;
pub mod fake_wechat;
pub mod fixtures;
pub mod wx;

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering},
    },
};

use sqlx::{
    ConnectOptions, Connection, PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};
use wechat_ticket::{
    AppState, Application, Config,
    db::{self, Durability, LocalCluster},
};

pub const TOKEN: &str = "test-token";
pub const APPID: &str = "wx49f0ab532d5d035a";
pub const AES_KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";

const TEMPLATE: &str = "wechat_ticket_template";

/// How to reach the test server as its superuser, and whether the template is ready.
struct TestServer {
    admin: PgConnectOptions,
}

static SERVER: OnceLock<TestServer> = OnceLock::new();
static NEXT_DB: AtomicU64 = AtomicU64::new(0);

fn server() -> &'static TestServer {
    SERVER.get_or_init(|| {
        // Own runtime: this runs once, inside whichever test's runtime got here first.
        std::thread::spawn(|| {
            let admin = match std::env::var("DATABASE_URL") {
                Ok(url) => url.parse::<PgConnectOptions>().expect("DATABASE_URL"),
                Err(_) => {
                    let dir = std::env::temp_dir().join(format!("wt-test-{}", std::process::id()));
                    let _ = std::fs::remove_dir_all(&dir);
                    let cluster = LocalCluster::new(&dir, Durability::Throwaway)
                        .and_then(LocalCluster::start)
                        .expect("start a throwaway PostgreSQL");
                    let admin = db::local_options(cluster.socket_dir(), "postgres");
                    cluster.stop_and_remove_when_process_exits().expect("cleanup watcher");
                    admin
                }
            };
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let mut conn = admin.connect().await.expect("connect to the test server");
                let template = format!("{TEMPLATE}_{}", std::process::id());
                sqlx::query(&format!("DROP DATABASE IF EXISTS {template}")).execute(&mut conn).await.unwrap();
                sqlx::query(&format!("CREATE DATABASE {template}")).execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
                let pool = PgPoolOptions::new()
                    .max_connections(1)
                    .connect_with(admin.clone().database(&template))
                    .await
                    .unwrap();
                db::migrate(&pool).await.expect("migrations");
                pool.close().await;
            });
            TestServer { admin }
        })
        .join()
        .expect("test database server")
    })
}

/// A fresh, migrated database for one test.
pub async fn fresh_database() -> PgConnectOptions {
    let server = server();
    let name = format!("wt_{}_{}", std::process::id(), NEXT_DB.fetch_add(1, Ordering::Relaxed));
    let template = format!("{TEMPLATE}_{}", std::process::id());
    let mut conn = server.admin.connect().await.unwrap();
    // CREATE DATABASE … TEMPLATE fails while another clone reads the template: retry.
    for attempt in 0.. {
        match sqlx::query(&format!("CREATE DATABASE {name} TEMPLATE {template}")).execute(&mut conn).await {
            Ok(_) => break,
            Err(e) if attempt < 50 && e.to_string().contains("being accessed by other users") => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await
            }
            Err(e) => panic!("create test database: {e}"),
        }
    }
    conn.close().await.unwrap();
    server.admin.clone().database(&name)
}

/// Warnings and errors from the app show in a failing test's output; `RUST_LOG` widens it.
fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
}

/// Settings a test may change before the app starts.
#[derive(Clone, Default)]
pub struct Settings {
    pub vars: HashMap<String, String>,
    /// Run this instance's notification workers (off unless a test asks).
    pub notify_workers: bool,
}

impl Settings {
    pub fn set(mut self, name: &str, value: &str) -> Self {
        self.vars.insert(name.into(), value.into());
        self
    }

    /// Starts the notification workers with the app, as `serve` does.
    /// Reminders are off unless the test sets `REMINDER_HOURS`: a fixture's
    /// activity starts two hours out, right at the default's edge, so the
    /// once-a-minute sweep would otherwise add reminders whenever a test
    /// happens to straddle the top of a minute.
    pub fn with_notify_workers(mut self) -> Self {
        self.vars.entry("REMINDER_HOURS".into()).or_insert_with(|| "0".into());
        self.notify_workers = true;
        self
    }

    /// Safe mode: the AES key and appid of the vectors file.
    pub fn encrypted(self) -> Self {
        self.set("WECHAT_AES_KEY", AES_KEY).set("WECHAT_APPID", APPID)
    }
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub pool: PgPool,
    pub state: AppState,
    pub db: PgConnectOptions,
    pub http: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    workers: Option<(wechat_ticket::background::Workers, wechat_ticket::background::Workers)>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Settings::default()).await
}

pub async fn spawn_app_with(settings: Settings) -> TestApp {
    let db = fresh_database().await;
    spawn_app_on(db, settings).await
}

/// Another instance on the same database (the multi-instance tests).
pub async fn spawn_app_on(db: PgConnectOptions, settings: Settings) -> TestApp {
    init_logs();
    wechat_ticket::install_crypto_provider();
    // Bound as `serve` binds, so the tests meet the same listen queue.
    let listener = wechat_ticket::app::bind_listener(([127, 0, 0, 1], 0).into()).unwrap();
    let addr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let start_workers = settings.notify_workers;
    let mut vars = settings.vars;
    vars.entry("WECHAT_TOKEN".into()).or_insert_with(|| TOKEN.into());
    vars.insert("LISTEN".into(), addr.to_string());
    vars.entry("PUBLIC_URL".into()).or_insert_with(|| base.clone());
    // No managed cluster under DATA_DIR to back up: nightly backups only where a test asks.
    vars.entry("BACKUP_AT".into()).or_insert_with(|| "off".into());
    let config = Config::from_lookup(|k| vars.get(k).cloned()).expect("test config");
    let pool = PgPoolOptions::new().max_connections(16).connect_with(db.clone()).await.unwrap();
    let state = AppState::new(config, pool.clone()).await.expect("app state");
    let workers = if start_workers {
        let senders = state.notifier.start().await.expect("notification workers");
        let clock = wechat_ticket::schedule::start(&state.notifier).await.expect("the clock");
        Some((senders, clock))
    } else {
        None
    };
    let app = Application::with_listener(listener, state.clone());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        app.run_until(async move {
            let _ = rx.await;
        })
        .await
        .expect("server")
    });
    let http =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).cookie_store(true).build().unwrap();
    TestApp { addr, base, pool, state, db, http, shutdown: Some(tx), workers }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.pool).await.unwrap()
    }

    /// A `DATABASE_URL` for this test's database, for running the binary against it.
    pub fn database_url(&self) -> String {
        let db = self.db.get_database().expect("a database name");
        match std::env::var("DATABASE_URL") {
            Ok(url) => {
                let (base, query) = url.split_once('?').map_or((url.as_str(), None), |(b, q)| (b, Some(q)));
                let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
                format!("{server}/{db}{}", query.map(|q| format!("?{q}")).unwrap_or_default())
            }
            Err(_) => {
                let socket = self.db.get_socket().expect("the throwaway cluster's socket directory");
                format!("postgres://postgres@localhost/{db}?host={}", socket.display())
            }
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some((senders, clock)) = self.workers.take() {
            clock.stop().await;
            senders.stop().await;
        }
    }
}
