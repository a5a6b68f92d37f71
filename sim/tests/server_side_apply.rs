//! Server-side apply between managers, as kube-lease-manager relies on it: an apply
//! that would change a field another manager set is a 409 with the apiserver's message,
//! unless forced; an update that removes the field frees it for the next applier.

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use sim::Sim;

fn apply(manager: &str) -> PatchParams {
    PatchParams::apply(manager)
}

fn holder(identity: &str) -> Patch<serde_json::Value> {
    Patch::Apply(json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "spec": {"holderIdentity": identity}}))
}

#[tokio::test]
async fn an_apply_over_another_managers_field_conflicts_until_forced_or_freed() {
    let sim = Sim::start().await.unwrap();
    let leases: Api<Lease> = Api::namespaced(sim.client().unwrap(), "default");
    leases
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "l"}})).unwrap())
        .await
        .unwrap();

    leases.patch("l", &apply("mgr-a"), &holder("a")).await.unwrap();
    let err = leases.patch("l", &apply("mgr-b"), &holder("b")).await.unwrap_err();
    let kube::Error::Api(status) = err else { panic!("expected an API error, got {err:?}") };
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    assert_eq!(status.message, "Apply failed with 1 conflict: conflict with \"mgr-a\": .spec.holderIdentity");
    assert_eq!(leases.get("l").await.unwrap().spec.unwrap().holder_identity.as_deref(), Some("a"));

    // The same value is shared ownership, not a conflict; from then on a change by either
    // of the two conflicts with the other.
    leases.patch("l", &apply("mgr-b"), &holder("a")).await.unwrap();
    leases.patch("l", &apply("mgr-a"), &holder("a2")).await.unwrap_err();

    // A strategic-merge update that removes the field (a release) frees it.
    let release = Patch::Strategic(json!({"spec": {"holderIdentity": null}}));
    leases
        .patch("l", &PatchParams { field_manager: Some("mgr-a".into()), ..PatchParams::default() }, &release)
        .await
        .unwrap();
    leases.patch("l", &apply("mgr-b"), &holder("b")).await.unwrap();

    // Forced, the apply takes the field, and the former owner's entry loses it.
    leases.patch("l", &apply("mgr-c").force(), &holder("c")).await.unwrap();
    let lease = leases.get("l").await.unwrap();
    assert_eq!(lease.spec.unwrap().holder_identity.as_deref(), Some("c"));
    let owners: Vec<String> = lease
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .filter(|e| e.fields_v1.as_ref().is_some_and(|f| f.0.pointer("/f:spec/f:holderIdentity").is_some()))
        .map(|e| e.manager.unwrap())
        .collect();
    assert_eq!(owners, ["mgr-c"]);
}
