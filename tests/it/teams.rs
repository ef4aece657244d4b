//! Teams and roles (README "Teams and roles"): an organizer manages only their
//! teams' activities, and one layer checks that on every admin route — walked
//! here route by route, read from the source, so a route added later is
//! walked too.

use wechat_ticket::{
    auth::{
        accounts::{self, Role},
        teams,
    },
    booking::{activities, checkin_links},
};

use crate::{
    admin_console::activity_form,
    common::{
        TestApp,
        admin::{PASSWORD, csrf_in},
        fixtures::Window,
        spawn_app,
    },
};

/// A browser of its own (its own cookies), logged in as `username`; returns it
/// with the session's CSRF token.
pub(crate) async fn browser_of(app: &TestApp, username: &str) -> (reqwest::Client, String) {
    let http =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).cookie_store(true).build().unwrap();
    let resp = http
        .post(app.url("/admin/login"))
        .form(&[("username", username), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303, "{username} logs in");
    let page = http.get(app.url("/admin")).send().await.unwrap().text().await.unwrap();
    let csrf = csrf_in(&page).expect("a CSRF token");
    (http, csrf)
}

/// An organizer of these teams (made if missing), logged in.
pub(crate) async fn organizer(app: &TestApp, username: &str, team_names: &[&str]) -> (reqwest::Client, String) {
    let mut conn = app.pool.acquire().await.unwrap();
    let names: Vec<String> = team_names.iter().map(|n| n.to_string()).collect();
    let ids = teams::ids_of(&mut conn, &names).await.unwrap();
    accounts::add_with(&mut conn, username, PASSWORD, Some(Role::Organizer), &ids).await.unwrap();
    drop(conn);
    browser_of(app, username).await
}

pub(crate) async fn team(app: &TestApp, name: &str) -> i64 {
    teams::add(&mut app.pool.acquire().await.unwrap(), name).await.unwrap().id
}

pub(crate) async fn activity_in(app: &TestApp, key: &str, team_id: i64) -> wechat_ticket::booking::Activity {
    let a = app.activity(key, 10, Window::Open).await;
    activities::set_team(&mut app.pool.acquire().await.unwrap(), a.id, team_id).await.unwrap();
    a
}

/// Every row of every table, hashed per table: any change anywhere shows.
async fn snapshot(app: &TestApp) -> Vec<(String, String)> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' AND tablename NOT LIKE '\\_sqlx%' \
         ORDER BY tablename",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let mut out = Vec::new();
    for table in tables {
        let sql = format!("SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM \"{table}\" t");
        let hash: String = sqlx::query_scalar(&sql).fetch_one(&app.pool).await.unwrap();
        out.push((table, hash));
    }
    out
}

/// Every `.route("…"` path literal in the source files under `src/web/admin/`.
fn admin_routes() -> Vec<String> {
    fn walk(dir: &std::path::Path, found: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let source = std::fs::read_to_string(&path).unwrap();
                for (at, _) in source.match_indices(".route(") {
                    let rest = source[at + ".route(".len()..].trim_start();
                    if let Some(literal) = rest.strip_prefix('"') {
                        found.push(literal.split('"').next().unwrap().to_string());
                    }
                }
            }
        }
    }
    let mut found = Vec::new();
    walk(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/web/admin"), &mut found);
    found.sort();
    found.dedup();
    found
}

/// Routes an organizer may open whoever owns what (the handler keeps them to
/// their teams; the audit log's and the notifications' queries to their teams'
/// activities, tested in `team_scope`).
const ORGANIZER_ROUTES: [&str; 7] = [
    "/admin/login",
    "/admin/logout",
    "/admin",
    "/admin/activities/new",
    "/admin/activities",
    "/admin/audit",
    "/admin/notifications",
];

#[tokio::test]
async fn every_admin_route_refuses_an_organizer_of_another_team_and_changes_nothing() {
    let app = spawn_app().await;
    app.login_admin("root").await;
    let orchestra = team(&app, "交响乐团").await;
    let drama = team(&app, "话剧社").await;
    let theirs = activity_in(&app, "symphony", orchestra).await;
    activity_in(&app, "hamlet", drama).await;
    let mut conn = app.pool.acquire().await.unwrap();
    let link = checkin_links::create(&mut conn, &theirs, "东门", 12, "root").await.unwrap();
    let hall: i64 = sqlx::query_scalar("INSERT INTO halls (name) VALUES ('礼堂') RETURNING id")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    let root: i64 =
        sqlx::query_scalar("SELECT id FROM admin_users WHERE username = 'root'").fetch_one(&mut *conn).await.unwrap();
    drop(conn);
    let (http, csrf) = organizer(&app, "ophelia", &["话剧社"]).await;

    let routes = admin_routes();
    let walked: Vec<&String> =
        routes.iter().filter(|r| r.starts_with("/admin") && !ORGANIZER_ROUTES.contains(&r.as_str())).collect();
    assert!(walked.len() >= 25, "the walker found only {} admin routes: {routes:?}", walked.len());

    let orchestra_text = orchestra.to_string();
    let form: Vec<(&str, &str)> = vec![
        ("csrf", &csrf),
        ("key", "stolen"),
        ("name", "偷来的"),
        ("place", "礼堂"),
        ("capacity", "5"),
        ("gate", "西门"),
        ("hours", "12"),
        ("role", "admin"),
        ("team", &orchestra_text),
        ("username", "mallory"),
        ("password", "a long enough password"),
        ("student_id", "2020010001"),
        ("text", "hello"),
        ("blocked", "A区-1-1"),
        ("seat", "A区-1-2"),
        ("code", "x"),
    ];
    let before = snapshot(&app).await;
    let mut checked = 0;
    for route in walked {
        let names_an_activity = route.starts_with("/admin/activities/{") || route.starts_with("/admin/checkin-links/{");
        let param = if route.starts_with("/admin/activities/{") {
            theirs.id
        } else if route.starts_with("/admin/checkin-links/{") {
            link.id
        } else if route.starts_with("/admin/halls/{") {
            hall
        } else {
            root
        };
        // Every `{…}` segment, whatever its name.
        let mut path = String::new();
        for segment in route.split('/').skip(1) {
            path.push('/');
            if segment.starts_with('{') { path.push_str(&param.to_string()) } else { path.push_str(segment) }
        }
        let expected = if names_an_activity { 404 } else { 403 };
        let got = http.get(app.url(&path)).send().await.unwrap().status().as_u16();
        assert_eq!(got, expected, "GET {path}");
        let resp = http.post(app.url(&path)).form(&form).send().await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap();
        assert_eq!(status, expected, "POST {path}: {body}");
        if expected == 403 {
            assert!(body.contains("只有管理员"), "a plain sentence: {body}");
        }
        checked += 2;
    }
    // Creating an activity is an organizer's, but only for one of their teams.
    let mut create = activity_form(&csrf, "stolen", "5");
    create.push(("team", &orchestra_text));
    let resp = http.post(app.url("/admin/activities")).form(&create).send().await.unwrap();
    assert_eq!(resp.status(), 400, "another team's activity is not made");
    assert_eq!(snapshot(&app).await, before, "{checked} requests changed nothing");

    // The list and its counts are theirs only; another team's key is nowhere.
    let list = http.get(app.url("/admin")).send().await.unwrap().text().await.unwrap();
    assert!(list.contains("hamlet") && !list.contains("symphony"), "{list}");
    assert!(!list.contains("/admin/menu") && !list.contains("/admin/accounts"), "no admin-only links");
    // The landing page shows the account's secrets to admins only.
    let landing = http.get(app.url("/")).send().await.unwrap().text().await.unwrap();
    assert!(!landing.contains(crate::common::TOKEN), "no WeChat token for an organizer");
    assert!(app.get("/").await.text().await.unwrap().contains(crate::common::TOKEN), "the admin's page has it");
    let new_form = http.get(app.url("/admin/activities/new")).send().await.unwrap().text().await.unwrap();
    assert!(new_form.contains("话剧社") && !new_form.contains("交响乐团"), "the form offers only their teams");
}

#[tokio::test]
async fn an_organizer_manages_their_own_teams_activities_and_the_admin_sees_all() {
    let app = spawn_app().await;
    let admin_csrf = app.login_admin("root").await;
    let orchestra = team(&app, "交响乐团").await;
    let drama = team(&app, "话剧社").await;
    let symphony = activity_in(&app, "symphony", orchestra).await;
    let hamlet = activity_in(&app, "hamlet", drama).await;
    let (http, csrf) = organizer(&app, "ophelia", &["话剧社"]).await;

    // Their activity: page, edit, check-in, volunteer links, export.
    let page = http.get(app.url(&format!("/admin/activities/{}", hamlet.id))).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("话剧社"), "the page names the team");
    let checkin = http.get(app.url(&format!("/admin/activities/{}/checkin", hamlet.id))).send().await.unwrap();
    assert_eq!(checkin.status(), 200);
    let link = http
        .post(app.url(&format!("/admin/activities/{}/checkin-links", hamlet.id)))
        .form(&[("csrf", csrf.as_str()), ("gate", "北门"), ("hours", "6")])
        .send()
        .await
        .unwrap();
    assert_eq!(link.status(), 303, "a volunteer link for their own activity");
    let link_id: i64 = sqlx::query_scalar("SELECT id FROM checkin_links WHERE activity_id = $1")
        .bind(hamlet.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let revoke = http
        .post(app.url(&format!("/admin/checkin-links/{link_id}/revoke")))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), 303, "and revokes it");
    let export = http.get(app.url(&format!("/admin/activities/{}/export.csv", hamlet.id))).send().await.unwrap();
    assert_eq!(export.status(), 200);

    // A new activity lands in their team (the only one offered, so picked when none is sent).
    let resp =
        http.post(app.url("/admin/activities")).form(&activity_form(&csrf, "macbeth", "30")).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    let made = activities::by_key(&mut app.pool.acquire().await.unwrap(), "macbeth").await.unwrap().unwrap();
    assert_eq!(made.team_id, drama);

    // And edits it.
    let edit = activity_form(&csrf, "macbeth", "40");
    let resp = http.post(app.url(&format!("/admin/activities/{}", made.id))).form(&edit).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("已保存"));
    assert_eq!(activities::by_id(&mut app.pool.acquire().await.unwrap(), made.id).await.unwrap().unwrap().capacity, 40);

    // Another team's activity answers as a missing one.
    let missing = http.get(app.url("/admin/activities/999999")).send().await.unwrap();
    let other = http.get(app.url(&format!("/admin/activities/{}", symphony.id))).send().await.unwrap();
    assert_eq!((missing.status().as_u16(), other.status().as_u16()), (404, 404));
    assert_eq!(missing.text().await.unwrap(), other.text().await.unwrap(), "the same page");

    // The admin sees and opens everything; the list names each team.
    let list = app.get("/admin").await.text().await.unwrap();
    assert!(list.contains("symphony") && list.contains("hamlet") && list.contains("macbeth"));
    assert!(list.contains("交响乐团") && list.contains("话剧社"));
    assert_eq!(app.get(&format!("/admin/activities/{}", hamlet.id)).await.status(), 200);
    assert_eq!(app.get("/admin/menu").await.status(), 200);
    // The admin may make an activity for any team.
    let drama_text = drama.to_string();
    let mut create = activity_form(&admin_csrf, "lear", "30");
    create.push(("team", &drama_text));
    assert_eq!(app.admin_post("/admin/activities", &create).await.0, 303);
    let lear = activities::by_key(&mut app.pool.acquire().await.unwrap(), "lear").await.unwrap().unwrap();
    assert_eq!(lear.team_id, drama);
    // A change of teams applies to the open session at once.
    let page = http.get(app.url(&format!("/admin/activities/{}", symphony.id))).send().await.unwrap();
    assert_eq!(page.status(), 404);
    let ophelia: i64 =
        sqlx::query_scalar("SELECT id FROM admin_users WHERE username = 'ophelia'").fetch_one(&app.pool).await.unwrap();
    let orchestra_text = orchestra.to_string();
    let change =
        [("csrf", admin_csrf.as_str()), ("role", "organizer"), ("team", &drama_text), ("team", &orchestra_text)];
    assert_eq!(app.admin_post(&format!("/admin/accounts/{ophelia}"), &change).await.0, 303);
    let page = http.get(app.url(&format!("/admin/activities/{}", symphony.id))).send().await.unwrap();
    assert_eq!(page.status(), 200);
}

#[tokio::test]
async fn the_accounts_page_adds_changes_and_disables_accounts_and_a_disabled_session_ends_at_once() {
    let app = spawn_app().await;
    let csrf = app.login_admin("root").await;
    let drama = team(&app, "话剧社").await.to_string();
    let page = app.get("/admin/accounts").await.text().await.unwrap();
    assert!(page.contains("root") && page.contains("管理员") && page.contains("话剧社"));

    // An organizer needs a team; with one they are added, and audited.
    let add = |team: Option<&'static str>| {
        let mut form = vec![
            ("csrf", csrf.clone()),
            ("username", "ophelia".to_string()),
            ("password", PASSWORD.to_string()),
            ("role", "organizer".to_string()),
        ];
        if let Some(t) = team {
            form.push(("team", t.to_string()));
        }
        form
    };
    let (status, body) = app.admin_post("/admin/accounts", &pairs(&add(None))).await;
    assert_eq!(status, 400);
    assert!(body.contains("至少要属于一个团队"), "{body}");
    let mut crafted = add(None);
    crafted.push(("team", "999999".to_string()));
    let (status, body) = app.admin_post("/admin/accounts", &pairs(&crafted)).await;
    assert_eq!(status, 400, "a team that does not exist is no team: {body}");
    assert_eq!(app.count("SELECT count(*) FROM admin_users WHERE username = 'ophelia'").await, 0);
    let mut form = add(None);
    form.push(("team", drama.clone()));
    assert_eq!(app.admin_post("/admin/accounts", &pairs(&form)).await.0, 303);
    assert_eq!(app.count("SELECT count(*) FROM audit_log WHERE action = '添加账号'").await, 1);

    let (http, _) = browser_of(&app, "ophelia").await;
    assert_eq!(http.get(app.url("/admin")).send().await.unwrap().status(), 200);
    assert_eq!(http.get(app.url("/admin/accounts")).send().await.unwrap().status(), 403);

    // Disabled: the open session is out at once, and the password no longer works.
    let ophelia: i64 =
        sqlx::query_scalar("SELECT id FROM admin_users WHERE username = 'ophelia'").fetch_one(&app.pool).await.unwrap();
    let (status, _) = app.admin_post(&format!("/admin/accounts/{ophelia}/disable"), &[("csrf", &csrf)]).await;
    assert_eq!(status, 303);
    let resp = http.get(app.url("/admin")).send().await.unwrap();
    assert_eq!(resp.status(), 303, "back to the login page");
    let login = http
        .post(app.url("/admin/login"))
        .form(&[("username", "ophelia"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 401);
    assert!(app.get("/admin/accounts").await.text().await.unwrap().contains("已停用"));

    // Even a session row left behind (a race with the disable) opens nothing.
    let (http, _) = browser_of(&app, "root").await;
    sqlx::query("UPDATE admin_users SET disabled_at = now() WHERE username = 'root'").execute(&app.pool).await.unwrap();
    assert_eq!(http.get(app.url("/admin")).send().await.unwrap().status(), 303);

    // An admin cannot disable or demote themselves (no one would be left to undo it).
    let csrf = app.login_admin("second").await;
    let second: i64 =
        sqlx::query_scalar("SELECT id FROM admin_users WHERE username = 'second'").fetch_one(&app.pool).await.unwrap();
    let (status, _) = app.admin_post(&format!("/admin/accounts/{second}/disable"), &[("csrf", &csrf)]).await;
    assert_eq!(status, 400);
    let (status, _) = app
        .admin_post(&format!("/admin/accounts/{second}"), &[("csrf", &csrf), ("role", "organizer"), ("team", &drama)])
        .await;
    assert_eq!(status, 400);
    assert_eq!(app.count("SELECT count(*) FROM admin_users WHERE role = 'admin' AND disabled_at IS NULL").await, 1);
}

fn pairs<'a>(form: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
    form.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Runs the binary with `stdin` piped in (the password).
fn cli_with_stdin(app: &TestApp, args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wechat-ticket"))
        .env("DATABASE_URL", app.database_url())
        .env("PUBLIC_URL", &app.base)
        .env_remove("SECRET_KEY")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[tokio::test]
async fn the_shell_adds_teams_organizers_and_activities_in_a_team() {
    let app = spawn_app().await;
    let password = format!("{PASSWORD}\n");
    let out = app.cli(&["team", "add", "话剧社"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = app.cli(&["team", "add", "话剧社"]);
    assert!(!out.status.success() && text(&out).contains("already exists"), "{}", text(&out));

    // An organizer needs a team, and a team that exists.
    let out = cli_with_stdin(&app, &["admin", "add", "ophelia", "--role", "organizer"], &password);
    assert!(!out.status.success() && text(&out).contains("at least one team"), "{}", text(&out));
    let out = cli_with_stdin(&app, &["admin", "add", "ophelia", "--role", "organizer", "--team", "合唱团"], &password);
    assert!(!out.status.success() && text(&out).contains("no team named `合唱团`"), "{}", text(&out));
    assert_eq!(app.count("SELECT count(*) FROM admin_users").await, 0, "nothing half-made");
    let out = cli_with_stdin(&app, &["admin", "add", "ophelia", "--role", "organizer", "--team", "话剧社"], &password);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("organizer `ophelia`"), "{}", text(&out));

    // Without --role: a new account is an admin; a password reset keeps the role.
    let out = cli_with_stdin(&app, &["admin", "add", "root"], &password);
    assert!(out.status.success(), "{}", text(&out));
    let out = cli_with_stdin(&app, &["admin", "add", "ophelia"], &password);
    assert!(out.status.success(), "{}", text(&out));
    let roles: Vec<(String, String)> =
        sqlx::query_as("SELECT username, role FROM admin_users ORDER BY username").fetch_all(&app.pool).await.unwrap();
    assert_eq!(roles, [("ophelia".into(), "organizer".into()), ("root".into(), "admin".into())]);

    let times = ["--book-start", "2030-01-01 12:00", "--book-end", "2030-01-02 12:00", "--start", "2030-01-03 19:00"];
    let create = |key: &'static str, team: Option<&'static str>| {
        let mut args = vec!["activity", "create", key, "--name", "演出", "--place", "礼堂", "--capacity", "10"];
        args.extend(times);
        args.extend(["--end", "2030-01-03 21:00"]);
        if let Some(t) = team {
            args.extend(["--team", t]);
        }
        app.cli(&args)
    };
    let out = create("hamlet", Some("话剧社"));
    assert!(out.status.success(), "{}", text(&out));
    let out = create("plain", None);
    assert!(out.status.success(), "{}", text(&out));
    let out = create("nowhere", Some("合唱团"));
    assert!(!out.status.success() && text(&out).contains("no team named"), "{}", text(&out));
    let placed: Vec<(String, String)> =
        sqlx::query_as("SELECT a.key, t.name FROM activities a JOIN teams t ON t.id = a.team_id ORDER BY a.key")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(placed, [("hamlet".into(), "话剧社".into()), ("plain".into(), "默认团队".into())]);

    let out = app.cli(&["team", "list"]);
    let listed = text(&out);
    assert!(listed.contains("默认团队\t1 activities\t0 members"), "{listed}");
    assert!(listed.contains("话剧社\t1 activities\t1 members"), "{listed}");

    // The organizer made in the shell logs in and sees their team's activity only.
    let (http, _) = browser_of(&app, "ophelia").await;
    let list = http.get(app.url("/admin")).send().await.unwrap().text().await.unwrap();
    assert!(list.contains("hamlet") && !list.contains("plain"), "{list}");
}

#[tokio::test]
async fn an_existing_database_moves_to_the_default_team_and_its_accounts_stay_admins() {
    let app = spawn_app().await;
    // A database migrated up to the migration before teams, with data in it.
    let pool = app.database_migrated_before("0017").await;
    sqlx::query(
        "INSERT INTO activities (key, name, place, book_start, book_end, start_at, end_at, capacity, status) \
         VALUES ('old', '旧活动', '礼堂', now(), now() + interval '1 hour', now() + interval '2 hours', \
                 now() + interval '3 hours', 10, 'published')",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO admin_users (username, password_hash) VALUES ('veteran', 'x')")
        .execute(&pool)
        .await
        .unwrap();

    wechat_ticket::db::migrate(&pool).await.unwrap();
    let team: String =
        sqlx::query_scalar("SELECT t.name FROM activities a JOIN teams t ON t.id = a.team_id WHERE a.key = 'old'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(team, "默认团队");
    assert_eq!(
        sqlx::query_scalar::<_, i64>("SELECT id FROM teams WHERE name = '默认团队'").fetch_one(&pool).await.unwrap(),
        teams::DEFAULT_TEAM
    );
    let (role, disabled): (Role, bool) =
        sqlx::query_as("SELECT role, disabled_at IS NOT NULL FROM admin_users WHERE username = 'veteran'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((role, disabled), (Role::Admin, false));
    pool.close().await;

    // And on the app's own database: an activity made without a team is the default team's.
    let a = app.activity("fresh", 5, Window::Open).await;
    assert_eq!(a.team_id, teams::DEFAULT_TEAM);
}
