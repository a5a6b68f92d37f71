//! What kube-apiserver fills in before admission: metadata on create and the defaults
//! of the built-in kinds we simulate, so webhooks see the objects a real cluster sends.

use serde_json::{Map, Value, json};

/// RFC 3339 to the second, as Kubernetes writes timestamps.
pub fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A random version 4 UUID.
pub fn uid() -> String {
    let n = fastrand::u128(..);
    let hex = format!("{n:032x}");
    let variant = ["8", "9", "a", "b"][fastrand::usize(..4)];
    format!("{}-{}-4{}-{variant}{}-{}", &hex[0..8], &hex[8..12], &hex[13..16], &hex[17..20], &hex[20..32])
}

/// The random suffix of `generateName` and pod names (Kubernetes' alphabet).
pub fn suffix(len: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..len).map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char).collect()
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

/// Fills the defaults of a pod spec (containers, policies), as the API server does.
pub fn pod_spec(spec: &mut Value) {
    let spec = obj(spec);
    default(spec, "restartPolicy", json!("Always"));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "securityContext", json!({}));
    default(spec, "schedulerName", json!("default-scheduler"));
    for list in ["containers", "initContainers"] {
        for c in spec.get_mut(list).and_then(Value::as_array_mut).into_iter().flatten() {
            let c = obj(c);
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

/// Defaults of a Deployment (apps/v1).
pub fn deployment(d: &mut Value) {
    let spec = obj(d).entry("spec").or_insert_with(|| json!({}));
    let spec = obj(spec);
    default(spec, "replicas", json!(1));
    default(spec, "revisionHistoryLimit", json!(10));
    default(spec, "progressDeadlineSeconds", json!(600));
    // `strategy: {}` (what kubectl create sends) gets its type as an absent one does.
    default(obj(spec.entry("strategy").or_insert_with(|| json!({}))), "type", json!("RollingUpdate"));
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
        pod_spec(t.entry("spec").or_insert_with(|| json!({})));
    }
}

/// Defaults of a Service: ClusterIP type, protocol, targetPort = port.
pub fn service(s: &mut Value, cluster_ip: impl FnOnce() -> String) {
    let spec = obj(obj(s).entry("spec").or_insert_with(|| json!({})));
    default(spec, "type", json!("ClusterIP"));
    default(spec, "sessionAffinity", json!("None"));
    if !spec.contains_key("clusterIP") {
        let ip = cluster_ip();
        spec.insert("clusterIP".into(), json!(ip));
        spec.insert("clusterIPs".into(), json!([ip]));
    }
    default(spec, "ipFamilies", json!(["IPv4"]));
    default(spec, "ipFamilyPolicy", json!("SingleStack"));
    default(spec, "internalTrafficPolicy", json!("Cluster"));
    for p in spec.get_mut("ports").and_then(Value::as_array_mut).into_iter().flatten() {
        let p = obj(p);
        default(p, "protocol", json!("TCP"));
        if let Some(port) = p.get("port").cloned() {
            default(p, "targetPort", port);
        }
    }
}

/// A Secret's `stringData` is write-only, as kube-apiserver has it: each key is
/// written into `data`, base64-encoded, over a `data` key of the same name. Its type
/// defaults to `Opaque`.
fn secret(object: &mut Value) {
    use base64::Engine as _;
    default(obj(object), "type", json!("Opaque"));
    let Some(Value::Object(strings)) = obj(object).remove("stringData") else { return };
    let data = obj(obj(object).entry("data").or_insert_with(|| json!({})));
    for (key, value) in strings {
        let text = value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string());
        data.insert(key, json!(base64::engine::general_purpose::STANDARD.encode(text)));
    }
}

/// Defaults by kind, for the built-in kinds that have them.
pub fn apply(group: &str, kind: &str, object: &mut Value, cluster_ip: impl FnOnce() -> String) {
    match (group, kind) {
        ("apps", "Deployment") => deployment(object),
        ("apps", "ReplicaSet") => {
            if let Some(spec) = object.pointer_mut("/spec/template/spec") {
                pod_spec(spec);
            }
        }
        ("", "Pod") => pod_spec(obj(object).entry("spec").or_insert_with(|| json!({}))),
        ("", "Service") => service(object, cluster_ip),
        ("", "Secret") => secret(object),
        (crate::autoscaling::GROUP, crate::autoscaling::KIND) => crate::autoscaling::defaults(object),
        ("", "Namespace") => {
            let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_owned();
            let meta = obj(obj(object).entry("metadata").or_insert_with(|| json!({})));
            obj(meta.entry("labels").or_insert_with(|| json!({})))
                .insert("kubernetes.io/metadata.name".into(), json!(name));
            let status = obj(obj(object).entry("status").or_insert_with(|| json!({})));
            default(status, "phase", json!("Active"));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_defaults_match_the_api_server() {
        let mut d = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "podinfo:6.0.0",
            "ports": [{"containerPort": 9898}]}]}}}});
        deployment(&mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(d["spec"]["template"]["spec"]["dnsPolicy"], "ClusterFirst");
    }

    #[test]
    fn secret_string_data_is_written_into_data() {
        let mut s = json!({"data": {"token": "b2xk", "keep": "a2VlcA=="}, "stringData": {"token": "new", "address": "http://x/"}});
        secret(&mut s);
        let data = json!({"token": "bmV3", "keep": "a2VlcA==", "address": "aHR0cDovL3gv"});
        assert_eq!(s, json!({"data": data, "type": "Opaque"}));
        let mut typed = json!({"type": "kubernetes.io/tls"});
        secret(&mut typed);
        assert_eq!(typed, json!({"type": "kubernetes.io/tls"}), "a type given is kept");
    }

    /// `kubectl create deployment` sends `strategy: {}`; kube defaults it as if absent.
    #[test]
    fn an_empty_strategy_is_defaulted_as_an_absent_one() {
        let mut d = json!({"spec": {"strategy": {}, "template": {"spec": {"containers": []}}}});
        deployment(&mut d);
        assert_eq!(
            d["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
        );
    }

    #[test]
    fn ids_look_like_kubernetes_ids() {
        let u = uid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(now().ends_with('Z') && now().len() == 20);
        assert!(suffix(5).chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
