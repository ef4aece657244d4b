//! Check-in at the door and ticket list exports, as organisers use them.

use std::io::Cursor;

use calamine::{Data, Reader, Xlsx};

use crate::common::{TestApp, fixtures::Window, spawn_app, wx};

/// Books a ticket over WeChat for each student; returns their ticket codes.
pub(crate) async fn book_all(app: &TestApp, openids: &[String], activity_id: i64) -> Vec<String> {
    let mut codes = Vec::new();
    for openid in openids {
        match app.say(&wx::click(openid, &format!("BOOK_{activity_id}"))).await {
            wx::Reply::News { url, .. } => codes.push(crate::common::fixtures::ticket_code(&url)),
            other => panic!("{other:?}"),
        }
    }
    codes
}

pub(crate) fn verdict(page: &str) -> (bool, String) {
    let good = page.contains("class=\"result good\"");
    let bad = page.contains("class=\"result bad\"");
    assert!(good ^ bad, "exactly one verdict: {page}");
    let start = page.find("class=\"result").unwrap();
    let text = &page[start..];
    let text =
        text[text.find('>').unwrap() + 1..text.find("</div>").unwrap()].replace("<small>", " ").replace("</small>", "");
    (good, text)
}

#[tokio::test]
async fn door_staff_check_tickets_in_by_url_code_or_student_id() {
    let app = spawn_app().await;
    let csrf = app.login_admin("door").await;
    let a = app.activity("show", 10, Window::Open).await;
    let other = app.activity("other", 10, Window::Open).await;
    let students = app.bound_students(20, 4).await;
    let codes = book_all(&app, &students, a.id).await;
    let other_code = book_all(&app, &students[..1], other.id).await.remove(0);
    let path = format!("/admin/activities/{}/checkin", a.id);
    let scan = |input: String| {
        let csrf = csrf.clone();
        let app = &app;
        let path = path.clone();
        async move {
            let nonce = wechat_ticket::links::nonce();
            let (status, page) = app.admin_post(&path, &[("csrf", &csrf), ("code", &input), ("nonce", &nonce)]).await;
            assert_eq!(status, 200, "{page}");
            verdict(&page)
        }
    };

    // A scanned QR code is the ticket URL.
    let (good, text) = scan(app.url(&format!("/tickets/{}", codes[0]))).await;
    assert!(good && text.contains("检票成功") && text.contains("0002000000"), "{text}");
    // The same ticket again: red, with the time it was used and by whom.
    let (good, text) = scan(codes[0].clone()).await;
    assert!(!good && text.contains("已检票") && text.contains("（door）"), "{text}");
    let hhmm = text.split("已检票 ").nth(1).unwrap().split('（').next().unwrap().to_string();
    assert!(hhmm.len() == 5 && hhmm.as_bytes()[2] == b':', "{text}");
    // A bare code, and a student ID.
    assert!(scan(codes[1].clone()).await.0);
    let (good, text) = scan("0002000002".into()).await;
    assert!(good, "{text}");
    // Cancelled, another activity's, unknown, a student without a ticket.
    app.say(&wx::text(&students[3], "退票 show")).await;
    let (good, text) = scan(codes[3].clone()).await;
    assert!(!good && text.contains("票已退"), "{text}");
    let (good, text) = scan("0002000003".into()).await;
    assert!(!good && text.contains("票已退"), "by student ID too: {text}");
    let (good, text) = scan(other_code.clone()).await;
    assert!(!good && text.contains("不是本活动的票") && text.contains("活动 other"), "{text}");
    let (good, text) = scan("AAAAAAAAAAAAAAAAAAAAAA".into()).await;
    assert!(!good && text.contains("没有这张票"), "{text}");
    let (good, text) = scan("2099999999".into()).await;
    assert!(!good && text.contains("没有票"), "{text}");

    // Counts on the page; the other activity's ticket stayed valid.
    let page = app.get(&path).await.text().await.unwrap();
    assert!(page.contains("<strong id=\"checked-in\">3</strong>"), "{page}");
    assert_eq!(app.count("SELECT count(*) FROM tickets WHERE status = 'used'").await, 3);
    // Check-in needs the CSRF token.
    let (status, _) = app.admin_post(&path, &[("code", &codes[2])]).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn exports_read_back_match_the_tickets_and_formulas_are_inert() {
    let app = spawn_app().await;
    app.login_admin("organiser").await;
    let a = app.activity("export", 10, Window::Open).await;
    let students = app.bound_students(21, 3).await;
    sqlx::query("UPDATE students SET name = '=HYPERLINK(\"http://evil.example\",\"点我\")' WHERE openid = $1")
        .bind(&students[0])
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE students SET name = '李四' WHERE openid = $1")
        .bind(&students[1])
        .execute(&app.pool)
        .await
        .unwrap();
    let codes = book_all(&app, &students, a.id).await;
    app.say(&wx::text(&students[2], "退票 export")).await;

    let csv_resp = app.get(&format!("/admin/activities/{}/export.csv", a.id)).await;
    assert_eq!(csv_resp.status(), 200);
    assert!(csv_resp.headers()["content-disposition"].to_str().unwrap().contains("export-tickets.csv"));
    let bytes = csv_resp.bytes().await.unwrap();
    assert!(bytes.starts_with("\u{feff}".as_bytes()), "UTF-8 BOM for Excel");
    let mut reader = csv::Reader::from_reader(&bytes[3..]);
    assert_eq!(reader.headers().unwrap().iter().collect::<Vec<_>>(), crate::fair_admin::HEADERS);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows.iter().map(|r| r[0].to_string()).collect::<Vec<_>>(), codes);
    assert_eq!(&rows[0][1], "0002100000");
    assert!(rows[0][2].starts_with("'="), "formula made inert: {}", &rows[0][2]);
    assert_eq!(&rows[1][2], "李四");
    assert_eq!(&rows[1][3], "有效");
    assert_eq!(&rows[2][3], "已退票");
    assert!(!rows[2][6].is_empty() && rows[1][6].is_empty());

    let xlsx = app.get(&format!("/admin/activities/{}/export.xlsx", a.id)).await.bytes().await.unwrap();
    let mut book: Xlsx<_> = Xlsx::new(Cursor::new(xlsx.to_vec())).unwrap();
    let sheet = book.worksheet_range_at(0).unwrap().unwrap();
    let cell = |r: usize, c: usize| sheet.get((r, c)).cloned().unwrap_or(Data::Empty);
    assert_eq!(sheet.height(), 4);
    for (i, code) in codes.iter().enumerate() {
        assert_eq!(cell(i + 1, 0), Data::String(code.clone()));
    }
    assert!(matches!(cell(1, 2), Data::String(s) if s.starts_with("=HYPERLINK")), "kept as text");
    let name = book.sheet_names()[0].clone();
    let formulas = book.worksheet_formula(&name).unwrap();
    assert!(formulas.used_cells().all(|(_, _, f)| f.is_empty()), "no formula cells at all");

    // Without a login: no list.
    let anonymous = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let resp = anonymous.get(app.url(&format!("/admin/activities/{}/export.csv", a.id))).send().await.unwrap();
    assert_eq!(resp.status(), 303);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_export_command_writes_the_same_list() {
    let app = spawn_app().await;
    let a = app.activity("shell", 10, Window::Open).await;
    let students = app.bound_students(22, 2).await;
    let codes = book_all(&app, &students, a.id).await;
    let out = std::env::temp_dir().join(format!("wt-export-{}.xlsx", std::process::id()));
    let run = |args: Vec<String>| {
        std::process::Command::new(env!("CARGO_BIN_EXE_wechat-ticket"))
            .env("DATABASE_URL", app.database_url())
            .args(args)
            .output()
            .unwrap()
    };
    let csv = run(vec!["export".into(), "shell".into(), "--format".into(), "csv".into()]);
    assert!(csv.status.success(), "{}", String::from_utf8_lossy(&csv.stderr));
    let text = String::from_utf8(csv.stdout).unwrap();
    assert!(text.starts_with('\u{feff}') && codes.iter().all(|c| text.contains(c.as_str())), "{text}");
    let xlsx = run(vec![
        "export".into(),
        "shell".into(),
        "--format".into(),
        "xlsx".into(),
        "-o".into(),
        out.display().to_string(),
    ]);
    assert!(xlsx.status.success(), "{}", String::from_utf8_lossy(&xlsx.stderr));
    let mut book: Xlsx<_> = calamine::open_workbook(&out).unwrap();
    assert_eq!(book.worksheet_range_at(0).unwrap().unwrap().height(), 3);
    let missing = run(vec!["export".into(), "nosuch".into()]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nosuch"));
    let _ = std::fs::remove_file(out);
}
