//! The layering check: every source file of the engine belongs to exactly one
//! layer of the table in `docs/ARCHITECTURE.md` (section "Layers"), no file
//! imports from a higher layer, and no two top-level modules import each
//! other, directly or through others.
//!
//! Why a test and not a convention: the layers are only worth anything if a
//! change that breaks them fails in `cargo test`, where it is seen. The table
//! lives in the document, in one place, so the prose and the check cannot
//! drift apart.
//!
//! How: a small tokenizer drops comments and string/char literals (so prose
//! naming `crate::system` does not count), a scanner collects the module paths
//! of `use` trees and of inline `crate::`, `super::` and `self::` paths,
//! resolves each to the top-level module it lands in, and the checks run on
//! the resulting edges. Bare paths (`use arch::X` after `mod arch;`) name a
//! child module, which is inside the same top-level module, so they are not
//! followed. The fixtures under `tests/fixtures/layering/` prove the checker
//! finds what it should and nothing else.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

/// The crate root (`lib.rs`) as a node of the module graph.
const ROOT: &str = "crate";

/// One breach of the layering rules.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Violation {
    /// The table could not be read.
    Table(String),
    /// A source file that no table entry covers.
    Unmapped { file: String },
    /// A source file that several table entries cover.
    Ambiguous { file: String, entries: Vec<String> },
    /// A table entry that covers no source file: the table is stale.
    Stale { entry: String, layer: u32 },
    /// A file of layer `from` uses a path into module `module` of layer `to > from`.
    Upward {
        file: String,
        line: usize,
        path: String,
        from: u32,
        module: String,
        to: u32,
    },
    /// Top-level modules that import each other in a ring; `modules` starts
    /// and ends with the same module, `evidence` names one use per edge.
    Cycle {
        modules: Vec<String>,
        evidence: Vec<String>,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Table(msg) => write!(f, "layer table: {msg}"),
            Violation::Unmapped { file } => write!(f, "{file}: in no entry of the layer table"),
            Violation::Ambiguous { file, entries } => {
                write!(f, "{file}: in several entries: {}", entries.join(", "))
            }
            Violation::Stale { entry, layer } => {
                write!(f, "table entry `{entry}` (layer {layer}) matches no file")
            }
            Violation::Upward {
                file,
                line,
                path,
                from,
                module,
                to,
            } => write!(
                f,
                "{file}:{line}: uses `{path}`: layer {from} → layer {to} (`{module}`)"
            ),
            Violation::Cycle { modules, evidence } => write!(
                f,
                "cycle: {} ({})",
                modules.join(" → "),
                evidence.join("; ")
            ),
        }
    }
}

/// One table entry: `foo.rs` (one file) or `foo/` (every file below).
#[derive(Debug)]
struct Entry {
    layer: u32,
    pattern: String,
}

impl Entry {
    fn covers(&self, file: &str) -> bool {
        if self.pattern.ends_with('/') {
            file.starts_with(&self.pattern)
        } else {
            file == self.pattern
        }
    }
}

/// Reads the rows between `<!-- layers:begin -->` and `<!-- layers:end -->`:
/// `| layer | name | `entry` `entry/` … |`. Header and rule rows have no
/// number in the first cell and are skipped.
fn parse_table(text: &str) -> Result<Vec<Entry>, String> {
    let begin = text
        .find("<!-- layers:begin -->")
        .ok_or("no `<!-- layers:begin -->` marker")?;
    let end = text[begin..]
        .find("<!-- layers:end -->")
        .ok_or("no `<!-- layers:end -->` marker after the begin marker")?;
    let mut entries = Vec::new();
    for row in text[begin..begin + end].lines() {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let (Some(layer), Some(files)) = (cells.get(1), cells.get(3)) else {
            continue;
        };
        let Ok(layer) = layer.parse::<u32>() else {
            continue;
        };
        // Backticked items are at the odd positions of a split on '`'.
        for pattern in files.split('`').skip(1).step_by(2) {
            entries.push(Entry {
                layer,
                pattern: pattern.to_string(),
            });
        }
    }
    if entries.is_empty() {
        return Err("no rows between the markers".into());
    }
    Ok(entries)
}

/// Every `.rs` file below `root`, as `/`-separated paths relative to it, sorted.
fn rust_files(root: &Path) -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.extension().is_some_and(|x| x == "rs") {
                let rel = path.strip_prefix(root).expect("below root");
                let parts: Vec<_> = rel.iter().map(|p| p.to_string_lossy()).collect();
                out.push(parts.join("/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// The module path of a file: `lib.rs` → [], `a.rs` and `a/mod.rs` → [a],
/// `a/b.rs` → [a, b].
fn module_of(file: &str) -> Vec<String> {
    let mut parts: Vec<String> = file.split('/').map(String::from).collect();
    let last = parts.pop().unwrap_or_default();
    if last != "mod.rs" && last != "lib.rs" {
        parts.push(last.trim_end_matches(".rs").to_string());
    }
    parts
}

/// The top-level module a file belongs to (`ROOT` for `lib.rs`).
fn top_level_of(file: &str) -> String {
    module_of(file).into_iter().next().unwrap_or(ROOT.into())
}

/// A token: an identifier, keyword or number, `::`, or one punctuation char.
#[derive(Debug)]
struct Tok {
    text: String,
    line: usize,
}

/// Splits Rust source into tokens, dropping whitespace, comments (line,
/// doc and nested block comments) and string, byte-string, raw-string and
/// char literals. Lifetimes become plain identifiers, which is harmless.
fn tokenize(src: &str) -> Vec<Tok> {
    let c: Vec<char> = src.chars().collect();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let (mut i, mut line, mut toks) = (0, 1, Vec::new());
    // Skips a quoted literal whose opening quote is at `i`; returns the index after it.
    let skip_quoted = |mut i: usize, line: &mut usize| {
        i += 1;
        while i < c.len() && c[i] != '"' {
            if c[i] == '\\' {
                i += 1;
            }
            *line += usize::from(at(i) == '\n');
            i += 1;
        }
        i + 1
    };
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                match (c[i], at(i + 1)) {
                    ('/', '*') => (depth, i) = (depth + 1, i + 2),
                    ('*', '/') => (depth, i) = (depth - 1, i + 2),
                    (ch, _) => (line, i) = (line + usize::from(ch == '\n'), i + 1),
                }
                if depth == 0 {
                    break;
                }
            }
        } else if ch == '"' {
            i = skip_quoted(i, &mut line);
        } else if ch == '\'' {
            if at(i + 1) == '\\' {
                // Escaped char literal: '\n', '\'', '\u{..}'.
                i += 3;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3; // 'x'
            } else {
                i += 1; // a lifetime or label: its name follows as an identifier
            }
        } else if ch.is_alphanumeric() || ch == '_' {
            let start = i;
            while at(i).is_alphanumeric() || at(i) == '_' {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            let hashes = (i..).take_while(|&j| at(j) == '#').count();
            if matches!(word.as_str(), "r" | "br" | "cr") && at(i + hashes) == '"' {
                // Raw string: ends at '"' followed by as many '#'.
                i += hashes + 1;
                while i < c.len() && !(c[i] == '"' && (1..=hashes).all(|k| at(i + k) == '#')) {
                    line += usize::from(c[i] == '\n');
                    i += 1;
                }
                i += hashes + 1;
            } else if matches!(word.as_str(), "b" | "c") && at(i) == '"' {
                i = skip_quoted(i, &mut line);
            } else if word == "b" && at(i) == '\'' {
                // Byte literal b'x' / b'\n': the char branch takes it next round.
            } else if word == "r" && hashes == 1 && (at(i + 1).is_alphabetic() || at(i + 1) == '_')
            {
                // Raw identifier r#name: kept with its prefix, so it never reads as a keyword.
                let start = i + 1;
                i += 1;
                while at(i).is_alphanumeric() || at(i) == '_' {
                    i += 1;
                }
                let name: String = c[start..i].iter().collect();
                toks.push(Tok {
                    text: format!("r#{name}"),
                    line,
                });
            } else {
                toks.push(Tok { text: word, line });
            }
        } else if ch == ':' && at(i + 1) == ':' {
            toks.push(Tok {
                text: "::".into(),
                line,
            });
            i += 2;
        } else {
            toks.push(Tok {
                text: ch.to_string(),
                line,
            });
            i += 1;
        }
    }
    toks
}

/// One module path a file uses: where, as written, and resolved to an
/// absolute module path (crate-relative segments).
#[derive(Debug)]
struct PathUse {
    line: usize,
    written: String,
    absolute: Vec<String>,
}

fn is_ident(t: &str) -> bool {
    t.starts_with(|ch: char| ch.is_alphabetic() || ch == '_')
}

/// Resolves `crate::…`, `self::…` and `super::…` paths against `module`;
/// any other path (a crate like `std`, a bare name) yields `None`.
fn resolve(module: &[String], segs: &[String]) -> Option<Vec<String>> {
    let mut rest = segs.iter().peekable();
    let mut abs = match rest.next()?.as_str() {
        "crate" => Vec::new(),
        "self" => module.to_vec(),
        "super" => {
            let mut m = module.to_vec();
            m.pop()?;
            while rest.peek().is_some_and(|s| *s == "super") {
                rest.next();
                m.pop()?;
            }
            m
        }
        _ => return None,
    };
    abs.extend(rest.filter(|s| *s != "self").cloned());
    Some(abs)
}

/// Collects the leaf paths of the `use` tree starting at `toks[*i]`
/// (`a::b::{c, d::{e as f, self}, *}`), stopping before the `;`.
fn use_tree(
    toks: &[Tok],
    i: &mut usize,
    mut prefix: Vec<String>,
    out: &mut Vec<(Vec<String>, usize)>,
) {
    let text = |i: usize| toks.get(i).map_or("", |t| t.text.as_str());
    loop {
        match text(*i) {
            "::" => *i += 1,
            "{" => {
                *i += 1;
                while !matches!(text(*i), "}" | "") {
                    use_tree(toks, i, prefix.clone(), out);
                    if text(*i) == "," {
                        *i += 1;
                    }
                }
                *i += 1;
                return;
            }
            "*" => {
                prefix.push("*".into());
                out.push((prefix, toks[*i].line));
                *i += 1;
                return;
            }
            t if is_ident(t) => {
                prefix.push(t.to_string());
                *i += 1;
                if text(*i) != "::" {
                    out.push((prefix, toks[*i - 1].line));
                    if text(*i) == "as" {
                        *i += 2;
                    }
                    return;
                }
            }
            _ => return,
        }
    }
}

/// Every module path used in one file: the leaves of its `use` trees and its
/// inline `crate::`/`super::`/`self::` paths, resolved against the module the
/// path appears in (inline `mod x { … }` blocks included). `mod x;` is a
/// declaration, not an import.
fn scan(src: &str, file_module: &[String]) -> Vec<PathUse> {
    let toks = tokenize(src);
    let text = |i: usize| toks.get(i).map_or("", |t| t.text.as_str());
    let mut module = file_module.to_vec();
    // Inline modules open: the brace depth at which each one closes.
    let (mut depth, mut open_mods, mut pending_mod) = (0, Vec::new(), None);
    let mut out = Vec::new();
    let mut record = |module: &[String], segs: Vec<String>, line: usize| {
        if let Some(absolute) = resolve(module, &segs) {
            // `use a::{self}` names `a`: print it so.
            let shown = segs.strip_suffix(&["self".to_string()]).unwrap_or(&segs);
            let written = shown.join("::");
            out.push(PathUse {
                line,
                written,
                absolute,
            });
        }
    };
    let mut i = 0;
    while i < toks.len() {
        match text(i) {
            "use" => {
                let mut leaves = Vec::new();
                i += 1;
                use_tree(&toks, &mut i, Vec::new(), &mut leaves);
                for (segs, line) in leaves {
                    record(&module, segs, line);
                }
                while !matches!(text(i), ";" | "") {
                    i += 1;
                }
            }
            "mod" if is_ident(text(i + 1)) && text(i + 2) == "{" => {
                pending_mod = Some(text(i + 1).to_string());
                i += 2;
                continue;
            }
            "crate" | "super" | "self"
                if text(i + 1) == "::" && text(i.wrapping_sub(1)) != "::" =>
            {
                let line = toks[i].line;
                let mut segs = vec![text(i).to_string()];
                while text(i + 1) == "::" && is_ident(text(i + 2)) {
                    segs.push(text(i + 2).to_string());
                    i += 2;
                }
                record(&module, segs, line);
            }
            "{" => {
                depth += 1;
                if let Some(name) = pending_mod.take() {
                    module.push(name);
                    open_mods.push(depth);
                }
            }
            "}" => {
                if open_mods.last() == Some(&depth) {
                    open_mods.pop();
                    module.pop();
                }
                depth -= 1;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Checks the `.rs` tree at `src_root` against the layer table in
/// `table_text` (a document holding the markers). Returns every violation,
/// in a stable order: table mismatches, upward imports, cycles.
fn check(src_root: &Path, table_text: &str) -> Vec<Violation> {
    let entries = match parse_table(table_text) {
        Ok(entries) => entries,
        Err(msg) => return vec![Violation::Table(msg)],
    };
    let files = rust_files(src_root);
    let mut violations = Vec::new();

    // Each file in exactly one entry; each entry covers some file.
    let mut layer_of_file = BTreeMap::new();
    for file in &files {
        let hits: Vec<&Entry> = entries.iter().filter(|e| e.covers(file)).collect();
        match hits.as_slice() {
            [] => violations.push(Violation::Unmapped { file: file.clone() }),
            [one] => {
                layer_of_file.insert(file.clone(), one.layer);
            }
            many => violations.push(Violation::Ambiguous {
                file: file.clone(),
                entries: many
                    .iter()
                    .map(|e| format!("`{}` (layer {})", e.pattern, e.layer))
                    .collect(),
            }),
        }
    }
    for e in entries
        .iter()
        .filter(|e| !files.iter().any(|f| e.covers(f)))
    {
        violations.push(Violation::Stale {
            entry: e.pattern.clone(),
            layer: e.layer,
        });
    }

    // A top-level module's layer: the highest layer among its files.
    let mut layer_of_module: BTreeMap<String, u32> = BTreeMap::new();
    for (file, &layer) in &layer_of_file {
        let slot = layer_of_module.entry(top_level_of(file)).or_insert(layer);
        *slot = (*slot).max(layer);
    }
    let top_levels: BTreeSet<String> = files.iter().map(|f| top_level_of(f)).collect();

    // Edges between different top-level modules, with the first use seen as evidence.
    let mut edges: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for file in &files {
        let path = src_root.join(file);
        let src = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let from_module = top_level_of(file);
        for used in scan(&src, &module_of(file)) {
            let target = match used.absolute.first() {
                Some(first) if top_levels.contains(first) && first != ROOT => first.clone(),
                _ => ROOT.to_string(), // an item of the crate root itself
            };
            if target == from_module {
                continue;
            }
            if let (Some(&from), Some(&to)) =
                (layer_of_file.get(file), layer_of_module.get(&target))
            {
                if to > from {
                    violations.push(Violation::Upward {
                        file: file.clone(),
                        line: used.line,
                        path: used.written.clone(),
                        from,
                        module: target.clone(),
                        to,
                    });
                }
            }
            edges
                .entry(from_module.clone())
                .or_default()
                .entry(target)
                .or_insert_with(|| format!("{file}:{} `{}`", used.line, used.written));
        }
    }

    // For each edge u → v on a cycle, the shortest ring through it (u → v, then
    // the shortest path back), each ring reported once: every edge that must
    // go to break a cycle shows up in some ring.
    let mut seen = BTreeSet::new();
    for (u, targets) in &edges {
        for v in targets.keys() {
            let Some(back) = shortest_path(&edges, v, u) else {
                continue;
            };
            let body: Vec<&String> = std::iter::once(u).chain(&back[..back.len() - 1]).collect();
            let min = (0..body.len()).min_by_key(|&k| body[k]).unwrap_or(0);
            let mut modules: Vec<String> = body[min..]
                .iter()
                .chain(&body[..min])
                .map(|m| m.to_string())
                .collect();
            modules.push(modules[0].clone());
            if seen.insert(modules.clone()) {
                let evidence = modules
                    .windows(2)
                    .map(|w| edges[&w[0]][&w[1]].clone())
                    .collect();
                violations.push(Violation::Cycle { modules, evidence });
            }
        }
    }
    violations
}

/// Breadth-first search: the shortest path `from` … `to` (both included), if any.
fn shortest_path(
    edges: &BTreeMap<String, BTreeMap<String, String>>,
    from: &str,
    to: &str,
) -> Option<Vec<String>> {
    let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = VecDeque::from([from]);
    while let Some(node) = queue.pop_front() {
        if node == to {
            let mut path = vec![to.to_string()];
            let mut at = to;
            while at != from {
                at = parent[at];
                path.push(at.to_string());
            }
            path.reverse();
            return Some(path);
        }
        for next in edges.get(node).into_iter().flat_map(|m| m.keys()) {
            if next != from && !parent.contains_key(next.as_str()) {
                parent.insert(next.as_str(), node);
                queue.push_back(next.as_str());
            }
        }
    }
    None
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> Vec<String> {
    let dir = manifest_dir().join("tests/fixtures/layering");
    let table = fs::read_to_string(dir.join("LAYERS.md")).expect("fixture table");
    check(&dir.join(name).join("src"), &table)
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// The real check: `vmm/engine/src` against the table in `docs/ARCHITECTURE.md`.
#[test]
fn engine_respects_layers() {
    let doc = manifest_dir().join("../../docs/ARCHITECTURE.md");
    let table = fs::read_to_string(&doc).unwrap_or_else(|e| panic!("{}: {e}", doc.display()));
    let violations = check(&manifest_dir().join("src"), &table);
    let list: Vec<String> = violations.iter().map(ToString::to_string).collect();
    assert!(
        list.is_empty(),
        "vmm/engine/src breaks the layers of docs/ARCHITECTURE.md (section \"Layers\"), \
         {} violation(s):\n{}\n",
        list.len(),
        list.join("\n")
    );
}

/// The bad fixture: each kind of breach is found, and the import hidden in a
/// comment and the one in a string are not.
#[test]
fn fixture_violations_are_all_found() {
    assert_eq!(
        fixture("bad"),
        [
            "low/deep.rs:6: uses `super::super::high::answer`: layer 1 → layer 3 (`high`)",
            "low/deep.rs:11: uses `crate::high::Big::new`: layer 1 → layer 3 (`high`)",
            "low/mod.rs:19: uses `crate::high::Big`: layer 1 → layer 3 (`high`)",
            "cycle: a → b → a (a.rs:3 `crate::b::B`; b.rs:8 `crate::a::A`)",
        ]
    );
}

/// The clean fixture (the bad one without its back edges and cycle) passes,
/// though it keeps the commented-out and quoted imports.
#[test]
fn clean_fixture_passes() {
    assert_eq!(fixture("clean"), Vec::<String>::new());
}

/// Files in no entry or in two, and entries matching no file, are reported.
#[test]
fn table_mismatches_are_found() {
    let table = "<!-- layers:begin -->\n\
        | layer | name | files |\n|---:|---|---|\n\
        | 1 | low | `low/` `util.rs` `gone.rs` |\n\
        | 2 | mid | `a.rs` `util.rs` |\n\
        | 3 | high | `high.rs` `lib.rs` `old/` |\n\
        <!-- layers:end -->\n";
    let src = manifest_dir().join("tests/fixtures/layering/clean/src");
    let found: Vec<String> = check(&src, table).iter().map(ToString::to_string).collect();
    assert_eq!(
        found,
        [
            "b.rs: in no entry of the layer table",
            "util.rs: in several entries: `util.rs` (layer 1), `util.rs` (layer 2)",
            "table entry `gone.rs` (layer 1) matches no file",
            "table entry `old/` (layer 3) matches no file",
        ]
    );
    assert_eq!(
        check(&src, "no markers"),
        [Violation::Table("no `<!-- layers:begin -->` marker".into())]
    );
}

/// The tokenizer drops comments and literals of every kind and keeps code.
#[test]
fn tokenizer_drops_comments_and_literals() {
    let src = r####"
        /// crate::doc
        //! crate::inner
        /* crate::block /* nested */ crate::still */
        let s = "crate::string \" crate::escaped";
        let r = r#"crate::raw " crate::raw"#;
        let b = (b"crate::bytes", b'"', '"', '\'', c"crate::cstr");
        fn f<'a>(x: &'a str) -> &'a str { crate::kept::X; x }
    "####;
    let paths: Vec<String> = scan(src, &[]).into_iter().map(|u| u.written).collect();
    assert_eq!(paths, ["crate::kept::X"]);
}

/// Grouped, renamed, glob, `self` and `super` uses, and inline modules.
#[test]
fn use_trees_and_super_resolve() {
    let src = "pub(crate) use crate::{a::X, b::{self, Y as Z, *}};\n\
               mod t { use super::super::c::W; fn f() { self::g(); } }\n\
               use super::d;";
    let found: Vec<(String, String)> = scan(src, &["m".into(), "n".into()])
        .into_iter()
        .map(|u| (u.written, u.absolute.join("::")))
        .collect();
    let pairs = [
        ("crate::a::X", "a::X"),
        ("crate::b", "b"),
        ("crate::b::Y", "b::Y"),
        ("crate::b::*", "b::*"),
        ("super::super::c::W", "m::c::W"),
        ("self::g", "m::n::t::g"),
        ("super::d", "m::d"),
    ];
    let expected: Vec<(String, String)> = pairs
        .iter()
        .map(|(w, a)| (w.to_string(), a.to_string()))
        .collect();
    assert_eq!(found, expected);
}
