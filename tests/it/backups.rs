//! Backups that restore (issue 23): `backup` taken in the middle of a rush,
//! the database wiped, `restore`, and everything committed before the backup
//! is there and served; `restore` refusing a database that holds something;
//! a failed backup never leaving a file under the final name; the nightly
//! backup taken once by two instances, pruned, and reported by `/healthz`.
//! Real PostgreSQL, real `pg_dump` / `pg_restore`, the real binary.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use futures::future::join_all;
use sqlx::{ConnectOptions, Connection, PgPool};
use time::OffsetDateTime;
use wechat_ticket::backups::nightly;

use crate::{
    common::{
        Settings, TestApp,
        admin::PASSWORD,
        fixtures::{Window, ticket_code},
        spawn_app, spawn_app_on,
        wx::{self, Reply},
    },
    lottery::{lottery_activity, say},
};

/// A directory of its own under the system's temp dir, removed at the end.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        let n: u64 = rand::random();
        let dir = std::env::temp_dir().join(format!("wt-backups-{what}-{}-{n:x}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn files(&self) -> BTreeSet<String> {
        std::fs::read_dir(&self.0).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The binary's command against `url`, with extra variables (BACKUP_DIR, PG_BIN…).
fn cli(url: &str, vars: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_wechat-ticket"));
    command.env("DATABASE_URL", url).env_remove("SECRET_KEY").env_remove("PG_BIN").args(args);
    for (name, value) in vars {
        command.env(name, value);
    }
    command.output().unwrap()
}

fn said(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Everything that must survive, read straight from the database.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Kept {
    /// code → (student ID, status)
    tickets: BTreeMap<String, (String, String)>,
    sessions: BTreeSet<String>,
    /// image id → bytes
    posters: BTreeMap<String, Vec<u8>>,
    /// (activity, eid, rank, ticket)
    draws: BTreeSet<(i64, String, Option<i32>, Option<i64>)>,
    /// (id, actor, action, detail)
    audit: BTreeSet<(i64, String, String, String)>,
}

async fn kept(pool: &PgPool) -> Kept {
    let tickets: Vec<(String, String, String)> =
        sqlx::query_as("SELECT code, student_id, status FROM tickets").fetch_all(pool).await.unwrap();
    let sessions: Vec<String> = sqlx::query_scalar("SELECT id FROM admin_sessions").fetch_all(pool).await.unwrap();
    let posters: Vec<(String, Vec<u8>)> =
        sqlx::query_as("SELECT id::text, bytes FROM images").fetch_all(pool).await.unwrap();
    let draws: Vec<(i64, String, Option<i32>, Option<i64>)> =
        sqlx::query_as("SELECT activity_id, eid, rank, ticket_id FROM lottery_entries").fetch_all(pool).await.unwrap();
    let audit: Vec<(i64, String, String, String)> =
        sqlx::query_as("SELECT id, actor, action, detail FROM audit_log").fetch_all(pool).await.unwrap();
    Kept {
        tickets: tickets.into_iter().map(|(c, s, st)| (c, (s, st))).collect(),
        sessions: sessions.into_iter().collect(),
        posters: posters.into_iter().collect(),
        draws: draws.into_iter().collect(),
        audit: audit.into_iter().collect(),
    }
}

/// Logs in with a client that keeps no cookies; returns the session cookie (`name=value`).
async fn session_cookie(app: &TestApp, username: &str) -> String {
    app.add_admin(username).await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let resp = http
        .post(app.url("/admin/login"))
        .form(&[("username", username), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let set = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    set.split(';').next().unwrap().to_string()
}

async fn admin_page(base: &str, cookie: &str) -> reqwest::StatusCode {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    http.get(format!("{base}/admin")).header("cookie", cookie).send().await.unwrap().status()
}

/// Stops the app and closes its pool: nothing of it uses the database any more.
async fn stop(app: TestApp) -> sqlx::postgres::PgConnectOptions {
    let (db, pool) = (app.db.clone(), app.pool.clone());
    app.stop().await;
    pool.close().await;
    db
}

/// Drops the test's database (closing every session on it) and creates it again, empty.
async fn wipe(db: &sqlx::postgres::PgConnectOptions) {
    let name = db.get_database().unwrap().to_string();
    let mut server = db.clone().database("postgres").connect().await.unwrap();
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)")).execute(&mut server).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name} TEMPLATE template0")).execute(&mut server).await.unwrap();
    server.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_during_a_rush_restores_everything_committed_before_it() {
    let app = spawn_app().await;
    let dir = TempDir::new("rush");
    let url = app.database_url();

    // Before the backup: an admin's session, a poster, a drawn lottery, audit entries.
    let cookie = session_cookie(&app, "keeper").await;
    let csrf = app.login_admin("uploader").await;
    let concert = app.activity("concert", 5, Window::Open).await;
    let poster = crate::common::browser::png(40, 30);
    let form = reqwest::multipart::Form::new().text("csrf", csrf).part(
        "poster",
        reqwest::multipart::Part::bytes(poster.clone()).file_name("p.png").mime_str("image/png").unwrap(),
    );
    let resp = app.http.post(app.url(&format!("/admin/activities/{}/poster", concert.id))).multipart(form).send().await;
    assert_eq!(resp.unwrap().status(), 303);
    let gala = lottery_activity(&app, "gala", 2).await;
    for openid in app.bound_students(90, 4).await {
        assert!(say(&app, &openid, "报名 gala").await.contains("已报名"));
    }
    app.close_booking(gala.id).await;
    let mut tx = app.pool.begin().await.unwrap();
    wechat_ticket::booking::lottery::draw(&mut tx, &app.state.notifier, gala.id).await.unwrap();
    tx.commit().await.unwrap();
    let draw_json = app.get(&format!("/activities/{}/draw.json", gala.id)).await.text().await.unwrap();
    let early = app.bound_students(91, 3).await;
    let mut early_codes = Vec::new();
    for openid in &early {
        match app.say(&wx::text(openid, "抢票 concert")).await {
            Reply::News { url, .. } => early_codes.push(ticket_code(&url)),
            other => panic!("{other:?}"),
        }
    }
    let before = kept(&app.pool).await;
    assert!(!before.sessions.is_empty() && before.posters.len() == 1 && before.draws.len() == 4);
    assert!(before.audit.len() >= 2, "{:?}", before.audit);

    // The rush, and the backup taken in the middle of it.
    let rush = app.activity("rush", 400, Window::Open).await;
    let students = app.bound_students(92, 800).await;
    let file = dir.0.join("during-the-rush.dump");
    let sends = students.iter().map(|openid| {
        let xml = wx::click(openid, &format!("BOOK_{}", rush.id));
        let app = &app;
        async move { app.post_wechat(&xml).await }
    });
    let backup = {
        let (url, file, pool) = (url.clone(), file.clone(), app.pool.clone());
        async move {
            // Once the rush is under way.
            while sqlx::query_scalar::<_, i64>("SELECT count(*) FROM tickets").fetch_one(&pool).await.unwrap() < 20 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let file = file.to_str().unwrap().to_string();
            tokio::task::spawn_blocking(move || cli(&url, &[], &["backup", "-o", &file])).await.unwrap()
        }
    };
    let (replies, out) = tokio::join!(join_all(sends), backup);
    assert!(out.status.success(), "{}", said(&out));
    assert!(said(&out).contains("backup written"), "{}", said(&out));
    assert!(replies.iter().all(|(status, _)| *status == 200));
    let after = kept(&app.pool).await;
    assert_eq!(after.tickets.len(), before.tickets.len() + 400, "the rush sold out");
    let logged: (String, String, i64) =
        sqlx::query_as("SELECT kind, outcome, bytes FROM backups").fetch_one(&app.pool).await.unwrap();
    assert_eq!((logged.0.as_str(), logged.1.as_str()), ("manual", "ok"));
    assert_eq!(logged.2 as u64, std::fs::metadata(&file).unwrap().len());
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "a backup holds secrets: its owner's only");

    // The machine is lost: the database goes, an empty one takes its place.
    let ticket_page_before = app.get(&format!("/tickets/{}", early_codes[0])).await.text().await.unwrap();
    let db = stop(app).await;
    wipe(&db).await;

    let out = cli(&url, &[], &["restore", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", said(&out));
    assert!(said(&out).contains(&format!("restored {}", file.display())), "{}", said(&out));

    let restored = spawn_app_on(db, Settings::default()).await;
    let now = kept(&restored.pool).await;
    // Everything committed before the backup began is there, as it was.
    for (code, ticket) in &before.tickets {
        assert_eq!(now.tickets.get(code), Some(ticket), "ticket {code}");
    }
    assert!(before.sessions.is_subset(&now.sessions));
    assert_eq!(now.posters, before.posters);
    assert_eq!(now.draws, before.draws);
    assert!(before.audit.is_subset(&now.audit));
    // The rush as the backup's one moment saw it: only real tickets, and the
    // places add up (a torn copy would lose or invent some).
    assert!(now.tickets.iter().all(|(code, t)| after.tickets.get(code) == Some(t)), "only real tickets");
    let rushed = now.tickets.len() - before.tickets.len();
    assert!(rushed <= 400, "{rushed}");
    let free: i64 = sqlx::query_scalar("SELECT sum(remaining)::bigint FROM activity_slots WHERE activity_id = $1")
        .bind(rush.id)
        .fetch_one(&restored.pool)
        .await
        .unwrap();
    assert_eq!(restored.live_tickets(rush.id).await + free, 400, "every place a ticket or free");
    assert!(restored.count("SELECT count(*) FROM backups").await == 0, "the log stays with the machine");

    // The restored server serves it all.
    let page = restored.get(&format!("/tickets/{}", early_codes[0])).await;
    assert_eq!(page.status(), 200);
    // As it was, but for the QR (it draws the ticket's URL, and this server has another port).
    let details = |page: &str| page.split("<dl>").nth(1).and_then(|d| d.split("</dl>").next()).unwrap().to_string();
    assert_eq!(details(&page.text().await.unwrap()), details(&ticket_page_before));
    assert_eq!(admin_page(&restored.base, &cookie).await, 200, "the admin is still logged in");
    let image = restored.get(&format!("/images/{}", before.posters.keys().next().unwrap())).await;
    assert_eq!(image.bytes().await.unwrap().as_ref(), poster.as_slice());
    let draw_now = restored.get(&format!("/activities/{}/draw.json", gala.id)).await.text().await.unwrap();
    assert_eq!(draw_now, draw_json);
    // The migrations agree with the schema that came back.
    let out = restored.cli(&["migrate"]);
    assert!(out.status.success(), "{}", said(&out));
    // And it keeps working: the next student books.
    let next = restored.bound_students(93, 1).await;
    assert!(matches!(restored.say(&wx::text(&next[0], "抢票 concert")).await, Reply::News { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_a_database_that_holds_something_and_force_replaces_it() {
    let app = spawn_app().await;
    let dir = TempDir::new("refuse");
    let backup_dir = dir.0.join("backups");
    let vars = [("BACKUP_DIR", backup_dir.to_str().unwrap())];
    let url = app.database_url();
    let a = app.activity("kept", 10, Window::Open).await;
    for openid in app.bound_students(94, 3).await {
        assert!(matches!(app.say(&wx::text(&openid, "抢票 kept")).await, Reply::News { .. }));
    }
    let file = dir.0.join("three.dump");
    let out = cli(&url, &vars, &["backup", "-o", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", said(&out));
    // Since the backup: two more tickets.
    for openid in app.bound_students(95, 2).await {
        assert!(matches!(app.say(&wx::text(&openid, "抢票 kept")).await, Reply::News { .. }));
    }

    // Not a backup at all: refused before anything is looked at.
    let junk = dir.0.join("junk.dump");
    std::fs::write(&junk, b"PGDMP but not really").unwrap();
    let out = cli(&url, &vars, &["restore", junk.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(said(&out).contains("not a readable backup"), "{}", said(&out));

    // Refused, saying what it would overwrite; nothing changes.
    let out = cli(&url, &vars, &["restore", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let refusal = said(&out);
    for words in ["not empty", "activities: 1", "tickets: 5", "bound students: 5", "--force"] {
        assert!(refusal.contains(words), "{words}: {refusal}");
    }
    assert_eq!(app.live_tickets(a.id).await, 5);
    assert!(!backup_dir.exists(), "nothing saved, nothing written");

    // Forced while the server still uses the database: refused, unchanged.
    let out = cli(&url, &vars, &["restore", "--force", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(said(&out).contains("stop `serve`"), "{}", said(&out));
    assert_eq!(app.live_tickets(a.id).await, 5);

    // With the server stopped, forced: what was there is saved, then replaced.
    let db = stop(app).await;
    let out = cli(&url, &vars, &["restore", "--force", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", said(&out));
    let saved: Vec<String> = std::fs::read_dir(&backup_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(saved.len(), 1, "{saved:?}");
    assert!(saved[0].starts_with("wechat-ticket-before-restore-"), "{saved:?}");
    assert!(said(&out).contains(&saved[0]), "{}", said(&out));
    let back = spawn_app_on(db, Settings::default()).await;
    assert_eq!(back.live_tickets(a.id).await, 3, "as the backup had it");
}

/// A `PG_BIN` whose `pg_dump` is `script` and whose `pg_restore` is the real one.
fn fake_tools(dir: &Path, script: &str) -> PathBuf {
    let bin = dir.join(format!("bin-{:x}", rand::random::<u32>()));
    std::fs::create_dir_all(&bin).unwrap();
    let real = wechat_ticket::db::local::find_programs(&["pg_ctl", "pg_dump", "pg_restore"]).unwrap().unwrap();
    std::os::unix::fs::symlink(real.join("pg_restore"), bin.join("pg_restore")).unwrap();
    let dump = bin.join("pg_dump");
    std::fs::write(&dump, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&dump, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    bin
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_backup_leaves_no_file_under_its_name_and_no_partial_file() {
    let app = spawn_app().await;
    app.activity("some", 10, Window::Open).await;
    let dir = TempDir::new("atomic");
    let url = app.database_url();
    let precious = dir.0.join("precious.dump");
    std::fs::write(&precious, b"last week's good backup").unwrap();

    for (why, script) in [
        ("fails half-way", "printf 'PGDMP half a dump'; echo 'pg_dump: error: connection lost' >&2; exit 1"),
        ("is killed half-way", "printf 'PGDMP half a dump'; kill -9 $$"),
        ("writes something that is no archive", "printf 'this is not a dump'; exit 0"),
    ] {
        let bin = fake_tools(&dir.0, script);
        for target in [&precious, &dir.0.join("new.dump")] {
            let out = cli(&url, &[("PG_BIN", bin.to_str().unwrap())], &["backup", "-o", target.to_str().unwrap()]);
            assert!(!out.status.success(), "{why}: {}", said(&out));
            assert!(said(&out).starts_with("wechat-ticket:"), "{why}: one clear line: {}", said(&out));
        }
        assert_eq!(std::fs::read(&precious).unwrap(), b"last week's good backup", "{why}: not clobbered");
        let files: BTreeSet<String> = dir.files().into_iter().filter(|f| !f.starts_with("bin-")).collect();
        assert_eq!(files, BTreeSet::from(["precious.dump".to_string()]), "{why}");
    }
    // A database that is not there: no file either.
    let gone = url.replacen(app.db.get_database().unwrap(), "wt_no_such_database", 1);
    let out = cli(&gone, &[], &["backup", "-o", dir.0.join("new.dump").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(!dir.0.join("new.dump").exists() && !dir.0.join("new.dump.partial").exists());

    // Each attempt is in the log, with why it failed.
    let failed: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT outcome, error FROM backups ORDER BY id").fetch_all(&app.pool).await.unwrap();
    assert_eq!(failed.len(), 6);
    assert!(failed.iter().all(|(outcome, error)| outcome == "failed" && error.is_some()), "{failed:?}");
    assert!(failed[0].1.as_deref().unwrap().contains("connection lost"), "{failed:?}");
    assert!(failed[4].1.as_deref().unwrap().contains("not a readable backup"), "{failed:?}");

    // And the real thing, to the same name: replaced whole.
    let out = cli(&url, &[], &["backup", "-o", precious.to_str().unwrap()]);
    assert!(out.status.success(), "{}", said(&out));
    assert!(std::fs::read(&precious).unwrap().starts_with(b"PGDMP"));
}

/// `BACKUP_AT` a few seconds from now, in the default TIMEZONE.
fn seconds_from_now(seconds: i64) -> String {
    use time_tz::OffsetDateTimeExt;
    let at = (OffsetDateTime::now_utc() + time::Duration::seconds(seconds))
        .to_timezone(time_tz::timezones::db::asia::SHANGHAI);
    format!("{:02}:{:02}:{:02}", at.hour(), at.minute(), at.second())
}

async fn health(app: &TestApp) -> String {
    let resp = app.get("/healthz").await;
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_take_the_nightly_backup_once_keep_the_newest_and_say_so() {
    let first = spawn_app().await;
    first.activity("nightly", 10, Window::Open).await;
    let dir = TempDir::new("nightly");
    let old = [
        "wechat-ticket-20200101-040000.dump",
        "wechat-ticket-20200102-040000.dump",
        "wechat-ticket-20200103-040000.dump",
    ];
    let foreign = ["notes.txt", "wechat-ticket-before-restore-20200101-000000.dump", "offsite-copy.dump"];
    for name in old.iter().chain(&foreign) {
        std::fs::write(dir.0.join(name), b"x").unwrap();
    }
    // Far enough ahead for both instances to start; the scheduler's cron has seconds.
    let at = seconds_from_now(6);
    let settings = Settings::default()
        .set("DATABASE_URL", &first.database_url())
        .set("BACKUP_DIR", dir.0.to_str().unwrap())
        .set("BACKUP_AT", &at)
        .set("BACKUP_KEEP", "2")
        .with_notify_workers();
    let one = spawn_app_on(first.db.clone(), settings.clone()).await;
    let two = spawn_app_on(first.db.clone(), settings).await;
    assert!(health(&one).await.contains(&format!("backup: none yet; nightly at {at} Asia/Shanghai")));

    let deadline = Instant::now() + Duration::from_secs(40);
    while first.count("SELECT count(*) FROM backups WHERE outcome <> 'running'").await == 0 {
        assert!(Instant::now() < deadline, "no nightly backup ran");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Time for a second one to show up, were there one.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rows: Vec<(String, String, String, Option<OffsetDateTime>)> =
        sqlx::query_as("SELECT kind, outcome, file, scheduled_for FROM backups").fetch_all(&first.pool).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let (kind, outcome, file, night) = &rows[0];
    assert_eq!((kind.as_str(), outcome.as_str()), ("nightly", "ok"), "{rows:?}");
    assert!(night.is_some());
    let written = Path::new(file).file_name().unwrap().to_string_lossy().into_owned();
    assert!(nightly::is_ours(&written), "{written}");
    assert!(std::fs::read(file).unwrap().starts_with(b"PGDMP"));
    // Two of ours kept (tonight's and the newest old one); the others' files untouched.
    let mut expected: BTreeSet<String> = foreign.iter().map(|f| f.to_string()).collect();
    expected.insert(written.clone());
    expected.insert(old[2].to_string());
    assert_eq!(dir.files(), expected);

    let said = health(&two).await;
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(lines[0], "ok");
    assert!(lines[1].starts_with("backup: last good ") && lines[1].ends_with(file.as_str()), "{said}");
    assert!(!said.contains("STALE"), "{said}");
    one.stop().await;
    two.stop().await;
}

#[tokio::test]
async fn two_runs_for_the_same_night_write_one_file() {
    let app = spawn_app().await;
    let dir = TempDir::new("once");
    let vars: std::collections::HashMap<&str, String> = [
        ("DATABASE_URL", app.database_url()),
        ("BACKUP_DIR", dir.0.display().to_string()),
        ("BACKUP_AT", "04:00".into()),
    ]
    .into();
    let config = wechat_ticket::Config::from_lookup(|k| vars.get(k).cloned()).unwrap();
    let now = OffsetDateTime::now_utc();
    let (a, b) = tokio::join!(
        nightly::run(&app.pool, &config, now),
        nightly::run(&app.pool, &config, now + time::Duration::seconds(1))
    );
    let outcomes = [a.unwrap(), b.unwrap()];
    let taken = outcomes.iter().filter(|n| matches!(n, nightly::Night::Taken { .. })).count();
    assert_eq!(taken, 1, "{outcomes:?}");
    assert!(outcomes.contains(&nightly::Night::AlreadyTaken));
    assert_eq!(dir.files().len(), 1, "{:?}", dir.files());
    // A failed night lets a retry take it; the retry is logged beside the failure.
    sqlx::query("UPDATE backups SET outcome = 'failed', error = 'disk full'").execute(&app.pool).await.unwrap();
    assert!(matches!(nightly::run(&app.pool, &config, now).await.unwrap(), nightly::Night::Taken { .. }));
    assert_eq!(app.count("SELECT count(*) FROM backups").await, 2);
    assert_eq!(nightly::run(&app.pool, &config, now).await.unwrap(), nightly::Night::AlreadyTaken);
}

#[tokio::test]
async fn healthz_flags_a_backup_older_than_two_days_and_the_last_failure() {
    let on = spawn_app_with_backups("04:00").await;
    let insert = |sql: &'static str| {
        let pool = on.pool.clone();
        async move { sqlx::query(sql).execute(&pool).await.unwrap() }
    };
    insert(
        "INSERT INTO backups (kind, scheduled_for, outcome, file, bytes, started_at, finished_at) VALUES \
         ('nightly', now() - interval '3 days', 'ok', '/srv/backups/wechat-ticket-old.dump', 10, \
          now() - interval '3 days 5 seconds', now() - interval '3 days')",
    )
    .await;
    let said = health(&on).await;
    assert!(said.starts_with("ok\nbackup: STALE (older than two days): last good "), "{said}");
    assert!(said.contains("3 days ago"), "{said}");

    insert(
        "INSERT INTO backups (kind, scheduled_for, outcome, file, error, started_at, finished_at) VALUES \
         ('nightly', now() - interval '1 day', 'failed', '/srv/backups/x.dump', 'pg_dump failed: disk full', \
          now() - interval '1 day', now() - interval '1 day')",
    )
    .await;
    let said = health(&on).await;
    assert!(said.contains("backup: last attempt failed at ") && said.contains("disk full"), "{said}");

    // A good one now: not stale any more.
    insert(
        "INSERT INTO backups (kind, outcome, file, bytes, finished_at) VALUES \
         ('manual', 'ok', '/srv/backups/by-hand.dump', 10, now())",
    )
    .await;
    let said = health(&on).await;
    assert!(!said.contains("STALE") && !said.contains("failed"), "{said}");
    assert!(said.contains("(0 min ago), /srv/backups/by-hand.dump"), "{said}");

    // With nightly backups off nothing is expected, so nothing is stale; a fresh install says it waits.
    let off = spawn_app_on(on.db.clone(), Settings::default()).await;
    sqlx::query("DELETE FROM backups WHERE kind = 'manual'").execute(&off.pool).await.unwrap();
    let said = health(&off).await;
    assert!(said.contains("last good") && !said.contains("STALE"), "{said}");
    let fresh = spawn_app_with_backups("04:00").await;
    assert_eq!(health(&fresh).await, "ok\nbackup: none yet; nightly at 04:00 Asia/Shanghai");
}

async fn spawn_app_with_backups(at: &str) -> TestApp {
    crate::common::spawn_app_with(Settings::default().set("BACKUP_AT", at)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_managed_cluster_is_backed_up_and_restored_into_a_fresh_data_dir() {
    let (one, two) = (TempDir::new("managed-one"), TempDir::new("managed-two"));
    let run = |data: &Path, args: &[&str]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_wechat-ticket"));
        command.env_remove("DATABASE_URL").env_remove("PG_BIN").env("DATA_DIR", data).args(args);
        let out = command.output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", said(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let times = ["--book-start", "2030-01-01 12:00", "--book-end", "2030-01-02 12:00", "--start", "2030-01-03 19:00"];
    let create =
        [&["activity", "create", "concert", "--name", "新年音乐会", "--place", "礼堂", "--capacity", "9"][..], &times]
            .concat();
    run(&one.0, &[&create[..], &["--end", "2030-01-03 21:00"]].concat());
    // No serve runs: the command starts the cluster for itself, and stops it after.
    let written = run(&one.0, &["backup"]);
    let backups: Vec<String> = std::fs::read_dir(one.0.join("backups"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert!(nightly::is_ours(&backups[0]) && written.contains(&backups[0]), "{written}");
    assert!(!one.0.join("postgres/postmaster.pid").exists(), "the command stopped the cluster it started");

    let file = one.0.join("backups").join(&backups[0]);
    run(&two.0, &["restore", file.to_str().unwrap()]);
    assert!(run(&two.0, &["activity", "list"]).contains("concert"));
    // Now it holds something: a second restore is refused.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wechat-ticket"))
        .env_remove("DATABASE_URL")
        .env("DATA_DIR", &two.0)
        .args(["restore", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(said(&out).contains("activities: 1"), "{}", said(&out));
}
