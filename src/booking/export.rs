//! Ticket lists for organisers: CSV (UTF-8 with BOM, so Excel opens it) and
//! XLSX. Columns of SPEC §5. A cell a spreadsheet would run as a formula is
//! made inert: prefixed with `'` in CSV, written as a string cell in XLSX.
//! Ticket codes never start like a formula, so they are written unchanged
//! and a code read from a list always finds its ticket.

use rust_xlsxwriter::Workbook;
use sqlx::{FromRow, PgConnection};
use time::OffsetDateTime;

use crate::{booking::TicketStatus, error::AppError, local_time};

pub const HEADERS: [&str; 7] = ["票号", "学号", "姓名", "状态", "抢票时间", "检票时间", "退票时间"];

#[derive(Debug, Clone, FromRow)]
pub struct Row {
    pub code: String,
    pub student_id: String,
    pub name: Option<String>,
    pub status: TicketStatus,
    pub booked_at: OffsetDateTime,
    pub checked_in_at: Option<OffsetDateTime>,
    pub cancelled_at: Option<OffsetDateTime>,
}

/// Every ticket of an activity, cancelled ones included, in the order they were booked.
/// The name is the bound student's, else the roster's. The simulator's test
/// tickets are left out unless `include_test`.
pub async fn rows(conn: &mut PgConnection, activity_id: i64, include_test: bool) -> Result<Vec<Row>, AppError> {
    Ok(sqlx::query_as(
        "SELECT t.code, t.student_id, coalesce(s.name, r.name) AS name, t.status, t.booked_at, t.checked_in_at, \
         t.cancelled_at FROM tickets t \
         LEFT JOIN students s ON s.student_id = t.student_id \
         LEFT JOIN roster r ON r.student_id = t.student_id \
         WHERE t.activity_id = $1 AND ($2 OR NOT t.simulated) ORDER BY t.id",
    )
    .bind(activity_id)
    .bind(include_test)
    .fetch_all(conn)
    .await?)
}

fn cells(row: &Row, tz: &time_tz::Tz) -> [String; 7] {
    let at = |t: Option<OffsetDateTime>| t.map(|t| local_time::precise(t, tz)).unwrap_or_default();
    [
        row.code.clone(),
        row.student_id.clone(),
        row.name.clone().unwrap_or_default(),
        row.status.label().to_string(),
        local_time::precise(row.booked_at, tz),
        at(row.checked_in_at),
        at(row.cancelled_at),
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
            // write_string always makes a text cell: "=…" stays text, never a formula.
            sheet.write_string(i as u32 + 1, col as u16, cell).map_err(fail)?;
        }
    }
    sheet.set_column_width(0, 26).map_err(fail)?;
    for col in 4..=6 {
        sheet.set_column_width(col, 20).map_err(fail)?;
    }
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
