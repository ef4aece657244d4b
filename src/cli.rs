//! The command line: `serve` (the default), `migrate`, and the admin's shell tools.

use clap::{Parser, Subcommand};

use crate::{AppState, Application, Config, db, error::AppError};

#[derive(Parser, Debug)]
#[command(name = "wechat-ticket", version, about = "Campus event ticketing over a WeChat Official Account")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve HTTP (the default when no command is given).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
}

pub async fn run() -> Result<(), AppError> {
    let cli = Cli::parse();
    crate::install_crypto_provider();
    let config = Config::from_env()?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Migrate => {
            let (pool, _cluster) = db::open(&config).await?;
            db::migrate(&pool).await?;
            pool.close().await;
            println!("migrations applied");
            Ok(())
        }
    }
}

async fn serve(config: Config) -> Result<(), AppError> {
    tracing::info!(?config, "starting");
    let (pool, cluster) = db::open(&config).await?;
    db::migrate(&pool).await?;
    let state = AppState::new(config, pool.clone()).await?;
    let app = Application::build(state.clone()).await?;
    let addr = app.local_addr();
    let mode = if state.cipher.is_some() { "safe or compatible (AES)" } else { "plaintext" };
    if state.config.wechat_token.is_none() {
        // Only the development token is printed: a real WECHAT_TOKEN is a secret.
        println!("development WeChat token: {}", state.wechat_token);
    }
    println!("wechat-ticket listening on http://{addr}");
    println!("WeChat server URL: {}/wechat  (message mode: {mode})", state.config.public_url);
    let result = app.run_until(crate::app::shutdown_signal()).await;
    pool.close().await;
    drop(cluster);
    result
}
