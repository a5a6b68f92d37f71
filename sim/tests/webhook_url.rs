//! Webhooks configured by `clientConfig.url`: only https on loopback is ever dialled;
//! anything else fails the call (failurePolicy decides), as an unreachable host would.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use serde_json::json;
use sim::Sim;

/// A validating webhook on ConfigMaps at `url`, with `policy`.
async fn with_webhook(url: &str, policy: &str) -> Sim {
    let sim = Sim::start().await.unwrap();
    sim.create(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "probe"},
        "webhooks": [{
            "name": "probe.example.com", "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "failurePolicy": policy, "timeoutSeconds": 2,
            "clientConfig": {"url": url},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"], "operations": ["CREATE"]}]
        }]
    }))
    .await
    .unwrap();
    sim
}

async fn create_config_map(sim: &Sim) -> Result<ConfigMap, kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(sim.client().unwrap(), "default");
    api.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "c"}})).unwrap()).await
}

async fn refused(url: &str) -> String {
    let sim = with_webhook(url, "Fail").await;
    let err = create_config_map(&sim).await.unwrap_err();
    let kube::Error::Api(status) = err else { panic!("expected an API error, got {err:?}") };
    assert_eq!(status.code, 500, "{}", status.message);
    assert!(status.message.starts_with("Internal error occurred: failed calling webhook \"probe.example.com\": "));
    status.message
}

#[tokio::test]
async fn only_https_on_loopback_is_dialled() {
    let message = refused("https://192.0.2.10:8443/validate").await;
    assert!(
        message.ends_with("192.0.2.10: only loopback webhooks can be reached from the simulated cluster"),
        "{message}"
    );
    let message = refused("https://webhooks.example.com/validate").await;
    assert!(message.contains("webhooks.example.com: only loopback webhooks"), "{message}");
    let message = refused("http://127.0.0.1:1/validate").await;
    assert!(message.ends_with("'https' is the only allowed URL scheme"), "{message}");
    // Loopback is dialled: nothing listens on port 1, so the dial itself fails.
    let message = refused("https://127.0.0.1:1/validate").await;
    assert!(message.contains("failed to call webhook: dial tcp 127.0.0.1:1"), "{message}");
    let message = refused("https://localhost:1/validate").await;
    assert!(message.contains("dial tcp 127.0.0.1:1"), "{message}");
}

#[tokio::test]
async fn an_unreachable_url_with_failure_policy_ignore_lets_the_write_through() {
    let sim = with_webhook("https://192.0.2.10:8443/validate", "Ignore").await;
    create_config_map(&sim).await.unwrap();
}
