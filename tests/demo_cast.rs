//! The demo's cast (src/demo/cast/, embedded in the binary) is the source of the test
//! fixtures that are the same documents: each fixture must be a byte-identical copy, so
//! the tests exercise what the demo plays and the product embeds nothing of `tests/`.

use std::path::Path;

/// (the demo's manifest under src/demo/cast/, its copy under tests/fixtures/).
const COPIES: &[(&str, &str)] = &[
    ("namespace.yaml", "scenario/namespace.yaml"),
    ("route.yaml", "scenario/route.yaml"),
    ("canary.yaml", "canaries/scenario.yaml"),
    // Flagger's kustomize/podinfo, unchanged (their first comment says so).
    ("podinfo/deployment.yaml", "flagger/podinfo/deployment.yaml"),
    ("podinfo/hpa.yaml", "flagger/podinfo/hpa.yaml"),
    ("podinfo/kustomization.yaml", "flagger/podinfo/kustomization.yaml"),
];

#[test]
fn the_fixtures_are_copies_of_the_demos_cast() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (cast, fixtures) = (root.join("src/demo/cast"), root.join("tests/fixtures"));
    let mut differing = Vec::new();
    for (source, copy) in COPIES {
        let read = |path: &Path| std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if read(&cast.join(source)) != read(&fixtures.join(copy)) {
            differing.push(format!("cp src/demo/cast/{source} tests/fixtures/{copy}"));
        }
    }
    assert!(differing.is_empty(), "the fixtures differ from the demo's cast; to follow it:\n{}", differing.join("\n"));
    // Every manifest of the cast has its copy: a new one is listed above.
    let mut listed: Vec<String> = Vec::new();
    for dir in ["", "podinfo"] {
        for entry in std::fs::read_dir(cast.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                listed.push(if dir.is_empty() { name } else { format!("{dir}/{name}") });
            }
        }
    }
    listed.sort();
    let mut expected: Vec<String> = COPIES.iter().map(|(source, _)| (*source).to_owned()).collect();
    expected.sort();
    assert_eq!(listed, expected);
}
