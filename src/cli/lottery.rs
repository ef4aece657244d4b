//! `wechat-ticket lottery verify <key>`: checks a draw from its published
//! `draw.json` alone — the same check anyone can run on the file.

use clap::Subcommand;

use crate::{
    Config,
    booking::{activities, lottery, lottery::proof::Published},
    db,
    error::AppError,
};

#[derive(Subcommand, Debug)]
pub enum LotteryCommand {
    /// Recompute a drawn lottery from its draw.json; exit 0 only if everything matches.
    ///
    /// Without --file or --url the JSON is the one this server publishes
    /// (read from its database); with either, no database is needed.
    Verify {
        /// The activity's key; the JSON must be this activity's.
        key: String,
        /// Check this file (e.g. a downloaded draw.json).
        #[arg(long, conflicts_with = "url")]
        file: Option<std::path::PathBuf>,
        /// Fetch the JSON from this address (…/activities/{id}/draw.json).
        #[arg(long)]
        url: Option<String>,
        /// Also print this student's eid, rank and whether it won (needs --secret).
        #[arg(long, requires = "secret")]
        student_id: Option<String>,
        /// The registration's secret (报名密钥, on the student's 我的票 page), for --student-id.
        #[arg(long, requires = "student_id")]
        secret: Option<String>,
        /// Also print this eid's rank and whether it won.
        #[arg(long, conflicts_with = "student_id")]
        eid: Option<String>,
    },
}

pub async fn run(config: &Config, command: LotteryCommand) -> Result<(), AppError> {
    let LotteryCommand::Verify { key, file, url, student_id, secret, eid } = command;
    let json = match (file, url) {
        (Some(path), _) => {
            std::fs::read(&path).map_err(|e| AppError::Invalid(format!("cannot read {}: {e}", path.display())))?
        }
        (None, Some(url)) => fetch(&url).await?,
        (None, None) => from_database(config, &key).await?,
    };
    let published: Published =
        serde_json::from_slice(&json).map_err(|e| AppError::Invalid(format!("not a draw.json: {e}")))?;
    if published.activity != key.to_ascii_lowercase() {
        return Err(AppError::Invalid(format!("this draw.json is activity `{}`'s, not `{key}`'s", published.activity)));
    }
    let verified = published
        .verify()
        .map_err(|wrong| AppError::Invalid(format!("the draw does NOT verify:\n  - {}", wrong.join("\n  - "))))?;
    let entries = match verified.entries {
        1 => "1 entry".to_string(),
        n => format!("{n} entries"),
    };
    println!(
        "ok: {} — commitment matches the seed; pool_hash matches {entries}; the order is the draw's; first {} won",
        published.activity, verified.winners
    );
    let (who, eid) = match (student_id, secret, eid) {
        (Some(student_id), Some(secret), _) => {
            let eid = published.eid_of(&student_id, &secret).ok_or_else(|| {
                AppError::Invalid("--secret is the registration's 32 hex digits (报名密钥)".to_string())
            })?;
            (format!("{student_id}: "), eid)
        }
        (_, _, Some(eid)) => (String::new(), eid.trim().to_ascii_lowercase()),
        _ => return Ok(()),
    };
    match published.rank_of(&eid) {
        Some((rank, won)) => println!(
            "{who}eid {eid} — rank {rank} of {}, {}",
            verified.entries,
            if won { "won" } else { "not drawn (waiting list in this order)" }
        ),
        None => println!("{who}eid {eid} is not among the entries"),
    }
    Ok(())
}

async fn fetch(url: &str) -> Result<Vec<u8>, AppError> {
    let failed = |e: reqwest::Error| AppError::Invalid(format!("cannot fetch {url}: {e}"));
    let response = reqwest::get(url).await.map_err(failed)?;
    if !response.status().is_success() {
        return Err(AppError::Invalid(format!("{url} answered {}", response.status())));
    }
    Ok(response.bytes().await.map_err(failed)?.to_vec())
}

async fn from_database(config: &Config, key: &str) -> Result<Vec<u8>, AppError> {
    let (pool, cluster) = db::open(config).await?;
    let result = async {
        db::migrate(&pool).await?;
        let mut conn = pool.acquire().await?;
        let activity = activities::by_key(&mut conn, key)
            .await?
            .ok_or_else(|| AppError::Invalid(format!("no activity with key `{key}`")))?;
        let published = lottery::published(&mut conn, activity.id)
            .await?
            .ok_or_else(|| AppError::Invalid(format!("`{key}` has no draw yet")))?;
        serde_json::to_vec(&published).map_err(|e| AppError::Internal(e.to_string()))
    }
    .await;
    pool.close().await;
    drop(cluster);
    result
}
