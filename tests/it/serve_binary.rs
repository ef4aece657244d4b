//! The product as an operator runs it: the `wechat-ticket` binary with no
//! DATABASE_URL starts its own PostgreSQL under DATA_DIR, stops it on SIGTERM,
//! and keeps the data for the next start.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use wechat_ticket::wechat::signature;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_wechat-ticket");

/// Kills the server if a test fails half-way, so no orphan outlives the test.
pub(crate) struct Server(pub(crate) Option<Child>);

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn start(data_dir: &Path, port: u16) -> Server {
    let child = Command::new(BIN)
        .env_remove("DATABASE_URL")
        .env("DATA_DIR", data_dir)
        .env("LISTEN", format!("127.0.0.1:{port}"))
        .env("WECHAT_TOKEN", "binary-token")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run wechat-ticket");
    Server(Some(child))
}

pub(crate) async fn wait_healthy(port: u16) {
    wechat_ticket::install_crypto_provider();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(resp) = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await
            && resp.status() == 200
        {
            return;
        }
        assert!(Instant::now() < deadline, "server did not become healthy");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(crate) fn terminate(mut server: Server) {
    let mut child = server.0.take().expect("a running server");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn cli(data_dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN).env_remove("DATABASE_URL").env("DATA_DIR", data_dir).args(args).output().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_runs_its_own_postgres_and_keeps_data_across_restarts() {
    let data = tempdir();
    let port = free_port();
    let server = start(&data, port);
    wait_healthy(port).await;

    let ts = time::OffsetDateTime::now_utc().unix_timestamp();
    let sig = signature::sign(&["binary-token", &ts.to_string(), "test"]);
    let echo =
        reqwest::get(format!("http://127.0.0.1:{port}/wechat?signature={sig}&timestamp={ts}&nonce=test&echostr=hello"))
            .await
            .unwrap();
    assert_eq!(echo.status(), 200);
    assert_eq!(echo.text().await.unwrap(), "hello");
    let wrong = reqwest::get(format!(
        "http://127.0.0.1:{port}/wechat?signature=f21891de399b4e33a1a93c9a7b8a8fffb5a443fe&timestamp={ts}&nonce=test&echostr=hello"
    ))
    .await
    .unwrap();
    assert_eq!(wrong.status(), 403);

    // Something to survive the restart: the secret key generated at first start.
    let cluster = data.join("postgres");
    assert!(cluster.join("postmaster.pid").exists(), "the managed server runs under DATA_DIR");
    let migrate = cli(&data, &["migrate"]);
    assert!(migrate.status.success(), "{}", String::from_utf8_lossy(&migrate.stderr));
    assert!(cluster.join("postmaster.pid").exists(), "a CLI command beside serve leaves its server running");

    // The admin's shell tools work beside the running server, on its database.
    let created = cli(
        &data,
        &[
            "activity",
            "create",
            "concert",
            "--name",
            "新年音乐会",
            "--place",
            "新清华学堂",
            "--capacity",
            "300",
            "--book-start",
            "2030-01-01 12:00",
            "--book-end",
            "2030-01-02 12:00",
            "--start",
            "2030-01-03 19:00",
            "--end",
            "2030-01-03T21:00:00+08:00",
        ],
    );
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let refused = cli(
        &data,
        &[
            "activity",
            "create",
            "bad",
            "--name",
            "x",
            "--place",
            "y",
            "--capacity",
            "1",
            "--book-start",
            "tomorrow",
            "--book-end",
            "2030-01-02 12:00",
            "--start",
            "2030-01-03 19:00",
            "--end",
            "2030-01-03 21:00",
        ],
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--book-start"), "says which value is wrong");
    let published = cli(&data, &["activity", "publish", "concert"]);
    assert!(published.status.success(), "{}", String::from_utf8_lossy(&published.stderr));
    let missing = cli(&data, &["activity", "publish", "nosuch"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nosuch"));
    let roster_file = data.join("roster.csv");
    std::fs::write(&roster_file, "\u{feff}学号,姓名\n2024010001,张三\n2024010002,李四\n").unwrap();
    let imported = cli(&data, &["roster", "import", roster_file.to_str().unwrap()]);
    assert!(imported.status.success(), "{}", String::from_utf8_lossy(&imported.stderr));
    assert!(String::from_utf8_lossy(&imported.stdout).contains("roster now has 2"));

    terminate(server);
    assert!(!cluster.join("postmaster.pid").exists(), "stopping the app stops its PostgreSQL");

    // A command with no server running starts the cluster for itself and stops it again.
    let listed = cli(&data, &["activity", "list"]);
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    let listed = String::from_utf8_lossy(&listed.stdout).to_string();
    let line = listed.lines().next().expect("one activity");
    let mut fields = line.split('\t');
    assert!(fields.next().unwrap().parse::<i64>().is_ok(), "{line}");
    assert_eq!(fields.next(), Some("concert"));
    assert!(line.contains("published") && line.contains("0/300") && line.contains("2030-01-01 12:00"), "{line}");
    assert!(!cluster.join("postmaster.pid").exists(), "the command stopped the server it started");

    let server = start(&data, port);
    wait_healthy(port).await;
    let echo =
        reqwest::get(format!("http://127.0.0.1:{port}/wechat?signature={sig}&timestamp={ts}&nonce=test&echostr=again"))
            .await
            .unwrap();
    assert_eq!(echo.text().await.unwrap(), "again");

    // Killed outright, the app cannot stop its PostgreSQL; the next serve uses
    // that server and, being its last user, stops it when it stops.
    let mut killed = server;
    let mut child = killed.0.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(cluster.join("postmaster.pid").exists(), "a SIGKILL leaves the server running");
    let server = start(&data, port);
    wait_healthy(port).await;
    terminate(server);
    assert!(!cluster.join("postmaster.pid").exists(), "the next serve stopped the server it found running");
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn missing_binaries_give_one_clear_line() {
    let data = tempdir();
    let out = Command::new(BIN)
        .env_remove("DATABASE_URL")
        .env("DATA_DIR", &data)
        .env("PG_BIN", "/nonexistent")
        .arg("migrate")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr.lines().find(|l| l.starts_with("wechat-ticket:")).expect("an error line");
    assert!(line.contains("PG_BIN"), "{stderr}");
    let _ = std::fs::remove_dir_all(&data);
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("wt-bin-{}-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}
