//! `wechat-ticket message <activity-key> --text …`: the organizer's word to
//! every ticket holder from the shell (notify/holder_messages.rs). It is
//! queued here; `serve`'s senders deliver it.

use crate::{
    Config, audit,
    booking::activities,
    db,
    error::AppError,
    links, local_time,
    notify::{
        Notifier,
        holder_messages::{self, Sent},
    },
};

pub async fn run(config: &Config, key: &str, text: &str, waiting: bool) -> Result<(), AppError> {
    let (pool, cluster) = db::open(config).await?;
    let result = async {
        db::migrate(&pool).await?;
        let secret = crate::settings::secret_key(config, &pool).await?;
        let notifier = Notifier::new(pool.clone(), config.clone(), secret).await?;
        let mut tx = pool.begin().await?;
        let activity = activities::by_key(&mut tx, key)
            .await?
            .ok_or_else(|| AppError::Invalid(format!("no activity with key `{key}`")))?;
        // Each run is a new message: its own nonce.
        match holder_messages::send(&mut tx, &notifier, &activity, text, waiting, "shell", &links::nonce()).await? {
            Sent::Queued { id, recipients } => {
                let detail = format!("{} #{id} → {recipients} 人：{}", activity.key, text.trim());
                audit::record_for(&mut tx, activity.id, "shell", "群发给持票人", &detail).await?;
                tx.commit().await?;
                println!("message {id} queued for {recipients} students of `{}`", activity.key);
                Ok(())
            }
            Sent::TooMany { next_at } => Err(AppError::Invalid(format!(
                "`{}` had {} messages in the last 24 hours; the next can go at {}",
                activity.key,
                holder_messages::PER_DAY,
                local_time::full(next_at, config.timezone)
            ))),
            Sent::Empty => Err(AppError::Invalid("--text is empty".into())),
            Sent::TooLong => {
                Err(AppError::Invalid(format!("--text is longer than {} characters", holder_messages::MAX_CHARS)))
            }
        }
    }
    .await;
    pool.close().await;
    drop(cluster);
    result
}
