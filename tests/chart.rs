//! The Helm chart, through Helm's own library: tests/chart/render.py renders and lints
//! charts/apisix-canary and compares it with what this binary generates (webhooks,
//! CRDs, RBAC). It runs in the virtualenv `.ci/run` makes; without it this test fails.

use std::path::Path;
use std::process::Command;

/// The virtualenv with helm-python-sdk and PyYAML, made by `.ci/run`.
const VENV_PYTHON: &str = ".venv/bin/python";

#[test]
fn chart_renders_lints_and_matches_the_code() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = repo.join(VENV_PYTHON);
    assert!(
        python.exists(),
        "{} is missing: run `.ci/run` (it creates the virtualenv with helm-python-sdk)",
        python.display()
    );
    let out = Command::new(&python)
        .arg(repo.join("tests/chart/render.py"))
        .arg(repo)
        .arg(env!("CARGO_BIN_EXE_apisix-canary"))
        .output()
        .expect("running tests/chart/render.py");
    assert!(
        out.status.success(),
        "tests/chart/render.py failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
