//! `manifests --url` end to end: the binary writes the objects, the simulated cluster
//! calls our server (started on loopback, outside any Service) at that URL for the
//! Deployment interception, the validation and the Canary conversion.

use std::path::Path;
use std::process::Command;

use apisix_canary::server::run::{ServeConfig, start};
use apisix_canary::tls::generate;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use serde_json::json;
use sim::Sim;

const BIN: &str = env!("CARGO_BIN_EXE_apisix-canary");

fn manifests(args: &[&str]) -> std::process::Output {
    Command::new(BIN).env("APISIX_CANARY_LOG_FORMAT", "text").arg("manifests").args(args).output().unwrap()
}

fn podinfo(max_weight: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "podinfo", "annotations": {
            "apisix-canary.dev/route": "podinfo", "apisix-canary.dev/max-weight": max_weight}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "podinfo"}},
            "template": {"metadata": {"labels": {"app": "podinfo"}},
                "spec": {"containers": [{"name": "podinfod", "image": "stefanprodan/podinfo:6.0.0"}]}}}
    }))
    .unwrap()
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_outside_the_cluster_is_called_at_its_url() {
    // Our server on loopback, with a certificate for the address the URL names.
    let certs = generate::generate(&["127.0.0.1".to_owned()]).unwrap();
    let cert_dir = tempfile::tempdir().unwrap();
    certs.write(cert_dir.path()).unwrap();
    let config =
        ServeConfig::local(cert_dir.path().join(generate::CERT_FILE), cert_dir.path().join(generate::KEY_FILE));
    let server = start(&config).await.unwrap();

    let out_dir = tempfile::tempdir().unwrap();
    let url = format!("https://{}", server.addr);
    let ca = cert_dir.path().join(generate::CA_FILE);
    let out =
        manifests(&["--url", &url, "--ca-file", ca.to_str().unwrap(), "--out-dir", out_dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let webhooks = read(out_dir.path(), "webhooks.yaml");
    assert!(webhooks.contains(&format!("url: {url}/mutate/deployments")), "{webhooks}");

    // Installed as a user would; no Service is registered with the sim, so only the
    // URL can reach the server.
    let sim = Sim::start().await.unwrap();
    sim.apply_yaml(&read(out_dir.path(), "crds.yaml")).await.unwrap();
    sim.apply_yaml(&webhooks).await.unwrap();
    let client = sim.client().unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");

    let err = deployments.create(&PostParams::default(), &podinfo("150")).await.unwrap_err();
    let kube::Error::Api(status) = err else { panic!("expected an API error, got {err:?}") };
    assert_eq!(status.code, 403, "denied by the validating webhook: {}", status.message);

    deployments.create(&PostParams::default(), &podinfo("50")).await.unwrap();
    let set_image = Patch::Strategic(
        json!({"spec": {"template": {"spec": {"containers": [{"name": "podinfod", "image": "stefanprodan/podinfo:6.0.1"}]}}}}),
    );
    deployments.patch("podinfo", &PatchParams::default(), &set_image).await.unwrap();
    let stored = deployments.get("podinfo").await.unwrap();
    assert_eq!(stored.spec.as_ref().unwrap().paused, Some(true), "intercepted: paused");
    let annotations = stored.metadata.annotations.unwrap();
    assert!(annotations.contains_key("apisix-canary.dev/stable-revision"), "{annotations:?}");
    assert!(annotations.contains_key("apisix-canary.dev/canary-revision"), "{annotations:?}");

    // The Canary conversion goes through the URL too: written flat, read as v1beta1.
    let resource = |version: &str| {
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("apisix-canary.dev", version, "Canary"), "canaries")
    };
    let alpha: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &resource("v1alpha1"));
    let beta: Api<DynamicObject> = Api::namespaced_with(client, "default", &resource("v1beta1"));
    let flat: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "apisix-canary.dev/v1alpha1", "kind": "Canary", "metadata": {"name": "podinfo"},
        "spec": {"target": "podinfo", "route": "podinfo", "maxWeight": 50, "stepWeight": 10}
    }))
    .unwrap();
    alpha.create(&PostParams::default(), &flat).await.unwrap();
    assert_eq!(beta.get("podinfo").await.unwrap().data["spec"]["analysis"]["maxWeight"], 50);

    server.shutdown().await;
}

#[test]
fn url_excludes_service_and_must_be_https() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().to_str().unwrap();
    let out = manifests(&["--url", "https://127.0.0.1:8443", "--service", "other", "--out-dir", out_dir]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("'--url <URL>' cannot be used with '--service <SERVICE>'"), "{stderr}");

    let out = manifests(&["--url", "http://127.0.0.1:8443", "--out-dir", out_dir]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("'https' is the only allowed URL scheme"), "{stderr}");
    assert!(!dir.path().join("webhooks.yaml").exists(), "nothing written on a bad URL");

    // Our namespace still names the namespace the Deployment webhooks skip.
    let out = manifests(&["--url", "https://127.0.0.1:8443", "--namespace", "canary-system", "--out-dir", out_dir]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let webhooks = read(dir.path(), "webhooks.yaml");
    assert!(webhooks.contains("- canary-system"), "{webhooks}");
    assert!(read(dir.path(), "crds.yaml").contains("url: https://127.0.0.1:8443/convert"));
}
