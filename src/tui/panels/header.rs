//! The header: the run's first line (name, seed, clock, the verdict or what holds the
//! run, the keys), the target or the headline under it, the agents gauge, and at the
//! verdict the report's path over the screen's last row.

use ratatui::Frame;
use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Gauge, Paragraph, Wrap};

use super::{Dashboard, Interrupt, gauge_rows};
use crate::audit::Validity;

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
pub(super) fn target_lines(d: &Dashboard, width: u16) -> u16 {
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
pub(super) fn report_line(f: &mut Frame, area: Rect, d: &Dashboard) {
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
