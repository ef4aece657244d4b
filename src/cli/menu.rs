//! `wechat-ticket menu show|push`: the custom menu from the shell.

use clap::Subcommand;

use crate::{Config, db, error::AppError, menu};

#[derive(Subcommand, Debug)]
pub enum MenuCommand {
    /// Print the menu currently on WeChat (`no menu` when there is none).
    Show,
    /// Compose the menu and push it to WeChat. Without --activity, the (up to
    /// five) published activities whose booking opens soonest go under 抢票.
    Push {
        /// An activity's key (or numeric id) to put under 抢票; repeat, at most 5.
        #[arg(long = "activity", value_name = "KEY")]
        activities: Vec<String>,
        /// Print the JSON that would be pushed, and push nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

pub async fn run(config: &Config, command: MenuCommand) -> Result<(), AppError> {
    let dry_run = matches!(command, MenuCommand::Push { dry_run: true, .. });
    // Say what is missing before starting a database for nothing.
    if !dry_run {
        menu::credentials(config)?;
    }
    let (pool, cluster) = db::open(config).await?;
    let result = async {
        db::migrate(&pool).await?;
        match command {
            MenuCommand::Show => match menu::current(&menu::wechat_api(config, pool.clone())?).await? {
                Some(current) => println!("{}", current.to_pretty_json()),
                None => println!("no menu"),
            },
            MenuCommand::Push { activities, dry_run } => {
                let chosen = {
                    let mut conn = pool.acquire().await?;
                    if activities.is_empty() {
                        menu::default_choice(&mut conn).await?
                    } else {
                        menu::choose(&mut conn, &activities).await?
                    }
                };
                let composed = menu::compose_for(config, &chosen)?;
                println!("{}", composed.to_pretty_json());
                if dry_run {
                    eprintln!("dry run: nothing pushed");
                } else {
                    menu::push(&menu::wechat_api(config, pool.clone())?, &pool, &composed).await?;
                    menu::remember_choice(&pool, &chosen).await?;
                    // Without --activity the push follows the default rule, and so does MENU_AUTO after it.
                    let pinned = (!activities.is_empty()).then_some(chosen.as_slice());
                    menu::auto::remember_rule(&pool, pinned).await?;
                    let under_book = composed.button[0].sub_button.len();
                    eprintln!("menu pushed to WeChat with {under_book} activities under 抢票");
                }
            }
        }
        Ok(())
    }
    .await;
    pool.close().await;
    drop(cluster);
    result
}
