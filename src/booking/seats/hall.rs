//! Halls: reusable seat maps, imported from a CSV file with the header
//! `zone,row,seat` (and optionally `x,y`), one seat per line, all three as
//! people write them (`A区,3,12`). A bad file is refused as a whole, with the
//! line that is wrong; nothing of it is stored.

use sqlx::{FromRow, PgConnection};

use crate::error::AppError;

/// More seats than any campus hall has; a file past it is not a seat map.
pub const MAX_SEATS: usize = 20_000;
const MAX_ZONE_CHARS: usize = 32;
const MAX_LABEL_CHARS: usize = 16;
const MAX_NAME_CHARS: usize = 64;

/// One seat of a file, as read.
#[derive(Debug, Clone, PartialEq)]
pub struct SeatLine {
    pub zone: String,
    pub row: String,
    pub seat: String,
    /// Where to draw it; without, seats are drawn row by row in file order.
    pub at: Option<(f32, f32)>,
}

/// Why a file was refused: the line (1 is the header) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("第 {line} 行：{why}")]
pub struct BadLine {
    pub line: u64,
    pub why: String,
}

fn bad(line: u64, why: impl Into<String>) -> BadLine {
    BadLine { line, why: why.into() }
}

/// Reads a seat map. Every seat is checked before anything is kept.
pub fn parse(bytes: &[u8]) -> Result<Vec<SeatLine>, BadLine> {
    let bytes = bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(bytes);
    let mut records = reader.byte_records();
    let header = match records.next() {
        Some(Ok(h)) => h,
        Some(Err(e)) => return Err(bad(1, format!("读不懂：{e}"))),
        None => return Err(bad(1, "文件是空的，第一行应为 zone,row,seat")),
    };
    let names: Vec<String> = header
        .iter()
        .map(|f| std::str::from_utf8(f).map(|s| s.trim().to_ascii_lowercase()))
        .collect::<Result<_, _>>()
        .map_err(|_| bad(1, "不是 UTF-8 编码（请用 UTF-8 保存 CSV）"))?;
    let column = |name: &str| names.iter().position(|n| n == name);
    let (Some(zone_at), Some(row_at), Some(seat_at)) = (column("zone"), column("row"), column("seat")) else {
        return Err(bad(1, "第一行应为 zone,row,seat（可再加 x,y）"));
    };
    let xy = match (column("x"), column("y")) {
        (Some(x), Some(y)) => Some((x, y)),
        (None, None) => None,
        _ => return Err(bad(1, "x 和 y 要一起给出")),
    };
    let mut seats = Vec::new();
    let mut seen = std::collections::HashMap::new();
    for record in records {
        let record = record.map_err(|e| bad(e.position().map_or(0, |p| p.line()), format!("读不懂：{e}")))?;
        let line = record.position().map_or(0, |p| p.line());
        if record.iter().all(|f| f.iter().all(u8::is_ascii_whitespace)) {
            continue;
        }
        if seats.len() == MAX_SEATS {
            return Err(bad(line, format!("座位超过 {MAX_SEATS} 个")));
        }
        let text = |at: usize, what: &str| -> Result<String, BadLine> {
            let raw = record.get(at).unwrap_or_default();
            let value = std::str::from_utf8(raw).map_err(|_| bad(line, "不是 UTF-8 编码（请用 UTF-8 保存 CSV）"))?;
            let value = value.trim();
            if value.is_empty() {
                return Err(bad(line, format!("{what}是空的")));
            }
            Ok(value.to_string())
        };
        let zone = text(zone_at, "区域（zone）")?;
        let row = text(row_at, "排（row）")?;
        let seat = text(seat_at, "座（seat）")?;
        if zone.chars().count() > MAX_ZONE_CHARS {
            return Err(bad(line, format!("区域名最多 {MAX_ZONE_CHARS} 个字")));
        }
        for (value, what) in [(&row, "排"), (&seat, "座")] {
            if value.chars().count() > MAX_LABEL_CHARS {
                return Err(bad(line, format!("{what}号最多 {MAX_LABEL_CHARS} 个字")));
            }
            // A seat is posted as zone-row-seat: row and seat cannot hold the separator.
            if value.contains('-') {
                return Err(bad(line, format!("{what}号不能含有“-”：{value}")));
            }
        }
        let at = match xy {
            None => None,
            Some((x_at, y_at)) => {
                let number = |at: usize, what: &str| -> Result<f32, BadLine> {
                    let value = text(at, what)?;
                    value
                        .parse::<f32>()
                        .ok()
                        .filter(|v| v.is_finite() && v.abs() <= 100_000.0)
                        .ok_or_else(|| bad(line, format!("{what}不是数：{value}")))
                };
                Some((number(x_at, "x")?, number(y_at, "y")?))
            }
        };
        if let Some(first) = seen.insert((zone.clone(), row.clone(), seat.clone()), line) {
            return Err(bad(line, format!("{zone} {row}排{seat}座 重复了（第 {first} 行已有）")));
        }
        seats.push(SeatLine { zone, row, seat, at });
    }
    if seats.is_empty() {
        return Err(bad(2, "没有座位"));
    }
    Ok(seats)
}

#[derive(Debug, Clone, FromRow)]
pub struct Hall {
    pub id: i64,
    pub name: String,
    pub seats: i64,
    /// Distinct zones among its seats.
    pub zones: i64,
    /// Activities that use it (a hall in use cannot be deleted).
    pub used_by: i64,
}

/// Stores a parsed seat map under `name` (a new hall; a name in use is refused).
pub async fn import(conn: &mut PgConnection, name: &str, seats: &[SeatLine]) -> Result<Hall, AppError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(AppError::Invalid(format!("场馆名要有 1 到 {MAX_NAME_CHARS} 个字。")));
    }
    let id: Option<i64> =
        sqlx::query_scalar("INSERT INTO halls (name) VALUES ($1) ON CONFLICT (name) DO NOTHING RETURNING id")
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?;
    let id = id.ok_or_else(|| AppError::Invalid(format!("场馆 {name} 已经有了；换一个名字，或先删掉旧的。")))?;
    let column = |f: fn(&SeatLine) -> String| seats.iter().map(f).collect::<Vec<_>>();
    let positions: Vec<i32> = (1..=seats.len() as i32).collect();
    sqlx::query(
        "INSERT INTO hall_seats (hall_id, position, zone, row_label, seat_label, x, y) \
         SELECT $1, p, z, r, s, x, y FROM unnest($2::int[], $3::text[], $4::text[], $5::text[], $6::real[], $7::real[]) \
         AS u(p, z, r, s, x, y)",
    )
    .bind(id)
    .bind(&positions)
    .bind(column(|s| s.zone.clone()))
    .bind(column(|s| s.row.clone()))
    .bind(column(|s| s.seat.clone()))
    .bind(seats.iter().map(|s| s.at.map(|a| a.0)).collect::<Vec<_>>())
    .bind(seats.iter().map(|s| s.at.map(|a| a.1)).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    by_name(conn, name).await?.ok_or(AppError::NotFound)
}

const HALL_COLUMNS: &str = "h.id, h.name, (SELECT count(*) FROM hall_seats s WHERE s.hall_id = h.id) AS seats, \
     (SELECT count(DISTINCT s.zone) FROM hall_seats s WHERE s.hall_id = h.id) AS zones, \
     (SELECT count(*) FROM activities a WHERE a.hall_id = h.id) AS used_by";

pub async fn by_id(conn: &mut PgConnection, id: i64) -> Result<Option<Hall>, AppError> {
    Ok(sqlx::query_as(&format!("SELECT {HALL_COLUMNS} FROM halls h WHERE h.id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?)
}

/// The activities that use a hall, as an admin names them: `key 名称`.
pub async fn users(conn: &mut PgConnection, hall_id: i64) -> Result<Vec<String>, AppError> {
    Ok(sqlx::query_scalar("SELECT key || ' ' || name FROM activities WHERE hall_id = $1 ORDER BY id")
        .bind(hall_id)
        .fetch_all(conn)
        .await?)
}

pub async fn by_name(conn: &mut PgConnection, name: &str) -> Result<Option<Hall>, AppError> {
    Ok(sqlx::query_as(&format!("SELECT {HALL_COLUMNS} FROM halls h WHERE h.name = $1"))
        .bind(name.trim())
        .fetch_optional(conn)
        .await?)
}

pub async fn list(conn: &mut PgConnection) -> Result<Vec<Hall>, AppError> {
    Ok(sqlx::query_as(&format!("SELECT {HALL_COLUMNS} FROM halls h ORDER BY h.name")).fetch_all(conn).await?)
}

/// Deletes a hall no activity uses.
pub async fn delete(conn: &mut PgConnection, name: &str) -> Result<(), AppError> {
    let hall = by_name(conn, name).await?.ok_or(AppError::NotFound)?;
    // The activities' foreign key refuses a hall in use even if one is added meanwhile.
    let done = sqlx::query(
        "DELETE FROM halls h WHERE h.id = $1 AND NOT EXISTS (SELECT 1 FROM activities a WHERE a.hall_id = h.id)",
    )
    .bind(hall.id)
    .execute(&mut *conn)
    .await;
    match done {
        Ok(d) if d.rows_affected() == 1 => Ok(()),
        Ok(_) => {
            // Named, so the admin knows which activities to look at.
            let users = users(conn, hall.id).await?;
            Err(AppError::Invalid(format!(
                "场馆 {} 还有 {} 个活动在用（{}），不能删除。",
                hall.name,
                users.len(),
                users.join("、")
            )))
        }
        Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => {
            Err(AppError::Invalid(format!("场馆 {} 还有活动在用，不能删除。", hall.name)))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seat_map_reads_in_file_order_with_optional_positions() {
        let seats = parse("\u{feff}zone,row,seat\nA区,3,12\nA区,3,13\nB区,1,1\n".as_bytes()).unwrap();
        assert_eq!(seats.len(), 3);
        assert_eq!(seats[0], SeatLine { zone: "A区".into(), row: "3".into(), seat: "12".into(), at: None });
        let placed = parse(b"seat,row,zone,x,y\n1,1,A,10.5,20\n").unwrap();
        assert_eq!(placed[0].at, Some((10.5, 20.0)));
        assert_eq!(placed[0].zone, "A");
    }

    #[test]
    fn bad_files_name_their_line() {
        let line = |text: &[u8]| parse(text).unwrap_err().line;
        assert_eq!(line(b"zone,row,seat\nA,1,1\nA,1,2\nA,1,1\n"), 4, "a duplicate");
        assert_eq!(line(b"zone,row,seat\nA,1,1\nA,,2\n"), 3, "an empty field");
        assert_eq!(line(b"zone,row,seat\nA,1,1\nA,1,\xff\n"), 3, "not UTF-8");
        assert_eq!(line(b"zone,row\nA,1\n"), 1, "no seat column");
        assert_eq!(line(b""), 1, "empty");
        assert_eq!(line(b"zone,row,seat\n"), 2, "no seats");
        assert_eq!(line(b"zone,row,seat\nA,1-2,3\n"), 2, "the separator in a row");
        assert_eq!(line(b"zone,row,seat,x,y\nA,1,1,1,left\n"), 2, "x,y not numbers");
        let mut big = String::from("zone,row,seat\n");
        for i in 0..=MAX_SEATS {
            big.push_str(&format!("A,{},{}\n", i / 100, i % 100));
        }
        assert_eq!(line(big.as_bytes()), MAX_SEATS as u64 + 2, "the first seat past the limit");
        assert!(parse(b"zone,row,seat\nA,1,1\nA,1,1\n").unwrap_err().to_string().contains("第 3 行"));
    }
}
