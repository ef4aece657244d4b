//! `wechat-ticket hall …`: the halls' seat maps (README "Seats").

use clap::Subcommand;

use super::with_database;
use crate::{Config, booking::seats::hall, error::AppError};

#[derive(Subcommand, Debug)]
pub enum HallCommand {
    /// Import a seat map: a CSV with the header `zone,row,seat` (optional `x,y`), one seat a line.
    Import { name: String, file: std::path::PathBuf },
    /// One line per hall: name, seats, activities using it (tab-separated).
    List,
    /// Delete a hall no activity uses.
    Delete { name: String },
}

pub async fn run(config: &Config, command: HallCommand) -> Result<(), AppError> {
    match command {
        HallCommand::Import { name, file } => {
            let bytes =
                std::fs::read(&file).map_err(|e| AppError::Invalid(format!("cannot read {}: {e}", file.display())))?;
            // Read and checked before the database is opened: a bad file stores nothing.
            let seats = hall::parse(&bytes).map_err(|bad| AppError::Invalid(format!("{}: {bad}", file.display())))?;
            with_database(config, move |conn| {
                Box::pin(async move {
                    let h = hall::import(conn, &name, &seats).await?;
                    println!("{}\t{} seats\timported", h.name, h.seats);
                    Ok(())
                })
            })
            .await
        }
        HallCommand::List => {
            with_database(config, |conn| {
                Box::pin(async move {
                    for h in hall::list(conn).await? {
                        println!("{}\t{}\t{}", h.name, h.seats, h.used_by);
                    }
                    Ok(())
                })
            })
            .await
        }
        HallCommand::Delete { name } => {
            with_database(config, move |conn| {
                Box::pin(async move {
                    hall::delete(conn, &name).await?;
                    println!("{name}\tdeleted");
                    Ok(())
                })
            })
            .await
        }
    }
}
