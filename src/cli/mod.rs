//! The command line: `serve` (the default), `migrate`, and the admin's shell tools.

mod backup;
mod checkin_link;
mod demo;
mod hall;
mod lottery;
mod menu;
mod message;
mod seats;
mod ticket;

use clap::{Parser, Subcommand};

use crate::{
    AppState, Application, Config, audit,
    auth::accounts,
    booking::{NewActivity, activities, export, students},
    db,
    error::AppError,
    local_time,
};

#[derive(Parser, Debug)]
#[command(name = "wechat-ticket", version, about = "Campus event ticketing over a WeChat Official Account")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve HTTP (the default when no command is given).
    Serve {
        /// Add or refresh 4 demo activities (open, opening in 10 min, sold out, a lottery drawn in 15 min) and an `admin` (password shown once).
        #[arg(long)]
        demo: bool,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Create, list and publish activities.
    #[command(subcommand)]
    Activity(ActivityCommand),
    /// Manage admin and organizer accounts.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Teams (clubs, departments): every activity belongs to one; organizers manage their teams' activities.
    #[command(subcommand)]
    Team(TeamCommand),
    /// Halls: reusable seat maps for seat-map activities.
    #[command(subcommand)]
    Hall(hall::HallCommand),
    /// Write an activity's ticket list as CSV or XLSX (to stdout without -o).
    Export {
        /// The activity's key.
        key: String,
        #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
        format: ExportFormat,
        /// Write to this file instead of stdout.
        #[arg(short = 'o', long = "output")]
        output: Option<std::path::PathBuf>,
        /// Also list the tickets booked by the admin simulator's test students.
        #[arg(long)]
        include_test: bool,
    },
    /// Manage the student roster (STUDENT_VERIFY=roster).
    #[command(subcommand)]
    Roster(RosterCommand),
    /// Show the custom menu on WeChat, or compose and push a new one.
    #[command(subcommand)]
    Menu(menu::MenuCommand),
    /// Settle disputes over student IDs.
    #[command(subcommand)]
    Student(StudentCommand),
    /// Volunteers' check-in links: one per activity and gate, expiring, revocable.
    #[command(subcommand)]
    CheckinLink(checkin_link::CheckinLinkCommand),
    /// The notifications pushed to students.
    #[command(subcommand)]
    Notify(NotifyCommand),
    /// Lotteries (抽签): check a draw.
    #[command(subcommand)]
    Lottery(lottery::LotteryCommand),
    /// Guest tickets (嘉宾票): issue one outside the booking window, or revoke one.
    #[command(subcommand)]
    Ticket(ticket::TicketCommand),
    /// Send a short message to every holder of a live ticket of an activity (through the notification queue).
    Message {
        /// The activity's key.
        key: String,
        /// The message (at most 300 characters).
        #[arg(long)]
        text: String,
        /// Also to the students on the waiting list.
        #[arg(long)]
        waiting: bool,
    },
    /// Write a backup of the database (a pg_dump custom-format archive); a partial file never has the final name.
    Backup {
        /// The file to write (default: BACKUP_DIR/wechat-ticket-YYYYMMDD-HHMMSS.dump).
        #[arg(short = 'o', long = "output")]
        output: Option<std::path::PathBuf>,
    },
    /// Restore a backup into an empty database (stop `serve` first).
    Restore {
        /// A file written by `backup` or the nightly backup.
        file: std::path::PathBuf,
        /// Replace a database that is not empty (what is there is first saved to BACKUP_DIR).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum NotifyCommand {
    /// Print the queue depth and the most recent notifications with their states.
    Status {
        /// How many recent notifications to list.
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
}

#[derive(Subcommand, Debug)]
pub enum StudentCommand {
    /// Release a student ID from the WeChat account bound to it (its tickets stay with the student ID).
    Unbind { student_id: String },
}

#[derive(Subcommand, Debug)]
// Parsed once from the command line: the size of `Create` costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum ActivityCommand {
    /// Create an activity. Times are RFC 3339 or `YYYY-MM-DD HH:MM` in TIMEZONE.
    Create {
        /// Short key students type: `抢票 <key>`.
        key: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        place: String,
        /// Places; may be left out with --seating zone or seat (the zones or the hall decide it).
        #[arg(long)]
        capacity: Option<i32>,
        #[arg(long)]
        book_start: String,
        #[arg(long)]
        book_end: String,
        #[arg(long)]
        start: String,
        #[arg(long)]
        end: String,
        #[arg(long, default_value = "")]
        description: String,
        /// Publish at once (otherwise it stays a draft).
        #[arg(long)]
        publish: bool,
        /// A live QR: the ticket shows a code that changes every 30 s, so a screenshot gets no one in.
        #[arg(long)]
        live_qr: bool,
        /// `rush`: first come, first served; `lottery`: students register and a draw at book-end gives the places.
        #[arg(long, value_enum, default_value_t = ModeArg::Rush)]
        mode: ModeArg,
        /// `none` (standing room), `zone` (with --zone) or `seat` (with --hall).
        #[arg(long, value_enum, default_value_t = SeatingArg::None)]
        seating: SeatingArg,
        /// A zone and its quota, e.g. "A区:300"; repeat for each zone.
        #[arg(long = "zone")]
        zones: Vec<crate::booking::seats::ZoneQuota>,
        /// The hall (from `hall import`) whose seats are sold.
        #[arg(long)]
        hall: Option<String>,
        /// Choices close here (default: at --book-end); then the sweep places the rest.
        #[arg(long)]
        seat_deadline: Option<String>,
        /// The team it belongs to (default: the default team).
        #[arg(long)]
        team: Option<String>,
    },
    /// One line per activity: id, key, status, booked/capacity, name.
    List,
    /// Publish a draft.
    Publish { key: String },
    /// Hold seats of a seat activity back (guests, a camera platform): never offered nor assigned.
    BlockSeats {
        key: String,
        /// Seats as `zone-row-seat`, e.g. A区-3-12.
        #[arg(required = true)]
        seats: Vec<String>,
    },
    /// Offer blocked seats again.
    UnblockSeats {
        key: String,
        #[arg(required = true)]
        seats: Vec<String>,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeatingArg {
    None,
    Zone,
    Seat,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModeArg {
    Rush,
    Lottery,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    Csv,
    Xlsx,
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Add an account (or set a new password); the password is read from stdin or a prompt.
    Add {
        username: String,
        /// `admin` (everything) or `organizer` (their teams' activities only). Default: a new
        /// account is an admin; an existing one keeps its role.
        #[arg(long, value_enum)]
        role: Option<RoleArg>,
        /// A team the account belongs to (repeat for several); replaces its teams. An organizer needs one.
        #[arg(long = "team")]
        teams: Vec<String>,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleArg {
    Admin,
    Organizer,
}

#[derive(Subcommand, Debug)]
pub enum TeamCommand {
    /// Add a team.
    Add { name: String },
    /// One line per team: id, name, activities, members.
    List,
}

#[derive(Subcommand, Debug)]
pub enum RosterCommand {
    /// Import `student_id,name` rows from a CSV file.
    Import { file: std::path::PathBuf },
}

pub async fn run() -> Result<(), AppError> {
    let cli = Cli::parse();
    crate::install_crypto_provider();
    let config = Config::from_env()?;
    match cli.command.unwrap_or(Command::Serve { demo: false }) {
        Command::Serve { demo } => serve(config, demo).await,
        Command::Migrate => {
            let (pool, _cluster) = db::open(&config).await?;
            db::migrate(&pool).await?;
            pool.close().await;
            println!("migrations applied");
            Ok(())
        }
        // A block changes the capacity, which may promote the waiting list: it needs the notifier.
        Command::Activity(ActivityCommand::BlockSeats { key, seats }) => {
            seats::change_blocks(&config, &key, &seats, seats::Change::Block).await
        }
        Command::Activity(ActivityCommand::UnblockSeats { key, seats }) => {
            seats::change_blocks(&config, &key, &seats, seats::Change::Unblock).await
        }
        Command::Activity(command) => {
            let tz = config.timezone;
            with_database(&config, move |conn| Box::pin(activity(tz, conn, command))).await
        }
        Command::Admin(AdminCommand::Add { username, role, teams }) => {
            let password = read_password()?;
            let role = role.map(|r| match r {
                RoleArg::Admin => accounts::Role::Admin,
                RoleArg::Organizer => accounts::Role::Organizer,
            });
            with_database(&config, move |conn| {
                Box::pin(async move {
                    let team_ids = crate::auth::teams::ids_of(conn, &teams).await?;
                    let admin = accounts::add_with(conn, &username, &password, role, &team_ids).await?;
                    let detail = if teams.is_empty() {
                        admin.username.clone()
                    } else {
                        format!("{} {} {}", admin.username, admin.role.as_str(), teams.join(","))
                    };
                    audit::record(conn, "shell", "添加管理员", &detail).await?;
                    println!("{} `{}` can now log in at /admin", admin.role.as_str(), admin.username);
                    Ok(())
                })
            })
            .await
        }
        Command::Team(command) => with_database(&config, move |conn| Box::pin(team(conn, command))).await,
        Command::Export { key, format, output, include_test } => {
            let tz = config.timezone;
            with_database(&config, move |conn| {
                Box::pin(async move {
                    let activity = activities::by_key(conn, &key)
                        .await?
                        .ok_or_else(|| AppError::Invalid(format!("no activity with key `{key}`")))?;
                    let rows = export::rows(conn, activity.id, include_test).await?;
                    let bytes = match format {
                        ExportFormat::Csv => export::csv(&rows, tz)?,
                        ExportFormat::Xlsx => export::xlsx(&rows, tz, &activity.name)?,
                    };
                    match output {
                        Some(path) => {
                            std::fs::write(&path, &bytes)
                                .map_err(|e| AppError::Invalid(format!("cannot write {}: {e}", path.display())))?;
                            eprintln!("{} rows written to {}", rows.len(), path.display());
                        }
                        None => {
                            use std::io::Write;
                            std::io::stdout().write_all(&bytes)?;
                        }
                    }
                    Ok(())
                })
            })
            .await
        }
        Command::Menu(command) => menu::run(&config, command).await,
        Command::CheckinLink(command) => checkin_link::run(&config, command).await,
        Command::Lottery(command) => lottery::run(&config, command).await,
        Command::Ticket(command) => ticket::run(&config, command).await,
        Command::Message { key, text, waiting } => message::run(&config, &key, &text, waiting).await,
        Command::Hall(command) => hall::run(&config, command).await,
        Command::Backup { output } => backup::backup(&config, output).await,
        Command::Restore { file, force } => backup::restore(&config, file, force).await,
        Command::Notify(NotifyCommand::Status { limit }) => {
            let (pool, cluster) = db::open(&config).await?;
            db::migrate(&pool).await?;
            let result = notify_status(&pool, config.timezone, limit).await;
            pool.close().await;
            drop(cluster);
            result
        }
        Command::Student(StudentCommand::Unbind { student_id }) => {
            with_database(&config, move |conn| {
                Box::pin(async move {
                    let holder = students::release(conn, &student_id, "shell")
                        .await?
                        .ok_or_else(|| AppError::Invalid(format!("student ID `{student_id}` is not bound")))?;
                    println!("student ID {} released from WeChat account {}", holder.student_id, holder.openid);
                    Ok(())
                })
            })
            .await
        }
        Command::Roster(RosterCommand::Import { file }) => {
            let bytes =
                std::fs::read(&file).map_err(|e| AppError::Invalid(format!("cannot read {}: {e}", file.display())))?;
            let rows = crate::roster::parse(&bytes)?;
            with_database(&config, |conn| {
                Box::pin(async move {
                    let written = students::import_roster(conn, &rows).await?;
                    println!("imported {written} roster rows; roster now has {}", students::roster_count(conn).await?);
                    Ok(())
                })
            })
            .await
        }
    }
}

/// The password from stdin: one line, typed at a prompt (not echoed) or piped in.
fn read_password() -> Result<String, AppError> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    if terminal {
        eprint!("password (input hidden): ");
        let _ = std::io::stderr().flush();
        set_echo(false);
    }
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if terminal {
        set_echo(true);
        eprintln!();
    }
    read?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        return Err(AppError::Invalid("no password given on stdin".into()));
    }
    Ok(password)
}

/// Turns terminal echo off while a password is typed.
fn set_echo(on: bool) {
    // SAFETY: tcgetattr/tcsetattr on stdin with a zeroed termios they fill in.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(libc::STDIN_FILENO, &mut t) == 0 {
            if on {
                t.c_lflag |= libc::ECHO;
            } else {
                t.c_lflag &= !libc::ECHO;
            }
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &t);
        }
    }
}

type Job<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), AppError>> + Send + 'a>>;

/// Runs a shell command's work on the same database `serve` uses, migrated.
async fn with_database<F>(config: &Config, work: F) -> Result<(), AppError>
where
    F: for<'c> FnOnce(&'c mut sqlx::PgConnection) -> Job<'c>,
{
    let (pool, cluster) = db::open(config).await?;
    db::migrate(&pool).await?;
    let result = async {
        let mut tx = pool.begin().await?;
        work(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }
    .await;
    pool.close().await;
    drop(cluster);
    result
}

async fn activity(
    tz: &'static time_tz::Tz,
    conn: &mut sqlx::PgConnection,
    command: ActivityCommand,
) -> Result<(), AppError> {
    match command {
        ActivityCommand::Create {
            key,
            name,
            place,
            capacity,
            book_start,
            book_end,
            start,
            end,
            description,
            publish,
            live_qr,
            mode,
            seating,
            zones,
            hall,
            seat_deadline,
            team,
        } => {
            use crate::booking::seats::{self, Plan};
            let team = match team {
                Some(name) => crate::auth::teams::ids_of(conn, &[name]).await?[0],
                None => crate::auth::teams::DEFAULT_TEAM,
            };
            let plan = match (seating, zones.is_empty(), &hall) {
                (SeatingArg::None, true, None) => Plan::None,
                (SeatingArg::Zone, _, None) => Plan::Zones(zones),
                (SeatingArg::Seat, true, Some(name)) => Plan::Hall(name.clone()),
                (SeatingArg::Seat, true, None) => {
                    return Err(AppError::Invalid("--seating seat needs --hall <name>".into()));
                }
                _ => {
                    return Err(AppError::Invalid(
                        "--zone goes with --seating zone, --hall with --seating seat".into(),
                    ));
                }
            };
            if plan == Plan::None && seat_deadline.is_some() {
                return Err(AppError::Invalid("--seat-deadline needs --seating zone or seat".into()));
            }
            let time = |flag: &str, text: &str| {
                local_time::read(text, tz).map_err(|refused| {
                    let why = match refused {
                        local_time::Refused::Unreadable => "use RFC 3339 or `YYYY-MM-DD HH:MM`".to_string(),
                        local_time::Refused::OutOfRange => {
                            format!("the year must be {} to {}", local_time::YEARS.start(), local_time::YEARS.end())
                        }
                    };
                    AppError::Invalid(format!("--{flag} `{text}`: {why}"))
                })
            };
            let new = NewActivity {
                key: key.to_ascii_lowercase(),
                name,
                place,
                description,
                book_start: time("book-start", &book_start)?,
                book_end: time("book-end", &book_end)?,
                start_at: time("start", &start)?,
                end_at: time("end", &end)?,
                capacity: 0,
                publish,
                mode: match mode {
                    ModeArg::Rush => crate::booking::lottery::Mode::Rush,
                    ModeArg::Lottery => crate::booking::lottery::Mode::Lottery,
                },
            };
            let mut new = new;
            let deadline = match &seat_deadline {
                Some(text) => Some(time("seat-deadline", text)?),
                None => None,
            };
            if let Some(at) = deadline
                && (at <= new.book_start || at >= new.start_at)
            {
                return Err(AppError::Invalid("--seat-deadline must be after --book-start and before --start".into()));
            }
            // Created with its live-QR setting and its seating, or not at all.
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            new.capacity = seats::capacity_of(&mut tx, &plan, capacity).await?;
            let a = activities::create(&mut tx, &new).await?;
            activities::set_live_qr(&mut tx, a.id, live_qr).await?;
            activities::set_team(&mut tx, a.id, team).await?;
            seats::set_up(&mut tx, a.id, &plan, deadline).await?;
            tx.commit().await?;
            let mode = if a.mode == crate::booking::lottery::Mode::Lottery { "\tlottery" } else { "" };
            println!("{}\t{}\t{}\tcreated{}{mode}", a.id, a.key, a.status, if live_qr { "\tlive QR" } else { "" });
        }
        ActivityCommand::List => {
            // Booked as the admin list counts it: the simulator's test tickets left out.
            for s in activities::summaries(conn, false, None).await? {
                let a = &s.activity;
                println!(
                    "{}\t{}\t{}\t{}/{}\t{}\t{}",
                    a.id,
                    a.key,
                    a.status,
                    s.booked,
                    a.capacity,
                    local_time::full(a.book_start, tz),
                    a.name
                );
            }
        }
        ActivityCommand::BlockSeats { .. } | ActivityCommand::UnblockSeats { .. } => {
            return Err(AppError::Internal("seat blocks are changed by `cli::seats`".into()));
        }
        ActivityCommand::Publish { key } => {
            let found = activities::by_key(conn, &key).await?;
            let found = found.ok_or_else(|| AppError::Invalid(format!("no activity with key `{key}`")))?;
            let a = activities::publish(conn, found.id).await?;
            println!("{}\t{}\t{}", a.id, a.key, a.status);
        }
    }
    Ok(())
}

async fn team(conn: &mut sqlx::PgConnection, command: TeamCommand) -> Result<(), AppError> {
    use crate::auth::teams;
    match command {
        TeamCommand::Add { name } => {
            let team = teams::add(conn, &name).await?;
            audit::record(conn, "shell", "添加团队", &team.name).await?;
            println!("{}\t{}\tadded", team.id, team.name);
        }
        TeamCommand::List => {
            for (id, name, activities, members) in teams::with_counts(conn).await? {
                println!("{id}\t{name}\t{activities} activities\t{members} members");
            }
        }
    }
    Ok(())
}

async fn notify_status(pool: &sqlx::PgPool, tz: &'static time_tz::Tz, limit: i64) -> Result<(), AppError> {
    use crate::notify::notifications;
    let (queued, jobs) = notifications::depth(pool).await?;
    println!("queued notifications: {queued}");
    println!("jobs waiting or running: {jobs}");
    for n in notifications::recent(pool, limit.clamp(1, 1000), None).await? {
        println!(
            "{}\t{}\t{}\t{}\t{}",
            local_time::precise(n.updated_at, tz),
            n.kind.label(),
            n.recipient,
            n.channel.map_or("-", |c| c.label()),
            n.state_text()
        );
    }
    Ok(())
}

async fn serve(config: Config, demo: bool) -> Result<(), AppError> {
    tracing::info!(?config, "starting");
    let (pool, cluster) = db::open(&config).await?;
    db::migrate(&pool).await?;
    let state = AppState::new(config, pool.clone()).await?;
    if demo {
        let mut tx = pool.begin().await?;
        demo::seed(&mut tx, &state.notifier, state.config.timezone).await?;
        tx.commit().await?;
    }
    let app = Application::build(state.clone()).await?;
    let supervisor = cluster.as_ref().map(|c| db::supervisor::spawn(c, pool.clone(), state.database.clone()));
    let notify_workers = state.notifier.start().await?;
    let clock = crate::schedule::start(&state.notifier).await?;
    let metrics = tokio_util::sync::CancellationToken::new();
    if let Some(listen) = state.config.metrics_listen {
        let handle = crate::meters::install()?;
        let bound = crate::web::metrics_listener::serve(listen, handle, pool.clone(), metrics.clone()).await?;
        println!("metrics on http://{bound}/metrics");
    }
    let addr = app.local_addr();
    let mode = state.config.message_mode.name();
    if state.config.wechat_token.is_none() {
        // Only the development token is printed: a real WECHAT_TOKEN is a secret.
        println!("development WeChat token: {}", state.wechat_token);
    }
    println!("wechat-ticket listening on http://{addr}");
    println!("WeChat server URL: {}/wechat  (message mode: {mode})", state.config.public_url);
    let result = app.run_until(crate::app::shutdown_signal()).await;
    metrics.cancel();
    clock.stop().await;
    notify_workers.stop().await;
    // Before the cluster stops, or the supervisor would start it again.
    if let Some(supervisor) = supervisor {
        supervisor.stop().await;
    }
    pool.close().await;
    drop(cluster);
    result
}
