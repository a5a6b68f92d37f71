//! Our CRDs and our real webhook server (over TLS) in the simulated cluster, installed
//! by the testbed: patches stored, denials as kube-apiserver words them, failure
//! policies, conversion, and our typed Canary through kube-rs.

use apisix_canary::api::canary::v1beta1::Canary;
use apisix_canary::manifests::{Target, crds};
use apisix_canary::testbed;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use serde_json::json;
use sim::Sim;

fn podinfo(max_weight: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "podinfo", "annotations": {
            "apisix-canary.dev/route": "podinfo", "apisix-canary.dev/max-weight": max_weight}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "podinfo"}},
            "template": {"metadata": {"labels": {"app": "podinfo"}},
                "spec": {"containers": [{"name": "podinfod", "image": "stefanprodan/podinfo:6.0.0"}]}}}
    }))
    .unwrap()
}

fn set_image(image: &str) -> Patch<serde_json::Value> {
    Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "podinfod", "image": image}]}}}}))
}

#[tokio::test]
async fn webhooks_mutate_and_deny_through_the_chain() {
    let sim = Sim::start().await.unwrap();
    let installed = testbed::install(&sim).await.unwrap();
    let deployments: Api<Deployment> = Api::namespaced(sim.client().unwrap(), "default");

    let err = deployments.create(&PostParams::default(), &podinfo("150")).await.unwrap_err();
    let kube::Error::Api(status) = err else { panic!("expected an API error, got {err:?}") };
    assert_eq!(status.code, 403);
    assert_eq!(
        status.message,
        "admission webhook \"deployments.validate.apisix-canary.dev\" denied the request: \
         metadata.annotations[apisix-canary.dev/max-weight]: Invalid value: \"150\": must be between 1 and 100"
    );

    deployments.create(&PostParams::default(), &podinfo("50")).await.unwrap();
    // A dry run gets the webhook's answer and stores nothing.
    let dry = PatchParams { dry_run: true, ..PatchParams::default() };
    let answered = deployments.patch("podinfo", &dry, &set_image("stefanprodan/podinfo:6.0.1")).await.unwrap();
    assert_eq!(answered.spec.as_ref().unwrap().paused, Some(true));
    assert_eq!(deployments.get("podinfo").await.unwrap().spec.unwrap().paused, None);

    let patched =
        deployments.patch("podinfo", &PatchParams::default(), &set_image("stefanprodan/podinfo:6.0.1")).await.unwrap();
    let stored = deployments.get("podinfo").await.unwrap();
    assert_eq!(stored.spec.as_ref().unwrap().paused, Some(true), "the webhook's patch is what got stored");
    assert_eq!(stored.metadata.annotations, patched.metadata.annotations);
    let annotations = stored.metadata.annotations.unwrap();
    assert!(annotations.contains_key("apisix-canary.dev/stable-revision"));
    assert!(annotations.contains_key("apisix-canary.dev/canary-revision"));

    // The webhook goes away: Deployments (failurePolicy Ignore) still write, untouched;
    // our own kinds (failurePolicy Fail) are refused.
    installed.server.shutdown().await;
    let mut plain = podinfo("50");
    plain.metadata.name = Some("plain".into());
    deployments.create(&PostParams::default(), &plain).await.unwrap();
    let released =
        deployments.patch("plain", &PatchParams::default(), &set_image("stefanprodan/podinfo:6.0.9")).await.unwrap();
    assert_eq!(released.spec.unwrap().paused, None, "not intercepted while the webhook is down");

    let canaries: Api<DynamicObject> =
        Api::namespaced_with(sim.client().unwrap(), "default", &canary_resource("v1beta1"));
    let canary: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "apisix-canary.dev/v1beta1", "kind": "Canary", "metadata": {"name": "podinfo"},
        "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "routeRef": {"apiVersion": "apisix.apache.org/v2", "kind": "ApisixRoute", "name": "podinfo"}}
    }))
    .unwrap();
    let err = canaries.create(&PostParams::default(), &canary).await.unwrap_err();
    let kube::Error::Api(status) = err else { panic!("expected an API error, got {err:?}") };
    assert_eq!(status.code, 500);
    assert!(
        status
            .message
            .starts_with("Internal error occurred: failed calling webhook \"canaries.validate.apisix-canary.dev\""),
        "{}",
        status.message
    );
}

fn canary_resource(version: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("apisix-canary.dev", version, "Canary"), "canaries")
}

#[tokio::test]
async fn canaries_are_served_in_both_versions_through_the_conversion_webhook() {
    let sim = Sim::start().await.unwrap();
    let _installed = testbed::install(&sim).await.unwrap();
    let client = sim.client().unwrap();
    let beta: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &canary_resource("v1beta1"));
    let alpha: Api<DynamicObject> = Api::namespaced_with(client, "default", &canary_resource("v1alpha1"));

    // Written flat at v1alpha1, stored at v1beta1, read back both ways.
    let flat: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "apisix-canary.dev/v1alpha1", "kind": "Canary", "metadata": {"name": "podinfo"},
        "spec": {"target": "podinfo", "route": "podinfo", "maxWeight": 50, "stepWeight": 10,
            "minSuccessRate": 99, "maxRequestDuration": "500ms"}
    }))
    .unwrap();
    alpha.create(&PostParams::default(), &flat).await.unwrap();
    let stored = sim.cluster.get_raw("apisix-canary.dev", "canaries", "default", "podinfo").unwrap();
    assert_eq!(stored["apiVersion"], "apisix-canary.dev/v1beta1", "stored at the storage version");
    let as_beta = beta.get("podinfo").await.unwrap();
    assert_eq!(as_beta.data["spec"]["analysis"]["maxWeight"], 50);
    assert_eq!(as_beta.data["spec"]["analysis"]["metrics"][1]["thresholdRange"]["max"], 500);
    let as_alpha = alpha.get("podinfo").await.unwrap();
    assert_eq!(as_alpha.data["spec"], flat.data["spec"]);

    // A bad value written at v1alpha1 is refused with v1alpha1 paths.
    let mut bad = flat.clone();
    bad.metadata.name = Some("bad".into());
    bad.data["spec"]["maxWeight"] = json!(150);
    let err = alpha.create(&PostParams::default(), &bad).await.unwrap_err();
    let kube::Error::Api(status) = err else { panic!("expected an API error, got {err:?}") };
    assert!(
        status.message.ends_with("spec.maxWeight: Invalid value: 150: must be between 1 and 100"),
        "{}",
        status.message
    );
}

#[tokio::test]
async fn our_crds_serve_typed_canaries() {
    let sim = Sim::start().await.unwrap();
    let client = sim.client().unwrap();
    let crd_api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crds(&Target::default()) {
        crd_api.create(&PostParams::default(), &crd).await.unwrap();
    }
    let established = crd_api.get("canaries.apisix-canary.dev").await.unwrap();
    let conditions = established.status.unwrap().conditions.unwrap();
    assert!(conditions.iter().any(|c| c.type_ == "Established" && c.status == "True"));

    let canaries: Api<Canary> = Api::namespaced(client, "default");
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/canaries/minimal.yaml")).unwrap();
    let mut canary: Canary = serde_saphyr::from_str(&text).unwrap();
    canary.metadata.namespace = None;
    let created = canaries.create(&PostParams::default(), &canary).await.unwrap();
    assert_eq!(created.spec, canary.spec);
    let status = canaries
        .patch_status(
            "checkout",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Progressing", "canaryWeight": 10}})),
        )
        .await
        .unwrap();
    assert_eq!(status.status.unwrap().canary_weight, Some(10));
    let listed = canaries.list(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    canaries.delete("checkout", &DeleteParams::default()).await.unwrap();
}
