//! Logging: `RUST_LOG` filters, quiet SQL by default, to stderr so command
//! output on stdout stays clean for pipes (`export … > file`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Crates that log a request's raw path (which carries ticket codes and
/// check-in credentials) at trace level, with the level they are held to
/// whatever `RUST_LOG` says. This app's own request spans redact the path.
const LOG_RAW_PATHS: &[&str] = &["tower_http::csrf=debug"];

pub fn init() {
    let mut filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    for directive in LOG_RAW_PATHS {
        filter = filter.add_directive(directive.parse().expect("a valid directive"));
    }
    // Colour codes only for a person at a terminal, not in journald or a log file.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
