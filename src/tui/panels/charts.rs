//! The charts: throughput and latency each second and the OCC retries, with their
//! legends and the faults' starts and heals marked up the whole height; the run's totals
//! instead while the series is too short to chart.

use ratatui::Frame;
use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Bar, BarChart, BarGroup, Block, Cell, Chart, Dataset, GraphType, Paragraph, Row,
    Sparkline, Table, Wrap,
};

use super::{Dashboard, block};
use crate::history::Code;
use crate::metrics::{Percentiles, Sample};
use crate::run::live::View;

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

/// A count in the three columns of a bar: `412`, `99k`, `1M`.
fn bar_count(n: u64) -> String {
    match n {
        0..=999 => n.to_string(),
        1_000..=99_999 => format!("{}k", n / 1_000),
        100_000..=999_999 => format!(".{}M", n / 100_000),
        _ => format!("{}M", n / 1_000_000),
    }
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
                .text_value(bar_count(*v))
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

#[cfg(test)]
mod tests {
    use super::bar_count;

    #[test]
    fn a_bar_count_fits_three_columns() {
        for (n, shown) in [
            (0, "0"),
            (412, "412"),
            (9_431, "9k"),
            (99_999, "99k"),
            (100_000, ".1M"),
            (999_961, ".9M"),
            (1_000_000, "1M"),
            (37_000_000, "37M"),
        ] {
            assert_eq!(bar_count(n), shown);
        }
    }
}
