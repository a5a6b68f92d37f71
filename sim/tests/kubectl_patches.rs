//! The strategic merge patch of the sim over bodies the real kubectl sent.

use serde_json::Value;
use sim::strategic;

fn fixture(name: &str) -> (Value, Value) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kubectl").join(name);
    let f: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    assert_eq!(f["contentType"], "application/strategic-merge-patch+json");
    (f["original"].clone(), f["patch"].clone())
}

fn container(d: &Value) -> &Value {
    &d["spec"]["template"]["spec"]["containers"][0]
}

#[test]
fn set_image_changes_the_image_only() {
    let (original, patch) = fixture("set-image.json");
    let patched = strategic::apply(&original, &patch).unwrap();
    assert_eq!(container(&patched)["image"], "stefanprodan/podinfo:6.0.1");
    let mut expected = original.clone();
    expected["spec"]["template"]["spec"]["containers"][0]["image"] = "stefanprodan/podinfo:6.0.1".into();
    assert_eq!(patched, expected, "nothing but the image changed");
}

#[test]
fn apply_without_an_env_var_removes_it_and_keeps_the_rest() {
    let (original, patch) = fixture("apply-remove-env.json");
    let names = |d: &Value| -> Vec<String> {
        container(d)["env"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(names(&original), ["PODINFO_UI_COLOR", "PODINFO_UI_MESSAGE"]);
    let patched = strategic::apply(&original, &patch).unwrap();
    assert_eq!(names(&patched), ["PODINFO_UI_COLOR"]);
    assert_eq!(container(&patched)["ports"], container(&original)["ports"]);
    assert_eq!(container(&patched)["image"], container(&original)["image"]);
    let applied =
        patched["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"].as_str().unwrap();
    assert!(!applied.contains("PODINFO_UI_MESSAGE"), "the new last-applied annotation is stored");
}
