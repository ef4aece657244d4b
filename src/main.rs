use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    wechat_ticket::telemetry::init();
    match wechat_ticket::cli::run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wechat-ticket: {e}");
            ExitCode::FAILURE
        }
    }
}
