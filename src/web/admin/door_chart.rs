//! The arrivals chart on the activity page: one bar per five minutes, drawn
//! here as inline SVG (presentation attributes only, so the page's CSP holds
//! and it needs no script). Only numbers and times go into it, never input.

use std::fmt::Write;

use crate::{booking::door::Bin, local_time};

const BAR: i64 = 10;
const PITCH: i64 = 12;
const LEFT: i64 = 34;
const TOP: i64 = 14;
const PLOT: i64 = 120;
const BOTTOM: i64 = 22;

/// The chart of `bins`; `None` when no one has checked in.
pub fn arrivals_svg(bins: &[Bin], tz: &time_tz::Tz) -> Option<String> {
    let highest = bins.iter().map(|b| b.arrivals).max().filter(|n| *n > 0)?;
    let n = bins.len() as i64;
    let (width, height) = (LEFT + n * PITCH + 8, TOP + PLOT + BOTTOM);
    let baseline = TOP + PLOT;
    // About ten time labels, never closer than three bars (an HH:MM is ~30 px).
    let label_every = ((n + 9) / 10).max(3);
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg class=\"door-chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {width} {height}\" \
         width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"每 5 分钟到场人数，最多 {highest} 人\">"
    );
    let _ = write!(
        svg,
        "<line x1=\"{LEFT}\" y1=\"{baseline}\" x2=\"{}\" y2=\"{baseline}\" stroke=\"#999\" stroke-width=\"1\"/>",
        width - 4
    );
    label(&mut svg, "axis-y", LEFT - 4, TOP + 3, "end", highest);
    label(&mut svg, "axis-y", LEFT - 4, baseline + 3, "end", 0);
    for (i, bin) in bins.iter().enumerate() {
        let i = i as i64;
        let x = LEFT + 2 + i * PITCH;
        let h = bin.arrivals * PLOT / highest;
        let (from, to) = (
            local_time::clock(bin.start, tz),
            local_time::clock(bin.start + time::Duration::seconds(crate::booking::door::BIN_SECONDS), tz),
        );
        let _ = write!(
            svg,
            "<g class=\"bar\" data-at=\"{from}\" data-count=\"{count}\"><title>{from}–{to}：{count} 人</title>\
             <rect x=\"{x}\" y=\"{y}\" width=\"{BAR}\" height=\"{h}\" fill=\"#07c160\"/></g>",
            count = bin.arrivals,
            y = baseline - h,
        );
        if i % label_every == 0 {
            label(&mut svg, "axis-x", x + BAR / 2, baseline + 14, "middle", &from);
        }
    }
    svg.push_str("</svg>");
    Some(svg)
}

/// A small grey label (axes, legends), for the charts drawn here and in
/// `rush_chart`. `text` is a number, a time or a fixed word: never input.
pub(super) fn label(
    svg: &mut String,
    class: &str,
    x: impl std::fmt::Display,
    y: impl std::fmt::Display,
    anchor: &str,
    text: impl std::fmt::Display,
) {
    let _ = write!(
        svg,
        "<text class=\"{class}\" x=\"{x}\" y=\"{y}\" font-size=\"10\" fill=\"#666\" text-anchor=\"{anchor}\">{text}</text>"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;

    fn bins(counts: &[i64]) -> Vec<Bin> {
        let start = OffsetDateTime::from_unix_timestamp(1_700_000_100).unwrap(); // on a five-minute boundary
        counts
            .iter()
            .enumerate()
            .map(|(i, &arrivals)| Bin { start: start + time::Duration::minutes(5 * i as i64), arrivals })
            .collect()
    }

    #[test]
    fn each_bar_carries_its_count_and_the_tallest_fills_the_plot() {
        let tz = time_tz::timezones::db::asia::SHANGHAI;
        let svg = arrivals_svg(&bins(&[2, 0, 4]), tz).unwrap();
        assert_eq!(svg.matches("<g class=\"bar\"").count(), 3);
        assert!(
            svg.contains("data-count=\"2\"") && svg.contains("data-count=\"0\"") && svg.contains("data-count=\"4\"")
        );
        assert!(svg.contains(&format!("height=\"{PLOT}\"")), "the tallest bar is the plot's height");
        assert!(svg.contains(&format!("height=\"{}\"", PLOT / 2)));
        assert!(svg.contains("：4 人</title>"));
        assert!(!svg.contains("style="), "the CSP allows no inline style");
        assert!(svg.contains(">4</text>") && svg.contains(">0</text>"), "the y axis is labelled");
    }

    #[test]
    fn no_arrivals_no_chart() {
        let tz = time_tz::timezones::db::asia::SHANGHAI;
        assert_eq!(arrivals_svg(&[], tz), None);
        assert_eq!(arrivals_svg(&bins(&[0]), tz), None);
    }
}
