//! `apisix-canary revision`: the revision of each Deployment of a manifest, as the lock
//! records it. The webhook sees templates as kube-apiserver stores them, defaults
//! applied, so the command applies the same defaults first: our prediction of what the
//! API server stores, kept here and not borrowed from the simulated cluster, which
//! imitates the API server on its own.

use anyhow::{Context, bail};
use serde_json::{Map, Value, json};

use super::RevisionArgs;
use crate::release::revision::Revision;

/// Prints `<revision>\t<name>` for each Deployment with a pod template.
pub fn run(args: &RevisionArgs) -> anyhow::Result<()> {
    use std::io::Read as _;
    let mut text = String::new();
    if args.file.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text).context("reading standard input")?;
    } else {
        text = std::fs::read_to_string(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    }
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&text).with_context(|| format!("parsing {}", args.file.display()))?;
    let mut found = false;
    for doc in docs.iter().filter(|d| d["kind"] == "Deployment") {
        let mut doc = doc.clone();
        deployment_defaults(&mut doc);
        let Some(template) = doc.pointer("/spec/template") else {
            continue;
        };
        let name = doc.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("<unnamed>");
        println!("{}\t{name}", Revision::of_template(template));
        found = true;
    }
    if !found {
        bail!("no Deployment with spec.template in {}", args.file.display());
    }
    Ok(())
}

fn obj(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = json!({});
    }
    v.as_object_mut().expect("just made an object")
}

fn default(map: &mut Map<String, Value>, key: &str, value: Value) {
    map.entry(key.to_owned()).or_insert(value);
}

/// The defaults kube-apiserver gives an apps/v1 Deployment (`SetDefaults_Deployment`
/// and the pod spec's `SetDefaults_*`), as far as they reach the pod template.
pub fn deployment_defaults(d: &mut Value) {
    let spec = obj(obj(d).entry("spec").or_insert_with(|| json!({})));
    default(spec, "replicas", json!(1));
    default(spec, "revisionHistoryLimit", json!(10));
    default(spec, "progressDeadlineSeconds", json!(600));
    default(spec, "strategy", json!({"type": "RollingUpdate"}));
    if let Some(strategy) = spec.get_mut("strategy").map(obj)
        && strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
    {
        let rolling = obj(strategy.entry("rollingUpdate").or_insert_with(|| json!({})));
        default(rolling, "maxSurge", json!("25%"));
        default(rolling, "maxUnavailable", json!("25%"));
    }
    if let Some(template) = spec.get_mut("template") {
        let t = obj(template);
        t.entry("metadata").or_insert_with(|| json!({}));
        pod_spec_defaults(t.entry("spec").or_insert_with(|| json!({})));
    }
}

/// A pod spec's defaults: policies, scheduler, and per container the pull policy,
/// termination message, resources, port protocols and probe timings.
fn pod_spec_defaults(spec: &mut Value) {
    let spec = obj(spec);
    default(spec, "restartPolicy", json!("Always"));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "securityContext", json!({}));
    default(spec, "schedulerName", json!("default-scheduler"));
    for list in ["containers", "initContainers"] {
        for c in spec.get_mut(list).and_then(Value::as_array_mut).into_iter().flatten() {
            let c = obj(c);
            // `:latest` or no tag pulls Always, a pinned tag IfNotPresent.
            let latest =
                c.get("image").and_then(Value::as_str).is_some_and(|i| !i.contains(':') || i.ends_with(":latest"));
            default(c, "imagePullPolicy", json!(if latest { "Always" } else { "IfNotPresent" }));
            default(c, "terminationMessagePath", json!("/dev/termination-log"));
            default(c, "terminationMessagePolicy", json!("File"));
            default(c, "resources", json!({}));
            for p in c.get_mut("ports").and_then(Value::as_array_mut).into_iter().flatten() {
                default(obj(p), "protocol", json!("TCP"));
            }
            for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
                if let Some(p) = c.get_mut(probe) {
                    let p = obj(p);
                    default(p, "timeoutSeconds", json!(1));
                    default(p, "periodSeconds", json!(10));
                    default(p, "successThreshold", json!(1));
                    default(p, "failureThreshold", json!(3));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_reach_the_pod_template() {
        let mut d = json!({"kind": "Deployment", "spec": {"template": {"spec": {"containers": [
            {"name": "c", "image": "podinfo:6.0.0", "ports": [{"containerPort": 9898}]},
            {"name": "latest", "image": "podinfo"}]}}}});
        deployment_defaults(&mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        let t = &d["spec"]["template"];
        assert_eq!(t["metadata"], json!({}));
        assert_eq!(t["spec"]["dnsPolicy"], "ClusterFirst");
        assert_eq!(t["spec"]["containers"][0]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(t["spec"]["containers"][0]["ports"][0]["protocol"], "TCP");
        assert_eq!(t["spec"]["containers"][1]["imagePullPolicy"], "Always");
    }

    #[test]
    fn a_recreate_strategy_gets_no_rolling_update() {
        let mut d = json!({"spec": {"strategy": {"type": "Recreate"}}});
        deployment_defaults(&mut d);
        assert_eq!(d["spec"]["strategy"], json!({"type": "Recreate"}));
    }
}
