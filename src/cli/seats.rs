//! `wechat-ticket activity block-seats|unblock-seats <key> <zone-row-seat>…`
//! (README "Seats"): the admin page's blocks, from the shell.

use crate::{
    AppState, Config, audit,
    booking::{activities, seats::admin as seat_admin},
    db,
    error::AppError,
};

#[derive(Clone, Copy)]
pub enum Change {
    Block,
    Unblock,
}

pub async fn change_blocks(config: &Config, key: &str, seats: &[String], change: Change) -> Result<(), AppError> {
    let (pool, cluster) = db::open(config).await?;
    db::migrate(&pool).await?;
    let result = async {
        // The notifier queues the notices of students a freed seat promotes from the waiting list.
        let state = AppState::new(config.clone(), pool.clone()).await?;
        let mut tx = pool.begin().await?;
        let activity = activities::by_key(&mut tx, key)
            .await?
            .ok_or_else(|| AppError::Invalid(format!("no activity with key `{key}`")))?;
        let done = match change {
            Change::Block => seat_admin::block(&mut tx, &state.notifier, activity.id, seats).await?,
            Change::Unblock => seat_admin::unblock(&mut tx, &state.notifier, activity.id, seats).await?,
        };
        audit::record_for(&mut tx, activity.id, "shell", "预留座位", &done.describe(&activity.key)).await?;
        tx.commit().await?;
        println!(
            "{}\tblocked {}\tunblocked {}\tcapacity {}",
            activity.key,
            done.blocked.len(),
            done.unblocked.len(),
            done.capacity
        );
        Ok(())
    }
    .await;
    pool.close().await;
    drop(cluster);
    result
}
