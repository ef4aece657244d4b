//! Ticket lists for organisers: CSV (UTF-8 with BOM, so Excel opens it) and
//! XLSX. Columns of SPEC §5, then how each place was got: from the waiting
//! list (候补转正) and the lottery rank (抽签名次), and the place (区域, 排,
//! 座; empty for standing room and tickets not placed yet). After the tickets come the
//! students still on the waiting list, in line order, so an organiser sees
//! who is next. A cell a spreadsheet would run as a formula is made inert:
//! prefixed with `'` in CSV, written as a string cell in XLSX. Ticket codes
//! never start like a formula, so they are written unchanged and a code read
//! from a list always finds its ticket. Last, 类型 (嘉宾 for a guest ticket,
//! 学生 otherwise) and a guest ticket's 备注; a guest without a student ID
//! has an empty 学号 and their name under 姓名.

use rust_xlsxwriter::Workbook;
use sqlx::{FromRow, PgConnection};
use time::OffsetDateTime;

use crate::{
    booking::{TicketStatus, seats::Place, students::TEST_OPENID_PREFIX, tickets::is_guest_id},
    error::AppError,
    local_time,
};

pub const HEADERS: [&str; 14] = [
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

/// The 类型 of a guest ticket, and of everything else (a booking, a student waiting).
pub const GUEST_LABEL: &str = "嘉宾";
pub const STUDENT_LABEL: &str = "学生";

/// What the 候补位置 column says of a ticket that came from the waiting list.
pub const FROM_WAITING_LIST: &str = "候补转正";
/// The status column of a student still waiting (who holds no ticket).
pub const WAITING_LABEL: &str = "候补中";

#[derive(Debug, Clone)]
pub struct Row {
    pub student_id: String,
    pub name: Option<String>,
    pub entry: Entry,
    /// 1-based, once the activity's lottery was drawn.
    pub lottery_rank: Option<i32>,
    /// A guest ticket (booking/guests.rs), with its note.
    pub guest: Option<GuestMark>,
}

#[derive(Debug, Clone)]
pub struct GuestMark {
    pub note: Option<String>,
}

/// A row is a ticket or a place in the waiting list, never both.
#[derive(Debug, Clone)]
pub enum Entry {
    Ticket {
        code: String,
        status: TicketStatus,
        booked_at: OffsetDateTime,
        checked_in_at: Option<OffsetDateTime>,
        cancelled_at: Option<OffsetDateTime>,
        /// Issued to the head of the waiting list.
        from_waiting_list: bool,
        /// Where it sits: none for standing room, a ticket not placed yet, or a cancelled one.
        place: Option<Place>,
    },
    Waiting {
        /// In the whole line, test students included (what the student was told).
        position: i64,
    },
}

#[derive(FromRow)]
struct TicketRow {
    code: String,
    student_id: String,
    name: Option<String>,
    status: TicketStatus,
    booked_at: OffsetDateTime,
    checked_in_at: Option<OffsetDateTime>,
    cancelled_at: Option<OffsetDateTime>,
    from_waiting_list: bool,
    lottery_rank: Option<i32>,
    zone: Option<String>,
    row_label: Option<String>,
    seat_label: Option<String>,
    guest: bool,
    guest_note: Option<String>,
}

#[derive(FromRow)]
struct WaitingRow {
    student_id: String,
    name: Option<String>,
    position: i64,
    lottery_rank: Option<i32>,
}

/// Every ticket of an activity, cancelled ones included, in the order they
/// were booked; then everyone still on its waiting list, in line order. The
/// name is the bound student's, else the roster's. The simulator's test
/// tickets and entries are left out unless `include_test`.
pub async fn rows(conn: &mut PgConnection, activity_id: i64, include_test: bool) -> Result<Vec<Row>, AppError> {
    let tickets: Vec<TicketRow> = sqlx::query_as(
        "SELECT t.code, t.student_id, coalesce(t.guest_name, s.name, r.name) AS name, t.status, t.booked_at, t.checked_in_at, \
         t.cancelled_at, \
         EXISTS (SELECT 1 FROM waiting_list w WHERE w.ticket_id = t.id AND w.state = 'promoted') \
             AS from_waiting_list, \
         e.rank AS lottery_rank, \
         CASE WHEN t.status <> 'cancelled' THEN t.zone END AS zone, \
         CASE WHEN t.status <> 'cancelled' THEN hs.row_label END AS row_label, \
         CASE WHEN t.status <> 'cancelled' THEN hs.seat_label END AS seat_label, \
         t.guest_name IS NOT NULL AS guest, t.guest_note FROM tickets t \
         LEFT JOIN hall_seats hs ON hs.id = t.seat_id \
         LEFT JOIN students s ON s.student_id = t.student_id \
         LEFT JOIN roster r ON r.student_id = t.student_id \
         LEFT JOIN lottery_entries e ON e.activity_id = t.activity_id AND e.student_id = t.student_id \
         WHERE t.activity_id = $1 AND ($2 OR NOT t.simulated) ORDER BY t.id",
    )
    .bind(activity_id)
    .bind(include_test)
    .fetch_all(&mut *conn)
    .await?;
    // Positions are counted over the whole line before test entries are left
    // out, so each is the one the student was told.
    let waiting: Vec<WaitingRow> = sqlx::query_as(
        "SELECT l.student_id, coalesce(s.name, r.name) AS name, l.position, e.rank AS lottery_rank FROM ( \
             SELECT id, activity_id, student_id, openid, row_number() OVER (ORDER BY id) AS position \
             FROM waiting_list WHERE activity_id = $1 AND state = 'waiting') l \
         LEFT JOIN students s ON s.student_id = l.student_id \
         LEFT JOIN roster r ON r.student_id = l.student_id \
         LEFT JOIN lottery_entries e ON e.activity_id = l.activity_id AND e.student_id = l.student_id \
         WHERE $2 OR NOT starts_with(l.openid, $3) ORDER BY l.id",
    )
    .bind(activity_id)
    .bind(include_test)
    .bind(TEST_OPENID_PREFIX)
    .fetch_all(conn)
    .await?;
    let tickets = tickets.into_iter().map(|t| Row {
        // A guest without a student ID has only a synthetic one, which means nothing to a reader.
        student_id: if is_guest_id(&t.student_id) { String::new() } else { t.student_id },
        name: t.name,
        lottery_rank: t.lottery_rank,
        guest: t.guest.then_some(GuestMark { note: t.guest_note }),
        entry: Entry::Ticket {
            code: t.code,
            status: t.status,
            booked_at: t.booked_at,
            checked_in_at: t.checked_in_at,
            cancelled_at: t.cancelled_at,
            from_waiting_list: t.from_waiting_list,
            place: t.zone.map(|zone| Place { zone, row_label: t.row_label, seat_label: t.seat_label }),
        },
    });
    let waiting = waiting.into_iter().map(|w| Row {
        student_id: w.student_id,
        name: w.name,
        lottery_rank: w.lottery_rank,
        guest: None,
        entry: Entry::Waiting { position: w.position },
    });
    Ok(tickets.chain(waiting).collect())
}

fn cells(row: &Row, tz: &time_tz::Tz) -> [String; 14] {
    let at = |t: Option<OffsetDateTime>| t.map(|t| local_time::precise(t, tz)).unwrap_or_default();
    let (code, status, booked, checked_in, cancelled, waiting, place) = match &row.entry {
        Entry::Ticket { code, status, booked_at, checked_in_at, cancelled_at, from_waiting_list, place } => (
            code.clone(),
            status.label(),
            at(Some(*booked_at)),
            at(*checked_in_at),
            at(*cancelled_at),
            if *from_waiting_list { FROM_WAITING_LIST.to_string() } else { String::new() },
            place.clone(),
        ),
        Entry::Waiting { position } => {
            (String::new(), WAITING_LABEL, String::new(), String::new(), String::new(), position.to_string(), None)
        }
    };
    let Place { zone, row_label, seat_label } =
        place.unwrap_or(Place { zone: String::new(), row_label: None, seat_label: None });
    [
        code,
        row.student_id.clone(),
        row.name.clone().unwrap_or_default(),
        status.to_string(),
        booked,
        checked_in,
        cancelled,
        waiting,
        row.lottery_rank.map(|r| r.to_string()).unwrap_or_default(),
        zone,
        row_label.unwrap_or_default(),
        seat_label.unwrap_or_default(),
        if row.guest.is_some() { GUEST_LABEL } else { STUDENT_LABEL }.to_string(),
        row.guest.as_ref().and_then(|g| g.note.clone()).unwrap_or_default(),
    ]
}

/// A cell that starts like a formula gets a leading `'`, which spreadsheets show as text.
pub fn inert(cell: &str) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{cell}") } else { cell.to_string() }
}

pub fn csv(rows: &[Row], tz: &time_tz::Tz) -> Result<Vec<u8>, AppError> {
    let mut out = "\u{feff}".as_bytes().to_vec();
    {
        let mut writer = csv::Writer::from_writer(&mut out);
        let fail = |e: csv::Error| AppError::Internal(format!("csv: {e}"));
        writer.write_record(HEADERS).map_err(fail)?;
        for row in rows {
            let [code, rest @ ..] = cells(row, tz);
            let record = std::iter::once(code).chain(rest.iter().map(|c| inert(c)));
            writer.write_record(record).map_err(fail)?;
        }
        writer.flush()?;
    }
    Ok(out)
}

/// 候补位置; 抽签名次 follows it.
const POSITION_COLUMN: u16 = 7;
/// 抽签名次, the last column written as a number: rows and seats are labels
/// as people write them ("A", "12"), so they stay text.
const RANK_COLUMN: u16 = 8;

pub fn xlsx(rows: &[Row], tz: &time_tz::Tz, sheet_name: &str) -> Result<Vec<u8>, AppError> {
    let fail = |e: rust_xlsxwriter::XlsxError| AppError::Internal(format!("xlsx: {e}"));
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    if let Some(name) = sheet_title(sheet_name) {
        sheet.set_name(&name).map_err(fail)?;
    }
    for (col, header) in HEADERS.iter().enumerate() {
        sheet.write_string(0, col as u16, *header).map_err(fail)?;
    }
    for (i, row) in rows.iter().enumerate() {
        for (col, cell) in cells(row, tz).iter().enumerate() {
            let (row, col) = (i as u32 + 1, col as u16);
            match cell.parse::<u32>() {
                // Positions and ranks as numbers, so the sheet sorts them as numbers.
                Ok(n) if (POSITION_COLUMN..=RANK_COLUMN).contains(&col) => {
                    sheet.write_number(row, col, n).map_err(fail)?
                }
                // write_string always makes a text cell: "=…" stays text, never a formula.
                _ => sheet.write_string(row, col, cell).map_err(fail)?,
            };
        }
    }
    sheet.set_column_width(0, 26).map_err(fail)?;
    for col in 4..=6 {
        sheet.set_column_width(col, 20).map_err(fail)?;
    }
    for col in POSITION_COLUMN..HEADERS.len() as u16 {
        sheet.set_column_width(col, 10).map_err(fail)?;
    }
    sheet.set_column_width(RANK_COLUMN + 1, 16).map_err(fail)?;
    // 备注, the guest note.
    sheet.set_column_width(HEADERS.len() as u16 - 1, 30).map_err(fail)?;
    book.save_to_buffer().map_err(fail)
}

/// A sheet name Excel accepts, from an activity name: none of `[]:*?/\`, at
/// most 31 UTF-16 units (an emoji takes two), not starting or ending with `'`.
/// `None` when nothing is left: the sheet keeps its default name.
fn sheet_title(activity_name: &str) -> Option<String> {
    let mut title = String::new();
    let mut units = 0;
    for c in activity_name.chars().filter(|c| !"[]:*?/\\".contains(*c) && !c.is_control()) {
        units += c.len_utf16();
        if units > 31 {
            break;
        }
        title.push(c);
    }
    let title = title.trim_matches(|c: char| c == '\'' || c.is_whitespace());
    // Excel keeps "History" for itself.
    (!title.is_empty() && !title.eq_ignore_ascii_case("history")).then(|| title.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_starts_are_made_inert() {
        assert_eq!(inert("=HYPERLINK(\"http://x\")"), "'=HYPERLINK(\"http://x\")");
        assert_eq!(inert("+1"), "'+1");
        assert_eq!(inert("-1"), "'-1");
        assert_eq!(inert("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(inert("张三"), "张三");
        assert_eq!(inert("2024010001"), "2024010001");
    }

    #[test]
    fn sheet_titles_are_names_excel_accepts() {
        assert_eq!(sheet_title("新年音乐会").as_deref(), Some("新年音乐会"));
        assert_eq!(sheet_title("'Hamlet'").as_deref(), Some("Hamlet"));
        assert_eq!(sheet_title("a[b]:c*?/\\d").as_deref(), Some("abcd"));
        assert_eq!(sheet_title(&"😀".repeat(40)).as_deref(), Some("😀".repeat(15).as_str()));
        assert_eq!(sheet_title("[]"), None);
        assert_eq!(sheet_title("History"), None);
        for name in ["'Hamlet'", &"😀".repeat(40), &format!("{}'x", "a".repeat(30)), "a\tb"] {
            let title = sheet_title(name).unwrap();
            rust_xlsxwriter::utility::check_sheet_name(&title).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn ticket_codes_never_start_like_a_formula() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100_000 {
            let code = crate::booking::tickets::new_code();
            assert!(crate::booking::tickets::looks_like_code(&code), "{code}");
            assert!(!code.starts_with(['=', '+', '-', '@', '_']), "{code}");
            assert_eq!(inert(&code), code);
            assert!(seen.insert(code));
        }
        // Every letter and digit comes up first: the first character is drawn, not fixed.
        let firsts: std::collections::HashSet<char> = seen.iter().map(|c| c.chars().next().unwrap()).collect();
        assert_eq!(firsts.len(), 62);
    }
}
