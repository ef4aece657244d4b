//! What an admin sees of the waiting list and the lottery: the activity
//! page's 候补 section (count, the first ten in line, how the list went) and
//! the exports' 候补位置 and 抽签名次 columns, over HTTP as an organiser
//! reads them.

use std::io::Cursor;

use calamine::{Data, Reader, Xlsx};
use time::OffsetDateTime;
use wechat_ticket::local_time;

use crate::common::{Settings, TestApp, fixtures::Window, spawn_app, spawn_app_with, wx};

/// The export's header row, written out here rather than read from the product, so a change to it fails.
pub(crate) const HEADERS: [&str; 14] = [
    "票号",
    "学号",
    "姓名",
    "状态",
    "抢票时间",
    "检票时间",
    "退票时间",
    "候补位置",
    "抽签名次",
    "区域",
    "排",
    "座",
    "类型",
    "备注",
];

async fn say(app: &TestApp, openid: &str, text: &str) -> String {
    app.say(&wx::text(openid, text)).await.text().to_string()
}

/// The 候补 section of an activity's admin page.
async fn waiting_section(app: &TestApp, activity_id: i64) -> String {
    let resp = app.get(&format!("/admin/activities/{activity_id}")).await;
    assert_eq!(resp.status(), 200);
    let page = resp.text().await.unwrap();
    let start = page.find("<section class=\"card\" id=\"waiting\">").expect("a 候补 section");
    let door = page.find("id=\"door\"").expect("the door section");
    assert!(door < start, "the 候补 section comes after the door section");
    let section = &page[start..];
    section[..section.find("</section>").unwrap()].to_string()
}

fn strong(section: &str, id: &str) -> String {
    let marker = format!("<strong id=\"{id}\">");
    let start = section.find(&marker).unwrap_or_else(|| panic!("#{id} in {section}")) + marker.len();
    section[start..].split('<').next().unwrap().to_string()
}

async fn csv_rows(app: &TestApp, path: &str) -> Vec<csv::StringRecord> {
    let resp = app.get(path).await;
    assert_eq!(resp.status(), 200);
    let bytes = resp.bytes().await.unwrap();
    assert!(bytes.starts_with("\u{feff}".as_bytes()));
    let mut reader = csv::Reader::from_reader(&bytes[3..]);
    assert_eq!(reader.headers().unwrap().iter().collect::<Vec<_>>(), HEADERS);
    reader.records().map(Result::unwrap).collect()
}

fn column(rows: &[csv::StringRecord], col: usize) -> Vec<String> {
    rows.iter().map(|r| r[col].to_string()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_sees_the_line_and_the_export_says_how_each_place_was_got() {
    // A school whose student IDs may start with `=`: the list must stay inert.
    let app = spawn_app_with(Settings::default().set("STUDENT_ID_PATTERN", r"^(=1\+1|[0-9]{10})$")).await;
    app.login_admin("organiser").await;
    let a = app.activity("hall", 2, Window::Open).await;

    let before = waiting_section(&app, a.id).await;
    assert_eq!(strong(&before, "waiting-count"), "0");
    assert!(before.contains("现在没有人在候补") && before.contains("还有票"), "{before}");
    assert!(!before.contains("waiting-head"));

    let holders = app.bound_students(50, 2).await;
    for openid in &holders {
        assert!(matches!(app.say(&wx::click(openid, &format!("BOOK_{}", a.id))).await, wx::Reply::News { .. }));
    }
    let sold_out = waiting_section(&app, a.id).await;
    assert!(sold_out.contains("现在没有人在候补") && !sold_out.contains("还有票"), "{sold_out}");

    // First in line: a student bound through the form with an `=` student ID and markup for a name.
    let first = "o_equals";
    let link = app.say(&wx::text(first, "绑定")).await.links().into_iter().next().expect("a bind link");
    let (status, page) = app.submit_bind(&link, "=1+1", "<i>王</i>").await;
    assert!(status == 200 && page.contains("绑定成功"), "{status} {page}");
    let line = app.bound_students(51, 11).await;
    for (i, openid) in std::iter::once(&first.to_string()).chain(&line).enumerate() {
        let joined = say(&app, openid, "候补 hall").await;
        assert!(joined.contains(&format!("排第 {} 位", i + 1)), "{joined}");
    }
    let ids: Vec<String> = (0..11).map(|i| format!("0005100{i:03}")).collect();

    let section = waiting_section(&app, a.id).await;
    assert_eq!(strong(&section, "waiting-count"), "12");
    assert_eq!(strong(&section, "waiting-promoted"), "0");
    let head = &section[section.find("id=\"waiting-head\"").expect("the head of the line")..];
    let at = |needle: &str| head.find(&format!("<td>{needle}</td>")).unwrap_or_else(|| panic!("{needle}: {head}"));
    let mut shown = vec![at("=1+1")];
    shown.extend(ids[..9].iter().map(|id| at(id)));
    assert!(shown.windows(2).all(|w| w[0] < w[1]), "the first ten in line order");
    assert!(!head.contains(&ids[9]) && !head.contains(&ids[10]), "the 11th and 12th are not listed");
    assert!(head.contains("<td>1</td>") && head.contains("<td>10</td>") && !head.contains("<td>11</td>"));
    assert!(head.contains("王") && !head.contains("<i>"), "the name is shown as text: {head}");
    let joined_at: OffsetDateTime = sqlx::query_scalar("SELECT joined_at FROM waiting_list WHERE student_id = '=1+1'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let tz = time_tz::timezones::get_by_name("Asia/Shanghai").unwrap();
    assert!(head.contains(&local_time::precise(joined_at, tz)), "joined at, in local time: {head}");

    // A cancel gives the place to the first in line.
    assert!(say(&app, &holders[0], "退票 hall").await.contains("已退掉"));
    let section = waiting_section(&app, a.id).await;
    assert_eq!(strong(&section, "waiting-count"), "11");
    assert_eq!(strong(&section, "waiting-promoted"), "1");
    let head = &section[section.find("id=\"waiting-head\"").unwrap()..];
    assert!(head.contains(&format!("<td>{}</td>", ids[9])) && !head.contains("=1+1"), "{head}");

    let path = format!("/admin/activities/{}/export.csv", a.id);
    let rows = csv_rows(&app, &path).await;
    assert_eq!(rows.len(), 3 + 11, "three tickets, then the eleven still waiting");
    let mut students = vec!["0005000000".to_string(), "0005000001".into(), "'=1+1".into()];
    students.extend(ids.iter().cloned());
    assert_eq!(column(&rows, 1), students, "tickets in booking order, then the line in order");
    assert_eq!(column(&rows[..3], 3), ["已退票", "有效", "有效"]);
    assert_eq!(column(&rows[..3], 7), ["", "", "候补转正"], "only the promoted ticket came from the list");
    assert_eq!(column(&rows[3..], 7), (1..=11).map(|p| p.to_string()).collect::<Vec<_>>());
    assert!(
        rows[3..].iter().all(|r| &r[3] == "候补中" && (0..7).filter(|&c| c != 1 && c != 3).all(|c| r[c].is_empty()))
    );
    assert!(rows.iter().all(|r| r[8].is_empty()), "a rush has no lottery rank");
    assert!(rows[2][2].contains("王"));

    let xlsx = app.get(&format!("/admin/activities/{}/export.xlsx", a.id)).await.bytes().await.unwrap();
    let mut book: Xlsx<_> = Xlsx::new(Cursor::new(xlsx.to_vec())).unwrap();
    let sheet = book.worksheet_range_at(0).unwrap().unwrap();
    let cell = |r: usize, c: usize| sheet.get((r, c)).cloned().unwrap_or(Data::Empty);
    assert_eq!(sheet.height(), 15);
    assert_eq!((0..14).map(|c| cell(0, c)).collect::<Vec<_>>(), HEADERS.map(|h| Data::String(h.into())));
    assert_eq!(cell(3, 1), Data::String("=1+1".into()), "a text cell");
    assert_eq!(cell(3, 7), Data::String("候补转正".into()));
    for p in 1..=11 {
        assert_eq!(cell(3 + p, 7), Data::Float(p as f64), "a position is a number");
        assert_eq!(cell(3 + p, 3), Data::String("候补中".into()));
        assert_eq!(cell(3 + p, 0), Data::Empty, "no ticket code");
    }
    let name = book.sheet_names()[0].clone();
    let formulas = book.worksheet_formula(&name).unwrap();
    assert!(formulas.used_cells().all(|(_, _, f)| f.is_empty()), "no formula cells at all");

    // One leaves; a simulator test student joins, listed only with the test tickets.
    assert!(say(&app, &line[10], "取消候补 hall").await.contains("已退出"));
    sqlx::query("INSERT INTO students (openid, student_id, bound_at) VALUES ('simulator-t1', '2099000001', now())")
        .execute(&app.pool)
        .await
        .unwrap();
    assert!(say(&app, "simulator-t1", "候补 hall").await.contains("排第 11 位"));
    let section = waiting_section(&app, a.id).await;
    assert_eq!((strong(&section, "waiting-count"), strong(&section, "waiting-left")), ("11".into(), "1".into()));
    assert!(!section.contains("2099000001"), "11th: not listed");
    let rows = csv_rows(&app, &path).await;
    assert_eq!(rows.len(), 3 + 10);
    assert!(!column(&rows, 1).contains(&"2099000001".to_string()), "test entries stay out");
    let rows = csv_rows(&app, &format!("{path}?test=1")).await;
    assert_eq!((&rows[13][1], &rows[13][7]), ("2099000001", "11"));

    // Without a login: neither the page nor the list.
    let anonymous = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    for path in [format!("/admin/activities/{}", a.id), path] {
        let resp = anonymous.get(app.url(&path)).send().await.unwrap();
        assert_eq!(resp.status(), 303, "{path}");
        assert!(resp.headers()["location"].to_str().unwrap().starts_with("/admin/login"), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_export_shows_each_students_lottery_rank() {
    let app = spawn_app().await;
    app.login_admin("organiser").await;
    let a = app.activity("draw", 2, Window::Open).await;
    sqlx::query("UPDATE activities SET mode = 'lottery' WHERE id = $1").bind(a.id).execute(&app.pool).await.unwrap();
    let before = waiting_section(&app, a.id).await;
    assert!(before.contains("现在没有人在候补") && before.contains("抽签后"), "{before}");
    assert!(!before.contains("还有票"), "a lottery is not short of a line: {before}");

    // A drawn lottery as the draw leaves it: ranks 1 and 2 won tickets, 3 waits.
    let students = app.bound_students(52, 4).await;
    let hex = |n: u8| format!("{n:02x}").repeat(32);
    sqlx::query(
        "INSERT INTO lotteries (activity_id, server_seed, commitment, entries, pool_hash, sealed_at, winners, capacity, \
         drawn_at) VALUES ($1, decode($2, 'hex'), $3, 3, $4, now(), 2, 2, now())",
    )
    .bind(a.id)
    .bind(hex(1))
    .bind(hex(2))
    .bind(hex(3))
    .execute(&app.pool)
    .await
    .unwrap();
    // Entered in a different order from the ranks; the second-ranked booked first.
    let entries = [("0005200000", 3), ("0005200001", 1), ("0005200002", 2)];
    for (i, (student_id, rank)) in entries.iter().enumerate() {
        sqlx::query(
            "INSERT INTO lottery_entries (activity_id, student_id, openid, eid, rank) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(a.id)
        .bind(student_id)
        .bind(&students[i])
        .bind(hex(10 + i as u8))
        .bind(rank)
        .execute(&app.pool)
        .await
        .unwrap();
    }
    for i in [2, 1] {
        sqlx::query(
            "WITH t AS (INSERT INTO tickets (code, activity_id, student_id, slot, openid) \
             VALUES (md5(random()::text), $1, $2, 0, $3) RETURNING id) \
             UPDATE lottery_entries SET ticket_id = (SELECT id FROM t) WHERE activity_id = $1 AND student_id = $2",
        )
        .bind(a.id)
        .bind(entries[i].0)
        .bind(&students[i])
        .execute(&app.pool)
        .await
        .unwrap();
    }
    sqlx::query("INSERT INTO waiting_list (activity_id, student_id, openid) VALUES ($1, $2, $3)")
        .bind(a.id)
        .bind(entries[0].0)
        .bind(&students[0])
        .execute(&app.pool)
        .await
        .unwrap();

    let rows = csv_rows(&app, &format!("/admin/activities/{}/export.csv", a.id)).await;
    assert_eq!(column(&rows, 1), ["0005200002", "0005200001", "0005200000"]);
    assert_eq!(column(&rows, 8), ["2", "1", "3"], "each row carries its student's rank");
    assert_eq!(column(&rows, 7), ["", "", "1"], "the third-ranked is first in line");
    assert_eq!(&rows[2][3], "候补中");

    let xlsx = app.get(&format!("/admin/activities/{}/export.xlsx", a.id)).await.bytes().await.unwrap();
    let mut book: Xlsx<_> = Xlsx::new(Cursor::new(xlsx.to_vec())).unwrap();
    let sheet = book.worksheet_range_at(0).unwrap().unwrap();
    let ranks: Vec<Option<Data>> = (1..4).map(|r| sheet.get((r, 8)).cloned()).collect();
    assert_eq!(ranks, [2.0, 1.0, 3.0].map(|r| Some(Data::Float(r))));

    // A simulator test student behind them holds a real place in line: listed, marked.
    sqlx::query("INSERT INTO students (openid, student_id, bound_at) VALUES ('simulator-t2', '2099000002', now())")
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO waiting_list (activity_id, student_id, openid) VALUES ($1, '2099000002', 'simulator-t2')")
        .bind(a.id)
        .execute(&app.pool)
        .await
        .unwrap();
    let section = waiting_section(&app, a.id).await;
    assert_eq!(strong(&section, "waiting-count"), "2");
    let (first, test) = (section.find("<td>0005200000</td>").unwrap(), section.find("<td>2099000002</td>").unwrap());
    assert!(first < test && section[test..].contains("（测试）"), "{section}");
    assert!(!section[..test].contains("（测试）"), "{section}");
    let rows = csv_rows(&app, &format!("/admin/activities/{}/export.csv", a.id)).await;
    assert_eq!(rows.len(), 3, "the test entry stays out of the list");
}
