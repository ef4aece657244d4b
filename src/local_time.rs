//! Times as people read and type them: shown and entered in `TIMEZONE`,
//! stored as `timestamptz`.

use time::{OffsetDateTime, PrimitiveDateTime, format_description::well_known::Rfc3339, macros::format_description};
use time_tz::{OffsetDateTimeExt, PrimitiveDateTimeExt, Tz};

/// `11月30日 19:00`: how a student reads a time in a WeChat reply.
pub fn short(at: OffsetDateTime, tz: &Tz) -> String {
    let local = at.to_timezone(tz);
    format!("{}月{}日 {:02}:{:02}", u8::from(local.month()), local.day(), local.hour(), local.minute())
}

/// `2026-11-30 19:00`: for pages and exports.
pub fn full(at: OffsetDateTime, tz: &Tz) -> String {
    let local = at.to_timezone(tz);
    format!(
        "{}-{:02}-{:02} {:02}:{:02}",
        local.year(),
        u8::from(local.month()),
        local.day(),
        local.hour(),
        local.minute()
    )
}

/// `2026-11-30 19:00:05`: for exports, where seconds tell a rush apart.
pub fn precise(at: OffsetDateTime, tz: &Tz) -> String {
    let local = at.to_timezone(tz);
    format!(
        "{} {:02}:{:02}:{:02}",
        full(at, tz).split(' ').next().unwrap_or_default(),
        local.hour(),
        local.minute(),
        local.second()
    )
}

/// `HH:MM`, for "already checked in at …".
pub fn clock(at: OffsetDateTime, tz: &Tz) -> String {
    let local = at.to_timezone(tz);
    format!("{:02}:{:02}", local.hour(), local.minute())
}

/// Reads RFC 3339, or `YYYY-MM-DD HH:MM` (also with a `T`) in `tz`.
pub fn parse(text: &str, tz: &Tz) -> Option<OffsetDateTime> {
    let text = text.trim();
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some(at);
    }
    let spaced = text.replacen('T', " ", 1);
    let naive = PrimitiveDateTime::parse(&spaced, format_description!("[year]-[month]-[day] [hour]:[minute]"))
        .or_else(|_| {
            PrimitiveDateTime::parse(&spaced, format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"))
        })
        .ok()?;
    // A time skipped by a DST change has no meaning; an ambiguous one takes the earlier.
    naive.assume_timezone(tz).take_first()
}

/// `2026-11-30T19:00`: the value of an `<input type="datetime-local">`.
pub fn input(at: OffsetDateTime, tz: &Tz) -> String {
    full(at, tz).replacen(' ', "T", 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shanghai_times_round_trip() {
        let tz = time_tz::timezones::db::asia::SHANGHAI;
        let at = parse("2026-11-30 19:05", tz).unwrap();
        assert_eq!(at.unix_timestamp(), parse("2026-11-30T11:05:00Z", tz).unwrap().unix_timestamp());
        assert_eq!(full(at, tz), "2026-11-30 19:05");
        assert_eq!(short(at, tz), "11月30日 19:05");
        assert_eq!(clock(at, tz), "19:05");
        assert!(parse("30/11/2026", tz).is_none());
    }
}
