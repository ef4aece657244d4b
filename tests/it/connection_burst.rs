//! WeChat's servers deliver a rush as a burst of fresh connections. Every one
//! must wait in the listen queue until the server takes it: a full queue
//! drops the SYN, and that student waits for the kernel's retransmit.

use std::{collections::HashMap, time::Duration};

use futures::future::join_all;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use wechat_ticket::{AppState, Application, Config};

use crate::common::spawn_app;

/// More than tokio's and std's backlog of 128, well under a modern kernel's somaxconn (4096).
const BURST: usize = 600;

/// The first SYN retransmit comes after 1 s, the next after 3 s more: a
/// connection still not established after this was dropped by a full queue.
const WAIT: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_hundred_connections_arriving_before_the_server_accepts_are_all_answered() {
    let app = spawn_app().await;
    let vars = HashMap::from([("LISTEN", "127.0.0.1:0"), ("WECHAT_TOKEN", "burst-token")]);
    let config = Config::from_lookup(|k| vars.get(k).map(|v| v.to_string())).unwrap();
    let state = AppState::new(config, app.pool.clone()).await.unwrap();
    // Bound as `serve` binds it, not yet accepting: as when every worker is busy.
    let server = Application::build(state).await.unwrap();
    let addr = server.local_addr();
    // A kernel capping the backlog lower (net.core.somaxconn) caps what any server can queue.
    let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(BURST);
    let n = BURST.min(somaxconn);

    let connections = join_all((0..n).map(|_| tokio::time::timeout(WAIT, TcpStream::connect(addr)))).await;
    let dropped = connections.iter().filter(|c| !matches!(c, Ok(Ok(_)))).count();
    assert_eq!(dropped, 0, "{dropped} of {n} connections were not let into the listen queue");

    tokio::spawn(server.run_until(std::future::pending()));
    let answers = join_all(connections.into_iter().map(|c| async move {
        let mut stream = c.unwrap().unwrap();
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: burst\r\nConnection: close\r\n\r\n").await?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await?;
        Ok::<_, std::io::Error>(reply)
    }))
    .await;
    let answered = answers.iter().filter(|a| a.as_ref().is_ok_and(|r| r.starts_with("HTTP/1.1 200"))).count();
    assert_eq!(answered, n, "every queued connection is served once the server accepts");
}
