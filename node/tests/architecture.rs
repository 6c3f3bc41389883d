//! The crates depend on each other only in the directions the design draws
//! (DESIGN.md §3, docs/ARCHITECTURE.md): a new arrow fails this test.

#![allow(clippy::unwrap_used)] // a test unwraps what it set up: a failure there is the test failing

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// The arrows the design draws: crate → the workspace crates it may use.
const DESIGN: &[(&str, &[&str])] = &[
    ("dispatch-storage", &[]),
    ("dispatch-certs", &[]),
    ("dispatch-actors", &["dispatch-storage"]),
    ("dispatch-cluster", &["dispatch-certs"]),
    ("dispatch", &["dispatch-actors", "dispatch-cluster"]),
    ("dispatch-sim", &["dispatch"]),
    ("dispatch-benches", &["dispatch"]),
];

/// Each workspace crate's normal (non-dev, non-build) dependencies on other workspace crates.
fn actual() -> BTreeMap<String, BTreeSet<String>> {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--no-deps", "--format-version", "1", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = meta["packages"].as_array().unwrap();
    let members: BTreeSet<String> = packages.iter().map(|p| p["name"].as_str().unwrap().to_owned()).collect();
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| d["name"].as_str().unwrap().to_owned())
                .filter(|name| members.contains(name))
                .collect();
            (p["name"].as_str().unwrap().to_owned(), deps)
        })
        .collect()
}

#[test]
fn crates_depend_only_in_the_designed_directions() {
    let actual = actual();
    let design: BTreeMap<&str, &[&str]> = DESIGN.iter().copied().collect();
    assert_eq!(
        actual.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        design.keys().copied().collect::<BTreeSet<_>>(),
        "every workspace crate has a row in DESIGN"
    );
    let mut forbidden = Vec::new();
    for (krate, deps) in &actual {
        for dep in deps {
            let designed = design[krate.as_str()].contains(&dep.as_str());
            if !designed {
                forbidden.push(format!("{krate} → {dep}"));
            }
        }
    }
    assert!(forbidden.is_empty(), "dependencies the design forbids: {forbidden:?}");
}

/// Every crate `krate` uses, directly or not (normal dependencies only).
fn tree(krate: &str) -> String {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["tree", "-p", krate, "-e", "normal", "--prefix", "none", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(out.status.success(), "cargo tree: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_domain_knows_nothing_of_http_or_quic() {
    let tree = tree("dispatch-actors");
    for edge in ["axum ", "hyper ", "quinn ", "reqwest ", "utoipa ", "rmcp ", "dispatch-cluster "] {
        assert!(!tree.lines().any(|l| l.starts_with(edge)), "dispatch-actors depends on {edge}");
    }
}

#[test]
fn the_transport_knows_nothing_of_the_domain_or_the_log() {
    let tree = tree("dispatch-cluster");
    for edge in ["dispatch-actors ", "dispatch-storage ", "redb ", "ractor ", "axum "] {
        assert!(!tree.lines().any(|l| l.starts_with(edge)), "dispatch-cluster depends on {edge}");
    }
}
