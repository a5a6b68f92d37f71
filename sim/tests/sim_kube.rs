//! kube-rs against the simulated API server, unmodified: the verbs, optimistic
//! concurrency, subresources, CRDs, watches that resume after a cut, reflectors.

use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::json;
use sim::Sim;

fn deployment(name: &str, image: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "podinfod", "image": image}]}}
        }
    }))
    .unwrap()
}

#[tokio::test]
async fn crud_round_trips_for_deployments() {
    let sim = Sim::start().await.unwrap();
    let api: Api<Deployment> = Api::namespaced(sim.client().unwrap(), "default");
    let created = api.create(&PostParams::default(), &deployment("podinfo", "podinfo:6.0.0")).await.unwrap();
    let meta = &created.metadata;
    assert!(meta.uid.is_some() && meta.creation_timestamp.is_some() && meta.resource_version.is_some());
    assert_eq!(meta.generation, Some(1));
    assert_eq!(created.spec.as_ref().unwrap().strategy.as_ref().unwrap().type_.as_deref(), Some("RollingUpdate"));

    let got = api.get("podinfo").await.unwrap();
    assert_eq!(got.metadata.uid, meta.uid);
    let list = api.list(&ListParams::default().labels("app=podinfo")).await.unwrap();
    assert_eq!(list.items.len(), 1);
    assert!(api.list(&ListParams::default().labels("app=other")).await.unwrap().items.is_empty());

    // Replace with the current version works and bumps generation on a spec change.
    let mut changed = got.clone();
    changed.spec.as_mut().unwrap().replicas = Some(3);
    let replaced = api.replace("podinfo", &PostParams::default(), &changed).await.unwrap();
    assert_eq!(replaced.metadata.generation, Some(2));
    // Replace with the stale version is a 409 Conflict with a Status body.
    let err = api.replace("podinfo", &PostParams::default(), &changed).await.unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 409);
            assert_eq!(s.reason, "Conflict");
            assert!(s.message.contains("the object has been modified"), "{}", s.message);
        }
        other => panic!("expected a 409, got {other:?}"),
    }

    let merged = api
        .patch("podinfo", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"team": "a"}}})))
        .await
        .unwrap();
    assert_eq!(merged.metadata.labels.as_ref().unwrap()["team"], "a");
    assert_eq!(merged.metadata.generation, Some(2), "metadata changes keep the generation");
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/spec/replicas", "value": 3},
        {"op": "replace", "path": "/spec/replicas", "value": 4}
    ]))
    .unwrap();
    let patched = api.patch("podinfo", &PatchParams::default(), &Patch::<()>::Json(patch)).await.unwrap();
    assert_eq!(patched.spec.as_ref().unwrap().replicas, Some(4));
    let failing: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/spec/replicas", "value": 99}])).unwrap();
    assert!(api.patch("podinfo", &PatchParams::default(), &Patch::<()>::Json(failing)).await.is_err());

    // Status subresource: spec is ignored, status kept from the main resource writes.
    let status = api
        .patch_status(
            "podinfo",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"observedGeneration": 9}, "spec": {"replicas": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(status.status.as_ref().unwrap().observed_generation, Some(9));
    assert_eq!(status.spec.as_ref().unwrap().replicas, Some(4));
    let scale = api.get_scale("podinfo").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(4));

    api.delete("podinfo", &DeleteParams::default()).await.unwrap();
    assert!(matches!(api.get("podinfo").await, Err(kube::Error::Api(s)) if s.code == 404));
}

#[tokio::test]
async fn finalizers_and_owner_garbage_collection() {
    let sim = Sim::start().await.unwrap();
    let client = sim.client().unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let config_maps: Api<ConfigMap> = Api::namespaced(client, "default");
    let owner = deployments.create(&PostParams::default(), &deployment("owner", "x:1")).await.unwrap();
    let owned: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "owned", "ownerReferences": [{
        "apiVersion": "apps/v1", "kind": "Deployment", "name": "owner", "uid": owner.metadata.uid}]},
        "data": {"k": "v"}}))
    .unwrap();
    config_maps.create(&PostParams::default(), &owned).await.unwrap();
    let held: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}})).unwrap();
    config_maps.create(&PostParams::default(), &held).await.unwrap();

    config_maps.delete("held", &DeleteParams::default()).await.unwrap();
    let marked = config_maps.get("held").await.unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some(), "held by its finalizer");
    config_maps
        .patch("held", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}})))
        .await
        .unwrap();
    assert!(config_maps.get_opt("held").await.unwrap().is_none(), "gone with its last finalizer");

    deployments.delete("owner", &DeleteParams::default()).await.unwrap();
    assert!(config_maps.get_opt("owned").await.unwrap().is_none(), "garbage collected with its owner");
}

#[tokio::test]
async fn crds_serve_custom_resources() {
    let sim = Sim::start().await.unwrap();
    let client = sim.client().unwrap();
    let crd_api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/crds/widgets.yaml")).unwrap();
    let crd: CustomResourceDefinition = serde_saphyr::from_str(&text).unwrap();
    crd_api.create(&PostParams::default(), &crd).await.unwrap();
    let established = crd_api.get("widgets.example.com").await.unwrap();
    let conditions = established.status.unwrap().conditions.unwrap();
    assert!(conditions.iter().any(|c| c.type_ == "Established" && c.status == "True"));

    let gvk = GroupVersionKind::gvk("example.com", "v1", "Widget");
    let widgets: Api<DynamicObject> =
        Api::namespaced_with(client, "default", &ApiResource::from_gvk_with_plural(&gvk, "widgets"));
    let widget: DynamicObject = serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w"}, "spec": {"size": 3, "color": "red", "unknown": true}}))
    .unwrap();
    let created = widgets.create(&PostParams::default(), &widget).await.unwrap();
    assert_eq!(created.data["spec"], json!({"size": 3, "color": "red"}), "unknown fields pruned");
    assert_eq!(created.metadata.generation, Some(1));
    let status = widgets
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Ready"}, "spec": {"size": 9}})),
        )
        .await
        .unwrap();
    assert_eq!((&status.data["status"]["phase"], &status.data["spec"]["size"]), (&json!("Ready"), &json!(3)));
    let mut invalid = widget.clone();
    invalid.metadata.name = Some("small".into());
    invalid.data["spec"]["size"] = json!(0);
    let err = widgets.create(&PostParams::default(), &invalid).await.unwrap_err();
    assert!(matches!(&err, kube::Error::Api(s) if s.code == 422), "{err:?}");
    assert_eq!(widgets.list(&ListParams::default()).await.unwrap().items.len(), 1);
    widgets.delete("w", &DeleteParams::default()).await.unwrap();
    assert!(widgets.get_opt("w").await.unwrap().is_none());
}

#[tokio::test]
async fn a_watcher_resumes_after_the_stream_is_cut() {
    let sim = Sim::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(sim.client().unwrap(), "default");
    let mut events = watcher(api.clone(), watcher::Config::default()).applied_objects().boxed();
    let cm = |name: &str| -> ConfigMap { serde_json::from_value(json!({"metadata": {"name": name}})).unwrap() };
    api.create(&PostParams::default(), &cm("one")).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), events.try_next()).await.unwrap().unwrap().unwrap();
    assert_eq!(first.metadata.name.as_deref(), Some("one"));

    sim.cut_watches();
    api.create(&PostParams::default(), &cm("two")).await.unwrap();
    let mut seen = Vec::new();
    while !seen.contains(&"two".to_owned()) {
        let next = tokio::time::timeout(Duration::from_secs(10), events.try_next()).await.unwrap().unwrap().unwrap();
        seen.push(next.metadata.name.unwrap());
    }
}

#[tokio::test]
async fn a_reflector_syncs_and_follows_changes() {
    let sim = Sim::start().await.unwrap();
    let api: Api<Deployment> = Api::namespaced(sim.client().unwrap(), "default");
    api.create(&PostParams::default(), &deployment("a", "x:1")).await.unwrap();
    let (reader, writer) = reflector::store();
    let stream = reflector(writer, watcher(api.clone(), watcher::Config::default())).applied_objects();
    let handle = tokio::spawn(stream.for_each(|_| async {}));
    tokio::time::timeout(Duration::from_secs(5), reader.wait_until_ready()).await.unwrap().unwrap();
    assert_eq!(reader.state().len(), 1);
    api.create(&PostParams::default(), &deployment("b", "x:1")).await.unwrap();
    api.delete("a", &DeleteParams::default()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let names: Vec<String> = reader.state().iter().map(|d| d.metadata.name.clone().unwrap()).collect();
        if names == ["b"] {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "reflector state {names:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    handle.abort();
}

/// kube's metadata API (`list_metadata`, `Api<PartialObjectMeta<K>>`, what our
/// controller's caches use) gets `PartialObjectMetadata`, as
/// from kube-apiserver: names, labels, annotations and owners, no spec or status.
#[tokio::test]
async fn metadata_requests_get_partial_object_metadata() {
    let sim = Sim::start().await.unwrap();
    let client = sim.client().unwrap();
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let created = api.create(&PostParams::default(), &deployment("a", "x:1")).await.unwrap();
    let raw = |path: &str, accept: &str| {
        let request = http::Request::get(path).header(http::header::ACCEPT, accept).body(Vec::new()).unwrap();
        let client = client.clone();
        async move { client.request::<serde_json::Value>(request).await.unwrap() }
    };
    let list = raw(
        "/apis/apps/v1/namespaces/default/deployments",
        "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json",
    )
    .await;
    assert_eq!(
        (list["kind"].as_str(), list["apiVersion"].as_str()),
        (Some("PartialObjectMetadataList"), Some("meta.k8s.io/v1"))
    );
    assert_eq!(list["items"][0]["kind"], "PartialObjectMetadata");
    assert_eq!(list["items"][0]["metadata"]["name"], "a");
    assert!(list["items"][0].get("spec").is_none() && list["items"][0].get("status").is_none(), "{list}");
    let one = raw(
        "/apis/apps/v1/namespaces/default/deployments/a",
        "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
    )
    .await;
    assert_eq!(one["metadata"]["uid"].as_str(), created.metadata.uid.as_deref());
    assert!(one.get("spec").is_none(), "{one}");

    let listed = api.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].metadata.labels, created.metadata.labels);
    let metadata: Api<kube::core::PartialObjectMeta<Deployment>> = Api::namespaced(client.clone(), "default");
    let mut events = watcher(metadata, watcher::Config::default()).applied_objects().boxed();
    let first = tokio::time::timeout(Duration::from_secs(5), events.try_next()).await.unwrap().unwrap().unwrap();
    assert_eq!(first.metadata.name.as_deref(), Some("a"));
    let patch = json!({"metadata": {"annotations": {"team": "payments"}}});
    api.patch("a", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), events.try_next()).await.unwrap().unwrap().unwrap();
    assert_eq!(next.metadata.annotations.unwrap_or_default().get("team").map(String::as_str), Some("payments"));
}

#[tokio::test]
async fn a_watch_from_a_compacted_version_is_gone() {
    let sim = Sim::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(sim.client().unwrap(), "default");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap();
    let created = api.create(&PostParams::default(), &cm).await.unwrap();
    let rv = created.metadata.resource_version.unwrap();
    let newer: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "y"}})).unwrap();
    api.create(&PostParams::default(), &newer).await.unwrap();
    sim.cluster.store.compact();
    let mut stream = api.watch(&kube::api::WatchParams::default(), &rv).await.unwrap().boxed();
    match tokio::time::timeout(Duration::from_secs(5), stream.next()).await.unwrap() {
        Some(Ok(kube::api::WatchEvent::Error(e))) => assert_eq!(e.code, 410),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
}

#[tokio::test]
async fn recorder_events_are_core_events_too() {
    use k8s_openapi::api::core::v1::Event as CoreEvent;
    use kube::Resource as _;
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    let sim = Sim::start().await.unwrap();
    let client = sim.client().unwrap();
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d = api.create(&PostParams::default(), &deployment("podinfo", "x:1")).await.unwrap();
    let recorder = Recorder::new(client.clone(), Reporter { controller: "apisix-canary".into(), instance: None });
    let event = Event {
        type_: EventType::Normal,
        reason: "Synced".into(),
        note: Some("Advance podinfo.default canary weight 10".into()),
        action: "Advance".into(),
        secondary: None,
    };
    let reference = d.object_ref(&());
    recorder.publish(&event, &reference).await.unwrap();
    // The same event again becomes a series (a merge patch on the same object).
    recorder.publish(&event, &reference).await.unwrap();

    // kubectl describe reads core/v1 Events by involvedObject (the deployment
    // controller's ScalingReplicaSet is about the Deployment too: this one by reason).
    let core: Api<CoreEvent> = Api::namespaced(client, "default");
    let selector = format!(
        "involvedObject.name=podinfo,involvedObject.kind=Deployment,reason=Synced,involvedObject.uid={}",
        d.metadata.uid.unwrap()
    );
    let found = core.list(&ListParams::default().fields(&selector)).await.unwrap();
    assert_eq!(found.items.len(), 1);
    let e = &found.items[0];
    assert_eq!(e.message.as_deref(), Some("Advance podinfo.default canary weight 10"));
    assert_eq!(e.reason.as_deref(), Some("Synced"));
    assert_eq!(e.reporting_component.as_deref(), Some("apisix-canary"));
    assert_eq!(e.series.as_ref().map(|s| s.count), Some(Some(2)));
}
