//! The design, as a maintainer relies on it (README "Design"): data flows one
//! way, the rules know no protocol, each feature's SQL lives with the feature,
//! and statuses are enums. Read from the source tree, so a shortcut that
//! breaks the shape fails here rather than in review.

use std::path::{Path, PathBuf};

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
        for forbidden in ["wechat::", "axum::", "quick_xml", "crate::web", "crate::bot"] {
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
