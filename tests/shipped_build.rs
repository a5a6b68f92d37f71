//! What the shipped build (`--no-default-features`, the Dockerfile's) carries: no
//! simulated cluster in its dependency tree, nothing of `tests/` embedded in the product,
//! and every test that runs the testbed marked as needing the `testbed` feature, so
//! `cargo test --no-default-features` skips it instead of failing on a missing `sim`.
//! Cargo is asked offline and builds nothing: these take well under a second each.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const SIM_CRATE: &str = "apisix-canary-sim";

fn cargo(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO")).args(args).arg("--offline").current_dir(ROOT).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "cargo {}: {stderr}", args.join(" "));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_shipped_build_links_no_simulated_cluster() {
    let tree = cargo(&["tree", "-e", "normal", "--no-default-features", "-p", "apisix-canary"]);
    // The tree is really the product's: its first line, and a dependency only it has.
    assert!(tree.starts_with("apisix-canary v"), "{tree}");
    assert!(tree.lines().any(|l| l.contains("kube-lease-manager v")), "{tree}");
    let sim: Vec<&str> = tree.lines().filter(|l| l.contains(SIM_CRATE)).collect();
    assert_eq!(sim, Vec::<&str>::new(), "the shipped build links the simulated cluster");
    // With the default features (the tests, `demo`), it is there: the check can see it.
    let testbed = cargo(&["tree", "-e", "normal", "-p", "apisix-canary", "--depth", "1"]);
    assert!(testbed.lines().any(|l| l.contains(SIM_CRATE)), "{testbed}");
}

/// The source files under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_product_embeds_nothing_of_the_tests() {
    let mut files = Vec::new();
    rust_files(&Path::new(ROOT).join("src"), &mut files);
    assert!(files.len() > 50, "the sources were found: {files:?}");
    let mut embedding = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        // Test-only code (a file's `#[cfg(test)]` module, its last part) is not built into
        // the product and may read the fixtures.
        let product = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (n, line) in product.lines().enumerate() {
            let embeds = line.contains("include_str!(") || line.contains("include_bytes!(");
            if embeds && line.contains("tests/") {
                embedding.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(embedding.is_empty(), "the product embeds test files:\n{}", embedding.join("\n"));
}

/// The text of a test or bench file with the support modules it includes (`#[path]`),
/// recursively.
fn with_modules(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let mut all = text.clone();
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix("#[path = \"") else { continue };
        let Some(module) = rest.strip_suffix("\"]") else { continue };
        all.push_str(&with_modules(&file.parent().unwrap().join(module)));
    }
    all
}

/// Runs the testbed: the product's `testbed` or `demo` module, or the binary's `sim` or
/// `demo` command.
fn runs_the_testbed(text: &str) -> bool {
    ["apisix_canary::testbed", "apisix_canary::demo", "\"sim\"", "\"demo\""].iter().any(|s| text.contains(s))
}

#[test]
fn every_test_of_the_testbed_needs_the_feature() {
    let metadata: Value = serde_json::from_str(&cargo(&["metadata", "--no-deps", "--format-version", "1"])).unwrap();
    let package = metadata["packages"].as_array().unwrap().iter().find(|p| p["name"] == "apisix-canary").unwrap();
    let (mut checked, mut wrong) = (0, Vec::new());
    for target in package["targets"].as_array().unwrap() {
        let kind = target["kind"][0].as_str().unwrap_or_default();
        // This file names what it looks for, and runs no testbed.
        if (kind != "test" && kind != "bench") || target["name"] == env!("CARGO_CRATE_NAME") {
            continue;
        }
        checked += 1;
        let needs = runs_the_testbed(&with_modules(Path::new(target["src_path"].as_str().unwrap())));
        let gated = target["required-features"].as_array().is_some_and(|f| f.iter().any(|f| f == "testbed"));
        if needs != gated {
            let name = target["name"].as_str().unwrap_or_default();
            let why = if needs { "runs the testbed: add it to Cargo.toml with" } else { "runs no testbed: drop" };
            wrong.push(format!("{kind} {name} {why} required-features = [\"testbed\"]"));
        }
    }
    assert!(checked > 40, "the tests and benches were found ({checked})");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
