//! `wechat-ticket ticket issue|revoke`: guest tickets from the shell (booking/guests.rs).

use clap::Subcommand;

use crate::{
    Config, audit,
    booking::{
        activities,
        guests::{self, GuestRequest, IssueOutcome, RevokeOutcome},
    },
    db,
    error::AppError,
    notify::Notifier,
};

/// Who the audit log and the ticket name as the issuer of a shell command.
const SHELL: &str = "shell";

#[derive(Subcommand, Debug)]
pub enum TicketCommand {
    /// Issue a guest ticket (嘉宾票) outside the booking window, from the activity's places; prints the ticket page URL.
    Issue {
        /// The activity's key.
        key: String,
        /// The guest's name (1 to 64 characters).
        #[arg(long)]
        name: String,
        /// A guest who is a student: the ticket shows in their 查票 like any ticket.
        #[arg(long)]
        student_id: Option<String>,
        /// A note for the organizers (at most 200 characters), shown on the activity page and in exports.
        #[arg(long)]
        note: Option<String>,
    },
    /// Revoke a guest ticket by its code: its place goes to the waiting list first, as a cancel's does.
    Revoke { code: String },
}

pub async fn run(config: &Config, command: TicketCommand) -> Result<(), AppError> {
    let (pool, cluster) = db::open(config).await?;
    let result = async {
        db::migrate(&pool).await?;
        // A revoke may promote the waiting list's head, who is told through
        // the queue; `serve` sends what is queued here.
        let secret = crate::settings::secret_key(config, &pool).await?;
        let notifier = Notifier::new(pool.clone(), config.clone(), secret).await?;
        let mut tx = pool.begin().await?;
        match command {
            TicketCommand::Issue { key, name, student_id, note } => {
                let activity = activities::by_key(&mut tx, &key)
                    .await?
                    .ok_or_else(|| AppError::Invalid(format!("no activity with key `{key}`")))?;
                let request = GuestRequest {
                    activity_id: activity.id,
                    name: &name,
                    student_id: student_id.as_deref(),
                    note: note.as_deref(),
                    issued_by: SHELL,
                };
                let ticket = match guests::issue(&mut tx, &request, &config.student_id_pattern).await? {
                    IssueOutcome::Issued(ticket) => ticket,
                    refused => return Err(AppError::Invalid(refused.refusal().unwrap_or_default())),
                };
                audit::record_for(
                    &mut tx,
                    activity.id,
                    SHELL,
                    "嘉宾票",
                    &format!("{} {} {}", activity.key, ticket.holder(), ticket.code),
                )
                .await?;
                eprintln!("guest ticket {} for `{}`: {}", ticket.code, activity.key, ticket.holder());
                println!("{}/tickets/{}", config.public_url, ticket.code);
            }
            TicketCommand::Revoke { code } => match guests::revoke(&mut tx, &notifier, code.trim(), None).await? {
                RevokeOutcome::Revoked(ticket) => {
                    let detail = format!("撤销 {} {} {}", ticket.activity_key, ticket.holder(), ticket.code);
                    audit::record_for(&mut tx, ticket.activity_id, SHELL, "嘉宾票", &detail).await?;
                    println!("guest ticket {} revoked; its place is free again", ticket.code);
                }
                RevokeOutcome::TooLate(_) => {
                    return Err(AppError::Invalid("the ticket is checked in or its activity has started".into()));
                }
                RevokeOutcome::NoSuchGuestTicket => {
                    return Err(AppError::Invalid(format!("no live guest ticket with code `{code}`")));
                }
            },
        }
        tx.commit().await?;
        Ok(())
    }
    .await;
    pool.close().await;
    drop(cluster);
    result
}
