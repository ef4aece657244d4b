//! At the door: volunteers' check-in links (per activity and gate, expiring,
//! revocable), scans answered once per client nonce, check-ins attributed to
//! their gate, and two gates racing for one ticket.

use serde_json::Value;
use wechat_ticket::links;

use crate::common::{TestApp, fixtures::Window, spawn_app, wx};

/// Books a ticket over WeChat for each student; returns their ticket codes.
async fn book_all(app: &TestApp, openids: &[String], activity_id: i64) -> Vec<String> {
    let mut codes = Vec::new();
    for openid in openids {
        match app.say(&wx::click(openid, &format!("BOOK_{activity_id}"))).await {
            wx::Reply::News { url, .. } => codes.push(crate::common::fixtures::ticket_code(&url)),
            other => panic!("{other:?}"),
        }
    }
    codes
}

/// Creates a link on the activity's check-in page, as an admin does; returns its URL.
pub async fn create_link(app: &TestApp, csrf: &str, activity_id: i64, gate: &str) -> String {
    let path = format!("/admin/activities/{activity_id}/checkin-links");
    let (status, body) = app.admin_post(&path, &[("csrf", csrf), ("gate", gate), ("hours", "12")]).await;
    assert_eq!(status, 303, "{body}");
    let page = app.get(&format!("/admin/activities/{activity_id}/checkin")).await.text().await.unwrap();
    // Newest first: the link just made is the first listed.
    let start = page.find("class=\"door-url\" href=\"").expect("the new link on the page") + 23;
    page[start..].split('"').next().unwrap().to_string()
}

/// A scan through a link's JSON endpoint: (HTTP status, JSON or null).
async fn scan(app: &TestApp, door: &str, code: &str, nonce: &str) -> (u16, Value) {
    let resp = app.http.post(format!("{door}/scan")).form(&[("code", code), ("nonce", nonce)]).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn verdict(json: &Value) -> (bool, String) {
    let v = &json["verdict"];
    (v["good"].as_bool().unwrap(), format!("{} {}", v["headline"].as_str().unwrap(), v["detail"].as_str().unwrap()))
}

async fn status_of(app: &TestApp, code: &str) -> String {
    sqlx::query_scalar("SELECT status FROM tickets WHERE code = $1").bind(code).fetch_one(&app.pool).await.unwrap()
}

#[tokio::test]
async fn a_volunteer_link_checks_in_its_activity_only_until_revoked_or_expired() {
    let app = spawn_app().await;
    let csrf = app.login_admin("organiser").await;
    let a = app.activity("show", 10, Window::Open).await;
    let b = app.activity("other", 10, Window::Open).await;
    let students = app.bound_students(40, 3).await;
    let codes = book_all(&app, &students, a.id).await;
    let other = book_all(&app, &students[..1], b.id).await.remove(0);

    // Creating a link needs the form's CSRF token.
    let (status, _) = app.admin_post(&format!("/admin/activities/{}/checkin-links", a.id), &[("gate", "东门")]).await;
    assert_eq!(status, 403);
    let door = create_link(&app, &csrf, a.id, "东门").await;
    assert!(door.starts_with(&app.url("/door/")), "{door}");
    assert_eq!(app.count("SELECT count(*) FROM audit_log WHERE action = '创建检票链接'").await, 1);

    // The page opens without an admin account: the activity, the gate, the counter; nothing else.
    let volunteer = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let resp = volunteer.get(&door).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let page = resp.text().await.unwrap();
    assert!(page.contains(&a.name) && page.contains("东门"), "{page}");
    assert!(page.contains("<strong id=\"checked-in\">0</strong>"), "{page}");
    for absent in ["export", "/admin/", &b.name] {
        assert!(!page.contains(absent), "the volunteer page offers {absent}: {page}");
    }
    // A made-up or altered token opens nothing.
    let forged = format!("{}x", door);
    assert_eq!(volunteer.get(&forged).send().await.unwrap().status(), 404);
    let id: i64 = door.rsplit('/').next().unwrap().split('.').next().unwrap().parse().unwrap();
    let guessed = app.url(&format!("/door/{}.{}", id + 1, door.rsplit('.').next().unwrap()));
    assert_eq!(volunteer.get(&guessed).send().await.unwrap().status(), 404);

    // Its scans: this activity's ticket checks in; another activity's is refused and stays valid.
    let (status, json) = scan(&app, &door, &codes[0], &links::nonce()).await;
    assert_eq!(status, 200);
    let (good, text) = verdict(&json);
    assert!(good && text.contains("检票成功") && text.contains("0004000000"), "{text}");
    assert_eq!(json["checked_in"], 1);
    assert_eq!(json["booked"], 3);
    let (_, json) = scan(&app, &door, &other, &links::nonce()).await;
    let (good, text) = verdict(&json);
    assert!(!good && text.contains("不是本活动的票"), "{text}");
    assert_eq!(status_of(&app, &other).await, "valid", "never checked in at the wrong activity");
    // A student ID of another activity's ticket holder finds nothing here either.
    let (_, json) = scan(&app, &door, "0004000001", &links::nonce()).await;
    assert!(verdict(&json).0, "a student ID of this activity checks in");
    assert_eq!(
        app.count("SELECT count(*) FROM tickets WHERE status = 'used' AND checked_in_by = '东门' AND checked_in_link IS NOT NULL").await,
        2
    );
    // The status endpoint and the page list the gate's last scans.
    let status: Value = volunteer.get(format!("{door}/status")).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["checked_in"], 2);
    let recent = status["recent"].as_array().unwrap();
    assert_eq!(recent.len(), 3);
    assert_eq!(recent[1]["headline"], "不是本活动的票");
    let page = volunteer.get(&door).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("<strong id=\"checked-in\">2</strong>") && page.contains("不是本活动的票"), "{page}");

    // Revoked: a clear page, and the scan endpoint refuses too; nothing is checked in.
    let revoke = format!("/admin/checkin-links/{id}/revoke");
    assert_eq!(app.admin_post(&revoke, &[]).await.0, 403, "revoking needs the CSRF token");
    assert_eq!(app.admin_post(&revoke, &[("csrf", &csrf)]).await.0, 303);
    let resp = volunteer.get(&door).send().await.unwrap();
    assert_eq!(resp.status(), 410);
    assert!(resp.text().await.unwrap().contains("已被吊销"));
    let (status, _) = scan(&app, &door, &codes[2], &links::nonce()).await;
    assert_eq!(status, 410);
    let form = volunteer.post(&door).form(&[("code", codes[2].as_str()), ("nonce", &links::nonce())]).send().await;
    assert_eq!(form.unwrap().status(), 410);
    assert_eq!(status_of(&app, &codes[2]).await, "valid");
    assert_eq!(volunteer.get(format!("{door}/status")).send().await.unwrap().status(), 410);
    assert_eq!(app.count("SELECT count(*) FROM audit_log WHERE action = '吊销检票链接'").await, 1);
    let admin_page = app.get(&format!("/admin/activities/{}/checkin", a.id)).await.text().await.unwrap();
    assert!(admin_page.contains("已吊销") && !admin_page.contains("class=\"door-url\""), "{admin_page}");

    // Expired: the same.
    let door = create_link(&app, &csrf, a.id, "西门").await;
    assert_eq!(volunteer.get(&door).send().await.unwrap().status(), 200);
    sqlx::query("UPDATE checkin_links SET created_at = now() - interval '13 hours', expires_at = now() - interval '1 hour' WHERE gate = '西门'")
        .execute(&app.pool)
        .await
        .unwrap();
    let resp = volunteer.get(&door).send().await.unwrap();
    assert_eq!(resp.status(), 410);
    assert!(resp.text().await.unwrap().contains("已过期"));
    assert_eq!(scan(&app, &door, &codes[2], &links::nonce()).await.0, 410);
    assert_eq!(status_of(&app, &codes[2]).await, "valid");

    // Bad input to the create form changes nothing.
    let path = format!("/admin/activities/{}/checkin-links", a.id);
    for (gate, hours) in [("北门", "0"), ("北门", "1000"), ("北门", "abc"), (&"门".repeat(33)[..], "12")] {
        let (status, body) = app.admin_post(&path, &[("csrf", &csrf), ("gate", gate), ("hours", hours)]).await;
        assert_eq!(status, 400, "{gate} {hours}: {body}");
    }
    assert_eq!(app.count("SELECT count(*) FROM checkin_links").await, 2);
}

#[tokio::test]
async fn a_repeated_scan_nonce_gets_the_first_answer_and_writes_nothing() {
    let app = spawn_app().await;
    let csrf = app.login_admin("organiser").await;
    let a = app.activity("show", 10, Window::Open).await;
    let students = app.bound_students(41, 3).await;
    let codes = book_all(&app, &students, a.id).await;
    let door = create_link(&app, &csrf, a.id, "东门").await;

    let nonce = links::nonce();
    let (_, first) = scan(&app, &door, &codes[0], &nonce).await;
    assert!(verdict(&first).0);
    let writes = "SELECT (SELECT count(*) FROM checkin_scans) + (SELECT count(*) FROM audit_log)";
    let before = app.count(writes).await;
    // The retry (a lost response, a double tap): the same answer, green, and nothing new written.
    let (_, again) = scan(&app, &door, &codes[0], &nonce).await;
    assert_eq!(again["verdict"], first["verdict"]);
    // Even with other content under the same nonce: the first answer, the other ticket untouched.
    let (_, other) = scan(&app, &door, &codes[1], &nonce).await;
    assert_eq!(other["verdict"], first["verdict"]);
    assert_eq!(status_of(&app, &codes[1]).await, "valid");
    assert_eq!(app.count(writes).await, before);
    // A new scan of the used ticket: red, saying when and at which gate.
    let (_, json) = scan(&app, &door, &codes[0], &links::nonce()).await;
    let (good, text) = verdict(&json);
    let hhmm = text.strip_prefix("已检票 ").and_then(|t| t.split('（').next()).unwrap_or_default();
    assert!(!good && hhmm.len() == 5 && hhmm.as_bytes()[2] == b':' && text.contains("（东门）"), "{text}");

    // The same nonce sent twice at once: one check-in, one answer.
    let nonce = links::nonce();
    let (x, y) = tokio::join!(scan(&app, &door, &codes[1], &nonce), scan(&app, &door, &codes[1], &nonce));
    assert!(verdict(&x.1).0 && verdict(&y.1).0, "both get the first answer: {x:?} {y:?}");
    assert_eq!(app.count(&format!("SELECT count(*) FROM checkin_scans WHERE nonce = '{nonce}'")).await, 1);

    // A scan without a usable nonce is refused and changes nothing.
    let before = app.count(writes).await;
    for bad in ["", "short", "has spaces in it, far too odd", &"x".repeat(65)] {
        let (status, _) = scan(&app, &door, &codes[2], bad).await;
        assert_eq!(status, 400, "nonce {bad:?}");
    }
    assert_eq!(status_of(&app, &codes[2]).await, "valid");
    assert_eq!(app.count(writes).await, before);

    // Without JavaScript: the form's nonce comes with the page, so submitting it twice
    // (reload, back button) answers the same.
    let path = format!("/admin/activities/{}/checkin", a.id);
    let page = app.get(&path).await.text().await.unwrap();
    let form_nonce = crate::common::admin::hidden_value(&page, "nonce").expect("a nonce in the form");
    let fields = [("csrf", csrf.as_str()), ("code", codes[2].as_str()), ("nonce", form_nonce.as_str())];
    let (_, first) = app.admin_post(&path, &fields).await;
    let (_, second) = app.admin_post(&path, &fields).await;
    for page in [&first, &second] {
        assert!(page.contains("class=\"result good\"") && page.contains("检票成功"), "{page}");
    }
    assert_ne!(
        crate::common::admin::hidden_value(&first, "nonce").unwrap(),
        form_nonce,
        "a fresh nonce for the next scan"
    );
    // The admin's check-in names the admin.
    let (_, json) = scan(&app, &door, &codes[2], &links::nonce()).await;
    assert!(verdict(&json).1.contains("（organiser）"), "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_gates_scanning_one_ticket_at_once_get_one_success() {
    let app = spawn_app().await;
    let csrf = app.login_admin("organiser").await;
    let a = app.activity("show", 20, Window::Open).await;
    let students = app.bound_students(42, 8).await;
    let codes = book_all(&app, &students, a.id).await;
    let east = create_link(&app, &csrf, a.id, "东门").await;
    let west = create_link(&app, &csrf, a.id, "西门").await;

    let mut slowest = std::time::Duration::ZERO;
    for code in &codes {
        let (n1, n2) = (links::nonce(), links::nonce());
        let started = std::time::Instant::now();
        let (x, y) = tokio::join!(scan(&app, &east, code, &n1), scan(&app, &west, code, &n2));
        slowest = slowest.max(started.elapsed());
        let (east_good, east_text) = verdict(&x.1);
        let (west_good, west_text) = verdict(&y.1);
        assert!(east_good ^ west_good, "exactly one success: 东门 {east_text} / 西门 {west_text}");
        let (winner, loser_text) = if east_good { ("东门", west_text) } else { ("西门", east_text) };
        assert!(loser_text.starts_with("已检票 ") && loser_text.contains(&format!("（{winner}）")), "{loser_text}");
        let by: String = sqlx::query_scalar("SELECT checked_in_by FROM tickets WHERE code = $1")
            .bind(code)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        assert_eq!(by, winner);
    }
    assert_eq!(app.count("SELECT count(*) FROM tickets WHERE status = 'used'").await, codes.len() as i64);
    assert_eq!(app.count("SELECT count(*) FROM audit_log WHERE action = '检票'").await, codes.len() as i64);
    eprintln!("slowest pair of simultaneous scans answered in {slowest:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_checkin_link_command_creates_lists_and_revokes() {
    let app = spawn_app().await;
    let a = app.activity("shell", 10, Window::Open).await;
    let students = app.bound_students(43, 1).await;
    let code = book_all(&app, &students, a.id).await.remove(0);
    let run = |args: &[&str]| app.cli(args);
    let out = run(&["checkin-link", "create", "shell", "--gate", "南门", "--hours", "2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let door = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(door.starts_with(&app.url("/door/")), "{door}");
    // The printed URL opens on the server (same secret key) and scans.
    let page = app.http.get(&door).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("南门"));
    assert!(verdict(&scan(&app, &door, &code, &links::nonce()).await.1).0);

    let out = run(&["checkin-link", "list"]);
    let list = String::from_utf8(out.stdout).unwrap();
    assert!(list.contains("shell\t南门\topen") && list.contains(&door), "{list}");
    let id = list.split('\t').next().unwrap();
    let out = run(&["checkin-link", "revoke", id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(app.http.get(&door).send().await.unwrap().status(), 410);
    let list = String::from_utf8(run(&["checkin-link", "list"]).stdout).unwrap();
    assert!(list.contains("南门\trevoked") && !list.contains(&door), "{list}");
    assert_eq!(app.count("SELECT count(*) FROM audit_log WHERE actor = 'shell' AND action LIKE '%检票链接'").await, 2);

    // Refusals say what is wrong and create nothing.
    for args in [&["checkin-link", "create", "nosuch"][..], &["checkin-link", "create", "shell", "--hours", "0"]] {
        let out = run(args);
        assert!(!out.status.success(), "{args:?}");
        assert!(!String::from_utf8_lossy(&out.stderr).is_empty());
    }
    assert!(!run(&["checkin-link", "revoke", "999"]).status.success());
    assert_eq!(app.count("SELECT count(*) FROM checkin_links").await, 1);
}
