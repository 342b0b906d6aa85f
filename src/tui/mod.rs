//! Mission Control: the live terminal dashboard.
//!
//! Invariants: the dashboard only reads aggregates (merged metrics once a second, the
//! 1 Hz series, the live audit counters), never the history; it draws at a fixed 10
//! frames a second; the terminal is restored however the run ends (a guard's `Drop`, and
//! ratatui's panic hook); it switches itself off without a TTY or with `CI=true`.

pub mod panels;

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use tokio::sync::{oneshot, watch};

use crate::audit::Validity;
use crate::metrics;
use crate::run::LiveRun;
/// What the header names (scenario, seed, run id, target): the shared view's.
pub use crate::run::live::Meta;
pub use crate::run::live::{RegionRow, Verdict, View};
pub use panels::{Dashboard, Health};

/// Where the run is, as the dashboard shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    Running,
    Auditing,
    Done {
        validity: Validity,
        exit_code: i32,
        note: String,
        /// The run in one line (`Headline::line`), shown under the verdict.
        headline: String,
    },
}

/// On by default on a terminal; off with `--no-tui`, without a TTY, or with `CI=true`.
pub fn wanted(no_tui: bool) -> bool {
    !no_tui
        && std::io::stdout().is_terminal()
        && std::env::var("CI").map_or(true, |v| v != "true" && v != "1")
}

/// Restores the terminal when dropped, however the dashboard ends.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Reads keys on its own thread (crossterm's read blocks) until told to stop.
fn spawn_input(stop: Arc<AtomicBool>) -> std::sync::mpsc::Receiver<Event> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Acquire) {
            if event::poll(Duration::from_millis(50)).unwrap_or(false) {
                match event::read() {
                    Ok(e) => {
                        if tx.send(e).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        }
    });
    rx
}

/// Process CPU time in seconds (utime + stime), from /proc.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name, which may contain spaces, closed by ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Run the dashboard until the run is audited and a key is pressed (or at once with
/// `exit_on_finish`).
pub async fn run(
    live: oneshot::Receiver<Arc<LiveRun>>,
    mut phase: watch::Receiver<Phase>,
    meta: Meta,
    exit_on_finish: bool,
) -> std::io::Result<()> {
    let mut terminal = ratatui::try_init()?;
    let _restore = Restore;
    let stop_input = Arc::new(AtomicBool::new(false));
    let keys = spawn_input(stop_input.clone());
    struct StopInput(Arc<AtomicBool>);
    impl Drop for StopInput {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Release);
        }
    }
    let _stop_input = StopInput(stop_input);

    let Ok(run) = live.await else {
        return Ok(()); // the run failed before agents started; the caller reports it
    };
    let mut frame = tokio::time::interval(Duration::from_millis(100));
    frame.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut snap = run.world.metrics.snapshot();
    let mut board = Dashboard {
        view: run.view(&meta, &snap),
        ..Dashboard::default()
    };
    let (mut last_refresh, mut last_cpu) = (Instant::now(), cpu_seconds());
    let mut lag_ms = 0.0f64;
    let mut last_tick = Instant::now();
    let mut interrupts = 0;
    loop {
        frame.tick().await;
        let since = last_tick.elapsed().as_secs_f64() * 1000.0;
        lag_ms = 0.8 * lag_ms + 0.2 * (since - 100.0).max(0.0);
        last_tick = Instant::now();

        let current = phase.borrow_and_update().clone();
        let done = matches!(current, Phase::Done { .. });
        while let Ok(ev) = keys.try_recv() {
            let Event::Key(k) = ev else { continue };
            if k.kind != KeyEventKind::Press {
                continue;
            }
            if done {
                return Ok(());
            }
            let ctrl_c =
                k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
            match k.code {
                _ if ctrl_c => {
                    interrupts += 1;
                    if interrupts > 1 {
                        drop(_stop_input);
                        drop(_restore);
                        eprintln!("swarm: aborted");
                        std::process::exit(130);
                    }
                    run.control.stop.store(true, Ordering::Release);
                }
                KeyCode::Char('q') => run.control.stop.store(true, Ordering::Release),
                KeyCode::Char('f') => {
                    board.status = match run
                        .timeline
                        .fire_next(&run.world.regions, &run.world.metrics)
                    {
                        Some(f) => format!("fired {} {} ", f.mode, f.region),
                        None => "no fault left to fire ".into(),
                    };
                }
                KeyCode::Char('h') => {
                    run.timeline
                        .heal_all(&run.world.regions, &run.world.metrics);
                    board.status = "healed every region ".into();
                }
                KeyCode::Char(' ') => {
                    let p = !run.control.paused.load(Ordering::Acquire);
                    run.control.paused.store(p, Ordering::Release);
                }
                KeyCode::Char('?') => board.help = !board.help,
                _ => {}
            }
        }
        if last_refresh.elapsed() >= Duration::from_secs(1) && !done {
            let cpu = cpu_seconds();
            let secs = last_refresh.elapsed().as_secs_f64();
            snap = run.world.metrics.snapshot();
            let (rss_kib, _) = metrics::memory_kib();
            let started = run.world.metrics.agents_started.load(Ordering::Relaxed);
            let finished = run.world.metrics.agents_done.load(Ordering::Relaxed);
            let health = Health {
                cpu_pct: 100.0 * (cpu - last_cpu) / secs,
                lag_ms,
                live_tasks: started.saturating_sub(finished),
                rss_mib: rss_kib as f64 / 1024.0,
            };
            let verdict = board.view.verdict.take();
            board.view = run.view(&meta, &snap);
            board.view.verdict = verdict;
            board.health = health;
            last_refresh = Instant::now();
            last_cpu = cpu;
        }
        match &current {
            Phase::Running => {
                // Once every agent is done: the end-of-run replay, with its budget.
                let now_ms = u64::from(run.world.metrics.now_ms());
                if let Some(line) = run.world.resolving.line(now_ms) {
                    board.status = format!("{line} ");
                }
            }
            Phase::Auditing => board.status = "draining, healing, resolving, auditing… ".into(),
            Phase::Done {
                validity,
                exit_code,
                note,
                headline,
            } => {
                board.view.verdict = Some(Verdict {
                    validity: *validity,
                    exit_code: *exit_code,
                    headline: headline.clone(),
                    note: note.clone(),
                });
                board.status.clear();
            }
        }
        board.view.elapsed_s = if done {
            board.view.elapsed_s
        } else {
            run.world.metrics.start.elapsed().as_secs_f64()
        };
        board.view.done = run.world.metrics.agents_done.load(Ordering::Relaxed);
        terminal.draw(|f| panels::draw(f, &board))?;
        if done && exit_on_finish {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::LiveCounts;
    use crate::metrics::Sample;
    use crate::run::faults::FaultRecord;
    use crate::scenario::{FaultMode, RegionState};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use ratatui::style::Color;

    fn figures() -> Dashboard {
        Dashboard {
            view: figures_view(),
            ..Dashboard::default()
        }
    }

    fn figures_view() -> View {
        View {
            scenario: "smoke".into(),
            seed: 42,
            target: "direct · SQLite".into(),
            elapsed_s: 7.0,
            done: 5000,
            total: 10000,
            series: (1..=7)
                .map(|s| Sample {
                    second: s,
                    commits: 10 * s,
                    declines: 900,
                    errors: 5,
                    occ_retries: s * 3,
                    requests: 1000,
                    p50_us: 2000,
                    p99_us: 9000,
                    in_flight: 64,
                    agents_done: s * 700,
                    regions: vec![RegionState::Up, RegionState::Down(FaultMode::Crash)],
                })
                .collect(),
            faults: vec![FaultRecord {
                index: 0,
                region: "us-west-2".into(),
                mode: "crash".into(),
                trigger: "50%".into(),
                started_ms: Some(3500),
                healed_ms: None,
                command: None,
                exit_code: None,
                output: None,
                latency_ms: None,
                jitter_ms: None,
                leader_before: Some("n1".into()),
                leader_lost_ms: Some(5000),
                leader_after: Some("n2".into()),
                leader_elected_ms: Some(6000),
                impact: Vec::new(),
            }],
            attempts: vec![900, 70, 25, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            retry_exhausted: 2,
            outcomes: vec![("COMMITTED".into(), 100), ("OUT_OF_STOCK".into(), 9000)],
            regions: vec![
                RegionRow {
                    name: "us-east-1".into(),
                    state: RegionState::Up,
                    requests: 6000,
                    errors: 10,
                    in_flight: 60,
                    last_fault: None,
                },
                RegionRow {
                    name: "us-west-2".into(),
                    state: RegionState::Down(FaultMode::Crash),
                    requests: 3000,
                    errors: 900,
                    in_flight: 0,
                    last_fault: Some("back after 4.1 s (reconnect +0.2 s)".into()),
                },
            ],
            live: LiveCounts {
                oversells: 0,
                duplicate_settlements: 3,
                ledger_drift: 0,
                mandate_breaches: 0,
                errors: 0,
                polls: 7,
            },
            leader: Some("n2 (was n1, elected at 6.0 s)".into()),
            ..View::default()
        }
    }

    fn render(d: &Dashboard, w: u16, h: u16) -> ratatui::buffer::Buffer {
        let mut t = Terminal::new(TestBackend::new(w, h)).expect("terminal");
        t.draw(|f| panels::draw(f, d)).expect("draw");
        t.backend().buffer().clone()
    }

    fn text(b: &ratatui::buffer::Buffer) -> String {
        let a = b.area;
        (0..a.height)
            .map(|y| (0..a.width).map(|x| b[(x, y)].symbol()).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn find(b: &ratatui::buffer::Buffer, needle: &str) -> Option<(u16, u16)> {
        let a = b.area;
        for y in 0..a.height {
            let line: String = (0..a.width).map(|x| b[(x, y)].symbol()).collect();
            if let Some(i) = line.find(needle) {
                return Some((line[..i].chars().count() as u16, y));
            }
        }
        None
    }

    /// At 80×24, with a million agents' figures and a long target, every number and label
    /// is whole: the verdict, the outcome names and counts, the region figures.
    #[test]
    fn at_80_by_24_nothing_is_cut() {
        let mut d = figures();
        d.view.target = "live endpoints a http://127.0.0.1:8080, b http://127.0.0.1:8081 · ZeroRace API · HTTP/1.1 without TLS · database: none given (history-only audit)".into();
        d.view.done = 1_000_000;
        d.view.total = 1_000_000;
        d.view.outcomes = vec![
            ("COMMITTED".into(), 100),
            ("OUT_OF_STOCK".into(), 996_345),
            ("MANDATE_REJECTED".into(), 0),
            ("CONNECTION_RESET".into(), 1_436),
            ("REPLAYS".into(), 4_012),
            ("HTTP 201".into(), 100),
        ];
        d.view.regions[0].requests = 1_234_567;
        d.view.regions[0].errors = 12_345;
        d.view.verdict = Some(Verdict {
            validity: Validity::Valid,
            exit_code: 0,
            headline: String::new(),
            note: "report: reports/million-20261202T041500Z · press any key".into(),
        });
        let b = render(&d, 80, 24);
        let all = text(&b);
        for whole in [
            "ZeroRace API",
            "VERDICT VALID (exit 0)",
            "OUT_OF_STOCK",
            "996345",
            "CONNECTION_RESET",
            "1436",
            "4012",
            "1234567",
            "12345",
            "dup. settlements",
            "mandate breaches",
            "1000000/1000000",
        ] {
            assert!(all.contains(whole), "{whole} is cut at 80x24:\n{all}");
        }
        // Outcomes that never happened take no row.
        assert!(!all.contains("MANDATE_REJECTED"), "{all}");
        // At the verdict the headline takes the target's place, whole.
        let headline = "sold 100 of 100 units (100 settled purchases, from the database) · oversells 0 · duplicate settlements 0 · ledger drift 0 · mandate breaches 0 · OCC retries 585 (attempts 1×9431 2×412)";
        if let Some(v) = d.view.verdict.as_mut() {
            v.headline = headline.into();
        }
        let all = text(&render(&d, 80, 24));
        let flat: String = all.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(flat.contains(headline), "{all}");
    }

    #[test]
    fn invariant_panel_turns_red_on_a_violation() {
        for (w, h) in [(80, 24), (200, 50)] {
            let b = render(&figures(), w, h);
            let (x, y) = find(&b, "dup. settlements").unwrap_or_else(|| panic!("{}", text(&b)));
            assert_eq!(b[(x, y)].style().bg, Some(Color::Red), "{w}x{h}");
            let (x, y) = find(&b, "oversells").expect("oversells");
            assert_eq!(b[(x, y)].style().fg, Some(Color::Green));
            assert_ne!(b[(x, y)].style().bg, Some(Color::Red));
        }
    }

    #[test]
    fn regions_show_down_and_the_retry_distribution_has_bars() {
        for (w, h) in [(80, 24), (200, 50)] {
            let b = render(&figures(), w, h);
            let (x, y) = find(&b, "DOWN:crash").unwrap_or_else(|| panic!("{}", text(&b)));
            assert_eq!(b[(x, y)].style().fg, Some(Color::Red));
            let all = text(&b);
            assert!(all.contains("exhausted 2"), "{all}");
            assert!(
                all.chars()
                    .filter(|c| matches!(c, '█' | '▇' | '▆' | '▅' | '▄' | '▃' | '▂' | '▁'))
                    .count()
                    > 3,
                "{all}"
            );
            assert!(all.contains("5000/10000"), "the progress gauge");
            assert!(all.contains("1 fault(s) active"));
        }
    }

    #[test]
    fn the_regions_panel_names_the_leader_and_what_the_last_fault_did() {
        let all = text(&render(&figures(), 200, 50));
        assert!(
            all.contains("leader n2 (was n1, elected at 6.0 s)"),
            "{all}"
        );
        assert!(all.contains("back after 4.1 s (reconnect +0.2 s)"), "{all}");
        let mut d = figures();
        d.view.regions[1].last_fault = Some("down 2.3 s".into());
        let b = render(&d, 200, 50);
        let (x, y) = find(&b, "down 2.3 s").unwrap_or_else(|| panic!("{}", text(&b)));
        assert_eq!(b[(x, y)].style().fg, Some(Color::Red));
    }

    #[test]
    fn the_verdict_and_help_show() {
        let mut d = figures();
        d.view.verdict = Some(Verdict {
            validity: Validity::Invalid,
            exit_code: 1,
            headline: String::new(),
            note: "report: reports/x".into(),
        });
        d.help = true;
        let all = text(&render(&d, 200, 50));
        assert!(all.contains("VERDICT INVALID (exit 1)"));
        assert!(all.contains("fire the next fault now"));
    }
}
