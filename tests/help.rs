//! Every verb and subcommand explains every argument and shows a runnable example.

use std::process::Command;

const VERBS: &[&[&str]] = &[
    &["run"],
    &["audit"],
    &["resolve"],
    &["probe"],
    &["selftest"],
    &["serve"],
    &["report"],
    &["merge"],
    &["db"],
    &["db", "init"],
    &["db", "seed"],
    &["db", "stats"],
    &["db", "reset"],
    &["db", "sandbox"],
];

/// Argument lines (`  <X>`, `  -x`, `      --x`) in `help` that no description follows
/// (on the same line after two spaces, or on the next line).
fn undescribed(help: &str) -> Vec<String> {
    let lines: Vec<&str> = help.lines().collect();
    let mut missing = Vec::new();
    let mut in_args = false;
    for (i, line) in lines.iter().enumerate() {
        if line.ends_with(':') && !line.starts_with(' ') {
            in_args = *line == "Arguments:" || *line == "Options:";
            continue;
        }
        let t = line.trim_start();
        if !in_args || !(t.starts_with('-') || t.starts_with('<')) {
            continue;
        }
        let same_line = t
            .split_once("  ")
            .is_some_and(|(_, d)| !d.trim().is_empty());
        let next = lines.get(i + 1).map(|l| l.trim_start()).unwrap_or("");
        let next_line = !next.is_empty()
            && !next.starts_with('-')
            && !next.starts_with('<')
            && !next.starts_with('[')
            && lines[i + 1].len() - next.len() > line.len() - t.len();
        if !same_line && !next_line {
            missing.push(t.to_string());
        }
    }
    missing
}

/// `swarm VERB FLAG`'s help text, which must come out with success.
fn help_of(verb: &[&str], flag: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args(verb)
        .arg(flag)
        .output()
        .expect("swarm");
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{verb:?} {flag}: {help}");
    help
}

#[test]
fn every_argument_has_a_description_and_every_verb_an_example() {
    for verb in VERBS {
        let help = help_of(verb, "--help");
        assert!(help.contains("Example"), "{verb:?} has no example:\n{help}");
        // The short help keeps the example too.
        let short = help_of(verb, "-h");
        assert!(
            short.contains("Example"),
            "{verb:?} -h has no example:\n{short}"
        );
        let missing = undescribed(&help);
        assert!(
            missing.is_empty(),
            "{verb:?}: no description for {missing:?}\n{help}"
        );
    }
}

#[test]
fn run_help_has_the_exit_codes_and_the_short_help_its_example() {
    let help = |flag: &str| help_of(&["run"], flag);
    let long = help("--help");
    for code in ["0 ", "1 ", "2 ", "3 ", "4 ", "64 ", "70 "] {
        assert!(
            long.lines().any(|l| l.trim_start().starts_with(code)),
            "exit code {code}missing:\n{long}"
        );
    }
    assert!(long.contains("stopped early"), "{long}");
    let short = help("-h");
    assert!(short.contains("swarm run scenarios/smoke.toml"), "{short}");
}

#[test]
fn the_checker_finds_an_undescribed_argument() {
    let help = "Usage: x\n\nArguments:\n  <DIR>\n\nOptions:\n      --db <DB>\n          [env: X=]\n      --json\n          Print JSON\n";
    assert_eq!(undescribed(help), vec!["<DIR>", "--db <DB>"]);
}
