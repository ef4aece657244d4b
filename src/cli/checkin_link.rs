//! `wechat-ticket checkin-link create|list|revoke`: volunteers' check-in links from the shell.

use clap::Subcommand;
use time::OffsetDateTime;

use crate::{
    Config,
    booking::{
        activities,
        checkin_links::{self, DEFAULT_GATE, DEFAULT_HOURS},
    },
    db,
    error::AppError,
    links, local_time,
};

#[derive(Subcommand, Debug)]
pub enum CheckinLinkCommand {
    /// Create a link for one gate of an activity and print its URL.
    Create {
        /// The activity's key.
        key: String,
        /// The gate's name, shown on the link's page and in "已检票 HH:MM（入口名）".
        #[arg(long, default_value = DEFAULT_GATE)]
        gate: String,
        /// How long the link stays open.
        #[arg(long, default_value_t = DEFAULT_HOURS)]
        hours: i64,
    },
    /// One line per link: id, activity key, gate, state, expiry, URL (while open).
    List,
    /// Revoke a link: its page and its scans are refused from now on.
    Revoke { id: i64 },
}

pub async fn run(config: &Config, command: CheckinLinkCommand) -> Result<(), AppError> {
    let (pool, cluster) = db::open(config).await?;
    let result = async {
        db::migrate(&pool).await?;
        // The same key `serve` signs with, so the printed URL opens there.
        let secret = crate::settings::secret_key(config, &pool).await?;
        let url = |id: i64| format!("{}/door/{}", config.public_url, links::door_token(&secret, id));
        let tz = config.timezone;
        let mut tx = pool.begin().await?;
        match command {
            CheckinLinkCommand::Create { key, gate, hours } => {
                let activity = activities::by_key(&mut tx, &key)
                    .await?
                    .ok_or_else(|| AppError::Invalid(format!("no activity with key `{key}`")))?;
                let link = checkin_links::create(&mut tx, &activity, &gate, hours, "shell").await?;
                eprintln!(
                    "link #{} for `{}` at gate {}, open until {}",
                    link.id,
                    link.activity_key,
                    link.gate,
                    local_time::full(link.expires_at, tz)
                );
                println!("{}", url(link.id));
            }
            CheckinLinkCommand::List => {
                let now = OffsetDateTime::now_utc();
                for l in checkin_links::list(&mut tx, None).await? {
                    let state = if l.revoked_at.is_some() {
                        "revoked"
                    } else if l.is_open(now) {
                        "open"
                    } else {
                        "expired"
                    };
                    let shown = if l.is_open(now) { url(l.id) } else { "-".into() };
                    let expires = local_time::full(l.expires_at, tz);
                    println!("{}\t{}\t{}\t{state}\t{expires}\t{shown}", l.id, l.activity_key, l.gate);
                }
            }
            CheckinLinkCommand::Revoke { id } => {
                let link = checkin_links::revoke(&mut tx, id, "shell")
                    .await?
                    .ok_or_else(|| AppError::Invalid(format!("no check-in link #{id}")))?;
                println!("link #{} ({} at gate {}) revoked", link.id, link.activity_key, link.gate);
            }
        }
        tx.commit().await?;
        Ok(())
    }
    .await;
    pool.close().await;
    drop(cluster);
    result
}
