//! Draws a seat map as an HTML table — no script, no `style=` (the CSP
//! allows neither): one table line per drawn line, a gap as one cell spanning
//! the missing columns (so a sparse hall stays as small as its seats), and
//! each seat a cell whose class is its state. The chooser makes free seats
//! radio buttons named `seat`; the admin's block form makes free and blocked
//! seats checkboxes.

use askama::Template;

use crate::booking::seats::map::{MapSeat, SeatState};

/// What a seat's cell lets the reader do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// Look only.
    None,
    /// Choose one free seat (`seat=<zone-row-seat>`).
    One,
    /// Tick any free or blocked seats; blocked ones start ticked.
    Many,
}

enum Cell<'a> {
    Gap(u32),
    Seat { seat: &'a MapSeat, input: Option<&'static str>, checked: bool },
}

struct Line<'a> {
    /// The row's name at the line's start (`A区 3排`), when the line holds one row.
    header: String,
    cells: Vec<Cell<'a>>,
}

#[derive(Template)]
#[template(path = "seat_map.html")]
struct Drawing<'a> {
    lines: Vec<Line<'a>>,
}

/// The map's HTML (escaped by the template), for a page to insert as it is.
pub fn draw(seats: &[MapSeat], pick: Pick) -> String {
    let mut ordered: Vec<&MapSeat> = seats.iter().collect();
    ordered.sort_by_key(|s| (s.line, s.col));
    let mut lines: Vec<Line> = Vec::new();
    let mut at_line = None;
    let mut next_col = 0;
    for seat in ordered {
        if at_line != Some(seat.line) {
            at_line = Some(seat.line);
            next_col = 0;
            lines.push(Line { header: format!("{} {}排", seat.zone, seat.row_label), cells: Vec::new() });
        }
        let line = lines.last_mut().expect("pushed above");
        if !line.header.is_empty() && line.header != format!("{} {}排", seat.zone, seat.row_label) {
            line.header.clear();
        }
        if seat.col > next_col {
            line.cells.push(Cell::Gap(seat.col - next_col));
        }
        next_col = seat.col + 1;
        let input = match (pick, seat.state) {
            (Pick::One, SeatState::Free) => Some("radio"),
            (Pick::Many, SeatState::Free | SeatState::Blocked) => Some("checkbox"),
            _ => None,
        };
        line.cells.push(Cell::Seat { seat, input, checked: pick == Pick::Many && seat.state == SeatState::Blocked });
    }
    Drawing { lines }.render().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seat(row: &str, n: &str, line: u32, col: u32, state: SeatState) -> MapSeat {
        MapSeat { id: 0, zone: "A区".into(), row_label: row.into(), seat_label: n.into(), state, line, col }
    }

    #[test]
    fn only_free_seats_can_be_chosen_and_gaps_stay_gaps() {
        let html = draw(&[seat("1", "1", 0, 0, SeatState::Free), seat("1", "9", 0, 8, SeatState::Taken)], Pick::One);
        assert_eq!(html.matches("type=\"radio\"").count(), 1, "{html}");
        assert!(html.contains("value=\"A区-1-1\""), "{html}");
        assert!(html.contains("colspan=\"7\""), "{html}");
        assert!(html.contains("class=\"seat taken\""), "{html}");
    }

    #[test]
    fn seat_names_are_escaped() {
        let html = draw(&[seat("<b>", "\"1\"", 0, 0, SeatState::Free)], Pick::One);
        assert!(!html.contains("<b>") && !html.contains("\"1\""), "{html}");
    }
}
