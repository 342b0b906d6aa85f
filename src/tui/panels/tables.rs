//! The tables: outcomes, live invariants, regions, the generator's health, and the keys'
//! help over everything.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Clear, Paragraph, Row, Table};

use super::{Dashboard, block};
use crate::scenario::{FaultMode, RegionState};

pub fn outcomes(f: &mut Frame, area: Rect, d: &Dashboard) {
    // Only what happened: the answers most frequent first, then replays, then what the
    // wire said (`HTTP …`, the same answers by status), which give way first when rows run
    // out. Columns as wide as their longest entry, so neither a name nor a count is cut.
    let mut shown: Vec<&(String, u64)> = d.view.outcomes.iter().filter(|(_, v)| *v > 0).collect();
    let rank = |name: &str| {
        if name.starts_with("HTTP ") {
            2
        } else if name == "REPLAYS" {
            1
        } else {
            0
        }
    };
    shown.sort_by_key(|o| (rank(&o.0), std::cmp::Reverse(o.1)));
    // Rows that do not fit are counted in the last one.
    let room = usize::from(area.height.saturating_sub(2));
    let hidden = if shown.len() > room && room > 0 {
        shown.len() - (room - 1)
    } else {
        0
    };
    let more = (hidden > 0).then(|| (format!("+{hidden} more"), 0u64));
    if hidden > 0 {
        shown.truncate(room - 1);
    }
    let name_w = shown
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0) as u16;
    let num_w = shown
        .iter()
        .map(|(_, v)| v.to_string().len())
        .max()
        .unwrap_or(1) as u16;
    let mut rows: Vec<Row> = shown
        .iter()
        .map(|(k, v)| Row::new(vec![Cell::from(k.clone()), Cell::from(v.to_string())]))
        .collect();
    if let Some((more, _)) = more {
        rows.push(
            Row::new(vec![Cell::from(more)]).style(Style::default().add_modifier(Modifier::DIM)),
        );
    }
    f.render_widget(
        Table::new(
            rows,
            [Constraint::Length(name_w), Constraint::Length(num_w)],
        )
        .block(block("outcomes")),
        area,
    );
}

pub fn invariants(f: &mut Frame, area: Rect, d: &Dashboard) {
    let l = &d.view.live;
    let row = |name: &str, n: u64| {
        let style = if n == 0 {
            Style::default().fg(Color::Green)
        } else {
            Style::default()
                .fg(Color::White)
                .bg(Color::Red)
                .add_modifier(Modifier::BOLD)
        };
        Row::new(vec![
            Cell::from(name.to_string()),
            Cell::from(n.to_string()),
        ])
        .style(style)
    };
    let rows = vec![
        row("oversells", l.oversells),
        row("dup. settlements", l.duplicate_settlements),
        row("ledger drift", l.ledger_drift),
        row("mandate breaches", l.mandate_breaches),
    ];
    let title = format!("live invariants · {} polls", l.polls);
    // A narrow panel keeps the words and says the polls in a row of its own.
    let (title, rows) = if title.chars().count() + 2 > usize::from(area.width) {
        let mut rows = rows;
        rows.push(Row::new(vec![
            Cell::from("polls"),
            Cell::from(l.polls.to_string()),
        ]));
        ("live invariants".to_string(), rows)
    } else {
        (title, rows)
    };
    f.render_widget(
        Table::new(rows, [Constraint::Length(16), Constraint::Min(5)]).block(block(&title)),
        area,
    );
}

/// The widest a region's state can be (`DOWN:blackhole`): its column never cuts one, and
/// does not change width when a fault fires.
fn state_width() -> u16 {
    std::iter::once(RegionState::Up)
        .chain(FaultMode::ALL.map(RegionState::Down))
        .map(|s| s.label().chars().count())
        .max()
        .unwrap_or(0) as u16
}

pub fn regions(f: &mut Frame, area: Rect, d: &Dashboard) {
    let v = &d.view;
    let digits = |n: u64| n.to_string().len() as u16;
    let name_w = v
        .regions
        .iter()
        .map(|r| r.name.chars().count() as u16)
        .chain([6])
        .max()
        .unwrap_or(6);
    let requests_w = v
        .regions
        .iter()
        .map(|r| digits(r.requests))
        .chain([8])
        .max()
        .unwrap_or(8);
    let errors_w = v
        .regions
        .iter()
        .map(|r| digits(r.errors))
        .chain([6])
        .max()
        .unwrap_or(6);
    let flight_w = v
        .regions
        .iter()
        .map(|r| r.in_flight.to_string().len() as u16)
        .chain([6])
        .max()
        .unwrap_or(6);
    // Whole columns only: what does not fit goes, the last fault first, then requests in
    // flight; a region's name and state always stay.
    let room = area.width.saturating_sub(2);
    let base = name_w + 1 + state_width() + 1 + requests_w + 1 + errors_w;
    let flight = base + 1 + flight_w <= room;
    let used = if flight { base + 1 + flight_w } else { base };
    let last_fault = used + 1 + 12 <= room;
    let rows: Vec<Row> = v
        .regions
        .iter()
        .map(|r| {
            let style = if r.state.is_up() {
                Style::default().fg(Color::Green)
            } else {
                Style::default().fg(Color::Red).add_modifier(Modifier::BOLD)
            };
            let last = r.last_fault.clone().unwrap_or_default();
            let last_style = if last.starts_with("down") {
                Style::default().fg(Color::Red)
            } else {
                Style::default()
            };
            let mut cells = vec![
                Cell::from(r.name.clone()),
                Cell::from(r.state.label()).style(style),
                Cell::from(r.requests.to_string()),
                Cell::from(r.errors.to_string()),
            ];
            if flight {
                cells.push(Cell::from(r.in_flight.to_string()));
            }
            if last_fault {
                cells.push(Cell::from(last).style(last_style));
            }
            Row::new(cells)
        })
        .collect();
    let title = match &v.leader {
        Some(leader) => format!("regions · leader {leader}"),
        None => "regions".to_string(),
    };
    let mut widths = vec![
        Constraint::Length(name_w),
        Constraint::Length(state_width()),
        Constraint::Length(requests_w),
        Constraint::Length(errors_w),
    ];
    let mut header = vec!["region", "state", "requests", "errors"];
    if flight {
        widths.push(Constraint::Length(flight_w));
        header.push("flight");
    }
    if last_fault {
        widths.push(Constraint::Min(12));
        header.push("last fault");
    }
    f.render_widget(
        Table::new(rows, widths)
            .header(Row::new(header).style(Style::default().add_modifier(Modifier::BOLD)))
            .block(block(&title)),
        area,
    );
}

pub fn health(f: &mut Frame, area: Rect, d: &Dashboard) {
    let h = &d.health;
    let warn = |bad: bool| {
        if bad {
            Style::default().fg(Color::Red)
        } else {
            Style::default()
        }
    };
    let lines = vec![
        Line::from(Span::styled(
            format!("CPU        {:5.0} %", h.cpu_pct),
            warn(h.cpu_pct > 180.0),
        )),
        Line::from(Span::styled(
            format!("sched lag  {:5.1} ms", h.lag_ms),
            warn(h.lag_ms > 20.0),
        )),
        Line::from(format!("live tasks {:7}", h.live_tasks)),
        Line::from(format!("RSS        {:5.0} MiB", h.rss_mib)),
    ];
    f.render_widget(Paragraph::new(lines).block(block("generator")), area);
}

pub(super) fn help(f: &mut Frame, area: Rect) {
    let w = area.width.min(54);
    let h = area.height.min(10);
    let r = Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    );
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(vec![
            Line::from("q ^C   stop arrivals: drain, heal, audit (exit 4)"),
            Line::from("       again: abort, in flight dropped, report kept"),
            Line::from("       a third time: leave at once (exit 130)"),
            Line::from("f      fire the next fault now"),
            Line::from("h      heal every fault"),
            Line::from("space  pause / resume arrivals"),
            Line::from("?      this help"),
            Line::from("After the run: any key leaves."),
        ])
        .block(block("keys")),
        r,
    );
}
