//! The architecture, enforced: every `crate::…`, `super::…` and `self::…` path in `src/`
//! (and, in the binary, `swarm::…`) is an arrow from one component to another, and only
//! the arrows drawn by ARCHITECTURE.md's table ("Layers and the arrows between them") are
//! allowed. That table is the one source: this test reads it, proves it runs one way, and
//! holds `src/` to it. In the spirit of rust-analyzer's tidy tests it reads the source as
//! text (a small lexer, so strings and comments are never code), runs in milliseconds and
//! needs nothing built.
//!
//! A component is a top-level module (`run`, `audit`, …), or one module of the system
//! under test (`sut::db`, `sut::kernel`, `sut::server`); the binary (`main.rs`, `cli/`) is
//! `cli`. `lib.rs` and `sut/mod.rs` are module lists and may hold nothing else. Items under
//! `#[cfg(test)]` (a test module: exactly its braces) are left out: they may reach
//! anywhere. Refused besides a forbidden arrow: a re-export of another component's item
//! (`pub use`, `pub(crate) use`, … or a public `type` alias, also through a module imported
//! first), since it would hide the arrow behind it; and what would hide arrows wholesale:
//! an alias or glob of the crate root, a glob import from another component, `extern
//! crate`, `#[path]` and `include!`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

// ---------------------------------------------------------------------------------------
// The table, from ARCHITECTURE.md.

const LAYERS_HEADING: &str = "## Layers and the arrows between them";

/// Who may import whom: one entry per component, and its row (the layering, top to
/// bottom; components sharing a row share a rank).
#[derive(Debug)]
struct Layers {
    allowed: BTreeMap<String, BTreeSet<String>>,
    rank: BTreeMap<String, usize>,
}

fn layers() -> Layers {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md");
    let md = std::fs::read_to_string(&file).expect("read ARCHITECTURE.md");
    layers_of(&md).unwrap_or_else(|e| panic!("ARCHITECTURE.md's layer table: {e}"))
}

/// The `| component | may import |` table under [`LAYERS_HEADING`]. Each row names its
/// components in backticks (an aside in parentheses may follow), and what they may import:
/// a comma-separated list, `—` for nothing, or `everything below`; prose may follow the
/// list after ` — ` or in parentheses, and a "never `x`" there is checked too.
fn layers_of(md: &str) -> Result<Layers, String> {
    let (_, section) = md
        .split_once(&format!("\n{LAYERS_HEADING}\n"))
        .ok_or(format!("no section `{LAYERS_HEADING}`"))?;
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut lines = section
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with('|'));
    let header = lines.next().ok_or("no table in the section")?;
    if cells(header) != ["component", "may import"] {
        return Err(format!(
            "the table's header is `{header}`, not `| component | may import |`"
        ));
    }
    let rule = lines.next().unwrap_or_default();
    if !(cells(rule).len() == 2 && cells(rule).iter().all(|c| is_rule(c))) {
        return Err(format!("`{rule}` is not the table's `|---|---|` line"));
    }
    enum May {
        These(Vec<String>),
        EverythingBelow,
    }
    // (components, what they may import, what their row says they never import)
    let mut rows: Vec<(Vec<String>, May, Vec<String>)> = Vec::new();
    for row in lines.take_while(|l| l.starts_with('|')) {
        let bad = |why: &str| format!("row `{row}`: {why}");
        let [who, may] = cells(row)[..] else {
            return Err(bad("expected two cells"));
        };
        let who = components_cell(who).map_err(|e| bad(&e))?;
        let first = &who[0];
        let (list, note) = split_note(may);
        let may = match list {
            "—" => May::These(Vec::new()),
            "everything below" => May::EverythingBelow,
            _ => May::These(
                list.split(',')
                    .map(|c| {
                        let c = c.trim();
                        let c = c
                            .strip_prefix('`')
                            .and_then(|c| c.strip_suffix('`'))
                            .unwrap_or(c);
                        match is_component(c) {
                            true => Ok(c.to_string()),
                            false => Err(format!("`{first}`: `{c}` is not a component")),
                        }
                    })
                    .collect::<Result<_, _>>()?,
            ),
        };
        let never = note
            .split_once("never")
            .map(|(_, after)| {
                after
                    .split('`')
                    .skip(1)
                    .step_by(2)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        rows.push((who, may, never));
    }
    if rows.is_empty() {
        return Err("the table has no rows".into());
    }
    let mut layers = Layers {
        allowed: BTreeMap::new(),
        rank: BTreeMap::new(),
    };
    for (rank, (who, _, _)) in rows.iter().enumerate() {
        for c in who {
            if layers.rank.insert(c.clone(), rank).is_some() {
                return Err(format!("`{c}` has two rows"));
            }
        }
    }
    for (rank, (who, may, never)) in rows.iter().enumerate() {
        let may: BTreeSet<String> = match may {
            May::These(list) => list.iter().cloned().collect(),
            May::EverythingBelow => rows[rank + 1..]
                .iter()
                .flat_map(|(w, _, _)| w.iter().cloned())
                .collect(),
        };
        for c in who {
            if let Some(t) = may.iter().find(|t| !layers.rank.contains_key(*t)) {
                return Err(format!("`{c}` may import `{t}`, which has no row"));
            }
            if let Some(t) = never.iter().find(|t| may.contains(*t)) {
                return Err(format!("`{c}` may import `{t}`, yet its row says never"));
            }
            layers.allowed.insert(c.clone(), may.clone());
        }
    }
    Ok(layers)
}

/// `| a | b |` → `["a", "b"]`.
fn cells(row: &str) -> Vec<&str> {
    let row = row.trim();
    let row = row.strip_prefix('|').unwrap_or(row);
    let row = row.strip_suffix('|').unwrap_or(row);
    row.split('|').map(str::trim).collect()
}

fn is_rule(cell: &str) -> bool {
    cell.contains('-') && cell.chars().all(|c| c == '-' || c == ':')
}

/// `` `addr`, `lane` `` or `` `cli` (binary: `main.rs`) `` → the components it names.
fn components_cell(cell: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut rest = cell.trim();
    loop {
        let Some((name, after)) = rest.strip_prefix('`').and_then(|r| r.split_once('`')) else {
            return Err("the first cell names its components in backticks".into());
        };
        if !is_component(name) {
            return Err(format!("`{name}` is not a component"));
        }
        out.push(name.to_string());
        rest = after.trim_start();
        match rest.strip_prefix(',') {
            Some(r) => rest = r.trim_start(),
            None => break,
        }
    }
    if rest.is_empty() || (rest.starts_with('(') && rest.ends_with(')')) {
        Ok(out)
    } else {
        Err(format!(
            "`{rest}` after the components is neither nothing nor `(…)`"
        ))
    }
}

/// `a, b — prose` or `a, b (prose)` → (`a, b`, `prose`).
fn split_note(cell: &str) -> (&str, &str) {
    if let Some((list, note)) = cell.split_once(" — ") {
        return (list.trim(), note);
    }
    match cell.split_once(" (") {
        Some((list, note)) if note.ends_with(')') => (list.trim(), note),
        _ => (cell.trim(), ""),
    }
}

/// `run`, `sut::kernel`: lower-case identifiers joined by `::`.
fn is_component(name: &str) -> bool {
    name.split("::").all(|s| {
        s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    })
}

/// Each component imports only components of later rows, so the table has no circle.
fn one_way(layers: &Layers) -> Result<(), String> {
    for (from, to) in &layers.allowed {
        for t in to {
            if layers.rank[t] <= layers.rank[from] {
                return Err(format!("`{from}` → `{t}` runs back up"));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Reading Rust: tokens, as far as paths need them.

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    /// An identifier or keyword (a raw identifier without its `r#`).
    Ident(String),
    /// One punctuation character: `::` is two `:`.
    Punct(char),
    /// A string literal's contents, escapes as written.
    Str(String),
    /// Any other literal, or a lifetime.
    Lit,
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    line: usize,
}

/// The tokens of `text`, comments dropped. Good enough for this codebase: strings (also
/// raw and byte strings), chars and lifetimes, nested block comments, raw identifiers.
fn tokens(text: &str) -> Vec<Token> {
    let s: Vec<char> = text.chars().collect();
    let at = |i: usize| s.get(i).copied().unwrap_or('\0');
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let (mut i, mut line, mut out) = (0, 1, Vec::new());
    // Moves `i` to `to`, counting lines on the way.
    let skip = |i: &mut usize, line: &mut usize, to: usize| {
        *line += s[*i..to.min(s.len())]
            .iter()
            .filter(|c| **c == '\n')
            .count();
        *i = to.min(s.len());
    };
    while i < s.len() {
        let (c, start) = (s[i], line);
        let mut end = i + 1;
        let tok = if c.is_whitespace() {
            None
        } else if c == '/' && at(i + 1) == '/' {
            end = (i..s.len()).find(|j| s[*j] == '\n').unwrap_or(s.len());
            None
        } else if c == '/' && at(i + 1) == '*' {
            let (mut depth, mut j) = (0, i);
            while j < s.len() {
                match (s[j], at(j + 1)) {
                    ('/', '*') => (depth, j) = (depth + 1, j + 2),
                    ('*', '/') => (depth, j) = (depth - 1, j + 2),
                    _ => j += 1,
                }
                if depth == 0 {
                    break;
                }
            }
            end = j;
            None
        } else if c == '"' {
            let close = string_end(&s, i + 1);
            end = close + 1;
            Some(Tok::Str(s[i + 1..close.min(s.len())].iter().collect()))
        } else if c == '\'' {
            // A char (`'x'`, `'\n'`, `'\u{7f}'`) or a lifetime (`'a`).
            end = char_end(&s, i).unwrap_or_else(|| {
                (i + 1..s.len())
                    .find(|j| !is_ident(s[*j]))
                    .unwrap_or(s.len())
            });
            Some(Tok::Lit)
        } else if c.is_ascii_digit() {
            end = (i..s.len())
                .find(|j| !(is_ident(s[*j]) || (s[*j] == '.' && at(j + 1).is_ascii_digit())))
                .unwrap_or(s.len());
            Some(Tok::Lit)
        } else if is_ident(c) {
            let word_end = (i..s.len()).find(|j| !is_ident(s[*j])).unwrap_or(s.len());
            let word: String = s[i..word_end].iter().collect();
            let next = at(word_end);
            let hashes = (word_end..s.len()).take_while(|j| s[*j] == '#').count();
            if matches!(word.as_str(), "r" | "br" | "cr") && at(word_end + hashes) == '"' {
                // A raw string: r"…", r#"…"#, …
                let body = word_end + hashes + 1;
                let closing: Vec<char> = std::iter::once('"')
                    .chain(std::iter::repeat_n('#', hashes))
                    .collect();
                let close = (body..s.len())
                    .find(|j| s[*j..].starts_with(&closing))
                    .unwrap_or(s.len());
                end = close + closing.len();
                Some(Tok::Str(s[body..close].iter().collect()))
            } else if word == "r" && next == '#' && is_ident(at(word_end + 1)) {
                end = (word_end + 1..s.len())
                    .find(|j| !is_ident(s[*j]))
                    .unwrap_or(s.len());
                Some(Tok::Ident(s[word_end + 1..end].iter().collect()))
            } else if matches!(word.as_str(), "b" | "c") && next == '"' {
                let close = string_end(&s, word_end + 1);
                end = close + 1;
                Some(Tok::Str(
                    s[word_end + 1..close.min(s.len())].iter().collect(),
                ))
            } else if word == "b" && next == '\'' {
                end = char_end(&s, word_end).unwrap_or(word_end + 1);
                Some(Tok::Lit)
            } else {
                end = word_end;
                Some(Tok::Ident(word))
            }
        } else {
            Some(Tok::Punct(c))
        };
        skip(&mut i, &mut line, end);
        if let Some(tok) = tok {
            out.push(Token { tok, line: start });
        }
    }
    out
}

/// The index past the char literal whose opening quote is at `q`; None for a lifetime.
fn char_end(s: &[char], q: usize) -> Option<usize> {
    let at = |i: usize| s.get(i).copied().unwrap_or('\0');
    if at(q + 1) == '\\' {
        Some(
            (q + 3..s.len())
                .find(|j| s[*j] == '\'')
                .map_or(s.len(), |j| j + 1),
        )
    } else if at(q + 2) == '\'' {
        Some(q + 3)
    } else {
        None
    }
}

/// Where the string whose body starts at `from` ends (its closing `"`).
fn string_end(s: &[char], from: usize) -> usize {
    let mut j = from;
    while j < s.len() && s[j] != '"' {
        j += if s[j] == '\\' { 2 } else { 1 };
    }
    j.min(s.len())
}

fn is(t: Option<&Token>, tok: &str) -> bool {
    t.is_some_and(|t| match &t.tok {
        Tok::Ident(w) => w == tok,
        Tok::Punct(c) => tok.len() == 1 && tok.starts_with(*c),
        _ => false,
    })
}

fn ident(t: Option<&Token>) -> Option<&str> {
    match t.map(|t| &t.tok) {
        Some(Tok::Ident(w)) => Some(w),
        _ => None,
    }
}

/// `::` at `toks[i]`.
fn colons(toks: &[Token], i: usize) -> bool {
    is(toks.get(i), ":") && is(toks.get(i + 1), ":")
}

/// The index past the bracket that closes the one at `toks[open]`.
fn closing(toks: &[Token], open: usize) -> usize {
    let mut depth = 0usize;
    for (j, t) in toks.iter().enumerate().skip(open) {
        match t.tok {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']' | '}') => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
    }
    toks.len()
}

/// The attribute at `toks[i]` (`#[…]` or `#![…]`): its contents and the index past it.
fn attribute(toks: &[Token], i: usize) -> Option<(&[Token], usize, bool)> {
    if !is(toks.get(i), "#") {
        return None;
    }
    let inner = is(toks.get(i + 1), "!");
    let open = i + 1 + inner as usize;
    if !is(toks.get(open), "[") {
        return None;
    }
    let end = closing(toks, open);
    Some((
        &toks[open + 1..end.saturating_sub(1).max(open + 1)],
        end,
        inner,
    ))
}

fn is_cfg_test(attr: &[Token]) -> bool {
    let words: Vec<&Tok> = attr.iter().map(|t| &t.tok).collect();
    words
        == [
            &Tok::Ident("cfg".into()),
            &Tok::Punct('('),
            &Tok::Ident("test".into()),
            &Tok::Punct(')'),
        ]
}

/// The tokens without test-only code: the item after `#[cfg(test)]` (a test module is
/// skipped to its closing brace, nothing further) and the rest of a scope under
/// `#![cfg(test)]`. Only `cfg(test)` counts (not `not(test)`, not `any(test, …)`).
fn without_tests(toks: &[Token]) -> Vec<Token> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        match attribute(toks, i) {
            Some((attr, end, inner)) if is_cfg_test(attr) => {
                i = if inner {
                    scope_end(toks, end)
                } else {
                    let mut j = end;
                    while let Some((_, next, _)) = attribute(toks, j) {
                        j = next;
                    }
                    item_end(toks, j)
                };
            }
            _ => {
                out.push(toks[i].clone());
                i += 1;
            }
        }
    }
    out
}

/// The index past the item (or field, or statement) starting at `toks[i]`: its `;`, its
/// closing `}`, a `,` outside brackets, or the bracket that closes its scope (kept). Ends
/// early rather than late: too little skipped reads test code, too much would hide code.
fn item_end(toks: &[Token], i: usize) -> usize {
    let (mut depth, mut angle) = (0usize, 0usize);
    for j in i..toks.len() {
        match toks[j].tok {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']' | '}') if depth == 0 => return j,
            Tok::Punct(c @ (')' | ']' | '}')) => {
                depth -= 1;
                if depth == 0 && c == '}' {
                    return j + 1;
                }
            }
            Tok::Punct(';') if depth == 0 => return j + 1,
            Tok::Punct(',') if depth == 0 && angle == 0 => return j + 1,
            Tok::Punct('<') if depth == 0 => angle += 1,
            Tok::Punct('>') if depth == 0 && !is(toks.get(j.wrapping_sub(1)), "-") => {
                angle = angle.saturating_sub(1)
            }
            _ => {}
        }
    }
    toks.len()
}

/// The index of the bracket that closes the scope `toks[i]` is in (or the end).
fn scope_end(toks: &[Token], i: usize) -> usize {
    let mut depth = 0usize;
    for (j, t) in toks.iter().enumerate().skip(i) {
        match t.tok {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']' | '}') if depth == 0 => return j,
            Tok::Punct(')' | ']' | '}') => depth -= 1,
            _ => {}
        }
    }
    toks.len()
}

/// A string in an attribute that is a path (`#[serde(with = "crate::x::y")]`) is read as
/// one.
fn with_attribute_paths(toks: Vec<Token>) -> Vec<Token> {
    let mut out = Vec::new();
    let mut attr_end = 0;
    for (i, t) in toks.iter().enumerate() {
        if let Some((_, end, _)) = attribute(&toks, i) {
            attr_end = attr_end.max(end);
        }
        match &t.tok {
            Tok::Str(s)
                if i < attr_end
                    && s.contains("::")
                    && s.chars()
                        .all(|c| c.is_alphanumeric() || c == '_' || c == ':') =>
            {
                out.extend(tokens(s).into_iter().map(|tok| Token {
                    line: t.line,
                    ..tok
                }));
            }
            _ => out.push(t.clone()),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Reading `src/`: which module a file is, and what it names.

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

/// Every file of `src/`: (its path under `src/`, its text).
fn sources() -> Vec<(String, String)> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files
        .into_iter()
        .map(|file| {
            let shown = file.strip_prefix(src()).expect("under src");
            let text = std::fs::read_to_string(&file).expect("read");
            (shown.to_string_lossy().replace('\\', "/"), text)
        })
        .collect()
}

/// A file's module path and its crate's root: `run/agent.rs` → `["run", "agent"]`,
/// `run/mod.rs` → `["run"]`, `lib.rs` → `[]`, all under the root `[]`. A binary's files
/// are a crate of their own, rooted at `cli` (`main.rs` → `["cli"]`, `cli/run.rs` →
/// `["cli", "cli", "run"]`) or at `bin` (`bin/x.rs` → `["bin"]`).
fn module_of(file: &str) -> (Vec<String>, Vec<String>) {
    let mut parts: Vec<String> = file
        .trim_end_matches(".rs")
        .split('/')
        .map(String::from)
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    match parts.first().map(String::as_str) {
        Some("lib") if parts.len() == 1 => (Vec::new(), Vec::new()),
        Some("main") if parts.len() == 1 => (vec!["cli".into()], vec!["cli".into()]),
        Some("cli") => ([vec!["cli".into()], parts].concat(), vec!["cli".into()]),
        Some("bin") => {
            let here = [vec!["bin".into()], parts.split_off(2.min(parts.len()))].concat();
            (here, vec!["bin".into()])
        }
        _ => (parts, Vec::new()),
    }
}

/// The component a module path is in.
fn component(path: &[String]) -> Option<String> {
    match path {
        [] => None,
        [first, second, ..] if first == "sut" => Some(format!("sut::{second}")),
        [first, ..] => Some(first.clone()),
    }
}

/// `lib.rs` and `sut/mod.rs` list modules and hold nothing else.
fn is_module_list(here: &[String], root: &[String]) -> bool {
    root.is_empty() && (here.is_empty() || here == ["sut"])
}

/// The keywords that define a named item.
const ITEMS: [&str; 9] = [
    "fn", "struct", "enum", "union", "const", "static", "type", "trait", "mod",
];

const ROOT_ALIAS: &str = "an alias or glob of the crate root hides every arrow behind it";

/// What one file says, as written.
#[derive(Default)]
struct Scan {
    /// The file's component (None for a module list).
    component: Option<String>,
    /// Its crate's root: `[]` for the library, `["cli"]` for the binary.
    root: Vec<String>,
    /// Paths from a root in code (`crate::x::f()`): (line, segments, module written in).
    named: Vec<(usize, Vec<String>, Vec<String>)>,
    /// What its `use` items name.
    leaves: Vec<Leaf>,
    /// Paths in its public type aliases (`pub type K = kernel::Kernel;`), as `named`.
    aliased: Vec<(usize, Vec<String>, Vec<String>)>,
    /// What would hide arrows, seen in the text alone: (line, what).
    hidden: Vec<(usize, String)>,
    /// Items it defines at module level: (module, name).
    defines: Vec<(Vec<String>, String)>,
}

/// One path a `use` names: its segments as written, the name it binds (None for a glob or
/// `_`), and the module it is written in.
struct Leaf {
    line: usize,
    public: bool,
    segments: Vec<String>,
    binds: Option<String>,
    module: Vec<String>,
    root: Vec<String>,
}

/// Reads `text` as the file `src/{file}`.
fn scan(file: &str, text: &str) -> Scan {
    let (here, root) = module_of(file);
    let binary = !root.is_empty();
    let toks = with_attribute_paths(without_tests(&tokens(text)));
    let mut scan = Scan {
        root: root.clone(),
        ..Scan::default()
    };
    if is_module_list(&here, &root) {
        if let Some(line) = not_a_module_list(&toks) {
            let what = "a module list holds `mod NAME;` items only";
            scan.hidden.push((line, what.into()));
        }
        return scan;
    }
    scan.component = component(&here);
    // One entry per open brace: the inline module it opens, if it does.
    let mut braces: Vec<Option<String>> = Vec::new();
    let (mut next_mod, mut public, mut i) = (None, false, 0);
    while i < toks.len() {
        // The module the token is in: the file's, or an inline `mod name { … }` in it.
        let module = || -> Vec<String> {
            let inline = braces.iter().flatten().cloned();
            here.iter().cloned().chain(inline).collect()
        };
        let line = toks[i].line;
        let vis = std::mem::take(&mut public);
        match &toks[i].tok {
            Tok::Punct('{') => braces.push(next_mod.take()),
            Tok::Punct('}') => drop(braces.pop()),
            Tok::Punct(';') => next_mod = None,
            Tok::Ident(w) if w == "mod" && is(toks.get(i + 2), "{") => {
                next_mod = ident(toks.get(i + 1)).map(String::from);
                scan.defines
                    .extend(next_mod.clone().map(|name| (module(), name)));
            }
            Tok::Ident(w) if w == "pub" => {
                // `pub`, `pub(crate)`, `pub(super)`, `pub(in path)` make the next item
                // visible beyond its module; `pub(self)` does not. The path in
                // `pub(in …)` is an ancestor, not an arrow.
                public = true;
                if is(toks.get(i + 1), "(") {
                    let end = closing(&toks, i + 1);
                    let inside: Vec<&str> = toks[i + 2..end - 1]
                        .iter()
                        .filter_map(|t| ident(Some(t)))
                        .collect();
                    public = !matches!(inside[..], ["self"] | ["in", "self"]);
                    i = end;
                    continue;
                }
            }
            // A `use` item (not a `+ use<'a>` bound).
            Tok::Ident(w) if w == "use" && !is(toks.get(i + 1), "<") => {
                let mut trees = Vec::new();
                let mut j = i + 1;
                use_tree(&toks, &mut j, &[], &mut trees);
                for (segments, binds) in trees {
                    scan.leaves.push(Leaf {
                        line,
                        public: vis,
                        segments,
                        binds,
                        module: module(),
                        root: root.clone(),
                    });
                }
                i = (j..toks.len())
                    .find(|k| is(toks.get(*k), ";"))
                    .map_or(toks.len(), |k| k + 1);
                continue;
            }
            Tok::Ident(w) if w == "type" && vis => {
                let name = ident(toks.get(i + 1)).map(String::from);
                scan.defines.extend(name.map(|name| (module(), name)));
                // Every path after the `=`, from a root or from a name in scope.
                let end = item_end(&toks, i);
                let mut k = (i..end).find(|k| is(toks.get(*k), "=")).unwrap_or(end);
                while k < end {
                    if ident(toks.get(k)).is_some() && !is(toks.get(k.wrapping_sub(1)), ":") {
                        let mut trees = Vec::new();
                        use_tree(&toks[..end], &mut k, &[], &mut trees);
                        let found = trees.into_iter().map(|(s, _)| (line, s, module()));
                        scan.aliased.extend(found);
                    } else {
                        k += 1;
                    }
                }
            }
            Tok::Ident(w) if ITEMS.contains(&w.as_str()) && braces.iter().all(Option::is_some) => {
                let name = ident(toks.get(i + 1)).map(String::from);
                scan.defines.extend(name.map(|name| (module(), name)));
            }
            Tok::Ident(w) if w == "extern" && is(toks.get(i + 1), "crate") => {
                let what = "`extern crate` names a crate by another name";
                scan.hidden.push((line, what.into()));
            }
            Tok::Ident(w) if w == "include" && is(toks.get(i + 1), "!") => {
                let what = "`include!` pastes another file's code here";
                scan.hidden.push((line, what.into()));
            }
            Tok::Punct('#') => {
                if let Some((attr, _, _)) = attribute(&toks, i) {
                    let path_eq = |k: usize| is(attr.get(k), "path") && is(attr.get(k + 1), "=");
                    if path_eq(0) || (is(attr.first(), "cfg_attr") && (0..attr.len()).any(path_eq))
                    {
                        let what = "`#[path]` puts another file in this module";
                        scan.hidden.push((line, what.into()));
                    }
                }
            }
            Tok::Ident(w) if starts_path(&toks, i, w, binary) => {
                let mut trees = Vec::new();
                use_tree(&toks, &mut i, &[], &mut trees);
                let module = module();
                let found = trees.into_iter().map(|(s, _)| (line, s, module.clone()));
                scan.named.extend(found);
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    scan
}

/// Whether `toks[i]` (the word `w`) starts a path from a root: `crate::`, `super::`,
/// `self::` (and `swarm::`, also as `::swarm::`, in a binary), but not a later segment of
/// a path (`super::super::`).
fn starts_path(toks: &[Token], i: usize, w: &str, binary: bool) -> bool {
    let root = matches!(w, "crate" | "super" | "self") || (binary && w == "swarm");
    let later = i >= 2
        && colons(toks, i - 2)
        && (i >= 3 && (ident(toks.get(i - 3)).is_some() || is(toks.get(i - 3), ">")));
    root && colons(toks, i + 1) && !later
}

/// The use tree (or a path in code) at `toks[*i]`, read into its leaves: each path's
/// segments and the name it binds. `a::{b, c::{d as e}}` → `a::b` (`b`), `a::c::d` (`e`).
fn use_tree(
    toks: &[Token],
    i: &mut usize,
    prefix: &[String],
    out: &mut Vec<(Vec<String>, Option<String>)>,
) {
    let mut path = prefix.to_vec();
    if colons(toks, *i) {
        // `::name`: a crate's name follows.
        path.push("::".into());
        *i += 2;
    }
    loop {
        if is(toks.get(*i), "{") {
            *i += 1;
            loop {
                match toks.get(*i) {
                    None => return,
                    t if is(t, "}") => {
                        *i += 1;
                        return;
                    }
                    t if is(t, ",") => *i += 1,
                    _ => {
                        let before = *i;
                        use_tree(toks, i, &path, out);
                        if *i == before {
                            *i += 1;
                        }
                    }
                }
            }
        }
        if is(toks.get(*i), "*") {
            *i += 1;
            path.push("*".into());
            out.push((path, None));
            return;
        }
        let Some(segment) = ident(toks.get(*i)) else {
            if !path.is_empty() {
                out.push((path, None));
            }
            return;
        };
        path.push(segment.to_string());
        *i += 1;
        let more = toks
            .get(*i + 2)
            .is_some_and(|t| matches!(t.tok, Tok::Ident(_) | Tok::Punct('{') | Tok::Punct('*')));
        if colons(toks, *i) && more {
            *i += 2;
            continue;
        }
        let binds = if is(toks.get(*i), "as") {
            *i += 2;
            ident(toks.get(*i - 1))
                .filter(|a| *a != "_")
                .map(String::from)
        } else if segment == "self" {
            path.iter().rev().nth(1).cloned()
        } else {
            Some(segment.to_string())
        };
        out.push((path, binds));
        return;
    }
}

/// The absolute module path `segments` names as written, in `module` of the crate rooted
/// at `root`, imports not followed. A path that does not start from a root is relative to
/// `module` (a child module, or a name imported there: see `Crate::through_imports`); a
/// dependency's (`std::…`) so stays in `module`'s component.
fn lexical(segments: &[String], module: &[String], root: &[String]) -> Option<Vec<String>> {
    let binary = !root.is_empty();
    let (mut path, rest) = match segments.first()?.as_str() {
        "crate" => (root.to_vec(), &segments[1..]),
        "swarm" if binary => (Vec::new(), &segments[1..]),
        "::" if binary && segments.get(1).is_some_and(|s| s == "swarm") => {
            (Vec::new(), &segments[2..])
        }
        "::" => return None,
        _ => (module.to_vec(), segments),
    };
    for segment in rest {
        match segment.as_str() {
            "super" if path.len() > root.len() => drop(path.pop()),
            "super" | "self" | "*" => {}
            s => path.push(s.to_string()),
        }
    }
    Some(path)
}

/// Files read together: each path resolved through the imports of every module.
struct Crate<'a> {
    files: &'a [(String, Scan)],
    /// module → name → the `use` that binds it there.
    imports: BTreeMap<&'a [String], BTreeMap<&'a str, &'a Leaf>>,
    /// (module, name) of each item defined at module level.
    defined: BTreeSet<(&'a [String], &'a str)>,
}

/// What a file names that crosses into another component.
struct Finding {
    file: String,
    line: usize,
    kind: Kind,
    from: String,
    /// The component named (for an arrow or a re-export).
    to: String,
    /// The path named, or what would hide arrows.
    what: String,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Arrow,
    ReExport,
    Hidden,
}

impl<'a> Crate<'a> {
    fn new(files: &'a [(String, Scan)]) -> Crate<'a> {
        let mut imports: BTreeMap<&[String], BTreeMap<&str, &Leaf>> = BTreeMap::new();
        for leaf in files.iter().flat_map(|(_, scan)| &scan.leaves) {
            if let Some(name) = &leaf.binds {
                let names = imports.entry(&leaf.module).or_default();
                names.entry(name).or_insert(leaf);
            }
        }
        let defined = files
            .iter()
            .flat_map(|(_, scan)| &scan.defines)
            .map(|(module, name)| (&module[..], name.as_str()))
            .collect();
        Crate {
            files,
            imports,
            defined,
        }
    }

    /// The absolute module path `segments` names, written in `module` of the crate rooted
    /// at `root`, through the imports of every module. None when it cannot be resolved
    /// (an import of itself).
    fn resolve(
        &self,
        segments: &[String],
        module: &[String],
        root: &[String],
        depth: usize,
    ) -> Option<Vec<String>> {
        self.through_imports(lexical(segments, module, root)?, depth)
    }

    /// `path` with each name a module imported replaced by what it was imported as:
    /// `audit::db::DbUrl` after `use crate::sut::db;` in `audit` is `sut::db::DbUrl`. The
    /// last name is the module's own item when it defines one (`selftest::run` is
    /// `selftest`'s function, not the module `run` it imports: two namespaces).
    fn through_imports(&self, mut path: Vec<String>, depth: usize) -> Option<Vec<String>> {
        if depth > 8 {
            return None;
        }
        'again: for _ in 0..8 {
            for k in 0..path.len() {
                let imported = self
                    .imports
                    .get(&path[..k])
                    .and_then(|m| m.get(path[k].as_str()))
                    .filter(|_| {
                        let own = (&path[..k], path[k].as_str());
                        k + 1 < path.len() || !self.defined.contains(&own)
                    });
                if let Some(leaf) = imported {
                    let target =
                        self.resolve(&leaf.segments, &leaf.module, &leaf.root, depth + 1)?;
                    path = [target, path[k + 1..].to_vec()].concat();
                    continue 'again;
                }
            }
            return Some(path);
        }
        None
    }

    /// Every arrow into another component, re-export of another component's item, and
    /// thing that would hide arrows, in every file.
    fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        for (file, scan) in self.files {
            let from = scan.component.clone().unwrap_or_default();
            let mut found = |line: usize, kind: Kind, to: &str, what: String| {
                out.push(Finding {
                    file: file.clone(),
                    line,
                    kind,
                    from: from.clone(),
                    to: to.to_string(),
                    what,
                })
            };
            // The component `segments` names, if it is another, and the path to show: as
            // written when that already crosses, else as an import made it.
            let crossing = |segments: &[String], module: &[String]| {
                let written = lexical(segments, module, &scan.root)?;
                let path = self.through_imports(written.clone(), 0)?;
                let to = component(&path).filter(|to| *to != from)?;
                let crosses = component(&written).is_some_and(|c| c != from);
                Some((to, if crosses { written } else { path }.join("::")))
            };
            for (line, segments, module) in &scan.named {
                if let Some((to, path)) = crossing(segments, module) {
                    found(*line, Kind::Arrow, &to, path);
                }
            }
            for leaf in &scan.leaves {
                let glob = leaf.segments.last().is_some_and(|s| s == "*");
                let path = self.resolve(&leaf.segments, &leaf.module, &leaf.root, 0);
                if path.as_ref().is_some_and(Vec::is_empty) && (glob || leaf.binds.is_some()) {
                    found(leaf.line, Kind::Hidden, "", ROOT_ALIAS.into());
                }
                let Some((to, path)) = crossing(&leaf.segments, &leaf.module) else {
                    continue;
                };
                found(leaf.line, Kind::Arrow, &to, path.clone());
                if glob {
                    let what = format!("a glob import of `{path}::*` hides what crosses");
                    found(leaf.line, Kind::Hidden, &to, what);
                }
                if leaf.public {
                    found(leaf.line, Kind::ReExport, &to, path);
                }
            }
            for (line, segments, module) in &scan.aliased {
                if let Some((to, path)) = crossing(segments, module) {
                    found(*line, Kind::ReExport, &to, path);
                }
            }
            for (line, what) in &scan.hidden {
                found(*line, Kind::Hidden, "", what.clone());
            }
        }
        out
    }
}

/// The line of the first thing in a module list that is not `[pub] mod NAME;` (attributes
/// and doc comments aside).
fn not_a_module_list(toks: &[Token]) -> Option<usize> {
    let mut i = 0;
    while i < toks.len() {
        if let Some((_, end, _)) = attribute(toks, i) {
            i = end;
            continue;
        }
        let start = i;
        if is(toks.get(i), "pub") {
            i += 1;
            if is(toks.get(i), "(") {
                i = closing(toks, i);
            }
        }
        let declares =
            is(toks.get(i), "mod") && ident(toks.get(i + 1)).is_some() && is(toks.get(i + 2), ";");
        if !declares {
            return Some(toks[start].line);
        }
        i += 3;
    }
    None
}

// ---------------------------------------------------------------------------------------
// The rules, and `src/` held to them.

/// One thing the checker refuses.
#[derive(Debug, PartialEq)]
struct Refusal {
    /// The file, as a path under `src/`.
    file: String,
    line: usize,
    kind: Kind,
    what: String,
}

/// What the checker refuses in files read together (`file` is a path under `src/`).
fn refusals(files: &[(&str, &str)], layers: &Layers) -> Vec<Refusal> {
    let scans: Vec<(String, Scan)> = files
        .iter()
        .map(|(file, text)| (file.to_string(), scan(file, text)))
        .collect();
    judge(&Crate::new(&scans), layers)
}

/// What the table does not allow of what the files name, and all that would hide arrows.
fn judge(krate: &Crate, layers: &Layers) -> Vec<Refusal> {
    let mut out = Vec::new();
    for f in krate.findings() {
        let allowed = || {
            layers
                .allowed
                .get(&f.from)
                .is_some_and(|a| a.contains(&f.to))
        };
        let what = match f.kind {
            Kind::Arrow if allowed() => continue,
            Kind::Arrow => format!("{} → {} (`{}`)", f.from, f.to, f.what),
            Kind::ReExport => format!("re-export of `{}`", f.what),
            Kind::Hidden => f.what,
        };
        out.push(Refusal {
            file: f.file,
            line: f.line,
            kind: f.kind,
            what,
        });
    }
    out
}

/// Every file of `src/`, read once for all tests: (its path under `src/`, what it says).
fn src_scans() -> &'static [(String, Scan)] {
    static SCANS: OnceLock<Vec<(String, Scan)>> = OnceLock::new();
    SCANS.get_or_init(|| {
        let files = sources().into_iter();
        files
            .map(|(file, text)| (file.clone(), scan(&file, &text)))
            .collect()
    })
}

/// Every refusal of `kind` in `src/`, as `file:line: what`.
fn refused_in_src(kind: Kind) -> Vec<String> {
    let found = judge(&Crate::new(src_scans()), &layers());
    let found = found.into_iter().filter(|r| r.kind == kind);
    found
        .map(|r| format!("{}:{}: {}", r.file, r.line, r.what))
        .collect()
}

#[test]
fn the_allowed_arrows_run_one_way() {
    // ARCHITECTURE.md's table is the source: it must be there, read cleanly, and have no
    // circle (each component imports only components of later rows).
    assert_eq!(one_way(&layers()), Ok(()));
}

#[test]
fn every_component_has_a_row_and_every_row_a_component() {
    let layers = layers();
    let in_src: BTreeSet<String> = src_scans()
        .iter()
        .filter_map(|(_, scan)| scan.component.clone())
        .collect();
    let rows: BTreeSet<String> = layers.allowed.keys().cloned().collect();
    let no_row: Vec<_> = in_src.difference(&rows).collect();
    let no_code: Vec<_> = rows.difference(&in_src).collect();
    assert!(
        no_row.is_empty(),
        "components with no row in ARCHITECTURE.md: {no_row:?}"
    );
    assert!(
        no_code.is_empty(),
        "rows of ARCHITECTURE.md with no code in src/: {no_code:?}"
    );
}

#[test]
fn every_arrow_is_one_the_architecture_allows() {
    let wrong = refused_in_src(Kind::Arrow);
    assert!(
        wrong.is_empty(),
        "arrows ARCHITECTURE.md does not allow:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_module_re_exports_another_components_items() {
    let hidden = refused_in_src(Kind::ReExport);
    assert!(
        hidden.is_empty(),
        "re-exports that hide an arrow:\n{}",
        hidden.join("\n")
    );
}

#[test]
fn nothing_hides_an_arrow() {
    let hidden = refused_in_src(Kind::Hidden);
    assert!(
        hidden.is_empty(),
        "what would hide arrows:\n{}",
        hidden.join("\n")
    );
}

#[test]
fn the_auditor_never_imports_the_kernel_and_the_sut_never_imports_the_tool() {
    for f in Crate::new(src_scans()).findings() {
        if f.kind == Kind::Hidden {
            continue;
        }
        let (file, line, from, to, path) = (&f.file, f.line, &f.from, &f.to, &f.what);
        assert!(
            !(from == "audit" && to == "sut::kernel"),
            "{file}:{line}: the auditor imports the kernel (`{path}`)"
        );
        assert!(
            !(from.starts_with("sut") && !to.starts_with("sut") && to != "addr"),
            "{file}:{line}: the system under test imports the tool (`{path}`)"
        );
    }
}

// ---------------------------------------------------------------------------------------
// The checker's own tests: text it must refuse (each hole it once had), and text it must
// let through.

/// What the checker refuses in `text` as the file `src/{file}`, without line numbers,
/// sorted.
fn refused(file: &str, text: &str) -> Vec<String> {
    let found = refusals(&[(file, text)], &layers());
    let mut what: Vec<String> = found.into_iter().map(|r| r.what).collect();
    what.sort();
    what
}

#[test]
fn the_checker_sees_arrows_it_must_refuse() {
    let text = "use crate::sut::{kernel::Kernel, db::DbUrl};\nfn f() { crate::tui::run(); }\n";
    assert_eq!(
        refused("audit/state.rs", text),
        [
            "audit → sut::kernel (`sut::kernel::Kernel`)",
            "audit → tui (`tui::run`)"
        ]
    );
    assert_eq!(
        refused("audit/state.rs", "use super::super::run::X;"),
        ["audit → run (`run::X`)"]
    );
}

#[test]
fn hole_1_a_restricted_pub_use_is_a_re_export() {
    for vis in [
        "pub",
        "pub(crate)",
        "pub(super)",
        "pub(in crate::audit)",
        "pub (crate)",
    ] {
        let text = format!("{vis} use crate::sut::db::DbUrl;\n");
        assert_eq!(
            refused("audit/state.rs", &text),
            ["re-export of `sut::db::DbUrl`"],
            "{text}"
        );
    }
    // Not re-exports: a private import, `pub(self)`, and the component's own items.
    let text = "use crate::sut::db::DbUrl;\npub(self) use crate::addr::Endpoint;\n\
                pub(crate) use super::facts::KeyId;\n";
    assert_eq!(refused("audit/state.rs", text), [] as [&str; 0]);
}

#[test]
fn hole_2_a_pub_use_through_an_imported_module_is_a_re_export() {
    for text in [
        "use crate::sut::db;\npub use db::DbUrl;\n",
        "use crate::sut::db as storage;\npub use storage::DbUrl;\n",
        "use crate::{history, sut::db};\npub(crate) use db::{DbUrl};\n",
        // Items are not ordered: the import may come after the re-export.
        "pub use db::DbUrl;\nuse crate::sut::db;\n",
        // An alias of an alias.
        "use crate::sut;\nuse sut::db;\npub use db::DbUrl;\n",
        // The import is a name of this module, whichever way the path reaches it.
        "use crate::sut::db;\npub use self::db::DbUrl;\n",
        "use crate::sut::db;\npub use crate::audit::db::DbUrl;\n",
        "mod inner {\n    use crate::sut::db;\n    pub use self::db::DbUrl;\n}\n",
    ] {
        let mut expected = vec!["re-export of `sut::db::DbUrl`"];
        if text.contains("use crate::sut;") {
            expected.insert(0, "audit → sut (`sut`)");
        }
        assert_eq!(refused("audit/mod.rs", text), expected, "{text}");
    }
    // Through an import of the parent module, from another file.
    let files = [
        ("audit/mod.rs", "mod state;\nuse crate::sut::db;\n"),
        ("audit/state.rs", "pub(crate) use super::db::DbUrl;\n"),
    ];
    let found = refusals(&files, &layers());
    assert_eq!(
        found
            .iter()
            .map(|r| format!("{}:{}: {}", r.file, r.line, r.what))
            .collect::<Vec<_>>(),
        ["audit/state.rs:1: re-export of `sut::db::DbUrl`"]
    );
    // A component's own modules re-export freely, beside imports of other components.
    let text = "mod contract;\nuse crate::history;\npub use contract::Reply;\n\
                pub use self::contract::Answer;\n";
    assert_eq!(refused("gateway/mod.rs", text), [] as [&str; 0]);
}

#[test]
fn hole_3_code_after_a_test_module_is_read() {
    let text = "\
#[cfg(test)]
mod tests {
    use crate::tui::Dashboard;
    fn f() {
        let (s, c) = (\"}\", '}'); // }
        /* } /* } */ */
        if true { crate::run::execute(); }
    }
}
pub fn g() { crate::tui::run(); }
";
    let found = refusals(&[("audit/state.rs", text)], &layers());
    assert_eq!(
        found
            .iter()
            .map(|r| (r.line, r.what.as_str()))
            .collect::<Vec<_>>(),
        [(10, "audit → tui (`tui::run`)")]
    );
}

#[test]
fn hole_3_cfg_test_skips_its_own_item_and_nothing_else() {
    let tui = ["audit → tui (`tui::run`)"];
    for text in [
        "#[cfg(test)]\nimpl Header {\n    fn f() { crate::tui::x(); }\n}\npub fn g() { crate::tui::run(); }\n",
        "#[cfg(test)]\nuse crate::tui::Dashboard;\nuse crate::tui::run;\n",
        "#[cfg(test)]\n#[allow(dead_code)]\nfn helper() { crate::tui::x(); }\nfn g() { crate::tui::run(); }\n",
        "#[cfg(test)]\nconst X: [u8; 2] = [1, 2];\nfn g() { crate::tui::run(); }\n",
        "#[cfg(test)]\nmod tests;\nfn g() { crate::tui::run(); }\n",
        "struct S {\n    #[cfg(test)]\n    a: crate::tui::X,\n    b: u8,\n}\nfn g() { crate::tui::run(); }\n",
        // Text that looks like a test module inside a string is a string.
        "const DOC: &str = \"\n#[cfg(test)]\nmod tests {\n\";\npub fn g() { crate::tui::run(); }\n",
        // Only `cfg(test)` is test-only.
        "#[cfg(not(test))]\nfn g() { crate::tui::run(); }\n",
        "#[cfg(any(test, feature = \"x\"))]\nfn g() { crate::tui::run(); }\n",
    ] {
        assert_eq!(refused("audit/state.rs", text), tui, "{text}");
    }
    // A file that is test-only as a whole.
    assert_eq!(
        refused("audit/state.rs", "#![cfg(test)]\nuse crate::tui::run;\n"),
        [] as [&str; 0]
    );
}

#[test]
fn hole_4_the_layer_table_is_read_from_architecture_md_strictly() {
    let md = |rows: &str| {
        format!(
            "# Architecture\n\n## Layers and the arrows between them\n\nProse.\n\n\
             | component | may import |\n|---|---|\n{rows}\nSo.\n\n## Code map\n"
        )
    };
    let good = "| `cli` (binary) | everything below |\n| `audit` | history, sut::db — **never `sut::kernel`** |\n\
                | `history` | — |\n| `sut::kernel` | sut::db (its rows) |\n| `sut::db`, `addr` | — |\n";
    let layers = layers_of(&md(good)).expect("a good table");
    let set = |c: &str| layers.allowed[c].iter().cloned().collect::<Vec<_>>();
    assert_eq!(
        set("cli"),
        ["addr", "audit", "history", "sut::db", "sut::kernel"]
    );
    assert_eq!(set("audit"), ["history", "sut::db"]);
    assert_eq!(set("sut::kernel"), ["sut::db"]);
    assert_eq!(set("addr"), [] as [&str; 0]);
    assert_eq!(one_way(&layers), Ok(()));

    for (text, error) in [
        (
            "# Architecture\n".to_string(),
            "no section `## Layers and the arrows between them`",
        ),
        (
            md("").replace("| component | may import |\n|---|---|\n", ""),
            "no table",
        ),
        (md("").replace("may import", "imports"), "header"),
        (
            md("| `audit` | history |\n| audit | — |\n"),
            "row `| audit | — |`",
        ),
        (
            md("| `audit` | history |\n"),
            "`audit` may import `history`, which has no row",
        ),
        (
            md("| `audit` | sut:db |\n"),
            "`audit`: `sut:db` is not a component",
        ),
        (
            md("| `audit` | history, |\n| `history` | — |\n"),
            "`audit`: `` is not a component",
        ),
        (
            md("| `audit` | — |\n| `audit` | — |\n"),
            "`audit` has two rows",
        ),
        (
            md("| `audit` | sut::kernel — **never `sut::kernel`** |\n| `sut::kernel` | — |\n"),
            "`audit` may import `sut::kernel`, yet its row says never",
        ),
        (
            md("| `audit` | history | x |\n| `history` | — |\n"),
            "row `| `audit` | history | x |`",
        ),
    ] {
        let found = match layers_of(&text) {
            Ok(_) => "(no error)".to_string(),
            Err(e) => e,
        };
        assert!(
            found.contains(error),
            "expected an error with {error:?}, got {found:?} for\n{text}"
        );
    }
    // A table that runs back up is refused by name.
    let circle = layers_of(&md("| `run` | audit |\n| `audit` | run |\n")).expect("parses");
    assert_eq!(
        one_way(&circle),
        Err("`audit` → `run` runs back up".to_string())
    );
}

#[test]
fn hole_5_other_ways_of_naming_a_component_are_seen() {
    for text in [
        "use crate::{history::Record, tui::run};",
        "use crate::{history::{self, Record}, tui::{run}};",
        "use super::super::tui::run;",
        "fn f() { crate::tui::run(); }",
        "fn f() { let x = <crate::tui::run as T>::f; }",
        "fn f() { crate :: tui :: run(); }",
        "use crate::\n    tui::run;",
        "fn f() { crate::r#tui::run(); }",
        "macro_rules! m { () => { $crate::tui::run() }; }",
        "fn f() { let q = ('\"', \"//\"); crate::tui::run(); }",
        "#[derive(Deserialize)]\nstruct S {\n    #[serde(deserialize_with = \"crate::tui::run\")]\n    x: u8,\n}",
        "mod inner {\n    use super::super::super::tui::run;\n}",
        "fn f<'a>(x: &'a u8) -> impl Sized + use<'a> {\n    crate::tui::run();\n    x\n}",
    ] {
        assert_eq!(
            refused("audit/state.rs", text),
            ["audit → tui (`tui::run`)"],
            "{text}"
        );
    }
    // The binary names the library `swarm`, with or without a leading `::`.
    assert_eq!(
        refused("cli/run.rs", "fn f() { ::swarm::nowhere::f(); }"),
        ["cli → nowhere (`nowhere::f`)"]
    );
}

#[test]
fn hole_5_what_would_hide_an_arrow_is_refused() {
    let root = "an alias or glob of the crate root hides every arrow behind it";
    for (file, text, expected) in [
        (
            "audit/state.rs",
            "extern crate self as swarm;\nfn f() { swarm::tui::run(); }",
            "`extern crate` names a crate by another name",
        ),
        (
            "audit/state.rs",
            "use crate as root;\nfn f() { root::tui::run(); }",
            root,
        ),
        ("audit/state.rs", "use crate::{self as root};", root),
        (
            "audit/state.rs",
            "use crate::*;\nfn f() { tui::run(); }",
            root,
        ),
        ("audit/mod.rs", "use super::*;", root),
        (
            "cli/run.rs",
            "use swarm as lib;\nfn f() { lib::tui::run(); }",
            root,
        ),
        (
            "audit/state.rs",
            "#[path = \"../tui/mod.rs\"]\nmod ui;",
            "`#[path]` puts another file in this module",
        ),
        (
            "audit/state.rs",
            "#[cfg_attr(unix, path = \"../tui/mod.rs\")]\nmod ui;",
            "`#[path]` puts another file in this module",
        ),
        (
            "audit/state.rs",
            "include!(\"../tui/panels.rs\");",
            "`include!` pastes another file's code here",
        ),
        (
            "audit/state.rs",
            "use crate::history::*;",
            "a glob import of `history::*` hides what crosses",
        ),
        (
            "gateway/open.rs",
            "pub type Kernel = crate::sut::kernel::Kernel;",
            "re-export of `sut::kernel::Kernel`",
        ),
        (
            "gateway/open.rs",
            "use crate::sut::kernel;\npub(crate) type K<T> = Option<kernel::Kernel<T>>;",
            "re-export of `sut::kernel::Kernel`",
        ),
        (
            "lib.rs",
            "pub mod audit;\npub use crate::audit::Report;",
            "a module list holds `mod NAME;` items only",
        ),
        (
            "sut/mod.rs",
            "pub mod db;\npub fn f() {}",
            "a module list holds `mod NAME;` items only",
        ),
    ] {
        assert_eq!(refused(file, text), [expected], "{file}: {text}");
    }
}

#[test]
fn what_is_not_an_arrow_is_not_refused() {
    for (file, text) in [
        (
            "audit/state.rs",
            "const S: &str = \"crate::tui::run\"; // crate::tui::run\n/* crate::tui::run */",
        ),
        ("audit/state.rs", "/// See [`crate::tui::run`].\nfn f() {}"),
        (
            "audit/state.rs",
            "fn f<'a>(x: &'a str) -> char { let _ = b'\"'; '\\'' }\nuse crate::history::Record;",
        ),
        (
            "sut/kernel/mod.rs",
            "pub mod bench {\n    pub use super::sqlite::bare_loop;\n}",
        ),
        (
            "audit/state.rs",
            "pub use serde_json::Value;\nuse std::fmt::{self, Write};",
        ),
        (
            "cli/run.rs",
            "use crate::Cli;\nuse super::Args;\nuse swarm::tui::run;",
        ),
        (
            "main.rs",
            "mod cli;\nuse swarm::exit;\nfn main() { cli::run(); }",
        ),
        (
            "lib.rs",
            "//! The crate.\n\n#![allow(x)]\npub mod audit;\n#[cfg(unix)]\npub(crate) mod lane;\n",
        ),
        (
            "scenario/model.rs",
            "#[serde(deserialize_with = \"parsed::optional\")]\nstruct S;",
        ),
    ] {
        assert_eq!(refused(file, text), [] as [&str; 0], "{file}: {text}");
    }
    // A function and an imported module of one name live in two namespaces: calling
    // `audit::history()` is an arrow to `audit`, not through its import to `history`.
    let files = [
        ("audit/mod.rs", "use crate::history;\npub fn history() {}\n"),
        ("exit.rs", "fn f() { crate::audit::history(); }\n"),
    ];
    assert_eq!(refusals(&files, &layers()), []);
}

/// Lines past which a file says, at its top, why it stays one file.
const LONG_FILE_LINES: usize = 600;

/// The files of `sources` over `LONG_FILE_LINES` whose leading `//!` doc does not say why
/// they stay one file.
fn long_without_reason(sources: &[(String, String)]) -> Vec<String> {
    sources
        .iter()
        .filter(|(_, text)| text.lines().count() > LONG_FILE_LINES)
        .filter(|(_, text)| {
            let doc: String = text
                .lines()
                .take_while(|l| l.starts_with("//!"))
                .collect::<Vec<_>>()
                .join(" ");
            !doc.contains("It stays one file")
        })
        .map(|(file, text)| format!("{file} ({} lines)", text.lines().count()))
        .collect()
}

#[test]
fn a_long_file_says_at_its_top_why_it_stays_one_file() {
    let missing = long_without_reason(&sources());
    assert!(
        missing.is_empty(),
        "over {LONG_FILE_LINES} lines without `It stays one file: …` in the module doc: {missing:?}"
    );
    // The checker finds one.
    let long = "//! A module.\n".to_string() + &"fn f() {}\n".repeat(LONG_FILE_LINES);
    assert_eq!(
        long_without_reason(&[("x.rs".into(), long.clone())]),
        vec![format!("x.rs ({} lines)", LONG_FILE_LINES + 1)]
    );
    let said = "//! A module.\n//! It stays one file: one idea.\n".to_string() + &long;
    assert!(long_without_reason(&[("x.rs".into(), said)]).is_empty());
}
