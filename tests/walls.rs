//! Walls between the modules, checked: this test fails when a module imports what it must not, or
//! when modules import each other in a circle.
//!
//! It reads `src/**/*.rs` as text (no parser crate): comments, strings and character literals are
//! blanked out, then every `use` item (multi-line groups, `self`, globs and renames included) and
//! every path written inline (`crate::forecast::stamp(..)`, `super::http::Shared`,
//! `tokio::spawn(..)`, `#[tokio::test]`) is resolved to the module or external crate it names.
//! Files map to modules the way rustc maps them (`src/a/b.rs` and `src/a/b/mod.rs` are `a::b`);
//! `mod name { .. }` blocks are modules too. `src/main.rs` is the binary, a crate of its own, and is
//! not checked. A path names the deepest module it spells out: an item a parent re-exports counts
//! as the parent's.
//!
//! **The rules** are the [`RULES`] table below, one line of reason each: which external crates a
//! module may not use, which of the crate's top-level modules it may not use (or the only ones it
//! may). A rule covers the module and everything below it.
//!
//! **Circles**: no two top-level modules may import each other, directly or round a longer loop,
//! and neither may two sibling submodules of one module (`forecast::http` and
//! `forecast::watttime`). An import counts for the sibling of the importer's module at that level
//! (`cli::run::tests` importing `cli::plan` is an edge `run → plan` under `cli`). A failure names
//! the loop and, for every step, the first line that makes it.
//!
//! **Test code** — a file named `tests.rs`, a module declared under `#[cfg(test)]` (such as
//! `controller::fixtures`) and everything below it, and any item under `#[cfg(test)]` — may use any
//! external crate (tests need a runtime and mock API servers). It is bound by the rules on the
//! crate's own modules, so that a module's tests do not lean on the layers above it, and by the
//! circle rule, where it counts as part of the module it tests: `cargo test` builds a module with
//! its tests, so a loop through test code is a loop in that build. (A test fixture that must
//! reach back into the module it serves belongs inside that module: a module and its own
//! submodules may import each other freely.)

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One wall: what `module` (and everything below it) must not import.
struct Rule {
    /// A top-level module, or a deeper one (`forecast::http`).
    module: &'static str,
    /// External crates it must not use (test code is exempt).
    no_crates: &'static [&'static str],
    /// Top-level modules of this crate it must not use.
    no_modules: &'static [&'static str],
    /// When set, the only top-level modules of this crate it may use (besides itself).
    only_modules: Option<&'static [&'static str]>,
    /// Why, in one line.
    reason: &'static str,
}

/// Every wall. Module and crate names as in paths (`k8s_openapi`, not `k8s-openapi`).
const RULES: &[Rule] = &[
    Rule {
        module: "planner",
        no_crates: &[
            "kube",
            "k8s_openapi",
            "tokio",
            "reqwest",
            "hyper",
            "axum",
            "axum_server",
        ],
        no_modules: &[],
        only_modules: Some(&["units"]),
        reason: "the planner is pure arithmetic on forecasts and constraints: no cluster, no I/O, no async, only the unit helpers",
    },
    Rule {
        module: "lifecycle",
        no_crates: &["kube", "tokio", "reqwest"],
        no_modules: &["controller", "webhook", "cli", "replay"],
        only_modules: None,
        reason: "the Job lifecycle is pure decisions on Job objects that the controller and the webhook call, never the reverse",
    },
    Rule {
        module: "api",
        no_crates: &[],
        no_modules: &["controller", "webhook", "cli", "lifecycle", "replay"],
        only_modules: None,
        reason: "the API types and annotation parsing are the vocabulary every layer shares, so they depend on none of them",
    },
    Rule {
        module: "webhook",
        no_crates: &[],
        no_modules: &["controller"],
        only_modules: None,
        reason: "the webhook runs on every replica without the leader's controllers and must decide from the Job alone",
    },
    Rule {
        module: "forecast",
        no_crates: &[],
        no_modules: &["controller", "webhook", "cli"],
        only_modules: None,
        reason: "forecast providers fetch and parse data; controllers and the CLI drive them, not the reverse",
    },
    Rule {
        module: "budget",
        no_crates: &["kube", "k8s_openapi", "tokio", "reqwest", "hyper", "axum"],
        no_modules: &[],
        only_modules: Some(&["api", "units", "note"]),
        reason: "budget evaluation is a pure function of the budgets, the ledgers and now, called by the webhook and the budget controller",
    },
    Rule {
        module: "waste",
        no_crates: &["kube", "k8s_openapi", "tokio", "reqwest", "hyper", "axum"],
        no_modules: &[],
        only_modules: Some(&["api", "units", "note", "lifecycle"]),
        reason: "the waste guard is a pure function of the group's record, the decision and now, called by the workload controller",
    },
    Rule {
        module: "report",
        no_crates: &["kube", "k8s_openapi", "tokio", "reqwest", "hyper", "axum"],
        no_modules: &["controller", "webhook", "cli"],
        only_modules: None,
        reason: "the report's aggregation is a pure function of the listed objects and now; the CLI lists them",
    },
    Rule {
        module: "replay",
        no_crates: &["kube", "tokio"],
        no_modules: &["controller", "webhook", "cli"],
        only_modules: None,
        reason: "replays simulate the planner over a trace offline: no cluster, no runtime, no operator",
    },
];

// ---------------------------------------------------------------------------------------------
// Reading the source

/// `text` with comments, and the contents of string, byte-string, raw-string and character
/// literals, replaced by spaces (line breaks kept, so line numbers stay right).
fn scrub(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let prev_ident = i > 0 && is_ident(chars[i - 1]);
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
            continue;
        }
        if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            continue;
        }
        // Raw strings: r"..", r#".."#, br"..", cr#".."#.
        if !prev_ident && matches!(c, 'r' | 'b' | 'c') {
            let mut j = i;
            if c != 'r' && chars.get(j + 1) == Some(&'r') {
                j += 1;
            }
            if chars[j] == 'r' {
                let mut k = j + 1;
                while chars.get(k) == Some(&'#') {
                    k += 1;
                }
                if chars.get(k) == Some(&'"') {
                    let hashes = k - j - 1;
                    out.extend(&chars[i..=k]);
                    i = k + 1;
                    while i < chars.len() {
                        if chars[i] == '"' && (1..=hashes).all(|h| chars.get(i + h) == Some(&'#')) {
                            out.push('"');
                            out.extend(std::iter::repeat_n('#', hashes));
                            i += 1 + hashes;
                            break;
                        }
                        out.push(blank(chars[i]));
                        i += 1;
                    }
                    continue;
                }
            }
            // b".." and c"..": the prefix, then an ordinary string below.
            if c != 'r' && matches!(next, Some('"') | Some('\'')) {
                out.push(c);
                i += 1;
                continue;
            }
        }
        if c == '"' {
            out.push('"');
            i += 1;
            while i < chars.len() {
                match chars[i] {
                    '\\' => {
                        out.push(' ');
                        if let Some(&escaped) = chars.get(i + 1) {
                            out.push(blank(escaped));
                        }
                        i += 2;
                    }
                    '"' => {
                        out.push('"');
                        i += 1;
                        break;
                    }
                    other => {
                        out.push(blank(other));
                        i += 1;
                    }
                }
            }
            continue;
        }
        if c == '\'' {
            // A character literal ('x', '\n', '\u{..}', '\''), or else a lifetime or label.
            let end = if next == Some('\\') {
                (i + 3..chars.len()).find(|&k| chars[k] == '\'')
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            if let Some(end) = end {
                out.push('\'');
                out.extend(std::iter::repeat_n(' ', end - i - 1));
                out.push('\'');
                i = end + 1;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    Path,
    Punct(char),
}

/// Identifiers (raw `r#name` as `name`; numbers too, harmlessly), `::`, and single punctuation,
/// each with its line.
fn tokens(scrubbed: &str) -> Vec<(Tok, usize)> {
    let chars: Vec<char> = scrubbed.chars().collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c.is_alphanumeric() || c == '_' {
            let start = if c == 'r' && chars.get(i + 1) == Some(&'#') {
                i + 2
            } else {
                i
            };
            let mut end = start;
            while end < chars.len() && (chars[end].is_alphanumeric() || chars[end] == '_') {
                end += 1;
            }
            if end == start {
                // `r#` not followed by an identifier (a raw string is already blanked).
                out.push((Tok::Ident("r".into()), line));
                i += 1;
                continue;
            }
            out.push((Tok::Ident(chars[start..end].iter().collect()), line));
            i = end;
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push((Tok::Path, line));
            i += 2;
        } else {
            out.push((Tok::Punct(c), line));
            i += 1;
        }
    }
    out
}

/// A path written in a file: in which module, whether in test code, where, and its segments.
#[derive(Debug, Clone)]
struct Reference {
    module: Vec<String>,
    test: bool,
    line: usize,
    segments: Vec<String>,
    /// For a `use` path: the name it brings into `module`.
    binds: Option<String>,
}

/// What one file holds.
#[derive(Debug, Default)]
struct Scan {
    /// Inline `mod name { .. }` modules, with whether they are test code.
    inline_modules: Vec<(Vec<String>, bool)>,
    /// `mod name;` declarations (the module is another file), with whether under `#[cfg(test)]`.
    declared: Vec<(Vec<String>, bool)>,
    references: Vec<Reference>,
}

fn ident(tok: Option<&(Tok, usize)>) -> Option<&str> {
    match tok {
        Some((Tok::Ident(name), _)) => Some(name),
        _ => None,
    }
}

fn is_punct(tok: Option<&(Tok, usize)>, c: char) -> bool {
    matches!(tok, Some((Tok::Punct(p), _)) if *p == c)
}

/// One path of a `use` item and the name it binds (`None` for a glob or `as _`).
type UsePath = (Vec<String>, Option<String>, usize);

/// Flattens the use tree in `toks` (everything between `use` and `;`) onto `prefix`.
fn use_paths(toks: &[(Tok, usize)], prefix: &[String], out: &mut Vec<UsePath>) {
    let mut i = 0;
    while i < toks.len() {
        // One tree: segments, then optionally `::{..}`, `::*` or `as name`.
        let mut path = prefix.to_vec();
        let mut binds = None;
        let line = toks[i].1;
        while i < toks.len() {
            match &toks[i].0 {
                Tok::Path => i += 1,
                Tok::Ident(name) if name == "as" => {
                    binds = ident(toks.get(i + 1))
                        .filter(|rename| *rename != "_")
                        .map(str::to_string);
                    i += 2;
                    break;
                }
                Tok::Ident(name) => {
                    if name != "self" || path.is_empty() {
                        path.push(name.clone());
                    }
                    binds = path.last().cloned();
                    i += 1;
                }
                Tok::Punct('{') => {
                    let mut depth = 0;
                    let start = i + 1;
                    let mut end = start;
                    for (k, (tok, _)) in toks.iter().enumerate().skip(i) {
                        match tok {
                            Tok::Punct('{') => depth += 1,
                            Tok::Punct('}') => {
                                depth -= 1;
                                if depth == 0 {
                                    end = k;
                                    break;
                                }
                            }
                            _ => {}
                        }
                    }
                    use_paths(&toks[start..end], &path, out);
                    path.clear();
                    i = end + 1;
                    break;
                }
                Tok::Punct('*') => {
                    binds = None;
                    i += 1;
                    break;
                }
                Tok::Punct(_) => break,
            }
        }
        if !path.is_empty() {
            let binds = binds.filter(|name| !matches!(name.as_str(), "crate" | "super" | "self"));
            out.push((path, binds, line));
        }
        // Past the `,` that ends this tree.
        while i < toks.len() && !is_punct(toks.get(i), ',') {
            i += 1;
        }
        i += 1;
    }
}

/// Whether an attribute's tokens (inside `#[..]`) make the next item test-only: `cfg(test)`, or
/// a `cfg(all(..))`/`cfg(any(..))` naming `test` and no `not`.
fn is_cfg_test(attr: &[(Tok, usize)]) -> bool {
    let names: Vec<&str> = attr.iter().filter_map(|t| ident(Some(t))).collect();
    names.first() == Some(&"cfg") && names.contains(&"test") && !names.contains(&"not")
}

/// Reads one file of module `module`; `test` when the whole file is test code.
fn scan(text: &str, module: &[String], test: bool) -> Scan {
    let toks = tokens(&scrub(text));
    let mut result = Scan::default();
    // Open modules: path, the brace depth their block closes at, test code.
    let mut scopes: Vec<(Vec<String>, i32, bool)> = vec![(module.to_vec(), -1, test)];
    // Test regions (items under `#[cfg(test)]` with a block): the depth they close at.
    let mut test_blocks: Vec<i32> = Vec::new();
    // An item under `#[cfg(test)]` whose block or `;` is still to come: its brace depth.
    let mut test_item: Option<i32> = None;
    let mut pending_test = false;
    let mut depth = 0;
    // Open `(` and `[`: a `;` inside them (`[u8; 3]`) ends no item.
    let mut nesting = 0;
    let mut i = 0;
    while i < toks.len() {
        let (scope, _, scope_test) = scopes.last().cloned().unwrap_or_default();
        let in_test = scope_test || !test_blocks.is_empty() || test_item.is_some();
        let tok = &toks[i].0;
        let line = toks[i].1;

        if *tok == Tok::Punct('#') {
            let mut j = i + 1;
            let inner = is_punct(toks.get(j), '!');
            if inner {
                j += 1;
            }
            if is_punct(toks.get(j), '[') {
                let mut brackets = 0;
                let mut end = j;
                for (k, (t, _)) in toks.iter().enumerate().skip(j) {
                    match t {
                        Tok::Punct('[') => brackets += 1,
                        Tok::Punct(']') => {
                            brackets -= 1;
                            if brackets == 0 {
                                end = k;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                let attr = &toks[j + 1..end];
                if is_cfg_test(attr) {
                    if inner {
                        // `#![cfg(test)]`: the whole module.
                        if let Some(last) = scopes.last_mut() {
                            last.2 = true;
                        }
                    } else {
                        pending_test = true;
                    }
                }
                inline_paths(
                    attr,
                    &scope,
                    in_test || pending_test,
                    &mut result.references,
                );
                i = end + 1;
                continue;
            }
        }
        if pending_test {
            pending_test = false;
            if test_item.is_none() && test_blocks.is_empty() {
                test_item = Some(depth);
            }
        }
        let in_test = in_test || test_item.is_some();

        match tok {
            Tok::Punct('(' | '[') => nesting += 1,
            Tok::Punct(')' | ']') => nesting -= 1,
            Tok::Punct('{') => {
                if test_item == Some(depth) {
                    test_blocks.push(depth);
                    test_item = None;
                }
                depth += 1;
            }
            Tok::Punct('}') => {
                depth -= 1;
                while scopes.len() > 1 && scopes.last().is_some_and(|s| s.1 == depth) {
                    scopes.pop();
                }
                while test_blocks.last() == Some(&depth) {
                    test_blocks.pop();
                }
            }
            Tok::Punct(';') if test_item == Some(depth) && nesting == 0 => test_item = None,
            Tok::Ident(kw) if kw == "mod" => {
                if let Some(name) = ident(toks.get(i + 1)) {
                    let mut path = scope.clone();
                    path.push(name.to_string());
                    if is_punct(toks.get(i + 2), '{') {
                        result.inline_modules.push((path.clone(), in_test));
                        scopes.push((path, depth, in_test));
                        if test_item == Some(depth) {
                            test_blocks.push(depth);
                            test_item = None;
                        }
                        depth += 1;
                        i += 3;
                        continue;
                    }
                    result.declared.push((path, in_test));
                    if test_item == Some(depth) {
                        test_item = None;
                    }
                    i += 3;
                    continue;
                }
            }
            Tok::Ident(kw) if kw == "use" && !is_punct(toks.get(i + 1), '<') => {
                let end = (i..toks.len())
                    .find(|&k| is_punct(toks.get(k), ';'))
                    .unwrap_or(toks.len());
                let mut paths = Vec::new();
                use_paths(&toks[i + 1..end], &[], &mut paths);
                for (segments, binds, line) in paths {
                    result.references.push(Reference {
                        module: scope.clone(),
                        test: in_test,
                        line,
                        segments,
                        binds,
                    });
                }
                if test_item == Some(depth) {
                    test_item = None;
                }
                i = end + 1;
                continue;
            }
            Tok::Ident(_) | Tok::Path if starts_path(&toks, i) => {
                let (segments, next) = path_at(&toks, i);
                if segments.len() > 1 {
                    result.references.push(Reference {
                        module: scope.clone(),
                        test: in_test,
                        line,
                        segments,
                        binds: None,
                    });
                }
                i = next;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    result
}

/// Whether a path starts at `toks[i]`: an identifier followed by `::`, or a leading `::` (a
/// global path), not continuing a path (`a::b`) or a qualified type (`<T as X>::f`).
fn starts_path(toks: &[(Tok, usize)], i: usize) -> bool {
    let prev = i.checked_sub(1).and_then(|p| toks.get(p)).map(|t| &t.0);
    let follows_path = matches!(prev, Some(Tok::Path | Tok::Punct('>') | Tok::Punct('$')));
    let continues = matches!(prev, Some(Tok::Ident(_)));
    match &toks[i].0 {
        Tok::Ident(_) => {
            !follows_path && toks.get(i + 1).is_some_and(|t| t.0 == Tok::Path)
                || (prev == Some(&Tok::Punct('$')) && ident(toks.get(i)) == Some("crate"))
        }
        Tok::Path => !follows_path && !continues && ident(toks.get(i + 1)).is_some(),
        Tok::Punct(_) => false,
    }
}

/// The segments of the path starting at `toks[i]` and the index after it.
fn path_at(toks: &[(Tok, usize)], mut i: usize) -> (Vec<String>, usize) {
    let mut segments = Vec::new();
    if toks[i].0 == Tok::Path {
        i += 1;
    }
    while let Some(name) = ident(toks.get(i)) {
        segments.push(name.to_string());
        if toks.get(i + 1).map(|t| &t.0) == Some(&Tok::Path) && ident(toks.get(i + 2)).is_some() {
            i += 2;
        } else {
            i += 1;
            break;
        }
    }
    (segments, i)
}

/// The paths written inside an attribute (`#[tokio::test]`, `#[derive(kube::CustomResource)]`).
fn inline_paths(toks: &[(Tok, usize)], module: &[String], test: bool, out: &mut Vec<Reference>) {
    let mut i = 0;
    while i < toks.len() {
        if starts_path(toks, i) {
            let (segments, next) = path_at(toks, i);
            if segments.len() > 1 {
                out.push(Reference {
                    module: module.to_vec(),
                    test,
                    line: toks[i].1,
                    segments,
                    binds: None,
                });
            }
            i = next.max(i + 1);
        } else {
            i += 1;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The crate's modules

/// What a path names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    /// A module of this crate (the deepest one the path spells out).
    Module(Vec<String>),
    /// An external crate (or anything else not in this crate: `std`, a type, a local variable).
    External(String),
}

struct Crate {
    /// Every module, with whether it is test code.
    modules: BTreeMap<Vec<String>, bool>,
    /// Every path, with the file it is in (relative to the package).
    references: Vec<(Reference, String)>,
    /// The names `use` items bring into each module, and the paths they stand for.
    imports: BTreeMap<Vec<String>, BTreeMap<String, Vec<String>>>,
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// `src/a/b.rs` and `src/a/b/mod.rs` → `["a", "b"]`; `src/lib.rs` → `[]`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).unwrap_or(file).with_extension("");
    let mut path: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if path
        .last()
        .is_some_and(|last| last == "mod" || last == "lib")
    {
        path.pop();
    }
    path
}

fn read_crate(root: &Path) -> Crate {
    let src = root.join("src");
    let mut paths = Vec::new();
    files(&src, &mut paths);
    let mut scans = Vec::new();
    for file in paths {
        if file == src.join("main.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        let module = module_of(&src, &file);
        let shown = file
            .strip_prefix(root)
            .unwrap_or(&file)
            .display()
            .to_string();
        let named_tests = module.last().is_some_and(|name| name == "tests");
        scans.push((module.clone(), shown, scan(&text, &module, named_tests)));
    }
    let mut modules: BTreeMap<Vec<String>, bool> = BTreeMap::new();
    for (module, _, scan) in &scans {
        let named_tests = module.last().is_some_and(|name| name == "tests");
        *modules.entry(module.clone()).or_default() |= named_tests;
        for (inline, test) in &scan.inline_modules {
            *modules.entry(inline.clone()).or_default() |= *test;
        }
    }
    for (_, _, scan) in &scans {
        for (declared, test) in &scan.declared {
            *modules.entry(declared.clone()).or_default() |= *test;
        }
    }
    // Below a test module everything is test code.
    let tests: Vec<Vec<String>> = modules
        .iter()
        .filter(|(_, test)| **test)
        .map(|(m, _)| m.clone())
        .collect();
    for (module, test) in modules.iter_mut() {
        if tests.iter().any(|t| module.starts_with(t)) {
            *test = true;
        }
    }
    let mut references = Vec::new();
    let mut imports: BTreeMap<Vec<String>, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for (_, shown, scan) in scans {
        for mut reference in scan.references {
            reference.test |= modules.get(&reference.module).copied().unwrap_or(false);
            if let Some(name) = &reference.binds {
                imports
                    .entry(reference.module.clone())
                    .or_default()
                    .insert(name.clone(), reference.segments.clone());
            }
            references.push((reference, shown.clone()));
        }
    }
    Crate {
        modules,
        references,
        imports,
    }
}

impl Crate {
    fn resolve(&self, reference: &Reference) -> Option<Target> {
        self.resolve_in(&reference.module, &reference.segments, 0)
    }

    /// What `segments`, written in `module`, name. A first segment that a `use` of the module
    /// imported (`use crate::forecast;` then `forecast::stamp`) stands for its path.
    fn resolve_in(&self, module: &[String], segments: &[String], hops: u32) -> Option<Target> {
        let first = segments.first()?;
        let (mut absolute, rest) = match first.as_str() {
            "crate" => (Vec::new(), &segments[1..]),
            "self" => (module.to_vec(), &segments[1..]),
            "super" => {
                let mut base = module.to_vec();
                let supers = segments.iter().take_while(|s| *s == "super").count();
                for _ in 0..supers {
                    base.pop()?;
                }
                (base, &segments[supers..])
            }
            "Self" => return None,
            name => {
                let mut child = module.to_vec();
                child.push(name.to_string());
                if self.modules.contains_key(&child) {
                    (module.to_vec(), segments)
                } else {
                    let imported = self.imports.get(module).and_then(|names| names.get(name));
                    return match imported {
                        // A path longer than the `use` itself: through the import.
                        Some(path) if hops < 4 && segments.len() > 1 => {
                            let mut through = path.clone();
                            through.extend_from_slice(&segments[1..]);
                            self.resolve_in(module, &through, hops + 1)
                        }
                        _ => Some(Target::External(name.to_string())),
                    };
                }
            }
        };
        let mut deepest = absolute.clone();
        for segment in rest {
            absolute.push(segment.clone());
            if self.modules.contains_key(&absolute) {
                deepest = absolute.clone();
            } else {
                break;
            }
        }
        Some(Target::Module(deepest))
    }
}

fn show(module: &[String]) -> String {
    if module.is_empty() {
        "crate".to_string()
    } else {
        module.join("::")
    }
}

fn under(module: &[String], prefix: &[&str]) -> bool {
    module.len() >= prefix.len() && module.iter().zip(prefix).all(|(a, b)| a == b)
}

// ---------------------------------------------------------------------------------------------
// The checks

/// Rule breaches, one line per line of source (and rule).
fn rule_violations(krate: &Crate) -> Vec<String> {
    // (file, line, importer, what it uses, reason) → the paths written there.
    let mut found: BTreeMap<(String, usize, String, String, &str), BTreeSet<String>> =
        BTreeMap::new();
    for (reference, file) in &krate.references {
        let Some(target) = krate.resolve(reference) else {
            continue;
        };
        for rule in RULES {
            let scope: Vec<&str> = rule.module.split("::").collect();
            if !under(&reference.module, &scope) {
                continue;
            }
            let breach = match &target {
                Target::External(name) => {
                    !reference.test && rule.no_crates.contains(&name.as_str())
                }
                Target::Module(module) => {
                    let top = module.first().map(String::as_str);
                    !under(module, &scope)
                        && top.is_some_and(|top| {
                            rule.no_modules.contains(&top)
                                || rule
                                    .only_modules
                                    .is_some_and(|only| !only.contains(&top) && top != scope[0])
                        })
                }
            };
            if breach {
                let what = match &target {
                    Target::External(name) => format!("the crate `{name}`"),
                    Target::Module(module) => format!("`crate::{}`", show(module)),
                };
                found
                    .entry((
                        file.clone(),
                        reference.line,
                        show(&reference.module),
                        what,
                        rule.reason,
                    ))
                    .or_default()
                    .insert(reference.segments.join("::"));
            }
        }
    }
    found
        .into_iter()
        .map(|((file, line, importer, what, reason), paths)| {
            let paths: Vec<String> = paths.into_iter().map(|p| format!("`{p}`")).collect();
            format!(
                "{file}:{line}: `{importer}` uses {what} ({}) — {reason}",
                paths.join(", ")
            )
        })
        .collect()
}

/// An import between two siblings: the parent, the importer's side and the imported side, with
/// the first place it is written (in product code, when there is one).
type Edges = BTreeMap<Vec<String>, BTreeMap<(String, String), String>>;

fn sibling_edges(krate: &Crate) -> Edges {
    let mut edges: Edges = BTreeMap::new();
    // Product code first, so that the evidence shown is product code where there is some.
    let mut references: Vec<&(Reference, String)> = krate.references.iter().collect();
    references.sort_by_key(|(reference, _)| reference.test);
    for (reference, file) in references {
        let Some(Target::Module(target)) = krate.resolve(reference) else {
            continue;
        };
        let from = &reference.module;
        let common = from.iter().zip(&target).take_while(|(a, b)| a == b).count();
        if common == from.len() || common == target.len() {
            // One contains the other: a module and its own parent or child.
            continue;
        }
        let parent = from[..common].to_vec();
        let key = (from[common].clone(), target[common].clone());
        edges
            .entry(parent)
            .or_default()
            .entry(key)
            .or_insert_with(|| {
                format!(
                    "{file}:{} `{}`",
                    reference.line,
                    reference.segments.join("::")
                )
            });
    }
    edges
}

/// One loop per group of modules that reach each other, shortest first from the smallest name.
fn circles(edges: &Edges) -> Vec<String> {
    let mut found = Vec::new();
    for (parent, pairs) in edges {
        let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (from, to) in pairs.keys() {
            next.entry(from).or_default().push(to);
        }
        let reach = |start: &str| -> BTreeSet<String> {
            let mut seen = BTreeSet::new();
            let mut queue = VecDeque::from([start.to_string()]);
            while let Some(node) = queue.pop_front() {
                for to in next.get(node.as_str()).into_iter().flatten() {
                    if seen.insert(to.to_string()) {
                        queue.push_back(to.to_string());
                    }
                }
            }
            seen
        };
        let mut reported: BTreeSet<String> = BTreeSet::new();
        for &start in next.keys() {
            if reported.contains(start) || !reach(start).contains(start) {
                continue;
            }
            // The group: everything on a loop through `start`.
            let group: BTreeSet<String> = reach(start)
                .into_iter()
                .filter(|n| reach(n).contains(start))
                .collect();
            // Shortest loop from `start` back to it (breadth first).
            let mut came_from: BTreeMap<String, String> = BTreeMap::new();
            let mut queue = VecDeque::from([start.to_string()]);
            let mut last = None;
            'search: while let Some(node) = queue.pop_front() {
                for &to in next.get(node.as_str()).into_iter().flatten() {
                    if to == start {
                        last = Some(node.clone());
                        break 'search;
                    }
                    if !came_from.contains_key(to) {
                        came_from.insert(to.to_string(), node.clone());
                        queue.push_back(to.to_string());
                    }
                }
            }
            let mut path = vec![start.to_string()];
            let mut node = last.unwrap_or_else(|| start.to_string());
            while node != start {
                path.push(node.clone());
                node = came_from
                    .get(&node)
                    .cloned()
                    .unwrap_or_else(|| start.to_string());
            }
            path.push(start.to_string());
            let inner = path.len() - 1;
            path[1..inner].reverse();
            let qualified = |name: &str| {
                let mut m = parent.clone();
                m.push(name.to_string());
                show(&m)
            };
            let mut text = format!(
                "import circle {}:",
                path.iter()
                    .map(|n| qualified(n))
                    .collect::<Vec<_>>()
                    .join(" → ")
            );
            for step in path.windows(2) {
                let evidence = pairs
                    .get(&(step[0].clone(), step[1].clone()))
                    .cloned()
                    .unwrap_or_default();
                let _ = write!(
                    text,
                    "\n      {} → {}: {evidence}",
                    qualified(&step[0]),
                    qualified(&step[1])
                );
            }
            if group.len() + 1 > path.len() {
                let names: Vec<String> = group.iter().map(|n| qualified(n)).collect();
                let _ = write!(
                    text,
                    "\n      (one loop of several; these modules all reach each other: {})",
                    names.join(", ")
                );
            }
            found.push(text);
            reported.extend(group);
        }
    }
    found
}

fn package() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn walls_hold() {
    let krate = read_crate(&package());
    assert!(
        krate.modules.len() > 20,
        "found only {} modules under src/",
        krate.modules.len()
    );
    let mut problems = rule_violations(&krate);
    problems.extend(circles(&sibling_edges(&krate)));
    let mut report = String::new();
    for problem in &problems {
        let _ = writeln!(report, "  - {problem}");
    }
    assert!(
        problems.is_empty(),
        "{} wall(s) broken (see tests/walls.rs for the rules):\n{report}",
        problems.len()
    );
}

#[test]
fn every_rule_names_a_module_that_exists() {
    let krate = read_crate(&package());
    for rule in RULES {
        let module: Vec<String> = rule.module.split("::").map(String::from).collect();
        assert!(
            krate.modules.contains_key(&module),
            "no module {}",
            rule.module
        );
        for name in rule
            .no_modules
            .iter()
            .chain(rule.only_modules.unwrap_or(&[]))
        {
            assert!(
                krate.modules.contains_key(&vec![name.to_string()]),
                "rule for {}: no module {name}",
                rule.module
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The reader itself

fn paths_in(text: &str, module: &[&str]) -> Vec<(String, bool)> {
    let module: Vec<String> = module.iter().map(|s| s.to_string()).collect();
    scan(text, &module, false)
        .references
        .into_iter()
        .map(|r| (r.segments.join("::"), r.test))
        .collect()
}

#[test]
fn comments_strings_and_chars_are_not_code() {
    let text = r####"
        // use crate::controller::Context;
        /* crate::webhook::x /* nested */ kube::Api */
        const A: &str = "crate::cli::run \" tokio::spawn";
        const B: &str = r#"kube::Client " tokio::x"#;
        const C: char = '"'; const D: char = '\''; const E: &[u8] = b"reqwest::get";
        fn f<'a>(x: &'a str) -> &'a str { crate::units::id(x) }
    "####;
    assert_eq!(
        paths_in(text, &["m"]),
        [("crate::units::id".to_string(), false)]
    );
}

#[test]
fn use_groups_over_lines_are_flattened() {
    let text = "
        use crate::forecast::{
            self, ClientOptions,
            http::{Shared as S, Auth},
        };
        use super::*;
        use ::kube::Api;
        use tokio::sync::watch as w;
    ";
    let paths: Vec<String> = paths_in(text, &["a", "b"])
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(
        paths,
        [
            "crate::forecast",
            "crate::forecast::ClientOptions",
            "crate::forecast::http::Shared",
            "crate::forecast::http::Auth",
            "super",
            "kube::Api",
            "tokio::sync::watch",
        ]
    );
}

#[test]
fn inline_paths_and_attributes_count_but_not_precise_capture() {
    let text = "
        #[derive(kube::CustomResource)]
        struct S;
        fn f() -> impl Iterator<Item = u8> + use<> { crate::forecast::stamp(super::x::Y::new()); Vec::<u8>::new().into_iter() }
        fn g() { <T as Tr>::h(); $crate::units::z!(); }
    ";
    let paths: Vec<String> = paths_in(text, &["a"]).into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        paths,
        [
            "kube::CustomResource",
            "crate::forecast::stamp",
            "super::x::Y::new",
            "crate::units::z"
        ]
    );
}

#[test]
fn cfg_test_items_and_modules_are_test_code() {
    let text = "
        use tokio::a;
        #[cfg(test)]
        use tokio::b;
        #[cfg(test)]
        fn helper(x: [u8; 3]) { tokio::c(); }
        fn product() { tokio::d(); }
        #[cfg(test)]
        mod tests {
            mod deeper { fn f() { tokio::e(); } }
        }
        #[cfg(not(test))]
        fn other() { tokio::f(); }
        mod inline { fn f() { super::tokio_free::g(); } }
    ";
    let module = vec!["m".to_string()];
    let scan = scan(text, &module, false);
    let paths: Vec<(String, bool)> = scan
        .references
        .iter()
        .map(|r| (r.segments.join("::"), r.test))
        .collect();
    let expected = [
        ("tokio::a", false),
        ("tokio::b", true),
        ("tokio::c", true),
        ("tokio::d", false),
        ("tokio::e", true),
        ("tokio::f", false),
        ("super::tokio_free::g", false),
    ];
    assert_eq!(
        paths,
        expected.map(|(p, t)| (p.to_string(), t)),
        "{paths:?}"
    );
    let inline: Vec<(String, bool)> = scan
        .inline_modules
        .iter()
        .map(|(m, t)| (m.join("::"), *t))
        .collect();
    assert_eq!(
        inline,
        [
            ("m::tests".to_string(), true),
            ("m::tests::deeper".to_string(), true),
            ("m::inline".to_string(), false)
        ]
    );
    // The inline module's `super` is `m`.
    assert_eq!(scan.references[6].module, ["m", "inline"]);
}

#[test]
fn files_map_to_modules() {
    let src = Path::new("/p/src");
    let m = |f: &str| module_of(src, Path::new(f)).join("::");
    assert_eq!(m("/p/src/lib.rs"), "");
    assert_eq!(m("/p/src/forecast/mod.rs"), "forecast");
    assert_eq!(m("/p/src/forecast/http.rs"), "forecast::http");
    assert_eq!(m("/p/src/cli/run/tests.rs"), "cli::run::tests");
}

#[test]
fn a_circle_is_reported_with_its_path_and_evidence() {
    let edge = |from: &str, to: &str| ((from.to_string(), to.to_string()), format!("{from}.rs:1"));
    let edges: Edges = BTreeMap::from([
        (
            vec![],
            BTreeMap::from([
                edge("a", "b"),
                edge("b", "c"),
                edge("c", "a"),
                edge("c", "d"),
            ]),
        ),
        (
            vec!["x".to_string()],
            BTreeMap::from([edge("p", "q"), edge("q", "p")]),
        ),
        (
            vec!["y".to_string()],
            BTreeMap::from([
                edge("r", "s"),
                edge("s", "r"),
                edge("s", "t"),
                edge("t", "s"),
            ]),
        ),
    ]);
    let found = circles(&edges);
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(
        found[0].starts_with("import circle a → b → c → a:"),
        "{}",
        found[0]
    );
    assert!(found[0].contains("c → a: c.rs:1"), "{}", found[0]);
    assert!(
        found[1].starts_with("import circle x::p → x::q → x::p:"),
        "{}",
        found[1]
    );
    assert!(
        found[2].starts_with("import circle y::r → y::s → y::r:")
            && found[2].ends_with("these modules all reach each other: y::r, y::s, y::t)"),
        "{}",
        found[2]
    );
}

#[test]
fn inline_paths_through_an_import_resolve_to_its_module() {
    let text = "
        use crate::controller::{self, Context as C};
        use tokio::sync::watch;
        fn f() { controller::workloads::run(); watch::channel(); }
    ";
    let module = vec!["cli".to_string(), "run".to_string()];
    let scan = scan(text, &module, false);
    let krate = Crate {
        modules: BTreeMap::from([
            (vec![], false),
            (vec!["cli".into()], false),
            (module.clone(), false),
            (vec!["controller".into()], false),
            (vec!["controller".into(), "workloads".into()], false),
        ]),
        imports: BTreeMap::from([(
            module.clone(),
            scan.references
                .iter()
                .filter_map(|r| r.binds.clone().map(|b| (b, r.segments.clone())))
                .collect(),
        )]),
        references: Vec::new(),
    };
    let targets: Vec<Option<Target>> = scan.references.iter().map(|r| krate.resolve(r)).collect();
    let module_target =
        |m: &[&str]| Some(Target::Module(m.iter().map(|s| s.to_string()).collect()));
    assert_eq!(
        targets,
        [
            module_target(&["controller"]),
            module_target(&["controller"]),
            Some(Target::External("tokio".into())),
            module_target(&["controller", "workloads"]),
            Some(Target::External("tokio".into())),
        ]
    );
    assert_eq!(scan.references[1].binds.as_deref(), Some("C"));
}
