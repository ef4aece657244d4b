//! The design, as a maintainer relies on it (README "Design"): data flows one
//! way, the rules know no protocol, each feature's SQL lives with the feature,
//! and statuses are enums. Read from the source tree, so a shortcut that
//! breaks the shape fails here rather than in review.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

fn sources(dir: &str) -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push((path.clone(), std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join(dir), &mut out);
    assert!(!out.is_empty(), "{dir}");
    out
}

#[test]
fn the_rules_and_the_error_type_depend_on_no_protocol_and_no_http() {
    let code = |text: &str| -> String { text.lines().filter(|l| !l.trim_start().starts_with("//")).collect() };
    for (path, text) in sources("src/booking") {
        for forbidden in ["wechat::", "axum::", "quick_xml", "crate::web", "crate::bot", "notify::", "crate::notify"] {
            assert!(!code(&text).contains(forbidden), "{} uses {forbidden}", path.display());
        }
    }
    // The error type renders itself as a page (axum), but knows no protocol.
    let error = code(include_str!("../../src/error.rs"));
    for forbidden in ["wechat::", "quick_xml", "ApiError"] {
        assert!(!error.contains(forbidden), "src/error.rs uses {forbidden}");
    }
}

#[test]
fn the_database_module_is_the_pool_and_the_managed_cluster_only() {
    for (path, text) in sources("src/db") {
        for table in
            ["wechat_messages", "wechat_signed_queries", "wechat_access_tokens", "simulator_messages", "tickets"]
        {
            assert!(!text.contains(table), "{} holds SQL of a feature ({table})", path.display());
        }
    }
}

#[test]
fn statuses_are_never_compared_as_strings() {
    for (path, text) in sources("src") {
        for status in ["valid", "used", "cancelled", "draft", "published", "archived"] {
            for op in ["== \"", "!= \""] {
                assert!(
                    !text.contains(&format!("status {op}{status}\"")),
                    "{} compares a status as text",
                    path.display()
                );
            }
        }
    }
}

/// Source text without its comment lines (a comment may name anything).
fn code(text: &str) -> String {
    text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// The crate's top-level modules (`src/x.rs` or `src/x/`), binaries aside.
fn top_level_modules() -> BTreeSet<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    std::fs::read_dir(&src)
        .unwrap()
        .filter_map(|e| {
            let path = e.unwrap().path();
            let name = path.file_stem()?.to_str()?.to_string();
            let module = path.is_dir() || path.extension().is_some_and(|e| e == "rs");
            (module && !["main", "lib", "bin"].contains(&name.as_str())).then_some(name)
        })
        .collect()
}

/// The top-level modules a piece of code names through `crate::` — in paths
/// and in `use crate::{a, b::c}` groups — with the crate root's re-exports
/// (`crate::AppState` …) counted as the module they come from.
fn names_used(code: &str) -> BTreeSet<String> {
    let reexports = [
        ("AppState", "state"),
        ("Application", "app"),
        ("Config", "config"),
        ("AppError", "error"),
        ("AppResult", "error"),
        ("install_crypto_provider", "wechat"),
    ];
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let mut names = Vec::new();
        if let Some(group) = rest.strip_prefix('{') {
            // The group's items at its own depth: `a`, `b::{…}`, `c`.
            let (mut depth, mut item) = (0, String::new());
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => names.push(std::mem::take(&mut item)),
                    _ => {}
                }
                if depth == 0 && c != ',' && c != '}' {
                    item.push(c);
                }
            }
            names.push(item);
        } else {
            names.push(rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect());
        }
        for name in names {
            let name = name.trim().split("::").next().unwrap_or("").trim().to_string();
            let name = reexports.iter().find(|(r, _)| *r == name).map_or(name, |(_, m)| m.to_string());
            found.insert(name);
        }
    }
    found
}

/// Which top-level modules each top-level module uses.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let modules = top_level_modules();
    let mut graph = BTreeMap::new();
    for module in &modules {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let files = if root.join(module).is_dir() {
            sources(&format!("src/{module}"))
        } else {
            let path = root.join(format!("{module}.rs"));
            vec![(path.clone(), std::fs::read_to_string(&path).unwrap())]
        };
        let used: BTreeSet<String> = files
            .iter()
            .flat_map(|(_, text)| names_used(&code(text)))
            .filter(|name| name != module && modules.contains(name))
            .collect();
        graph.insert(module.clone(), used);
    }
    graph
}

/// A circle in the graph, if there is one (depth-first search).
fn a_circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut circle = path[at..].to_vec();
            circle.push(node.to_string());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, graph, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_reader_of_imports_sees_groups_paths_and_reexports() {
    let text = "use crate::{AppState, booking::{self, outbox::Event}, error::AppError};\nlet x = crate::notify::f();";
    let used: Vec<String> = names_used(text).into_iter().collect();
    assert_eq!(used, ["booking", "error", "notify", "state"]);
    let circle: BTreeMap<String, BTreeSet<String>> = [("a", "b"), ("b", "c"), ("c", "a"), ("d", "a")]
        .into_iter()
        .map(|(from, to)| (from.to_string(), BTreeSet::from([to.to_string()])))
        .collect();
    assert_eq!(a_circle(&circle).unwrap().len(), 4, "a → b → c → a");
    let line: BTreeMap<String, BTreeSet<String>> =
        [("a", "b"), ("b", "c")].into_iter().map(|(f, t)| (f.to_string(), BTreeSet::from([t.to_string()]))).collect();
    assert_eq!(a_circle(&line), None);
}

/// Issue 20: the rules record facts and the notifier words them; the clock
/// runs the sweeps; no two top-level modules lean on each other. To see the
/// picture yourself, print `module_graph()` (README "Design").
#[test]
fn imports_run_one_way_between_top_level_modules() {
    let graph = module_graph();
    // The picture the README shows (`-- --nocapture` prints it).
    for (module, uses) in &graph {
        let uses: Vec<&str> = uses.iter().map(String::as_str).collect();
        println!("{module} → {}", if uses.is_empty() { "(nothing)".to_string() } else { uses.join(", ") });
    }
    assert!(
        graph["booking"].iter().all(|m| !["notify", "web", "bot", "schedule"].contains(&m.as_str())),
        "booking uses {:?}",
        graph["booking"]
    );
    assert!(!graph["notify"].contains("web"), "notify uses web: {:?}", graph["notify"]);
    assert!(graph["wechat"].is_empty(), "the protocol layer needs nothing of the crate: {:?}", graph["wechat"]);
    if let Some(circle) = a_circle(&graph) {
        panic!("a circle of imports between top-level modules: {}", circle.join(" → "));
    }
}

/// `notify` words what happened; it does not make things happen. The booking
/// operations that record facts (those taking an `Outbox`) are run by
/// requests and by the clock, never from `notify`.
#[test]
fn notify_runs_no_booking_work() {
    let mut recording = Vec::new();
    for (_, text) in sources("src/booking") {
        let text = code(&text);
        for (at, _) in text.match_indices("pub async fn ").chain(text.match_indices("pub(crate) async fn ")) {
            let signature = &text[at..text[at..].find('{').map_or(text.len(), |end| at + end)];
            if signature.contains("Outbox") {
                let name = signature.split("fn ").nth(1).unwrap().split(['(', '<']).next().unwrap().to_string();
                recording.push(name);
            }
        }
    }
    for wanted in ["draw_due", "close_ended", "cancel", "update", "archive", "bind"] {
        assert!(recording.iter().any(|n| n == wanted), "{wanted} records facts: {recording:?}");
    }
    for (path, text) in sources("src/notify") {
        let text = code(&text);
        for name in &recording {
            assert!(!text.contains(&format!("::{name}(")), "{} runs booking's {name}", path.display());
        }
    }
}
