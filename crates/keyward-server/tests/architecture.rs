//! docs/architecture.md's dependency rules, checked against the Cargo
//! manifests as `cargo metadata` reads them: a crate that starts using one
//! it may not fails here, with the rule it breaks.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

/// Each workspace crate and the workspace crates it may depend on (normal,
/// build and dev dependencies alike). Every crate may also use none.
const MAY_USE: &[(&str, &[&str], &str)] = &[
    (
        "keyward-core",
        &[],
        "the domain's vocabulary and rules: no I/O, nothing of ours below it",
    ),
    (
        "keyward-store",
        &["keyward-core"],
        "the database: speaks the core's vocabulary, knows no rule above it",
    ),
    (
        "keyward-service",
        &["keyward-core", "keyward-store"],
        "the rules, and the only way to the store",
    ),
    (
        "keyward-gateway",
        &["keyward-core", "keyward-service"],
        "the model endpoints reach data only through the services",
    ),
    (
        "keyward-dashboard",
        &["keyward-core", "keyward-service"],
        "the pages reach data only through the services",
    ),
    (
        "keyward-llm",
        &[],
        "the in-process model: knows nothing of keys or billing",
    ),
    (
        "keyward-scan",
        &["keyward-core"],
        "the scanner: finds keys by their format alone",
    ),
    (
        "keyward-server",
        &[
            "keyward-core",
            "keyward-store",
            "keyward-service",
            "keyward-gateway",
            "keyward-dashboard",
            "keyward-llm",
            "keyward-scan",
        ],
        "the binary: wires everything, and nothing depends on it",
    ),
];

fn workspace_dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = meta["packages"].as_array().unwrap();
    let ours: BTreeSet<String> = packages
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["name"].as_str().unwrap().to_owned())
                .filter(|d| ours.contains(d))
                .collect();
            (p["name"].as_str().unwrap().to_owned(), deps)
        })
        .collect()
}

#[test]
fn every_crate_depends_only_on_the_crates_its_layer_allows() {
    let actual = workspace_dependencies();
    let rules: BTreeMap<&str, (&[&str], &str)> = MAY_USE
        .iter()
        .map(|(c, allowed, why)| (*c, (*allowed, *why)))
        .collect();
    let mut broken = Vec::new();
    for (krate, deps) in &actual {
        let Some((allowed, why)) = rules.get(krate.as_str()) else {
            broken.push(format!(
                "{krate} has no rule: add it to MAY_USE here and to docs/architecture.md"
            ));
            continue;
        };
        for dep in deps {
            if !allowed.contains(&dep.as_str()) {
                broken.push(format!("{krate} depends on {dep}, but {krate} is {why}"));
            }
        }
    }
    for krate in rules.keys() {
        if !actual.contains_key(*krate) {
            broken.push(format!("{krate} has a rule but is not in the workspace"));
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}
