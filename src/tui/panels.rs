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

use std::sync::atomic::Ordering;

use crate::audit::Validity;
use crate::history::Code;
use crate::metrics::{Percentiles, Sample};
use crate::run::Control;
use crate::run::live::View;
use crate::scenario::{FaultMode, RegionState};

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

/// `s` in at most `n` characters: cut at the end, with `…` when cut.
fn fit(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else if n == 0 {
        String::new()
    } else {
        s.chars().take(n - 1).chain(['…']).collect()
    }
}

/// `s` in at most `n` characters: cut at the start (a path keeps its end), with `…`.
fn fit_start(s: &str, n: usize) -> String {
    let len = s.chars().count();
    if len <= n {
        s.to_string()
    } else if n == 0 {
        String::new()
    } else {
        std::iter::once('…')
            .chain(s.chars().skip(len - (n - 1)))
            .collect()
    }
}

/// The header's state: the verdict, else what holds the run (aborting, stopped, paused),
/// as a badge.
fn badge(d: &Dashboard) -> Option<Span<'static>> {
    let on = |bg: Color| {
        Style::default()
            .fg(Color::Black)
            .bg(bg)
            .add_modifier(Modifier::BOLD)
    };
    match &d.view.verdict {
        Some(v) => Some(Span::styled(
            format!(
                " VERDICT {} (exit {}) ",
                v.validity.name().to_uppercase(),
                v.exit_code
            ),
            on(match v.validity {
                Validity::Valid => Color::Green,
                Validity::Invalid => Color::Red,
                Validity::Unknown => Color::Yellow,
            }),
        )),
        None if d.interrupt == Interrupt::Aborting => {
            Some(Span::styled(" ABORTING ", on(Color::Red)))
        }
        None if d.interrupt == Interrupt::Stopped => {
            Some(Span::styled(" STOPPED ", on(Color::Yellow)))
        }
        None if d.view.paused => Some(Span::styled(
            " PAUSED ",
            Style::default().fg(Color::Black).bg(Color::Yellow),
        )),
        None => None,
    }
}

/// What the header says after the badge: where the run is once it resolves or audits,
/// else what the last key did.
fn message(d: &Dashboard) -> String {
    if d.view.verdict.is_some() {
        String::new()
    } else if !d.view.status.is_empty() {
        d.view.status.clone()
    } else if d.view.phase == "auditing" {
        "auditing, writing the report…".into()
    } else {
        d.status.clone()
    }
}

/// The header's first line, `width` wide: the badge and, at the verdict, the hint to
/// leave stay whole; the scenario's name gives way first, then the keys, then the message.
fn first_line(d: &Dashboard, width: usize) -> Line<'static> {
    let badge = badge(d);
    let badge_w = badge.as_ref().map_or(0, |b| b.width());
    let hint = match d.view.verdict {
        Some(_) if badge_w + 24 <= width => " press any key to leave",
        Some(_) => " press any key",
        None => "",
    };
    let must = badge_w + hint.chars().count();
    let lead = format!(
        "{} · seed {} · {:.1}s ",
        d.view.scenario, d.view.seed, d.view.elapsed_s
    );
    let room = width.saturating_sub(must);
    let (swarm, lead) = if room >= 6 + 8 {
        ("swarm ", fit(&lead, room - 6))
    } else {
        ("", fit(&lead, room))
    };
    let rest = room - swarm.len() - lead.chars().count();
    let message = message(d);
    let (full, short) = (
        "  q stop · f fault · h heal · space pause · ? help",
        "  ? help",
    );
    let keys = if d.view.verdict.is_some() {
        ""
    } else if message.chars().count() + full.chars().count() <= rest {
        full
    } else if short.len() <= rest {
        short
    } else {
        ""
    };
    // One space before the message.
    let message = fit(&message, (rest - keys.chars().count()).saturating_sub(1));
    let mut spans = vec![
        Span::styled(swarm, Style::default().add_modifier(Modifier::BOLD)),
        Span::raw(lead),
    ];
    spans.extend(badge);
    spans.push(Span::styled(
        hint,
        Style::default().add_modifier(Modifier::BOLD),
    ));
    if !message.is_empty() {
        spans.push(Span::raw(format!(" {message}")));
    }
    spans.push(Span::raw(keys));
    Line::from(spans)
}

pub fn header(f: &mut Frame, area: Rect, d: &Dashboard) {
    let v = &d.view;
    let ratio = if v.total == 0 {
        0.0
    } else {
        (v.done as f64 / v.total as f64).clamp(0.0, 1.0)
    };
    let eta = if v.done > 0 && v.done < v.total && v.verdict.is_none() {
        let rate = v.done as f64 / v.elapsed_s.max(1e-3);
        format!("ETA {:.0}s", (v.total - v.done) as f64 / rate)
    } else {
        String::new()
    };
    // The line that must stay whole comes first; the target, which can be long, gets
    // its own line(s) below and wraps rather than pushing the verdict off the screen.
    let target_rows = target_lines(d, area.width);
    let parts = Layout::default()
        .direction(Direction::Vertical)
        .constraints([
            Constraint::Length(1),
            Constraint::Length(target_rows),
            Constraint::Length(gauge_rows(f.area())),
        ])
        .split(area);
    f.render_widget(
        Paragraph::new(first_line(d, usize::from(area.width))),
        parts[0],
    );
    f.render_widget(
        Paragraph::new(second_line(d)).wrap(Wrap { trim: true }),
        parts[1],
    );
    let gauge = Gauge::default()
        .gauge_style(Style::default().fg(Color::Cyan))
        .ratio(ratio)
        .label(format!("{}/{} agents {eta}", v.done, v.total));
    let gauge = if gauge_rows(f.area()) > 1 {
        gauge.block(Block::default().borders(Borders::ALL).title("agents"))
    } else {
        gauge
    };
    f.render_widget(gauge, parts[2]);
}

/// At the verdict, where the report is, over the screen's last row: no panel hides it.
fn report_line(f: &mut Frame, area: Rect, d: &Dashboard) {
    let Some(v) = &d.view.verdict else { return };
    if v.note.is_empty() || area.height < 2 || area.width < 8 {
        return;
    }
    let note = fit_start(&v.note, usize::from(area.width) - 4);
    let w = note.chars().count() as u16 + 2;
    f.render_widget(
        Paragraph::new(Span::styled(
            format!(" {note} "),
            Style::default().add_modifier(Modifier::BOLD | Modifier::REVERSED),
        )),
        Rect::new(area.x + 1, area.y + area.height - 1, w, 1),
    );
}

fn points(series: &[Sample], f: impl Fn(&Sample) -> f64) -> Vec<(f64, f64)> {
    series.iter().map(|s| (s.second as f64, f(s))).collect()
}

/// Per-second charts need two samples; before that (and for a run shorter than a
/// second) panels show the run's totals.
fn charted(v: &View) -> bool {
    v.series.len() >= 2
}

/// What a panel says instead of a per-second chart.
fn uncharted(v: &View) -> &'static str {
    if v.verdict.is_some() || matches!(v.phase.as_str(), "auditing" | "done") {
        "run totals: too short to chart per second"
    } else {
        "totals so far: per second from 2 s"
    }
}

/// The run's answers: commits, declines and errors, from the totals.
fn totals(v: &View) -> (u64, u64, u64) {
    let of = |code: Code| {
        v.outcomes
            .iter()
            .find(|(name, _)| name == code.name())
            .map_or(0, |(_, n)| *n)
    };
    let commits = of(Code::Committed);
    let declines = of(Code::OutOfStock) + of(Code::MandateRejected) + of(Code::Declined);
    (
        commits,
        declines,
        v.requests.saturating_sub(commits + declines),
    )
}

/// The faults' starts and heals, as points up the whole height (`rows` rows) of a chart
/// whose top is `y_max`; drawn in `FAULT` and turned into `┆` by `dotted`.
fn fault_marks(v: &View, y_max: f64, rows: u16) -> Vec<(f64, f64)> {
    let steps = u32::from(rows.max(1)) * 2;
    v.faults
        .iter()
        .flat_map(|f| [f.started_ms, f.healed_ms])
        .flatten()
        .flat_map(|t| {
            (0..=steps).map(move |k| (t as f64 / 1000.0, y_max * f64::from(k) / f64::from(steps)))
        })
        .collect()
}

const FAULT: Color = Color::Magenta;

fn fault_dataset(marks: &[(f64, f64)]) -> Dataset<'_> {
    Dataset::default()
        .marker(symbols::Marker::Dot)
        .graph_type(GraphType::Scatter)
        .style(Style::default().fg(FAULT))
        .data(marks)
}

/// A fault's marks (`•` in `FAULT`) become a dotted vertical line, `┆`, as the legend says.
fn dotted(f: &mut Frame, area: Rect) {
    let buf = f.buffer_mut();
    let area = area.intersection(buf.area);
    for y in area.top()..area.bottom() {
        for x in area.left()..area.right() {
            let cell = &mut buf[(x, y)];
            if cell.symbol() == "•" && cell.fg == FAULT {
                cell.set_symbol("┆");
            }
        }
    }
}

/// A chart's legend: `━ name` in each line's colour, `┆ fault` when a fault was drawn;
/// the longest that fits `width`.
fn legend(entries: &[(&str, &str, Color)], faults: bool, width: u16) -> Line<'static> {
    let build = |long: bool| {
        let mut spans = vec![Span::raw(" ")];
        for (name, short, color) in entries {
            spans.push(Span::styled("━ ", Style::default().fg(*color)));
            spans.push(Span::raw(format!("{} ", if long { name } else { short })));
        }
        if faults {
            spans.push(Span::styled("┆ ", Style::default().fg(FAULT)));
            spans.push(Span::raw("fault "));
        }
        Line::from(spans)
    };
    let long = build(true);
    if long.width() <= usize::from(width) {
        long
    } else {
        build(false)
    }
}

fn started_faults(v: &View) -> bool {
    v.faults.iter().any(|f| f.started_ms.is_some())
}

pub fn throughput(f: &mut Frame, area: Rect, d: &Dashboard) {
    let v = &d.view;
    let active = v
        .faults
        .iter()
        .filter(|f| f.started_ms.is_some() && f.healed_ms.is_none())
        .count();
    let title = if active > 0 {
        format!("throughput · {active} fault(s) active")
    } else {
        "throughput".to_string()
    };
    if !charted(v) {
        // Too short for a chart: what the run answered, in all.
        let (commits, declines, errors) = totals(v);
        let when = uncharted(v);
        f.render_widget(
            Paragraph::new(vec![
                Line::from(vec![
                    Span::styled(
                        format!("commits {commits}"),
                        Style::default().fg(Color::Green),
                    ),
                    Span::raw(" · "),
                    Span::styled(
                        format!("declines {declines}"),
                        Style::default().fg(Color::Blue),
                    ),
                    Span::raw(" · "),
                    Span::styled(format!("errors {errors}"), Style::default().fg(Color::Red)),
                ]),
                Line::from(Span::styled(
                    when,
                    Style::default().add_modifier(Modifier::DIM),
                )),
            ])
            .wrap(Wrap { trim: true })
            .block(block(&title)),
            area,
        );
        return;
    }
    let commits = points(&v.series, |s| s.commits as f64);
    let declines = points(&v.series, |s| s.declines as f64);
    let errors = points(&v.series, |s| s.errors as f64);
    let x_max = v.series.last().map_or(1.0, |s| s.second as f64).max(1.0);
    let y_max = commits
        .iter()
        .chain(declines.iter())
        .chain(errors.iter())
        .map(|p| p.1)
        .fold(1.0, f64::max)
        * 1.1;
    let marks = fault_marks(v, y_max, area.height);
    let line = |name: &'static str, data, color| {
        Dataset::default()
            .name(name)
            .marker(symbols::Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::default().fg(color))
            .data(data)
    };
    let datasets = vec![
        line("commits/s", &commits, Color::Green),
        line("declines/s", &declines, Color::Blue),
        line("errors/s", &errors, Color::Red),
        fault_dataset(&marks),
    ];
    let key = legend(
        &[
            ("commits/s", "commits", Color::Green),
            ("declines/s", "declines", Color::Blue),
            ("errors/s", "errors", Color::Red),
        ],
        started_faults(v),
        area.width.saturating_sub(2),
    );
    f.render_widget(
        Chart::new(datasets)
            .block(block(&title).title_bottom(key))
            // The legend is the block's bottom line; none drawn over the lines.
            .legend_position(None)
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
    dotted(f, area);
}

/// Milliseconds in at most six characters.
fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Rows a latency chart needs (its plot and axis) above the legend and the figures.
const LATENCY_CHART_ROWS: u16 = 5;

pub fn latency(f: &mut Frame, area: Rect, d: &Dashboard) {
    let v = &d.view;
    let outer = block("latency");
    let inner = outer.inner(area);
    f.render_widget(outer, area);
    // The figures (3 rows) at the bottom; above, p50 and p99 each second when there is
    // room and two samples.
    let chart = charted(v) && inner.height >= 3 + 1 + LATENCY_CHART_ROWS;
    let (chart_area, legend_area, figures_area) = if chart {
        let parts = Layout::default()
            .direction(Direction::Vertical)
            .constraints([
                Constraint::Min(LATENCY_CHART_ROWS),
                Constraint::Length(1),
                Constraint::Length(3),
            ])
            .split(inner);
        (Some(parts[0]), Some(parts[1]), parts[2])
    } else {
        (None, None, inner)
    };
    if let (Some(chart_area), Some(legend_area)) = (chart_area, legend_area) {
        // Seconds without an answer have no latency: no point, not a zero.
        let answered: Vec<Sample> = v
            .series
            .iter()
            .filter(|s| s.requests > 0)
            .cloned()
            .collect();
        let p50 = points(&answered, |s| s.p50_us as f64 / 1000.0);
        let p99 = points(&answered, |s| s.p99_us as f64 / 1000.0);
        let x_max = v.series.last().map_or(1.0, |s| s.second as f64).max(1.0);
        let y_max = p50
            .iter()
            .chain(p99.iter())
            .map(|p| p.1)
            .fold(1.0, f64::max)
            * 1.1;
        let marks = fault_marks(v, y_max, chart_area.height);
        let line = |data, color| {
            Dataset::default()
                .marker(symbols::Marker::Braille)
                .graph_type(GraphType::Line)
                .style(Style::default().fg(color))
                .data(data)
        };
        f.render_widget(
            Chart::new(vec![
                line(&p50, Color::Cyan),
                line(&p99, Color::Yellow),
                fault_dataset(&marks),
            ])
            .legend_position(None)
            .x_axis(
                Axis::default()
                    .bounds([0.0, x_max])
                    .labels(vec![Line::from("0s"), Line::from(format!("{x_max:.0}s"))]),
            )
            .y_axis(Axis::default().bounds([0.0, y_max]).labels(vec![
                Line::from("0"),
                Line::from(format!("{}ms", ms(y_max))),
            ])),
            chart_area,
        );
        dotted(f, chart_area);
        f.render_widget(
            Paragraph::new(legend(
                &[
                    ("p50 each second", "p50", Color::Cyan),
                    ("p99 each second", "p99", Color::Yellow),
                ],
                started_faults(v),
                legend_area.width,
            )),
            legend_area,
        );
    }
    // Narrow: the columns that fit whole (p50, p99, max) and short row names.
    let wide = figures_area.width >= 46;
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
                row(names[0], &v.latency_corrected),
                row(names[1], &v.latency_raw),
            ],
            widths,
        )
        .header(Row::new(header).style(Style::default().add_modifier(Modifier::BOLD))),
        figures_area,
    );
}

pub fn retries(f: &mut Frame, area: Rect, d: &Dashboard) {
    let v = &d.view;
    // The run's total (the series misses the second under way).
    let total = v.occ_retries;
    // The longest title that fits whole; what it leaves out goes to the bars' title.
    let room = usize::from(area.width.saturating_sub(2));
    let exhausted = format!("exhausted {}", v.retry_exhausted);
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
    if charted(v) {
        let per_second: Vec<u64> = v.series.iter().map(|s| s.occ_retries).collect();
        let shown = &per_second[per_second.len().saturating_sub(usize::from(parts[0].width))..];
        f.render_widget(
            Sparkline::default()
                .data(shown)
                .style(Style::default().fg(Color::Yellow)),
            parts[0],
        );
    } else {
        f.render_widget(
            Paragraph::new(uncharted(v))
                .wrap(Wrap { trim: true })
                .style(Style::default().add_modifier(Modifier::DIM)),
            parts[0],
        );
    }
    let last = v
        .attempts
        .iter()
        .rposition(|v| *v > 0)
        .map_or(1, |i| i + 1)
        .max(3);
    let bars: Vec<Bar> = v.attempts[..last.min(v.attempts.len())]
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

fn help(f: &mut Frame, area: Rect) {
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
