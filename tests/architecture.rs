//! The shape of the code, as policy: no module imports one that imports it back.
//!
//! kube-runtime's watcher, store, scheduler and runner can each be read without the
//! others; ours should too. This test reads `src/` and builds the graph of which module
//! names which (`crate::x`, `super::x`, `use crate::{x, y}`), at two levels:
//!
//! - the library's top-level modules (`controller`, `store`, `sampler`, ...), and
//! - the files inside each module directory (`controller/reconcile.rs` and its siblings,
//!   with `mod.rs` as a node of its own whose `mod` and `pub use` lines do not count).
//!
//! Written by hand rather than run through `cargo modules`: that tool builds
//! rust-analyzer (minutes on two cores) and is no library a test can call; naming
//! modules in `use` paths is all this check needs.
//!
//! Either graph with a cycle fails, naming it. `cargo test --test architecture --
//! --nocapture` prints both graphs; `INVOK_ARCH_SRC=/other/checkout/src` reads another
//! tree instead (to compare with an older commit).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

/// The tree read: this crate's `src/`, or `INVOK_ARCH_SRC` (to print the graph of
/// another checkout, such as an older commit, beside this one's).
fn src() -> PathBuf {
    std::env::var_os("INVOK_ARCH_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The code of a file without comments (doc comments mention modules freely), without
/// `mod x;` declarations and `pub use` re-exports, which say where things are, not what
/// depends on what, and without its inline test module.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    // An inline test module (`#[cfg(test)] mod tests { .. }`, last in the file by
    // convention) reads everything by design, as `tests.rs` files do.
    let text = match text.find("#[cfg(test)]\nmod tests {") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    let mut out = String::new();
    let mut in_reexport = false;
    for line in text.lines() {
        let t = line.trim_start();
        let t = t.split("//").next().unwrap_or("");
        if in_reexport {
            in_reexport = !t.contains(';');
            continue;
        }
        if t.starts_with("pub use ") || t.starts_with("pub(crate) use ") {
            in_reexport = !t.contains(';');
            continue;
        }
        if (t.starts_with("mod ") || t.starts_with("pub mod ") || t.starts_with("pub(crate) mod "))
            && t.trim_end().ends_with(';')
        {
            continue;
        }
        out.push_str(t);
        out.push('\n');
    }
    out
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first path segment after each `prefix::` in `code`, including each member of a
/// `prefix::{a, b::c}` group.
fn segments_after(code: &str, prefix: &str) -> BTreeSet<String> {
    let needle = format!("{prefix}::");
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find(&needle) {
        let before = rest[..i].chars().last();
        rest = &rest[i + needle.len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut member_start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => member_start = true,
                    c if c.is_whitespace() => {}
                    _ if member_start && depth == 1 => {
                        member_start = false;
                        let name = ident(&group[j..]);
                        if !name.is_empty() {
                            out.insert(name.to_string());
                        }
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                out.insert(name.to_string());
            }
        }
    }
    out
}

/// The library's top-level modules (the binary's `main.rs` and `cli/` are not part of
/// the library).
fn top_level_modules() -> BTreeSet<String> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    lib.lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .filter_map(|l| l.strip_suffix(';'))
        .map(str::to_string)
        .collect()
}

/// The top-level module a file belongs to, and its path inside it (`["reconcile"]`).
fn module_of(file: &Path) -> Option<(String, Vec<String>)> {
    let rel = file.strip_prefix(src()).ok()?;
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    let top = parts.first()?.clone();
    Some((top, parts[1..].to_vec()))
}

/// Which top-level module names which.
fn top_level_graph() -> Graph {
    let modules = top_level_modules();
    let mut graph: Graph = modules
        .iter()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    for file in rust_files(&src()) {
        let Some((top, _)) = module_of(&file) else {
            continue;
        };
        if !modules.contains(&top) {
            continue;
        }
        for dep in segments_after(&code(&file), "crate") {
            if dep != top && modules.contains(&dep) {
                graph.get_mut(&top).unwrap().insert(dep);
            }
        }
    }
    graph
}

/// Inside one module directory: which of its files names which. `mod.rs` is the node
/// `mod`; a child naming an item of `mod.rs` (`super::Shared`) depends on `mod`, and
/// `mod.rs` naming a child (`reconcile::run`) depends on that child.
fn directory_graph(top: &str) -> Graph {
    let dir = src().join(top);
    let mut children: BTreeSet<String> = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if p.is_dir() {
            children.insert(name);
        } else if let Some(stem) = name.strip_suffix(".rs") {
            if stem != "mod" {
                children.insert(stem.to_string());
            }
        }
    }
    let mut graph: Graph = children
        .iter()
        .map(|c| (c.clone(), BTreeSet::new()))
        .collect();
    graph.insert("mod".into(), BTreeSet::new());
    // Names `mod.rs` re-exports from a child (`pub use desired::{Desired, DesiredPool}`)
    // belong to that child: naming them is depending on it.
    let reexported = reexports(&dir.join("mod.rs"), &children);
    for file in rust_files(&dir) {
        let Some((_, path)) = module_of(&file) else {
            continue;
        };
        let node = path.first().cloned().unwrap_or_else(|| "mod".into());
        // Test modules (`tests.rs`, `failure_tests.rs`, `report/tests.rs`) read
        // everything by design.
        if path.last().is_some_and(|p| p.ends_with("tests")) {
            continue;
        }
        let code = code(&file);
        let mut deps = segments_after(&code, &format!("crate::{top}"));
        if path.len() == 1 {
            deps.extend(segments_after(&code, "super"));
        }
        if path.is_empty() {
            // mod.rs names its children directly (`reconcile::run(..)`), or through
            // what it re-exports from them.
            for child in &children {
                if code.contains(&format!("{child}::")) {
                    deps.insert(child.clone());
                }
            }
            for (name, child) in &reexported {
                if contains_word(&code, name) {
                    deps.insert(child.clone());
                }
            }
        }
        for dep in deps {
            let dep = if children.contains(&dep) {
                dep
            } else if let Some(child) = reexported.get(&dep) {
                child.clone()
            } else {
                "mod".into()
            };
            if dep != node && !dep.ends_with("tests") {
                graph.get_mut(&node).unwrap().insert(dep);
            }
        }
    }
    graph
}

/// `name -> child` for every `pub use child::{name, ..};` in a `mod.rs`.
fn reexports(mod_rs: &Path, children: &BTreeSet<String>) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(mod_rs).unwrap_or_default();
    let mut out = BTreeMap::new();
    let mut statement = String::new();
    for line in text.lines() {
        let t = line.trim();
        if statement.is_empty() && !(t.starts_with("pub use ") || t.starts_with("pub(crate) use "))
        {
            continue;
        }
        statement.push_str(t);
        if !t.contains(';') {
            continue;
        }
        let body = statement
            .trim_start_matches("pub(crate) use ")
            .trim_start_matches("pub use ")
            .trim_end_matches(';')
            .to_string();
        statement.clear();
        let (child, names) = match body.split_once("::") {
            Some((c, n)) => (
                c.to_string(),
                n.trim_matches(|c| c == '{' || c == '}').to_string(),
            ),
            None => continue,
        };
        if !children.contains(&child) {
            continue;
        }
        for name in names.split(',') {
            let name = name.trim().rsplit("::").next().unwrap_or("").trim();
            if !name.is_empty() {
                out.insert(name.to_string(), child.clone());
            }
        }
    }
    out
}

fn contains_word(code: &str, word: &str) -> bool {
    code.match_indices(word).any(|(i, _)| {
        let before = code[..i].chars().last();
        let after = code[i + word.len()..].chars().next();
        let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

/// A cycle in `graph`, as the path that closes it, if there is one.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[i..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for dep in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(dep, graph, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

fn render(graph: &Graph) -> String {
    graph
        .iter()
        .map(|(m, deps)| {
            let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
            format!("  {m:<12} -> {}\n", deps.join(", "))
        })
        .collect()
}

#[test]
fn no_top_level_module_imports_one_that_imports_it_back() {
    let graph = top_level_graph();
    println!("top-level modules:\n{}", render(&graph));
    assert!(graph.len() >= 10, "found the modules of lib.rs: {graph:?}");
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "import cycle between modules: {}\n{}",
            cycle.join(" -> "),
            render(&graph)
        );
    }
}

#[test]
fn no_file_of_a_module_directory_imports_one_that_imports_it_back() {
    for top in top_level_modules() {
        if !src().join(&top).is_dir() {
            continue;
        }
        let graph = directory_graph(&top);
        println!("{top}/:\n{}", render(&graph));
        if let Some(cycle) = find_cycle(&graph) {
            panic!(
                "import cycle inside {top}/: {}\n{}",
                cycle.join(" -> "),
                render(&graph)
            );
        }
    }
}

#[test]
fn the_cycle_finder_finds_a_cycle_and_accepts_a_dag() {
    let g = |edges: &[(&str, &str)]| {
        let mut g = Graph::new();
        for (a, b) in edges {
            g.entry(a.to_string()).or_default().insert(b.to_string());
            g.entry(b.to_string()).or_default();
        }
        g
    };
    assert_eq!(
        find_cycle(&g(&[("a", "b"), ("b", "c"), ("c", "a")])),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    assert_eq!(find_cycle(&g(&[("a", "b"), ("a", "c"), ("b", "c")])), None);
}

#[test]
fn imports_are_read_from_paths_groups_and_nested_groups() {
    let code = "use crate::{api::X, store::{Y, Z}, scaler};\nlet a = crate::probe::run();\nfoo_crate::nope();";
    let found = segments_after(code, "crate");
    let want: BTreeSet<String> = ["api", "store", "scaler", "probe"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(found, want);
}
