//! Mission Control's panels, drawn from a `Dashboard` of plain figures, so every panel
//! can be rendered in a test from known numbers.
//!
//! `draw` lays the screen out; `header` holds the first lines, `charts` the per-second
//! charts (throughput, latency, retries), `tables` the rest (outcomes, invariants, regions,
//! the generator's health, the help).

mod charts;
mod header;
mod tables;

use ratatui::Frame;
use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::Span;
use ratatui::widgets::{Block, Borders};

use std::sync::atomic::Ordering;

use crate::run::Control;
use crate::run::live::View;
pub use charts::{latency, retries, throughput};
pub use header::header;
use header::{report_line, target_lines};
use tables::help;
pub use tables::{health, invariants, outcomes, regions};

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Health {
    pub cpu_pct: f64,
    pub lag_ms: f64,
    pub live_tasks: u64,
    pub rss_mib: f64,
}

/// Everything one frame shows: the run's `View` (what every presenter draws) and what
/// only a terminal has.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dashboard {
    pub view: View,
    /// The generator's own load (this process).
    pub health: Health,
    /// What the last key did: `fired crash us-west-2`.
    pub status: String,
    pub help: bool,
    /// How far Ctrl-C or `q` has gone.
    pub interrupt: Interrupt,
}

/// Where Ctrl-C (or `q`) has taken the run: the first stops arrivals (the run drains,
/// resolves, audits and reports: exit 4, stopped early), the second aborts (requests in
/// flight dropped, the report still written), the third leaves at once (130).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Interrupt {
    #[default]
    None,
    Stopped,
    Aborting,
}

impl Interrupt {
    /// From the run's switches (a Ctrl-C caught outside the dashboard flips them too).
    pub fn of(control: &Control) -> Interrupt {
        if control.abort.load(Ordering::Acquire) {
            Interrupt::Aborting
        } else if control.stop.load(Ordering::Acquire) {
            Interrupt::Stopped
        } else {
            Interrupt::None
        }
    }
}

fn block(title: &str) -> Block<'_> {
    Block::default().borders(Borders::ALL).title(Span::styled(
        title,
        Style::default().add_modifier(Modifier::BOLD),
    ))
}

/// Room for the charts' full height and a boxed progress gauge.
fn roomy(area: Rect) -> bool {
    area.width >= 120 && area.height >= 36
}

/// The agents gauge: boxed when there is room, else one row.
fn gauge_rows(screen: Rect) -> u16 {
    if roomy(screen) { 3 } else { 1 }
}

pub fn draw(f: &mut Frame, d: &Dashboard) {
    let area = f.area();
    let roomy = roomy(area);
    let head = 1 + target_lines(d, area.width) + gauge_rows(area);
    let rows = Layout::default()
        .direction(Direction::Vertical)
        .constraints(if roomy {
            vec![
                Constraint::Length(head),
                Constraint::Min(10),
                Constraint::Length(12),
                Constraint::Length(10),
            ]
        } else {
            vec![
                Constraint::Length(head),
                Constraint::Min(4),
                Constraint::Length(8),
                Constraint::Length(6),
            ]
        })
        .split(area);
    header(f, rows[0], d);
    let top = Layout::default()
        .direction(Direction::Horizontal)
        .constraints([Constraint::Percentage(62), Constraint::Percentage(38)])
        .split(rows[1]);
    throughput(f, top[0], d);
    latency(f, top[1], d);
    let middle = Layout::default()
        .direction(Direction::Horizontal)
        .constraints([
            Constraint::Percentage(34),
            Constraint::Percentage(36),
            Constraint::Percentage(30),
        ])
        .split(rows[2]);
    retries(f, middle[0], d);
    outcomes(f, middle[1], d);
    invariants(f, middle[2], d);
    let bottom = Layout::default()
        .direction(Direction::Horizontal)
        .constraints([Constraint::Percentage(62), Constraint::Percentage(38)])
        .split(rows[3]);
    regions(f, bottom[0], d);
    health(f, bottom[1], d);
    if d.help {
        help(f, area);
    }
    report_line(f, area, d);
}
