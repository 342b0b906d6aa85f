//! Mission Control: the live terminal dashboard.
//!
//! It draws `run::live::View`, the model every presenter shares (built by
//! `LiveRun::view`), plus what only a terminal has: the generator's health, what the last
//! key did, the help.
//!
//! Invariants: the dashboard only reads aggregates (merged metrics once a second and once
//! more when the run ends, the 1 Hz series, the live audit counters), never the history;
//! the last frame is drawn from the run's final totals, however short the run; it draws
//! at a fixed 10 frames a second; the terminal is restored however the run ends (a guard's
//! `Drop`, and ratatui's panic hook); it switches itself off without a TTY or with
//! `CI=true`.
//!
//! Over half of this file is its tests: the whole dashboard drawn at several screen sizes
//! from known figures.
//!
//! It stays one file: the event loop, the keys and the end-of-run frame are one state
//! machine (about 300 lines); the rest is tests that draw frames at the sizes a demo meets.

pub mod panels;

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use tokio::sync::{oneshot, watch};

use crate::audit::Validity;
use crate::metrics;
use crate::run::live::{Meta, Verdict};
use crate::run::{Control, LiveRun};
pub use panels::{Dashboard, Health, Interrupt};

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
    let mut board = Dashboard::default();
    refresh(&mut board, &run, &meta);
    let mut last = Gauge {
        at: Instant::now(),
        cpu_s: cpu_seconds(),
    };
    let mut lag_ms = 0.0f64;
    let mut last_tick = Instant::now();
    let mut seen = Phase::Running;
    // How long the run took: frozen once its agents are done and drained.
    let mut ended_s: Option<f64> = None;
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
                _ if ctrl_c || k.code == KeyCode::Char('q') => match interrupt(&run.control) {
                    Some(said) => board.status = said.into(),
                    None => {
                        drop(_stop_input);
                        drop(_restore);
                        eprintln!("swarm: exited without a report");
                        std::process::exit(130);
                    }
                },
                KeyCode::Char('f') => {
                    board.status = match run
                        .timeline
                        .fire_next(&run.world.regions, &run.world.metrics)
                    {
                        Some(f) => format!("fired {} {}", f.mode, f.region),
                        None => "no fault left to fire".into(),
                    };
                }
                KeyCode::Char('h') => {
                    run.timeline
                        .heal_all(&run.world.regions, &run.world.metrics);
                    board.status = "healed every region".into();
                }
                KeyCode::Char(' ') => {
                    let p = !run.control.paused.load(Ordering::Acquire);
                    run.control.paused.store(p, Ordering::Release);
                }
                KeyCode::Char('?') => board.help = !board.help,
                _ => {}
            }
        }
        let running = matches!(current, Phase::Running);
        if !running && std::mem::discriminant(&current) != std::mem::discriminant(&seen) {
            // The run is over (auditing, or already audited): its final totals, whatever
            // second it ended in. A run shorter than a second has no sample at all.
            let at =
                *ended_s.get_or_insert_with(|| run.world.metrics.start.elapsed().as_secs_f64());
            board.health = last.health(&run, lag_ms);
            refresh(&mut board, &run, &meta);
            board.view.elapsed_s = at;
        } else if running && last.at.elapsed() >= Duration::from_secs(1) {
            board.health = last.health(&run, lag_ms);
            refresh(&mut board, &run, &meta);
        }
        seen = current.clone();
        board.interrupt = Interrupt::of(&run.control);
        if running {
            // Between refreshes: the clock, the agents done and the end-of-run replay.
            let m = &run.world.metrics;
            board.view.elapsed_s = m.start.elapsed().as_secs_f64();
            board.view.done = m.agents_done.load(Ordering::Relaxed);
            board.view.status = run
                .world
                .resolving
                .line(u64::from(m.now_ms()))
                .unwrap_or_default();
        }
        show_phase(&mut board, &current);
        terminal.draw(|f| panels::draw(f, &board))?;
        if done && exit_on_finish {
            return Ok(());
        }
    }
}

/// Ctrl-C or `q`, as the command line's Ctrl-C: the first stops arrivals, the second
/// aborts (requests in flight dropped, the report still written); what the header then
/// says. `None` the third time: leave at once.
fn interrupt(control: &Control) -> Option<&'static str> {
    match Interrupt::of(control) {
        Interrupt::None => {
            control.stop.store(true, Ordering::Release);
            Some("draining, then the audit and report (again aborts)")
        }
        Interrupt::Stopped => {
            control.abort.store(true, Ordering::Release);
            Some("requests in flight dropped; the report is still written (again exits)")
        }
        Interrupt::Aborting => None,
    }
}

/// When the generator's health was last measured, and the process's CPU time then.
struct Gauge {
    at: Instant,
    cpu_s: f64,
}

impl Gauge {
    /// The generator's health now (CPU since the last measure), and measure from here.
    fn health(&mut self, run: &LiveRun, lag_ms: f64) -> Health {
        let cpu_s = cpu_seconds();
        let secs = self.at.elapsed().as_secs_f64().max(1e-3);
        let (rss_kib, _) = metrics::memory_kib();
        let started = run.world.metrics.agents_started.load(Ordering::Relaxed);
        let finished = run.world.metrics.agents_done.load(Ordering::Relaxed);
        let health = Health {
            cpu_pct: 100.0 * (cpu_s - self.cpu_s) / secs,
            lag_ms,
            live_tasks: started.saturating_sub(finished),
            rss_mib: rss_kib as f64 / 1024.0,
        };
        *self = Gauge {
            at: Instant::now(),
            cpu_s,
        };
        health
    }
}

/// The view now, from a merged snapshot of the metrics (the verdict, which the run does
/// not know, is kept).
fn refresh(board: &mut Dashboard, run: &LiveRun, meta: &Meta) {
    let snap = run.world.metrics.snapshot();
    let verdict = board.view.verdict.take();
    board.view = run.view(meta, &snap);
    board.view.verdict = verdict;
}

/// Where the run is, on the board: the phase's name, and the verdict once it is in.
fn show_phase(board: &mut Dashboard, phase: &Phase) {
    let v = &mut board.view;
    match phase {
        Phase::Running => {
            v.phase = if v.status.is_empty() {
                "running"
            } else {
                "resolving"
            }
            .into();
        }
        Phase::Auditing => {
            v.phase = "auditing".into();
            v.status.clear();
        }
        Phase::Done {
            validity,
            exit_code,
            note,
            headline,
        } => {
            v.phase = "done".into();
            v.status.clear();
            v.verdict = Some(Verdict {
                validity: *validity,
                exit_code: *exit_code,
                headline: headline.clone(),
                note: note.clone(),
            });
            board.status.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::LiveCounts;
    use crate::metrics::{Percentiles, Sample};
    use crate::run::faults::FaultRecord;
    use crate::run::live::{RegionRow, View};
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
                    p50_us: 2000 + 100 * (s % 3),
                    p99_us: 9000 + 700 * s,
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
            occ_retries: 84,
            requests: 7000,
            latency_corrected: Percentiles {
                p50_ms: 2.3,
                p90_ms: 6.1,
                p99_ms: 14.0,
                p999_ms: 19.5,
                max_ms: 31.0,
                count: 5000,
            },
            latency_raw: Percentiles {
                p50_ms: 2.0,
                p90_ms: 5.2,
                p99_ms: 12.5,
                p999_ms: 18.0,
                max_ms: 29.0,
                count: 7000,
            },
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
        d.view.attempts[0] = 999_961;
        d.view.verdict = Some(Verdict {
            validity: Validity::Valid,
            exit_code: 0,
            headline: String::new(),
            note: "report: reports/million-20261202T041500Z".into(),
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
            "press any key",
            "report: reports/million-20261202T041500Z",
            // The attempts bars carry their counts, in a bar's three columns.
            ".9M",
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

    /// Ctrl-C or `q`: the first stops arrivals, the second aborts, the third leaves; the
    /// header says STOPPED, then ABORTING, until the verdict.
    #[test]
    fn ctrl_c_stops_then_aborts_then_leaves() {
        let control = Control::default();
        assert!(interrupt(&control).is_some());
        assert!(control.stop.load(Ordering::Acquire) && !control.abort.load(Ordering::Acquire));
        assert_eq!(Interrupt::of(&control), Interrupt::Stopped);
        assert!(interrupt(&control).is_some());
        assert!(control.abort.load(Ordering::Acquire));
        assert_eq!(Interrupt::of(&control), Interrupt::Aborting);
        assert_eq!(interrupt(&control), None);
        for (state, word, colour) in [
            (Interrupt::Stopped, "STOPPED", Color::Yellow),
            (Interrupt::Aborting, "ABORTING", Color::Red),
        ] {
            for (w, h) in [(80, 24), (160, 48)] {
                let mut d = figures();
                d.interrupt = state;
                d.status = "requests in flight dropped; the report is still written".into();
                let b = render(&d, w, h);
                let (x, y) = find(&b, word).unwrap_or_else(|| panic!("{word}:\n{}", text(&b)));
                assert_eq!((y, b[(x, y)].style().bg), (0, Some(colour)), "{w}x{h}");
                // A long message gives way; the keys' hint stays whole.
                let first = text(&b).lines().next().unwrap_or_default().to_string();
                assert!(first.trim_end().ends_with("? help"), "{first}");
                // The verdict, once in, takes its place.
                d.view.verdict = short_run().view.verdict;
                let all = text(&render(&d, w, h));
                assert!(
                    !all.contains(word) && all.contains("VERDICT VALID"),
                    "{all}"
                );
            }
        }
    }

    /// What the loop does with the phase it is told: auditing says so; the verdict
    /// arrives with its headline and report, and ends the key's message.
    #[test]
    fn the_phase_shows_on_the_board() {
        let mut d = figures();
        d.status = "fired crash us-west-2".into();
        show_phase(&mut d, &Phase::Auditing);
        assert_eq!(d.view.phase, "auditing");
        let all = text(&render(
            &Dashboard {
                status: String::new(),
                ..d.clone()
            },
            80,
            24,
        ));
        assert!(all.contains("auditing, writing the report"), "{all}");
        show_phase(
            &mut d,
            &Phase::Done {
                validity: Validity::Invalid,
                exit_code: 1,
                note: "report: reports/x".into(),
                headline: "oversells 3".into(),
            },
        );
        assert_eq!(d.view.phase, "done");
        assert!(d.status.is_empty());
        assert_eq!(
            d.view.verdict,
            Some(Verdict {
                validity: Validity::Invalid,
                exit_code: 1,
                headline: "oversells 3".into(),
                note: "report: reports/x".into(),
            })
        );
        let all = text(&render(&d, 80, 24));
        assert!(
            all.contains("VERDICT INVALID (exit 1)") && all.contains("oversells 3"),
            "{all}"
        );
    }

    /// The text of the panel whose title starts with `title`: its box, borders included.
    fn panel(b: &ratatui::buffer::Buffer, title: &str) -> String {
        let a = b.area;
        let (x, y) = (0..a.height)
            .find_map(|y| {
                let line: String = (0..a.width).map(|x| b[(x, y)].symbol()).collect();
                let at = line.find(&format!("┌{title}"))?;
                Some((line[..at].chars().count() as u16, y))
            })
            .unwrap_or_else(|| panic!("no panel {title}:\n{}", text(b)));
        let right = (x + 1..a.width)
            .find(|&i| b[(i, y)].symbol() == "┐")
            .unwrap_or(a.width - 1);
        let bottom = (y + 1..a.height)
            .find(|&j| b[(x, j)].symbol() == "└")
            .unwrap_or(a.height - 1);
        (y..=bottom)
            .map(|j| (x..=right).map(|i| b[(i, j)].symbol()).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn braille(s: &str) -> usize {
        s.chars()
            .filter(|c| ('\u{2801}'..='\u{28FF}').contains(c))
            .count()
    }

    /// A run shorter than one 1 s sample (smoke.toml: 0.2 s) ends with an empty series:
    /// every panel then shows the run's totals, never zeros under a headline that says
    /// otherwise.
    fn short_run() -> Dashboard {
        let mut view = figures_view();
        view.elapsed_s = 0.2;
        view.done = 10_000;
        view.total = 10_000;
        view.series.clear();
        view.occ_retries = 372;
        view.requests = 10_480;
        view.retry_exhausted = 0;
        view.latency_corrected = Percentiles {
            p50_ms: 12.5,
            p90_ms: 30.1,
            p99_ms: 48.0,
            p999_ms: 61.0,
            max_ms: 75.0,
            count: 10_000,
        };
        view.latency_raw = Percentiles {
            p50_ms: 3.4,
            p90_ms: 9.9,
            p99_ms: 21.0,
            p999_ms: 33.0,
            max_ms: 40.0,
            count: 10_480,
        };
        view.outcomes = vec![
            ("COMMITTED".into(), 100),
            ("OUT_OF_STOCK".into(), 9_900),
            ("CONNECTION_RESET".into(), 480),
        ];
        view.verdict = Some(Verdict {
            validity: Validity::Valid,
            exit_code: 0,
            headline: "sold 100 of 100 units · oversells 0 · OCC retries 372".into(),
            note: "report: reports/smoke-20261202T041500Z".into(),
        });
        Dashboard {
            view,
            ..Dashboard::default()
        }
    }

    #[test]
    fn with_an_empty_series_the_panels_show_the_run_totals() {
        let d = short_run();
        for (w, h) in [(80, 24), (160, 48)] {
            let b = render(&d, w, h);
            let all = text(&b);
            let retries = panel(&b, "OCC");
            assert!(
                retries.lines().next().is_some_and(|t| t.contains(" 372")),
                "OCC retries are the run's total at {w}x{h}:\n{all}"
            );
            let throughput = panel(&b, "throughput");
            for total in ["100", "9900", "480"] {
                assert!(
                    throughput.contains(total),
                    "throughput shows the totals ({total}) at {w}x{h}:\n{all}"
                );
            }
            let latency = panel(&b, "latency");
            for figure in ["12.5", "3.4", "48.0", "21.0"] {
                assert!(latency.contains(figure), "{figure} at {w}x{h}:\n{all}");
            }
            let outcomes = panel(&b, "outcomes");
            assert!(outcomes.contains("9900"), "{all}");
        }
    }

    #[test]
    fn at_80_by_24_the_verdict_says_press_any_key_and_no_region_state_is_cut() {
        let states = std::iter::once(RegionState::Up).chain(FaultMode::ALL.map(RegionState::Down));
        for state in states {
            let mut d = short_run();
            d.view.regions[1].state = state;
            d.view.regions[1].errors = 1_234_567;
            d.view.regions[1].requests = 12_345_678;
            let b = render(&d, 80, 24);
            let all = text(&b);
            assert!(all.contains(&state.label()), "{state} is cut:\n{all}");
            assert!(all.contains("12345678"), "{all}");
            assert!(all.contains("1234567"), "{all}");
        }
        let all = text(&render(&short_run(), 80, 24));
        assert!(all.contains("VERDICT VALID (exit 0)"), "{all}");
        assert!(all.contains("press any key"), "{all}");
        // The report's place is said, whole.
        assert!(all.contains("reports/smoke-20261202T041500Z"), "{all}");
        // However long the scenario's name: the verdict and the hint win.
        let mut d = short_run();
        d.view.scenario = "a-scenario-with-a-name-much-longer-than-any-terminal-is-wide".into();
        if let Some(v) = d.view.verdict.as_mut() {
            v.validity = Validity::Unknown;
        }
        let all = text(&render(&d, 80, 24));
        assert!(all.contains("VERDICT UNKNOWN (exit 0)"), "{all}");
        assert!(all.contains("press any key"), "{all}");
    }

    /// The frame `swarm run scenarios/smoke.toml` ends on at 80×24: a headline on three
    /// rows, six kinds of outcome. Both latency rows, the commits and every total stay.
    #[test]
    fn at_80_by_24_a_long_headline_leaves_the_figures_whole() {
        let mut d = short_run();
        d.view.occ_retries = 487;
        d.view.outcomes = vec![
            ("COMMITTED".into(), 100),
            ("OUT_OF_STOCK".into(), 20_302),
            ("CONNECTION_RESET".into(), 423),
            ("REPLAYS".into(), 10_922),
            ("HTTP 200".into(), 20_302),
            ("HTTP network".into(), 423),
            ("HTTP 503".into(), 7),
        ];
        if let Some(v) = d.view.verdict.as_mut() {
            v.headline = "sold 100 of 100 units (100 settled purchases, from the database) · oversells 0 · duplicate settlements 0 · ledger drift 0 · mandate breaches 0 · OCC retries 487 (attempts 1×9799 2×81 3×38 4×15 5×50 6×17)".into();
        }
        let b = render(&d, 80, 24);
        let all = text(&b);
        let latency = panel(&b, "latency");
        assert!(
            latency.contains("start") && latency.contains("req"),
            "{all}"
        );
        let outcomes = panel(&b, "outcomes");
        for whole in ["COMMITTED", "OUT_OF_STOCK", "CONNECTION_RESET", "REPLAYS"] {
            assert!(outcomes.contains(whole), "{whole}:\n{all}");
        }
        // What does not fit is counted, the wire's statuses first.
        assert!(outcomes.contains("more"), "{all}");
        assert!(panel(&b, "OCC").contains("OCC 487"), "{all}");
        assert!(all.contains("press any key"), "{all}");
    }

    #[test]
    fn at_160_by_48_the_charts_say_what_they_draw_and_latency_has_its_history() {
        let b = render(&figures(), 160, 48);
        let all = text(&b);
        let throughput = panel(&b, "throughput");
        for name in ["commits/s", "declines/s", "errors/s", "┆ fault"] {
            assert!(throughput.contains(name), "legend {name}:\n{all}");
        }
        // The fault's start is drawn as a dotted line of its own mark.
        assert!(throughput.matches('┆').count() > 5, "{all}");
        let latency = panel(&b, "latency");
        assert!(braille(&latency) > 10, "p50 and p99 per second:\n{all}");
        for name in ["p50", "p99"] {
            assert!(latency.contains(name), "legend {name}:\n{all}");
        }
        // The figures stay, in their rows.
        assert!(
            latency.contains("corrected") && latency.contains("raw"),
            "{all}"
        );
    }
}
