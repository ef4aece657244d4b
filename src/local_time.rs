//! Times as people read and type them: shown and entered in `TIMEZONE`,
//! stored as `timestamptz`.

use std::ops::RangeInclusive;

use time::{
    OffsetDateTime, PrimitiveDateTime, UtcOffset, format_description::well_known::Rfc3339, macros::format_description,
};
use time_tz::{Offset, PrimitiveDateTimeExt, TimeZone, Tz};

/// The years a typed time may fall in (forms and the shell alike). Activities
/// happen in this century; a year like 9999 or 0001 is a slip or an attack,
/// and kept out it can never reach a sum or a page that cannot take it.
pub const YEARS: RangeInclusive<i32> = 2000..=2100;

/// `at` as a clock in `tz` reads it; `None` when that lies beyond the dates
/// this program can hold (an extreme value written straight into the database).
fn in_zone(at: OffsetDateTime, tz: &Tz) -> Option<OffsetDateTime> {
    at.checked_to_offset(tz.get_offset_utc(&at).to_utc())
}

/// `at` in `tz`, or else in UTC with `UTC` said after it: a page shows what is
/// stored rather than failing for one odd value.
fn local_or_utc(at: OffsetDateTime, tz: &Tz) -> (OffsetDateTime, &'static str) {
    match in_zone(at, tz) {
        Some(local) => (local, ""),
        None => (at.to_offset(UtcOffset::UTC), " UTC"),
    }
}

/// `11月30日 19:00`: how a student reads a time in a WeChat reply. A time
/// outside [`YEARS`] (only ever written straight into the database) keeps its
/// year, so it is not read as one of this year's.
pub fn short(at: OffsetDateTime, tz: &Tz) -> String {
    match in_zone(at, tz) {
        Some(local) if YEARS.contains(&local.year()) => {
            format!("{}月{}日 {:02}:{:02}", u8::from(local.month()), local.day(), local.hour(), local.minute())
        }
        _ => full(at, tz),
    }
}

/// `2026-11-30 19:00`: for pages and exports.
pub fn full(at: OffsetDateTime, tz: &Tz) -> String {
    let (local, utc) = local_or_utc(at, tz);
    format!(
        "{}-{:02}-{:02} {:02}:{:02}{utc}",
        local.year(),
        u8::from(local.month()),
        local.day(),
        local.hour(),
        local.minute()
    )
}

/// `2026-11-30 19:00:05`: for exports, where seconds tell a rush apart.
pub fn precise(at: OffsetDateTime, tz: &Tz) -> String {
    let (local, utc) = local_or_utc(at, tz);
    format!(
        "{}-{:02}-{:02} {:02}:{:02}:{:02}{utc}",
        local.year(),
        u8::from(local.month()),
        local.day(),
        local.hour(),
        local.minute(),
        local.second()
    )
}

/// `HH:MM`, for "already checked in at …".
pub fn clock(at: OffsetDateTime, tz: &Tz) -> String {
    let (local, utc) = local_or_utc(at, tz);
    format!("{:02}:{:02}{utc}", local.hour(), local.minute())
}

/// `HH:MM:SS`, for the door's list of scans.
pub fn clock_seconds(at: OffsetDateTime, tz: &Tz) -> String {
    let (local, utc) = local_or_utc(at, tz);
    format!("{:02}:{:02}:{:02}{utc}", local.hour(), local.minute(), local.second())
}

/// Why a typed time is not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Neither RFC 3339 nor `YYYY-MM-DD HH:MM`.
    Unreadable,
    /// A real time, outside [`YEARS`].
    OutOfRange,
}

impl Refused {
    /// The sentence a form shows under the field.
    pub fn sentence(self) -> String {
        match self {
            Refused::Unreadable => "请按 YYYY-MM-DD HH:MM 填写时间".into(),
            Refused::OutOfRange => format!("时间须在 {} 年到 {} 年之间", YEARS.start(), YEARS.end()),
        }
    }
}

/// A time typed into a form or given to the shell: readable (see [`parse`])
/// and within [`YEARS`].
pub fn read(text: &str, tz: &Tz) -> Result<OffsetDateTime, Refused> {
    let at = parse(text, tz).ok_or(Refused::Unreadable)?;
    if within_years(at) { Ok(at) } else { Err(Refused::OutOfRange) }
}

/// Whether `at` falls within [`YEARS`], its year read as it was written (in
/// its own offset), so `2000-01-01 00:00` in Shanghai is in.
pub fn within_years(at: OffsetDateTime) -> bool {
    YEARS.contains(&at.year())
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

    #[test]
    fn typed_times_outside_the_years_are_refused() {
        let tz = time_tz::timezones::db::asia::SHANGHAI;
        assert!(read("2026-11-30 19:05", tz).is_ok());
        assert!(read("2100-12-31T12:00", tz).is_ok());
        assert_eq!(read("1999-12-31 12:00", tz), Err(Refused::OutOfRange));
        assert_eq!(read("9999-12-31T23:59", tz), Err(Refused::OutOfRange));
        assert_eq!(read("0001-01-01T00:00:00Z", tz), Err(Refused::OutOfRange));
        assert_eq!(read("next week", tz), Err(Refused::Unreadable));
    }

    #[test]
    fn a_time_beyond_the_zone_is_shown_in_utc() {
        let tz = time_tz::timezones::db::asia::SHANGHAI;
        // The last minute this program can hold: eight hours on, in Shanghai, is past it.
        let last = time::Date::MAX.with_hms(23, 59, 0).unwrap().assume_utc();
        let year = time::Date::MAX.year();
        assert_eq!(full(last, tz), format!("{year}-12-31 23:59 UTC"));
        assert_eq!(short(last, tz), format!("{year}-12-31 23:59 UTC"));
        assert_eq!(clock(last, tz), "23:59 UTC");
        assert_eq!(precise(last, tz), format!("{year}-12-31 23:59:00 UTC"));
        let first = time::Date::MIN.midnight().assume_utc();
        let new_york = time_tz::timezones::db::america::NEW_YORK;
        assert!(full(first, new_york).ends_with(" UTC"), "{}", full(first, new_york));
        // Far, but within reach: shown in the zone as usual.
        let far = OffsetDateTime::from_unix_timestamp(253_402_300_000).unwrap();
        assert!(!full(far, tz).ends_with("UTC"), "{}", full(far, tz));
    }
}
