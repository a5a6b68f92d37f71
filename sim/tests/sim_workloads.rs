//! The simulated workloads through kube-rs: Deployments become available like under
//! kube-controller-manager, roll within maxSurge/maxUnavailable, stay put while paused,
//! Services get EndpointSlices of their ready pods, and owners collect their dependents.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sim::store::{Event, EventType};
use sim::workloads::pod_template_hash;
use sim::{Options, Sim};
use tokio::sync::broadcast::{Receiver, error::TryRecvError};
use tokio::time::Instant;

const READY_DELAY: Duration = Duration::from_millis(100);
const DEADLINE: Duration = Duration::from_secs(5);

async fn start() -> (Sim, kube::Client) {
    let sim = Sim::start_with(Options { pod_ready_delay: READY_DELAY, ..Options::default() }).await.unwrap();
    let client = sim.client().unwrap();
    (sim, client)
}

fn deployment(name: &str, replicas: i32, strategy: Value) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}, "strategy": strategy,
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "podinfod",
                "image": "stefanprodan/podinfo:6.0.0", "ports": [{"name": "http", "containerPort": 9898}]}]}}}
    }))
    .unwrap()
}

/// Polls `f` every 20 ms until it gives a value; fails after [`DEADLINE`].
async fn eventually<T, Fut: Future<Output = Option<T>>>(what: &str, mut f: impl FnMut() -> Fut) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `kubectl set image` as a JSON patch (the sim applies strategic patches as merge patches).
async fn set_image(api: &Api<Deployment>, name: &str, image: &str) -> Deployment {
    let op = json!([{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": image}]);
    let patch: json_patch::Patch = serde_json::from_value(op).unwrap();
    api.patch(name, &PatchParams::default(), &Patch::<()>::Json(patch)).await.unwrap()
}

async fn merge(api: &Api<Deployment>, name: &str, patch: Value) {
    api.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
}

/// `kubectl rollout status`'s test: the spec observed, every replica updated and available.
fn rolled_out(d: &Deployment) -> bool {
    let (Some(spec), Some(s)) = (&d.spec, &d.status) else { return false };
    let updated = s.updated_replicas.unwrap_or(0);
    s.observed_generation >= d.metadata.generation
        && updated == spec.replicas.unwrap_or(1)
        && s.replicas.unwrap_or(0) == updated
        && s.available_replicas.unwrap_or(0) == updated
}

async fn wait_rolled_out(api: &Api<Deployment>, name: &str) -> Deployment {
    eventually(&format!("{name} to roll out"), || async { api.get(name).await.ok().filter(rolled_out) }).await
}

/// `Status Reason: message` of the Progressing condition.
fn progressing(d: &Deployment) -> String {
    let conditions = d.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    let c = conditions.into_iter().find(|c| c.type_ == "Progressing").unwrap();
    format!("{} {}: {}", c.status, c.reason.unwrap_or_default(), c.message.unwrap_or_default())
}

fn template_hash(d: &Deployment) -> String {
    pod_template_hash(&serde_json::to_value(&d.spec.as_ref().unwrap().template).unwrap())
}

fn pod_ready(object: &Value) -> bool {
    let conditions = object["status"]["conditions"].as_array();
    conditions.is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// The pods of an app as JSON, as a client sees them.
async fn pods_of(api: &Api<Pod>, app: &str) -> Vec<Value> {
    let list = api.list(&ListParams::default().labels(&format!("app={app}"))).await.unwrap();
    list.items.iter().map(|p| serde_json::to_value(p).unwrap()).collect()
}

fn images(pods: &[Value]) -> BTreeSet<&str> {
    pods.iter().map(|p| p["spec"]["containers"][0]["image"].as_str().unwrap()).collect()
}

/// Every change the store recorded since `events` subscribed, in order.
fn replay(events: &mut Receiver<Arc<Event>>) -> Vec<Arc<Event>> {
    let mut out = Vec::new();
    loop {
        match events.try_recv() {
            Ok(event) => out.push(event),
            Err(TryRecvError::Empty) => return out,
            Err(e) => panic!("replaying the store's changes: {e}"),
        }
    }
}

#[tokio::test]
async fn a_deployment_becomes_available_like_under_kube_controller_manager() {
    let (_sim, client) = start().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let created = deployments.create(&PostParams::default(), &deployment("web", 3, json!({}))).await.unwrap();
    let d = wait_rolled_out(&deployments, "web").await;
    let hash = template_hash(&created);
    let rs_name = format!("web-{hash}");
    assert_eq!(d.metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision"], "1");
    let mut status = serde_json::to_value(d.status.unwrap()).unwrap();
    for c in status["conditions"].as_array_mut().unwrap().iter_mut().filter_map(Value::as_object_mut) {
        assert!(c.remove("lastUpdateTime").is_some() && c.remove("lastTransitionTime").is_some(), "{c:?}");
    }
    // Exactly what kube-controller-manager writes; zeros (unavailableReplicas) are omitted.
    let progressed = format!("ReplicaSet \"{rs_name}\" has successfully progressed.");
    assert_eq!(
        status,
        json!({"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3,
            "availableReplicas": 3, "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                    "message": "Deployment has minimum availability."},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable", "message": progressed}]})
    );

    let rss = Api::<ReplicaSet>::namespaced(client.clone(), "default").list(&ListParams::default()).await.unwrap();
    assert_eq!(rss.items.len(), 1);
    let rs = serde_json::to_value(&rss.items[0]).unwrap();
    let owner = json!([{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": created.metadata.uid,
        "controller": true, "blockOwnerDeletion": true}]);
    let labels = json!({"app": "web", "pod-template-hash": hash});
    for (pointer, want) in [
        ("/metadata/name", json!(rs_name)),
        ("/metadata/ownerReferences", owner),
        ("/metadata/annotations/deployment.kubernetes.io~1revision", json!("1")),
        ("/spec/replicas", json!(3)),
        ("/spec/selector/matchLabels", labels.clone()),
        ("/spec/template/metadata/labels", labels),
        (
            "/status",
            json!({"replicas": 3, "fullyLabeledReplicas": 3, "readyReplicas": 3, "availableReplicas": 3,
            "observedGeneration": rs["metadata"]["generation"]}),
        ),
    ] {
        assert_eq!(rs.pointer(pointer), Some(&want), "ReplicaSet {pointer}");
    }

    let pods = pods_of(&Api::namespaced(client, "default"), "web").await;
    assert_eq!(pods.len(), 3);
    let mut ips = BTreeSet::new();
    for pod in &pods {
        let name = pod["metadata"]["name"].as_str().unwrap();
        assert!(name.strip_prefix(&format!("{rs_name}-")).is_some_and(|s| s.len() == 5), "pod name {name}");
        let ip = pod["status"]["podIP"].as_str().unwrap_or_default();
        assert!(ip.starts_with("10.244.") && ips.insert(ip), "unique pod IPs: {ip} {ips:?}");
        for (pointer, want) in [
            ("/metadata/labels/pod-template-hash", json!(hash)),
            ("/metadata/ownerReferences/0/uid", rs["metadata"]["uid"].clone()),
            ("/spec/nodeName", json!("sim-node")),
            ("/status/phase", json!("Running")),
            ("/status/hostIP", json!("10.0.0.1")),
            ("/status/podIPs", json!([{"ip": ip}])),
            ("/status/containerStatuses/0/ready", json!(true)),
            ("/status/containerStatuses/0/started", json!(true)),
            ("/status/containerStatuses/0/restartCount", json!(0)),
            ("/status/containerStatuses/0/image", json!("docker.io/stefanprodan/podinfo:6.0.0")),
        ] {
            assert_eq!(pod.pointer(pointer), Some(&want), "pod {name} {pointer}");
        }
        let c = &pod["status"]["containerStatuses"][0];
        assert!(c["state"]["running"].is_object() && c["imageID"].as_str().is_some_and(|i| i.contains("@sha256:")));
        assert!(pod["status"]["startTime"].is_string());
        let conditions = pod["status"]["conditions"].as_array().unwrap();
        for t in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
            assert!(
                conditions.iter().any(|c| c["type"] == t && c["status"] == "True"),
                "{t} of {name}: {conditions:?}"
            );
        }
    }
}

#[tokio::test]
async fn an_image_update_rolls_within_max_surge_and_max_unavailable() {
    let (sim, client) = start().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    // 4 replicas: 30% surge rounds up to 2 (at most 6 pods), 30% unavailable down to 1 (at least 3 ready).
    let strategy = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "30%", "maxUnavailable": "30%"}});
    let old = deployments.create(&PostParams::default(), &deployment("roll", 4, strategy)).await.unwrap();
    wait_rolled_out(&deployments, "roll").await;

    // Every change from here on, in order: the state after each one is a moment of the cluster.
    let mut events = sim.cluster.store.subscribe();
    let (listed, at) = sim.cluster.store.list("", "pods", Some("default"));
    // Pod name -> (pod-template-hash, ready); ReplicaSet name -> spec.replicas.
    let mut pods: BTreeMap<String, (String, bool)> = BTreeMap::new();
    let mut replica_sets: BTreeMap<String, i64> = BTreeMap::new();
    let mut apply = |type_: EventType, resource: &str, o: &Value| {
        let name = o["metadata"]["name"].as_str().unwrap().to_owned();
        let hash = o["metadata"]["labels"]["pod-template-hash"].as_str().unwrap_or_default().to_owned();
        match (resource, type_) {
            // A Terminating pod no longer counts (kube-controller-manager 1.33 does not
            // count it against maxSurge or availability), though it is still there.
            ("pods", EventType::Deleted) => drop(pods.remove(&name)),
            ("pods", _) if !o["metadata"]["deletionTimestamp"].is_null() => drop(pods.remove(&name)),
            ("pods", _) if o["metadata"]["labels"]["app"] == "roll" => drop(pods.insert(name, (hash, pod_ready(o)))),
            ("replicasets", EventType::Deleted) => drop(replica_sets.remove(&name)),
            ("replicasets", _) => drop(replica_sets.insert(name, o["spec"]["replicas"].as_i64().unwrap())),
            _ => {}
        }
        (pods.clone(), replica_sets.clone())
    };
    listed.iter().for_each(|p| drop(apply(EventType::Added, "pods", p)));
    let (old_rs, new_rs) = (format!("roll-{}", template_hash(&old)), {
        let new = set_image(&deployments, "roll", "podinfo:6.0.1").await;
        format!("roll-{}", template_hash(&new))
    });

    let (mut max_pods, mut min_ready, mut mixed, mut first_new_size) = (0, usize::MAX, false, None);
    let deadline = Instant::now() + DEADLINE;
    let (pods, replica_sets) = loop {
        let event = tokio::time::timeout_at(deadline, events.recv()).await.expect("rollout in time").unwrap();
        if event.rv <= at || event.key.namespace != "default" {
            continue;
        }
        let (pods, replica_sets) = apply(event.type_, &event.key.resource, &event.object);
        first_new_size = first_new_size.or(replica_sets.get(&new_rs).copied());
        let (total, ready) = (pods.len(), pods.values().filter(|(_, r)| *r).count());
        assert!(total <= 6 && ready >= 3, "{total} pods, {ready} ready at rv {}: {pods:?}", event.rv);
        (max_pods, min_ready) = (max_pods.max(total), min_ready.min(ready));
        mixed |= pods.values().filter(|(_, r)| *r).map(|(h, _)| h).collect::<BTreeSet<_>>().len() == 2;
        if event.key.resource == "deployments" && event.key.name == "roll" {
            let d: Deployment = serde_json::from_value((*event.object).clone()).unwrap();
            if d.metadata.generation == Some(2) && rolled_out(&d) {
                break (pods, replica_sets);
            }
        }
    };
    assert_eq!(first_new_size, Some(2), "the new ReplicaSet starts at the surge: min(4 + 2 - 4, 4)");
    assert!(mixed, "old and new pods served together: a rolling update, not a recreate");
    assert!(max_pods > 4 && min_ready < 4, "the rollout used its surge and its unavailability");
    assert_eq!((replica_sets.get(&old_rs), replica_sets.get(&new_rs)), (Some(&0), Some(&4)), "old kept at zero");
    assert!(pods.values().all(|(h, ready)| new_rs.ends_with(h.as_str()) && *ready), "{pods:?}");

    let d = deployments.get("roll").await.unwrap();
    assert_eq!(d.metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision"], "2");
    assert_eq!(
        progressing(&d),
        format!("True NewReplicaSetAvailable: ReplicaSet \"{new_rs}\" has successfully progressed.")
    );
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    assert_eq!(rs_api.get(&old_rs).await.unwrap().status.unwrap().replicas, 0);
    let revision =
        rs_api.get(&new_rs).await.unwrap().metadata.annotations.unwrap()["deployment.kubernetes.io/revision"].clone();
    assert_eq!(revision, "2");
    // The old pods terminate, then go.
    let pods = Api::namespaced(client, "default");
    let running =
        eventually("the old pods to go", || async { Some(pods_of(&pods, "roll").await).filter(|p| p.len() == 4) })
            .await;
    assert_eq!(images(&running), BTreeSet::from(["podinfo:6.0.1"]));
}

#[tokio::test]
async fn a_paused_deployment_keeps_its_pods_until_resumed_and_still_scales() {
    let (_sim, client) = start().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let old_image = BTreeSet::from(["stefanprodan/podinfo:6.0.0"]);
    deployments.create(&PostParams::default(), &deployment("held", 2, json!({}))).await.unwrap();
    wait_rolled_out(&deployments, "held").await;
    merge(&deployments, "held", json!({"spec": {"paused": true}})).await;
    let generation = set_image(&deployments, "held", "podinfo:6.0.1").await.metadata.generation;

    // The controller has seen the new template (observedGeneration) and holds the rollout.
    let d = eventually("the paused template change to be observed", || async {
        deployments.get("held").await.ok().filter(|d| d.status.as_ref().unwrap().observed_generation == generation)
    })
    .await;
    assert_eq!(progressing(&d), "Unknown DeploymentPaused: Deployment is paused");
    assert_eq!(d.status.as_ref().unwrap().updated_replicas, None, "no pod runs the paused template");
    assert!(!rolled_out(&d));
    let rss = replica_sets.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(rss.len(), 1, "a paused Deployment creates no ReplicaSet");
    let running = pods_of(&pods, "held").await;
    assert_eq!((running.len(), images(&running)), (2, old_image.clone()), "pods keep the old image while paused");

    // Scaling a paused Deployment resizes its current ReplicaSet; the syncs that scale
    // it are the proof that the paused template was held on every pass, not a wait.
    merge(&deployments, "held", json!({"spec": {"replicas": 4}})).await;
    let running = eventually("the paused Deployment to scale to 4 ready pods", || async {
        Some(pods_of(&pods, "held").await).filter(|p| p.len() == 4 && p.iter().all(pod_ready))
    })
    .await;
    assert_eq!(images(&running), old_image, "pods keep the old image while paused");
    assert_eq!(replica_sets.list(&ListParams::default()).await.unwrap().items.len(), 1, "still no new ReplicaSet");
    eventually("the paused status to count 4 available", || async {
        deployments.get("held").await.ok().filter(|d| {
            let s = d.status.as_ref().unwrap();
            (s.available_replicas, s.replicas) == (Some(4), Some(4))
        })
    })
    .await;

    // Resumed, it rolls to the new template.
    merge(&deployments, "held", json!({"spec": {"paused": false}})).await;
    let d = wait_rolled_out(&deployments, "held").await;
    assert!(progressing(&d).starts_with("True NewReplicaSetAvailable:"), "{}", progressing(&d));
    let rss = replica_sets.list(&ListParams::default()).await.unwrap().items;
    let sizes: BTreeSet<i32> = rss.iter().map(|rs| rs.spec.as_ref().unwrap().replicas.unwrap()).collect();
    assert_eq!((rss.len(), sizes), (2, BTreeSet::from([0, 4])));
    // The old pods terminate, then go.
    let running =
        eventually("the old pods to go", || async { Some(pods_of(&pods, "held").await).filter(|p| p.len() == 4) })
            .await;
    assert_eq!(images(&running), BTreeSet::from(["podinfo:6.0.1"]));
}

/// The addresses of a Service's slices, split by the endpoints' `ready` condition.
async fn slice_addresses(slices: &Api<EndpointSlice>, service: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let selector = format!("kubernetes.io/service-name={service}");
    let list = slices.list(&ListParams::default().labels(&selector)).await.unwrap();
    let (mut ready, mut not_ready) = (BTreeSet::new(), BTreeSet::new());
    for e in list.items.iter().flat_map(|s| s.endpoints.iter()) {
        let ok = e.conditions.as_ref().and_then(|c| c.ready) == Some(true);
        (if ok { &mut ready } else { &mut not_ready }).extend(e.addresses.iter().cloned());
    }
    (ready, not_ready)
}

/// The slices of `api` list `n` endpoints, exactly the ready pods' IPs.
async fn settled(slices: &Api<EndpointSlice>, pods: &Api<Pod>, n: usize) -> Option<()> {
    let (ready, not_ready) = slice_addresses(slices, "api").await;
    let pods = pods_of(pods, "api").await;
    let ips: BTreeSet<String> =
        pods.iter().filter(|p| pod_ready(p)).map(|p| p["status"]["podIP"].as_str().unwrap().to_owned()).collect();
    (ready.len() == n && not_ready.is_empty() && ready == ips).then_some(())
}

#[tokio::test]
async fn endpoint_slices_list_the_ready_pods_and_follow_a_scale_down() {
    let (sim, client) = start().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let mut events = sim.cluster.store.subscribe();
    let service: Service = serde_json::from_value(json!({"metadata": {"name": "api", "labels": {"team": "web"}},
        "spec": {"selector": {"app": "api"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}))
    .unwrap();
    let service = services.create(&PostParams::default(), &service).await.unwrap();
    deployments.create(&PostParams::default(), &deployment("api", 3, json!({}))).await.unwrap();

    eventually("3 ready endpoints", || settled(&slices, &pods, 3)).await;

    // Replayed change by change: starting pods are published not ready, and no endpoint
    // is ever called ready before its pod is.
    let (mut ever_ready, mut published_not_ready) = (BTreeSet::new(), 0);
    for event in replay(&mut events) {
        if event.key.resource == "pods" && pod_ready(&event.object) {
            ever_ready.insert(event.key.name.clone());
        }
        if event.key.resource == "endpointslices" && event.type_ != EventType::Deleted {
            for e in event.object["endpoints"].as_array().into_iter().flatten() {
                let pod = e["targetRef"]["name"].as_str().unwrap();
                if e["conditions"]["ready"] == true {
                    assert!(ever_ready.contains(pod), "{pod} published ready before it was: {e}");
                } else {
                    published_not_ready += 1;
                }
            }
        }
    }
    assert!(published_not_ready > 0, "pods with an IP are published before they are ready");

    let list = slices.list(&ListParams::default().labels("kubernetes.io/service-name=api")).await.unwrap().items;
    assert_eq!(list.len(), 1);
    let slice = serde_json::to_value(&list[0]).unwrap();
    assert!(slice["metadata"]["name"].as_str().unwrap().starts_with("api-"));
    assert_eq!(slice["addressType"], "IPv4");
    assert_eq!(slice["ports"], json!([{"name": "http", "port": 9898, "protocol": "TCP"}]), "the named port, resolved");
    assert_eq!(
        slice["metadata"]["labels"],
        json!({"team": "web", "kubernetes.io/service-name": "api",
            "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"})
    );
    let owner = &slice["metadata"]["ownerReferences"][0];
    assert_eq!(
        (&owner["kind"], &owner["uid"], &owner["controller"]),
        (&json!("Service"), &json!(service.metadata.uid), &json!(true))
    );
    let all_pods = pods_of(&pods, "api").await;
    for e in slice["endpoints"].as_array().unwrap() {
        let pod = all_pods.iter().find(|p| p["metadata"]["name"] == e["targetRef"]["name"]).unwrap();
        let target = json!({"kind": "Pod", "namespace": "default", "name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"]});
        assert_eq!(
            e,
            &json!({"addresses": [pod["status"]["podIP"]], "nodeName": "sim-node", "targetRef": target,
                "conditions": {"ready": true, "serving": true, "terminating": false}})
        );
    }

    merge(&deployments, "api", json!({"spec": {"replicas": 1}})).await;
    eventually("1 endpoint after the scale-down", || settled(&slices, &pods, 1)).await;

    // A Service nobody matches gets one empty slice.
    let nobody: Service = serde_json::from_value(json!({"metadata": {"name": "nobody"},
        "spec": {"selector": {"app": "nobody"}, "ports": [{"port": 80}]}}))
    .unwrap();
    services.create(&PostParams::default(), &nobody).await.unwrap();
    let placeholder = eventually("a placeholder slice", || async {
        let list = slices.list(&ListParams::default().labels("kubernetes.io/service-name=nobody")).await.unwrap();
        list.items.into_iter().next()
    })
    .await;
    assert!(placeholder.endpoints.is_empty());
}

#[tokio::test]
async fn deleting_a_deployment_collects_its_replica_sets_and_pods() {
    let (_sim, client) = start().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client, "default");
    for (name, replicas) in [("gone", 2), ("kept", 1)] {
        deployments.create(&PostParams::default(), &deployment(name, replicas, json!({}))).await.unwrap();
        wait_rolled_out(&deployments, name).await;
    }
    let owned = || async {
        let rss = replica_sets.list(&ListParams::default().labels("app=gone")).await.unwrap().items;
        (rss.len(), pods_of(&pods, "gone").await.len())
    };
    assert_eq!(owned().await, (1, 2));

    deployments.delete("gone", &DeleteParams::default()).await.unwrap();
    eventually("the ReplicaSets and pods of the deleted Deployment to go", || async {
        (owned().await == (0, 0)).then_some(())
    })
    .await;
    // The controllers go on (the other Deployment scales), and nothing came back.
    merge(&deployments, "kept", json!({"spec": {"replicas": 2}})).await;
    eventually("the other Deployment to scale to 2", || async {
        Some(pods_of(&pods, "kept").await).filter(|p| p.len() == 2 && p.iter().all(pod_ready))
    })
    .await;
    assert_eq!(owned().await, (0, 0));
}
