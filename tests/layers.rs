//! The library's layers, checked: every `crate::` and `super::` path in
//! `src/` may only lead to a module in the same layer or below, and the
//! modules (with each service counted on its own) import each other
//! without cycles. ARCHITECTURE.md explains the layers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules by layer, from the bottom.
const LAYERS: &[&[&str]] = &[
    &["host", "conn", "testing"],
    &["config"],
    &["error"],
    &[
        "routing",
        "http",
        "tls",
        "watch",
        "cert",
        "trust",
        "hosts",
        "access_log",
        "inspector",
        "metrics",
    ],
    &["services"],
    &["snapshot"],
    &["dispatch"],
    &["server"],
    &["doctor"],
];

fn layer(top: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&top))
}

/// A file's module path: `src/services/proxy/mod.rs` → `services::proxy`.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" && stem != "main" {
        parts.push(stem.to_string());
    }
    parts
}

/// The unit cycles are checked between: a top-level module, or one
/// service (`services::proxy`).
fn node(path: &[String]) -> Option<String> {
    let top = path.first()?;
    match (top.as_str(), path.get(1)) {
        ("services", Some(service)) => Some(format!("services::{service}")),
        _ => Some(top.clone()),
    }
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rs_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every module path a line of code names through `crate::` or `super::`.
fn targets(line: &str, here: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (at, _) in line.match_indices("crate::") {
        // `$crate::` and identifiers ending in `crate` are not paths.
        if at > 0 && line.as_bytes()[at - 1].is_ascii_alphanumeric() {
            continue;
        }
        out.push(segments(&line[at + "crate::".len()..]));
    }
    let mut rest = line;
    while let Some(at) = rest.find("super::") {
        if at > 0 && rest.as_bytes()[at - 1] == b':' {
            // `super::super::`: counted by the first occurrence.
            rest = &rest[at + 7..];
            continue;
        }
        let mut base = here.to_vec();
        let mut tail = &rest[at..];
        while let Some(t) = tail.strip_prefix("super::") {
            base.pop();
            tail = t;
        }
        base.extend(segments(tail));
        out.push(base);
        rest = &rest[at + 7..];
    }
    out
}

/// The leading `a::b::c` of `s`, up to the first non-path character
/// (`{`, `;`, `*`, whitespace, ...), lowercase module names only.
fn segments(s: &str) -> Vec<String> {
    s.split("::")
        .map_while(|seg| {
            let name: String = seg
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            (!name.is_empty() && name.len() == seg.len()).then_some(name.clone())
        })
        .collect()
}

#[test]
fn modules_import_only_downward_and_without_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rs_files(&src, &mut files);
    let mut problems = Vec::new();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let here = module_path(&src, file);
        let Some(from) = node(&here) else {
            continue; // lib.rs and main.rs sit above every layer.
        };
        let from_layer = layer(&here[0])
            .unwrap_or_else(|| panic!("{}: module {} is in no layer", file.display(), here[0]));
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            for target in targets(code, &here) {
                let Some(to) = node(&target) else { continue };
                let Some(to_layer) = layer(&target[0]) else {
                    continue; // a name from the prelude or a local item
                };
                if to_layer > from_layer {
                    problems.push(format!(
                        "{}:{}: {} (layer {from_layer}) imports {} (layer {to_layer}), a layer above it",
                        file.display(),
                        n + 1,
                        here.join("::"),
                        target.join("::")
                    ));
                }
                if to != from {
                    graph.entry(from.clone()).or_default().insert(to);
                }
            }
        }
    }
    if let Some(cycle) = find_cycle(&graph) {
        problems.push(format!("import cycle: {}", cycle.join(" → ")));
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|s| s == n) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(n.to_string());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_string());
        for next in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(next, graph, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in graph.keys() {
        if let Some(c) = visit(n, graph, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn the_checker_sees_paths() {
    let here: Vec<String> = vec!["services".into(), "proxy".into()];
    assert_eq!(
        targets("use crate::http::body::{Body, empty};", &here),
        vec![vec!["http".to_string(), "body".into()]]
    );
    assert_eq!(
        targets("use super::upstream::{Pool, Sender};", &here),
        vec![vec!["services".to_string(), "upstream".into()]]
    );
    assert_eq!(
        targets("let x = crate::snapshot::Shared::new(c, 1);", &here),
        vec![vec!["snapshot".to_string()]]
    );
    let mut g = BTreeMap::new();
    g.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    g.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
    assert!(find_cycle(&g).is_some());
}
