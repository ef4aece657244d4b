//! Ticket lists for organisers: CSV (UTF-8 with BOM, so Excel opens it) and
//! XLSX. Columns of SPEC §5. A cell a spreadsheet would run as a formula is
//! made inert: prefixed with `'` in CSV, written as a string cell in XLSX.

use rust_xlsxwriter::Workbook;
use sqlx::{FromRow, PgConnection};
use time::OffsetDateTime;

use crate::{booking::tickets, error::AppError, local_time};

pub const HEADERS: [&str; 7] = ["票号", "学号", "姓名", "状态", "抢票时间", "检票时间", "退票时间"];

#[derive(Debug, Clone, FromRow)]
pub struct Row {
    pub code: String,
    pub student_id: String,
    pub name: Option<String>,
    pub status: String,
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
        tickets::status_label(&row.status).to_string(),
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
            writer.write_record(cells(row, tz).iter().map(|c| inert(c))).map_err(fail)?;
        }
        writer.flush()?;
    }
    Ok(out)
}

pub fn xlsx(rows: &[Row], tz: &time_tz::Tz, sheet_name: &str) -> Result<Vec<u8>, AppError> {
    let fail = |e: rust_xlsxwriter::XlsxError| AppError::Internal(format!("xlsx: {e}"));
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    // Sheet names: at most 31 characters, none of []:*?/\
    let name: String = sheet_name.chars().filter(|c| !"[]:*?/\\".contains(*c)).take(31).collect();
    if !name.is_empty() {
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
}
