//! Mission Control's panels, drawn from a `Dashboard` of plain figures, so every panel
//! can be rendered in a test from known numbers.

use ratatui::Frame;
use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Bar, BarChart, BarGroup, Block, Borders, Cell, Chart, Clear, Dataset, Gauge, GraphType,
    Paragraph, Row, Sparkline, Table, Wrap,
};

use crate::audit::Validity;
use crate::metrics::{Percentiles, Sample};
use crate::run::live::View;

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
}

fn block(title: &str) -> Block<'_> {
    Block::default().borders(Borders::ALL).title(Span::styled(
        title,
        Style::default().add_modifier(Modifier::BOLD),
    ))
}

pub fn draw(f: &mut Frame, d: &Dashboard) {
    let area = f.area();
    let roomy = area.width >= 120 && area.height >= 36;
    let head = 4 + target_lines(d, area.width);
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
}

/// What the header says under its first line: the target while running, the headline
/// at the verdict.
fn second_line(d: &Dashboard) -> String {
    match &d.view.verdict {
        Some(v) if !v.headline.is_empty() => v.headline.clone(),
        _ => format!("target: {}", d.view.target),
    }
}

/// Rows the target's line needs at `width`, wrapped at spaces as `Paragraph` wraps it
/// (at most 3).
fn target_lines(d: &Dashboard, width: u16) -> u16 {
    let width = usize::from(width.max(1));
    let (mut lines, mut used) = (1u16, 0usize);
    for word in second_line(d).split(' ') {
        let w = word.chars().count();
        let need = if used == 0 { w } else { used + 1 + w };
        if need <= width {
            used = need;
        } else {
            lines += 1;
            used = w.min(width);
        }
    }
    lines.clamp(1, 3)
}

pub fn header(f: &mut Frame, area: Rect, d: &Dashboard) {
    let ratio = if d.view.total == 0 {
        0.0
    } else {
        (d.view.done as f64 / d.view.total as f64).clamp(0.0, 1.0)
    };
    let eta = if d.view.done > 0 && d.view.done < d.view.total {
        let rate = d.view.done as f64 / d.view.elapsed_s.max(1e-3);
        format!("ETA {:.0}s", (d.view.total - d.view.done) as f64 / rate)
    } else {
        String::new()
    };
    let state = match &d.view.verdict {
        Some(v) => Span::styled(
            format!(
                " VERDICT {} (exit {}) ",
                v.validity.name().to_uppercase(),
                v.exit_code
            ),
            Style::default()
                .fg(Color::Black)
                .bg(match v.validity {
                    Validity::Valid => Color::Green,
                    Validity::Invalid => Color::Red,
                    Validity::Unknown => Color::Yellow,
                })
                .add_modifier(Modifier::BOLD),
        ),
        None if d.view.paused => Span::styled(
            " PAUSED ",
            Style::default().fg(Color::Black).bg(Color::Yellow),
        ),
        None => Span::raw(d.status.clone()),
    };
    // The line that must stay whole comes first; the target, which can be long, gets
    // its own line(s) below and wraps rather than pushing the verdict off the screen.
    let lead = format!(
        "{} · seed {} · {:.1}s ",
        d.view.scenario, d.view.seed, d.view.elapsed_s
    );
    let keys = "  q quit · f fault · h heal · space pause · ? help";
    let used = "swarm ".len() + lead.chars().count() + state.width();
    let keys = if used + keys.chars().count() <= usize::from(area.width) {
        keys
    } else {
        "  ? help"
    };
    let line = Line::from(vec![
        Span::styled("swarm ", Style::default().add_modifier(Modifier::BOLD)),
        Span::raw(lead),
        state,
        Span::raw(keys),
    ]);
    let target_rows = target_lines(d, area.width);
    let parts = Layout::default()
        .direction(Direction::Vertical)
        .constraints([
            Constraint::Length(1),
            Constraint::Length(target_rows),
            Constraint::Length(3),
        ])
        .split(area);
    f.render_widget(Paragraph::new(line), parts[0]);
    f.render_widget(
        Paragraph::new(second_line(d)).wrap(Wrap { trim: true }),
        parts[1],
    );
    let parts = [parts[0], parts[2]];
    f.render_widget(
        Gauge::default()
            .block(Block::default().borders(Borders::ALL).title("agents"))
            .gauge_style(Style::default().fg(Color::Cyan))
            .ratio(ratio)
            .label(format!("{}/{} agents {eta}", d.view.done, d.view.total)),
        parts[1],
    );
}

fn points(series: &[Sample], f: impl Fn(&Sample) -> f64) -> Vec<(f64, f64)> {
    series.iter().map(|s| (s.second as f64, f(s))).collect()
}

pub fn throughput(f: &mut Frame, area: Rect, d: &Dashboard) {
    let commits = points(&d.view.series, |s| s.commits as f64);
    let declines = points(&d.view.series, |s| s.declines as f64);
    let errors = points(&d.view.series, |s| s.errors as f64);
    let x_max = d
        .view
        .series
        .last()
        .map_or(1.0, |s| s.second as f64)
        .max(1.0);
    let y_max = commits
        .iter()
        .chain(declines.iter())
        .chain(errors.iter())
        .map(|p| p.1)
        .fold(1.0, f64::max)
        * 1.1;
    // Fault start and heal, drawn as vertical marks.
    let mut marks: Vec<(f64, f64)> = Vec::new();
    for fault in &d.view.faults {
        for t in [fault.started_ms, fault.healed_ms].into_iter().flatten() {
            let x = t as f64 / 1000.0;
            for k in 0..=8 {
                marks.push((x, y_max * f64::from(k) / 8.0));
            }
        }
    }
    let datasets = vec![
        Dataset::default()
            .name("commits/s")
            .marker(symbols::Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::default().fg(Color::Green))
            .data(&commits),
        Dataset::default()
            .name("declines/s")
            .marker(symbols::Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::default().fg(Color::Blue))
            .data(&declines),
        Dataset::default()
            .name("errors/s")
            .marker(symbols::Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::default().fg(Color::Red))
            .data(&errors),
        Dataset::default()
            .name("fault")
            .marker(symbols::Marker::Dot)
            .graph_type(GraphType::Scatter)
            .style(Style::default().fg(Color::Magenta))
            .data(&marks),
    ];
    let active = d
        .view
        .faults
        .iter()
        .filter(|f| f.started_ms.is_some() && f.healed_ms.is_none())
        .count();
    let title = if active > 0 {
        format!("throughput · {active} fault(s) active")
    } else {
        "throughput".to_string()
    };
    f.render_widget(
        Chart::new(datasets)
            .block(block(&title))
            .x_axis(
                Axis::default()
                    .bounds([0.0, x_max])
                    .labels(vec![Line::from("0s"), Line::from(format!("{x_max:.0}s"))]),
            )
            .y_axis(
                Axis::default()
                    .bounds([0.0, y_max])
                    .labels(vec![Line::from("0"), Line::from(format!("{y_max:.0}"))]),
            ),
        area,
    );
}

/// Milliseconds in at most six characters.
fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

pub fn latency(f: &mut Frame, area: Rect, d: &Dashboard) {
    // Narrow: the columns that fit whole (p50, p99, max) and short row names.
    let wide = area.width >= 48;
    let row = |name: &str, p: &Percentiles| {
        let values = if wide {
            vec![p.p50_ms, p.p90_ms, p.p99_ms, p.p999_ms, p.max_ms]
        } else {
            vec![p.p50_ms, p.p99_ms, p.max_ms]
        };
        Row::new(
            std::iter::once(Cell::from(name.to_string()))
                .chain(values.into_iter().map(|v| Cell::from(ms(v))))
                .collect::<Vec<_>>(),
        )
    };
    let (names, header, widths): (_, Vec<&str>, Vec<Constraint>) = if wide {
        (
            ["corrected", "raw"],
            vec!["ms", "p50", "p90", "p99", "p99.9", "max"],
            std::iter::once(Constraint::Length(9))
                .chain(std::iter::repeat_n(Constraint::Length(6), 5))
                .collect(),
        )
    } else {
        (
            ["start", "req"],
            vec!["ms", "p50", "p99", "max"],
            std::iter::once(Constraint::Length(5))
                .chain(std::iter::repeat_n(Constraint::Length(6), 3))
                .collect(),
        )
    };
    f.render_widget(
        Table::new(
            vec![
                row(names[0], &d.view.latency_corrected),
                row(names[1], &d.view.latency_raw),
            ],
            widths,
        )
        .header(Row::new(header).style(Style::default().add_modifier(Modifier::BOLD)))
        .block(block("latency")),
        area,
    );
}

pub fn retries(f: &mut Frame, area: Rect, d: &Dashboard) {
    let total: u64 = d.view.series.iter().map(|s| s.occ_retries).sum();
    // The longest title that fits whole; what it leaves out goes to the bars' title.
    let room = usize::from(area.width.saturating_sub(2));
    let exhausted = format!("exhausted {}", d.view.retry_exhausted);
    let (title, bars_title) = [
        format!("OCC retries {total} · {exhausted}"),
        format!("OCC {total} · {exhausted}"),
    ]
    .into_iter()
    .find(|t| t.chars().count() <= room)
    .map_or_else(
        || (format!("OCC {total}"), format!("attempts · {exhausted}")),
        |t| (t, "attempts per answer".to_string()),
    );
    let outer = block(&title);
    let inner = outer.inner(area);
    f.render_widget(outer, area);
    let parts = Layout::default()
        .direction(Direction::Vertical)
        .constraints([Constraint::Length(2), Constraint::Min(3)])
        .split(inner);
    let per_second: Vec<u64> = d.view.series.iter().map(|s| s.occ_retries).collect();
    let shown = &per_second[per_second.len().saturating_sub(usize::from(parts[0].width))..];
    f.render_widget(
        Sparkline::default()
            .data(shown)
            .style(Style::default().fg(Color::Yellow)),
        parts[0],
    );
    let last = d
        .view
        .attempts
        .iter()
        .rposition(|v| *v > 0)
        .map_or(1, |i| i + 1)
        .max(3);
    let bars: Vec<Bar> = d.view.attempts[..last.min(d.view.attempts.len())]
        .iter()
        .enumerate()
        .map(|(i, v)| {
            Bar::default()
                .label(Line::from(format!("{}", i + 1)))
                .value(*v)
        })
        .collect();
    f.render_widget(
        BarChart::default()
            .block(Block::default().title(bars_title))
            .bar_width(3)
            .bar_gap(1)
            .bar_style(Style::default().fg(Color::Yellow))
            .data(BarGroup::default().bars(&bars)),
        parts[1],
    );
}

pub fn outcomes(f: &mut Frame, area: Rect, d: &Dashboard) {
    // Only what happened, most frequent first; columns as wide as their longest entry, so
    // neither a name nor a count is ever cut.
    let mut shown: Vec<&(String, u64)> = d.view.outcomes.iter().filter(|(_, v)| *v > 0).collect();
    shown.sort_by_key(|o| std::cmp::Reverse(o.1));
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
    let rows: Vec<Row> = shown
        .iter()
        .map(|(k, v)| Row::new(vec![Cell::from(k.clone()), Cell::from(v.to_string())]))
        .collect();
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

pub fn regions(f: &mut Frame, area: Rect, d: &Dashboard) {
    // What the last fault did gets a column when there is room for it.
    let wide = area.width >= 72;
    let rows: Vec<Row> = d
        .view
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
                Cell::from(r.in_flight.to_string()),
            ];
            if wide {
                cells.push(Cell::from(last).style(last_style));
            }
            Row::new(cells)
        })
        .collect();
    let title = match &d.view.leader {
        Some(leader) => format!("regions · leader {leader}"),
        None => "regions".to_string(),
    };
    let mut widths = vec![
        Constraint::Min(9),
        Constraint::Length(13),
        Constraint::Length(8),
        Constraint::Length(7),
        Constraint::Length(6),
    ];
    let mut header = vec!["region", "state", "requests", "errors", "flight"];
    if wide {
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
    let mut text = lines;
    if let Some(v) = &d.view.verdict {
        text.push(Line::from(Span::styled(
            v.note.clone(),
            Style::default().add_modifier(Modifier::BOLD),
        )));
    }
    f.render_widget(Paragraph::new(text).block(block("generator")), area);
}

fn help(f: &mut Frame, area: Rect) {
    let w = area.width.min(50);
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
            Line::from("q      stop arrivals, drain, heal, audit"),
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
