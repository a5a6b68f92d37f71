//! The reaction driver, shared by `cargo bench --bench reaction` and its smoke test: in
//! an e2e [`World`], N opted-in Deployments and a series of releases, each started by a
//! real `kubectl set image` and timed until a kube watch in this process sees the canary
//! Deployment and the generated route at weight 0; each release is then promoted
//! (`promote-now`) and its generated objects seen deleted before the next one starts.
//!
//! Releases of one Deployment run one after another. With [`Options::overlap`] the
//! Deployments run side by side, so releases of different Deployments overlap; without,
//! one release runs at a time, round-robin over the Deployments.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apisix_canary::api::apisix_route::ApisixRoute;
use apisix_canary::api::canary::v1beta1::Canary;
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

use crate::e2e::World;

pub const NAMESPACE: &str = "test";
/// How long any one step of a release may take before the run fails.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// What to run.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Opted-in Deployments, `app-0` .. `app-{n-1}`, each with its Service and route.
    pub deployments: usize,
    /// Releases in all, spread round-robin over the Deployments.
    pub releases: usize,
    /// Each Deployment releases on its own (overlapping); else one release at a time.
    pub overlap: bool,
}

/// One release, timed from just before kubectl ran.
#[derive(Debug, Clone)]
pub struct Sample {
    pub deployment: String,
    /// The image the release set (`example/app:<n>`).
    pub image: String,
    /// The wall-clock time of t0, to find the release in serve's log.
    pub started: std::time::SystemTime,
    /// What kubectl wrote on stderr (its request log with `REACTION_KUBECTL_FLAGS=-v=6`).
    pub kubectl_log: String,
    /// When `kubectl set image` returned.
    pub kubectl: Duration,
    /// When the watch saw the canary Deployment of this release created.
    pub canary: Duration,
    /// When the watch saw the generated route with the canary at 0 and stable at 100.
    pub route: Duration,
}

/// One object as a watch event showed it, and when this process received the event.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    name: String,
    uid: String,
    /// `None`: the event was a deletion.
    object: Option<Value>,
}

/// Every event of the watches, in the order received, and a wake-up for waiters.
#[derive(Default)]
struct Journal {
    seen: Mutex<Vec<Seen>>,
    changed: tokio::sync::Notify,
}

impl Journal {
    fn push(&self, seen: Seen) {
        self.seen.lock().unwrap().push(seen);
        self.changed.notify_waiters();
    }

    /// The first event (in order) from `from` on that `pick` accepts, waiting for it.
    async fn wait<T>(&self, what: &str, from: usize, mut pick: impl FnMut(&Seen) -> Option<T>) -> (usize, T) {
        let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let seen = self.seen.lock().unwrap();
                if let Some((i, t)) = seen.iter().enumerate().skip(from).find_map(|(i, s)| Some((i, pick(s)?))) {
                    return (i, t);
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("the watch never showed {what} within {STEP_TIMEOUT:?}");
            }
        }
    }

    fn len(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

/// Feeds every event of `api`'s watch into `journal`; returns once the first list is in.
async fn watch<K>(api: Api<K>, journal: Arc<Journal>)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
{
    let (ready, listed) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut ready = Some(ready);
        let mut events = std::pin::pin!(watcher(api, watcher::Config::default()));
        while let Some(event) = events.next().await {
            let at = Instant::now();
            let (object, present) = match event {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => (o, true),
                Ok(watcher::Event::Delete(o)) => (o, false),
                Ok(watcher::Event::InitDone) => {
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(());
                    }
                    continue;
                }
                Ok(watcher::Event::Init) | Err(_) => continue,
            };
            let seen = Seen {
                at,
                name: object.name_any(),
                uid: object.uid().unwrap_or_default(),
                object: present.then(|| serde_json::to_value(&object).unwrap_or_default()),
            };
            journal.push(seen);
        }
    });
    listed.await.expect("the watch ended before its first list");
}

/// The Deployment, Service and route of `app-<i>`, opted in by annotations.
pub fn app(i: usize) -> String {
    app_with(i, "1s")
}

/// [`app`] with its analysis interval.
pub fn app_with(i: usize, interval: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-{i}
  namespace: {NAMESPACE}
  labels: {{app: app-{i}}}
  annotations:
    apisix-canary.dev/route: app-{i}
    apisix-canary.dev/interval: {interval}
    apisix-canary.dev/step-weight: "10"
    apisix-canary.dev/max-weight: "50"
    apisix-canary.dev/threshold: "100"
    apisix-canary.dev/progress-deadline-seconds: "60"
spec:
  replicas: 1
  strategy: {{type: RollingUpdate, rollingUpdate: {{maxUnavailable: 0}}}}
  selector: {{matchLabels: {{app: app-{i}}}}}
  template:
    metadata: {{labels: {{app: app-{i}}}}}
    spec:
      containers:
        - name: app
          image: example/app:0
          ports: [{{name: http, containerPort: 9898}}]
---
apiVersion: v1
kind: Service
metadata: {{name: app-{i}, namespace: {NAMESPACE}}}
spec:
  selector: {{app: app-{i}}}
  ports: [{{name: http, port: 80, targetPort: 9898}}]
---
apiVersion: apisix.apache.org/v2
kind: ApisixRoute
metadata: {{name: app-{i}, namespace: {NAMESPACE}}}
spec:
  http:
    - name: main
      match: {{hosts: [app-{i}.example.com], paths: ["/*"]}}
      backends: [{{serviceName: app-{i}, servicePort: 80}}]
      plugins: [{{name: prometheus, enable: true, config: {{prefer_name: true}}}}]
"#
    )
}

/// The canary's and stable's weights in the generated route of Service `svc`, read as
/// written (no default for a missing weight).
fn weights(route: &Value, svc: &str) -> Option<(i64, i64)> {
    let canary_svc = format!("{svc}-canary");
    route["spec"]["http"].as_array()?.iter().find_map(|rule| {
        let backends = rule["backends"].as_array()?;
        let weight = |name: &str| backends.iter().find(|b| b["serviceName"] == name)?["weight"].as_i64();
        Some((weight(&canary_svc)?, weight(svc)?))
    })
}

/// Installs the Deployments, waits for their Canaries, then runs the releases.
pub fn run(w: &World, options: Options) -> Vec<Sample> {
    let mut objects = format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NAMESPACE}}}\n");
    for i in 0..options.deployments {
        objects.push_str("---\n");
        objects.push_str(&app(i));
    }
    let file = w.file("reaction-apps.yaml", &objects);
    w.ok(&["apply", "-f", &file]);

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let kubeconfig = kube::config::Kubeconfig::read_from(&w.kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.unwrap();
        let client = Client::try_from(config).unwrap();
        let journal = Arc::new(Journal::default());
        // Both watches run before the first release, for the whole run.
        watch(Api::<Deployment>::namespaced(client.clone(), NAMESPACE), journal.clone()).await;
        watch(Api::<ApisixRoute>::namespaced(client.clone(), NAMESPACE), journal.clone()).await;
        let canaries: Api<Canary> = Api::namespaced(client.clone(), NAMESPACE);
        for i in 0..options.deployments {
            wait_phase(&canaries, &format!("app-{i}"), &["Initialized"], None).await;
        }
        let kubectl = Arc::new((w.kubectl.clone(), w.kubeconfig.clone()));
        let used = Arc::new(Mutex::new(HashSet::new()));
        // Worker k runs the releases (deployment, n) of its lane, in order.
        let lanes = if options.overlap { options.deployments } else { 1 };
        let mut plan = vec![Vec::new(); lanes];
        for r in 0..options.releases {
            let (i, n) = (r % options.deployments, r / options.deployments + 1);
            plan[i % lanes].push((i, n));
        }
        let mut workers = Vec::new();
        for lane in plan {
            let (client, journal, kubectl, used) = (client.clone(), journal.clone(), kubectl.clone(), used.clone());
            workers.push(tokio::spawn(async move {
                let mut samples = Vec::new();
                for (i, n) in lane {
                    let release = Release { client: &client, journal: &journal, kubectl: &kubectl, used: &used };
                    samples.push(release.run(&format!("app-{i}"), n).await);
                }
                samples
            }));
        }
        let mut samples = Vec::new();
        for worker in workers {
            samples.extend(worker.await.expect("a release failed"));
        }
        samples
    })
}

struct Release<'a> {
    client: &'a Client,
    journal: &'a Journal,
    kubectl: &'a (std::path::PathBuf, std::path::PathBuf),
    /// The uids of every generated object measured so far: none is counted twice.
    used: &'a Mutex<HashSet<String>>,
}

impl Release<'_> {
    /// Release `n` of Deployment `name`: measured, then promoted and cleaned up.
    async fn run(&self, name: &str, n: usize) -> Sample {
        let image = format!("example/app:{n}");
        let canary_name = format!("{name}-canary");
        let route_name = format!("{name}-{name}-canary");
        let from = self.journal.len();
        let (kubectl, program) = (self.kubectl.1.clone(), self.kubectl.0.clone());
        let set = format!("app={image}");
        let deployment = format!("deployment/{name}");
        let flags = std::env::var("REACTION_KUBECTL_FLAGS").unwrap_or_default();
        let (started, t0, returned, out) = tokio::task::spawn_blocking(move || {
            let (started, t0) = (std::time::SystemTime::now(), Instant::now());
            let out = std::process::Command::new(program)
                .args(["-n", NAMESPACE, "set", "image", &deployment, &set])
                .args(flags.split_whitespace())
                .env("KUBECONFIG", kubectl)
                .output()
                .unwrap();
            (started, t0, Instant::now(), out)
        })
        .await
        .unwrap();
        assert!(out.status.success(), "kubectl set image failed: {}", String::from_utf8_lossy(&out.stderr));

        // A canary Deployment never measured before, copying this release's image.
        let fresh = |s: &Seen| !self.used.lock().unwrap().contains(&s.uid);
        let (_, (canary_at, canary_uid)) = self
            .journal
            .wait(&format!("Deployment {canary_name} with {image}"), from, |s| {
                let o = s.object.as_ref()?;
                let copies = o["spec"]["template"]["spec"]["containers"][0]["image"] == image.as_str();
                (s.name == canary_name && copies && fresh(s)).then(|| (s.at, s.uid.clone()))
            })
            .await;
        let (_, (route_at, route_uid)) = self
            .journal
            .wait(&format!("ApisixRoute {route_name} at weight 0"), from, |s| {
                let o = s.object.as_ref()?;
                let zero = weights(o, name) == Some((0, 100));
                (s.name == route_name && zero && fresh(s)).then(|| (s.at, s.uid.clone()))
            })
            .await;
        self.used.lock().unwrap().extend([canary_uid.clone(), route_uid.clone()]);
        let sample = Sample {
            deployment: name.to_owned(),
            image: image.clone(),
            started,
            kubectl_log: String::from_utf8_lossy(&out.stderr).into_owned(),
            kubectl: returned - t0,
            canary: canary_at - t0,
            route: route_at - t0,
        };

        // End it: promote now, and see the generated objects of this release deleted.
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), NAMESPACE);
        let d = deployments.get(name).await.unwrap();
        let revision = d.annotations().get(apisix_canary::api::annotations::CANARY_REVISION).cloned();
        let revision = revision.unwrap_or_else(|| panic!("{name} holds no release lock"));
        let canaries: Api<Canary> = Api::namespaced(self.client.clone(), NAMESPACE);
        let patch = json!({"metadata": {"annotations": {apisix_canary::api::annotations::PROMOTE_NOW: revision}}});
        canaries.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        for (what, uid) in [(&canary_name, &canary_uid), (&route_name, &route_uid)] {
            self.journal
                .wait(&format!("{what} deleted"), from, |s| (s.object.is_none() && &s.uid == uid).then_some(()))
                .await;
        }
        wait_phase(&canaries, name, &["Succeeded"], Some(&image)).await;
        sample
    }
}

/// Polls Canary `name` until its phase is one of `phases` (and, with `image`, its
/// Deployment runs that image, unpaused).
async fn wait_phase(canaries: &Api<Canary>, name: &str, phases: &[&str], image: Option<&str>) {
    let deadline = Instant::now() + STEP_TIMEOUT;
    let deployments: Api<Deployment> = Api::namespaced(canaries.clone().into_client(), NAMESPACE);
    loop {
        let phase = canaries.get_opt(name).await.ok().flatten().and_then(|c| {
            let status = serde_json::to_value(c.status?).ok()?;
            status["phase"].as_str().map(str::to_owned)
        });
        let phased = phase.as_deref().is_some_and(|p| phases.contains(&p));
        let rolled = match image {
            None => true,
            Some(image) => deployments.get(name).await.is_ok_and(|d| {
                let spec = d.spec.unwrap_or_default();
                let images: Vec<_> =
                    spec.template.spec.unwrap_or_default().containers.into_iter().map(|c| c.image).collect();
                spec.paused != Some(true) && images == [Some(image.to_owned())]
            }),
        };
        if phased && rolled {
            return;
        }
        assert!(Instant::now() < deadline, "Canary {name}: phase {phase:?}, not {phases:?}, after {STEP_TIMEOUT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The percentiles of one measure, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Distribution {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Distribution {
    /// Nearest-rank percentiles of `values` (not empty).
    pub fn of(mut values: Vec<Duration>) -> Self {
        values.sort_unstable();
        let rank = |p: f64| {
            let i = ((p * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1;
            values[i].as_secs_f64() * 1e3
        };
        Self { p50: rank(0.50), p90: rank(0.90), p99: rank(0.99), max: rank(1.0) }
    }
}

/// The Markdown table of a run: kubectl returned, canary Deployment, 0-weight route.
pub fn table(samples: &[Sample]) -> String {
    let rows: BTreeMap<u8, (&str, Distribution)> = [
        (0, ("`kubectl set image` returned (tk - t0)", Distribution::of(samples.iter().map(|s| s.kubectl).collect()))),
        (1, ("canary Deployment seen (t1 - t0)", Distribution::of(samples.iter().map(|s| s.canary).collect()))),
        (2, ("0-weight route seen (t2 - t0)", Distribution::of(samples.iter().map(|s| s.route).collect()))),
        (
            3,
            (
                "0-weight route seen after kubectl returned (t2 - tk, 0 if before)",
                Distribution::of(samples.iter().map(|s| s.route.saturating_sub(s.kubectl)).collect()),
            ),
        ),
    ]
    .into();
    let mut out =
        format!("| measure ({} releases) | p50 | p90 | p99 | max |\n| --- | --- | --- | --- | --- |\n", samples.len());
    for (what, d) in rows.values() {
        out.push_str(&format!("| {what} | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms |\n", d.p50, d.p90, d.p99, d.max));
    }
    out
}
