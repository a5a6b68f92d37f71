//! The sim is no kinder than a cluster (issue 16): what kube-apiserver 1.33 refuses, it
//! refuses in the same words; what a cluster shows (schemas for `explain`, the events of
//! its controllers, pods and namespaces terminating), it shows. Each through the real
//! kubectl.

#[path = "support/binaries.rs"]
mod binaries;
#[path = "support/kubectl.rs"]
mod kubectl;

use kubectl::{dir_file, fixture, start};

/// Runs kubectl expecting it to fail; returns its stderr.
fn refused(c: &kubectl::Cluster, args: &[&str]) -> String {
    let out = c.kubectl(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "kubectl {args:?} should fail: {}", String::from_utf8_lossy(&out.stdout));
    stderr
}

/// Items 1-3: what kube-apiserver refuses or resets on a write, the sim does too, in
/// its words: status dropped on create, unknown and duplicate fields under kubectl's
/// default `fieldValidation=Strict`, and wrong types named as Go's decoder names them.
#[test]
fn writes_are_decoded_strictly_and_status_is_not_created() {
    let c = start();
    c.ok(&["apply", "-f", fixture("scenario/namespace.yaml").to_str().unwrap()]);

    // A Canary sent with a status gets none: only a status write sets it.
    let every_field = fixture("canaries/every-field.yaml");
    let (created, _) = c.ok(&["create", "-f", every_field.to_str().unwrap(), "-o", "json"]);
    let created: serde_json::Value = serde_json::from_str(&created).unwrap();
    assert_eq!(created["spec"]["analysis"]["stepWeights"][0], 5, "the spec is kept: {created}");
    assert!(created.get("status").is_none(), "status dropped on create: {}", created["status"]);
    c.ok(&["-n", "test", "delete", "canary", "podinfo"]);

    // An unknown field: refused by default, warned about with --validate=warn, pruned
    // with --validate=false.
    let scenario = std::fs::read_to_string(fixture("canaries/scenario.yaml")).unwrap();
    let typo = scenario.replace("  analysis:\n", "  analysiz: {}\n  analysis:\n");
    assert_ne!(typo, scenario);
    let typo = dir_file("typo.yaml", &typo);
    let stderr = refused(&c, &["create", "-f", typo.path()]);
    assert!(
        stderr.contains(&format!(
            "error when creating \"{}\": Canary in version \"v1beta1\" cannot be handled as a Canary: \
             strict decoding error: unknown field \"spec.analysiz\"",
            typo.path()
        )),
        "{stderr}"
    );
    let (_, stderr) = c.ok(&["create", "--validate=warn", "--dry-run=server", "-f", typo.path()]);
    assert!(stderr.contains("Warning: unknown field \"spec.analysiz\""), "{stderr}");
    let (out, stderr) = c.ok(&["create", "--validate=false", "-f", typo.path()]);
    assert!(out.contains("canary.apisix-canary.dev/podinfo created") && stderr.is_empty(), "{out}{stderr}");
    let spec = c.ok(&["-n", "test", "get", "canary", "podinfo", "-o", "jsonpath={.spec}"]).0;
    assert!(!spec.contains("analysiz") && spec.contains("stepWeight"), "pruned: {spec}");
    // The typo applied to the existing Canary (a merge patch with fieldValidation=Strict)
    // is refused without naming the kind, as kube's patch handler words it; `kubectl
    // patch` sends no fieldValidation, and the server's default, Warn, warns.
    let stderr = refused(&c, &["apply", "-f", typo.path()]);
    assert!(
        stderr.contains("strict decoding error: unknown field \"spec.analysiz\"")
            && !stderr.contains("cannot be handled"),
        "{stderr}"
    );
    // Server-side apply types the configuration by the schema first: a plain 500.
    let stderr = refused(&c, &["apply", "--server-side", "-f", typo.path()]);
    assert!(
        stderr.contains(
            "Error from server: failed to create typed patch object (test/podinfo; apisix-canary.dev/v1beta1, \
             Kind=Canary): .spec.analysiz: field not declared in schema"
        ),
        "{stderr}"
    );
    let patch = r#"{"spec":{"skipAnalysiz":true}}"#;
    let (_, stderr) = c.ok(&["-n", "test", "patch", "canary", "podinfo", "--type=merge", "-p", patch]);
    assert!(stderr.contains("Warning: unknown field \"spec.skipAnalysiz\""), "{stderr}");

    // Wrong types in a built-in kind, in Go's words.
    let podinfo = std::fs::read_to_string(fixture("scenario/podinfo.yaml")).unwrap();
    let two = dir_file("two.yaml", &podinfo.replace("  replicas: 2\n", "  replicas: \"two\"\n"));
    let stderr = refused(&c, &["apply", "-f", two.path()]);
    assert!(
        stderr.contains(
            "Deployment in version \"v1\" cannot be handled as a Deployment: json: cannot unmarshal string into \
             Go struct field DeploymentSpec.spec.replicas of type int32"
        ),
        "{stderr}"
    );
    // A field given twice (JSON keeps both; kubectl --raw sends the bytes as they are).
    let duplicated = dir_file(
        "dup.json",
        r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dup"},
            "data": {"a": "1"}, "data": {"a": "2"}}"#,
    );
    let stderr = refused(
        &c,
        &["create", "--raw", "/api/v1/namespaces/test/configmaps?fieldValidation=Strict", "-f", duplicated.path()],
    );
    assert!(
        stderr.contains(
            "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: duplicate field \"data\""
        ),
        "{stderr}"
    );
}

/// `kubectl explain` reads the sim's OpenAPI v3 as it reads a cluster's: our CRD's
/// fields and descriptions (at any depth), APISIX's CRD, the built-in kinds with
/// Kubernetes' own documentation, `--recursive` through references, and the same error
/// for a field that does not exist.
#[test]
fn explain_reads_the_openapi_schemas() {
    let c = start();
    // kubectl rewraps descriptions (dropping their line breaks): compare without spaces.
    let squeeze = |s: &str| s.split_whitespace().collect::<String>();
    // The description the installed Canary CRD gives a field, e.g. `.spec`.
    let crd_description = |field: &str| {
        let schema = ".spec.versions[?(@.name==\"v1beta1\")].schema.openAPIV3Schema";
        let path = field.replace('.', ".properties.");
        let (text, _) = c.ok(&[
            "get",
            "crd",
            "canaries.apisix-canary.dev",
            "-o",
            &format!("jsonpath={{{schema}{path}.description}}"),
        ]);
        assert!(!text.trim().is_empty(), "the CRD documents {field}");
        text
    };

    let (spec, _) = c.ok(&["explain", "canary.spec"]);
    for line in ["GROUP:      apisix-canary.dev", "KIND:       Canary", "VERSION:    v1beta1", "FIELD: spec <Object>"] {
        assert!(spec.contains(line), "{line}:\n{spec}");
    }
    assert!(squeeze(&spec).contains(&squeeze(&crd_description(".spec"))), "{spec}");
    assert!(spec.contains("  targetRef\t<Object> -required-\n"), "{spec}");
    assert!(spec.contains("  analysis\t<Object>\n"), "{spec}");
    assert!(squeeze(&spec).contains(&squeeze(&crd_description(".spec.analysis"))), "{spec}");

    let (interval, _) = c.ok(&["explain", "canary.spec.analysis.interval"]);
    assert!(interval.contains("FIELD: interval <string>"), "{interval}");
    assert!(squeeze(&interval).contains(&squeeze(&crd_description(".spec.analysis.interval"))), "{interval}");

    // The kind itself: kube's TypeMeta fields and the ObjectMeta reference, added to the CRD's.
    let (canary, _) = c.ok(&["explain", "canary"]);
    assert!(canary.contains("  metadata\t<ObjectMeta>\n    Standard object's metadata."), "{canary}");
    assert!(canary.contains("  apiVersion\t<string>\n    APIVersion defines the versioned schema"), "{canary}");
    let (name, _) = c.ok(&["explain", "canary.metadata.name"]);
    assert!(name.contains("FIELD: name <string>"), "{name}");

    let (http, _) = c.ok(&["explain", "apisixroute.spec.http"]);
    assert!(http.contains("GROUP:      apisix.apache.org") && http.contains("FIELD: http <[]Object>"), "{http}");
    assert!(http.contains("  backends\t<[]Object>\n"), "{http}");

    let (paused, _) = c.ok(&["explain", "deployment.spec.paused"]);
    assert!(paused.contains("GROUP:      apps\nKIND:       Deployment\nVERSION:    v1"), "{paused}");
    assert!(paused.contains("FIELD: paused <boolean>"), "{paused}");
    assert!(paused.contains("Indicates that the deployment is paused."), "{paused}");
    let (surge, _) = c.ok(&["explain", "deployment.spec.strategy.rollingUpdate.maxSurge"]);
    assert!(surge.contains("FIELD: maxSurge <IntOrString>"), "{surge}");

    // Through the references of the core group: Container, EnvVar, EnvVarSource, ...
    let (containers, _) = c.ok(&["explain", "pods.spec.containers", "--recursive"]);
    assert!(containers.contains("FIELD: containers <[]Container>"), "{containers}");
    for line in [
        "  env\t<[]EnvVar>\n",
        "    valueFrom\t<EnvVarSource>\n",
        "  image\t<string>\n",
        "  name\t<string> -required-\n",
    ] {
        assert!(containers.contains(line), "{line:?}:\n{containers}");
    }

    for field in ["canary.spec.nosuch", "deployment.spec.nosuch"] {
        let out = c.kubectl(&["explain", field]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{field} explained");
        assert!(stderr.contains("error: field \"nosuch\" does not exist"), "{field}: {stderr}");
    }
}

/// A plain Deployment (no canary opt-in, so nothing pauses it) and its Service.
const WORKLOAD: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: podinfo, namespace: test, labels: {app: podinfo}}
spec:
  replicas: 2
  selector: {matchLabels: {app: podinfo}}
  template:
    metadata: {labels: {app: podinfo}}
    spec:
      containers:
        - name: podinfod
          image: ghcr.io/stefanprodan/podinfo:6.5.0
          ports: [{name: http, containerPort: 9898}]
---
apiVersion: v1
kind: Service
metadata: {name: podinfo, namespace: test}
spec:
  selector: {app: podinfo}
  ports: [{name: http, port: 9898, targetPort: http}]
";

/// The namespace `test` with [`WORKLOAD`] rolled out.
fn workload(c: &kubectl::Cluster) -> kubectl::TempFile {
    let manifest = dir_file("workload.yaml", WORKLOAD);
    c.ok(&["apply", "-f", fixture("scenario/namespace.yaml").to_str().unwrap(), "-f", manifest.path()]);
    c.ok(&["-n", "test", "rollout", "status", "deploy/podinfo", "--timeout=30s"]);
    manifest
}

/// Polls `f` every 100 ms until it gives a value; panics naming `what` after `secs`.
fn within<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The pods of `test` as (name, terminating, podIP).
fn pods(c: &kubectl::Cluster) -> Vec<(String, bool, String)> {
    let path = "jsonpath={range .items[*]}{.metadata.name} {.metadata.deletionTimestamp} {.status.podIP}{\"\\n\"}{end}";
    let (out, _) = c.ok(&["-n", "test", "get", "pods", "-o", path]);
    out.lines()
        .map(|l| {
            let parts: Vec<&str> = l.split(' ').collect();
            (parts[0].to_owned(), !parts[1].is_empty(), parts[2].to_owned())
        })
        .collect()
}

/// Item 5: the Deployment and ReplicaSet controllers, the scheduler and the kubelet
/// record the Events kube's do, in their words, and `kubectl describe` finds them.
#[test]
fn controllers_and_the_kubelet_record_events() {
    let c = start();
    workload(&c);
    let revision_rs = |revision: &str| {
        let path = "jsonpath={range .items[*]}{.metadata.name} \
                    {.metadata.annotations.deployment\\.kubernetes\\.io/revision}{\"\\n\"}{end}";
        let (out, _) = c.ok(&["-n", "test", "get", "rs", "-o", path]);
        out.lines().find(|l| l.ends_with(&format!(" {revision}"))).unwrap().split(' ').next().unwrap().to_owned()
    };
    c.ok(&["-n", "test", "rollout", "restart", "deployment/podinfo"]);
    c.ok(&["-n", "test", "rollout", "status", "deploy/podinfo", "--timeout=30s"]);
    c.ok(&["-n", "test", "scale", "deploy/podinfo", "--replicas=3"]);
    c.ok(&["-n", "test", "rollout", "status", "deploy/podinfo", "--timeout=30s"]);
    c.ok(&["-n", "test", "scale", "deploy/podinfo", "--replicas=1"]);
    within(20, "the scale-down to 1 pod", || (pods(&c).len() == 1).then_some(()));
    let (first, second) = (revision_rs("1"), revision_rs("2"));
    let (pod, _, _) = pods(&c).remove(0);

    // Rolling: the first ReplicaSet 0 -> 2; the restart's surges by one (25% of 2,
    // rounded up) and the old one steps down; then the two scales.
    let expected = [
        format!("ScalingReplicaSet   deployment/podinfo   Scaled up replica set {first} from 0 to 2"),
        format!("ScalingReplicaSet   deployment/podinfo   Scaled up replica set {second} from 0 to 1"),
        format!("ScalingReplicaSet   deployment/podinfo   Scaled down replica set {first} from 2 to 1"),
        format!("ScalingReplicaSet   deployment/podinfo   Scaled down replica set {first} from 1 to 0"),
        format!("ScalingReplicaSet   deployment/podinfo   Scaled up replica set {second} from 2 to 3"),
        format!("ScalingReplicaSet   deployment/podinfo   Scaled down replica set {second} from 3 to 1"),
        format!("SuccessfulCreate    replicaset/{second}   Created pod: {pod}"),
        format!("SuccessfulDelete    replicaset/{second}   Deleted pod: {second}-"),
        format!("SuccessfulDelete    replicaset/{first}   Deleted pod: {first}-"),
        format!("Scheduled           pod/{pod}   Successfully assigned test/{pod} to sim-node"),
        format!("Created             pod/{pod}   Created container: podinfod"),
        format!("Started             pod/{pod}   Started container podinfod"),
        format!("Killing             pod/{first}-"),
    ];
    // Events are written behind the controllers' backs: wait for the last ones.
    let squeeze = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let table = within(20, "the events", || {
        let (out, _) = c.ok(&["get", "events", "-n", "test"]);
        let flat = squeeze(&out);
        expected.iter().all(|e| flat.contains(&squeeze(e))).then_some(out)
    });
    assert_eq!(kubectl::header(&table), ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]);
    let pulled = "Container image \"ghcr.io/stefanprodan/podinfo:6.5.0\" already present on machine";
    assert!(table.contains(pulled), "the image of the first pod stays on the node:\n{table}");
    assert!(table.contains("Successfully pulled image \"ghcr.io/stefanprodan/podinfo:6.5.0\""), "{table}");
    assert!(!table.contains("Warning"), "{table}");
    let (all, _) = c.ok(&["get", "events", "-A"]);
    assert!(all.lines().any(|l| l.starts_with("test ") && l.contains("ScalingReplicaSet")), "{all}");

    // One Event per object and message: each (object, message) pair appears once.
    let path = "jsonpath={range .items[*]}{.involvedObject.name}|{.message}|{.count}|{.metadata.name}{\"\\n\"}{end}";
    let (out, _) = c.ok(&["get", "events", "-n", "test", "-o", path]);
    let mut seen = std::collections::HashSet::new();
    for line in out.lines() {
        let parts: Vec<&str> = line.split('|').collect();
        assert!(seen.insert((parts[0], parts[1])), "twice: {line}");
        assert!(parts[3].starts_with(&format!("{}.", parts[0])), "named <object>.<hex>: {line}");
    }

    let (describe, _) = c.ok(&["-n", "test", "describe", "deployment", "podinfo"]);
    let events = describe.split_once("Events:").map(|(_, e)| squeeze(e)).unwrap_or_default();
    for line in expected.iter().filter(|e| e.contains("deployment/podinfo")) {
        let message = line.split_once("deployment/podinfo").unwrap().1;
        assert!(events.contains(&format!("deployment-controller {}", squeeze(message))), "{describe}");
    }
    let (describe, _) = c.ok(&["-n", "test", "describe", "rs", &second]);
    assert!(squeeze(&describe).contains("SuccessfulCreate"), "{describe}");
    assert!(squeeze(&describe).contains("replicaset-controller Created pod:"), "{describe}");
    assert!(squeeze(&describe).contains("replicaset-controller Deleted pod:"), "{describe}");
    let (describe, _) = c.ok(&["-n", "test", "describe", "pod", &pod]);
    let flat = squeeze(&describe);
    assert!(
        flat.contains("Normal Scheduled")
            && flat.contains(&format!("default-scheduler Successfully assigned test/{pod} to sim-node")),
        "{describe}"
    );
    assert!(flat.contains("kubelet Started container podinfod"), "{describe}");
}

/// `kubectl -n test get <args> --watch`, stopped when the returned guard drops; its
/// output lines come through the receiver.
fn watch(c: &kubectl::Cluster, args: &[&str]) -> (binaries::Proc, std::sync::mpsc::Receiver<String>) {
    let mut child = std::process::Command::new(&c.kubectl)
        .args(["-n", "test", "get"])
        .args(args)
        .args(["--watch", "--request-timeout=120s"])
        .env("KUBECONFIG", &c.kubeconfig)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (binaries::Proc(child), rx)
}

/// The documents of a kubectl JSON watch, from its lines (one document a line with
/// `--output-watch-events`; a document over several lines is read once complete).
#[derive(Default)]
struct Documents {
    pending: String,
    done: Vec<serde_json::Value>,
}

impl Documents {
    fn take(&mut self, lines: &std::sync::mpsc::Receiver<String>) {
        for line in lines.try_iter() {
            self.pending.push_str(&line);
            if let Ok(document) = serde_json::from_str(&self.pending) {
                self.done.push(document);
                self.pending.clear();
            }
        }
    }
}

/// Item 6: a scaled-down pod is Terminating (`kubectl get pods --watch` shows it) and
/// out of its Service's ready endpoints before it is gone; `kubectl delete pod` waits
/// for it, `--grace-period=0 --force` does not have to.
#[test]
fn pods_terminate_out_of_their_endpoints_first() {
    let c = start();
    workload(&c);
    c.ok(&["-n", "test", "scale", "deploy/podinfo", "--replicas=3"]);
    c.ok(&["-n", "test", "rollout", "status", "deploy/podinfo", "--timeout=30s"]);
    // Three watches: kubectl's table of pods, and the pods' and slices' changes as JSON,
    // ordered by resourceVersion (one counter for the whole store), so the order of
    // events is checked, not the luck of a poll.
    let (table, table_rx) = watch(&c, &["pods"]);
    let (pod_watch, pod_rx) = watch(&c, &["pods", "-o", "json", "--output-watch-events"]);
    let (slice_watch, slice_rx) = watch(&c, &["endpointslices", "-o", "json", "--output-watch-events"]);
    // The table has listed the three pods before the scale-down.
    let mut lines = Vec::new();
    while lines.iter().filter(|l: &&String| l.contains("Running")).count() < 3 {
        lines.push(table_rx.recv_timeout(std::time::Duration::from_secs(20)).expect("the watch lists the pods"));
    }

    c.ok(&["-n", "test", "scale", "deploy/podinfo", "--replicas=1"]);
    within(20, "the Terminating pods to go", || (pods(&c).len() == 1).then_some(()));
    // The watches have seen the last deletion (the DELETED event of the second pod).
    let (mut pod_docs, mut slice_docs) = (Documents::default(), Documents::default());
    within(10, "the pod watch to see both deletions", || {
        pod_docs.take(&pod_rx);
        (pod_docs.done.iter().filter(|e| e["type"] == "DELETED").count() == 2).then_some(())
    });
    within(10, "the slice watch to drop the stopped pods", || {
        slice_docs.take(&slice_rx);
        let last = slice_docs.done.last()?;
        (last["object"]["endpoints"].as_array().map_or(0, Vec::len) == 1).then_some(())
    });
    drop((pod_watch, slice_watch));
    let (pod_events, slice_events) = (pod_docs.done, slice_docs.done);
    let rv =
        |e: &serde_json::Value| e["object"]["metadata"]["resourceVersion"].as_str().unwrap().parse::<u64>().unwrap();
    // (ready, terminating) of `ip` in a slice, if listed.
    let endpoint = |e: &serde_json::Value, ip: &str| {
        let endpoints = e["object"]["endpoints"].as_array().cloned().unwrap_or_default();
        let found = endpoints.into_iter().find(|p| p["addresses"][0] == ip)?;
        Some((found["conditions"]["ready"] == true, found["conditions"]["terminating"] == true))
    };
    let mut leaving = Vec::new();
    for gone in pod_events.iter().filter(|e| e["type"] == "DELETED") {
        let name = gone["object"]["metadata"]["name"].as_str().unwrap().to_owned();
        let ip = gone["object"]["status"]["podIP"].as_str().unwrap().to_owned();
        let of_pod = |e: &&serde_json::Value| e["object"]["metadata"]["name"] == name.as_str();
        let marked = pod_events.iter().filter(of_pod).find(|e| !e["object"]["metadata"]["deletionTimestamp"].is_null());
        let marked = marked.expect("Terminating before it went");
        let grace = &marked["object"]["metadata"]["deletionGracePeriodSeconds"];
        assert_eq!(grace, 30, "the pod's own terminationGracePeriodSeconds (the default)");
        assert_eq!(gone["object"]["metadata"]["deletionGracePeriodSeconds"], 0, "the kubelet's last DELETE");
        // Its containers exited on SIGTERM before it went, as the kubelet reports them.
        let last = &gone["object"]["status"];
        assert_eq!(last["phase"], "Succeeded", "{last}");
        assert_eq!(last["containerStatuses"][0]["state"]["terminated"]["reason"], "Completed", "{last}");
        let (marked, gone) = (rv(marked), rv(gone));
        // While it terminates, the slice lists it not ready, or not at all; never ready again.
        let during: Vec<_> = slice_events.iter().filter(|e| rv(e) > marked && rv(e) < gone).collect();
        assert!(!during.is_empty(), "{name} left the ready endpoints before it was gone: {slice_events:#?}");
        for e in slice_events.iter().filter(|e| rv(e) > marked) {
            let state = endpoint(e, &ip);
            assert!(state.is_none() || state == Some((false, true)), "{name} ({ip}) at rv {}: {state:?}", rv(e));
        }
        assert_eq!(endpoint(slice_events.last().unwrap(), &ip), None, "gone from the slice at last");
        leaving.push(name);
    }
    // kubectl's table showed each one Terminating.
    // (READY, STATUS) of each row of `name`.
    let status_of = |name: &str, lines: &[String]| -> Vec<(String, String)> {
        let rows = lines.iter().filter(|l| l.starts_with(&format!("{name} ")));
        rows.map(|l| {
            let columns: Vec<&str> = l.split_whitespace().collect();
            (columns[1].to_owned(), columns[2].to_owned())
        })
        .collect()
    };
    within(10, "the table to show the pods Terminating, running then stopped", || {
        lines.extend(table_rx.try_iter());
        leaving
            .iter()
            .all(|p| {
                let rows = status_of(p, &lines);
                ["1/1", "0/1"].iter().all(|ready| rows.contains(&((*ready).to_owned(), "Terminating".to_owned())))
            })
            .then_some(())
    });
    drop(table);

    // `kubectl delete pod` waits (by default) until the pod is gone, not just marked.
    let (pod, _, _) = pods(&c).remove(0);
    let started = std::time::Instant::now();
    let (out, _) = c.ok(&["-n", "test", "delete", "pod", &pod]);
    assert_eq!(out.trim(), format!("pod \"{pod}\" deleted"));
    assert!(started.elapsed() >= std::time::Duration::from_millis(500), "it terminated: {:?}", started.elapsed());
    assert!(refused(&c, &["-n", "test", "get", "pod", &pod]).contains("NotFound"));
    // Forced: gone at once.
    let (pod, _, _) = within(20, "the replacement pod", || pods(&c).into_iter().find(|(n, d, _)| *n != pod && !d));
    let (out, err) = c.ok(&["-n", "test", "delete", "pod", &pod, "--grace-period=0", "--force"]);
    assert_eq!(out.trim(), format!("pod \"{pod}\" force deleted"));
    assert!(err.contains("Immediate deletion does not wait for confirmation"), "{err}");
    assert!(refused(&c, &["-n", "test", "get", "pod", &pod]).contains("NotFound"));
}

/// Item 6: a deleted namespace is Terminating until its content is gone (here held by
/// a finalizer); nothing new may be created in it meanwhile; then it goes.
#[test]
fn a_deleted_namespace_terminates_until_it_is_empty() {
    let c = start();
    workload(&c);
    c.ok(&["-n", "test", "create", "configmap", "held"]);
    c.ok(&[
        "-n",
        "test",
        "patch",
        "configmap",
        "held",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["example.com/hold"]}}"#,
    ]);
    let (out, _) = c.ok(&["delete", "namespace", "test", "--wait=false"]);
    assert_eq!(out.trim(), "namespace \"test\" deleted");
    let (out, _) = c.ok(&["get", "namespace", "test"]);
    assert_eq!(out.lines().nth(1).unwrap().split_whitespace().nth(1), Some("Terminating"), "{out}");
    let (stamp, _) = c.ok(&["get", "namespace", "test", "-o", "jsonpath={.metadata.deletionTimestamp}"]);
    assert!(!stamp.is_empty());
    assert_eq!(
        refused(&c, &["delete", "namespace", "test", "--wait=false"]).trim(),
        "Error from server (Conflict): Operation cannot be fulfilled on namespaces \"test\": The system is ensuring \
         all content is removed from this namespace.  Upon completion, this namespace will automatically be purged by \
         the system."
    );

    let err = refused(&c, &["-n", "test", "create", "configmap", "late"]);
    assert!(
        err.contains("configmaps \"late\" is forbidden: unable to create new content in namespace test because it is being terminated"),
        "{err}"
    );
    assert!(err.contains("(Forbidden)") || err.contains("forbidden"), "{err}");
    assert_eq!(
        refused(&c, &["create", "namespace", "test"]).trim(),
        "Error from server (AlreadyExists): object is being deleted: namespaces \"test\" already exists"
    );
    // Its workloads go (pods gracefully), the finalizer still holds the namespace.
    within(20, "the workloads to go", || {
        let (out, err) = c.ok(&["-n", "test", "get", "deploy,rs,pods,services"]);
        (out.is_empty() && err.contains("No resources found")).then_some(())
    });
    let (out, _) = c.ok(&["get", "namespace", "test", "-o", "jsonpath={.status.phase}"]);
    assert_eq!(out, "Terminating");
    // Its status says what holds it, as kube's namespace controller words it.
    let squeeze = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    // (type and status, then after the transition time, reason and message)
    let wanted = [
        (
            "NamespaceContentRemaining True",
            "SomeResourcesRemain Some resources are remaining: configmaps. has 1 resource instances",
        ),
        (
            "NamespaceFinalizersRemaining True",
            "SomeFinalizersRemain Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances",
        ),
        ("NamespaceDeletionDiscoveryFailure False", "ResourcesDiscovered All resources successfully discovered"),
    ];
    within(10, "the namespace's conditions", || {
        let (described, _) = c.ok(&["describe", "namespace", "test"]);
        let lines: Vec<String> = described.lines().map(squeeze).collect();
        let shown = |(head, tail): &(&str, &str)| lines.iter().any(|l| l.starts_with(head) && l.ends_with(tail));
        wanted.iter().all(shown).then_some(())
    });
    // Objects in a terminating namespace may still be changed: the finalizer is released.
    c.ok(&["-n", "test", "patch", "configmap", "held", "--type=merge", "-p", r#"{"metadata":{"finalizers":null}}"#]);
    c.ok(&["wait", "--for=delete", "namespace/test", "--timeout=20s"]);
    assert!(refused(&c, &["get", "namespace", "test"]).contains("NotFound"));
    // And the name can be used again.
    c.ok(&["apply", "-f", fixture("scenario/namespace.yaml").to_str().unwrap()]);
    c.ok(&["-n", "test", "create", "configmap", "late"]);
}
