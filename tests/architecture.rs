//! The architecture, enforced: every `crate::…` (and, in the binary, `swarm::…`) path in
//! `src/` is an arrow from one component to another, and only the arrows ARCHITECTURE.md
//! draws are allowed. In the spirit of rust-analyzer's tidy tests: it reads the source as
//! text, so it runs in milliseconds and needs nothing built.
//!
//! A component is a top-level module (`run`, `audit`, …), or one module of the system
//! under test (`sut::db`, `sut::kernel`, `sut::server`); the binary (`main.rs`, `cli/`) is
//! `cli`. Test modules (`#[cfg(test)] mod tests` at the end of a file) are left out: they
//! may reach anywhere. A re-export of another component's item is refused outright, since
//! it would hide the arrow behind it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Who may import whom. The order is the layering, top to bottom; the test also proves
/// the table itself has no circle.
const ALLOWED: &[(&str, &[&str])] = &[
    (
        "cli",
        &[
            "tui",
            "selftest",
            "report",
            "run",
            "exit",
            "audit",
            "gateway",
            "metrics",
            "history",
            "scenario",
            "sut::server",
            "sut::kernel",
            "sut::db",
            "addr",
            "lane",
        ],
    ),
    ("tui", &["run", "audit", "metrics", "history", "scenario"]),
    (
        "selftest",
        &[
            "run",
            "audit",
            "history",
            "scenario",
            "sut::kernel",
            "sut::db",
            "addr",
        ],
    ),
    (
        "report",
        &[
            "run", "exit", "audit", "metrics", "history", "scenario", "addr",
        ],
    ),
    (
        "run",
        &[
            "gateway",
            "audit",
            "metrics",
            "history",
            "scenario",
            "sut::kernel",
            "sut::db",
            "addr",
            "lane",
        ],
    ),
    ("exit", &["audit"]),
    // The auditor never imports the kernel: it re-derives every figure from raw rows.
    ("audit", &["history", "sut::db", "addr"]),
    (
        "gateway",
        &[
            "history",
            "scenario",
            "sut::server",
            "sut::kernel",
            "sut::db",
            "addr",
            "lane",
        ],
    ),
    ("metrics", &["history", "scenario", "lane"]),
    ("history", &[]),
    ("scenario", &["sut::kernel", "sut::db", "addr"]),
    // The system under test knows nothing of the tool.
    ("sut::server", &["sut::kernel", "sut::db", "addr"]),
    ("sut::kernel", &["sut::db", "addr"]),
    ("sut::db", &["addr"]),
    ("sut", &[]),
    ("addr", &[]),
    ("lane", &[]),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read src")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/run/agent.rs` → `["run", "agent"]`; `src/run/mod.rs` → `["run"]`; the binary's
/// files → `["cli", …]`.
fn module_of(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src()).expect("under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts == ["main"] {
        return vec!["cli".into()];
    }
    parts
}

fn component(path: &[String]) -> Option<String> {
    match path {
        [] => None,
        [first, second, ..] if first == "sut" => Some(format!("sut::{second}")),
        [first, ..] => Some(first.clone()),
    }
}

/// The file without its trailing test module and without comments.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            // Keep `//` inside string literals such as URLs ("http://…").
            Some(i) if l[..i].matches('"').count() % 2 == 0 => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path an item of `code` names through `crate::`, `super::` or (in the binary)
/// `swarm::`, with `use` groups expanded, resolved to an absolute module path.
fn paths_in(code: &str, here: &[String], binary: bool) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let roots: &[&str] = if binary {
        &["swarm::", "crate::"]
    } else {
        &["crate::", "super::"]
    };
    for root in roots {
        let mut from = 0;
        while let Some(i) = code[from..].find(root) {
            let start = from + i;
            from = start + root.len();
            let before = start.checked_sub(1).map(|j| bytes[j] as char);
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let tail = path_tail(&code[from..]);
            let base: Vec<String> = match *root {
                "crate::" if binary => vec!["cli".into()],
                "crate::" | "swarm::" => Vec::new(),
                _ => {
                    // `super` is the parent module (`here` already names a `mod.rs` by
                    // its folder).
                    let mut b = here.to_vec();
                    b.pop();
                    b
                }
            };
            for t in expand(&tail) {
                let mut path = base.clone();
                for seg in t.split("::").map(str::trim).filter(|s| !s.is_empty()) {
                    if seg == "super" {
                        path.pop();
                    } else if seg != "self" && seg != "*" {
                        path.push(seg.to_string());
                    }
                }
                out.push(path);
            }
        }
    }
    out
}

/// The path after a root, up to where it ends (a `{…}` group is kept whole).
fn path_tail(s: &str) -> String {
    let mut depth = 0;
    let mut end = s.len();
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                end = i;
                break;
            }
            '}' => depth -= 1,
            c if depth == 0 && !(c.is_alphanumeric() || c == '_' || c == ':' || c == '*') => {
                end = i;
                break;
            }
            _ => {}
        }
    }
    s[..end].to_string()
}

/// `a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e`.
fn expand(path: &str) -> Vec<String> {
    let Some(open) = path.find('{') else {
        return vec![path.to_string()];
    };
    let prefix = &path[..open];
    let inner = &path[open + 1..path.rfind('}').unwrap_or(path.len())];
    let mut parts = Vec::new();
    let (mut depth, mut last) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[last..i]);
                last = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[last..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .flat_map(|p| {
            let p = p.split(" as ").next().unwrap_or(p);
            expand(&format!("{prefix}{p}"))
        })
        .collect()
}

fn allowed() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    ALLOWED
        .iter()
        .map(|(from, to)| (*from, to.iter().copied().collect()))
        .collect()
}

/// One source file of a component: where it is, its module path, its component, and its
/// code (tests and comments left out).
struct Source {
    shown: String,
    here: Vec<String>,
    component: String,
    code: String,
}

/// Every file of `src/` but `lib.rs` (the module list).
fn sources() -> Vec<Source> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files
        .into_iter()
        .filter_map(|file| {
            let here = module_of(&file);
            let component = component(&here)?;
            let text = std::fs::read_to_string(&file).expect("read");
            Some(Source {
                shown: file.strip_prefix(src()).expect("src").display().to_string(),
                here,
                component,
                code: code_of(&text),
            })
        })
        .collect()
}

/// Every arrow in `src/`: (from component, to component, file, the path named).
fn arrows() -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    for f in sources() {
        for path in paths_in(&f.code, &f.here, f.component == "cli") {
            let Some(to) = component(&path) else { continue };
            if to != f.component {
                out.push((f.component.clone(), to, f.shown.clone(), path.join("::")));
            }
        }
    }
    out
}

#[test]
fn every_arrow_is_one_the_architecture_allows() {
    let allowed = allowed();
    let mut wrong = BTreeSet::new();
    let mut components = BTreeSet::new();
    for (from, to, file, path) in arrows() {
        components.insert(from.clone());
        let ok = allowed
            .get(from.as_str())
            .is_some_and(|a| a.contains(to.as_str()));
        if !ok {
            wrong.insert(format!("{file}: {from} → {to} (`{path}`)"));
        }
    }
    assert!(
        wrong.is_empty(),
        "arrows ARCHITECTURE.md does not allow:\n{}",
        wrong.into_iter().collect::<Vec<_>>().join("\n")
    );
    for c in &components {
        assert!(
            allowed.contains_key(c.as_str()),
            "component `{c}` is not in ALLOWED"
        );
    }
}

#[test]
fn the_auditor_never_imports_the_kernel_and_the_sut_never_imports_the_tool() {
    for (from, to, file, path) in arrows() {
        assert!(
            !(from == "audit" && to == "sut::kernel"),
            "{file}: the auditor imports the kernel (`{path}`)"
        );
        assert!(
            !(from.starts_with("sut") && !to.starts_with("sut") && to != "addr"),
            "{file}: the system under test imports the tool (`{path}`)"
        );
    }
}

#[test]
fn the_allowed_arrows_run_one_way() {
    // Each component may only import components listed after it in ALLOWED.
    let rank: BTreeMap<&str, usize> = ALLOWED
        .iter()
        .enumerate()
        .map(|(i, (c, _))| (*c, i))
        .collect();
    for (from, to) in ALLOWED {
        for t in *to {
            let (f, t_rank) = (rank[from], rank.get(t).copied());
            assert!(
                t_rank.is_some_and(|r| r > f),
                "{from} → {t} runs back up (or {t} is unknown)"
            );
        }
    }
}

#[test]
fn no_module_re_exports_another_components_items() {
    let mut hidden = Vec::new();
    for f in sources() {
        let exports = f
            .code
            .split(';')
            .filter(|s| s.trim_start().starts_with("pub use "));
        for stmt in exports {
            for path in paths_in(stmt, &f.here, f.component == "cli") {
                if component(&path).is_some_and(|to| to != f.component) {
                    hidden.push(format!("{}: pub use {}", f.shown, path.join("::")));
                }
            }
        }
    }
    assert!(
        hidden.is_empty(),
        "re-exports that hide an arrow:\n{}",
        hidden.join("\n")
    );
}

#[test]
fn the_checker_sees_arrows_it_must_refuse() {
    // The parser itself, on text it must read as forbidden arrows.
    let here = vec!["audit".to_string(), "state".to_string()];
    let code = "use crate::sut::{kernel::Kernel, db::DbUrl};\nfn f() { crate::tui::run(); }\n";
    let paths: Vec<String> = paths_in(code, &here, false)
        .iter()
        .map(|p| p.join("::"))
        .collect();
    assert_eq!(paths, ["sut::kernel::Kernel", "sut::db::DbUrl", "tui::run"]);
    let up = paths_in("use super::super::run::X;", &here, false);
    assert_eq!(component(&up[0]).as_deref(), Some("run"));
    let allowed = allowed();
    assert!(!allowed["audit"].contains("sut::kernel"));
    assert!(!allowed["sut::kernel"].contains("scenario"));
}
