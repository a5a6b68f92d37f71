//! The Helm chart, through Helm's own library: tests/chart/render.py renders and lints
//! charts/apisix-canary and compares it with what this binary generates (webhooks,
//! CRDs, RBAC); tests/chart/manifests.py compares `kubectl kustomize manifests/` with
//! the chart's default install. They run in the virtualenv `.ci/run` makes; without it
//! these tests fail.

use std::path::Path;
use std::process::Command;

/// The virtualenv with helm-python-sdk, PyYAML and lupa, made by `.ci/run`.
const VENV_PYTHON: &str = ".venv/bin/python";

/// Runs tests/chart/`script` with `args` in the virtualenv; fails with its output.
fn run(script: &str, args: &[&std::ffi::OsStr]) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = repo.join(VENV_PYTHON);
    assert!(
        python.exists(),
        "{} is missing: run `.ci/run` (it creates the virtualenv with helm-python-sdk)",
        python.display()
    );
    let out = Command::new(&python)
        .arg(repo.join("tests/chart").join(script))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running tests/chart/{script}: {e}"));
    assert!(
        out.status.success(),
        "tests/chart/{script} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn chart_renders_lints_and_matches_the_code() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    run("render.py", &[repo.as_os_str(), env!("CARGO_BIN_EXE_apisix-canary").as_ref()]);
}

/// `kubectl apply -k manifests/` installs what the chart installs by default.
#[test]
fn kustomize_manifests_equal_the_chart_defaults() {
    run("manifests.py", &["--check".as_ref()]);
}

/// charts/apisix-canary/files/argocd-health.lua, in a real Lua, on every phase.
#[test]
fn argocd_health_check_maps_every_canary_status() {
    run("argocd_health.py", &[]);
}

/// charts/apisix-canary/README.md lists every value of values.yaml with its default,
/// and its Argo CD snippet is files/argocd-health.lua.
#[test]
fn chart_readme_documents_every_value() {
    run("readme.py", &["--check".as_ref()]);
}
