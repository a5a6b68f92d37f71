//! The simulated workloads through kube-rs: Deployments become available like under
//! kube-controller-manager, roll within maxSurge/maxUnavailable, stay put while paused,
//! Services get EndpointSlices of their ready pods, and owners collect their dependents.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use apisix_canary::release::revision::Revision;
use apisix_canary::sim::store::EventType;
use apisix_canary::sim::{Options, Sim};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::time::Instant;

const READY_DELAY: Duration = Duration::from_millis(100);
const DEADLINE: Duration = Duration::from_secs(5);

async fn start() -> Sim {
    Sim::start_with(Options { pod_ready_delay: READY_DELAY, ..Options::default() }).await.unwrap()
}

fn deployment(name: &str, image: &str, replicas: i32, strategy: Value) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": strategy,
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "podinfod", "image": image,
                    "ports": [{"name": "http", "containerPort": 9898}]}]}}
        }
    }))
    .unwrap()
}

/// Polls `f` every 20 ms until it gives a value; fails after [`DEADLINE`].
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `kubectl set image`, as a JSON patch (the sim applies strategic patches as merge patches).
async fn set_image(api: &Api<Deployment>, name: &str, image: &str) -> Deployment {
    let patch: json_patch::Patch = serde_json::from_value(
        json!([{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": image}]),
    )
    .unwrap();
    api.patch(name, &PatchParams::default(), &Patch::<()>::Json(patch)).await.unwrap()
}

/// `kubectl rollout status`'s test: the spec observed, every replica updated and available.
fn rolled_out(d: &Deployment) -> bool {
    let (Some(spec), Some(status)) = (&d.spec, &d.status) else { return false };
    let replicas = spec.replicas.unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    status.observed_generation >= d.metadata.generation
        && updated == replicas
        && status.replicas.unwrap_or(0) == updated
        && status.available_replicas.unwrap_or(0) == updated
}

async fn wait_rolled_out(api: &Api<Deployment>, name: &str) -> Deployment {
    eventually(&format!("deployment {name} to roll out"), || async { api.get(name).await.ok().filter(rolled_out) })
        .await
}

fn conditions(d: &Deployment) -> Vec<(String, String, String, String)> {
    let list = d.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    list.into_iter().map(|c| (c.type_, c.status, c.reason.unwrap_or_default(), c.message.unwrap_or_default())).collect()
}

fn owned_by<'a, T: kube::Resource>(items: &'a [T], owner_uid: &str) -> Vec<&'a T> {
    items
        .iter()
        .filter(|o| {
            o.meta().owner_references.iter().flatten().any(|r| r.uid == owner_uid && r.controller == Some(true))
        })
        .collect()
}

fn image(pod: &Pod) -> &str {
    pod.spec.as_ref().unwrap().containers[0].image.as_deref().unwrap()
}

fn is_ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[tokio::test]
async fn a_deployment_becomes_available_like_under_kube_controller_manager() {
    let sim = start().await;
    let client = sim.client().unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let created = deployments
        .create(&PostParams::default(), &deployment("web", "stefanprodan/podinfo:6.0.0", 3, json!({})))
        .await
        .unwrap();
    let d = wait_rolled_out(&deployments, "web").await;

    let hash = Revision::of_template(&serde_json::to_value(&created.spec.as_ref().unwrap().template).unwrap());
    let rs_name = format!("web-{hash}");
    let status = d.status.clone().unwrap();
    assert_eq!(
        (status.observed_generation, status.replicas, status.updated_replicas, status.ready_replicas),
        (Some(1), Some(3), Some(3), Some(3))
    );
    assert_eq!((status.available_replicas, status.unavailable_replicas), (Some(3), None), "zeros are omitted");
    let found = conditions(&d);
    let want = [
        ("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.".to_owned()),
        (
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
        ),
    ]
    .map(|(t, s, r, m)| (t.to_owned(), s.to_owned(), r.to_owned(), m));
    assert_eq!(found, want);
    for c in status.conditions.unwrap() {
        assert!(c.last_update_time.is_some() && c.last_transition_time.is_some(), "{c:?}");
    }
    assert_eq!(d.metadata.annotations.unwrap()["deployment.kubernetes.io/revision"], "1");

    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let rss = replica_sets.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(rss.len(), 1);
    let rs = &rss[0];
    assert_eq!(rs.metadata.name.as_deref(), Some(rs_name.as_str()));
    let owner = &rs.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Deployment", "web"));
    assert_eq!((owner.controller, owner.block_owner_deletion), (Some(true), Some(true)));
    assert_eq!(Some(&owner.uid), created.metadata.uid.as_ref());
    assert_eq!(rs.metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision"], "1");
    let rs_spec = rs.spec.as_ref().unwrap();
    assert_eq!(rs_spec.replicas, Some(3));
    assert_eq!(rs_spec.selector.match_labels.as_ref().unwrap()["pod-template-hash"], hash.as_str());
    let template_labels = rs_spec.template.as_ref().unwrap().metadata.as_ref().unwrap().labels.as_ref().unwrap();
    assert_eq!(template_labels["pod-template-hash"], hash.as_str());
    let rs_status = rs.status.as_ref().unwrap();
    assert_eq!(
        (rs_status.replicas, rs_status.fully_labeled_replicas, rs_status.ready_replicas, rs_status.available_replicas),
        (3, Some(3), Some(3), Some(3))
    );
    assert_eq!(rs_status.observed_generation, rs.metadata.generation);

    let pods: Api<Pod> = Api::namespaced(client, "default");
    let pods = pods.list(&ListParams::default().labels("app=web")).await.unwrap().items;
    assert_eq!(pods.len(), 3);
    let mut ips = BTreeSet::new();
    for pod in &pods {
        let name = pod.metadata.name.as_deref().unwrap();
        let suffix = name.strip_prefix(&format!("{rs_name}-")).unwrap_or_else(|| panic!("pod name {name}"));
        assert_eq!(suffix.len(), 5, "{name}");
        assert_eq!(pod.metadata.labels.as_ref().unwrap()["pod-template-hash"], hash.as_str());
        assert_eq!(pod.metadata.owner_references.as_ref().unwrap()[0].uid, *rs.metadata.uid.as_ref().unwrap());
        assert_eq!(pod.spec.as_ref().unwrap().node_name.as_deref(), Some("sim-node"));
        let status = pod.status.as_ref().unwrap();
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(status.host_ip.as_deref(), Some("10.0.0.1"));
        assert!(status.start_time.is_some());
        let ip = status.pod_ip.clone().unwrap();
        assert!(ip.starts_with("10.244."), "{ip}");
        assert_eq!(status.pod_ips.as_ref().unwrap()[0].ip, ip);
        ips.insert(ip);
        let conditions: BTreeMap<&str, &str> =
            status.conditions.iter().flatten().map(|c| (c.type_.as_str(), c.status.as_str())).collect();
        for t in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
            assert_eq!(conditions.get(t), Some(&"True"), "{t} of {name}: {conditions:?}");
        }
        let c = &status.container_statuses.as_ref().unwrap()[0];
        assert!(c.ready && c.started == Some(true) && c.restart_count == 0, "{c:?}");
        assert!(c.state.as_ref().unwrap().running.is_some());
        assert!(c.image.ends_with("stefanprodan/podinfo:6.0.0") && !c.image_id.is_empty(), "{c:?}");
    }
    assert_eq!(ips.len(), 3, "pod IPs are unique");
}

/// Pods and ReplicaSets of one Deployment as the store changes, event by event.
#[derive(Default)]
struct World {
    /// Pod name -> (pod-template-hash, ready).
    pods: BTreeMap<String, (String, bool)>,
    /// ReplicaSet name -> spec.replicas.
    replica_sets: BTreeMap<String, i64>,
}

impl World {
    fn apply(&mut self, type_: EventType, resource: &str, object: &Value) {
        let name = object["metadata"]["name"].as_str().unwrap().to_owned();
        match (resource, type_) {
            ("pods", EventType::Deleted) => {
                self.pods.remove(&name);
            }
            ("pods", _) => {
                let hash = object["metadata"]["labels"]["pod-template-hash"].as_str().unwrap_or_default().to_owned();
                let ready = object["status"]["conditions"]
                    .as_array()
                    .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
                self.pods.insert(name, (hash, ready));
            }
            ("replicasets", EventType::Deleted) => {
                self.replica_sets.remove(&name);
            }
            ("replicasets", _) => {
                self.replica_sets.insert(name, object["spec"]["replicas"].as_i64().unwrap_or(0));
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn an_image_update_rolls_within_max_surge_and_max_unavailable() {
    let sim = start().await;
    let client = sim.client().unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    // 4 replicas: 30% surge rounds up to 2 (at most 6 pods), 30% unavailable down to 1 (at least 3 available).
    let strategy = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "30%", "maxUnavailable": "30%"}});
    deployments.create(&PostParams::default(), &deployment("roll", "podinfo:6.0.0", 4, strategy)).await.unwrap();
    let before = wait_rolled_out(&deployments, "roll").await;

    // Every change from here on, in order: the state after each one is a moment of the cluster.
    let mut events = sim.cluster.store.subscribe();
    let mut world = World::default();
    let (pods, at) = sim.cluster.store.list("", "pods", Some("default"));
    for p in pods.iter().filter(|p| p["metadata"]["labels"]["app"] == "roll") {
        world.apply(EventType::Added, "pods", p);
    }
    for rs in sim.cluster.store.list("apps", "replicasets", Some("default")).0 {
        world.apply(EventType::Added, "replicasets", &rs);
    }
    assert_eq!(world.pods.len(), 4);
    let old_hash = world.pods.values().next().unwrap().0.clone();
    let old_rs = format!("roll-{old_hash}");

    set_image(&deployments, "roll", "podinfo:6.0.1").await;
    let new_hash = {
        let d = deployments.get("roll").await.unwrap();
        Revision::of_template(&serde_json::to_value(&d.spec.unwrap().template).unwrap()).as_str().to_owned()
    };
    let new_rs = format!("roll-{new_hash}");

    let (mut max_pods, mut min_ready, mut mixed, mut first_new_size) = (0, usize::MAX, false, None);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let event =
            tokio::time::timeout_at(deadline, events.recv()).await.expect("rollout within the deadline").unwrap();
        if event.rv <= at || event.key.namespace != "default" {
            continue;
        }
        let object = &*event.object;
        if event.key.resource == "pods" && object["metadata"]["labels"]["app"] != "roll" {
            continue;
        }
        world.apply(event.type_, &event.key.resource, object);
        if first_new_size.is_none() {
            first_new_size = world.replica_sets.get(&new_rs).copied();
        }
        let total = world.pods.len();
        let ready = world.pods.values().filter(|(_, r)| *r).count();
        assert!(total <= 6, "{total} pods at rv {}: {:?}", event.rv, world.pods);
        assert!(ready >= 3, "{ready} ready pods at rv {}: {:?}", event.rv, world.pods);
        max_pods = max_pods.max(total);
        min_ready = min_ready.min(ready);
        let hashes: BTreeSet<&str> = world.pods.values().filter(|(_, r)| *r).map(|(h, _)| h.as_str()).collect();
        mixed |= hashes.len() == 2;
        if event.key.resource == "deployments" && event.key.name == "roll" {
            let d: Deployment = serde_json::from_value(object.clone()).unwrap();
            if d.metadata.generation == Some(2) && rolled_out(&d) {
                break;
            }
        }
    }
    assert_eq!(first_new_size, Some(2), "the new ReplicaSet starts at the surge: min(4 + 2 - 4, 4)");
    assert!(mixed, "old and new pods served together: a rolling update, not a recreate");
    assert!(max_pods > 4 && min_ready < 4, "the rollout used its surge and its unavailability");
    assert_eq!(world.replica_sets.get(&old_rs), Some(&0), "the old ReplicaSet is kept at zero");
    assert_eq!(world.replica_sets.get(&new_rs), Some(&4));
    assert!(world.pods.values().all(|(h, ready)| *h == new_hash && *ready), "{:?}", world.pods);

    let d = deployments.get("roll").await.unwrap();
    assert_eq!(d.metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision"], "2");
    let progressing = conditions(&d).into_iter().find(|c| c.0 == "Progressing").unwrap();
    assert_eq!(progressing.3, format!("ReplicaSet \"{new_rs}\" has successfully progressed."));
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let old = replica_sets.get(&old_rs).await.unwrap();
    assert_eq!(old.status.unwrap().replicas, 0);
    let new = replica_sets.get(&new_rs).await.unwrap();
    assert_eq!(new.metadata.annotations.unwrap()["deployment.kubernetes.io/revision"], "2");
    let pods: Vec<Pod> =
        Api::namespaced(client, "default").list(&ListParams::default().labels("app=roll")).await.unwrap().items;
    assert!(pods.iter().all(|p| image(p) == "podinfo:6.0.1"));
    assert_ne!(before.metadata.uid, None);
}

#[tokio::test]
async fn a_paused_deployment_keeps_its_pods_until_resumed_and_still_scales() {
    let sim = start().await;
    let client = sim.client().unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client, "default");
    deployments.create(&PostParams::default(), &deployment("held", "podinfo:6.0.0", 2, json!({}))).await.unwrap();
    wait_rolled_out(&deployments, "held").await;
    let merge = |v: Value| Patch::Merge(v);
    deployments.patch("held", &PatchParams::default(), &merge(json!({"spec": {"paused": true}}))).await.unwrap();
    let changed = set_image(&deployments, "held", "podinfo:6.0.1").await;
    let generation = changed.metadata.generation;

    // The controller has seen the new template (observedGeneration) and holds the rollout.
    let d = eventually("the paused template change to be observed", || async {
        deployments.get("held").await.ok().filter(|d| d.status.as_ref().unwrap().observed_generation == generation)
    })
    .await;
    let progressing = conditions(&d).into_iter().find(|c| c.0 == "Progressing").unwrap();
    assert_eq!(
        progressing,
        ("Progressing".into(), "Unknown".into(), "DeploymentPaused".into(), "Deployment is paused".into())
    );
    assert_eq!(d.status.as_ref().unwrap().updated_replicas, None, "no pod runs the paused template");
    assert!(!rolled_out(&d));
    let held = Instant::now() + Duration::from_millis(600);
    while Instant::now() < held {
        let rss = replica_sets.list(&ListParams::default()).await.unwrap().items;
        assert_eq!(rss.len(), 1, "a paused Deployment creates no ReplicaSet");
        let running = pods.list(&ListParams::default().labels("app=held")).await.unwrap().items;
        assert_eq!(running.len(), 2);
        assert!(running.iter().all(|p| image(p) == "podinfo:6.0.0"), "pods keep the old image while paused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Scaling a paused Deployment resizes its current ReplicaSet.
    deployments.patch("held", &PatchParams::default(), &merge(json!({"spec": {"replicas": 4}}))).await.unwrap();
    eventually("the paused Deployment to scale to 4 ready pods", || async {
        let running = pods.list(&ListParams::default().labels("app=held")).await.unwrap().items;
        (running.len() == 4 && running.iter().all(is_ready)).then_some(())
    })
    .await;
    let running = pods.list(&ListParams::default().labels("app=held")).await.unwrap().items;
    assert!(running.iter().all(|p| image(p) == "podinfo:6.0.0"));
    assert_eq!(replica_sets.list(&ListParams::default()).await.unwrap().items.len(), 1);
    let d = eventually("the paused status to count 4 available", || async {
        deployments.get("held").await.ok().filter(|d| d.status.as_ref().unwrap().available_replicas == Some(4))
    })
    .await;
    assert_eq!(d.status.unwrap().replicas, Some(4));

    // Resumed, it rolls to the new template.
    deployments.patch("held", &PatchParams::default(), &merge(json!({"spec": {"paused": false}}))).await.unwrap();
    let d = wait_rolled_out(&deployments, "held").await;
    let reason = conditions(&d).into_iter().find(|c| c.0 == "Progressing").unwrap().2;
    assert_eq!(reason, "NewReplicaSetAvailable");
    let rss = replica_sets.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(rss.len(), 2);
    let sizes: BTreeSet<i32> = rss.iter().map(|rs| rs.spec.as_ref().unwrap().replicas.unwrap()).collect();
    assert_eq!(sizes, BTreeSet::from([0, 4]));
    let running = pods.list(&ListParams::default().labels("app=held")).await.unwrap().items;
    assert_eq!(running.len(), 4);
    assert!(running.iter().all(|p| image(p) == "podinfo:6.0.1"));
}

/// The addresses of a Service's slices, split by the endpoints' `ready` condition.
async fn slice_addresses(slices: &Api<EndpointSlice>, service: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let list =
        slices.list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}"))).await.unwrap();
    let (mut ready, mut not_ready) = (BTreeSet::new(), BTreeSet::new());
    for e in list.items.iter().flat_map(|s| s.endpoints.iter()) {
        let target =
            if e.conditions.as_ref().and_then(|c| c.ready) == Some(true) { &mut ready } else { &mut not_ready };
        target.extend(e.addresses.iter().cloned());
    }
    (ready, not_ready)
}

#[tokio::test]
async fn endpoint_slices_list_the_ready_pods_and_follow_a_scale_down() {
    let sim = start().await;
    let client = sim.client().unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let mut events = sim.cluster.store.subscribe();
    let service: Service = serde_json::from_value(json!({"metadata": {"name": "api", "labels": {"team": "web"}},
        "spec": {"selector": {"app": "api"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}))
    .unwrap();
    let service = services.create(&PostParams::default(), &service).await.unwrap();
    deployments.create(&PostParams::default(), &deployment("api", "podinfo:6.0.0", 3, json!({}))).await.unwrap();

    let ready_ips = || async {
        let list = pods.list(&ListParams::default().labels("app=api")).await.unwrap().items;
        list.iter()
            .filter(|p| is_ready(p))
            .map(|p| p.status.as_ref().unwrap().pod_ip.clone().unwrap())
            .collect::<BTreeSet<_>>()
    };
    eventually("3 ready endpoints", || async {
        let (ready, not_ready) = slice_addresses(&slices, "api").await;
        (ready.len() == 3 && not_ready.is_empty() && ready == ready_ips().await).then_some(())
    })
    .await;

    // Replayed change by change: starting pods are published not ready, and no endpoint
    // is ever called ready before its pod is.
    let (mut ever_ready, mut published_not_ready) = (BTreeSet::new(), 0);
    loop {
        let event = match events.try_recv() {
            Ok(event) => event,
            Err(tokio::sync::broadcast::error::TryRecvError::Empty) => break,
            Err(e) => panic!("replaying the store's changes: {e}"),
        };
        let object = &*event.object;
        if event.key.resource == "pods"
            && object["status"]["conditions"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
        {
            ever_ready.insert(event.key.name.clone());
        }
        if event.key.resource == "endpointslices" && event.type_ != EventType::Deleted {
            for e in object["endpoints"].as_array().into_iter().flatten() {
                let pod = e["targetRef"]["name"].as_str().unwrap().to_owned();
                if e["conditions"]["ready"] == true {
                    assert!(ever_ready.contains(&pod), "{pod} published ready before it was: {e}");
                } else {
                    published_not_ready += 1;
                }
            }
        }
    }
    assert!(published_not_ready > 0, "pods with an IP are published before they are ready");

    let list = slices.list(&ListParams::default().labels("kubernetes.io/service-name=api")).await.unwrap().items;
    assert_eq!(list.len(), 1);
    let slice = &list[0];
    assert!(slice.metadata.name.as_deref().unwrap().starts_with("api-"));
    let labels = slice.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["endpointslice.kubernetes.io/managed-by"], "endpointslice-controller.k8s.io");
    assert_eq!(labels["team"], "web", "the Service's labels are copied");
    assert_eq!(slice.address_type, "IPv4");
    let owner = &slice.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), Some(&owner.uid)), ("Service", service.metadata.uid.as_ref()));
    let ports = slice.ports.as_ref().unwrap();
    assert_eq!(
        (ports[0].name.as_deref(), ports[0].port, ports[0].protocol.as_deref()),
        (Some("http"), Some(9898), Some("TCP"))
    );
    let all_pods = pods.list(&ListParams::default().labels("app=api")).await.unwrap().items;
    for e in &slice.endpoints {
        let target = e.target_ref.as_ref().unwrap();
        let pod = all_pods.iter().find(|p| p.metadata.name == target.name).unwrap();
        assert_eq!(target.kind.as_deref(), Some("Pod"));
        assert_eq!(target.uid, pod.metadata.uid);
        assert_eq!(e.addresses, [pod.status.as_ref().unwrap().pod_ip.clone().unwrap()]);
        assert_eq!(e.node_name.as_deref(), Some("sim-node"));
        let c = e.conditions.as_ref().unwrap();
        assert_eq!((c.ready, c.serving, c.terminating), (Some(true), Some(true), Some(false)));
    }

    deployments.patch("api", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 1}}))).await.unwrap();
    let left = eventually("1 endpoint after the scale-down", || async {
        let (ready, not_ready) = slice_addresses(&slices, "api").await;
        let pods_left = ready_ips().await;
        (ready.len() == 1 && not_ready.is_empty() && ready == pods_left).then_some(ready)
    })
    .await;
    let gone: Vec<String> =
        all_pods.iter().filter_map(|p| p.status.as_ref()?.pod_ip.clone()).filter(|ip| !left.contains(ip)).collect();
    assert_eq!(gone.len(), 2);

    // A Service nobody matches gets one empty slice.
    let empty: Service = serde_json::from_value(json!({"metadata": {"name": "nobody"},
        "spec": {"selector": {"app": "nobody"}, "ports": [{"port": 80}]}}))
    .unwrap();
    services.create(&PostParams::default(), &empty).await.unwrap();
    let placeholder = eventually("a placeholder slice", || async {
        let list = slices.list(&ListParams::default().labels("kubernetes.io/service-name=nobody")).await.unwrap().items;
        list.into_iter().next()
    })
    .await;
    assert!(placeholder.endpoints.is_empty());
}

#[tokio::test]
async fn deleting_a_deployment_collects_its_replica_sets_and_pods() {
    let sim = start().await;
    let client = sim.client().unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let d =
        deployments.create(&PostParams::default(), &deployment("gone", "podinfo:6.0.0", 2, json!({}))).await.unwrap();
    deployments.create(&PostParams::default(), &deployment("kept", "podinfo:6.0.0", 1, json!({}))).await.unwrap();
    wait_rolled_out(&deployments, "gone").await;
    wait_rolled_out(&deployments, "kept").await;
    let rss = replica_sets.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(owned_by(&rss, d.metadata.uid.as_deref().unwrap()).len(), 1);

    deployments.delete("gone", &DeleteParams::default()).await.unwrap();
    eventually("the ReplicaSets and pods of the deleted Deployment to go", || async {
        let rss = replica_sets.list(&ListParams::default().labels("app=gone")).await.unwrap().items;
        let left = pods.list(&ListParams::default().labels("app=gone")).await.unwrap().items;
        (rss.is_empty() && left.is_empty()).then_some(())
    })
    .await;
    // A few passes later nothing came back, and the other Deployment is untouched.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(pods.list(&ListParams::default().labels("app=gone")).await.unwrap().items.is_empty());
    assert!(replica_sets.list(&ListParams::default().labels("app=gone")).await.unwrap().items.is_empty());
    assert_eq!(pods.list(&ListParams::default().labels("app=kept")).await.unwrap().items.len(), 1);
}
