//! Reading a roster CSV: `student_id,name`, UTF-8 with or without a BOM, an
//! optional header row.

use crate::error::AppError;

/// Parses the file; a later row for the same student ID wins.
pub fn parse(bytes: &[u8]) -> Result<Vec<(String, String)>, AppError> {
    let bytes = bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|_| AppError::Invalid("名单文件不是 UTF-8 编码".into()))?;
    let mut reader =
        csv::ReaderBuilder::new().has_headers(false).flexible(true).trim(csv::Trim::All).from_reader(text.as_bytes());
    let mut rows: Vec<(String, String)> = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 1;
        let record = record.map_err(|e| AppError::Invalid(format!("第 {line} 行无法读取：{e}")))?;
        if record.iter().all(str::is_empty) {
            continue;
        }
        let (Some(id), Some(name)) = (record.get(0), record.get(1)) else {
            return Err(AppError::Invalid(format!("第 {line} 行应有两列：学号,姓名")));
        };
        if line == 1 && is_header(id, name) {
            continue;
        }
        if id.is_empty() || id.chars().count() > 32 || name.is_empty() || name.chars().count() > 64 {
            return Err(AppError::Invalid(format!("第 {line} 行的学号或姓名为空或过长")));
        }
        rows.push((id.to_string(), name.to_string()));
    }
    // One row per student ID, the last one winning, so the upsert touches each row once.
    let mut seen = std::collections::HashMap::new();
    for (i, (id, _)) in rows.iter().enumerate() {
        seen.insert(id.clone(), i);
    }
    Ok(rows.into_iter().enumerate().filter(|(i, (id, _))| seen[id] == *i).map(|(_, r)| r).collect())
}

fn is_header(id: &str, name: &str) -> bool {
    let id = id.to_ascii_lowercase();
    ["student_id", "studentid", "id", "学号"].contains(&id.as_str())
        || ["name", "姓名"].contains(&name.to_ascii_lowercase().as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_bom_blank_lines_and_duplicates() {
        let rows =
            parse("\u{feff}student_id,name\n2024000001, 张三\n\n2024000002,李四\n2024000001,张三丰\n".as_bytes())
                .unwrap();
        assert_eq!(rows, vec![("2024000002".into(), "李四".into()), ("2024000001".into(), "张三丰".into())]);
    }

    #[test]
    fn no_header_is_fine_and_bad_rows_are_named() {
        assert_eq!(parse(b"2024000001,Zhang\n").unwrap().len(), 1);
        let err = parse(b"2024000001,Zhang\n2024000002\n").unwrap_err().to_string();
        assert!(err.contains("第 2 行"), "{err}");
        assert!(parse(&[0xff, 0xfe]).is_err());
    }
}
