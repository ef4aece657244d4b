//! The rush chart on the activity page (README "Rush chart"): tickets issued
//! per bucket from the booking start with cancels and waiting-list joins as
//! thin bars beside them, the sold-out moment marked, and below, on the same time axis,
//! the refusals stacked by reason. Drawn here as inline SVG as the arrivals
//! chart is (`door_chart`: presentation attributes only, so the page's CSP
//! holds and it needs no script). Only numbers, fixed words and offsets go
//! into it, never input (not even the activity's name).

use std::fmt::Write;

use time::Duration;

use super::door_chart::label;
use crate::{
    booking::{
        Activity,
        refusals::Reason,
        rush_facts::{self, Bucket, Picture, Rush},
    },
    error::AppError,
};

const LEFT: f64 = 40.0;
const RIGHT: f64 = 16.0;
/// Room above the plot for the sold-out label.
const TOP: f64 = 22.0;
const PLOT_WIDTH: f64 = 720.0;
const UPPER: f64 = 140.0;
/// Between the panels: the lower panel's title.
const GAP: f64 = 30.0;
const LOWER: f64 = 90.0;

const BOOKED: &str = "#07c160";
const CANCELLED: &str = "#fa5151";
const JOINED: &str = "#fa8c16";

fn colour(reason: Reason) -> &'static str {
    match reason {
        Reason::SoldOut => "#a6a6a6",
        Reason::AlreadyHolds => "#1677ff",
        Reason::NotBound => "#fadb14",
        Reason::NotOpenYet => "#13c2c2",
        Reason::Closed => "#595959",
        Reason::Paused => "#eb2f96",
    }
}

/// How long something took, as an organizer reads it: `12.3 秒`, `2 分 05 秒`,
/// `3 小时 07 分`, `2 天 4 小时`.
pub fn elapsed(d: Duration) -> String {
    let ms = d.whole_milliseconds().max(0) as i64;
    let s = ms / 1000;
    match s {
        0..60 => format!("{:.1} 秒", ms as f64 / 1000.0),
        60..3600 => format!("{} 分 {:02} 秒", s / 60, s % 60),
        3600..86400 => format!("{} 小时 {:02} 分", s / 3600, s % 3600 / 60),
        _ => format!("{} 天 {} 小时", s / 86400, s % 86400 / 3600),
    }
}

/// An offset from the booking start on the time axis, in its largest whole unit.
fn offset(seconds: i64) -> String {
    match seconds {
        0 => "0".into(),
        s if s % 86400 == 0 => format!("+{} 天", s / 86400),
        s if s % 3600 == 0 => format!("+{} 小时", s / 3600),
        s if s % 60 == 0 => format!("+{} 分", s / 60),
        s => format!("+{s} 秒"),
    }
}

/// A bucket size in words: `1 秒`, `5 分钟`, `2 小时`.
fn bucket_words(seconds: i64) -> String {
    match seconds {
        s if s % 86400 == 0 => format!("{} 天", s / 86400),
        s if s % 3600 == 0 => format!("{} 小时", s / 3600),
        s if s % 60 == 0 => format!("{} 分钟", s / 60),
        s => format!("{s} 秒"),
    }
}

/// The activity page's rush section.
pub struct RushView {
    /// Why there is no chart (not open yet, a lottery, nothing yet).
    pub empty: Option<&'static str>,
    pub svg: Option<String>,
    /// How long the sell-out took.
    pub sold_out: Option<String>,
    /// `每格 1 秒`: the bucket's size.
    pub bucket: String,
    /// (kind, label, count): tickets issued, cancelled, waiting-list joins, then refusals by reason.
    pub totals: Vec<(&'static str, &'static str, i64)>,
}

pub async fn view(conn: &mut sqlx::PgConnection, activity: &Activity) -> Result<RushView, AppError> {
    let empty = |why| RushView { empty: Some(why), svg: None, sold_out: None, bucket: String::new(), totals: vec![] };
    Ok(match rush_facts::picture(conn, activity).await? {
        Picture::NotOpenYet => empty("抢票还没有开始：开抢后这里画出每秒抢到的票、退票、候补和被拒的请求。"),
        Picture::Lottery => empty("抽签活动没有抢票过程：名额在抽签时统一分配。这张图只画先到先得的抢票。"),
        Picture::Quiet => empty("抢票已经开始，还没有人抢票。"),
        Picture::Rush(rush) => {
            let mut totals = vec![
                ("booked", "出票", rush.totals.booked),
                ("cancelled", "退票", rush.totals.cancelled),
                ("joined", "加入候补", rush.totals.joined),
            ];
            totals.extend(rush.totals.refused.iter().map(|(r, n)| (r.as_str(), r.label(), *n)));
            RushView {
                empty: None,
                sold_out: rush.sold_out_at.map(|at| elapsed(at - rush.book_start)),
                bucket: bucket_words(rush.bucket_seconds),
                svg: Some(svg(&rush)),
                totals,
            }
        }
    })
}

/// The chart of `rush`.
pub fn svg(rush: &Rush) -> String {
    let n = rush.buckets.len().max(1);
    let pitch = PLOT_WIDTH / n as f64;
    let bar = (pitch * 0.8).max(1.0);
    // A bucket of the upper panel: the tickets' bar, then thin bars for cancels and joins.
    let (wide, thin) = (bar * 0.7, bar * 0.15);
    let upper_base = TOP + UPPER;
    let lower_top = upper_base + GAP;
    let lower_base = lower_top + LOWER;
    let width = LEFT + PLOT_WIDTH + RIGHT;
    let height = lower_base + 72.0;
    let b = rush.bucket_seconds;
    let highest = rush.buckets.iter().map(|k| k.booked.max(k.cancelled).max(k.joined)).max().unwrap_or(0).max(1);
    let most_refused = rush.buckets.iter().map(Bucket::refused_total).max().unwrap_or(0).max(1);
    let booked: i64 = rush.buckets.iter().map(|k| k.booked).sum();
    let refused: i64 = rush.buckets.iter().map(Bucket::refused_total).sum();
    // Where the marker goes (from the axis's origin), and what it says (from the booking start).
    let sold_out = rush.sold_out_at.map(|at| (at - rush.origin, at - rush.book_start));
    let y = |count: i64, top: f64, height: f64, of: i64| top + height - count as f64 * height / of as f64;

    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg class=\"rush-chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {width} {height}\" \
         width=\"{width}\" height=\"{height}\" role=\"img\" aria-labelledby=\"rush-title rush-desc\">\
         <title id=\"rush-title\">抢票过程：每 {bucket} 出票、退票、候补与被拒</title>\
         <desc id=\"rush-desc\">从抢票开始，每 {bucket} 一格，共 {n} 格：出票 {booked} 张，被拒 {refused} 次{sold}。</desc>",
        bucket = bucket_words(b),
        sold = sold_out.map(|(_, d)| format!("，开抢后 {} 售罄", elapsed(d))).unwrap_or_default(),
    );
    // The axes of both panels.
    for (top, base, hi) in [(TOP, upper_base, highest), (lower_top, lower_base, most_refused)] {
        let _ = write!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{base}\" x2=\"{}\" y2=\"{base}\" stroke=\"#999\" stroke-width=\"1\"/>",
            LEFT + PLOT_WIDTH
        );
        label(&mut svg, "axis-y", LEFT - 4.0, top + 3.0, "end", hi);
        label(&mut svg, "axis-y", LEFT - 4.0, base + 3.0, "end", 0);
    }
    // The upper panel: tickets issued, cancels, waiting-list joins.
    for (i, k) in rush.buckets.iter().enumerate() {
        let from = i as i64 * b;
        let _ = write!(
            svg,
            "<g class=\"rush-bar\" data-offset=\"{from}\" data-booked=\"{}\" data-cancelled=\"{}\" data-joined=\"{}\">\
             <title>{}–{}：出票 {}，退票 {}，候补 {}</title>",
            k.booked,
            k.cancelled,
            k.joined,
            offset(from),
            offset(from + b),
            k.booked,
            k.cancelled,
            k.joined,
        );
        let mut x = LEFT + i as f64 * pitch + (pitch - bar) / 2.0;
        for (count, width, colour) in
            [(k.booked, wide, BOOKED), (k.cancelled, thin, CANCELLED), (k.joined, thin, JOINED)]
        {
            if count > 0 {
                let top = y(count, TOP, UPPER, highest);
                let _ = write!(
                    svg,
                    "<rect x=\"{x:.1}\" y=\"{top:.1}\" width=\"{width:.1}\" height=\"{:.1}\" fill=\"{colour}\"/>",
                    upper_base - top
                );
            }
            x += width;
        }
        svg.push_str("</g>");
    }
    // The lower panel: refusals stacked by reason.
    label(&mut svg, "panel", LEFT, lower_top - 8.0, "start", "被拒的请求（按原因）");
    for (i, k) in rush.buckets.iter().enumerate() {
        let mut attrs = String::new();
        for (reason, n) in Reason::ALL.iter().zip(k.refused) {
            let _ = write!(attrs, " data-{}=\"{n}\"", reason.as_str().replace('_', "-"));
        }
        let _ = write!(svg, "<g class=\"rush-refused\" data-offset=\"{}\"{attrs}>", i as i64 * b);
        let mut stacked = 0;
        for (reason, n) in Reason::ALL.iter().zip(k.refused).filter(|(_, n)| *n > 0) {
            let (top, bottom) =
                (y(stacked + n, lower_top, LOWER, most_refused), y(stacked, lower_top, LOWER, most_refused));
            let _ = write!(
                svg,
                "<rect x=\"{:.1}\" y=\"{top:.1}\" width=\"{bar:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{}：{n}</title></rect>",
                LEFT + i as f64 * pitch + (pitch - bar) / 2.0,
                bottom - top,
                colour(*reason),
                reason.label(),
            );
            stacked += n;
        }
        svg.push_str("</g>");
    }
    // The shared time axis, about eight labels.
    let every = n.div_ceil(8).max(1);
    for i in (0..=n).step_by(every) {
        label(&mut svg, "axis-x", LEFT + i as f64 * pitch, lower_base + 14.0, "middle", offset(i as i64 * b));
    }
    label(&mut svg, "axis-x", LEFT + PLOT_WIDTH, lower_base + 28.0, "end", format!("每格 {}", bucket_words(b)));
    if let Some((at, d)) = sold_out {
        let x = LEFT + at.whole_milliseconds() as f64 / (b as f64 * 1000.0) * pitch;
        let anchor = if x > LEFT + PLOT_WIDTH * 0.7 { "end" } else { "start" };
        let _ = write!(
            svg,
            "<g class=\"sold-out\" data-offset-ms=\"{}\"><line x1=\"{x:.1}\" y1=\"{}\" x2=\"{x:.1}\" y2=\"{lower_base}\" \
             stroke=\"#333\" stroke-width=\"1\" stroke-dasharray=\"4 3\"/>\
             <text x=\"{:.1}\" y=\"{}\" font-size=\"11\" fill=\"#333\" text-anchor=\"{anchor}\">售罄 +{}</text></g>",
            at.whole_milliseconds(),
            TOP - 6.0,
            if anchor == "end" { x - 3.0 } else { x + 3.0 },
            TOP - 9.0,
            elapsed(d),
        );
    }
    // The legend: the series, then the reasons that occurred.
    let mut entries: Vec<(&str, &str)> = vec![(BOOKED, "出票")];
    if rush.buckets.iter().any(|k| k.cancelled > 0) {
        entries.push((CANCELLED, "退票"));
    }
    if rush.buckets.iter().any(|k| k.joined > 0) {
        entries.push((JOINED, "加入候补"));
    }
    for (k, reason) in Reason::ALL.iter().enumerate() {
        if rush.buckets.iter().any(|b| b.refused[k] > 0) {
            entries.push((colour(*reason), reason.label()));
        }
    }
    let _ = write!(svg, "<g class=\"legend\">");
    for (i, (colour, name)) in entries.iter().enumerate() {
        let x = LEFT + i as f64 * 86.0;
        let ly = lower_base + 50.0;
        let _ = write!(svg, "<rect x=\"{x}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{colour}\"/>", ly - 9.0);
        label(&mut svg, "legend-item", x + 14.0, ly, "start", name);
    }
    svg.push_str("</g></svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;

    fn rush(buckets: Vec<Bucket>, sold_out_after_ms: Option<i64>) -> Rush {
        let book_start = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        Rush {
            book_start,
            origin: book_start,
            bucket_seconds: 1,
            buckets,
            sold_out_at: sold_out_after_ms.map(|ms| book_start + Duration::milliseconds(ms)),
            totals: Default::default(),
        }
    }

    fn bucket(booked: i64, cancelled: i64, joined: i64, sold_out: i64) -> Bucket {
        Bucket { booked, cancelled, joined, refused: [sold_out, 0, 0, 0, 0, 0] }
    }

    #[test]
    fn bars_carry_their_counts_the_marker_its_moment_and_nothing_is_styled_inline() {
        let svg = svg(&rush(vec![bucket(3, 0, 0, 0), bucket(2, 1, 0, 4), bucket(0, 0, 2, 9)], Some(1_500)));
        assert_eq!(svg.matches("<g class=\"rush-bar\"").count(), 3);
        assert!(svg.contains("data-booked=\"3\"") && svg.contains("data-cancelled=\"1\""));
        assert!(svg.contains("data-offset-ms=\"1500\"") && svg.contains("售罄 +1.5 秒"), "{svg}");
        assert!(svg.contains("data-sold-out=\"9\""));
        assert!(svg.contains(&format!("fill=\"{CANCELLED}\"")) && svg.contains(&format!("fill=\"{JOINED}\"")));
        assert!(svg.contains("<title id=\"rush-title\">") && svg.contains("<desc id=\"rush-desc\">"));
        assert!(svg.contains("每格 1 秒"));
        assert!(!svg.contains("style="), "the CSP allows no inline style");
        assert!(svg.contains(">已抢完</text>"), "the legend names the reasons that occurred");
        assert!(!svg.contains(">未绑定</text>"), "and only those");
    }

    #[test]
    fn durations_read_in_their_largest_units() {
        assert_eq!(elapsed(Duration::milliseconds(12_345)), "12.3 秒");
        assert_eq!(elapsed(Duration::seconds(125)), "2 分 05 秒");
        assert_eq!(elapsed(Duration::minutes(187)), "3 小时 07 分");
        assert_eq!(elapsed(Duration::hours(52)), "2 天 4 小时");
        assert_eq!(offset(0), "0");
        assert_eq!(offset(90), "+90 秒");
        assert_eq!(offset(300), "+5 分");
        assert_eq!(bucket_words(7200), "2 小时");
    }
}
