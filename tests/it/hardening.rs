//! What a browser, a log file, a spreadsheet and WeChat's reply limit see of
//! the server, attacked over HTTP: the Content-Security-Policy on every page,
//! HSTS behind https, no ticket code or signed-link token in the logs (the real
//! binary at trace level), codes exported unchanged, awkward names read back
//! equal, and every text reply within WeChat's 2,048 bytes.

use std::{
    collections::HashMap,
    io::Cursor,
    process::{Command, Stdio},
};

use calamine::{Data, Reader, Xlsx};
use futures::{StreamExt, stream};

use crate::{
    common::{Settings, TOKEN, TestApp, fixtures::Window, spawn_app, spawn_app_with, wx},
    serve_binary::{BIN, Server, free_port, terminate, wait_healthy},
};

/// WeChat's limit on a text reply's `Content`.
const MAX_REPLY_BYTES: usize = 2048;

/// The directives of a Content-Security-Policy header, each with its sources.
fn directives(policy: &str) -> HashMap<String, Vec<String>> {
    policy
        .split(';')
        .filter_map(|d| {
            let mut words = d.split_whitespace();
            Some((words.next()?.to_ascii_lowercase(), words.map(str::to_string).collect()))
        })
        .collect()
}

/// Asserts the page at `path` (fetched with `client`) is HTML under the policy
/// the product promises, and has no inline code the policy would block.
async fn assert_protected(app: &TestApp, client: &reqwest::Client, path: &str) -> u16 {
    let resp = client.get(app.url(path)).send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.text().await.unwrap();
    let content_type = headers.get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    assert!(content_type.starts_with("text/html"), "{path} ({status}) is a page: {content_type}");
    let policy = headers.get("content-security-policy").unwrap_or_else(|| panic!("{path} has no CSP"));
    let d = directives(policy.to_str().unwrap());
    let sources = |name: &str| d.get(name).cloned().unwrap_or_else(|| panic!("{path}: no {name} in {policy:?}"));
    assert_eq!(sources("default-src"), ["'self'"], "{path}");
    let scripts = d.get("script-src").unwrap_or(&d["default-src"]);
    assert!(!scripts.iter().any(|s| s == "'unsafe-inline'" || s == "'unsafe-eval'" || s == "*"), "{path}: {scripts:?}");
    assert_eq!(sources("style-src"), ["'self'"], "{path}");
    assert_eq!(sources("img-src"), ["'self'", "data:"], "{path}");
    assert_eq!(sources("frame-ancestors"), ["'self'"], "{path}");
    assert_eq!(sources("form-action"), ["'self'"], "{path}");
    assert_eq!(sources("base-uri"), ["'none'"], "{path}");
    assert_eq!(sources("object-src"), ["'none'"], "{path}");
    assert_eq!(headers["x-frame-options"], "SAMEORIGIN", "{path}");
    assert!(headers.get("strict-transport-security").is_none(), "{path}: no HSTS over http");
    // What the policy would block must not be on the page at all, or the page breaks.
    for blocked in [" style=\"", " onclick=", " onload=", " onsubmit=", " onchange=", "javascript:"] {
        assert!(!body.to_ascii_lowercase().contains(blocked), "{path} has {blocked}:\n{body}");
    }
    // Scripts only as files from this site, never inline.
    for script in body.to_ascii_lowercase().split("<script").skip(1) {
        assert!(
            script.starts_with(" src=\"/static/") && script.contains("></script>"),
            "{path} has an inline script:\n{body}"
        );
    }
    status
}

#[tokio::test]
async fn every_page_carries_a_content_security_policy_that_its_markup_keeps() {
    let app = spawn_app().await;
    let anonymous = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    // Before a login: landing, login page, 404s, a refused link.
    for (path, status) in [
        ("/", 200),
        ("/admin/login", 200),
        ("/nowhere", 404),
        ("/tickets/AAAAAAAAAAAAAAAAAAAAAA", 404),
        ("/activities/x", 404),
        ("/bind?o=x&e=99999999999&s=y", 403),
    ] {
        assert_eq!(assert_protected(&app, &anonymous, path).await, status, "{path}");
    }

    // The student's pages, reached the way a student reaches them.
    let a = app.activity("show", 10, Window::Open).await;
    sqlx::query("UPDATE activities SET description = '第一行\n第二行' WHERE id = $1")
        .bind(a.id)
        .execute(&app.pool)
        .await
        .unwrap();
    let unbound = wx::Reply::parse(&app.post_wechat(&wx::text("o_new", "绑定")).await.1);
    let bind_link = unbound.links().remove(0);
    let bind_path = bind_link.strip_prefix(&app.base).unwrap().to_string();
    let student = app.bound_students(40, 1).await.remove(0);
    let code = match app.say(&wx::click(&student, &format!("BOOK_{}", a.id))).await {
        wx::Reply::News { url, .. } => url.rsplit('/').next().unwrap().to_string(),
        other => panic!("{other:?}"),
    };
    let mine = app.say(&wx::text(&student, "查票")).await;
    let mine = mine.links().into_iter().find(|l| l.contains("/my/tickets")).expect("a link to all tickets");
    for path in [bind_path, format!("/activities/{}", a.id), format!("/tickets/{code}"), mine.replace(&app.base, "")] {
        assert_eq!(assert_protected(&app, &anonymous, &path).await, 200, "{path}");
    }

    // The console, the simulator and its phone frame.
    let csrf = app.login_admin("organiser").await;
    let resp = app.http.post(app.url("/admin/simulator/students")).form(&[("csrf", &csrf)]).send().await.unwrap();
    let openid = resp.headers()["location"].to_str().unwrap().rsplit('=').next().unwrap().to_string();
    for path in [
        "/".to_string(),
        "/admin".into(),
        "/admin/activities/new".into(),
        format!("/admin/activities/{}", a.id),
        format!("/admin/activities/{}/checkin", a.id),
        "/admin/menu".into(),
        "/admin/roster".into(),
        "/admin/audit".into(),
        "/admin/simulator".into(),
        format!("/admin/simulator?student={openid}"),
        format!("/admin/simulator/chat?student={openid}"),
        "/admin/activities/999999".into(),
    ] {
        let status = assert_protected(&app, &app.http, &path).await;
        assert!(status == 200 || status == 404, "{path}: {status}");
    }
    // A volunteer's check-in link, open and revoked.
    let door = crate::door::create_link(&app, &csrf, a.id, "东门").await.replace(&app.base, "");
    assert_eq!(assert_protected(&app, &anonymous, &door).await, 200, "{door}");
    let id = door.trim_start_matches("/door/").split('.').next().unwrap();
    app.admin_post(&format!("/admin/checkin-links/{id}/revoke"), &[("csrf", &csrf)]).await;
    assert_eq!(assert_protected(&app, &anonymous, &door).await, 410, "{door}");

    // Answers of the outer layers carry the headers too: a cross-site POST refused.
    let refused = anonymous
        .post(app.url("/admin/login"))
        .header("sec-fetch-site", "cross-site")
        .form(&[("username", "a"), ("password", "b")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert!(refused.headers().contains_key("content-security-policy"));
    assert_eq!(refused.headers()["x-frame-options"], "SAMEORIGIN");
}

#[tokio::test]
async fn behind_https_every_response_tells_browsers_to_stay_on_https() {
    let app = spawn_app_with(Settings::default().set("PUBLIC_URL", "https://tickets.example.edu")).await;
    for path in ["/", "/healthz", "/nowhere", "/admin/login", "/wechat?signature=x&timestamp=1&nonce=2&echostr=e"] {
        let resp = app.get(path).await;
        let hsts = resp.headers().get("strict-transport-security").unwrap_or_else(|| panic!("{path}: no HSTS"));
        let max_age: u64 = hsts.to_str().unwrap().strip_prefix("max-age=").unwrap().parse().unwrap();
        assert!(max_age >= 180 * 24 * 3600, "{path}: {hsts:?}");
    }
    // Over plain http the header would pin nothing and could lock a site out of http: none.
    let http = spawn_app().await;
    for path in ["/", "/healthz", "/nowhere"] {
        assert!(http.get(path).await.headers().get("strict-transport-security").is_none(), "{path}");
    }
}

/// `key=value` from a signed link's query.
fn query_value(link: &str, key: &str) -> String {
    let query = link.split_once('?').unwrap().1;
    query.split('&').find_map(|p| p.strip_prefix(&format!("{key}="))).unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn ticket_codes_and_signed_link_tokens_never_reach_the_logs() {
    let app = spawn_app().await;
    let a = app.activity("logs", 10, Window::Open).await;
    let student = app.bound_students(41, 1).await.remove(0);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log_path = std::env::temp_dir().join(format!("wt-logs-{}-{port}.log", std::process::id()));
    let data_dir = std::env::temp_dir().join(format!("wt-logs-{}-{port}", std::process::id()));
    let child = Command::new(BIN)
        .env("DATABASE_URL", app.database_url())
        .env("DATA_DIR", &data_dir)
        .env("LISTEN", format!("127.0.0.1:{port}"))
        .env("PUBLIC_URL", &base)
        .env("WECHAT_TOKEN", TOKEN)
        // Everything every crate logs, not just this app's spans; the crate
        // known to log raw paths named explicitly, too.
        .env("RUST_LOG", "trace,tower_http::csrf=trace")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("run wechat-ticket");
    let server = Server(Some(child));
    wait_healthy(port).await;

    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let say = |xml: String| {
        let client = client.clone();
        let url = format!("{base}/wechat?{}", wx::signed_query());
        async move {
            let body = client.post(url).header("content-type", "text/xml").body(xml).send().await.unwrap();
            wx::Reply::parse(&body.text().await.unwrap())
        }
    };
    let ticket_link = match say(wx::click(&student, &format!("BOOK_{}", a.id))).await {
        wx::Reply::News { url, .. } => url,
        other => panic!("{other:?}"),
    };
    let code = crate::common::fixtures::ticket_code(&ticket_link);
    let listed = say(wx::text(&student, "查票")).await;
    let all_tickets = listed.links().into_iter().find(|l| l.contains("/my/tickets")).unwrap();
    let bind = say(wx::text("o_logs_unbound", "绑定")).await.links().remove(0);
    let mut secrets =
        vec![code.clone(), query_value(&ticket_link, "s"), query_value(&all_tickets, "s"), query_value(&bind, "s")];
    assert_eq!(client.get(&ticket_link).send().await.unwrap().status(), 200);
    let cancel = client.post(format!("{base}/tickets/{code}/cancel")).send().await.unwrap();
    assert!(!cancel.status().is_server_error(), "{}", cancel.status());
    assert_eq!(client.get(&all_tickets).send().await.unwrap().status(), 200);
    assert_eq!(client.get(&bind).send().await.unwrap().status(), 200);
    // A check-in credential's page, and a mistyped ticket link: still secrets, whatever the answer.
    let credential = "Zq3kV9sLm2Xw8Rt5Yp1NbC";
    secrets.push(credential.into());
    client.get(format!("{base}/c/{credential}")).send().await.unwrap();
    client.get(format!("{base}/TICKETS/{code}")).send().await.unwrap();
    terminate(server);

    let log = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_file(&log_path);
    let _ = std::fs::remove_dir_all(&data_dir);
    // The requests were logged, with the secret cut out of their paths.
    for logged in ["path=/tickets/…", "path=/tickets/…/cancel", "path=/c/…", "path=/my/tickets", "path=/bind"] {
        assert!(log.contains(logged), "the log names {logged}:\n{}", tail(&log));
    }
    for secret in &secrets {
        let line = log.lines().find(|l| l.contains(secret.as_str()));
        assert!(line.is_none(), "a secret in the log: {}", line.unwrap());
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

#[tokio::test]
async fn exports_keep_ticket_codes_and_awkward_names_exactly() {
    let app = spawn_app().await;
    app.login_admin("organiser").await;
    let emoji = "😀".repeat(40);
    let a = app.activity("names", 300, Window::Open).await;
    let hamlet = app.activity("hamlet", 10, Window::Open).await;
    for (id, name) in [(a.id, emoji.as_str()), (hamlet.id, "'Hamlet'")] {
        sqlx::query("UPDATE activities SET name = $2 WHERE id = $1")
            .bind(id)
            .bind(name)
            .execute(&app.pool)
            .await
            .unwrap();
    }
    // Two students give their names on the bind page, as students do.
    let names = [emoji.clone(), "'Hamlet'".to_string(), "=1+1".to_string()];
    for (i, name) in names.iter().enumerate() {
        let openid = format!("o_name_{i}");
        let link = wx::Reply::parse(&app.post_wechat(&wx::text(&openid, "绑定")).await.1).links().remove(0);
        let (status, page) = app.submit_bind(&link, &format!("20240900{i:02}"), name).await;
        assert!(status == 200 && page.contains("绑定成功"), "{page}");
        assert!(matches!(app.say(&wx::text(&openid, "抢票 names")).await, wx::Reply::News { .. }));
        assert!(matches!(app.say(&wx::text(&openid, "抢票 hamlet")).await, wx::Reply::News { .. }));
    }
    // Enough codes that, drawn as plain base64url, some would start with `-`.
    let students = app.bound_students(42, 200).await;
    stream::iter(students)
        .for_each_concurrent(8, |openid| {
            let app = &app;
            async move {
                assert!(matches!(app.say(&wx::click(&openid, &format!("BOOK_{}", a.id))).await, wx::Reply::News { .. }))
            }
        })
        .await;
    let codes: Vec<String> = sqlx::query_scalar("SELECT code FROM tickets WHERE activity_id = $1 ORDER BY id")
        .bind(a.id)
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(codes.len(), 203);
    assert!(codes.iter().all(|c| !c.starts_with(['=', '+', '-', '@'])));

    let csv = app.get(&format!("/admin/activities/{}/export.csv", a.id)).await;
    assert_eq!(csv.status(), 200);
    let bytes = csv.bytes().await.unwrap();
    let rows: Vec<csv::StringRecord> = csv::Reader::from_reader(&bytes[3..]).records().map(Result::unwrap).collect();
    assert_eq!(rows.iter().map(|r| r[0].to_string()).collect::<Vec<_>>(), codes, "CSV codes as in the database");
    assert_eq!(&rows[0][2], emoji);
    assert_eq!(&rows[1][2], "'Hamlet'");
    assert_eq!(&rows[2][2], "'=1+1", "a formula is still made inert");

    let xlsx = app.get(&format!("/admin/activities/{}/export.xlsx", a.id)).await;
    assert_eq!(xlsx.status(), 200, "an activity named with 40 emoji exports");
    let mut book: Xlsx<_> = Xlsx::new(Cursor::new(xlsx.bytes().await.unwrap().to_vec())).unwrap();
    assert_eq!(book.sheet_names(), ["😀".repeat(15)], "the sheet is named as much of the activity as Excel allows");
    let sheet = book.worksheet_range_at(0).unwrap().unwrap();
    let cell = |r: usize, c: usize| sheet.get((r, c)).cloned().unwrap_or(Data::Empty);
    let xlsx_codes: Vec<Data> = (1..sheet.height()).map(|r| cell(r, 0)).collect();
    assert_eq!(
        xlsx_codes,
        codes.iter().cloned().map(Data::String).collect::<Vec<_>>(),
        "XLSX codes as in the database"
    );
    assert_eq!(cell(1, 2), Data::String(emoji.clone()));
    assert_eq!(cell(2, 2), Data::String("'Hamlet'".into()));
    assert_eq!(cell(3, 2), Data::String("=1+1".into()), "a text cell, never a formula");

    let xlsx = app.get(&format!("/admin/activities/{}/export.xlsx", hamlet.id)).await;
    assert_eq!(xlsx.status(), 200, "an activity named 'Hamlet' exports");
    let mut book: Xlsx<_> = Xlsx::new(Cursor::new(xlsx.bytes().await.unwrap().to_vec())).unwrap();
    assert_eq!(book.sheet_names(), ["Hamlet"]);
    let sheet = book.worksheet_range_at(0).unwrap().unwrap();
    assert_eq!(sheet.get((2, 2)), Some(&Data::String("'Hamlet'".into())));
}

#[tokio::test]
async fn every_text_reply_fits_in_wechats_2048_bytes_and_says_what_it_left_out() {
    let app = spawn_app().await;
    // 100 characters with the two-digit prefix, the most a name or place may have.
    let long_name = "长".repeat(98);
    let mut keys = Vec::new();
    for i in 0..12 {
        let key = format!("k{i:02}{}", "x".repeat(28));
        let a = app.activity(&key, 10, Window::Open).await;
        sqlx::query("UPDATE activities SET name = $2, place = $2 WHERE id = $1")
            .bind(a.id)
            .bind(format!("{i:02}{long_name}"))
            .execute(&app.pool)
            .await
            .unwrap();
        keys.push(key);
    }
    let student = app.bound_students(43, 1).await.remove(0);
    for key in &keys {
        assert!(matches!(app.say(&wx::text(&student, &format!("抢票 {key}"))).await, wx::Reply::News { .. }));
    }
    let text_of = |reply: wx::Reply| {
        let text = reply.text().to_string();
        assert!(text.len() <= MAX_REPLY_BYTES, "{} bytes:\n{text}", text.len());
        text
    };

    let list = text_of(app.say(&wx::text(&student, "抢啥")).await);
    let shown = list.matches("代号 ").count();
    assert!(shown >= 1, "{list}");
    assert!(list.contains(&format!("还有 {} 个活动没有列出", 12 - shown)), "{list}");
    let mine = text_of(app.say(&wx::text(&student, "查票")).await);
    let shown = mine.matches("查看电子票").count();
    assert!(shown >= 1, "{mine}");
    assert!(mine.contains(&format!("还有 {} 张票没有列出", 12 - shown)), "{mine}");
    let all = wx::Reply::Text(mine.clone()).links().into_iter().find(|l| l.contains("/my/tickets")).unwrap();
    let page = app.http.get(&all).send().await.unwrap().text().await.unwrap();
    for i in 0..12 {
        assert!(page.contains(&format!("{i:02}{long_name}")), "the linked page lists all 12 tickets");
    }

    // Long inputs echoed back, from a bound and an unbound student, and a long openid.
    let long_key = "q".repeat(100);
    let essay = "长".repeat(650);
    for (from, input) in [
        (student.as_str(), format!("抢票 {long_key}")),
        (student.as_str(), format!("退票 {long_key}")),
        (student.as_str(), format!("取票 {long_key}")),
        (student.as_str(), format!("抢票 {essay}")),
        (student.as_str(), format!("退票{essay}")),
        (student.as_str(), essay.clone()),
        (student.as_str(), "帮助".into()),
        ("o_unbound", format!("查票 {long_key}")),
        (&"o".repeat(120), "抢票 k00".into()),
    ] {
        let text = text_of(app.say(&wx::text(from, &input)).await);
        assert!(!text.contains(&long_key) && !text.contains(&essay), "{text}");
    }
    let echoed = text_of(app.say(&wx::text(&student, &format!("抢票 {long_key}"))).await);
    assert!(echoed.contains(&format!("「{}…」", "q".repeat(32))), "{echoed}");
}
