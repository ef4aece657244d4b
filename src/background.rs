//! Long-running background loops (the notification sender, the clock's
//! sweeps, housekeeping): each kept going until shutdown, and stopped
//! together, finishing the work in hand.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Keeps one long-running loop going: it returns when it lost its database
/// connection or (a scheduler) found another instance holding the schedule,
/// and is started again after a pause, until shutdown.
pub fn supervise<F, Fut>(what: &'static str, token: CancellationToken, run: F) -> JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    const PAUSE: Duration = Duration::from_secs(30);
    tokio::spawn(async move {
        while !token.is_cancelled() {
            if let Err(e) = run().await {
                tracing::warn!(what, error = %e, "stopped; starting again shortly");
            }
            tokio::select! {
                _ = token.cancelled() => break,
                _ = tokio::time::sleep(PAUSE) => {}
            }
        }
    })
}

/// One feature's running loops.
pub struct Workers {
    pub(crate) token: CancellationToken,
    pub(crate) running: Vec<JoinHandle<()>>,
}

impl Workers {
    pub fn new(token: CancellationToken) -> Workers {
        Workers { token, running: Vec::new() }
    }

    pub fn push(&mut self, handle: JoinHandle<()>) {
        self.running.push(handle);
    }

    /// Stops taking work and waits for the work in hand to finish.
    pub async fn stop(self) {
        self.token.cancel();
        for handle in self.running {
            let _ = handle.await;
        }
    }
}
