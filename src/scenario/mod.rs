//! The scenario: a TOML file under `scenarios/` that says what to run.
//!
//! Invariants: unknown keys are errors; every error names the file, line, column and
//! field; a scenario that loads has passed every check `validate` knows, so the layers
//! below may trust it (weights sum to 1, faults name known regions, counts are bounded).

mod contract;
mod fault;
mod locate;
mod model;
mod parsed;
mod threshold;
mod validate;

use std::path::{Path, PathBuf};

use thiserror::Error;

pub use contract::{
    AnswerMap, Contract, ContractError, ContractSpec, Existing, KeyPlace, Method, Piece, Pointer,
    Profile, ReplayMarker, RequestShape, Route, Slot, StatusRule, Template,
};
pub use fault::{
    Delay, Fault, FaultAction, FaultAt, FaultKind, FaultMode, FaultSpec, MAX_DELAY_MS, RegionState,
};
pub use model::*;
pub use parsed::{parse_duration, show_duration};
pub use threshold::{Metric, Threshold, ThresholdOp};

/// Why a scenario could not be used. Each variant maps to exit code 64.
#[derive(Debug, Error)]
pub enum ScenarioError {
    // The cause is the error's source: printed once, by whoever prints the chain.
    #[error("{path}: cannot read scenario")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: field `{field}`: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        field: String,
        message: String,
    },
}

impl ScenarioError {
    /// The field an `Invalid` error names (for tests and tooling).
    pub fn field(&self) -> Option<&str> {
        match self {
            ScenarioError::Invalid { field, .. } => Some(field),
            ScenarioError::Read { .. } => None,
        }
    }

    /// The 1-based line an `Invalid` error points at.
    pub fn line(&self) -> Option<usize> {
        match self {
            ScenarioError::Invalid { line, .. } => Some(*line),
            ScenarioError::Read { .. } => None,
        }
    }
}

impl Scenario {
    /// Read, parse and validate a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let read = |source| ScenarioError::Read {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read)?;
        if !meta.is_file() {
            return Err(read(std::io::Error::other("not a file")));
        }
        if meta.len() > MAX_SCENARIO_BYTES {
            return Err(read(std::io::Error::other(format!(
                "{} bytes: a scenario is at most {MAX_SCENARIO_BYTES}",
                meta.len()
            ))));
        }
        let bytes = std::fs::read(path).map_err(read)?;
        let text = std::str::from_utf8(&bytes).map_err(|e| {
            let valid = &bytes[..e.valid_up_to()];
            let valid = std::str::from_utf8(valid).unwrap_or_default();
            let (line, column) = locate::line_col(valid, valid.len());
            ScenarioError::Invalid {
                path: path.to_path_buf(),
                line,
                column,
                field: String::new(),
                message: format!(
                    "not UTF-8 (byte offset {}): save the scenario as UTF-8",
                    e.valid_up_to()
                ),
            }
        })?;
        Scenario::parse(path, text)
    }

    /// Parse and validate scenario text; `path` is only used in error messages.
    pub fn parse(path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
        let at_start = |message: &str| ScenarioError::Invalid {
            path: path.to_path_buf(),
            line: 1,
            column: 1,
            field: String::new(),
            message: message.to_string(),
        };
        if text.starts_with('\u{feff}') {
            return Err(at_start(
                "the file starts with a byte-order mark: save it as UTF-8 without one",
            ));
        }
        let mut scenario: Scenario = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let (line, column) = locate::line_col(text, span.start);
            ScenarioError::Invalid {
                path: path.to_path_buf(),
                line,
                column,
                field: bounded(&locate::field_at(text, span.start)),
                message: bounded_message(e.message().trim()),
            }
        })?;
        // The keys the file writes (it parsed as a scenario, so it parses as a table): a
        // file that says nothing would run every default, almost surely the wrong file.
        let written: toml::Table = toml::from_str(text).unwrap_or_default();
        {
            use sha2::{Digest, Sha256};
            scenario.text_sha256 = hex::encode(Sha256::digest(text.as_bytes()));
        }
        if written.is_empty() {
            return Err(at_start(
                "empty scenario: say at least its name (e.g. name = \"smoke\")",
            ));
        }
        if scenario.name.is_empty() {
            // The file's stem, made a safe file-name component (the report directory's).
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let safe: String = stem
                .chars()
                .map(|c| if is_name_char(c) { c } else { '-' })
                .take(MAX_NAME_CHARS)
                .collect();
            scenario.name = if safe.trim_matches('.').is_empty() {
                "scenario".into()
            } else {
                safe
            };
        }
        scenario.validate().map_err(|(locator, field, message)| {
            let (line, column) = locate::line_col(text, locate::find(text, locator));
            ScenarioError::Invalid {
                path: path.to_path_buf(),
                line,
                column,
                field,
                message: bounded_message(&message),
            }
        })?;
        // TLS files are named relative to the scenario file, wherever swarm runs from, and
        // must be there (what they hold is read when the target opens).
        if let Some(tls) = &mut scenario.target.tls {
            let dir = path.parent().unwrap_or(Path::new(""));
            for (key, file) in [
                ("ca_file", &mut tls.ca_file),
                ("client_cert", &mut tls.client_cert),
                ("client_key", &mut tls.client_key),
            ] {
                let Some(file) = file else { continue };
                if file.is_relative() {
                    *file = dir.join(&*file);
                }
                if !file.is_file() {
                    let locator = validate::Locator::Key("target", "tls");
                    let (line, column) = locate::line_col(text, locate::find(text, locator));
                    return Err(ScenarioError::Invalid {
                        path: path.to_path_buf(),
                        line,
                        column,
                        field: format!("target.tls.{key}"),
                        message: bounded_message(&format!(
                            "`{}` is not a file (a relative path is read from the scenario's directory)",
                            file.display()
                        )),
                    });
                }
            }
        }
        scenario.warnings = not_applying(&scenario, &written);
        Ok(scenario)
    }
}

/// Sections the file writes that this kind of target does not use: said, not ignored
/// silently.
fn not_applying(s: &Scenario, written: &toml::Table) -> Vec<String> {
    let mut out = Vec::new();
    let source = if s.target.ids.is_some() {
        Some("target.ids")
    } else if s.target.discover.is_some() {
        Some("target.discover")
    } else {
        None
    };
    if let Some(source) = source {
        for section in ["catalog", "mandates", "kernel"] {
            if written.contains_key(section) {
                out.push(format!(
                    "[{section}] is ignored: the live deployment's ids, price and limits come from {source}"
                ));
            }
        }
    }
    let live = s.regions.iter().all(|r| r.endpoint.is_some());
    if live && written.contains_key("kernel") && source.is_none() {
        out.push("[kernel] is ignored: a live endpoint runs its own kernel".into());
    }
    let contract_written = written
        .get("target")
        .and_then(|t| t.as_table())
        .is_some_and(|t| t.contains_key("contract"));
    if contract_written && s.target.kind == TargetKind::Direct {
        out.push(
            "[target.contract] is ignored: a direct target calls the kernel in-process, which speaks ZeroRace's contract".into(),
        );
    }
    out
}

/// Largest scenario file read (a scenario is a few hundred bytes; this is generous).
pub const MAX_SCENARIO_BYTES: u64 = 1 << 20;
/// Longest scenario or region name: a file-name component.
pub const MAX_NAME_CHARS: usize = 64;

/// Letters, digits, `-`, `_`, `.`: what a scenario name (a report directory's) may hold.
pub(crate) fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// An error message with every long token in it cut (a 50 MB token is not echoed whole).
fn bounded_message(message: &str) -> String {
    const MAX_TOTAL: usize = 400;
    let cut: Vec<String> = message.split(' ').map(bounded).collect();
    bounded_to(&cut.join(" "), MAX_TOTAL)
}

fn bounded_to(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// `text` cut to a length an error message can carry.
pub(crate) fn bounded(text: &str) -> String {
    bounded_to(text, 80)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        Scenario::parse(Path::new("t.toml"), text)
    }

    #[test]
    fn ten_lines_are_enough() {
        let s = parse("name = \"tiny\"\n").expect("defaults");
        assert_eq!(s.name, "tiny");
        assert_eq!(s.catalog.stock, 100);
        assert_eq!(s.regions.len(), 1);
        assert!((s.mix.well_behaved - 1.0).abs() < 1e-9);
    }

    #[test]
    fn unknown_key_names_line_and_field() {
        let err = parse("name = \"x\"\n\n[catalog]\nitems = 1\nstok = 5\n").unwrap_err();
        assert_eq!(err.line(), Some(5), "{err}");
        assert_eq!(err.field(), Some("catalog.stok"), "{err}");
        assert!(err.to_string().starts_with("t.toml:5:"), "{err}");
    }

    #[test]
    fn bad_type_in_inline_table_names_field() {
        let err = parse("name = \"x\"\nagents = { count = \"many\" }\n").unwrap_err();
        assert_eq!(err.line(), Some(2), "{err}");
        assert_eq!(err.field(), Some("agents.count"), "{err}");
    }

    #[test]
    fn weights_must_sum_to_one() {
        let err = parse("mix = { well_behaved = 0.5, double_submit = 0.2 }\n").unwrap_err();
        assert_eq!(err.field(), Some("mix"), "{err}");
        assert_eq!(err.line(), Some(1));
    }

    #[test]
    fn fault_must_name_a_known_region() {
        let text = "[[regions]]\nname = \"a\"\n\n[[faults]]\nat = \"50%\"\nkind = \"region-down\"\nregion = \"b\"\nmode = \"crash\"\n";
        let err = parse(text).unwrap_err();
        assert_eq!(err.field(), Some("faults[0].region"), "{err}");
        assert_eq!(err.line(), Some(7), "{err}");
    }

    #[test]
    fn latency_faults_need_a_latency_and_only_they_take_one() {
        let head = "[[regions]]\nname = \"a\"\n\n[[faults]]\nat = \"50%\"\nkind = \"region-down\"\nregion = \"a\"\n";
        let err = parse(&format!("{head}mode = \"latency\"\n")).unwrap_err();
        assert_eq!(err.field(), Some("faults[0].latency_ms"), "{err}");
        let err = parse(&format!("{head}mode = \"crash\"\njitter_ms = 5\n")).unwrap_err();
        assert_eq!(err.field(), Some("faults[0].jitter_ms"), "{err}");
        assert_eq!(err.line(), Some(9), "{err}");
        let ok = parse(&format!(
            "{head}mode = \"latency\"\nlatency_ms = 100\njitter_ms = 20\n"
        ))
        .expect("valid");
        let FaultAction::RegionDown { delay, .. } = ok.faults[0].action else {
            panic!("a region fault: {:?}", ok.faults[0]);
        };
        assert_eq!(
            delay,
            Delay {
                latency_ms: 100,
                jitter_ms: 20
            }
        );
        for _ in 0..100 {
            let d = delay.sample().as_millis();
            assert!((80..=120).contains(&d), "{d}");
        }
    }

    #[test]
    fn live_ids_are_checked_and_name_the_bad_one() {
        let u = "00000000-0000-4000-8000-000000000001";
        let ids = format!(
            "ids = {{ merchant = \"{u}\", mandates = [\"{u}\", \"nope\"], items = [\"{u}\"], \
             price_minor = 700, currency = \"EUR\", stock_per_item = 60, cap_per_mandate_minor = 9000 }}"
        );
        let err = parse(&format!(
            "target = {{ kind = \"http\", {ids} }}\n[[regions]]\nname = \"a\"\nendpoint = \"http://127.0.0.1:1\"\n"
        ))
        .unwrap_err();
        assert_eq!(err.field(), Some("target.ids.mandates[1]"), "{err}");
        let err = parse(&format!(
            "target = {{ kind = \"http\", {} }}\n[[regions]]\nname = \"a\"\n",
            ids.replace("nope", u)
        ))
        .unwrap_err();
        assert_eq!(err.field(), Some("target.ids"), "{err}");
        // Given whole, the ids carry their price and limits; [catalog] is said to be ignored.
        let live = format!(
            "target = {{ kind = \"http\", {} }}\ncatalog = {{ stock = 5 }}\n[[regions]]\nname = \"a\"\nendpoint = \"http://127.0.0.1:1\"\n",
            ids.replace("nope", u)
        );
        let ok = parse(&live).expect("valid");
        let catalog = ok.live_catalog.as_ref().expect("typed");
        assert_eq!((catalog.price_minor, catalog.stock_per_item), (700, 60));
        assert_eq!(catalog.mandates.len(), 2);
        assert_eq!(ok.warnings.len(), 1, "{:?}", ok.warnings);
        assert!(ok.warnings[0].contains("[catalog] is ignored"));
        let err = parse(&live.replace("currency = \"EUR\"", "currency = \"euro\"")).unwrap_err();
        assert_eq!(err.field(), Some("target.ids.currency"), "{err}");
        let err = parse(
            "target = { kind = \"http\" }\n[[regions]]\nname = \"a\"\nendpoint = \"ftp://x.example\"\n",
        )
        .unwrap_err();
        assert_eq!(err.field(), Some("regions[0].endpoint"), "{err}");
        assert_eq!(err.line(), Some(4), "{err}");
    }

    #[test]
    fn tls_settings_are_checked_against_the_target() {
        let live = |target: &str, url: &str| {
            parse(&format!(
                "target = {{ kind = \"http\"{target} }}\n[[regions]]\nname = \"a\"\nendpoint = \"{url}\"\n"
            ))
        };
        let ok = live(", tls = { insecure = true }", "https://x.example").expect("valid");
        assert!(ok.target.tls.as_ref().is_some_and(|t| t.insecure));
        // A file that is not there is named with the field, relative to the scenario file
        // (here `t.toml` in the working directory).
        let err = live(
            ", tls = { ca_file = \"no-such-ca.pem\" }",
            "https://x.example",
        )
        .unwrap_err();
        assert_eq!(err.field(), Some("target.tls.ca_file"), "{err}");
        assert!(
            err.to_string().contains("`no-such-ca.pem` is not a file"),
            "{err}"
        );
        for (target, url, field) in [
            (
                ", tls = { ca_file = \"ca.pem\" }",
                "http://x.example",
                "target.tls",
            ),
            (
                ", tls = { client_cert = \"c.pem\" }",
                "https://x.example",
                "target.tls.client_key",
            ),
            (
                ", tls = { client_key = \"k.pem\" }",
                "https://x.example",
                "target.tls.client_cert",
            ),
            (
                ", tls = { self_signed = true }",
                "https://x.example",
                "target.tls.self_signed",
            ),
            (
                ", tls = { insecure = true, ca_file = \"a\" }",
                "https://x.example",
                "target.tls.insecure",
            ),
            (
                ", tls = { server_name = \"a b\" }",
                "https://x.example",
                "target.tls.server_name",
            ),
            (", http = \"3\"", "https://x.example", "target.http"),
        ] {
            let err = live(target, url).unwrap_err();
            assert_eq!(err.field(), Some(field), "{target}: {err}");
            assert_eq!(err.line(), Some(1), "{target}: {err}");
        }
        // A direct target has no HTTP version or TLS.
        let err = parse("target = { http = \"2\" }\n").unwrap_err();
        assert_eq!(err.field(), Some("target.http"), "{err}");
        let err = parse("target = { tls = { self_signed = true } }\n").unwrap_err();
        assert_eq!(err.field(), Some("target.tls"), "{err}");
        // In-process servers with TLS and HTTP/2 are fine.
        let ok =
            parse("target = { kind = \"http\", http = \"2\", tls = { self_signed = true } }\n")
                .expect("valid");
        assert_eq!(ok.target.http, HttpVersion::Http2);
    }

    #[test]
    fn fault_times_parse() {
        assert_eq!(FaultAt::parse("50%"), Ok(FaultAt::Progress(0.5)));
        let ms = std::time::Duration::from_millis;
        assert_eq!(FaultAt::parse("20s"), Ok(FaultAt::Time(ms(20_000))));
        assert_eq!(FaultAt::parse("150ms"), Ok(FaultAt::Time(ms(150))));
        assert_eq!(
            FaultAt::parse("50%").map(|a| a.to_string()),
            Ok("50%".into())
        );
        assert_eq!(
            FaultAt::parse("1500ms").map(|a| a.to_string()),
            Ok("1500ms".into())
        );
        assert!(FaultAt::parse("150%").is_err());
        assert!(FaultAt::parse("soon").is_err());
    }
}
