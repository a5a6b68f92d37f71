//! What the release tests share: fixtures read as typed objects, and the owner of the
//! generated objects.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

/// A YAML fixture under `tests/fixtures`, read as `T`.
pub fn fixture<T: serde::de::DeserializeOwned>(path: &str) -> T {
    let text =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(path))
            .unwrap();
    serde_saphyr::from_str(&text).unwrap()
}

/// The Canary that owns the generated objects.
pub fn owner() -> OwnerReference {
    OwnerReference {
        api_version: "apisix-canary.dev/v1beta1".into(),
        kind: "Canary".into(),
        name: "podinfo".into(),
        uid: "3f1c2b4a-5d6e-4f70-8a9b-0c1d2e3f4a5b".into(),
        controller: None,
        block_owner_deletion: Some(true),
    }
}
